#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# SIGTERM and SIGINT reach an engine's control loop through a signalfd:
# whenever one arrives, the engine ends the documented way (1 cancelled
# before switchover, 75 paused after it, 0 once complete), never lost,
# never handled against a half-built or half-freed engine.

load ../helpers/common

setup() {
	mig_setup
	require_uffd
	names ""
}
teardown() { mig_teardown; }

json() { mig-guest info --ctl "$1" --json 3>&- | jq -r "$2"; }

# names R: migration m$R, its guests src$R and dst$R, engines send$R, recv$R.
names() {
	R=$1 SRC=$T/src$1.ctl DSTG=$T/dst$1.ctl DST="unix:$T/dst$1.sock"
	SRC_BUS=$(bus_of "m$1" send) DST_BUS=$(bus_of "m$1" recv)
}

# engines SIZE [mig-send options]: a migration of an ab guest, started.
engines() {
	local size=$1; shift
	guest "src$R" "$size"
	start "recv$R" mig-recv --name "m$R" --listen "$DST" --guest-ctl "$DSTG" --link-timeout 2
	start "send$R" mig-send --name "m$R" --guest "$SRC" --to "$DST" --link-timeout 2 "$@"
	eval "PID_send=\$PID_send$R"
}

@test "SIGTERM or SIGINT to mig-send before switchover: cancelled (1), the source guest runs on" {
	for sig in TERM INT; do
		engines 256M --precopy-only --max-bandwidth 2M
		state "$SRC_BUS" active
		kill -"$sig" "$PID_send"
		wait_exit send 20
		[ "$status" -eq 1 ]
		grep -q 'cancelling (terminated by signal): the guest runs on here' "$T/send.log"
		wait_exit recv 20
		[ "$status" -eq 1 ]
		# told on every channel before they close: no broken link there
		if [ -s "$T/recv.log" ]; then sed 's/^/# recv: /' "$T/recv.log" >&2; false; fi
		[ "$(json "$SRC" .running)" = true ]
		expect 0 mig-guest verify --ctl "$SRC"
		[ ! -e "$DSTG" ] # the incoming guest went with its migration
		expect 0 mig-guest quit --ctl "$SRC"
		wait_exit src 10
	done
}

@test "SIGTERM to either engine in postcopy: it pauses, exits 75, and a restarted engine completes" {
	engines 256M --postcopy --max-bandwidth 20M
	state "$SRC_BUS" postcopy-active
	kill -TERM "$PID_recv"
	wait_exit recv 20
	[ "$status" -eq 75 ]
	state "$SRC_BUS" postcopy-paused
	start recv2 mig-recv --name m --attach "$DSTG" --link-timeout 2
	state "$DST_BUS" postcopy-paused
	expect 0 mig-recover --bus "$SRC_BUS" --to "$DST" --timeout 20
	state "$SRC_BUS" postcopy-active
	kill -INT "$PID_send"
	wait_exit send 20
	[ "$status" -eq 75 ]
	[ "$(json "$SRC" .running)" = false ] # kept, never run here again
	state "$DST_BUS" postcopy-paused
	start send2 mig-send --name m --guest "$SRC" --resume --link-timeout 2
	wait_exit send2 120
	[ "$status" -eq 0 ]
	wait_exit recv2 60
	[ "$status" -eq 0 ]
	expect 0 mig-guest verify --ctl "$DSTG"
}

# Whatever the moment, one guest runs (or is kept stopped, paused, for a
# recovery), never both and never none.
@test "SIGTERM to mig-send at a random moment, 8 rounds: 0, 1 or 75, and the guest is where the status says" {
	local round
	for round in 1 2 3 4 5 6 7 8; do
		names "$round"
		engines 64M --postcopy-after 1 --max-bandwidth 40M
		# the moment is what is under test, not a synchronisation
		sleep "$((RANDOM % 3)).$((RANDOM % 10))"
		# a moment after the end is a moment too: then it exited 0
		kill -TERM "$PID_send" 2>/dev/null || true
		wait_exit "send$R" 30
		case $status in
		0)	expect 0 mig-guest verify --ctl "$DSTG"
			[ ! -e "$SRC" ] ;;
		1)	[ "$(json "$SRC" .running)" = true ]
			expect 0 mig-guest verify --ctl "$SRC"
			wait_exit "recv$R" 20
			[ ! -e "$DSTG" ] ;;
		75)	[ "$(json "$SRC" .running)" = false ]
			[ "$(json "$SRC" .migration.phase)" = switched ]
			state "$DST_BUS" postcopy-paused
			# a restarted source completes it, once the destination
			# listens again (it paused on the link's failure)
			expect 75 mig-recover --bus "$DST_BUS" --listen "$DST" --timeout 0.5
			start "again$R" mig-send --name "m$R" --guest "$SRC" --resume --link-timeout 2
			wait_exit "again$R" 120
			[ "$status" -eq 0 ]
			expect 0 mig-guest verify --ctl "$DSTG" ;;
		*)	echo "# round $round: mig-send exited $status" >&2
			false ;;
		esac
		echo "# round $round: $status" >&3
	done
}

@test "a migration a signal ended does not linger: the engine is gone, its bus too" {
	engines 256M --postcopy --max-bandwidth 20M --linger 600
	state "$SRC_BUS" postcopy-active
	kill -TERM "$PID_send"
	# --linger 600 would hold it ten minutes
	wait_exit send 60
	[ "$status" -eq 75 ]
	[ ! -e "$SRC_BUS" ]
}

@test "the guest mig-recv spawns: own process group, the engine's session and autogroup; a hangup ends the engine, not the guest" {
	local gpid
	engines 256M --postcopy --max-bandwidth 20M
	state "$DST_BUS" postcopy-active
	gpid=$(json "$DSTG" .pid)
	# a signal to the engine's group (a Ctrl-C) never reaches the guest
	[ "$(stat_field "$gpid" 5)" -eq "$gpid" ]
	[ "$(stat_field "$PID_recv" 5)" -ne "$gpid" ]
	# one session: one autogroup, where the threads' classes act on the vCPUs
	[ "$(stat_field "$gpid" 6)" -eq "$(stat_field "$PID_recv" 6)" ]
	if [ -r "/proc/$gpid/autogroup" ]; then
		[ "$(cut -d' ' -f1 "/proc/$gpid/autogroup")" = "$(cut -d' ' -f1 "/proc/$PID_recv/autogroup")" ]
	fi
	# the terminal hangs up: the engine dies of it, the guest does not
	kill -HUP "$PID_recv" "$gpid"
	wait_exit recv 20
	[ "$status" -eq 129 ]
	sed -i '/ recv$/d' "$T/pids" # its death by SIGHUP is no crash
	state "$SRC_BUS" postcopy-paused
	kill -0 "$gpid"
	start recv2 mig-recv --name m --attach "$DSTG" --link-timeout 2
	state "$DST_BUS" postcopy-paused
	expect 0 mig-recover --bus "$SRC_BUS" --to "$DST" --timeout 20
	wait_exit send 120
	[ "$status" -eq 0 ]
	wait_exit recv2 60
	[ "$status" -eq 0 ]
	expect 0 mig-guest verify --ctl "$DSTG"
}
