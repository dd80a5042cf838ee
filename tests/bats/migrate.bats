#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# A running guest migrates with postcopy over tcp: and unix:, keeps running
# on the destination, verifies, and migrates back again.

load ../helpers/common

setup() {
	mig_setup
	require_uffd
}
teardown() { mig_teardown; }

# migrate NAME FROM_CTL TO_CTL URI [mig-send args]: one whole migration with
# both sides' event streams recorded by watchers NAME-ws and NAME-wr.
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
}

# assert_runs_and_verifies CTL: the migrated guest runs on, and is whole.
assert_runs_and_verifies() {
	guest_runs "$1"
	verifies "$1"
}

@test "a 256 MiB ab guest migrates over tcp: with exactly the expected events" {
	guest src 256M --workload ab
	guest_wrote "$T/src.ctl" 65536
	migrate m1 "$T/src.ctl" "$T/dst.ctl" "tcp:127.0.0.1:$(free_port)" --max-bandwidth 512M
	events_match m1-ws "setup active postcopy-active completed"
	events_match m1-wr "setup active postcopy-active completed"
	assert_runs_and_verifies "$T/dst.ctl"
	# the source guest handed its life over and exited
	expect 69 mig-guest info --ctl "$T/src.ctl"
	[[ "$output" == *"no guest at $T/src.ctl"* ]]
}

@test "a 256 MiB ab guest migrates over unix: and back again (ping-pong)" {
	guest src 256M --workload ab
	guest_wrote "$T/src.ctl" 65536
	migrate there "$T/src.ctl" "$T/dst.ctl" "unix:$T/m.sock"
	events_match there-ws "setup active postcopy-active completed"
	events_match there-wr "setup active postcopy-active completed"
	assert_runs_and_verifies "$T/dst.ctl"
	migrate back "$T/dst.ctl" "$T/src2.ctl" "unix:$T/m2.sock"
	events_match back-ws "setup active postcopy-active completed"
	assert_runs_and_verifies "$T/src2.ctl"
	expect 69 mig-guest info --ctl "$T/dst.ctl"
	[[ "$output" == *"no guest at $T/dst.ctl"* ]]
}

@test "an idle guest's pages all arrive intact, zero pages included" {
	guest src 64M --workload idle
	migrate idle "$T/src.ctl" "$T/dst.ctl" "tcp:127.0.0.1:$(free_port)" --no-preempt --compress
	expect 0 mig-guest verify --ctl "$T/dst.ctl"
	[[ "$output" == *"16384 pages match"* ]]
}

@test "query-migrate reports status, sizes, pages and requests during postcopy" {
	guest src 128M --workload ab
	guest_wrote "$T/src.ctl" 32768
	local port; port=$(free_port)
	start q-recv mig-recv --name q --listen "tcp:127.0.0.1:$port" --guest-ctl "$T/dst.ctl"
	start q-send mig-send --postcopy --name q --guest "$T/src.ctl" --to "tcp:127.0.0.1:$port" --max-bandwidth 32M
	expect 0 mig-status --bus "$(bus_of q send)" --wait-for postcopy-active --timeout 20
	run mig-status --bus "$(bus_of q recv)" --json 3>&-
	[ "$status" -eq 0 ]
	echo "$output" | jq -e '.status == "postcopy-active" and ."x-side" == "destination"
		and .ram.total == 134217728 and (.ram["x-pages-present"] | type) == "number"
		and (."x-postcopy-latency".count | type) == "number"'
	run mig-status --bus "$(bus_of q send)" --json 3>&-
	echo "$output" | jq -e '.status == "postcopy-active" and ."x-side" == "source"
		and .ram.total == 134217728 and .ram.transferred > 0 and (."x-uuid" | length) == 36'
	wait_exit q-send 60
	[ "$status" -eq 0 ]
	expect 0 mig-guest verify --ctl "$T/dst.ctl"
}
