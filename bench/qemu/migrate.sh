# SPDX-License-Identifier: MIT
# Sourced by bench/run.sh: QEMU's own postcopy migration of the abguest boot
# sector (lib/guest/abguest.S, the one mig-guest --workload kvm runs), on
# this machine, for the `qemu` and `kvm` scenarios to measure mig against. Uses run.sh's T, R, log and MIGRATION_TIMEOUT_S and
# common.bash's bg, wait_for, wait_exit and free_port; QEMU inherits
# MIG_RUNTIME_DIR like every process of the bench, so cleanup ends it too.
# shellcheck shell=bash
# shellcheck disable=SC2154 # PID_* are set by bg, through printf -v

qemu_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# kvm_skip_reason: why no KVM guest can run here (mig-guest --workload
# kvm's or QEMU's); nothing if one can.
kvm_skip_reason() {
	if [ ! -e /dev/kvm ]; then
		echo "no /dev/kvm"
	elif [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
		echo "/dev/kvm is not readable and writable for $(id -un)"
	fi
}

# qemu_skip_reason IMG: why the QEMU guests cannot run here; nothing if
# they can. KVM is tried for real: a /dev/kvm that is there is not always
# one that works.
qemu_skip_reason() {
	local out why
	why=$(kvm_skip_reason)
	if ! command -v qemu-system-x86_64 >/dev/null; then
		echo "no qemu-system-x86_64 (make bench installs qemu-system-x86)"
	elif [ -n "$why" ]; then
		echo "$why"
	elif [ ! -s "$1" ]; then
		echo "no boot image $1 (make bench builds it)"
	elif ! out=$(printf '%s\n' '{"execute":"qmp_capabilities"}' '{"execute":"quit"}' |
		timeout 30 qemu-system-x86_64 -machine none -accel kvm -nodefaults \
			-display none -qmp stdio 2>&1 3>&-); then
		echo "KVM does not work: $(tail -n 1 <<<"$out")"
	fi
}

# qemu_start SIDE SIZE DIR IMG [ARGS...]: one vCPU like mig's guests, no
# devices but the boot disk and the serial port (its output in
# DIR/SIDE.serial), QMP at DIR/SIDE.qmp; started as qemu-SIDE.
qemu_start() {
	local side=$1 size=$2 d=$3 img=$4
	shift 4
	bg "qemu-$side" qemu-system-x86_64 -nodefaults -accel kvm -m "$size" -smp 1 \
		-display none -drive "file=$img,format=raw,if=ide" -serial "file:$d/$side.serial" \
		-qmp "unix:$d/$side.qmp,server=on,wait=off" "$@"
}

serial_longer() { [ "$(stat -c %s "$1")" -gt "$2" ]; }

# qemu_migrate NAME SIZE IMG PREEMPT: a SIZE abguest migrated by QEMU on
# loopback TCP with postcopy from the first moment (PREEMPT 1: with the
# preempt channel), once the source guest has written every page (its first
# pass mark on the serial port); live if the destination guest completes
# another pass after the migration has. Leaves $R/NAME.json.
qemu_migrate() {
	local name=$1 size=$2 img=$3 d=$T/$1 port gib t0 first rc=0 live=0 n pre=()
	# shellcheck disable=SC2034 # bg reads it
	local LOGS=$d
	mkdir -p "$d"
	[ "$4" = 1 ] && pre=(--preempt)
	gib=${size%G}
	port=$(free_port)
	log "$name: QEMU $size abguest, postcopy${pre:+-preempt} from the start"

	t0=$EPOCHREALTIME
	qemu_start src "$size" "$d" "$img"
	qemu_start dst "$size" "$d" "$img" -incoming defer
	# the BIOS takes ~6 s under nested KVM, the first pass ~3-7 s a GiB
	if wait_for $((30 + 30 * gib)) "$name: the source guest's first pass" \
		test -s "$d/src.serial"; then
		first=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f\n", b - a }')
		python3 "$qemu_here/migrate.py" "$d/src.qmp" "$d/dst.qmp" "$port" "${pre[@]}" \
			--timeout "$MIGRATION_TIMEOUT_S" >"$d/result.json" 2>"$d/migrate.log" || rc=$?
	else
		rc=1 first=null
	fi
	if [ "$rc" -eq 0 ]; then
		n=$(stat -c %s "$d/dst.serial")
		wait_for 60 "$name: a pass of the destination guest" \
			serial_longer "$d/dst.serial" "$n" && live=1
	fi
	kill -TERM "$PID_qemu_src" "$PID_qemu_dst" 2>/dev/null || true
	wait_exit qemu-src 10 || true
	wait_exit qemu-dst 10 || true

	[ -s "$d/result.json" ] || echo '{}' >"$d/result.json"
	jq --arg scenario "$name" --arg ram "$size" --argjson first "$first" \
		--argjson preempt "$4" --argjson live "$live" --argjson rc "$rc" \
		--arg qemu "$(qemu-system-x86_64 --version | head -n 1)" \
		--arg err "$(tail -n 3 "$d/migrate.log" 2>/dev/null)" \
		'{scenario: $scenario, qemu: $qemu, ram: $ram, preempt: ($preempt == 1),
		  first_pass_s: $first} + . +
		 {verify: (if $rc == 0 and $live == 1 then "pass" else "FAIL" end),
		  live_after: ($live == 1), migrate_err: $err}' \
		"$d/result.json" >"$R/$name.json"
	echo "$name" >>"$R/order"
	if [ "$rc" -ne 0 ] || [ "$live" -ne 1 ]; then
		log "$name: FAIL: migrate.py status $rc, destination live $live; logs:"
		tail -n 20 "$d"/*.log >&2 || true
		return 1
	fi
	log "$name: $(jq -r '"total \(.total_s) s, downtime \(.downtime_ms) ms, blocktime \(.blocktime_ms) ms"' "$R/$name.json")"
}
