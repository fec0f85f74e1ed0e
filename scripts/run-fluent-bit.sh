#!/usr/bin/env bash
# Runs the built plugin in Fluent Bit with the stdout output: the
# fluent-bit on the PATH if there is one, else the official image with the
# Docker socket and, read-only, the containers' log directories mounted
# (Logs_From auto reads the files there). Extra arguments go to fluent-bit.
set -euo pipefail
plugin=$(realpath "${1:?usage: run-fluent-bit.sh build/docker_logs.so [fluent-bit args]}")
shift
if command -v fluent-bit >/dev/null 2>&1; then
	exec fluent-bit -e "$plugin" -i docker_logs -o stdout "$@"
fi
image=${FLUENT_BIT_IMAGE:-fluent/fluent-bit:latest}
root=$(docker info -f '{{.DockerRootDir}}' 2>/dev/null || echo /var/lib/docker)
exec docker run --rm -i --name docker-logs-fluent-bit \
	-v /var/run/docker.sock:/var/run/docker.sock \
	-v "$root/containers":/var/lib/docker/containers:ro \
	-v "$plugin":/fluent-bit/plugins/docker_logs.so:ro \
	"$image" /fluent-bit/bin/fluent-bit -e /fluent-bit/plugins/docker_logs.so -i docker_logs -o stdout "$@"
