#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# The preempt channel is connected asynchronously (doc/design.md, the channels): the
# bus answers while its connect is pending; if it cannot be made at postcopy
# start the migration fails with the guest whole on the source; if it cannot
# be made at recovery the migration stays paused and a later recovery
# completes. Links misbehave through tests/helpers/proxy.py, which holds or
# refuses chosen connections (the 1st is the main channel, the 2nd the
# preempt channel) and logs each one, so they can be counted. Every
# source here runs --channels 1: bulk channels would add to the counts.

load ../helpers/common

BATS_TEST_TIMEOUT=${BATS_TEST_TIMEOUT:-180}

setup() {
	mig_setup
	require_uffd
	DPORT=$(free_port)
	SRC_BUS=$(bus_of m send)
	DST_BUS=$(bus_of m recv)
	PROXY=$BATS_TEST_DIRNAME/../helpers/proxy.py
}
teardown() { mig_teardown; }

# proxy NAME PORT [proxy.py options]: listen on PORT, forward to the
# destination's DPORT; its log of connections is $T/NAME.log.
proxy() {
	local name=$1 port=$2; shift 2
	start "$name" "$PROXY" "tcp:127.0.0.1:$port" "tcp:127.0.0.1:$DPORT" "$@"
}

# stop_proxy NAME: SIGTERM, and it must exit cleanly (status 0) at once.
stop_proxy() {
	kill -TERM "$(pid_of "$1")"
	wait_exit "$1" 5
	[ "$status" -eq 0 ] || { echo "# proxy $1 exited with $status" >&2; return 1; }
}

# connections NAME: how many connections proxy NAME has accepted so far.
connections() { grep -c '^proxy: connection [0-9]* accepted$' "$T/$1.log" || true; }

# Answering, not speed: every query gets its answer while the preempt
# connection is still held, which it is until the test releases it (or for
# 20 s, which would show as "released" in the proxy's log before the end).
@test "the bus answers while the preempt connect is pending" {
	local port i out st
	port=$(free_port)
	guest src 128M --workload ab
	start recv mig-recv --name m --listen "tcp:127.0.0.1:$DPORT" --guest-ctl "$T/dst.ctl"
	# the 2nd connection, the preempt channel, is held silent until the
	# queries are done (SIGUSR1 to the proxy; 20 s at most): the source's
	# hello on it gets no answer until then (within its link timeout)
	proxy px "$port" --hold 2:20
	start send mig-send --name m --guest "$T/src.ctl" --to "tcp:127.0.0.1:$port" --postcopy --channels 1 \
		--link-timeout 30
	bg ws mig-status --bus "$SRC_BUS" --watch --json
	# main channel up, preempt pending: the engine waits for it in `active`
	state "$SRC_BUS" active 10
	wait_log px '^proxy: connection 2 held'
	for i in $(seq 5); do
		out=$(timeout 10 mig-status --bus "$SRC_BUS" --json 3>&-) ||
			{ echo "# query $i failed (status $?): $out" >&2; false; }
		st=$(echo "$out" | jq -r .status)
		[ "$st" = active ] || { echo "# query $i: state '$st', not active" >&2; false; }
	done
	# ...and all of that while the preempt connection was still held
	! grep -q '^proxy: connection 2 released' "$T/px.log" ||
		{ echo "# the hold ended before the queries did" >&2; false; }
	kill -USR1 "$(pid_of px)"
	finish_and_verify
	wait_exit ws 10
	events_match ws "setup active postcopy-active completed"
	[ "$(connections px)" -eq 2 ]
}

@test "preempt channel impossible at postcopy start: failed, source guest still running and verifies" {
	local port
	port=$(free_port)
	guest src 128M --workload ab
	start recv mig-recv --name m --listen "tcp:127.0.0.1:$DPORT" --guest-ctl "$T/dst.ctl"
	# the main connection is held until the watcher has attached (the
	# failure that follows is quick, and takes the bus with it), the
	# preempt one is refused
	proxy px "$port" --hold 1:20 --refuse-from 2
	start send mig-send --name m --guest "$T/src.ctl" --to "tcp:127.0.0.1:$port" --postcopy --channels 1
	bg ws mig-status --bus "$SRC_BUS" --watch --json
	wait_log ws '"status":"setup"'
	kill -USR1 "$(pid_of px)"
	wait_exit send 30
	[ "$status" -eq 1 ]
	grep -q 'error: engine: preempt channel' "$T/send.log"
	wait_exit ws 10
	# it never reached postcopy: the guest never left
	events_match ws "setup active failed"
	guest_runs "$T/src.ctl"
	verifies "$T/src.ctl"
	grep -q '^proxy: connection 2 refused' "$T/px.log"
	# the destination was told: it ends, and so does the guest it spawned
	wait_exit recv 20
	[ "$status" -ne 0 ]
	# nothing of the test is left but what it started itself: the
	# destination's guest is gone too
	wait_only_running 5 "$PID_src" "$PID_px"
	stop_proxy px
	expect 0 mig-guest quit --ctl "$T/src.ctl"
	wait_only_running 5
}

@test "preempt channel impossible at recovery: recover-setup -> paused; a later recovery completes" {
	local p1 p2 p3 before after
	p1=$(free_port)
	guest src 128M --workload ab
	start recv mig-recv --name m --listen "tcp:127.0.0.1:$DPORT" --guest-ctl "$T/dst.ctl" --link-timeout 2
	proxy px1 "$p1"
	# limited, so that it is still running when paused
	start send mig-send --name m --guest "$T/src.ctl" --to "tcp:127.0.0.1:$p1" --postcopy --channels 1 \
		--link-timeout 2 --max-bandwidth 16M
	bg ws mig-status --bus "$SRC_BUS" --watch --json
	bg wr mig-status --bus "$DST_BUS" --watch --json
	state "$SRC_BUS" postcopy-active
	# both sides: the guest's state has arrived (a pause while SWITCHOVER is
	# still in flight fails the destination: another matter)
	state "$DST_BUS" postcopy-active
	expect 0 mig-pause --bus "$SRC_BUS" --timeout 5
	state "$SRC_BUS" postcopy-paused
	state "$DST_BUS" postcopy-paused
	[ "$(connections px1)" -eq 2 ]
	stop_proxy px1

	# the main connection gets through, the preempt one never does
	p2=$(free_port)
	proxy px2 "$p2" --refuse-from 2
	expect 75 mig-recover --bus "$DST_BUS" --listen "tcp:127.0.0.1:$DPORT" --timeout 1
	before=$(history "$SRC_BUS")
	expect 75 mig-recover --bus "$SRC_BUS" --to "tcp:127.0.0.1:$p2" --timeout 20
	after=$(history "$SRC_BUS")
	[ "$after" = "$before postcopy-recover-setup postcopy-paused" ] ||
		{ echo "# before: $before; after: $after" >&2; false; }
	grep -q '^proxy: connection 1 accepted' "$T/px2.log"
	grep -q '^proxy: connection 2 refused' "$T/px2.log"
	# the destination saw a recovery's main channel, then the source gave
	# up: it must fall back to postcopy-paused, not stay in postcopy-recover
	state "$DST_BUS" postcopy-paused 15
	state "$SRC_BUS" postcopy-paused
	stop_proxy px2

	p3=$(free_port)
	proxy px3 "$p3"
	expect 75 mig-recover --bus "$DST_BUS" --listen "tcp:127.0.0.1:$DPORT" --timeout 1
	expect 0 mig-recover --bus "$SRC_BUS" --to "tcp:127.0.0.1:$p3" --timeout 20
	[ "$(connections px3)" -eq 2 ]
	set_bandwidth "$SRC_BUS" 0
	finish_and_verify
	wait_exit ws 10
	wait_exit wr 10
	events_match ws "setup active postcopy-active postcopy-paused postcopy-recover-setup postcopy-paused postcopy-recover-setup postcopy-recover postcopy-active completed"
	events_match wr "setup active postcopy-active postcopy-paused (postcopy-recover postcopy-paused )?postcopy-recover postcopy-active completed"
}

@test "--no-preempt uses one connection" {
	local port
	guest src1 64M --workload ab
	guest src2 64M --workload ab
	# --no-preempt: the main channel only
	port=$(free_port)
	start recv1 mig-recv --name n1 --listen "tcp:127.0.0.1:$DPORT" --guest-ctl "$T/dst1.ctl"
	proxy px1 "$port"
	start send1 mig-send --name n1 --guest "$T/src1.ctl" --to "tcp:127.0.0.1:$port" --postcopy --channels 1 --no-preempt
	wait_exit send1 60
	[ "$status" -eq 0 ]
	wait_exit recv1 30
	[ "$status" -eq 0 ]
	verifies "$T/dst1.ctl"
	[ "$(connections px1)" -eq 1 ] || { cat "$T/px1.log" >&2; false; }
	stop_proxy px1
	# the default: main and preempt
	DPORT=$(free_port)
	port=$(free_port)
	start recv2 mig-recv --name n2 --listen "tcp:127.0.0.1:$DPORT" --guest-ctl "$T/dst2.ctl"
	proxy px2 "$port"
	start send2 mig-send --name n2 --guest "$T/src2.ctl" --to "tcp:127.0.0.1:$port" --postcopy --channels 1
	wait_exit send2 60
	[ "$status" -eq 0 ]
	wait_exit recv2 30
	[ "$status" -eq 0 ]
	verifies "$T/dst2.ctl"
	[ "$(connections px2)" -eq 2 ] || { cat "$T/px2.log" >&2; false; }
	stop_proxy px2
}
