#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# Engine restarts: either engine is killed (kill -9) at a chosen moment, is
# restarted with the documented command line, and the migration still
# completes with the guest whole; the guest never runs twice.

load ../helpers/common

setup() {
	mig_setup
	require_uffd
	SRC_BUS=$(bus_of m send)
	DST_BUS=$(bus_of m recv)
	DST="unix:$T/dst.sock"
	N=0
}
teardown() { mig_teardown; }

# begin SIZE WORKLOAD [mig-send options]: a postcopy migration, running.
# The pump is throttled so that it lasts while engines die around it.
begin() {
	local size=$1 wl=$2; shift 2
	guest src "$size" --workload "$wl" ${VCPUS:+--vcpus "$VCPUS"}
	start recv mig-recv --name m --listen "$DST" --guest-ctl "$T/dst.ctl" --link-timeout 2
	start send mig-send --postcopy --name m --guest "$T/src.ctl" --to "$DST" \
		--link-timeout 2 --max-bandwidth "${BW:-20M}" "$@"
	SEND=send RECV=recv
	state "$SRC_BUS" postcopy-active
	DPID=$(guest_json "$T/dst.ctl" .pid)
	UUID=$(guest_json "$T/src.ctl" .migration.uuid)
}

# The documented restart command lines (mig-recv(1), mig-send(1)).
restart_recv() {
	N=$((N + 1)) RECV=recv$N
	start "$RECV" mig-recv --name m --attach "$T/dst.ctl" --link-timeout 2 "$@"
	state "$DST_BUS" postcopy-paused
}
restart_send() {
	N=$((N + 1)) SEND=send$N
	start "$SEND" mig-send --name m --guest "$T/src.ctl" --resume --link-timeout 2 \
		--max-bandwidth "${BW:-20M}" "$@"
}
no_migration() { [ "$(guest_json "$1" .migration)" = null ]; }

# in_userfault PID: a thread of PID sleeps waiting for a missing page.
in_userfault() {
	local t
	for t in /proc/"$1"/task/*; do
		[ "$(cat "$t/wchan" 2>/dev/null)" = handle_userfault ] && return 0
	done
	return 1
}

# Recover whatever is paused: the destination is armed, then the source
# resumes (a restarted source resumes by itself).
recover() {
	expect 75 mig-recover --bus "$DST_BUS" --listen "$DST" --timeout 0.5 || [ "$status" -eq 0 ]
	expect 0 mig-recover --bus "$SRC_BUS" --to "$DST" --timeout 20
}

# The pump at full speed, then both engines exit 0 (a migration that has
# just completed has no bus left to be told), the guest whole and the same.
finish() {
	set_bandwidth "$SRC_BUS" 0 || [ ! -S "$SRC_BUS" ]
	wait_exit "$SEND" 120
	[ "$status" -eq 0 ]
	wait_exit "$RECV" 60
	[ "$status" -eq 0 ]
	expect 0 mig-guest verify --ctl "$T/dst.ctl"
	[ "$(guest_json "$T/dst.ctl" .pid)" = "$DPID" ]
	[ ! -e "$T/src.ctl" ] # the source guest quit: it lives on the destination
}

@test "kill -9 of mig-recv in postcopy-active: restarted with --attach, recovered, completes" {
	begin 256M ab
	kill9 recv
	state "$SRC_BUS" postcopy-paused
	[ "$(guest_json "$T/dst.ctl" .migration.phase)" = switched ]
	restart_recv
	[ "$(history "$DST_BUS")" = "postcopy-paused" ]
	recover
	finish
}

@test "kill -9 of mig-send in postcopy-active: restarted with --resume, completes" {
	begin 256M ab
	kill9 send
	state "$DST_BUS" postcopy-paused
	[ "$(guest_json "$T/src.ctl" .running)" = false ]
	expect 75 mig-recover --bus "$DST_BUS" --listen "$DST" --timeout 0.5
	restart_send
	state "$SRC_BUS" postcopy-active
	[[ "$(history "$SRC_BUS")" == "postcopy-paused postcopy-recover-setup postcopy-recover postcopy-active"* ]]
	finish
}

@test "kill -9 of mig-send at a recovery's postcopy-active, before its threads start: restarted, completes" {
	# the engine announces postcopy-active, then starts its threads: held
	# a second apart here (MIG_FAULT), the kill lands between the two
	MIG_FAULT=recover-threads-late begin 256M ab
	expect 0 mig-pause --bus "$SRC_BUS"
	state "$DST_BUS" postcopy-paused
	recover
	kill9 send
	grep -q 'recover-threads-late: threads start in 1 s' "$T/send.log"
	state "$DST_BUS" postcopy-paused
	[ "$(guest_json "$T/src.ctl" .running)" = false ]
	expect 75 mig-recover --bus "$DST_BUS" --listen "$DST" --timeout 0.5
	restart_send
	state "$SRC_BUS" postcopy-active
	finish
}

@test "either engine killed in postcopy-paused, restarted, recovers" {
	begin 256M ab
	expect 0 mig-pause --bus "$SRC_BUS"
	state "$DST_BUS" postcopy-paused
	kill9 recv
	kill9 send
	# the other engine also dead: the state lives in the guests
	restart_recv
	restart_send
	state "$SRC_BUS" postcopy-active
	expect 0 mig-pause --bus "$DST_BUS"
	state "$SRC_BUS" postcopy-paused
	kill9 "$RECV"
	restart_recv
	expect 0 mig-recover --bus "$SRC_BUS" --to "$DST" --timeout 20
	kill9 "$SEND"
	restart_send
	state "$SRC_BUS" postcopy-active
	finish
}

@test "mig-send killed in postcopy-recover, mig-recv killed in postcopy-recover: both restart and complete" {
	begin 256M ab
	expect 0 mig-pause --bus "$SRC_BUS"
	state "$DST_BUS" postcopy-paused
	# a silent destination holds the source in postcopy-recover
	local fake="tcp:127.0.0.1:$(free_port)"
	start fake "$BATS_TEST_DIRNAME/../helpers/fakepeer.py" dest "$fake"
	bg rec mig-recover --bus "$SRC_BUS" --to "$fake" --timeout 60
	state "$SRC_BUS" postcopy-recover
	kill9 send
	# a silent source holds the destination in postcopy-recover
	expect 75 mig-recover --bus "$DST_BUS" --listen "$DST" --timeout 0.5
	start fake2 "$BATS_TEST_DIRNAME/../helpers/fakepeer.py" source "$DST" "$UUID"
	state "$DST_BUS" postcopy-recover
	kill9 recv
	restart_recv
	restart_send --to "$DST"
	state "$SRC_BUS" postcopy-active
	finish
}

@test "while mig-recv is dead, vCPUs on present pages run, vCPUs on missing ones wait, then continue" {
	VCPUS=2 BW=4M begin 256M dirty:pattern=split,hot=1
	# vCPU 0 writes at random into its 327 hot pages, vCPU 1 anywhere in
	# its half: once vCPU 0 has 20000 writes more (vCPU 1, fault-bound,
	# makes a few per millisecond), every hot page has come, with
	# certainty (a page left out: 327 * e^-30)
	guest_wrote "$T/dst.ctl" $(($(guest_progress "$T/dst.ctl") + 20000))
	kill9 recv
	state "$SRC_BUS" postcopy-paused
	guest_runs "$T/dst.ctl" # some vCPU runs
	# some vCPU waits for a page, alive
	wait_for 10 "a vCPU of pid $DPID to wait in handle_userfault" in_userfault "$DPID"
	restart_recv
	recover
	finish
}

@test "before switchover: kill -9 of mig-send leaves the source guest running, the destination failed, nothing behind" {
	guest src 256M --workload dirty:rate=400M
	start recv mig-recv --name m --listen "$DST" --guest-ctl "$T/dst.ctl" --link-timeout 2
	start send mig-send --precopy-only --name m --guest "$T/src.ctl" --to "$DST" --link-timeout 2 --max-bandwidth 20M
	state "$SRC_BUS" active
	[ "$(guest_json "$T/src.ctl" .migration.phase)" = migrating ]
	local dpid; dpid=$(guest_pid "$DST_BUS")
	kill9 send
	wait_exit recv 20
	[ "$status" -eq 1 ]
	grep -q 'error: engine: link lost before switchover' "$T/recv.log"
	wait_for 5 "the source guest to leave the migration" no_migration "$T/src.ctl"
	[ "$(guest_json "$T/src.ctl" .running)" = true ]
	[ "$(guest_json "$T/src.ctl" '."dirty-tracking"')" = false ]
	guest_runs "$T/src.ctl"
	wait_gone "$T/dst.ctl" # the incoming guest exited
	wait_dead "$dpid"
	expect 0 mig-guest verify --ctl "$T/src.ctl"
}

@test "before switchover: kill -9 of mig-recv: its guest exits, the source fails and runs on" {
	guest src 256M --workload dirty:rate=400M
	start recv mig-recv --name m --listen "$DST" --guest-ctl "$T/dst.ctl" --link-timeout 2
	start send mig-send --precopy-only --name m --guest "$T/src.ctl" --to "$DST" --link-timeout 2 --max-bandwidth 20M
	state "$SRC_BUS" active
	wait_socket "$T/dst.ctl"
	local dpid; dpid=$(guest_pid "$DST_BUS")
	kill9 recv
	wait_exit send 20
	[ "$status" -eq 1 ]
	grep -q -E 'error: engine: (main|preempt) channel: ' "$T/send.log"
	wait_gone "$T/dst.ctl"
	wait_dead "$dpid"
	[ "$(guest_json "$T/src.ctl" .migration)" = null ]
	[ "$(guest_json "$T/src.ctl" .running)" = true ]
	# the guest is free: a new migration starts and completes
	start recv2 mig-recv --name m --listen "$DST" --guest-ctl "$T/dst.ctl"
	start send2 mig-send --postcopy --name m --guest "$T/src.ctl" --to "$DST"
	SEND=send2 RECV=recv2 DPID=
	wait_exit send2 60
	[ "$status" -eq 0 ]
	expect 0 mig-guest verify --ctl "$T/dst.ctl"
}

@test "split brain: a handed-over source guest never runs again, whatever a new engine or the operator does" {
	begin 256M ab
	kill9 send
	state "$DST_BUS" postcopy-paused
	expect 1 mig-guest cont --ctl "$T/src.ctl"
	[[ "$output" == *"handed over"* ]]
	# destination unreachable: the new engine waits paused; SIGTERM: 75
	N=1 SEND=send1
	start send1 mig-send --name m --guest "$T/src.ctl" --to "tcp:127.0.0.1:$(free_port)" --link-timeout 2
	state "$SRC_BUS" postcopy-paused
	kill -TERM "$PID_send1"
	wait_exit send1 10
	[ "$status" -eq 75 ]
	[ "$(guest_json "$T/src.ctl" .running)" = false ]
	# a destination that refuses our UUID: still paused, still stopped
	start other mig-recv --name o --listen "unix:$T/other.sock" --guest-ctl "$T/other.ctl"
	N=2 SEND=send2
	start send2 mig-send --name m --guest "$T/src.ctl" --to "unix:$T/other.sock" --link-timeout 2
	state "$SRC_BUS" postcopy-paused
	expect 75 mig-recover --bus "$SRC_BUS" --to "unix:$T/other.sock" --timeout 5
	kill -KILL "$PID_send2"
	[ "$(guest_json "$T/src.ctl" .running)" = false ]
	expect 1 mig-guest cont --ctl "$T/src.ctl"
	[[ "$output" == *"handed over"* ]]
	# --resume refuses a guest in no migration; --uuid must match
	guest free 64M
	expect 1 mig-send --name f --guest "$T/free.ctl" --resume
	[[ "$output" == *"nothing to resume"* ]]
	[ "$(guest_json "$T/free.ctl" .running)" = true ]
	expect 1 mig-send --name m --guest "$T/src.ctl" --resume --uuid "$(cat /proc/sys/kernel/random/uuid)"
	[[ "$output" == *"is not the guest's migration ($UUID)"* ]] || { echo "# $output" >&2; false; }
	[ "$(guest_json "$T/src.ctl" .running)" = false ]
	expect 75 mig-recover --bus "$DST_BUS" --listen "$DST" --timeout 0.5
	restart_send
	finish
}

@test "mig-guest abandon: the operator's deliberate release of a handed-over source guest" {
	begin 256M ab
	local dpid; dpid=$(guest_pid "$DST_BUS")
	kill9 send
	kill9 recv
	kill -KILL "$dpid" # the destination host is lost
	expect 64 mig-guest abandon --ctl "$T/src.ctl"
	[[ "$output" == *"abandon: --uuid UUID is required"* ]]
	expect 1 mig-guest abandon --ctl "$T/src.ctl" --uuid "$(cat /proc/sys/kernel/random/uuid)"
	[[ "$output" == *"the guest is not in that migration"* ]]
	expect 1 mig-guest cont --ctl "$T/src.ctl"
	[[ "$output" == *"handed over"* ]]
	expect 0 mig-guest abandon --ctl "$T/src.ctl" --uuid "$UUID"
	[ "$(guest_json "$T/src.ctl" .migration)" = null ]
	expect 0 mig-guest cont --ctl "$T/src.ctl"
	[ "$(guest_json "$T/src.ctl" .running)" = true ]
	expect 0 mig-guest verify --ctl "$T/src.ctl"
}

@test "a destination guest killed in postcopy: mig-recv says so at once, reaps it, fails; the source keeps its guest" {
	# idle: no fault hurries the pages, postcopy lasts (256 MiB at 20 MiB/s)
	guest src 256M --workload idle
	start recv mig-recv --name m --listen "$DST" --guest-ctl "$T/dst.ctl" --link-timeout 60 --linger 10
	start send mig-send --postcopy --name m --guest "$T/src.ctl" --to "$DST" --link-timeout 60 --max-bandwidth 20M
	state "$SRC_BUS" postcopy-active
	DPID=$(guest_pid "$DST_BUS")
	kill -KILL "$DPID"
	# the link timeout is 60 s; the cause below shows it is not what failed it
	state "$DST_BUS" failed 30
	[ ! -e "/proc/$DPID" ] # reaped, no zombie, while mig-recv lingers
	run mig-status --bus "$DST_BUS" --json 3>&-
	[[ "$(jq -r ".\"error-desc\"" <<<"$output")" == *"killed by signal 9"* ]]
	state "$SRC_BUS" postcopy-paused 10
	[ "$(guest_json "$T/src.ctl" .running)" = false ]
	[ "$(guest_json "$T/src.ctl" .migration.phase)" = switched ]
	kill -TERM "$PID_recv"
	wait_exit recv 10
	[ "$status" -eq 1 ]
}

@test "mig-recover --listen re-arms an address it already listens on: 75 while paused, never 1" {
	begin 256M ab
	local x="unix:$T/x.sock"
	expect 0 mig-pause --bus "$SRC_BUS"
	state "$DST_BUS" postcopy-paused
	expect 75 mig-recover --bus "$DST_BUS" --listen "$x" --timeout 0.5
	expect 0 mig-recover --bus "$SRC_BUS" --to "$x" --timeout 20
	expect 0 mig-pause --bus "$SRC_BUS"
	state "$DST_BUS" postcopy-paused
	expect 75 mig-recover --bus "$DST_BUS" --listen "$x" --timeout 0.5
	expect 75 mig-recover --bus "$DST_BUS" --listen "$x" --timeout 0.5
	expect 75 mig-recover --bus "$DST_BUS" --listen "$DST" --timeout 0.5
	expect 0 mig-recover --bus "$SRC_BUS" --to "$x" --timeout 20
	finish
}

@test "--digest, however slow, never pauses a migration: no heartbeat waits for it" {
	guest src 512M --workload ab
	start recv mig-recv --name m --listen "$DST" --guest-ctl "$T/dst.ctl" --link-timeout 1 --paused-start
	# the digest takes 3 s (MIG_FAULT=digest-slow), three link timeouts
	MIG_FAULT=digest-slow start send mig-send --postcopy --digest --name m --guest "$T/src.ctl" \
		--to "$DST" --link-timeout 1 --linger 30
	wait_exit recv 120
	[ "$status" -eq 0 ]
	[[ "$(history "$SRC_BUS")" != *paused* ]]
	local want
	wait_for 20 "the source's x-ram-digest" has_digest "$SRC_BUS"
	want=$(mig-status --bus "$SRC_BUS" --json 3>&- | jq -r '."x-ram-digest"')
	[ "$(mig-guest digest --ctl "$T/dst.ctl" 3>&-)" = "$want" ]
	kill -TERM "$PID_send"
}
