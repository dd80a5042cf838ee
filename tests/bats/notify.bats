#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# --notify: every event of a migration is POSTed to a webhook, in order, on
# both sides; a dead endpoint (refused, or one that never answers) slows
# neither the migration nor the engines' exit; a non-http URL is a usage
# error.

load ../helpers/common

HOOK=$BATS_TEST_DIRNAME/../helpers/webhook.py
BATS_TEST_TIMEOUT=${BATS_TEST_TIMEOUT:-180}

setup() { mig_setup; }
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

assert_eq() {
	if [ "$2" != "$3" ]; then
		echo "# $1: got '$2', expected '$3'" >&2
		return 1
	fi
}

@test "the webhook receives every event of a migration, in order" {
	guest src 128M --workload ab
	sleep 0.3
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

# timed TAG [URL]: a 256 MiB ab guest migrated with --postcopy and the pump
# at 256M/s (about 1 s), both engines notifying URL/send and URL/recv when
# given. Sets TOTAL (the migration's time, from the source's --summary),
# WALL (mig-send's start to its exit) and LAG (the summary line to
# mig-send's exit: the queue flush), in seconds. The destination guest is
# verified, then stopped, so that it does not load the next run.
timed() {
	local tag=$1 url=${2:-} port t0 t1 t2 pid
	local -a rn=() sn=()
	if [ -n "$url" ]; then
		rn=(--notify "$url/recv")
		sn=(--notify "$url/send")
	fi
	guest "$tag-src" 256M --workload ab
	port=$(free_port)
	start "$tag-recv" mig-recv --name "$tag" --listen "tcp:127.0.0.1:$port" \
		--guest-ctl "$T/$tag-dst.ctl" "${rn[@]}"
	t0=$EPOCHREALTIME
	bg "$tag-send" mig-send --postcopy --summary --max-bandwidth 256M \
		--name "$tag" --guest "$T/$tag-src.ctl" --to "tcp:127.0.0.1:$port" "${sn[@]}"
	pid=$(awk -v n="$tag-send" '$2 == n { p = $1 } END { print p }' "$T/pids")
	# the summary line is printed (and flushed) when the migration has
	# ended, before the engine flushes its webhook queue and exits
	local i=0
	until grep -q ' completed in ' "$T/$tag-send.log"; do
		kill -0 "$pid" 2>/dev/null || break
		i=$((i + 1))
		[ "$i" -le 1200 ] || { echo "# $tag: no summary after 120 s" >&2; return 1; }
		sleep 0.05
	done
	t1=$EPOCHREALTIME
	wait_exit "$tag-send" 60
	t2=$EPOCHREALTIME
	[ "$status" -eq 0 ] || { echo "# $tag: mig-send exited $status" >&2; return 1; }
	wait_exit "$tag-recv" 60
	[ "$status" -eq 0 ] || { echo "# $tag: mig-recv exited $status" >&2; return 1; }
	TOTAL=$(sed -nE 's/.*source completed in ([0-9.]+) s:.*/\1/p' "$T/$tag-send.log")
	[ -n "$TOTAL" ] || { echo "# $tag: no summary line" >&2; return 1; }
	WALL=$(awk -v a="$t0" -v b="$t2" 'BEGIN { printf "%.3f", b - a }')
	LAG=$(awk -v a="$t1" -v b="$t2" 'BEGIN { printf "%.3f", b - a }')
	expect 0 mig-guest verify --ctl "$T/$tag-dst.ctl"
	[[ "$output" == *"invariant holds"* ]]
	expect 0 mig-guest quit --ctl "$T/$tag-dst.ctl"
}

# le A B: A <= B, as decimals.
le() {
	awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }' ||
		{ echo "# $3: $1 > $2" >&2; return 1; }
}

@test "a dead webhook endpoint slows nothing down" {
	local hport bound total wall lag
	# the baseline: no webhook
	timed base
	local base_total=$TOTAL base_wall=$WALL base_lag=$LAG
	# nothing listens: every connection is refused at once
	timed refused "http://127.0.0.1:$(free_port)"
	local ref_total=$TOTAL ref_wall=$WALL ref_lag=$LAG
	# connections accepted, never answered: each POST waits for its timeout
	hport=$(free_port)
	start hook python3 "$HOOK" "$hport" "$T/hang.jsonl" --mode hang
	timed hang "http://127.0.0.1:$hport"
	local hang_total=$TOTAL hang_wall=$WALL hang_lag=$LAG
	{
		echo "# notify timing (s): total / mig-send wall / exit after completion"
		echo "#   no webhook: $base_total / $base_wall / $base_lag"
		echo "#   refused:    $ref_total / $ref_wall / $ref_lag"
		echo "#   hanging:    $hang_total / $hang_wall / $hang_lag"
	} >&3
	# the hanging endpoint was really tried, by both sides
	grep -q '"side":"source"' "$T/hang.jsonl"
	grep -q '"side":"destination"' "$T/hang.jsonl"
	# and the failures were reported, not fatal
	grep -q 'notify' "$T/hang-send.log"
	# generous bounds, for shared noisy machines: only a migration that
	# waits for the endpoint (a POST per event: seconds) breaks them
	bound=$(awk -v b="$base_total" 'BEGIN { print 3 * b + 2 }')
	le "$ref_total" "$bound" "total time, refused endpoint vs 3 x baseline + 2 s"
	le "$hang_total" "$bound" "total time, hanging endpoint vs 3 x baseline + 2 s"
	le "$ref_lag" 10 "mig-send's exit after completion, refused endpoint"
	le "$hang_lag" 10 "mig-send's exit after completion, hanging endpoint"
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
