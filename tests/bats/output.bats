#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# What a person at a terminal sees: a successful migration prints no warning
# on either side, and each engine ends with one summary line on stdout when
# stdout is a terminal (always with --summary, never in a pipe without it).

load ../helpers/common

setup() {
	mig_setup
	require_uffd
	SRC_BUS=$(bus_of m send)
	DST="unix:$T/dst.sock"
}
teardown() { mig_teardown; }

@test "a successful migration prints nothing on stderr, on either side, 5 times over" {
	local i
	for i in 1 2 3 4 5; do
		guest "src$i" 64M
		start "recv$i" mig-recv --name "m$i" --listen "unix:$T/d$i.sock" --guest-ctl "$T/dst$i.ctl"
		expect 0 mig-send --name "m$i" --guest "$T/src$i.ctl" --to "unix:$T/d$i.sock"
		[ -z "$output" ]
		wait_exit "recv$i" 30
		[ "$status" -eq 0 ]
		if [ -s "$T/recv$i.log" ]; then
			sed 's/^/# recv: /' "$T/recv$i.log" >&2
			false
		fi
		expect 0 mig-guest quit --ctl "$T/dst$i.ctl"
	done
}

# on_tty OUT CMD...: run CMD with stdout on a terminal (script(1) gives it
# one), its stdout in OUT.
on_tty() {
	local out=$1; shift
	timeout 60 script -qefc "$(printf '%q ' "$@")" /dev/null >"$out" 2>/dev/null 3>&-
}

@test "the summary: by default on a terminal after success, in a pipe only with --summary" {
	guest src 64M
	start recv mig-recv --name m --listen "$DST" --guest-ctl "$T/dst.ctl"
	on_tty "$T/send.out" mig-send --name m --guest "$T/src.ctl" --to "$DST"
	grep -q '^mig-send: source completed in .* s: 64.0 MiB of RAM' "$T/send.out"
	[ "$(grep -c . "$T/send.out")" -eq 1 ]
	wait_exit recv 30
	[ "$status" -eq 0 ]
	# in a pipe: nothing, unless asked
	expect 0 mig-guest quit --ctl "$T/dst.ctl"
	guest src2 64M
	start recv2 mig-recv --name m --listen "$DST" --guest-ctl "$T/dst.ctl" --summary
	run timeout 60 mig-send --name m --guest "$T/src2.ctl" --to "$DST" 3>&-
	[ "$status" -eq 0 ]
	[ -z "$output" ]
	wait_exit recv2 30
	grep -q '^mig-recv: destination completed in .* s' "$T/recv2.log"
}

@test "no summary on a terminal when the migration did not complete" {
	guest src 64M
	local rc=0
	on_tty "$T/send.out" mig-send --name m --guest "$T/src.ctl" --to "unix:$T/nobody.sock" || rc=$?
	[ "$rc" -eq 69 ]
	# the terminal shows the error, naming the address, and no summary
	grep -q "nobody.sock" "$T/send.out"
	! grep -q ' in [0-9.]* s: ' "$T/send.out"
}
