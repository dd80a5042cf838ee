#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# Soak: the link of one migration is killed again and again at random
# moments; each time both sides pause and are recovered. The migration
# completes, no page is lost, and the guest is never stopped or restarted.

load ../helpers/common

setup() {
	mig_setup
	require_uffd
}
teardown() { mig_teardown; }

KILLS=${MIG_SOAK_KILLS:-20}

@test "$KILLS link kills at random moments: completed, verified, guest never stopped" {
	local dport pport src dst kills=0 st pid0 prog0
	dport=$(free_port)
	pport=$(free_port)
	src=$(bus_of soak send)
	dst=$(bus_of soak recv)
	# every page data, so that the migration outlasts the kills: the vCPU
	# asks for each page it meets, and on a fast machine it had met all
	# the data of a fresh 1G guest before the last kill
	guest g 2G --workload ab --vcpus 1
	guest_wrote "$T/g.ctl" $((2 << 18)) 60
	start recv mig-recv --name soak --listen "tcp:127.0.0.1:$dport" --guest-ctl "$T/dst.ctl" --link-timeout 2
	socat_proxy proxy "tcp-listen:$pport" "tcp:127.0.0.1:$dport"
	wait_port "$pport"
	start send mig-send --postcopy --name soak --guest "$T/g.ctl" --to "tcp:127.0.0.1:$pport" \
		--link-timeout 2 --max-bandwidth 4M
	expect 0 mig-status --bus "$src" --wait-for postcopy-active --timeout 20
	pid0=$(mig-guest info --ctl "$T/dst.ctl" --json 3>&- | jq -r .pid)
	prog0=$(guest_progress "$T/dst.ctl")
	while [ "$kills" -lt "$KILLS" ]; do
		# the cut's random moment is the thing under test: wherever it
		# lands, on any machine, both sides must pause and recover
		sleep "0.$(( (RANDOM % 28) + 2 ))"
		proxy_kill proxy
		run timeout 30 mig-status --bus "$src" --wait-for postcopy-paused,completed --timeout 15 3>&-
		[ "$status" -eq 0 ] || { echo "# source did not pause: $output" >&2; false; }
		[[ "$output" != *completed* ]] || break
		expect 0 mig-status --bus "$dst" --wait-for postcopy-paused --timeout 15
		kills=$((kills + 1))
		# the guest waits on missing pages; it is never stopped or replaced
		run mig-guest info --ctl "$T/dst.ctl" --json 3>&-
		echo "$output" | jq -e ".pid == $pid0 and .running == true" >/dev/null ||
			{ echo "# guest after kill $kills: $output" >&2; false; }
		socat_proxy proxy "tcp-listen:$pport" "tcp:127.0.0.1:$dport"
		wait_port "$pport"
		run timeout 30 mig-recover --bus "$dst" --listen "tcp:127.0.0.1:$dport" --timeout 0.2 3>&-
		[ "$status" -eq 75 ] || [ "$status" -eq 0 ]
		expect 0 mig-recover --bus "$src" --to "tcp:127.0.0.1:$pport" --timeout 30
	done
	echo "# $kills link kills" >&3
	[ "$kills" -ge "$KILLS" ]
	# enough: let the pump run at full speed (as an operator would)
	set_bandwidth "$src" 0
	wait_exit send 300
	[ "$status" -eq 0 ]
	wait_exit recv 60
	[ "$status" -eq 0 ]
	[ "$(guest_progress "$T/dst.ctl")" -gt "$prog0" ]
	verifies "$T/dst.ctl"
}
