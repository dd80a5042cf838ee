#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# Engines started the way a QMP manager starts QEMU's: mig-recv --defer
# (-incoming defer) listens only once migrate-incoming names the address,
# mig-send --defer attaches and migrates only once migrate names the
# destination. Everything after goes as --listen and --to would have; a
# signal while deferred ends the engine cancelled, touching nothing.

load ../helpers/common

QMP=$BATS_TEST_DIRNAME/../helpers/qmp.py

setup() {
	mig_setup
	require_uffd
	SRC_BUS=$(bus_of m send) DST_BUS=$(bus_of m recv)
}
teardown() { mig_teardown; }

# bus BUS CMD [ARGS-JSON]: one QMP command; its reply in $output, exit 0
# (return) or 2 (error) in $status.
bus() { run timeout 30 python3 "$QMP" "$@" 3>&-; }

# bus_ok BUS CMD [ARGS-JSON]: the command returns.
bus_ok() {
	bus "$@"
	[ "$status" -eq 0 ] || { echo "# $2 on $1: $output" >&2; return 1; }
}

# bus_refuses BUS CMD ARGS-JSON DESC: the command fails with exactly DESC.
bus_refuses() {
	bus "$1" "$2" "$3"
	if [ "$status" -ne 2 ] ||
		! jq -e --arg d "$4" '.error.desc == $d' <<<"$output" >/dev/null; then
		echo "# $2 on $1: $output; expected the error '$4'" >&2
		return 1
	fi
}

# status_is BUS STATE: query-migrate says STATE now.
status_is() {
	bus "$1" query-migrate
	[ "$(jq -r .return.status <<<"$output")" = "$2" ] ||
		{ echo "# $1: $output; expected status $2" >&2; return 1; }
}

# watcher NAME BUS: a QMP client, ready once it has negotiated (so it sees
# every event from then on), writing each MIGRATION status to NAME.log
# until the bus closes.
watcher() {
	cat >"$T/watcher.py" <<'EOF'
import os, sys
sys.path.insert(0, sys.argv[1])
from qmp import QMP, QMPError
q = QMP(sys.argv[2])
q.sock.settimeout(None)
os.write(3, b"\n")
os.close(3)
try:
    while True:
        msg = q.next_event(None)
        if msg and msg.get("event") == "MIGRATION":
            print(msg["data"]["status"], flush=True)
except QMPError:
    pass
EOF
	start "$1" python3 "$T/watcher.py" "$BATS_TEST_DIRNAME/../helpers" "$2"
}

# saw NAME STATES: the watcher NAME, now gone, saw exactly STATES.
saw() {
	local got
	wait_exit "$1" 20
	got=$(tr '\n' ' ' <"$T/$1.log" | sed 's/ $//')
	assert_eq "$1's events" "$got" "$2"
}

detached() { [ "$(guest_json "$1" .attached)" = false ]; }

# deferred [mig-send options]: a 64 MiB ab guest, and both engines
# deferred, each watched (ws, wr); nothing started yet.
deferred() {
	guest src 64M --workload ab
	start recv mig-recv --name m --defer --guest-ctl "$T/dst.ctl"
	start send mig-send --name m --defer --guest "$T/src.ctl" "$@"
	watcher wr "$DST_BUS"
	watcher ws "$SRC_BUS"
}

@test "deferred engines started through their buses alone migrate the guest as --listen and --to would" {
	local uri
	uri="tcp:127.0.0.1:$(free_port)"
	deferred --postcopy
	status_is "$DST_BUS" none
	status_is "$SRC_BUS" none
	[ ! -e "$T/dst.ctl" ] # no incoming guest before a migration comes
	bus_ok "$DST_BUS" migrate-incoming "{\"uri\": \"$uri\"}"
	state "$DST_BUS" setup
	bus_ok "$SRC_BUS" migrate "{\"uri\": \"$uri\"}"
	finish_and_verify
	saw ws "setup active postcopy-active completed"
	saw wr "setup active postcopy-active completed"
	guest_runs "$T/dst.ctl"
	# the address recorded is migrate-incoming's, as --listen's would be
	assert_eq "the guest's peer" "$(guest_json "$T/dst.ctl" .migration.peer)" "$uri"
}

@test "migrate-incoming to an address in use fails, the engine waits on in none, and another address works" {
	local busy free
	busy=$(free_port)
	bg blocker python3 -c 'import signal, socket, sys
s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(); signal.pause()' "$busy"
	wait_port "$busy"
	guest src 32M --workload ab
	start recv mig-recv --name m --defer --guest-ctl "$T/dst.ctl"
	bus "$DST_BUS" migrate-incoming "{\"uri\": \"tcp:127.0.0.1:$busy\"}"
	[ "$status" -eq 2 ]
	jq -e '.error.desc | test("cannot listen on tcp:127.0.0.1:[0-9]+: Address already in use")' <<<"$output"
	bus "$DST_BUS" migrate-incoming '{"uri": "tcp:nowhere"}'
	[ "$status" -eq 2 ]
	jq -e '.error.desc == "Invalid migration address '"'"'tcp:nowhere'"'"': tcp:HOST:PORT or unix:PATH"' <<<"$output"
	status_is "$DST_BUS" none
	free=$(free_port)
	bus_ok "$DST_BUS" migrate-incoming "{\"uri\": \"tcp:127.0.0.1:$free\"}"
	state "$DST_BUS" setup
	start send mig-send --name m --postcopy --guest "$T/src.ctl" --to "tcp:127.0.0.1:$free"
	finish_and_verify
}

@test "a second migrate-incoming or migrate, or one to an engine not deferred, is refused in QEMU's words" {
	local incoming="The incoming migration has already been started"
	local busy="There's a migration process in progress"
	deferred --precopy-only --max-bandwidth 2M
	bus_ok "$DST_BUS" migrate-incoming "{\"uri\": \"unix:$T/m.sock\"}"
	bus_refuses "$DST_BUS" migrate-incoming "{\"uri\": \"unix:$T/m2.sock\"}" "$incoming"
	bus_ok "$SRC_BUS" migrate "{\"uri\": \"unix:$T/m.sock\"}"
	bus_refuses "$SRC_BUS" migrate "{\"uri\": \"unix:$T/m.sock\"}" "$busy"
	bus_refuses "$SRC_BUS" migrate '{"uri": "unix:/x", "resume": false}' "$busy"
	state "$SRC_BUS" active
	bus_ok "$SRC_BUS" migrate-cancel
	wait_exit send 20
	[ "$status" -eq 1 ]
	wait_exit recv 20
	[ "$status" -eq 1 ]
	saw ws "setup active cancelling cancelled"
	saw wr "setup active cancelled"
	# engines started with an address take no other
	start recv2 mig-recv --name n --listen "unix:$T/n.sock" --guest-ctl "$T/dst2.ctl"
	bus_refuses "$(bus_of n recv)" migrate-incoming "{\"uri\": \"unix:$T/n2.sock\"}" "$incoming"
	start send2 mig-send --name n --precopy-only --max-bandwidth 2M \
		--guest "$T/src.ctl" --to "unix:$T/n.sock"
	bus_refuses "$(bus_of n send)" migrate "{\"uri\": \"unix:$T/n.sock\"}" "$busy"
	state "$(bus_of n send)" active
	bus_ok "$(bus_of n send)" migrate-cancel
	wait_exit send2 20
	[ "$status" -eq 1 ]
	wait_exit recv2 20
	[ "$status" -eq 1 ]
	verifies "$T/src.ctl"
}

@test "SIGTERM or SIGINT while deferred: cancelled (1), the guest untouched, no guest started, nothing left" {
	for sig in TERM INT; do
		deferred
		status_is "$SRC_BUS" none
		kill -"$sig" "$PID_send"
		wait_exit send 20
		[ "$status" -eq 1 ]
		kill -"$sig" "$PID_recv"
		wait_exit recv 20
		[ "$status" -eq 1 ]
		saw ws cancelled
		saw wr cancelled
		[ ! -e "$T/dst.ctl" ]
		wait_only_running 5 "$PID_src"
		assert_eq "the guest's migration" "$(guest_json "$T/src.ctl" .migration)" null
		wait_for 5 "the guest to be detached" detached "$T/src.ctl"
		guest_runs "$T/src.ctl"
		verifies "$T/src.ctl"
		expect 0 mig-guest quit --ctl "$T/src.ctl"
		wait_exit src 10
	done
}

@test "migrate-cancel to a deferred mig-send: cancelled (1), the guest runs on untouched" {
	guest src 32M --workload ab
	start send mig-send --name m --defer --guest "$T/src.ctl"
	watcher ws "$SRC_BUS"
	bus_ok "$SRC_BUS" migrate-cancel
	wait_exit send 20
	[ "$status" -eq 1 ]
	saw ws cancelled
	assert_eq "the guest's migration" "$(guest_json "$T/src.ctl" .migration)" null
	guest_runs "$T/src.ctl"
}

@test "migrate to an address nobody listens on fails as --to does: setup, failed, 69, the guest runs on" {
	guest src 32M --workload ab
	start send mig-send --name m --defer --guest "$T/src.ctl"
	watcher ws "$SRC_BUS"
	bus_ok "$SRC_BUS" migrate "{\"uri\": \"unix:$T/nobody.sock\"}"
	wait_exit send 20
	[ "$status" -eq 69 ]
	saw ws "setup failed"
	# the same as --to
	expect 69 mig-send --name m2 --guest "$T/src.ctl" --to "unix:$T/nobody.sock"
	guest_runs "$T/src.ctl"
	verifies "$T/src.ctl"
}

@test "--defer: usage errors, and a missing guest fails at once (69)" {
	usage_error mig-recv --defer --listen "unix:$T/x"
	[[ ${lines[0]} == *"--defer and --listen exclude each other"* ]]
	usage_error mig-recv --defer --attach "$T/g.ctl"
	[[ ${lines[0]} == *"--defer and --attach exclude each other"* ]]
	usage_error mig-recv
	[[ ${lines[0]} == *"--listen or --defer is required"* ]]
	usage_error mig-send --defer --guest "$T/g.ctl" --to "unix:$T/x"
	[[ ${lines[0]} == *"--defer and --to exclude each other"* ]]
	usage_error mig-send --defer --guest "$T/g.ctl" --resume
	[[ ${lines[0]} == *"--defer and --resume exclude each other"* ]]
	usage_error mig-send --defer
	[[ ${lines[0]} == *"--guest is required"* ]]
	expect 69 mig-send --name m --defer --guest "$T/nobody.ctl"
}
