#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# Soak: engines of one migration are killed (kill -9) again and again, on
# either side, at random moments, recovery handshakes included, and
# restarted with their documented command lines while a cron-like loop
# (examples/cron-recover.sh) keeps recovering whatever is paused. The
# migration completes and the destination's RAM equals the source's at
# switchover (strict digest): no page lost, none stale.

load ../helpers/common

setup() {
	mig_setup
	require_uffd
}
teardown() { mig_teardown; }

KILLS=${MIG_SOAK_KILLS:-20}

# restart NAME CMD...: like start, but a restart racing with the end of the
# migration may find nothing left to take over: that is fine, and says so.
restart() {
	local name=$1; shift
	start "$name" "$@" || [ -e "$T/done" ]
}

@test "$KILLS engine kills at random moments: completed, strict digest equal" {
	local src dst kills=0 side want cron uri="unix:$T/dst.sock" n=0
	src=$(bus_of soak send)
	dst=$(bus_of soak recv)
	guest g 256M --workload ab
	start recv0 mig-recv --name soak --listen "$uri" --guest-ctl "$T/dst.ctl" \
		--link-timeout 2 --paused-start
	start send0 mig-send --postcopy --digest --name soak --guest "$T/g.ctl" --to "$uri" \
		--link-timeout 2 --max-bandwidth 2M
	# the digest of all RAM at switchover, from the first engine
	wait_for 20 "the source's x-ram-digest" has_digest "$src"
	want=$(mig-status --bus "$src" --json 3>&- | jq -r '."x-ram-digest"')
	# what an operator's cron does on each host, every 0.2 s here: the
	# period is the cron's, not a wait for anything (any period works)
	cron="$BATS_TEST_DIRNAME/../../examples/cron-recover.sh"
	bg cron bash -c 'while :; do
		"$1" --bus "$2" --listen "$4" --timeout 0.2
		"$1" --bus "$3" --to "$4" --timeout 1
		sleep 0.2
	done' _ "$cron" "$dst" "$src" "$uri"
	local recv=recv0 send=send0
	while [ "$kills" -lt "$KILLS" ]; do
		# the kill's random moment is the thing under test: whatever
		# phase it lands in, on any machine, the migration must complete
		sleep "0.$(( (RANDOM % 60) + 5 ))"
		n=$((n + 1))
		if [ $((RANDOM % 2)) -eq 0 ]; then
			kill9 "$recv" || break
			recv=recv$n
			restart "$recv" mig-recv --name soak --attach "$T/dst.ctl" --link-timeout 2 \
				--paused-start
		else
			kill9 "$send" || break
			send=send$n
			restart "$send" mig-send --name soak --guest "$T/g.ctl" --resume \
				--link-timeout 2 --max-bandwidth 2M
		fi
		kills=$((kills + 1))
	done
	echo "# $kills engine kills" >&3
	[ "$kills" -ge "$KILLS" ]
	set_bandwidth "$src" 0
	wait_exit "$send" 120
	[ "$status" -eq 0 ]
	wait_exit "$recv" 60
	[ "$status" -eq 0 ]
	touch "$T/done"
	[ "$(mig-guest digest --ctl "$T/dst.ctl" 3>&-)" = "$want" ]
	expect 0 mig-guest cont --ctl "$T/dst.ctl"
	expect 0 mig-guest verify --ctl "$T/dst.ctl"
}
