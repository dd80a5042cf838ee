#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# A running guest migrates with postcopy over tcp: and unix:, keeps running
# on the destination, verifies, and migrates back again.

load ../helpers/common

setup() { mig_setup; }
teardown() { mig_teardown; }

# migrate NAME FROM_CTL TO_CTL URI [mig-send args]: one whole migration with
# both sides' event streams recorded in $T/NAME.{send,recv}.events.
migrate() {
	local name=$1 from=$2 to=$3 uri=$4; shift 4
	start "$name-recv" mig-recv --name "$name" --listen "$uri" --guest-ctl "$to"
	bg "$name-wr" mig-status --bus "$(bus_of "$name" recv)" --watch --json
	start "$name-send" mig-send --postcopy --name "$name" --guest "$from" --to "$uri" "$@"
	bg "$name-ws" mig-status --bus "$(bus_of "$name" send)" --watch --json
	wait_exit "$name-send" 120
	[ "$status" -eq 0 ]
	wait_exit "$name-recv" 60
	[ "$status" -eq 0 ]
	wait_exit "$name-ws" 20
	wait_exit "$name-wr" 20
	jq -r 'select(.event == "MIGRATION") | .data.status' "$T/$name-ws.log" |
		tr '\n' ' ' >"$T/$name.send.events"
	jq -r 'select(.event == "MIGRATION") | .data.status' "$T/$name-wr.log" |
		tr '\n' ' ' >"$T/$name.recv.events"
}

assert_events() {
	local got
	got=$(sed 's/ $//' "$1")
	if [ "$got" != "$2" ]; then
		echo "# events in $1: '$got', expected '$2'" >&2
		return 1
	fi
}

assert_runs_and_verifies() {
	local ctl=$1 p1 p2
	p1=$(guest_progress "$ctl")
	sleep 0.3
	p2=$(guest_progress "$ctl")
	[ "$p2" -gt "$p1" ] || { echo "# guest at $ctl is not running ($p1 -> $p2)" >&2; return 1; }
	expect 0 mig-guest verify --ctl "$ctl"
	[[ "$output" == *"invariant holds"* ]]
}

@test "a 256 MiB ab guest migrates over tcp: with exactly the expected events" {
	guest src 256M --workload ab
	sleep 0.3
	migrate m1 "$T/src.ctl" "$T/dst.ctl" "tcp:127.0.0.1:$(free_port)" --max-bandwidth 512M
	assert_events "$T/m1.send.events" "setup active postcopy-active completed"
	assert_events "$T/m1.recv.events" "setup active postcopy-active completed"
	assert_runs_and_verifies "$T/dst.ctl"
	# the source guest handed its life over and exited
	expect 69 mig-guest info --ctl "$T/src.ctl"
}

@test "a 256 MiB ab guest migrates over unix: and back again (ping-pong)" {
	guest src 256M --workload ab
	sleep 0.3
	migrate there "$T/src.ctl" "$T/dst.ctl" "unix:$T/m.sock"
	assert_events "$T/there.send.events" "setup active postcopy-active completed"
	assert_events "$T/there.recv.events" "setup active postcopy-active completed"
	assert_runs_and_verifies "$T/dst.ctl"
	migrate back "$T/dst.ctl" "$T/src2.ctl" "unix:$T/m2.sock"
	assert_events "$T/back.send.events" "setup active postcopy-active completed"
	assert_runs_and_verifies "$T/src2.ctl"
	expect 69 mig-guest info --ctl "$T/dst.ctl"
}

@test "an idle guest's pages all arrive intact, zero pages included" {
	guest src 64M --workload idle
	migrate idle "$T/src.ctl" "$T/dst.ctl" "tcp:127.0.0.1:$(free_port)" --no-preempt --compress
	expect 0 mig-guest verify --ctl "$T/dst.ctl"
	[[ "$output" == *"16384 pages match"* ]]
}

@test "query-migrate reports status, sizes, pages and requests during postcopy" {
	guest src 128M --workload ab
	sleep 0.3
	local port; port=$(free_port)
	start q-recv mig-recv --name q --listen "tcp:127.0.0.1:$port" --guest-ctl "$T/dst.ctl"
	start q-send mig-send --postcopy --name q --guest "$T/src.ctl" --to "tcp:127.0.0.1:$port" --max-bandwidth 32M
	expect 0 mig-status --bus "$(bus_of q send)" --wait-for postcopy-active --timeout 20
	run mig-status --bus "$(bus_of q recv)" --json 3>&-
	[ "$status" -eq 0 ]
	echo "$output" | jq -e '.status == "postcopy-active" and .side == "destination"
		and .ram.total == 134217728 and (.ram["pages-present"] | type) == "number"
		and (."postcopy-latency".count | type) == "number"'
	run mig-status --bus "$(bus_of q send)" --json 3>&-
	echo "$output" | jq -e '.status == "postcopy-active" and .side == "source"
		and .ram.total == 134217728 and .ram.transferred > 0 and (.uuid | length) == 36'
	wait_exit q-send 60
	[ "$status" -eq 0 ]
	expect 0 mig-guest verify --ctl "$T/dst.ctl"
}
