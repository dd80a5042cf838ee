#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The local quickstart (`make demo`): migrate a running 512 MiB guest over
# loopback TCP with postcopy, show both sides' state events as they happen,
# a summary of each side, and verify the guest on the destination.
#
#   examples/quickstart.sh [SIZE]       (programs from $MIG_BIN or $PATH)
set -euo pipefail

size=${1:-512M}
[ -n "${MIG_BIN:-}" ] && PATH=$MIG_BIN:$PATH
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

# wait_ready FIFO: the daemon writes a newline there once it listens
wait_ready() { read -r -t 20 _ <"$1"; }

echo "== starting a $size guest (workload ab, 1 vCPU) on the 'source'"
mkfifo "$dir/g.ready" "$dir/r.ready" "$dir/s.ready"
mig-guest --ctl "$dir/src.ctl" --ram "$size" --workload ab --vcpus 1 \
	--ready-fd 3 3>"$dir/g.ready" &
pids+=($!)
wait_ready "$dir/g.ready"
sleep 0.5
echo "   guest progress: $(mig-guest info --ctl "$dir/src.ctl" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["progress"])') page writes"

echo "== destination listening on tcp:127.0.0.1:$port"
mig-recv --name demo --listen "tcp:127.0.0.1:$port" --guest-ctl "$dir/dst.ctl" \
	--summary --ready-fd 3 3>"$dir/r.ready" &
pids+=($!)
recv_pid=$!
wait_ready "$dir/r.ready"
mig-status --name demo --side destination --watch &
pids+=($!)

echo "== migrating (postcopy)"
mig-send --name demo --guest "$dir/src.ctl" --to "tcp:127.0.0.1:$port" --postcopy \
	--summary --ready-fd 3 3>"$dir/s.ready" &
send_pid=$!
pids+=($send_pid)
wait_ready "$dir/s.ready"
mig-status --name demo --side source --watch || true
wait "$send_pid"
wait "$recv_pid"

echo "== the guest runs on the destination"
p1=$(mig-guest info --ctl "$dir/dst.ctl" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["progress"])')
sleep 0.3
p2=$(mig-guest info --ctl "$dir/dst.ctl" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["progress"])')
echo "   progress $p1 -> $p2 page writes"
echo "== verification"
mig-guest verify --ctl "$dir/dst.ctl"
