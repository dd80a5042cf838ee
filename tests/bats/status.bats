#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# mig-status on real loopback migrations: --wait-for's exit statuses, JSON
# that parses (one side, both sides, the list, --watch lines), the fields of
# the human view during postcopy, the live progress line of --watch on a
# terminal (a pty from script(1)) and its absence elsewhere, and the list
# of every migration on the host.

load ../helpers/common

# The usage test needs no migration; every other one runs some.
setup() {
	mig_setup
	[[ $BATS_TEST_DESCRIPTION == usage:* ]] || require_uffd
}
teardown() { mig_teardown; }

# migration NAME SIZE WORKLOAD [mig-send args]: a guest NAME-g, both engines
# for migration NAME on loopback, their buses kept 30 s after the end (so a
# test can still ask once it is over; teardown stops them), mig-send
# started, not waited for: outcomes are asserted through the bus.
migration() {
	local name=$1 size=$2 wl=$3 port
	shift 3
	port=$(free_port)
	guest "$name-g" "$size" --workload "$wl"
	start "$name-recv" mig-recv --name "$name" --listen "tcp:127.0.0.1:$port" \
		--guest-ctl "$T/$name-dst.ctl" --linger 30
	start "$name-send" mig-send --name "$name" --guest "$T/$name-g.ctl" \
		--to "tcp:127.0.0.1:$port" --linger 30 "$@"
}

# has_label LABEL: the human view in $output has a "LABEL: value" line.
has_label() {
	grep -qE "^ *$1: +[^ ]" <<<"$output" || {
		echo "# no '$1:' line in:" >&2
		sed 's/^/#   /' <<<"$output" >&2
		return 1
	}
}

# each_line_json FILE: every line of FILE is one JSON object (jq and python).
each_line_json() {
	local line n=0
	while IFS= read -r line; do
		jq -e 'type == "object"' <<<"$line" >/dev/null || {
			echo "# not a JSON object: $line" >&2
			return 1
		}
		n=$((n + 1))
	done <"$1"
	[ "$n" -gt 0 ]
	python3 -c 'import json, sys
for l in open(sys.argv[1]):
    assert isinstance(json.loads(l), dict), l' "$1"
}

# passes_done NAME: the source of NAME has made a dirty sync.
passes_done() { [ "$(mig-status "$1" --side source --json 3>&- | jq '.ram["dirty-sync-count"] // 0')" -ge 1 ]; }

@test "usage: an unknown state is 64; --watch with --wait-for is 64" {
	expect 64 mig-status --wait-for postcopy-bogus
	[[ "$output" == *"unknown state 'postcopy-bogus'"* ]]
	expect 64 mig-status --wait-for completed,nope --timeout 1
	[[ "$output" == *"'nope'"* ]]
	expect 64 mig-status --watch --wait-for completed
	[[ "$output" == *"--watch and --wait-for exclude each other"* ]]
	# nothing here at all: 69, naming the directory
	expect 69 mig-status
	[[ "$output" == *"no migration on this host"*"$MIG_RUNTIME_DIR"* ]]
}

@test "--wait-for: 0 when reached, 124 on timeout, 1 when it ends elsewhere" {
	migration w 128M idle --postcopy --max-bandwidth 24M
	expect 0 mig-status w --side destination --wait-for postcopy-active --timeout 20
	# about 5 s of postcopy at 24 MiB/s: completed cannot come within 1 s
	expect 124 mig-status w --side source --wait-for completed --timeout 1
	[[ "$output" == *"timed out in state postcopy-active"* ]]
	# waits through the rest of the migration, which completes instead
	expect 1 mig-status w --side source --wait-for postcopy-paused
	[[ "$output" == *"migration ended: completed"* ]]
	# already there: at once
	expect 0 mig-status w --side source --wait-for completed --timeout 10
	expect 0 mig-status w --side destination --wait-for postcopy-paused,completed --timeout 10
	expect 1 mig-status w --side destination --wait-for failed --timeout 10
}

@test "--wait-for is 1 when a precopy is cancelled; the view shows passes and dirty rate" {
	# ab dirties every page all the time: precopy passes go on until it
	# is cancelled
	migration c 32M ab --precopy-only --max-bandwidth 64M
	expect 0 mig-status c --side source --wait-for active --timeout 20
	wait_for 10 "a first precopy pass" passes_done c
	run mig-status c --side source 3>&-
	[ "$status" -eq 0 ]
	has_label precopy
	grep -qE '^precopy: +[0-9]+ pass(es)?, dirty rate [0-9]+ pages/s$' <<<"$output"
	has_label state
	grep -qE '^state: +active$' <<<"$output"
	bg waiter mig-status c --side source --wait-for postcopy-active,completed
	qmp "$(bus_of c send)" '{"execute":"migrate-cancel","id":"c"}'
	grep '"id":"c"' <<<"$output" | jq -e '.return == {}'
	wait_exit waiter 30
	[ "$status" -eq 1 ]
	grep -q "migration ended: cancelled" "$T/waiter.log"
	expect 0 mig-status c --side source --wait-for cancelled --timeout 5
}

@test "during postcopy: the human view's fields, and JSON for one side, both sides and --watch" {
	# idle: no fault hurries the pages, so postcopy lasts about 5 s
	migration v 128M idle --postcopy --max-bandwidth 24M
	expect 0 mig-status v --side destination --wait-for postcopy-active --timeout 20

	run mig-status v --side destination 3>&-
	[ "$status" -eq 0 ]
	local l
	for l in side name state elapsed "state time" pages bytes throughput \
		requests "fault latency" blocktime; do
		has_label "$l"
	done
	grep -qE '^side: +destination$' <<<"$output"
	grep -qE '^state: +postcopy-active$' <<<"$output"
	grep -qE '^pages: +[0-9]+ of 32768 \([0-9.]+%\)$' <<<"$output"
	grep -qE '^bytes: +.* of 128\.0 MiB \([0-9.]+%\), .* transferred$' <<<"$output"
	grep -qE '^fault latency: +(no faults yet|p50 .*, p99 .*, max .* \([0-9]+ faults?\))$' <<<"$output"

	run mig-status v --side source 3>&-
	[ "$status" -eq 0 ]
	for l in side state elapsed "state time" pages bytes throughput requests downtime; do
		has_label "$l"
	done
	# no precopy pass with --postcopy: no precopy line
	! grep -q '^precopy:' <<<"$output"

	# both sides run here: both, under a heading each
	run mig-status v 3>&-
	[ "$status" -eq 0 ]
	grep -qx 'source:' <<<"$output"
	grep -qx 'destination:' <<<"$output"
	grep -qE '^  state: +postcopy-active$' <<<"$output"

	mig-status v --side source --json 3>&- >"$T/one.json"
	jq -e '."x-side" == "source" and ."x-name" == "v" and (.status | type) == "string"
		and .ram.total == 134217728' "$T/one.json"
	python3 -m json.tool "$T/one.json" >/dev/null
	mig-status v --json 3>&- >"$T/both.json"
	jq -e '.source."x-side" == "source" and .destination."x-side" == "destination"
		and (.destination."x-postcopy-latency".count | type) == "number"' "$T/both.json"
	python3 -m json.tool "$T/both.json" >/dev/null
	# the only migration here: no name needed
	mig-status --json 3>&- >"$T/implicit.json"
	jq -e '.source."x-name" == "v" and .destination."x-name" == "v"' "$T/implicit.json"

	timeout 60 mig-status v --watch --json 3>&- >"$T/watch.json"
	each_line_json "$T/watch.json"
	jq -e -s '[.[] | select(.event == "MIGRATION") | .data.status] | index("completed") != null' \
		"$T/watch.json"

	# ab faults on every page it reaches first: real latency figures
	migration a 64M ab --postcopy
	expect 0 mig-status a --side destination --wait-for completed --timeout 30
	run mig-status a --side destination 3>&-
	grep -qE '^fault latency: +p50 [0-9.]+ [um]s, p99 [0-9.]+ [um]s, max [0-9.]+ [um]?s \([0-9]+ faults?\)$' <<<"$output"
	grep -qE '^requests: +[1-9][0-9]* pages?$' <<<"$output"
	has_label blocktime
}

@test "--watch on a terminal redraws a progress line; never in a pipe, with -q or --json" {
	command -v script >/dev/null || skip "script(1) from util-linux not installed"
	migration p 128M idle --postcopy --max-bandwidth 32M
	expect 0 mig-status p --side source --wait-for active,postcopy-active --timeout 20
	bg pipe bash -c 'mig-status p --watch | cat'
	bg quiet bash -c 'script -q -e -c "mig-status p --watch -q" /dev/null </dev/null'
	bg json bash -c 'script -q -e -c "mig-status p --watch --json" /dev/null </dev/null'
	timeout 60 script -q -e -c "mig-status p --watch" /dev/null </dev/null >"$T/tty.out" 3>&-
	wait_exit pipe 30
	[ "$status" -eq 0 ]
	wait_exit quiet 30
	wait_exit json 30
	python3 - "$T/tty.out" "$T/pipe.log" "$T/quiet.log" "$T/json.log" <<'EOF'
import re, sys

def events_ok(shown, where):
    ev = re.compile(r'\S+Z (source|destination) (\S+)')
    for l in shown:
        # a line with an event's timestamp is exactly an event line
        if re.search(r'\d{4}-\d\d-\d\dT\d\d:', l):
            assert ev.fullmatch(l), f'{where}: garbled event line {l!r}'
    for side in ('source', 'destination'):
        for st in ('postcopy-active', 'completed'):
            assert any(l.endswith(f'Z {side} {st}') for l in shown), \
                f'{where}: no "{side} {st}" line in {shown!r}'

tty = open(sys.argv[1], 'rb').read().decode()
assert tty.endswith('\n'), 'the last line was not finished with a newline'
tty = tty.replace('\r\n', '\n')  # the pty's own translation of "\n"
redraws = [s for s in re.split('[\r\n]', tty) if '%' in s]
assert len(redraws) >= 3, f'only {len(redraws)} progress redraws: {tty!r}'
assert all(s.endswith('\x1b[K') for s in redraws), redraws
# what the terminal shows: each line's text after its last carriage return
shown = [l.split('\r')[-1].replace('\x1b[K', '') for l in tty.split('\n')[:-1]]
events_ok(shown, 'tty')
assert 'completed' in shown[-1] and '100.0%' in shown[-1], shown[-1]

plain = open(sys.argv[2], 'rb').read().decode()
assert '\r' not in plain and '\x1b' not in plain, 'control characters in a pipe'
events_ok(plain.split('\n')[:-1], 'pipe')

for f in sys.argv[3:]:
    t = open(f, 'rb').read().decode().replace('\r\n', '\n')
    assert '\r' not in t and '\x1b' not in t and '%' not in t, f'{f}: {t!r}'
EOF
	# --json on a pty: still nothing but JSON lines
	tr -d '\r' <"$T/json.log" >"$T/json.lines"
	each_line_json "$T/json.lines"
}

@test "no name, several migrations: one line (or JSON object) per side of each" {
	migration vm1 64M idle --postcopy --max-bandwidth 16M
	migration db 64M idle --precopy-only --max-bandwidth 16M
	expect 0 mig-status db --side source --wait-for active --timeout 20

	expect 0 mig-status
	[ "${#lines[@]}" -eq 5 ]
	[[ "${lines[0]}" =~ ^NAME\ +SIDE\ +STATE\ +DONE$ ]]
	[[ "${lines[1]}" =~ ^db\ +source\ +[a-z-]+\ +([0-9.]+%|-)$ ]]
	[[ "${lines[2]}" =~ ^db\ +destination\ +[a-z-]+\ +([0-9.]+%|-)$ ]]
	[[ "${lines[3]}" =~ ^vm1\ +source\ +[a-z-]+\ +([0-9.]+%|-)$ ]]
	[[ "${lines[4]}" =~ ^vm1\ +destination\ +[a-z-]+\ +([0-9.]+%|-)$ ]]

	mig-status --json 3>&- >"$T/list.json"
	jq -e 'type == "array" and length == 4
		and ([.[].name] == ["db", "db", "vm1", "vm1"])
		and ([.[].side] == ["source", "destination", "source", "destination"])
		and all(.[]; (.status | type) == "string" and (.percent | type) == "number"
			and (.bus | endswith(".sock")))' "$T/list.json"
	python3 -m json.tool "$T/list.json" >/dev/null

	expect 0 mig-status --side destination --json
	jq -e 'length == 2 and all(.[]; .side == "destination")' <<<"$output"

	# one of several cannot be guessed for following or waiting
	expect 64 mig-status --watch
	[[ "$output" == *"2 migrations run on this host (db, vm1): name one"* ]]
	expect 64 mig-status --wait-for completed
	[[ "$output" == *"2 migrations run on this host (db, vm1): name one"* ]]
	# named: as ever
	expect 0 mig-status vm1 --side source
	grep -qE '^name: +vm1$' <<<"$output"

	# a socket left by a killed engine: listed as such, still exit 0
	python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' \
		"$MIG_RUNTIME_DIR/old.recv.sock"
	expect 0 mig-status
	[[ "$output" == *$'\n'"old   destination  unreachable"*"-"* ]]
	expect 0 mig-status --json
	jq -e 'length == 5 and (.[] | select(.name == "old") | .status == null
		and (."error-desc" | length) > 0)' <<<"$output"

	# "default" here: it is the one shown, as before lists existed
	python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' \
		"$MIG_RUNTIME_DIR/default.send.sock"
	expect 69 mig-status
	[[ "$output" == *"no migration 'default' on this host"* ]]
}
