#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# Precopy with dirty tracking by the kernel: stop-and-copy when the rest
# fits, postcopy when precopy will not converge, no stale page ever, and a
# strict digest of all RAM to prove it.

load ../helpers/common

setup() {
	mig_setup
	require_uffd
	PORT=$(free_port)
	SRC_BUS=$(bus_of p send)
	DST_BUS=$(bus_of p recv)
}
teardown() { mig_teardown; }

# run_migration [mig-send args]: guest $T/src.ctl to $T/dst.ctl, destination
# held stopped after switchover (strict check), events recorded; RECV_ARGS
# adds mig-recv args.
run_migration() {
	start recv mig-recv --name p --listen "tcp:127.0.0.1:$PORT" --guest-ctl "$T/dst.ctl" \
		--paused-start --summary --linger 20 "${RECV_ARGS[@]}"
	bg wr mig-status --bus "$DST_BUS" --watch --json
	start send mig-send --name p --guest "$T/src.ctl" --to "tcp:127.0.0.1:$PORT" \
		--digest --summary -v --linger 20 "$@"
	bg ws mig-status --bus "$SRC_BUS" --watch --json
	# the watchers end with the migration; the engines linger for them
	wait_exit ws 180
	wait_exit wr 30
	kill -TERM "$PID_send" "$PID_recv"
	wait_exit send 10
	[ "$status" -eq 0 ]
	wait_exit recv 10
	[ "$status" -eq 0 ]
}

# sent_more_than BUS BYTES: the source has sent more than BYTES.
sent_more_than() { [ "$(mig-status --bus "$1" --json 3>&- | jq '.ram.transferred')" -gt "$2" ]; }

# The digest of the stopped destination guest equals the source's at
# switchover; then the guest is started and its own invariant checked.
strict_check() {
	local want
	want=$(sed -n 's/.*ram digest \([0-9a-f]*\).*/\1/p' "$T/send.log")
	[ -n "$want" ] || { echo "# no digest in the source's summary" >&2; false; }
	expect 0 mig-guest digest --ctl "$T/dst.ctl"
	[ "$output" = "$want" ] || { echo "# destination $output, source $want" >&2; false; }
	expect 0 mig-guest cont --ctl "$T/dst.ctl"
	expect 0 mig-guest verify --ctl "$T/dst.ctl"
}

@test "an idle guest completes by precopy alone: no postcopy state appears" {
	guest src 128M --workload idle
	run_migration
	[ "$(log_events ws)" = "setup active device completed" ]
	[ "$(log_events wr)" = "setup active completed" ]
	grep -q '"event":"MIGRATION_PASS"' "$T/ws.log"
	strict_check
}

@test "a dirty guest faster than the link switches to postcopy and completes" {
	guest src 128M --workload dirty:rate=200M,pattern=uniform --vcpus 1
	run_migration --max-bandwidth 64M
	[[ "$(log_events ws)" == "setup active postcopy-active completed" ]] ||
		{ echo "# source events: $(log_events ws)" >&2; false; }
	[ "$(jq -r 'select(.event == "MIGRATION_PASS") | .data.pass' "$T/ws.log" | wc -l)" -ge 2 ]
	strict_check
}

@test "ab verifies after precopy and postcopy (--postcopy-after 2)" {
	guest src 256M --workload ab
	guest_wrote "$T/src.ctl" 65536
	run_migration --postcopy-after 2 --downtime-limit 0
	[ "$(log_events ws)" = "setup active postcopy-active completed" ]
	[ "$(jq -r 'select(.event == "MIGRATION_PASS") | .data.pass' "$T/ws.log" | tr '\n' ' ')" = "1 2 " ]
	strict_check
	[[ "$output" == *"invariant holds"* ]]
}

@test "precopy passes longer together than the link timeout keep the idle preempt channel alive" {
	# each pass of a 64 MiB ab guest is shorter than a heartbeat period:
	# the heartbeat clock must run across passes, or the preempt channel,
	# idle until switchover, times out at the destination
	guest src 64M --workload ab
	RECV_ARGS=(--link-timeout 1)
	run_migration --postcopy-after 3s --downtime-limit 0 --link-timeout 1
	[ "$(log_events ws)" = "setup active postcopy-active completed" ]
	[ "$(jq -r 'select(.event == "MIGRATION_PASS")' "$T/ws.log" | grep -c pass)" -ge 4 ]
	strict_check
}

@test "a page dirtied after it was sent, and not sent again, is fetched fresh" {
	guest src 64M --workload dirty:rate=400M,pattern=seq
	# every page written once, then the vCPUs held: nothing else changes
	guest_wrote "$T/src.ctl" 16384
	expect 0 mig-guest stop --ctl "$T/src.ctl"
	start recv mig-recv --name p --listen "tcp:127.0.0.1:$PORT" --guest-ctl "$T/dst.ctl" \
		--paused-start
	start send mig-send --name p --guest "$T/src.ctl" --to "tcp:127.0.0.1:$PORT" \
		--digest --summary -v --precopy-only --max-bandwidth 8M
	# page 0 goes first; well past it, write it again, then switch before
	# the pass could come back to it
	wait_for 30 "8 MB sent" sent_more_than "$SRC_BUS" 8000000
	expect 0 mig-guest poke --ctl "$T/src.ctl" --page 0
	qmp "$SRC_BUS" '{"execute":"migrate-start-postcopy","id":1}'
	echo "$output" | grep '"id":1' | jq -e '.return == {}'
	# switched: no pass comes back to page 0 now, the rest may go at full
	# speed (the pump keeps --max-bandwidth's limit otherwise)
	state "$SRC_BUS" postcopy-active
	qmp_ok "$SRC_BUS" migrate-set-parameters '{"max-postcopy-bandwidth":0}'
	wait_exit send 120
	[ "$status" -eq 0 ]
	wait_exit recv 60
	[ "$status" -eq 0 ]
	# exactly the poked page was stale on the destination, and dropped
	grep -q "destination drops 1 stale pages" "$T/send.log"
	strict_check
}

@test "migrate-cancel during precopy: the source guest runs on, the destination ends cleanly" {
	guest src 128M --workload ab
	start recv mig-recv --name p --listen "tcp:127.0.0.1:$PORT" --guest-ctl "$T/dst.ctl"
	start send mig-send --name p --guest "$T/src.ctl" --to "tcp:127.0.0.1:$PORT" \
		--precopy-only --max-bandwidth 16M
	expect 0 mig-status --bus "$SRC_BUS" --wait-for active --timeout 10
	local dpid; dpid=$(guest_pid "$DST_BUS")
	qmp "$SRC_BUS" '{"execute":"migrate-cancel","id":2}'
	echo "$output" | grep '"id":2' | jq -e '.return == {}'
	wait_exit send 30
	[ "$status" -eq 1 ]
	wait_exit recv 30
	[ "$status" -eq 1 ]
	# the source says why; the destination, told on every channel before
	# it closes, sees no broken link
	grep -q 'cancelling (migrate-cancel): the guest runs on here' "$T/send.log"
	if [ -s "$T/recv.log" ]; then sed 's/^/# recv: /' "$T/recv.log" >&2; false; fi
	run mig-guest info --ctl "$T/src.ctl" --json 3>&-
	echo "$output" | jq -e '.running == true and .attached == false'
	expect 0 mig-guest verify --ctl "$T/src.ctl"
	# the destination's guest is gone with it
	expect 69 mig-guest info --ctl "$T/dst.ctl"
	[[ "$output" == *"no guest at $T/dst.ctl"* ]]
	wait_dead "$dpid"
}
