#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# The kvm workload: a real virtual machine (vCPUs under KVM running the
# boot sector abguest.S) migrated like any guest. Its serial port says how
# many passes each vCPU made, on each host; verify checks those against the
# counters in RAM, and the strict digest the RAM itself. Skipped where
# /dev/kvm cannot run it.

load ../helpers/common

setup() {
	mig_setup
	require_uffd
	require_kvm
	PORT=$(free_port)
	SRC_BUS=$(bus_of k send)
	DST_BUS=$(bus_of k recv)
}
teardown() { mig_teardown; }

# require_kvm: skip unless a 16 MiB kvm guest starts here (probed once).
require_kvm() {
	local cache=${BATS_FILE_TMPDIR:-$T}/kvm-probe rc=0 pid
	if [ ! -e "$cache" ]; then
		if [ ! -e /dev/kvm ]; then
			echo "no /dev/kvm on this machine: the kvm workload needs KVM" >"$cache"
		else
			timeout 10 mig-guest --ctl "$T/probe.ctl" --ram 16M --workload kvm \
				</dev/null >/dev/null 2>"$T/probe.err" 3>&- &
			pid=$!
			wait_socket "$T/probe.ctl" 10 || rc=1
			mig-guest quit --ctl "$T/probe.ctl" 3>&- >/dev/null 2>&1 || true
			wait "$pid" || true
			if [ "$rc" -eq 0 ]; then : >"$cache"; else
				echo "the kvm workload cannot run here: $(cat "$T/probe.err")" >"$cache"; fi
		fi
	fi
	[ ! -s "$cache" ] || skip "$(cat "$cache")"
}

# passes FILE CHAR: how many passes the vCPU writing CHAR reported in FILE.
passes() { tr -cd "$2" <"$1" | wc -c; }

# serial_adds_up CTL CHARS...: stopped, the guest at CTL verifies, and each
# vCPU's pass count there (verify's "passes P0,P1") is what its character
# appears in the source's and destination's serial files together, with
# some on each: no pass lost or repeated across the migration.
serial_adds_up() {
	local ctl=$1 i=0 c got counts
	shift
	for c in "$@"; do
		wait_for 60 "a pass of the vCPU writing $c on the destination" \
			grep -q "$c" "$T/dst.serial"
	done
	expect 0 mig-guest stop --ctl "$ctl"
	verifies "$ctl"
	counts=$(sed -n 's/.*, passes \([0-9,]*\)$/\1/p' <<<"$output")
	[ -n "$counts" ] || { echo "# no pass counts in: $output" >&2; return 1; }
	IFS=, read -r -a got <<<"$counts"
	for c in "$@"; do
		local src dst
		src=$(passes "$T/src.serial" "$c")
		dst=$(passes "$T/dst.serial" "$c")
		echo "# vcpu $i ($c): $src passes on the source, $dst here, verify says ${got[$i]}" >&3
		[ "$src" -gt 0 ] && [ "$dst" -gt 0 ] && [ $((src + dst)) -eq "${got[$i]}" ] ||
			{ echo "# vcpu $i ($c): $src + $dst passes in the serial files, ${got[$i]} in RAM" >&2
			  return 1; }
		i=$((i + 1))
	done
}

# kvm_guest SIZE CHARS [ARGS]: the source, each of its vCPUs (their pass
# characters CHARS) having made a pass.
kvm_guest() {
	local size=$1 chars=$2 c; shift 2
	guest src "$size" --workload kvm --serial "$T/src.serial" --vcpus "${#chars}" "$@"
	for ((c = 0; c < ${#chars}; c++)); do
		wait_for 60 "a first pass of vCPU $c on the source" \
			grep -q "${chars:c:1}" "$T/src.serial"
	done
}

# strict: the stopped destination's digest is the source's at switchover.
strict() {
	local want
	want=$(sed -n 's/.*ram digest \([0-9a-f]*\).*/\1/p' "$T/send.log")
	[ -n "$want" ] || { echo "# no digest in the source's summary" >&2; return 1; }
	expect 0 mig-guest digest --ctl "$T/dst.ctl"
	[ "$output" = "$want" ] || { echo "# destination $output, source $want" >&2; return 1; }
}

# migrate [mig-send args]: to a destination held stopped after switchover,
# both engines exit 0, the digests match; then the guest runs on there.
migrate() {
	start recv mig-recv --name k --listen "tcp:127.0.0.1:$PORT" --guest-ctl "$T/dst.ctl" \
		--guest-serial "$T/dst.serial" --paused-start
	start send mig-send --name k --guest "$T/src.ctl" --to "tcp:127.0.0.1:$PORT" \
		--digest --summary "$@"
	wait_exit send 120
	[ "$status" -eq 0 ]
	wait_exit recv 60
	[ "$status" -eq 0 ]
	strict
	expect 0 mig-guest cont --ctl "$T/dst.ctl"
}

@test "a 1 GiB KVM guest migrates with postcopy: the same RAM, its serial output goes on, no pass lost or repeated" {
	kvm_guest 1G B
	migrate --postcopy
	serial_adds_up "$T/dst.ctl" B
}

# vcpus_waited N: the destination counts N vCPUs, every one has waited.
vcpus_waited() {
	python3 "$BATS_TEST_DIRNAME/../helpers/qmp.py" "$DST_BUS" query-migrate 3>&- |
		jq -e --argjson n "$1" '.return["postcopy-vcpu-blocktime"] |
		length == $n and all(. > 0)'
}

@test "KVM vCPUs touching missing pages wait in userfaults, counted per vCPU like any vCPU's" {
	kvm_guest 256M BC
	start recv mig-recv --name k --listen "unix:$T/d.sock" --guest-ctl "$T/dst.ctl" \
		--guest-serial "$T/dst.serial"
	# throttled: the vCPUs run ahead of the pump and wait on their pages
	start send mig-send --postcopy --name k --guest "$T/src.ctl" --to "unix:$T/d.sock" \
		--max-bandwidth 16M --summary
	state "$DST_BUS" postcopy-active
	wait_for 30 "both vCPUs to have waited on pages" vcpus_waited 2
	set_bandwidth "$SRC_BUS" 0
	wait_exit send 120
	[ "$status" -eq 0 ]
	wait_exit recv 60
	[ "$status" -eq 0 ]
	[ "$(sed -n 's/.* \([0-9]*\) page requests.*/\1/p' "$T/send.log")" -gt 0 ]
	serial_adds_up "$T/dst.ctl" B C
}

@test "a 1 GiB KVM guest with 2 vCPUs migrates with precopy: dirty tracking sees the VM's writes" {
	kvm_guest 1G BC
	# every page is written again each pass: only a stop-and-copy of it
	# all ends this precopy, and a write tracking missed would show in
	# the digest
	migrate --precopy-only --downtime-limit 30000
	grep -q "0 page requests" "$T/send.log"
	serial_adds_up "$T/dst.ctl" B C
}

@test "a KVM guest survives a pause, a failed recovery and a good one" {
	kvm_guest 256M BC
	start recv mig-recv --name k --listen "unix:$T/dst.sock" --guest-ctl "$T/dst.ctl" \
		--guest-serial "$T/dst.serial" --link-timeout 2
	proxy_b
	proxy_a
	start send mig-send --postcopy --name k --guest "$T/src.ctl" --to "unix:$T/src.sock" \
		--link-timeout 2 --max-bandwidth 8M
	state "$SRC_BUS" postcopy-active
	expect 0 mig-pause --bus "$SRC_BUS"
	state "$DST_BUS" postcopy-paused
	proxy_kill pb
	expect 75 mig-recover --bus "$DST_BUS" --listen "unix:$T/dst.sock" --timeout 1
	expect 75 mig-recover --bus "$SRC_BUS" --to "unix:$T/src.sock" --timeout 20
	state "$SRC_BUS" postcopy-paused
	proxy_b
	expect 0 mig-recover --bus "$SRC_BUS" --to "unix:$T/src.sock" --timeout 20
	set_bandwidth "$SRC_BUS" 0
	wait_exit send 120
	[ "$status" -eq 0 ]
	wait_exit recv 60
	[ "$status" -eq 0 ]
	serial_adds_up "$T/dst.ctl" B C
}

@test "a KVM guest survives kill -9 of either engine in postcopy" {
	local dst="unix:$T/dst.sock"
	kvm_guest 256M B
	start recv mig-recv --name k --listen "$dst" --guest-ctl "$T/dst.ctl" \
		--guest-serial "$T/dst.serial" --link-timeout 2
	start send mig-send --postcopy --name k --guest "$T/src.ctl" --to "$dst" \
		--link-timeout 2 --max-bandwidth 8M
	state "$SRC_BUS" postcopy-active
	# the destination engine dies: its vCPU waits in a fault, then goes on
	kill -9 "$PID_recv"
	state "$SRC_BUS" postcopy-paused
	start recv2 mig-recv --name k --attach "$T/dst.ctl" --link-timeout 2
	state "$DST_BUS" postcopy-paused
	expect 75 mig-recover --bus "$DST_BUS" --listen "$dst" --timeout 0.5
	expect 0 mig-recover --bus "$SRC_BUS" --to "$dst" --timeout 20
	# then the source engine: restarted, it resumes by itself
	kill -9 "$PID_send"
	state "$DST_BUS" postcopy-paused
	[ "$(guest_json "$T/src.ctl" .running)" = false ]
	expect 75 mig-recover --bus "$DST_BUS" --listen "$dst" --timeout 0.5
	start send2 mig-send --name k --guest "$T/src.ctl" --resume --link-timeout 2
	wait_exit send2 120
	[ "$status" -eq 0 ]
	wait_exit recv2 60
	[ "$status" -eq 0 ]
	[ ! -e "$T/src.ctl" ] # the source guest quit: it lives on the destination
	serial_adds_up "$T/dst.ctl" B
}

@test "kvm workload: no /dev/kvm or no permission is one line and status 69; bad sizes are usage errors" {
	require_root "a mount namespace and another user"
	# hidden: a fresh /dev in a mount namespace of its own
	run unshare -m sh -c 'mount -t tmpfs none /dev && exec "$0" "$@"' \
		"$(command -v mig-guest)" --ctl "$T/g.ctl" --ram 16M --workload kvm
	[ "$status" -eq 69 ] || { echo "# $status: $output" >&2; false; }
	[ "$(wc -l <<<"$output")" -eq 1 ]
	[[ "$output" == *"workload kvm: /dev/kvm: No such file or directory"* ]]
	# not permitted: another user (the device is root's, mode 0600 here)
	if [ "$(stat -c %a /dev/kvm)" = 600 ] && id nobody >/dev/null 2>&1; then
		chmod 0777 "$T"
		run runuser -u nobody -- "$(command -v mig-guest)" --ctl "$T/g.ctl" --ram 16M \
			--workload kvm
		[ "$status" -eq 69 ] || { echo "# $status: $output" >&2; false; }
		[ "$(wc -l <<<"$output")" -eq 1 ]
		[[ "$output" == *"/dev/kvm: Permission denied"* ]]
	fi
	usage_error mig-guest --ctl "$T/g.ctl" --ram 8M --workload kvm
	[[ "$output" == *"at least 16M"* ]]
	usage_error mig-guest --ctl "$T/g.ctl" --ram 1G --workload kvm --vcpus 33
	[[ "$output" == *"at most 32 vCPUs"* ]]
	usage_error mig-guest --ctl "$T/g.ctl" --ram 1G --serial "$T/s" --workload ab
	[[ "$output" == *"--serial is for --workload kvm"* ]]
	no_procs
}

@test "a destination without /dev/kvm refuses the state: the migration fails, the source runs on" {
	require_root "a mount namespace"
	kvm_guest 64M B
	# mig-recv and the guest it spawns see a /dev without kvm
	start recv unshare -m sh -c 'mount -t tmpfs none /dev && exec "$0" "$@"' \
		"$(command -v mig-recv)" --name k --listen "unix:$T/d.sock" --guest-ctl "$T/dst.ctl"
	wait_socket "$T/d.sock"
	expect 1 mig-send --name k --postcopy --guest "$T/src.ctl" --to "unix:$T/d.sock"
	says "the destination did not take the guest's state"
	wait_exit recv 20
	[ "$status" -eq 1 ]
	log_says recv "workload kvm: /dev/kvm: No such file or directory"
	[ "$(guest_json "$T/src.ctl" .running)" = true ]
	guest_runs "$T/src.ctl"
	verifies "$T/src.ctl"
	[ ! -e "$T/dst.ctl" ]
}
