# SPDX-License-Identifier: MIT
# Sourced by bench/run.sh: the `kvm` scenario, one virtual machine migrated
# by mig and by QEMU. Uses run.sh's R, GUEST_IMG, KVM_PAIRS, log and
# migrate_postcopy, and migrate.sh's kvm_skip_reason, qemu_skip_reason and
# qemu_migrate.
# shellcheck shell=bash

# kvm: the boot sector lib/guest/abguest.S in a 1 GiB machine with 1 vCPU
# under KVM, run by mig-guest --workload kvm and by qemu-system-x86_64 from
# the same image, migrated with postcopy (and the preempt channel, mig's
# default) from the start, KVM_PAIRS pairs taken alternately so that the
# machine's drift falls on both; the medians of total time, downtime and
# vCPU blocked time, and mig's / QEMU's. Each mig guest must pass verify on
# the destination. Without /dev/kvm neither side can run: skipped, the
# reason in its row; without QEMU mig's side runs alone, QEMU's reason in
# the row.
scenario_kvm() {
	local why why_qemu i row
	why=$(kvm_skip_reason)
	if [ -n "$why" ]; then
		log "kvm: skipped: $why"
		jq -n --arg why "$why" '{scenario: "kvm", skipped: $why}' >"$R/kvm.json"
		echo kvm >>"$R/order"
		return 0
	fi
	why_qemu=$(qemu_skip_reason "$GUEST_IMG")
	[ -z "$why_qemu" ] || log "kvm: QEMU's side skipped: $why_qemu"
	for i in $(seq "$KVM_PAIRS"); do
		[ -n "$why_qemu" ] || qemu_migrate "kvm-qemu-$i" 1G "$GUEST_IMG" 1
		row=kvm-mig-$i
		RAM=1G WORKLOAD=kvm migrate_postcopy "$row" --postcopy
		# status 0 from verify is not enough: it must have checked
		# the machine's invariant, not some other workload's
		if ! jq -e '.verify_msg | test("invariant holds")' "$R/$row.json" >/dev/null; then
			log "$row: FAIL: verify did not find the kvm invariant: $(jq -r .verify_msg "$R/$row.json")"
			jq '.verify = "FAIL"' "$R/$row.json" >"$R/$row.json.new"
			mv "$R/$row.json.new" "$R/$row.json"
			return 1
		fi
	done
	kvm_summary "$why_qemu"
}

# kvm_summary QEMU-SKIP-REASON: the kvm row, from the kvm-* rows (verify:
# reached only if every one passed).
kvm_summary() {
	jq -s --arg skipped "$1" '
		def med: map(select(. != null)) | sort | if length == 0 then null
			elif length % 2 == 1 then .[length / 2 | floor]
			else (.[length / 2 - 1] + .[length / 2]) / 2 | . * 1000 | round / 1000 end;
		def r3: . * 1000 | round / 1000;
		def of($kind; $k): map(select(.scenario | startswith("kvm-\($kind)-")) | .[$k]);
		def ratio($a; $b): if $a != null and $b != null and $b > 0
			then $a / $b | r3 else null end;
		{scenario: "kvm", ram: "1G", pairs: (of("mig"; "scenario") | length),
		 qemu: (map(.qemu // empty) | .[0]),
		 qemu_skipped: (if $skipped == "" then null else $skipped end),
		 qemu_total_s: of("qemu"; "total_s"), mig_total_s: of("mig"; "total_s"),
		 qemu_downtime_ms: of("qemu"; "downtime_ms"), mig_downtime_ms: of("mig"; "downtime_ms"),
		 qemu_blocktime_ms: of("qemu"; "blocktime_ms"), mig_blocked_ms: of("mig"; "blocked_ms"),
		 verify: "pass"} |
		.qemu_total_s_median = (.qemu_total_s | med) |
		.mig_total_s_median = (.mig_total_s | med) |
		.qemu_downtime_ms_median = (.qemu_downtime_ms | med) |
		.mig_downtime_ms_median = (.mig_downtime_ms | med) |
		.qemu_blocktime_ms_median = (.qemu_blocktime_ms | med) |
		.mig_blocked_ms_median = (.mig_blocked_ms | med) |
		.total_ratio_qemu = ratio(.mig_total_s_median; .qemu_total_s_median) |
		.downtime_ratio_qemu = ratio(.mig_downtime_ms_median; .qemu_downtime_ms_median) |
		.blocked_ratio_qemu = ratio(.mig_blocked_ms_median; .qemu_blocktime_ms_median)' \
		"$R"/kvm-*.json >"$R/kvm.json"
	echo kvm >>"$R/order"
}

# kvm_report: the kvm row's table, if it ran; if it failed, the verdict of
# each migration it made.
kvm_report() {
	local f=$R/kvm.json name
	if ! grep -qx kvm "$R/order"; then
		grep -q '^kvm-' "$R/order" || return 0
		printf '\nKVM guests, mig against QEMU: FAIL\n'
		grep '^kvm-' "$R/order" | while read -r name; do
			jq -r '"  \(.scenario): verify \(.verify) \(.verify_msg // .migrate_err // "")"' \
				"$R/$name.json"
		done
		return 0
	fi
	jq -r 'def l: if length == 0 then "-" else map(tostring) | join(" ") end;
		def lpad($n): if length < $n then " " * ($n - length) + . else . end;
		def rpad($n): if length < $n then . + " " * ($n - length) else . end;
		if .skipped then "\nKVM guests, mig against QEMU: skipped: \(.skipped)"
		elif .verify != "pass" then "\nKVM guests, mig against QEMU: \(.verify)" else
		"\nKVM guests, mig against QEMU: abguest.S in \(.ram), 1 vCPU under KVM, postcopy (preempt) from the start, loopback TCP, \(if .qemu then "\(.pairs) pairs alternately (\(.qemu))" else "\(.pairs) migrations by mig (QEMU: skipped: \(.qemu_skipped))" end)",
		"  \("median" | rpad(24))\("QEMU" | lpad(10)) \("mig" | lpad(10)) \("mig/QEMU" | lpad(10))",
		([["total_s", .qemu_total_s_median, .mig_total_s_median, .total_ratio_qemu],
		  ["downtime_ms", .qemu_downtime_ms_median, .mig_downtime_ms_median, .downtime_ratio_qemu],
		  ["vCPU blocked ms", .qemu_blocktime_ms_median, .mig_blocked_ms_median, .blocked_ratio_qemu]][] |
		 map(. // "-" | tostring) |
		 "  \(.[0] | rpad(24))\(.[1] | lpad(10)) \(.[2] | lpad(10)) \(.[3] | lpad(10))"),
		"  (total_s QEMU \(.qemu_total_s | l); mig \(.mig_total_s | l))",
		"  (downtime_ms QEMU \(.qemu_downtime_ms | l); mig \(.mig_downtime_ms | l))",
		"  (vCPU blocked ms: QEMU postcopy-blocktime \(.qemu_blocktime_ms | l); mig \(.mig_blocked_ms | l))",
		"  verify: \(.verify) (mig: mig-guest verify on the destination; QEMU: its destination completes a pass)" end' "$f"
}
