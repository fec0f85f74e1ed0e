#!/usr/bin/env bash
# Runs the built plugin in Fluent Bit with the stdout output: the
# fluent-bit on the PATH if there is one, else the official image with the
# Docker socket mounted. Extra arguments go to fluent-bit.
set -euo pipefail
plugin=$(realpath "${1:?usage: run-fluent-bit.sh build/docker_logs.so [fluent-bit args]}")
shift
if command -v fluent-bit >/dev/null 2>&1; then
	exec fluent-bit -e "$plugin" -i docker_logs -o stdout "$@"
fi
image=${FLUENT_BIT_IMAGE:-fluent/fluent-bit:latest}
exec docker run --rm -i --name docker-logs-fluent-bit \
	-v /var/run/docker.sock:/var/run/docker.sock \
	-v "$plugin":/fluent-bit/plugins/docker_logs.so:ro \
	"$image" /fluent-bit/bin/fluent-bit -e /fluent-bit/plugins/docker_logs.so -i docker_logs -o stdout "$@"
