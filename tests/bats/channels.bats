#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# Several background streams (mig-send --channels N, the bus parameter
# multifd-channels): main and N-1 bulk channels carry the pump's pages in
# postcopy, each page once; the preempt channel keeps the requested ones.
# They complete and verify over tcp and unix, through pause and recovery,
# an engine kill, a bulk channel that cannot be made, and strangers'
# bulk channels. Connections are counted by tests/helpers/proxy.py (in
# order: main, preempt, then bulk channels 1, 2...).

load ../helpers/common

BATS_TEST_TIMEOUT=${BATS_TEST_TIMEOUT:-180}

setup() {
	mig_setup
	require_uffd
	DPORT=$(free_port)
	DST=tcp:127.0.0.1:$DPORT
	SRC_BUS=$(bus_of m send)
	DST_BUS=$(bus_of m recv)
	PROXY=$BATS_TEST_DIRNAME/../helpers/proxy.py
	FAKE=$BATS_TEST_DIRNAME/../helpers/fakepeer.py
}
teardown() { mig_teardown; }

# busy_guest SIZE: the source's guest, every page written.
busy_guest() {
	guest src "$1" --workload ab
	guest_wrote "$T/src.ctl" $(($(numfmt --from=iec "$1") / 4096))
}
# slow_guest SIZE: the source's guest, its RAM filled with data (every
# fourth page zero) and no vCPU: at send_to's 16M/s a migration then lasts
# seconds however fast the machine, where a busy vCPU asking for every
# page it meets may fetch all of a small guest itself in one or two.
slow_guest() { guest src "$1" --workload idle; }

recv_at() { start recv mig-recv --name m --listen "$1" --guest-ctl "$T/dst.ctl" --link-timeout 2; }

# send_to URI [ARGS]: postcopy from the start, the pump throttled so that
# the test can look at the migration while it runs.
send_to() {
	local to=$1; shift
	start send mig-send --postcopy --name m --guest "$T/src.ctl" --to "$to" \
		--link-timeout 2 --max-bandwidth 16M "$@"
}

# proxy PORT [proxy.py options]: forwards PORT to the destination's DPORT.
proxy() {
	local port=$1; shift
	start px "$PROXY" "tcp:127.0.0.1:$port" "$DST" "$@"
}
connections() { grep -c '^proxy: connection [0-9]* accepted$' "$T/px.log" || true; }

ram_field() { mig-status --bus "$1" --json 3>&- | jq -r ".ram.\"$2\" // 0"; }
bulk_grows() { [ "$(ram_field "$1" multifd-bytes)" -gt "$2" ]; }
# bulk_flows BUS: bytes cross the bulk channels (multifd-bytes grows).
bulk_flows() {
	local b; b=$(ram_field "$1" multifd-bytes)
	wait_for 20 "multifd-bytes on $1 to grow past $b" bulk_grows "$1" "$b"
}

# finish: the pump at full speed, both engines exit 0, the guest verifies
# on the destination and is all that is left running.
# via_proxy CHANNELS [proxy.py options]: a 128M slow guest migrated with
# --channels CHANNELS (empty: the default) through the proxy at $VIA.
via_proxy() {
	local n=$1; shift
	VIA=tcp:127.0.0.1:$(free_port)
	slow_guest 128M
	recv_at "$DST"
	proxy "${VIA##*:}" "$@"
	send_to "$VIA" ${n:+--channels "$n"}
}

# pause_recover: paused on the source's bus, recovered through $VIA.
pause_recover() {
	expect 0 mig-pause --bus "$SRC_BUS"
	state "$DST_BUS" postcopy-paused
	recover_via
}
recover_via() {
	expect 75 mig-recover --bus "$DST_BUS" --listen "$DST" --timeout 0.5
	expect 0 mig-recover --bus "$SRC_BUS" --to "$VIA" --timeout 20
	bulk_flows "$DST_BUS"
}

finish() {
	set_bandwidth "$SRC_BUS" 0
	finish_and_verify
	wait_only_running 5 "$(guest_json "$T/dst.ctl" .pid)" ${PID_px:+"$PID_px"}
}

@test "--channels 3 over tcp: main and two bulk channels carry pages, completes and verifies" {
	via_proxy 3
	state "$SRC_BUS" postcopy-active
	wait_for 20 "multifd-bytes on the source" bulk_grows "$SRC_BUS" 0
	wait_for 20 "multifd-bytes on the destination" bulk_grows "$DST_BUS" 0
	[ "$(connections)" -eq 4 ]
	[ "$(mig-status --bus "$SRC_BUS" --json 3>&- |
		jq -r '.ram."multifd-bytes" < .ram.transferred')" = true ]
	finish
	[ "$(connections)" -eq 4 ]
}

@test "the default: one stream per two cores, two at least, four at most" {
	local n want
	n=$(nproc)
	want=$((n / 2 > 4 ? 4 : n / 2 < 2 ? 2 : n / 2))
	via_proxy ""
	[ "$(qmp_send "$SRC_BUS" '{"execute": "query-migrate-parameters", "id": 1}' |
		jq -r 'select(.id == 1) | .return."multifd-channels"')" = "$want" ]
	state "$SRC_BUS" postcopy-active
	bulk_flows "$DST_BUS"
	finish
	# main, preempt and the bulk channels
	[ "$(connections)" -eq $((want + 1)) ]
}

@test "--channels 4 over unix, without preempt: completes and verifies" {
	slow_guest 128M
	recv_at "unix:$T/dst.sock"
	send_to "unix:$T/dst.sock" --channels 4 --no-preempt
	state "$SRC_BUS" postcopy-active
	bulk_flows "$DST_BUS"
	finish
}

@test "pause and recovery with 3 channels; a recovery with multifd-channels 2; completes" {
	via_proxy 3
	state "$SRC_BUS" postcopy-active
	bulk_flows "$DST_BUS"
	pause_recover
	[ "$(connections)" -eq 8 ]
	# the parameter is the next connection's: the running one keeps its 3
	qmp_ok "$SRC_BUS" migrate-set-parameters '{"multifd-channels": 2}'
	[ "$(qmp_send "$SRC_BUS" '{"execute": "query-migrate-parameters", "id": 1}' |
		jq -r 'select(.id == 1) | .return."multifd-channels"')" = 2 ]
	bulk_flows "$DST_BUS"
	[ "$(connections)" -eq 8 ]
	pause_recover
	[ "$(connections)" -eq 11 ]
	finish
}

@test "a bulk channel that cannot be made after switchover pauses; the recovery completes" {
	via_proxy 2 --refuse 3
	state "$SRC_BUS" postcopy-paused
	state "$DST_BUS" postcopy-paused
	recover_via
	finish
}

@test "kill -9 of mig-send with 3 channels: restarted with --resume, completes" {
	slow_guest 128M
	recv_at "unix:$T/dst.sock"
	send_to "unix:$T/dst.sock" --channels 3
	state "$SRC_BUS" postcopy-active
	bulk_flows "$DST_BUS"
	kill9 send
	state "$DST_BUS" postcopy-paused
	expect 75 mig-recover --bus "$DST_BUS" --listen "unix:$T/dst.sock" --timeout 0.5
	start send mig-send --name m --guest "$T/src.ctl" --resume --link-timeout 2 \
		--max-bandwidth 16M --channels 3
	state "$SRC_BUS" postcopy-active
	bulk_flows "$DST_BUS"
	finish
}

@test "strangers' bulk channels are refused: one taken, one not announced" {
	slow_guest 128M
	recv_at "$DST"
	send_to "$DST" --channels 2
	state "$SRC_BUS" postcopy-active
	bulk_flows "$DST_BUS"
	local uuid; uuid=$(mig-status --bus "$DST_BUS" --json 3>&- | jq -r '."x-uuid"')
	expect 3 "$FAKE" bulk "$DST" "$uuid" 1
	says "refused 4 "
	expect 3 "$FAKE" bulk "$DST" "$uuid" 5
	says "refused 4 "
	bulk_flows "$DST_BUS"
	[ "$(history "$DST_BUS")" = "setup active postcopy-active" ]
	finish
}

@test "requested pages sent again late, on another channel, never undo the vCPU's writes" {
	busy_guest 128M
	recv_at "$DST"
	MIG_FAULT=late-duplicates send_to "$DST" --channels 2
	state "$SRC_BUS" postcopy-active
	dup() { [ "$(ram_field "$DST_BUS" x-duplicate-pages)" -gt 0 ]; }
	wait_for 30 "late duplicates to reach the destination" dup
	finish
}

# The pump faster than a vCPU that asks for every page, slower than one
# that finds them all here: the vCPU (writing every page in turn) keeps
# running into the runs on their way in. Each page it faults on there is
# placed at once from the receiver's buffer, with the next few; the
# receiver's own placement of them, refused, is no page twice (counted
# below the pages of RAM: never an undercount that wraps). The guest
# verifies: no write of the vCPU's was undone by the later placement.
@test "a vCPU at the pumps' front takes its pages from the receivers' hand: its writes kept" {
	busy_guest 512M
	recv_at "$DST"
	send_to "$DST" --channels 2
	set_bandwidth "$SRC_BUS" $((128 << 20))
	state "$SRC_BUS" postcopy-active
	taken() { [ "$(ram_field "$DST_BUS" x-pages-from-hand)" -ge 64 ]; }
	wait_for 30 "64 pages taken from a receiver's hand" taken
	[ "$(ram_field "$DST_BUS" x-duplicate-pages)" -lt $((512 << 8)) ]
	finish
}

# A stream that stalls now and then, mid-run (the proxy stops forwarding
# the bulk channel for 1 s after every 200 kB, three times, as a link that
# loses a segment waits out TCP's retransmission timeout): a vCPU faulting
# on a page of a run in a receiver's hand, its bytes behind the stall, is
# not left waiting there. Past 2 ms the page is asked for on the preempt
# channel (which flows) as well; the copy that comes second, either one,
# is refused, and the guest verifies: none of its writes undone. The
# stalls are long, so that the vCPU comes round to the run in hand before
# one ends: with 0.2 s, one CI run saw three stalls and the migration end
# with nothing asked for again.
@test "a page held up in a stalled stream is asked for again: the vCPU does not wait on the stall" {
	VIA=tcp:127.0.0.1:$(free_port)
	busy_guest 128M
	recv_at "$DST"
	proxy "${VIA##*:}" --stall 3:200000:1:3
	send_to "$VIA" --channels 2
	state "$SRC_BUS" postcopy-active
	hedged() { [ "$(ram_field "$DST_BUS" x-hedged-requests)" -gt 0 ]; }
	wait_for 30 "a page in a receiver's hand asked for again" hedged
	finish
}

# A slow link is not a broken one: main and the bulk channel move 100 kB
# per 0.5 s for 8 s (the proxy stalls them), far less than the 4 MiB the
# sockets buffer. A send then waits seconds for room, but the link moves
# all along, and --link-timeout 2 must not count that wait as silence.
@test "a slow link that moves is not a broken one: no pause while it crawls" {
	VIA=tcp:127.0.0.1:$(free_port)
	slow_guest 64M
	recv_at "$DST"
	proxy "${VIA##*:}" --stall 1:100000:0.5:16 --stall 3:100000:0.5:16
	send_to "$VIA" --channels 2
	state "$SRC_BUS" postcopy-active
	crawled() { [ "$(grep -c '^proxy: connection 3 stalled' "$T/px.log")" -ge 16 ]; }
	wait_for 30 "16 stalls of the bulk channel" crawled
	[ "$(history "$SRC_BUS")" = "setup active postcopy-active" ]
	[ "$(history "$DST_BUS")" = "setup active postcopy-active" ]
	finish
}

# thread PID NAME: "policy nice slice_ns" of PID's thread named NAME
# (policy 0 normal, 3 batch; slice "-" where the kernel does not show it).
thread() {
	local t
	for t in /proc/"$1"/task/*; do
		[ "$(cat "$t/comm")" = "$2" ] || continue
		printf '%s %s ' "$(stat_field "${t##*/}" 41)" "$(stat_field "${t##*/}" 19)"
		awk '/^se.slice/ { s = $3 } END { print s == "" ? "-" : s }' "$t/sched" 2>/dev/null ||
			echo -
		return 0
	done
	echo "no thread $2 in $(cat /proc/"$1"/task/*/comm | tr '\n' ' ')" >&2
	return 1
}

# urgent PID NAME: a latency-critical thread, 10 less nice than its
# engine where this user may raise it, with the shortest slice where
# the kernel takes one (6.12); bulk PID NAME: SCHED_BATCH, 5 nicer.
urgent() {
	local s base kver; s=$(thread "$1" "$2") || return 1
	base=$(stat_field "$1" 19)
	kver=$(uname -r | awk -F'[.-]' '{ print $1 * 1000 + $2 }')
	read -r policy nice slice <<<"$s"
	[ "$policy" = 0 ] || { echo "$2: policy $policy" >&2; return 1; }
	if [ "$(id -u)" = 0 ]; then
		[ "$nice" = $((base - 10 < -20 ? -20 : base - 10)) ] ||
			{ echo "$2: nice $nice, engine $base" >&2; return 1; }
	fi
	[ "$slice" = - ] || [ "$kver" -lt 6012 ] || [ "$slice" = 100000 ] ||
		{ echo "$2: slice $slice" >&2; return 1; }
}
bulk() {
	local s base; s=$(thread "$1" "$2") || return 1
	base=$(stat_field "$1" 19)
	read -r policy nice _ <<<"$s"
	[ "$policy" = 3 ] && [ "$nice" = $((base + 5 > 19 ? 19 : base + 5)) ] ||
		{ echo "$2: policy, nice, slice: $s; engine nice $base" >&2; return 1; }
}

@test "engine threads are named; faults and requests are urgent, the pumps bulk work" {
	busy_guest 256M
	recv_at "$DST"
	send_to "$DST" --channels 2
	state "$SRC_BUS" postcopy-active
	wait_for 20 "multifd-bytes on the destination" bulk_grows "$DST_BUS" 0
	urgent "$PID_recv" mig-fault
	urgent "$PID_recv" mig-rx/preempt
	urgent "$PID_send" mig-return
	# urgent for a moment while a vCPU waits on bytes they are to read
	wait_for 10 "mig-rx/main as bulk work" bulk "$PID_recv" mig-rx/main
	wait_for 10 "mig-rx/bulk1 as bulk work" bulk "$PID_recv" mig-rx/bulk1
	bulk "$PID_send" mig-pump/main
	bulk "$PID_send" mig-pump/bulk1
	finish
}
