#!/usr/bin/env bash
# Runs the daemon-backed tests against each daemon named on the command line
# (default: system docker29 podman), one after the other:
#   system    the Docker daemon at /var/run/docker.sock (started if needed):
#             docker/, internal/, integration/, faults/ and the ABI test
#   docker29  a Docker Engine 29 started beside it by scripts/daemon.sh
#   podman    a Podman service started beside it by scripts/daemon.sh
# The last two run docker/, internal/ and integration/ with DOCKER_HOST
# pointing at them and DOCKERLOGS_DAEMON naming them, and are stopped after
# (also on failure or interrupt). A failing daemon does not stop the
# others; the exit status is non-zero if any failed. Each daemon's time is
# printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
daemons=("$@")
[[ ${#daemons[@]} -gt 0 ]] || daemons=(system docker29 podman)

started=""
stop_started() {
	if [[ -n $started ]]; then
		scripts/daemon.sh "$started" stop || true
		started=""
	fi
}
trap stop_started EXIT
trap 'exit 130' INT TERM

# The daemon is provided here: a test that finds none fails instead of
# skipping (dockertest.Require).
export CI=true

summary=()
failed=0
for d in "${daemons[@]}"; do
	begin=$SECONDS
	status=ok
	case $d in
	system)
		scripts/docker-ready.sh
		env -u DOCKER_HOST DOCKERLOGS_DAEMON=system \
			$GO test -race -count=1 -timeout 40m ./docker/... ./internal/... ./integration/... ./faults/... || status=FAIL
		# The integration suite again with the logs read from the files.
		env -u DOCKER_HOST DOCKERLOGS_DAEMON=system IT_LOGS_FROM=files \
			$GO test -race -count=1 -timeout 40m ./integration/... || status=FAIL
		env -u DOCKER_HOST $GO test -count=1 -timeout 20m ./testhost/... || status=FAIL
		;;
	docker29 | podman)
		# Started here, so the trap stops it whatever happens next.
		started=$d
		if host=$(scripts/daemon.sh "$d" start); then
			DOCKER_HOST=$host DOCKERLOGS_DAEMON=$d \
				$GO test -race -count=1 -timeout 40m ./docker/... ./internal/... ./integration/... || status=FAIL
		else
			status="FAIL (daemon did not start)"
		fi
		stop_started
		;;
	*)
		echo "integration.sh: unknown daemon $d (system, docker29 or podman)" >&2
		exit 2
		;;
	esac
	[[ $status == ok ]] || failed=1
	summary+=("$d: $status in $((SECONDS - begin))s")
done
echo "integration:" >&2
printf '  %s\n' "${summary[@]}" >&2
exit $failed
