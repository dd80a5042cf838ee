#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# --notify: every event of a migration is POSTed to a webhook, in order, on
# both sides; a dead endpoint (refused, or one that never answers) fails
# neither the migration nor the engines' exit (what it costs in time,
# bench/run.sh measures); a non-http URL is a usage error.

load ../helpers/common

HOOK=$BATS_TEST_DIRNAME/../helpers/webhook.py
BATS_TEST_TIMEOUT=${BATS_TEST_TIMEOUT:-180}

# The usage test needs no migration; the others run some.
setup() {
	mig_setup
	[[ $BATS_TEST_DESCRIPTION == *"rejects a non-http URL" ]] || require_uffd
}
teardown() { mig_teardown; }

# statuses_of FILE SIDE: the MIGRATION statuses the webhook got from SIDE.
statuses_of() {
	jq -r --arg side "$2" 'select(.side == $side and .event == "MIGRATION") |
		.data.status' "$1" | tr '\n' ' ' | sed 's/ $//'
}

# events_seq FILE [SIDE]: event and data of each event, one compact line
# each (the webhook log filtered by SIDE, or a mig-status --watch --json log).
events_seq() {
	if [ -n "${2:-}" ]; then
		jq -c --arg side "$2" 'select(.side == $side) | {event, data}' "$1"
	else
		jq -c 'select(.event) | {event, data}' "$1"
	fi
}

@test "the webhook receives every event of a migration, in order" {
	guest src 128M --workload ab
	guest_wrote "$T/src.ctl" 32768
	local port hport n
	port=$(free_port)
	hport=$(free_port)
	start hook python3 "$HOOK" "$hport" "$T/hook.jsonl" --mode ok
	start n-recv mig-recv --name n --listen "tcp:127.0.0.1:$port" \
		--guest-ctl "$T/dst.ctl" --notify "http://127.0.0.1:$hport/recv"
	bg n-wr mig-status --bus "$(bus_of n recv)" --watch --json
	start n-send mig-send --postcopy --name n --guest "$T/src.ctl" \
		--to "tcp:127.0.0.1:$port" --notify "http://127.0.0.1:$hport/send"
	bg n-ws mig-status --bus "$(bus_of n send)" --watch --json
	wait_exit n-send 120
	[ "$status" -eq 0 ]
	wait_exit n-recv 60
	[ "$status" -eq 0 ]
	wait_exit n-ws 20
	wait_exit n-wr 20
	# the engines flush the queue before they exit: nothing arrives later
	assert_eq "source statuses" "$(statuses_of "$T/hook.jsonl" source)" \
		"setup active postcopy-active completed"
	assert_eq "destination statuses" "$(statuses_of "$T/hook.jsonl" destination)" \
		"setup active postcopy-active completed"
	# every line is one JSON object with the bus's event plus name and side
	n=$(wc -l <"$T/hook.jsonl")
	[ "$n" -ge 8 ]
	run jq -R -s -e 'split("\n") | map(select(length > 0) | fromjson) |
		length == '"$n"' and all(.[]; type == "object"
			and .name == "n" and (.side == "source" or .side == "destination")
			and (.event | type) == "string" and (.data | type) == "object"
			and (.timestamp.seconds | type) == "number"
			and (.timestamp.microseconds | type) == "number")' "$T/hook.jsonl"
	[ "$status" -eq 0 ] || { echo "# bad lines in the webhook log: $output" >&2; false; }
	# the webhook gets exactly what a bus client gets, event for event
	assert_eq "source events, webhook vs bus" "$(events_seq "$T/hook.jsonl" source)" \
		"$(events_seq "$T/n-ws.log")"
	assert_eq "destination events, webhook vs bus" \
		"$(events_seq "$T/hook.jsonl" destination)" "$(events_seq "$T/n-wr.log")"
	# timestamps never go back within a side
	jq -s -e 'group_by(.side) | all(.[]; map(.timestamp.seconds * 1000000 +
		.timestamp.microseconds) | . == sort)' "$T/hook.jsonl"
	expect 0 mig-guest verify --ctl "$T/dst.ctl"
}

# notified TAG URL: a 64 MiB ab guest migrated with --postcopy, both
# engines notifying URL/send and URL/recv: both exit 0 and the destination
# guest verifies; then it is stopped, so that it does not load the next.
notified() {
	local tag=$1 url=$2 port
	guest "$tag-src" 64M --workload ab
	port=$(free_port)
	start "$tag-recv" mig-recv --name "$tag" --listen "tcp:127.0.0.1:$port" \
		--guest-ctl "$T/$tag-dst.ctl" --notify "$url/recv"
	bg "$tag-send" mig-send --postcopy --name "$tag" --guest "$T/$tag-src.ctl" \
		--to "tcp:127.0.0.1:$port" --notify "$url/send"
	wait_exit "$tag-send" 120
	[ "$status" -eq 0 ] || { echo "# $tag: mig-send exited $status" >&2; return 1; }
	wait_exit "$tag-recv" 60
	[ "$status" -eq 0 ] || { echo "# $tag: mig-recv exited $status" >&2; return 1; }
	verifies "$T/$tag-dst.ctl"
	expect 0 mig-guest quit --ctl "$T/$tag-dst.ctl"
}

# Whether a dead endpoint costs the migration time is measured, not
# asserted: bench/run.sh, scenarios notify_refused and notify_hang.
@test "a dead webhook endpoint (refused, or never answering) fails no migration and holds no engine" {
	local url hport
	# nothing listens: every connection is refused at once
	url="http://127.0.0.1:$(free_port)"
	notified refused "$url"
	# the failures were reported, not fatal
	grep -q "could not deliver .*to $url/send" "$T/refused-send.log"
	grep -q "could not deliver .*to $url/recv" "$T/refused-recv.log"
	# connections accepted, never answered: the engines exited all the
	# same, while the endpoint still holds every request it was sent
	hport=$(free_port)
	url="http://127.0.0.1:$hport"
	start hook python3 "$HOOK" "$hport" "$T/hang.jsonl" --mode hang
	notified hang "$url"
	kill -0 "$PID_hook"
	# the hanging endpoint was really tried, by both sides
	grep -q '"side":"source"' "$T/hang.jsonl"
	grep -q '"side":"destination"' "$T/hang.jsonl"
	grep -q "could not deliver .*to $url/send" "$T/hang-send.log"
	grep -q "could not deliver .*to $url/recv" "$T/hang-recv.log"
}

@test "--notify rejects a non-http URL" {
	local url
	for url in ftp://127.0.0.1/x 127.0.0.1:8080 http:// "" file:///tmp/x; do
		expect 64 mig-send --guest "$T/g.ctl" --to tcp:127.0.0.1:1 --notify "$url"
		[ "${#lines[@]}" -eq 2 ] || { echo "# $output" >&2; false; }
		[[ "${lines[0]}" == *"--notify '$url'"* ]]
		[ "${lines[1]}" = "Try 'mig-send --help'." ]
		expect 64 mig-recv --listen tcp:127.0.0.1:1 --notify "$url"
		[ "${#lines[@]}" -eq 2 ]
		[[ "${lines[0]}" == *"--notify '$url'"* ]]
	done
	# nothing was started: no bus socket
	[ -z "$(ls -A "$MIG_RUNTIME_DIR")" ]
}
