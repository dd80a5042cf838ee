#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# Hostile or out-of-place bytes from the network never lose, strand or take
# over the destination's migration (mig-protocol(7), the channels): a
# message out of place after switchover pauses; a channel the migration did
# not open is refused; a connection whose setup is not valid is dropped and
# the engine waits on; connections that never say hello cannot starve the
# real source. Strangers are tests/helpers/fakepeer.py.

load ../helpers/common

BATS_TEST_TIMEOUT=${BATS_TEST_TIMEOUT:-180}

setup() {
	mig_setup
	require_uffd
	PORT=$(free_port)
	DST=tcp:127.0.0.1:$PORT
	SRC_BUS=$(bus_of m send)
	DST_BUS=$(bus_of m recv)
	FAKE=$BATS_TEST_DIRNAME/../helpers/fakepeer.py
}
teardown() { mig_teardown; }

recv_at() {
	start recv mig-recv --name m --listen "$DST" --guest-ctl "$T/dst.ctl" "$@"
}

# send_to ADDR [ARGS]: a postcopy migration of the guest src to ADDR.
send_to() {
	local to=$1; shift
	start send mig-send --postcopy --name m --guest "$T/src.ctl" --to "$to" "$@"
}

# busy_guest SIZE: the source's guest, every page written: a migration
# moves data (untouched pages go as zero runs, at once).
busy_guest() {
	guest src "$1" --workload ab
	guest_wrote "$T/src.ctl" $(($(numfmt --from=iec "$1") / 4096))
}

# uuid_of BUS: the migration's UUID, as a stranger could learn it.
uuid_of() { mig-status --bus "$1" --json 3>&- | jq -r '."x-uuid"'; }

# stop NAME: end a stand-in started with start, by its pid.
stop() {
	kill -TERM "$(pid_of "$1")"
	wait_exit "$1" 5
}

# done_and_clean: the migration completed, the guest verifies on the
# destination, and it is all that is left running.
done_and_clean() {
	finish_and_verify
	[ "$(guest_json "$T/dst.ctl" .running)" = true ]
	wait_only_running 5 "$(guest_json "$T/dst.ctl" .pid)"
}

# recover_both: the source recovers straight to the destination's listener.
recover_both() {
	state "$SRC_BUS" postcopy-paused
	state "$DST_BUS" postcopy-paused
	expect 0 mig-recover --bus "$DST_BUS" --listen "$DST" --timeout 1 || [ "$status" -eq 75 ]
	expect 0 mig-recover --bus "$SRC_BUS" --to "$DST" --timeout 20
}

@test "a second SWITCHOVER after the go-ahead pauses; the running guest is kept and recovers" {
	busy_guest 64M
	recv_at --link-timeout 2
	local via
	via=tcp:127.0.0.1:$(free_port)
	start mitm "$FAKE" mitm "$via" "$DST" REQ SWITCHOVER
	send_to "$via" --link-timeout 2 --max-bandwidth 8M
	state "$DST_BUS" postcopy-paused
	log_says mitm "injected SWITCHOVER after REQ"
	[ "$(guest_json "$T/dst.ctl" .running)" = true ]
	stop mitm
	recover_both
	done_and_clean
}

@test "out-of-place messages before switchover fail the migration; the guest is whole on the source" {
	guest src 64M --workload ab
	recv_at --link-timeout 2
	local via
	via=tcp:127.0.0.1:$(free_port)
	# RESUME means nothing before SWITCHOVER
	start mitm "$FAKE" mitm "$via" "$DST" RAM_INFO RESUME
	bg send mig-send --name m --guest "$T/src.ctl" --to "$via" --link-timeout 2 --max-bandwidth 8M
	wait_exit recv 30
	[ "$status" -eq 1 ]
	wait_exit send 30
	[ "$status" -eq 1 ]
	stop mitm
	[ ! -e "$T/dst.ctl" ]
	guest_runs "$T/src.ctl"
	verifies "$T/src.ctl"
	wait_only_running 5 "$PID_src"
}

@test "a stranger's preempt channel is refused when the migration opened none; a bulk one too" {
	busy_guest 128M
	recv_at
	send_to "$DST" --no-preempt --max-bandwidth 16M --channels 1
	state "$SRC_BUS" postcopy-active
	expect 3 "$FAKE" preempt "$DST" "$(uuid_of "$DST_BUS")"
	says "refused 4 "
	# nor a bulk channel, when it has a single stream
	expect 3 "$FAKE" bulk "$DST" "$(uuid_of "$DST_BUS")" 1
	says "refused 4 "
	done_and_clean
}

@test "a second preempt channel is refused, and at recovery one the recovery did not announce" {
	busy_guest 128M
	recv_at --link-timeout 2
	send_to "$DST" --max-bandwidth 16M --link-timeout 2
	state "$SRC_BUS" postcopy-active
	local uuid; uuid=$(uuid_of "$DST_BUS")
	expect 3 "$FAKE" preempt "$DST" "$uuid"
	says "refused 4 "
	expect 0 mig-pause --bus "$SRC_BUS"
	state "$DST_BUS" postcopy-paused
	# a recovery's main hello that announces no preempt channel
	expect 75 mig-recover --bus "$DST_BUS" --listen "$DST" --timeout 0.5
	start fake "$FAKE" source "$DST" "$uuid"
	state "$DST_BUS" postcopy-recover
	expect 3 "$FAKE" preempt "$DST" "$uuid" --resume
	says "refused 4 "
	stop fake
	recover_both
	done_and_clean
}

@test "bad first connections are dropped; the real source then migrates" {
	guest src 64M --workload ab
	recv_at
	local how
	for how in close badram badframe; do
		expect 0 "$FAKE" main "$DST" "$how"
		says "closed by the other side"
		state "$DST_BUS" setup
	done
	# one that says hello and then nothing holds no one up
	start stall "$FAKE" main "$DST" stall
	send_to "$DST"
	done_and_clean
}

@test "64 silent connections, renewed, starve neither the migration nor its recovery" {
	busy_guest 128M
	recv_at --link-timeout 2
	start flood "$FAKE" flood "$DST" 64 2
	send_to "$DST" --max-bandwidth 16M --link-timeout 2
	state "$SRC_BUS" postcopy-active
	expect 0 mig-pause --bus "$SRC_BUS"
	recover_both
	finish_and_verify
	stop flood
	wait_only_running 5 "$(guest_json "$T/dst.ctl" .pid)"
}
