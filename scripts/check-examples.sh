#!/usr/bin/env bash
# Checks that every example configuration parses with a real Fluent Bit
# (fluent-bit --dry-run), which also loads the plugin and checks the
# outputs' keys. Needs fluent-bit on the PATH (it is not packaged for CI's
# machines) and the plugin where the examples expect it.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v fluent-bit >/dev/null || { echo "check-examples: no fluent-bit on the PATH" >&2; exit 1; }
so=/fluent-bit/plugins/docker_logs.so
[ -f "$so" ] || { echo "check-examples: copy build/docker_logs.so to $so first" >&2; exit 1; }
status=0
for f in examples/*.conf examples/*.yaml deploy/fluent-bit.yaml; do
	[ "$(basename "$f")" = plugins.conf ] && continue
	if out=$(cd "$(dirname "$f")" && fluent-bit -c "$(basename "$f")" --dry-run 2>&1); then
		echo "ok   $f"
	else
		echo "FAIL $f"; echo "$out" | tail -5; status=1
	fi
done
exit $status
