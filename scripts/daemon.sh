#!/usr/bin/env bash
# Starts and stops a test daemon beside the system's Docker daemon, with its
# own socket, roots and configuration, so the tests can run against the
# daemons users run:
#
#   scripts/daemon.sh docker29 start|stop|restart|host
#   scripts/daemon.sh podman   start|stop|restart|host
#
# start installs what is missing (Podman from Debian; dockerd 29 built from
# the Go module proxy into build/docker29, reused by later runs), starts the
# daemon unless it already answers, waits for its socket and prints its
# DOCKER_HOST. stop ends the daemon this script started (by its pid file)
# and unmounts what it left; both are idempotent. restart stops the daemon
# with SIGTERM and starts it again, leaving its containers to it: Docker
# stops them (no live-restore), Podman's keep running under conmon.
#
# Sockets and pid files live in $DOCKERLOGS_DAEMONS_RUN (default
# /run/dockerlogs), data in $DOCKERLOGS_DAEMONS_DATA (default
# /var/lib/dockerlogs), one directory per daemon.
set -euo pipefail

name=${1:?usage: daemon.sh docker29|podman start|stop|host}
cmd=${2:?usage: daemon.sh docker29|podman start|stop|host}
repo=$(cd "$(dirname "$0")/.." && pwd)
run=${DOCKERLOGS_DAEMONS_RUN:-/run/dockerlogs}/$name
data=${DOCKERLOGS_DAEMONS_DATA:-/var/lib/dockerlogs}/$name

# Docker Engine 29.8 is module github.com/moby/moby/v2 at this version
# (releases/versions.yaml in the module).
docker29_module=github.com/moby/moby/v2/cmd/dockerd
docker29_version=v2.0.0-beta.24
docker29_engine=29.8.0
docker29_bin=$repo/build/docker29/$docker29_version/dockerd

case $name in
docker29) sock=$run/docker.sock ;;
podman) sock=$run/podman.sock ;;
*)
	echo "daemon.sh: unknown daemon $name (docker29 or podman)" >&2
	exit 2
	;;
esac
host=unix://$sock
pidfile=$run/daemon.pid
logfile=$run/daemon.log

say() { echo "daemon.sh $name: $*" >&2; }

answers() { docker -H "$host" version >/dev/null 2>&1; }

running() { [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

build_docker29() {
	[[ -x $docker29_bin ]] && return 0
	say "building dockerd $docker29_engine ($docker29_module@$docker29_version) into ${docker29_bin%/*}"
	local start=$SECONDS
	mkdir -p "${docker29_bin%/*}"
	GOBIN=${docker29_bin%/*} GOFLAGS="-mod=mod -buildvcs=false" \
		go install -ldflags "-X github.com/moby/moby/v2/dockerversion.Version=$docker29_engine" \
		"$docker29_module@$docker29_version"
	say "built in $((SECONDS - start))s"
}

install_podman() {
	command -v podman >/dev/null 2>&1 && return 0
	say "installing podman from Debian"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends podman runc conmon containers-storage >/dev/null
}

start_docker29() {
	build_docker29
	mkdir -p "$run" "$data"
	# Its own config file: without one it reads /etc/docker/daemon.json
	# and the system daemon's data-root. The log options are the system
	# daemon's, so the tests see the same rotation on both.
	cat >"$run/daemon.json" <<-'EOF'
		{"log-driver": "json-file", "log-opts": {"max-size": "10m", "max-file": "3"}}
	EOF
	# vfs: no overlay mounts of its own beside the system daemon's; the
	# test images are one small layer. time-namespaces=false: runc 1.1 has
	# no time namespace.
	nohup "$docker29_bin" --config-file "$run/daemon.json" -H "$host" \
		--data-root "$data/root" --exec-root "$run/exec" --pidfile "$run/dockerd.pid" \
		--storage-driver vfs --bridge=none --iptables=false --ip6tables=false \
		--ip-forward=false --ip-masq=false --userland-proxy=false \
		--cgroup-parent dockerlogs-docker29 --feature time-namespaces=false \
		${DOCKER29_FLAGS:-} >"$logfile" 2>&1 &
	# Ours, written at once: dockerd writes its own pid file only once it
	# has started, and start and restart watch the process from now on.
	echo $! >"$pidfile"
}

start_podman() {
	install_podman
	mkdir -p "$run" "$data/tmp"
	# Root here lacks CAP_SYS_RESOURCE and the hard open-files limit is
	# low: podman's default rlimits fail every container. cgroupfs and a
	# file event log: no systemd or journald on these machines. runc: crun
	# refuses the hybrid cgroup hierarchy of these machines.
	cat >"$run/containers.conf" <<-'EOF'
		[containers]
		default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
		log_driver = "k8s-file"
		[engine]
		cgroup_manager = "cgroupfs"
		runtime = "runc"
		events_logger = "file"
	EOF
	CONTAINERS_CONF=$run/containers.conf nohup podman --root "$data/root" --runroot "$run/runroot" \
		--tmpdir "$data/tmp" --storage-driver overlay \
		system service --time=0 "$host" >"$logfile" 2>&1 &
	echo $! >"$pidfile"
}

case $cmd in
host)
	echo "$host"
	;;
start)
	if answers; then
		echo "$host"
		exit 0
	fi
	if running; then
		say "pid $(cat "$pidfile") runs but does not answer on $sock; stop it first"
		exit 1
	fi
	rm -f "$sock"
	"start_$name"
	for _ in $(seq 1 240); do
		answers && break
		running || break
		sleep 0.25
	done
	if ! answers; then
		say "no answer on $sock; its log:"
		tail -n 40 "$logfile" >&2 || true
		exit 1
	fi
	say "$(docker -H "$host" version --format 'server {{.Server.Version}}, API {{.Server.APIVersion}}') on $host"
	echo "$host"
	;;
restart)
	if running; then
		pid=$(cat "$pidfile")
		kill "$pid"
		for _ in $(seq 1 120); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.25
		done
	fi
	exec "$0" "$name" start
	;;
stop)
	if [[ $name == podman ]] && running; then
		# conmon keeps podman's containers alive without the service.
		CONTAINERS_CONF=$run/containers.conf podman --root "$data/root" --runroot "$run/runroot" \
			--tmpdir "$data/tmp" --storage-driver overlay rm -af -t 0 >/dev/null 2>&1 || true
	fi
	if running; then
		pid=$(cat "$pidfile")
		kill "$pid"
		for _ in $(seq 1 120); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.25
		done
		if kill -0 "$pid" 2>/dev/null; then
			say "pid $pid did not stop in 30s; killing it"
			kill -9 "$pid" || true
		fi
	fi
	rm -f "$pidfile" "$sock"
	# What the daemon's containers leave mounted, so a later start or an
	# rm -rf of the data finds nothing busy.
	if [[ -d $data || -d $run ]]; then
		grep -oE " ($data|$run)/[^ ]*" /proc/self/mounts | sort -r | while read -r m; do
			umount -l "$m" 2>/dev/null || true
		done
	fi
	;;
*)
	echo "daemon.sh: unknown command $cmd (start, stop or host)" >&2
	exit 2
	;;
esac
