#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Two "hosts" on one machine: a source and a destination network namespace
# joined by a veth pair, a real link that this script cuts in the middle of
# postcopy. Both sides notice the silence (no reset crosses a downed link:
# only the heartbeat's --link-timeout tells them), pause, keep every page;
# the link comes back, mig-recover is run on both "hosts" as cron would, the
# migration completes and the guest is verified on the destination.
#
#   examples/netns-two-hosts.sh [--size SIZE] [--max-bandwidth RATE] [--keep] [SIZE]
#
#   --size SIZE           guest RAM (default 1G; also $MIG_SIZE)
#   --max-bandwidth RATE  the source's background pump (default: a tenth of
#                         SIZE per second, so postcopy lasts long enough to
#                         be cut; also $MIG_BANDWIDTH)
#   --keep                leave the namespaces, processes and logs in place
#
# Programs come from $MIG_BIN or $PATH. Needs root and iproute2; exits 77
# (skip) when network namespaces cannot be made. Each "host" has its own
# MIG_RUNTIME_DIR; the bus sockets are UNIX sockets on the shared
# filesystem, so mig-status, mig-pause and mig-recover run from here with
# --bus, whatever namespace the engine is in.
set -euo pipefail

usage() { sed -n '/^#   examples/,/^# --bus/s/^# \{0,1\}//p' "$0"; }

size=${MIG_SIZE:-1G}
bandwidth=${MIG_BANDWIDTH:-}
keep=0
while [ $# -gt 0 ]; do
	case $1 in
	--size) size=${2:?--size needs a SIZE}; shift 2 ;;
	--size=*) size=${1#*=}; shift ;;
	--max-bandwidth) bandwidth=${2:?--max-bandwidth needs a RATE}; shift 2 ;;
	--max-bandwidth=*) bandwidth=${1#*=}; shift ;;
	--keep) keep=1; shift ;;
	-h|--help) usage; exit 0 ;;
	-*) echo "netns-two-hosts: unknown option '$1'" >&2; usage >&2; exit 64 ;;
	*) size=$1; shift ;;
	esac
done
[ -n "${MIG_BIN:-}" ] && PATH=$MIG_BIN:$PATH

t0=$(date +%s%N)
say() { local t; t=$(( ($(date +%s%N) - t0) / 10000000 )); printf '[%3d.%02ds] %s\n' $((t / 100)) $((t % 100)) "$*"; }
die() { say "FAILED: $*" >&2; failed=1; exit 1; }
skip() { echo "netns-two-hosts: skipped: $*" >&2; exit 77; }

# bytes SIZE: 1G -> 1073741824
bytes() {
	local n=${1%[KkMmGgTt]} u=${1##*[0-9]}
	case $u in
	K|k) echo $((n << 10)) ;; M|m) echo $((n << 20)) ;;
	G|g) echo $((n << 30)) ;; T|t) echo $((n << 40)) ;; *) echo "$n" ;;
	esac
}
[[ $size =~ ^[0-9]+[KkMmGgTt]?$ ]] || { echo "netns-two-hosts: bad SIZE '$size'" >&2; exit 64; }
if [ -z "$bandwidth" ]; then
	bandwidth=$(( $(bytes "$size") / 10 >> 20 ))M
	[ "$bandwidth" != 0M ] || bandwidth=1M
fi

# --- can we make namespaces at all? ---------------------------------------
[ "$(id -u)" -eq 0 ] || skip "needs root (network namespaces)"
command -v ip >/dev/null || skip "needs iproute2 (ip)"
for p in mig-guest mig-send mig-recv mig-status mig-recover; do
	command -v "$p" >/dev/null || { echo "netns-two-hosts: $p not found (set MIG_BIN)" >&2; exit 69; }
done

# Unique per run, so parallel runs never clash; interface names <= 15 chars.
ns_src=migsrc$$ ns_dst=migdst$$
veth_src=migvs$$ veth_dst=migvd$$
net=10.77.$(($$ % 200 + 20))
ip_src=$net.1 ip_dst=$net.2
name=netns
dir=$(mktemp -d /tmp/mig-netns.XXXXXX)
src_bus=$dir/src/$name.send.sock
dst_bus=$dir/dst/$name.recv.sock
pids=()
failed=0
made_ns=()

cleanup() {
	local rc=$? ns p
	[ "$rc" -eq 0 ] || failed=1
	if [ "$keep" -eq 1 ]; then
		echo "--keep: namespaces ${made_ns[*]:-none}, logs and sockets in $dir"
		return
	fi
	if [ "$failed" -eq 1 ]; then
		for f in "$dir"/*.log; do
			[ -s "$f" ] || continue
			echo "--- $(basename "$f") (last lines)" >&2
			tail -n 15 "$f" >&2
		done
	fi
	mig-guest quit --ctl "$dir/dst.ctl" >/dev/null 2>&1 || true
	mig-guest quit --ctl "$dir/src.ctl" >/dev/null 2>&1 || true
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	# Everything that runs in our namespaces is ours (the guest mig-recv
	# spawned too, in its own session): TERM, a moment, then KILL.
	for ns in "${made_ns[@]}"; do
		for p in $(ip netns pids "$ns" 2>/dev/null); do kill "$p" 2>/dev/null || true; done
	done
	for _ in $(seq 20); do
		local left=
		for ns in "${made_ns[@]}"; do left+=$(ip netns pids "$ns" 2>/dev/null); done
		[ -z "$left" ] && break
		sleep 0.1
	done
	for ns in "${made_ns[@]}"; do
		for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
	done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	# and nothing of ours outside them either (every path of ours is in $dir)
	for _ in $(seq 20); do pgrep -f "$dir/" >/dev/null || break; sleep 0.1; done
	# deleting a namespace destroys the veth end in it, and with it the pair
	for ns in "${made_ns[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# alive PID WHAT: fail at once, with the logs, if a daemon has died
alive() { kill -0 "$1" 2>/dev/null || die "$2 exited early"; }
# wait_ready FIFO PID WHAT: its newline once it listens, bounded
wait_ready() { read -r -t 20 _ <"$1" || { alive "$2" "$3"; die "$3 did not become ready"; }; }
state_of() { mig-status --bus "$1" --json 2>/dev/null | sed -n 's/.*"status": *"\([a-z-]*\)".*/\1/p' | head -n1; }
in_src() { ip netns exec "$ns_src" "$@"; }
in_dst() { ip netns exec "$ns_dst" "$@"; }

# --- two "hosts" and a wire between them ----------------------------------
say "== two hosts: namespaces $ns_src and $ns_dst, veth $veth_src <-> $veth_dst"
ip netns add "$ns_src" 2>/dev/null || skip "cannot create network namespaces (ip netns add failed)"
made_ns+=("$ns_src")
ip netns add "$ns_dst" 2>/dev/null || skip "cannot create network namespaces (ip netns add failed)"
made_ns+=("$ns_dst")
ip link add "$veth_src" netns "$ns_src" type veth peer name "$veth_dst" netns "$ns_dst" ||
	skip "cannot create a veth pair"
in_src ip link set lo up
in_dst ip link set lo up
in_src ip addr add "$ip_src/24" dev "$veth_src"
in_dst ip addr add "$ip_dst/24" dev "$veth_dst"
in_src ip link set "$veth_src" up
in_dst ip link set "$veth_dst" up
say "   source      $ip_src/24 on $veth_src (MIG_RUNTIME_DIR=$dir/src)"
say "   destination $ip_dst/24 on $veth_dst (MIG_RUNTIME_DIR=$dir/dst)"
mkdir -p "$dir/src" "$dir/dst"
mkfifo "$dir/g.ready" "$dir/r.ready" "$dir/s.ready"

# --- the guest, the listener, the migration -------------------------------
say "== source: a $size guest (workload ab, 1 vCPU)"
MIG_RUNTIME_DIR=$dir/src in_src mig-guest --ctl "$dir/src.ctl" --ram "$size" \
	--workload ab --vcpus 1 --ready-fd 3 3>"$dir/g.ready" >"$dir/guest.log" 2>&1 &
guest_pid=$!
pids+=("$guest_pid")
wait_ready "$dir/g.ready" "$guest_pid" mig-guest
# Let the vCPU write every page at least once first: pages never written are
# zero pages, which cross the link as flags, and postcopy would be over
# before there is anything to cut.
progress() { mig-guest info --ctl "$1" --json | sed -n 's/.*"progress": *\([0-9]*\).*/\1/p'; }
pages=$(( $(bytes "$size") / 4096 ))
for _ in $(seq 600); do
	[ "$(progress "$dir/src.ctl")" -ge $((2 * pages)) ] && break
	alive "$guest_pid" mig-guest
	sleep 0.1
done
say "   guest progress: $(progress "$dir/src.ctl") page writes ($pages pages, each written at least once)"

# The link crosses a network: TLS with a pre-shared key, which the two
# hosts would share once (scp), as QEMU's keys.psk.
say "== a TLS pre-shared key for both hosts: $dir/keys.psk"
(umask 077; printf 'mig:%s\n' "$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')" >"$dir/keys.psk")

say "== destination: mig-recv --listen tcp:$ip_dst:4444 --link-timeout 2 --tls-psk keys.psk"
MIG_RUNTIME_DIR=$dir/dst in_dst mig-recv --name "$name" --listen "tcp:$ip_dst:4444" \
	--guest-ctl "$dir/dst.ctl" --link-timeout 2 --tls-psk "$dir/keys.psk" --summary \
	--ready-fd 3 3>"$dir/r.ready" >"$dir/recv.log" 2>&1 &
recv_pid=$!
pids+=("$recv_pid")
wait_ready "$dir/r.ready" "$recv_pid" mig-recv

say "== source: mig-send --postcopy --to tcp:$ip_dst:4444 --link-timeout 2 --tls-psk keys.psk --max-bandwidth $bandwidth"
MIG_RUNTIME_DIR=$dir/src in_src mig-send --name "$name" --guest "$dir/src.ctl" \
	--to "tcp:$ip_dst:4444" --postcopy --link-timeout 2 --tls-psk "$dir/keys.psk" \
	--max-bandwidth "$bandwidth" --summary \
	--ready-fd 3 3>"$dir/s.ready" >"$dir/send.log" 2>&1 &
send_pid=$!
pids+=("$send_pid")
wait_ready "$dir/s.ready" "$send_pid" mig-send

# Both sides' events as they happen, from the root namespace over --bus.
for side in src:"$src_bus" dst:"$dst_bus"; do
	mig-status --bus "${side#*:}" --watch --json 2>/dev/null |
		while IFS= read -r line; do
			s=$(printf '%s\n' "$line" | sed -n 's/.*"event": *"MIGRATION".*"status": *"\([a-z-]*\)".*/\1/p')
			[ -n "$s" ] && say "   ${side%%:*} -> $s"
		done &
	pids+=($!)
done

mig-status --bus "$src_bus" --wait-for postcopy-active --timeout 30 >/dev/null ||
	die "the source never reached postcopy-active (now: $(state_of "$src_bus"))"
sleep 0.3
say "== postcopy runs: the guest now runs on the destination, pages follow"

# --- cut the wire ---------------------------------------------------------
say "== CUT: ip link set $veth_src down (in $ns_src); no reset crosses a downed link"
in_src ip link set "$veth_src" down
cut=$SECONDS
mig-status --bus "$src_bus" --wait-for postcopy-paused --timeout 20 >/dev/null ||
	die "the source did not pause (now: $(state_of "$src_bus"))"
mig-status --bus "$dst_bus" --wait-for postcopy-paused --timeout 20 >/dev/null ||
	die "the destination did not pause (now: $(state_of "$dst_bus"))"
sleep 0.2 # let the event lines above come first
say "== both sides postcopy-paused after ~$((SECONDS - cut))s of silence; mig-send and mig-recv keep every page"
alive "$send_pid" mig-send
alive "$recv_pid" mig-recv
sleep 1

# --- restore and recover --------------------------------------------------
say "== link restored: ip link set $veth_src up"
in_src ip link set "$veth_src" up

recovered=0
for attempt in 1 2 3 4 5; do
	# the destination (re-)arms first; 75 is normal: nobody connected yet
	rc=0
	mig-recover --bus "$dst_bus" --listen "tcp:$ip_dst:4445" --timeout 1 -q 2>>"$dir/recover.log" || rc=$?
	say "   destination: mig-recover --listen tcp:$ip_dst:4445 -> exit $rc$([ $rc -eq 75 ] && echo ' (armed, waiting for the source)')"
	case $rc in 0|75) ;; *) die "mig-recover --listen exited $rc" ;; esac
	rc=0
	mig-recover --bus "$src_bus" --to "tcp:$ip_dst:4445" --timeout 20 -q 2>>"$dir/recover.log" || rc=$?
	say "   source: mig-recover --to tcp:$ip_dst:4445 (attempt $attempt) -> exit $rc$([ $rc -eq 75 ] && echo ' (still paused, retrying)')"
	case $rc in
	0) recovered=1; break ;;
	75) sleep $((attempt * 2)) ;;
	*) die "mig-recover --to exited $rc" ;;
	esac
done
[ "$recovered" -eq 1 ] || die "still paused after $attempt recovery attempts"
sleep 0.1
say "== recovered: the source re-sends every page the destination lacks"

# --- completion and verification ------------------------------------------
for _ in $(seq 1200); do kill -0 "$send_pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$send_pid" 2>/dev/null && die "mig-send still running 120s after recovery (now: $(state_of "$src_bus"))"
rc=0; wait "$send_pid" || rc=$?
[ "$rc" -eq 0 ] || die "mig-send exited $rc"
for _ in $(seq 300); do kill -0 "$recv_pid" 2>/dev/null || break; sleep 0.1; done
rc=0; wait "$recv_pid" || rc=$?
[ "$rc" -eq 0 ] || die "mig-recv exited $rc"
say "== completed: mig-send and mig-recv exited 0"
sed 's/^/   /' "$dir/send.log" "$dir/recv.log" | grep -i -E 'summary|completed|MiB|pages' | head -n 4 || true

p1=$(progress "$dir/dst.ctl")
sleep 0.3
p2=$(progress "$dir/dst.ctl")
say "== the guest runs on the destination: progress $p1 -> $p2 page writes"
mig-guest verify --ctl "$dir/dst.ctl" || die "the guest's invariant is broken on the destination"
say "== OK: paused on a cut link, recovered, completed, verified"
