#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# Pause and recovery: a broken link never loses the guest. Links are broken
# for real: socat proxies killed or frozen, peers that fall silent.

load ../helpers/common

setup() {
	mig_setup
	require_uffd
	PORT=$(free_port)
	SRC_BUS=$(bus_of m send)
	DST_BUS=$(bus_of m recv)
}
teardown() { mig_teardown; }

# A migration through both proxies, paused on the source once running.
start_paused_through_proxies() {
	guest src 256M --workload ab
	start recv mig-recv --name m --listen "unix:$T/dst.sock" --guest-ctl "$T/dst.ctl" --link-timeout 2
	proxy_b
	proxy_a
	start send mig-send --postcopy --name m --guest "$T/src.ctl" --to "unix:$T/src.sock" --link-timeout 2
	bg ws mig-status --bus "$SRC_BUS" --watch --json
	bg wr mig-status --bus "$DST_BUS" --watch --json
	state "$SRC_BUS" postcopy-active
	expect 0 mig-pause --bus "$SRC_BUS"
	state "$SRC_BUS" postcopy-paused
	state "$DST_BUS" postcopy-paused
}

@test "two proxies: pause, cut the middle, a failed recovery, then a good one completes" {
	start_paused_through_proxies
	proxy_kill pb
	# the destination accepts recovery; nobody can reach it yet: still paused
	expect 75 mig-recover --bus "$DST_BUS" --listen "unix:$T/dst.sock" --timeout 1
	# the attempt fails (the link timeout), it does not run out its --timeout
	expect 75 mig-recover --bus "$SRC_BUS" --to "unix:$T/src.sock" --timeout 20
	[[ "$output" == *"recovery failed: still postcopy-paused"* ]] || { echo "# $output" >&2; false; }
	state "$SRC_BUS" postcopy-paused
	proxy_b
	expect 0 mig-recover --bus "$SRC_BUS" --to "unix:$T/src.sock" --timeout 20
	finish_and_verify
	wait_exit ws 10
	wait_exit wr 10
	events_match ws "setup active postcopy-active postcopy-paused postcopy-recover-setup (postcopy-recover )?postcopy-paused postcopy-recover-setup postcopy-recover postcopy-active completed"
	events_match wr "setup active postcopy-active postcopy-paused postcopy-recover postcopy-active completed"
}

@test "the link breaks at a recovery's postcopy-active, before the source's threads start: paused, recovered" {
	# the source announces postcopy-active, then starts its threads: held
	# a second apart here (MIG_FAULT), the link is cut between the two
	MIG_FAULT=recover-threads-late start_paused_through_proxies
	expect 0 mig-recover --bus "$DST_BUS" --listen "unix:$T/dst.sock" --timeout 1 || [ "$status" -eq 75 ]
	expect 0 mig-recover --bus "$SRC_BUS" --to "unix:$T/src.sock" --timeout 20
	proxy_kill pb
	grep -q 'recover-threads-late: threads start in 1 s' "$T/send.log"
	state "$SRC_BUS" postcopy-paused
	state "$DST_BUS" postcopy-paused
	proxy_b
	expect 0 mig-recover --bus "$DST_BUS" --listen "unix:$T/dst.sock" --timeout 1 || [ "$status" -eq 75 ]
	expect 0 mig-recover --bus "$SRC_BUS" --to "unix:$T/src.sock" --timeout 20
	finish_and_verify
	wait_exit ws 10
	events_match ws "setup active postcopy-active postcopy-paused postcopy-recover-setup postcopy-recover postcopy-active postcopy-paused postcopy-recover-setup postcopy-recover postcopy-active completed"
}

@test "recovery to an unused port: exactly postcopy-recover-setup, postcopy-paused" {
	start_paused_through_proxies
	local before after
	before=$(history "$SRC_BUS")
	expect 75 mig-recover --bus "$SRC_BUS" --to "tcp:127.0.0.1:$(free_port)" --timeout 20
	[[ "$output" == *"recovery failed: still postcopy-paused"* ]] || { echo "# $output" >&2; false; }
	after=$(history "$SRC_BUS")
	[ "$after" = "$before postcopy-recover-setup postcopy-paused" ] ||
		{ echo "# before: $before; after: $after" >&2; false; }
	expect 0 mig-recover --bus "$DST_BUS" --listen "unix:$T/dst.sock" --timeout 1 || [ "$status" -eq 75 ]
	expect 0 mig-recover --bus "$SRC_BUS" --to "unix:$T/src.sock" --timeout 20
	finish_and_verify
}

@test "mig-pause kicks the source out of postcopy-recover held by a silent peer" {
	start_paused_through_proxies
	local fake=$(free_port)
	start fake "$BATS_TEST_DIRNAME/../helpers/fakepeer.py" dest "tcp:127.0.0.1:$fake"
	bg rec mig-recover --bus "$SRC_BUS" --to "tcp:127.0.0.1:$fake" --timeout 60
	state "$SRC_BUS" postcopy-recover
	expect 0 mig-pause --bus "$SRC_BUS" --timeout 5
	wait_exit rec 10
	[ "$status" -eq 75 ]
	# without a pause, the link timeout gets it out too
	bg rec2 mig-recover --bus "$SRC_BUS" --to "tcp:127.0.0.1:$fake" --timeout 60
	state "$SRC_BUS" postcopy-recover
	state "$SRC_BUS" postcopy-paused 15
	wait_exit rec2 10
	[ "$status" -eq 75 ]
	expect 0 mig-recover --bus "$SRC_BUS" --to "unix:$T/src.sock" --timeout 20 ||
		{ mig-recover --bus "$DST_BUS" --listen "unix:$T/dst.sock" --timeout 1 3>&- || true
		  expect 0 mig-recover --bus "$SRC_BUS" --to "unix:$T/src.sock" --timeout 20; }
	finish_and_verify
}

@test "mig-pause kicks the destination out of postcopy-recover held by a silent peer" {
	start_paused_through_proxies
	local uuid
	uuid=$(mig-status --bus "$DST_BUS" --json 3>&- | jq -r '."x-uuid"')
	expect 75 mig-recover --bus "$DST_BUS" --listen "unix:$T/dst.sock" --timeout 1
	start fake "$BATS_TEST_DIRNAME/../helpers/fakepeer.py" source "unix:$T/dst.sock" "$uuid"
	state "$DST_BUS" postcopy-recover
	expect 0 mig-pause --bus "$DST_BUS" --timeout 5
	state "$DST_BUS" postcopy-paused
	expect 0 mig-recover --bus "$SRC_BUS" --to "unix:$T/src.sock" --timeout 20
	finish_and_verify
}

@test "a silent link (frozen proxy) pauses both sides within the link timeout" {
	guest src 256M --workload ab
	start recv mig-recv --name m --listen "tcp:127.0.0.1:$PORT" --guest-ctl "$T/dst.ctl" --link-timeout 1
	local via; via=$(free_port)
	socat_proxy px "tcp-listen:$via" "tcp:127.0.0.1:$PORT"
	wait_port "$via"
	start send mig-send --postcopy --name m --guest "$T/src.ctl" --to "tcp:127.0.0.1:$via" --link-timeout 1 --max-bandwidth 8M
	state "$SRC_BUS" postcopy-active
	# no FIN, no RST: the proxy just stops moving bytes
	proxy_freeze px
	state "$SRC_BUS" postcopy-paused 10
	state "$DST_BUS" postcopy-paused 10
	proxy_kill px
	expect 75 mig-recover --bus "$DST_BUS" --listen "tcp:127.0.0.1:$PORT" --timeout 1
	expect 0 mig-recover --bus "$SRC_BUS" --to "tcp:127.0.0.1:$PORT" --timeout 20
	# recovered: the rest at full speed
	set_bandwidth "$SRC_BUS" 0 || [ ! -S "$SRC_BUS" ]
	finish_and_verify
}

@test "migrate-cancel is refused once postcopy has started" {
	start_paused_through_proxies
	qmp "$SRC_BUS" '{"execute":"migrate_cancel","id":7}'
	echo "$output" | grep '"id":7' | jq -e '.error.class == "GenericError" and (.error.desc | test("^migrate_cancel: refused: the guest has left this host"))'
	qmp "$DST_BUS" '{"execute":"migrate-cancel","id":8}'
	echo "$output" | grep '"id":8' | jq -e '.error.desc | test("^migrate-cancel: refused: postcopy has started")'
	expect 0 mig-recover --bus "$DST_BUS" --listen "unix:$T/dst.sock" --timeout 1 || [ "$status" -eq 75 ]
	expect 0 mig-recover --bus "$SRC_BUS" --to "unix:$T/src.sock" --timeout 20
	finish_and_verify
}

@test "the cron example retries until the migration runs again" {
	start_paused_through_proxies
	proxy_kill pb
	local cron="$BATS_TEST_DIRNAME/../../examples/cron-recover.sh"
	expect 75 "$cron" --bus "$DST_BUS" --listen "unix:$T/dst.sock" --timeout 1
	expect 75 "$cron" --bus "$SRC_BUS" --to "unix:$T/src.sock" --timeout 10
	expect 75 "$cron" --bus "$SRC_BUS" --to "unix:$T/src.sock" --timeout 10
	proxy_b
	expect 0 "$cron" --bus "$SRC_BUS" --to "unix:$T/src.sock" --timeout 20
	# idempotent: running it again changes nothing
	expect 0 "$cron" --bus "$SRC_BUS" --to "unix:$T/src.sock" --timeout 20 || [ "$status" -eq 69 ]
	finish_and_verify
}

@test "the link breaks as the destination completes: the source learns it on recovery" {
	guest src 64M --workload ab
	start recv env MIG_FAULT=dest-complete-lost mig-recv -v --name m \
		--listen "tcp:127.0.0.1:$PORT" --guest-ctl "$T/dst.ctl"
	start send mig-send --postcopy --name m --guest "$T/src.ctl" --to "tcp:127.0.0.1:$PORT"
	state "$DST_BUS" completed
	state "$SRC_BUS" postcopy-paused
	# the destination stays until the source knows, whatever mig-recover it gets
	expect 0 mig-recover --bus "$DST_BUS" --listen "tcp:127.0.0.1:$PORT" --timeout 1
	expect 0 mig-recover --bus "$SRC_BUS" --to "tcp:127.0.0.1:$PORT" --timeout 20
	finish_and_verify
	grep -q "told the reconnected source" "$T/recv.log"
}
