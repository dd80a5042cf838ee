#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# Every row of every EXIT STATUS table, caused for real: each program, each
# status its man page documents, and the line that says what was wrong.
# Where a state cannot be reached on purpose (an engine that accepts a
# command and then dies, a recovery that stays under way), a fake status
# bus plays the engine: it speaks the bus protocol, nothing else is faked.

load ../helpers/common

setup() { mig_setup; }
teardown() { mig_teardown; }

SRC_BUS() { bus_of m send; }
DST_BUS() { bus_of m recv; }

# wait_following PID: (bounded) until PID blocks in poll() with no deadline:
# a tool that has read the history and waits for live events (x86_64
# syscall numbers: poll 7 with the int timeout -1, ppoll 271 with a NULL
# timeout; every other wait of the tools has a deadline).
wait_following() {
	local s
	for _ in $(seq 200); do
		read -r -a s <"/proc/$1/syscall" 2>/dev/null || return 1
		if { [ "${s[0]}" = 7 ] && [ "${s[3]}" = 0xffffffff ]; } ||
			{ [ "${s[0]}" = 271 ] && [ "${s[3]}" = 0x0 ]; }; then
			return 0
		fi
		sleep 0.05
	done
	echo "# pid $1 never waited for events" >&2
	return 1
}

# A postcopy migration "m" on loopback, slow enough to pause: the buses are
# kept 30 s after the end so that a tool can still ask.
migration() {
	require_uffd
	guest src 128M --workload ab
	start recv mig-recv --name m --listen "unix:$T/d.sock" --guest-ctl "$T/dst.ctl" --linger 30
	start send mig-send --postcopy --name m --guest "$T/src.ctl" --to "unix:$T/d.sock" \
		--max-bandwidth 32M --linger 30
	state "$(SRC_BUS)" postcopy-active
}

@test "64 usage error, in every program, naming the option" {
	local p
	for p in mig-guest mig-send mig-recv mig-pause mig-recover mig-status; do
		expect 64 "$p" --bogus
		says "$p: unknown option '--bogus'"
		says "Try '$p --help'."
	done
	expect 64 mig-recover m
	says "give exactly one of --listen and --to"
	expect 64 mig-guest poke --ctl "$T/g.ctl"
	says "poke: --page N is required"
	expect 64 mig-status --wait-for nosuchstate
	says "unknown state 'nosuchstate'"
}

@test "69 nothing there: no bus, no guest, no destination, nothing at --attach" {
	expect 69 mig-pause nothere
	says "no migration 'nothere' on this host"
	expect 69 mig-recover nothere --to "unix:$T/x"
	says "no migration 'nothere' on this host"
	expect 69 mig-status nothere
	says "no migration 'nothere' on this host"
	expect 69 mig-guest verify --ctl "$T/none.ctl"
	says "no guest at $T/none.ctl"
	expect 69 mig-send --guest "$T/none.ctl" --to "unix:$T/x"
	says "no guest at $T/none.ctl"
	expect 69 mig-recv --attach "$T/none.ctl"
	says "no guest at $T/none.ctl"
	guest g 16M
	expect 69 mig-send --guest "$T/g.ctl" --to "unix:$T/nobody-listens"
	says "cannot connect"
}

@test "1 failed: refused, in use, nothing to resume or abandon" {
	guest g 16M
	expect 1 mig-send --guest "$T/g.ctl" --resume
	says "nothing to resume"
	expect 1 mig-guest abandon --ctl "$T/g.ctl" --uuid "$(cat /proc/sys/kernel/random/uuid)"
	says "the guest is not in that migration"
	start recv mig-recv --name s --listen "unix:$T/s.sock" --guest-ctl "$T/s.ctl"
	expect 1 mig-recv --name s2 --listen "unix:$T/s.sock" --guest-ctl "$T/s2.ctl"
	says "address in use: unix:$T/s.sock"
	expect 1 mig-pause s
	says "nothing to pause in state setup"
	expect 1 mig-recover s --listen "unix:$T/r.sock" --timeout 5
	says "migrate-recover: nothing to recover in state setup"
	expect 124 mig-status s --wait-for completed --timeout 0.5
	says "timed out in state setup"
}

@test "a whole migration: pause 0 and 64, recover 75 then 0, status 0 and 1, engines and verify 0" {
	migration
	expect 64 mig-pause m
	says "both sides of 'm' run on this host: pick one with --side"
	expect 0 mig-pause m --side source
	state "$(DST_BUS)" postcopy-paused
	expect 0 mig-pause --bus "$(SRC_BUS)" # already paused: nothing to do
	# the destination listens for recovery; nobody comes within 1 s
	expect 75 mig-recover m --listen "unix:$T/r.sock" --timeout 1
	says "timed out in state postcopy-paused"
	expect 0 mig-recover m --to "unix:$T/r.sock" --timeout 20
	expect 0 mig-status m --side source --wait-for completed --timeout 60
	expect 1 mig-status m --side destination --wait-for postcopy-paused --timeout 10
	says "migration ended: completed"
	kill -TERM "$PID_send" "$PID_recv" # end --linger
	wait_exit send 30
	[ "$status" -eq 0 ]
	wait_exit recv 30
	[ "$status" -eq 0 ]
	expect 0 mig-guest verify --ctl "$T/dst.ctl"
}

@test "75 the engines, stopped while paused, keep the guest" {
	migration
	expect 0 mig-pause --bus "$(SRC_BUS)"
	state "$(DST_BUS)" postcopy-paused
	kill -TERM "$PID_send" "$PID_recv"
	wait_exit send 30
	[ "$status" -eq 75 ] || { echo "# mig-send: $status" >&2; false; }
	wait_exit recv 30
	[ "$status" -eq 75 ] || { echo "# mig-recv: $status" >&2; false; }
	# both guests are kept, for new engines to take over
	run mig-guest info --ctl "$T/src.ctl" --json 3>&-
	jq -e '.migration.state == "postcopy-paused"' <<<"$output"
	run mig-guest info --ctl "$T/dst.ctl" --json 3>&-
	jq -e '.migration.state == "postcopy-paused"' <<<"$output"
}

@test "69 the engine went away: mig-status --wait-for and --watch, its engine killed" {
	[ "$(uname -m)" = x86_64 ] || skip "wait_following reads x86_64 syscall numbers"
	start recv mig-recv --name s --listen "unix:$T/s.sock" --guest-ctl "$T/s.ctl"
	bg wait mig-status s --wait-for completed
	bg watch mig-status s --watch --json
	wait_following "$PID_wait"
	wait_following "$PID_watch"
	kill -KILL "$PID_recv"
	wait_exit wait 10
	[ "$status" -eq 69 ]
	log_says wait "mig-status: the engine went away (last state setup)"
	wait_exit watch 10
	[ "$status" -eq 69 ]
	log_says watch "the engine went away"
}

@test "69 the engine went away: mig-pause and mig-recover, after it accepted" {
	fakebus pa postcopy-active gone
	expect 69 mig-pause --bus "$T/pa.sock"
	says "mig-pause: the engine went away (last state postcopy-active)"
	fakebus re postcopy-paused gone
	expect 69 mig-recover --bus "$T/re.sock" --listen "unix:$T/r.sock"
	says "mig-recover: the engine went away (last state postcopy-paused)"
}

@test "124 --timeout expired: mig-pause, and mig-recover with a recovery under way" {
	fakebus pa postcopy-active silent
	expect 124 mig-pause --bus "$T/pa.sock" --timeout 0.5
	says "timed out in state postcopy-active"
	fakebus re postcopy-recover silent
	expect 124 mig-recover --bus "$T/re.sock" --to "unix:$T/r.sock" --timeout 0.5
	says "timed out in state postcopy-recover"
}

# nobody may not use userfaultfd here: root-owned /dev/userfaultfd 0600 and
# vm.unprivileged_userfaultfd=0.
nobody_without_uffd() {
	[ "$(id -u)" -eq 0 ] || skip "needs root to run as nobody"
	[ "$(sysctl -n vm.unprivileged_userfaultfd 2>/dev/null)" = 0 ] ||
		skip "vm.unprivileged_userfaultfd is not 0"
	! setpriv --reuid=65534 --regid=65534 --clear-groups test -r /dev/userfaultfd -a \
		-w /dev/userfaultfd 2>/dev/null || skip "nobody may open /dev/userfaultfd"
	# mig-recv runs mig-guest from its own directory: nobody must reach it
	setpriv --reuid=65534 --regid=65534 --clear-groups test -x "$MIG_BIN/mig-guest" ||
		skip "nobody cannot run the programs in $MIG_BIN (a directory above is closed)"
	chmod 711 "$T"
	mkdir "$T/nobody"
	chown 65534:65534 "$T/nobody"
	AS_NOBODY=(env MIG_RUNTIME_DIR="$T/nobody" setpriv --reuid=65534 --regid=65534 --clear-groups)
}

@test "69 userfaultfd not permitted: mig-guest --incoming as nobody" {
	nobody_without_uffd
	expect 69 "${AS_NOBODY[@]}" "$MIG_BIN/mig-guest" --ctl "$T/nobody/g.ctl" --ram 4M --incoming
	says "userfaultfd not permitted"
}

@test "69 userfaultfd not permitted: mig-recv as nobody, when the source arrives" {
	nobody_without_uffd
	guest src 16M
	start recv "${AS_NOBODY[@]}" "$MIG_BIN/mig-recv" --listen "unix:$T/nobody/l.sock" \
		--guest-ctl "$T/nobody/d.ctl"
	bg send mig-send --postcopy --guest "$T/src.ctl" --to "unix:$T/nobody/l.sock"
	wait_exit recv 30
	[ "$status" -eq 69 ] || { echo "# mig-recv: $status" >&2; false; }
	log_says recv "mig-recv: error: engine: cannot start the incoming guest: userfaultfd not permitted"
	wait_exit send 30
	expect 0 mig-guest verify --ctl "$T/src.ctl" # the source guest runs on
}
