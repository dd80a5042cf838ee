#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# Postcopy blocktime on the destination, as QEMU's query-migrate reports
# it: postcopy-vcpu-blocktime, per vCPU in index order, the milliseconds it
# waited on missing pages; postcopy-blocktime the milliseconds all of them
# waited at once. Integers both, read by a plain QMP client.

load ../helpers/common

BATS_TEST_TIMEOUT=${BATS_TEST_TIMEOUT:-180}

setup() {
	mig_setup
	require_uffd
	SRC_BUS=$(bus_of m send)
	DST_BUS=$(bus_of m recv)
	QMP=$BATS_TEST_DIRNAME/../helpers/qmp.py
}
teardown() { mig_teardown; }

# dst_query: the destination's query-migrate reply, on one line.
dst_query() { python3 "$QMP" "$DST_BUS" query-migrate 3>&-; }

# vcpus_waited N: the destination counts N vCPUs, every one has waited.
vcpus_waited() {
	dst_query | jq -e --argjson n "$1" '.return["postcopy-vcpu-blocktime"] |
		length == $n and all(. > 0)'
}

@test "query-migrate on the destination reports blocktime per vCPU and in all" {
	local out
	guest src 128M --workload ab --vcpus 2
	guest_wrote "$T/src.ctl" 32768
	start recv mig-recv --name m --listen "unix:$T/d.sock" --guest-ctl "$T/dst.ctl" --linger 30
	# throttled: the vCPUs run ahead of the pump and wait on their pages
	start send mig-send --postcopy --name m --guest "$T/src.ctl" --to "unix:$T/d.sock" \
		--max-bandwidth 16M
	state "$DST_BUS" postcopy-active
	wait_for 30 "both vCPUs to have waited on pages" vcpus_waited 2
	# while they run: integers, counted up to now
	out=$(dst_query)
	jq -e '.return | (."postcopy-blocktime" | type) == "number" and
		(."postcopy-vcpu-blocktime" | all(type == "number" and . == floor))' <<<"$out"
	set_bandwidth "$SRC_BUS" 0
	wait_exit send 120
	[ "$status" -eq 0 ]
	state "$DST_BUS" completed
	out=$(dst_query)
	echo "# $out" >&2
	# every wait has ended: no vCPU waited longer than the migration took,
	# and all of them at once no longer than any one did
	jq -e '.return | ."postcopy-vcpu-blocktime" as $v | ."postcopy-blocktime" as $all |
		($v | length) == 2 and ($v | all(type == "number" and . == floor and
		. > 0 and . <= $all_total)) and ($all | type) == "number" and
		$all == ($all | floor) and $all >= 0 and $all <= ($v | min)' \
		--argjson all_total "$(jq '.return."total-time"' <<<"$out")" <<<"$out"
	verifies "$T/dst.ctl"
	kill -TERM "$(pid_of recv)"
	wait_exit recv 20
	[ "$status" -eq 0 ]
}

@test "a restarted mig-recv counts blocktime from its takeover" {
	local out
	guest src 128M --workload ab --vcpus 2
	guest_wrote "$T/src.ctl" 32768
	start recv mig-recv --name m --listen "unix:$T/d.sock" --guest-ctl "$T/dst.ctl" \
		--link-timeout 2
	start send mig-send --postcopy --name m --guest "$T/src.ctl" --to "unix:$T/d.sock" \
		--link-timeout 2 --max-bandwidth 16M
	state "$DST_BUS" postcopy-active
	wait_for 30 "both vCPUs to have waited on pages" vcpus_waited 2
	kill9 recv
	state "$SRC_BUS" postcopy-paused
	start recv2 mig-recv --name m --attach "$T/dst.ctl" --link-timeout 2 --linger 30
	state "$DST_BUS" postcopy-paused
	# the vCPUs it knows from the guest, whatever the dead engine counted
	out=$(dst_query)
	jq -e '.return."postcopy-vcpu-blocktime" | length == 2' <<<"$out"
	expect 0 mig-recover --bus "$SRC_BUS" --to "unix:$T/d.sock" --timeout 20
	wait_for 30 "both vCPUs to have waited on pages" vcpus_waited 2
	set_bandwidth "$SRC_BUS" 0
	wait_exit send 120
	[ "$status" -eq 0 ]
	state "$DST_BUS" completed
	out=$(dst_query)
	jq -e '.return | ."postcopy-vcpu-blocktime" as $v |
		($v | all(. <= $total)) and ."postcopy-blocktime" <= ($v | min)' \
		--argjson total "$(jq '.return."total-time"' <<<"$out")" <<<"$out"
	verifies "$T/dst.ctl"
	kill -TERM "$(pid_of recv2)"
	wait_exit recv2 20
	[ "$status" -eq 0 ]
}
