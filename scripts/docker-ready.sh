#!/usr/bin/env bash
# Makes sure a Docker daemon answers on /var/run/docker.sock: on a fresh
# machine it installs Debian's docker.io when dockerd is missing, starts
# dockerd, and waits for the socket.
set -euo pipefail

if docker info >/dev/null 2>&1; then
	exit 0
fi
if ! command -v dockerd >/dev/null 2>&1; then
	echo "docker-ready: installing docker.io" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq docker.io >/dev/null
fi
if ! docker info >/dev/null 2>&1; then
	echo "docker-ready: starting dockerd" >&2
	log=/var/log/dockerd-ci.log
	nohup dockerd >"$log" 2>&1 &
	for _ in $(seq 1 120); do
		if docker info >/dev/null 2>&1; then
			break
		fi
		sleep 0.5
	done
fi
if ! docker info >/dev/null 2>&1; then
	echo "docker-ready: dockerd did not answer within 60s; its log:" >&2
	tail -n 50 /var/log/dockerd-ci.log >&2 || true
	exit 1
fi
echo "docker-ready: $(docker version --format 'server {{.Server.Version}}, API {{.Server.APIVersion}}')" >&2
