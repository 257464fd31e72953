#!/usr/bin/env bash
# Make a Docker daemon answer on this machine, the execloop way (idempotent; run as root):
#   1. install Debian's docker.io (plus debootstrap and bubblewrap) when they are missing;
#   2. start `dockerd --bridge=none --iptables=false --ip-forward=false` when no daemon
#      answers: sandboxes never need a network, so no bridge and no firewall rules are made;
#   3. wait until it answers (60 s at most).
# Then build the images with: python -m execloop.images build
set -euo pipefail

LOG=${EXECLOOP_DOCKERD_LOG:-/var/log/execloop-dockerd.log}
SOCK=/var/run/docker.sock
PIDFILE=/var/run/docker.pid
WAIT_SECONDS=60

say() { echo "docker-up: $*"; }
die() { echo "docker-up: error: $*" >&2; exit 1; }

[[ $EUID -eq 0 ]] || die "run me as root (I install packages and start dockerd)"

# --- 1. packages -------------------------------------------------------------------------
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v bwrap >/dev/null || missing+=(bubblewrap)
if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    # Forbid the package scripts from starting dockerd themselves: they would start it with
    # the default bridge network. A policy-rc.d that already exists is left alone.
    made_policy=
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    trap '[[ -n $made_policy ]] && rm -f /usr/sbin/policy-rc.d' EXIT
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
    [[ -n $made_policy ]] && rm -f /usr/sbin/policy-rc.d
    trap - EXIT
else
    say "dockerd, debootstrap and bwrap are installed"
fi

# --- 2. daemon ---------------------------------------------------------------------------
answers() {
    if command -v curl >/dev/null; then
        [[ $(curl -fsS --max-time 2 --unix-socket "$SOCK" http://localhost/_ping 2>/dev/null) == OK ]]
    else
        timeout 5 docker info >/dev/null 2>&1
    fi
}

if answers; then
    say "the Docker daemon already answers on $SOCK"
    exit 0
fi

running_pid=
if [[ -s $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    running_pid=$(cat "$PIDFILE")
    say "dockerd (pid $running_pid) is running but not answering yet; waiting for it"
else
    # A pid file left by a dead daemon makes dockerd refuse to start.
    rm -f "$PIDFILE"
    say "starting dockerd without a bridge network (log: $LOG)"
    # setsid + nohup: the daemon outlives this script and its terminal.
    setsid nohup dockerd --bridge=none --iptables=false --ip-forward=false \
        >>"$LOG" 2>&1 </dev/null &
    running_pid=$!
fi

# --- 3. wait -----------------------------------------------------------------------------
for ((i = 0; i < WAIT_SECONDS; i++)); do
    if answers; then
        say "the Docker daemon answers (pid $running_pid)"
        exit 0
    fi
    kill -0 "$running_pid" 2>/dev/null || break
    sleep 1
done
echo "docker-up: error: dockerd did not answer within ${WAIT_SECONDS} s; last lines of $LOG:" >&2
tail -n 30 "$LOG" >&2 || true
exit 1
