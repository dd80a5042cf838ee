#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# Memory: an engine holds nothing per pause/recover cycle. Both engines'
# RSS is sampled by tests/helpers/cycles.py, which drives the cycles over
# one QMP connection to each bus.

load ../helpers/common

setup() {
	mig_setup
	require_uffd
	# In a SANITIZE=1 build, AddressSanitizer's quarantine keeps freed
	# memory (up to 256 MiB) to catch its use: here that would be memory
	# held per cycle by the sanitizer, not by the engines.
	export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=0:thread_local_quarantine_size_kb=0
	SRC_BUS=$(bus_of m send)
	DST_BUS=$(bus_of m recv)
}
teardown() { mig_teardown; }

# own KIND CYCLE: an engine's own memory in kB after that cycle: VmRSS less
# RssShmem. The source maps the guest's RAM to send it, so its VmRSS also
# grows with every page it reads, which is the migration going on, not
# memory the engine holds; the destination maps none (RssShmem 0).
own() {
	jq -r --arg k "$1" --arg c "$2" \
		'.rss[$c][$k] | .VmRSS - .RssShmem' "$T/cycles.json"
}

@test "500 pause/recover cycles: each engine's memory after cycle 500 is within 1 MiB of that after cycle 50" {
	# idle: nothing faults, so pages move only through the pump; at 1 MB/s
	# about a quarter of the guest moves in 500 cycles: it cannot complete
	# meanwhile
	guest src 128M --workload idle
	# -q: 500 cycles would log thousands of warnings about the broken links
	start recv mig-recv -q --name m --listen "unix:$T/dst.sock" --guest-ctl "$T/dst.ctl"
	start send mig-send -q --postcopy --name m --guest "$T/src.ctl" \
		--to "unix:$T/dst.sock" --max-bandwidth 1M
	expect 0 mig-status --bus "$SRC_BUS" --wait-for postcopy-active --timeout 15
	run timeout 70 python3 "$BATS_TEST_DIRNAME/../helpers/cycles.py" \
		--src "$SRC_BUS" --dst "$DST_BUS" \
		--listen "unix:$T/dst.sock" --to "unix:$T/dst.sock" \
		--cycles 500 --sample 50,500 --src-pid "$PID_send" --dst-pid "$PID_recv" \
		--timeout 10 --deadline 60 3>&-
	echo "$output" >"$T/cycles.json"
	[ "$status" -eq 0 ] || { echo "# cycles.py: $output" >&2; false; }
	local k a b grew=0
	for k in send recv; do
		a=$(own "$k" 50)
		b=$(own "$k" 500)
		echo "# mig-$k: $a kB after cycle 50, $b kB after cycle 500" \
			"($(jq -c ".rss[\"500\"].$k" "$T/cycles.json"))" >&3
		if [ "$b" -gt $((a + 1024)) ]; then
			echo "# mig-$k grew by $((b - a)) kB in 450 cycles" >&2
			grew=1
		fi
	done
	[ "$grew" -eq 0 ]
	# then the migration completes and the guest is whole
	set_bandwidth "$SRC_BUS" 0
	wait_exit send 60
	[ "$status" -eq 0 ]
	wait_exit recv 30
	[ "$status" -eq 0 ]
	expect 0 mig-guest verify --ctl "$T/dst.ctl"
}
