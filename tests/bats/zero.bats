#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# Zero pages cost nothing on the destination: a page that arrives as zero
# stays a hole in the incoming guest's memfd (it reads as zero once the
# migration completes and the range is unregistered), and a vCPU that
# touches one before then gets a zero page placed at once.

load ../helpers/common

setup() {
	mig_setup
	require_uffd
}
teardown() { mig_teardown; }

# allocated_kib CTL: what the guest's RAM memfd holds, in KiB.
allocated_kib() {
	local pid fd
	pid=$(guest_json "$1" .pid)
	for fd in /proc/"$pid"/fd/*; do
		[[ $(readlink "$fd") == /memfd:mig-guest-ram* ]] || continue
		echo $(($(stat -L -c '%b * %B' "$fd") / 1024))
		return 0
	done
	echo "# no RAM memfd in guest $pid" >&2
	return 1
}

@test "an idle guest's zero pages stay holes on the destination, after postcopy and after precopy" {
	local i=0 mode port kib
	for mode in --postcopy --precopy-only; do
		i=$((i + 1))
		guest "src$i" 64M --workload idle
		port=$(free_port)
		start "recv$i" mig-recv --name "z$i" --listen "tcp:127.0.0.1:$port" --guest-ctl "$T/dst$i.ctl"
		start "send$i" mig-send --name "z$i" "$mode" --guest "$T/src$i.ctl" --to "tcp:127.0.0.1:$port"
		wait_exit "send$i" 60
		[ "$status" -eq 0 ]
		wait_exit "recv$i" 60
		[ "$status" -eq 0 ]
		# idle leaves every fourth page zero: 48 MiB hold data, and a
		# zero page placed would count on top (a little slack for
		# the memfd's own rounding)
		kib=$(allocated_kib "$T/dst$i.ctl")
		[ "$kib" -le $((48 * 1024 + 256)) ] ||
			{ echo "# $mode: $kib KiB allocated for 48 MiB of data" >&2; false; }
		expect 0 mig-guest verify --ctl "$T/dst$i.ctl"
		[[ "$output" == *"16384 pages match"* ]]
	done
}

@test "a vCPU's first touch of a zero page left a hole is served at once, during postcopy" {
	local bus p0
	# random writes over 256 MiB: when it switches, most pages are
	# still zero, and the vCPU goes on touching them on the destination
	guest src 256M --workload dirty:rate=64M,pattern=uniform --vcpus 1
	guest_wrote "$T/src.ctl" 16384
	port=$(free_port)
	start recv mig-recv --name zt --listen "tcp:127.0.0.1:$port" --guest-ctl "$T/dst.ctl"
	# slow enough that the data pages take seconds: the zero ones,
	# headers only, are all sent and left unplaced long before
	start send mig-send --name zt --postcopy --max-bandwidth 4M --guest "$T/src.ctl" \
		--to "tcp:127.0.0.1:$port"
	bus=$(bus_of zt send)
	state "$bus" postcopy-active 20
	p0=$(guest_progress "$T/dst.ctl")
	# a zero hole nobody placed would hold the vCPU until completion
	wait_for 20 "vCPU writes on the destination" progress_above "$T/dst.ctl" $((p0 + 8192))
	[ "$(mig-status --bus "$bus" --json 3>&- | jq -r .status)" = postcopy-active ]
	set_bandwidth "$bus" 0
	wait_exit send 60
	[ "$status" -eq 0 ]
	wait_exit recv 60
	[ "$status" -eq 0 ]
	guest_runs "$T/dst.ctl"
	verifies "$T/dst.ctl"
}
