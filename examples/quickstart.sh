#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The local quickstart (`make demo`): migrate a running 512 MiB guest over
# loopback TCP with postcopy, then show both sides' state events as one
# stream in time order, a summary of each side, and verify the guest on the
# destination. A failed migration ends here, with the guest not verified:
# the source's guest is never the one checked.
#
#   examples/quickstart.sh [SIZE]       (programs from $MIG_BIN or $PATH)
set -euo pipefail

size=${1:-512M}
[ -n "${MIG_BIN:-}" ] && PATH=$MIG_BIN:$PATH

# Both guests and the source's dirty tracking need userfaultfd: say how to
# get it in one line now, rather than as every program's error later.
uffd_permitted() {
	[ "$(id -u)" -eq 0 ] ||
		[ "$(cat /proc/sys/vm/unprivileged_userfaultfd 2>/dev/null)" = 1 ] ||
		{ [ -r /dev/userfaultfd ] && [ -w /dev/userfaultfd ]; }
}
if ! uffd_permitted; then
	u=$(id -un)
	echo "quickstart: userfaultfd is not permitted for $u: run as root, or 'sudo sysctl vm.unprivileged_userfaultfd=1', or give $u read-write access to /dev/userfaultfd ('sudo setfacl -m u:$u:rw /dev/userfaultfd')" >&2
	exit 69
fi

dir=$(mktemp -d /tmp/mig-demo.XXXXXX)
export MIG_RUNTIME_DIR=$dir/run
mkdir -p "$MIG_RUNTIME_DIR"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
pids=()

cleanup() {
	mig-guest quit --ctl "$dir/dst.ctl" >/dev/null 2>&1 || true
	mig-guest quit --ctl "$dir/src.ctl" >/dev/null 2>&1 || true
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT

fail() { echo "quickstart: $*" >&2; exit 1; }

# wait_ready NAME: the daemon writes a newline to $dir/NAME.ready once it
# listens; if it exits first instead, show its log.
wait_ready() {
	read -r -t 20 _ <"$dir/$1.ready" && return 0
	cat "$dir/$1.log" >&2 2>/dev/null || true
	fail "$1 did not start"
}

progress() { mig-guest info --ctl "$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["progress"])'; }

echo "== starting a $size guest (workload ab, 1 vCPU) on the 'source'"
mkfifo "$dir/guest.ready" "$dir/mig-recv.ready" "$dir/mig-send.ready"
mig-guest --ctl "$dir/src.ctl" --ram "$size" --workload ab --vcpus 1 \
	--ready-fd 3 3>"$dir/guest.ready" >"$dir/guest.log" 2>&1 &
pids+=($!)
wait_ready guest
sleep 0.5
echo "   guest progress: $(progress "$dir/src.ctl") page writes"

echo "== destination listening on tcp:127.0.0.1:$port"
mig-recv --name demo --listen "tcp:127.0.0.1:$port" --guest-ctl "$dir/dst.ctl" \
	--summary --linger 1 --ready-fd 3 3>"$dir/mig-recv.ready" >"$dir/mig-recv.log" 2>&1 &
recv_pid=$!
pids+=("$recv_pid")
wait_ready mig-recv

echo "== migrating (postcopy)"
# --linger: both buses outlive the migration a moment, so that the watcher
# below sees each side's whole history even when a small guest is done first.
mig-send --name demo --guest "$dir/src.ctl" --to "tcp:127.0.0.1:$port" --postcopy \
	--summary --linger 1 --ready-fd 3 3>"$dir/mig-send.ready" >"$dir/mig-send.log" 2>&1 &
send_pid=$!
pids+=("$send_pid")
wait_ready mig-send
# both sides run here: one watcher follows both buses until both have ended
mig-status --name demo --watch >"$dir/events" 2>&1 &
watch_pid=$!
pids+=("$watch_pid")
send_rc=0 recv_rc=0
wait "$send_pid" || send_rc=$?
wait "$recv_pid" || recv_rc=$?
wait "$watch_pid" || true

echo "== both sides' events, in time order"
# each line starts with its event's UTC timestamp, of fixed width
LC_ALL=C sort -s -k1,1 "$dir/events"
echo "== summary"
cat "$dir/mig-recv.log" "$dir/mig-send.log"
if [ "$send_rc" -ne 0 ] || [ "$recv_rc" -ne 0 ]; then
	fail "the migration failed (mig-send exit $send_rc, mig-recv exit $recv_rc); the guest is not verified"
fi

echo "== the guest runs on the destination"
p1=$(progress "$dir/dst.ctl")
sleep 0.3
p2=$(progress "$dir/dst.ctl")
echo "   progress $p1 -> $p2 page writes"
echo "== verification"
mig-guest verify --ctl "$dir/dst.ctl"
