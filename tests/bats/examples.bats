#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# The examples in examples/ work as documented: the quickstart, two hosts in
# network namespaces with a real link cut in the middle of postcopy, and the
# event-driven manager that recovers a migration by itself.

load ../helpers/common

BATS_TEST_TIMEOUT=${BATS_TEST_TIMEOUT:-240}
EX=$BATS_TEST_DIRNAME/../../examples

setup() {
	mig_setup
	export MIG_BIN
}
teardown() { mig_teardown; }

# Can this machine make network namespaces (and veth pairs)?
netns_or_skip() {
	require_root "network namespaces"
	command -v ip >/dev/null || skip "needs iproute2 (ip)"
	local ns=migprobe$$
	ip netns add "$ns" 2>/dev/null || skip "cannot create network namespaces (ip netns add failed)"
	ip netns del "$ns"
}

@test "quickstart: a 64M guest migrates over loopback and verifies" {
	require_uffd
	run timeout 60 "$EX/quickstart.sh" 64M 3>&-
	echo "$output" | sed 's/^/# /' >&2
	[ "$status" -eq 0 ]
	[[ "${lines[-1]}" == "ab: invariant holds:"* ]]
}

@test "netns-two-hosts: a cut veth pauses both sides, recovery completes, the guest verifies" {
	netns_or_skip
	require_uffd
	# the pump at 64 MB/s, not the default tenth of the guest: postcopy
	# still lasts seconds, far more than the 0.3 s before the cut
	run timeout 180 "$EX/netns-two-hosts.sh" --size 256M --max-bandwidth 64M 3>&-
	if [ "$status" -eq 77 ]; then skip "${output##*skipped: }"; fi
	echo "$output" | sed 's/^/# /' >&2
	[ "$status" -eq 0 ]
	grep -q '== CUT: ip link set .* down' <<<"$output"
	grep -q 'src -> postcopy-paused' <<<"$output"
	grep -q 'dst -> postcopy-paused' <<<"$output"
	grep -q '== both sides postcopy-paused' <<<"$output"
	grep -q 'mig-recover --listen .* -> exit \(0\|75\)' <<<"$output"
	grep -q 'mig-recover --to .* -> exit 0' <<<"$output"
	grep -q 'src -> postcopy-recover$' <<<"$output"
	grep -q 'dst -> completed' <<<"$output"
	grep -q '^ab: invariant holds' <<<"$output"
	# the order: cut, paused, recovered, completed
	local order
	order=$(grep -o -E '== (CUT|both sides postcopy-paused|recovered|completed)' <<<"$output" | tr '\n' ,)
	[ "$order" = "== CUT,== both sides postcopy-paused,== recovered,== completed," ]
	# nothing left behind: its namespaces, veths and processes are gone
	local src dst
	read -r src dst < <(sed -n 's/.*namespaces \(migsrc[0-9]*\) and \(migdst[0-9]*\),.*/\1 \2/p' <<<"$output")
	[ -n "$src" ] && [ -n "$dst" ]
	! ip netns list | grep -q -w -e "$src" -e "$dst"
	! ip link show | grep -q -e "migvs${src#migsrc}" -e "migvd${src#migsrc}"
	local dir
	dir=$(sed -n 's/.*MIG_RUNTIME_DIR=\(\/tmp\/mig-netns\.[^/]*\)\/src.*/\1/p' <<<"$output")
	[ -n "$dir" ] && [ ! -e "$dir" ]
	[ -z "$(our_procs "$dir")" ]
}

@test "netns-two-hosts: --help, and a bad size is a usage error" {
	expect 0 "$EX/netns-two-hosts.sh" --help
	[[ "$output" == *"--keep"* ]]
	expect 64 "$EX/netns-two-hosts.sh" --size lots
	[[ "$output" == *"bad SIZE 'lots'"* ]]
}

# A TCP proxy in front of the destination, killed and restarted by pid.
proxy_start() {
	socat_proxy px "tcp-listen:$VIA" "tcp:127.0.0.1:$PORT"
	wait_port "$VIA"
}

# Postcopy lasts long enough to be cut: the pump is held to 4M/s, and page
# requests through socat (no TCP_NODELAY there) take milliseconds each.
@test "manager: recovers a migration whose proxy was killed, by itself, and it completes" {
	require_uffd
	PORT=$(free_port) VIA=$(free_port)
	SRC_BUS=$(bus_of m send) DST_BUS=$(bus_of m recv)
	guest src 64M --workload ab
	start recv mig-recv --name m --listen "tcp:127.0.0.1:$PORT" --guest-ctl "$T/dst.ctl" --link-timeout 2
	proxy_start
	start send mig-send --postcopy --name m --guest "$T/src.ctl" --to "tcp:127.0.0.1:$VIA" \
		--link-timeout 2 --max-bandwidth 4M
	bg mgr "$EX/manager.sh" --bus "$SRC_BUS" --to "tcp:127.0.0.1:$VIA" \
		--listen "tcp:127.0.0.1:$PORT" --dst-bus "$DST_BUS" --max-backoff 2
	expect 0 mig-status --bus "$SRC_BUS" --wait-for postcopy-active --timeout 15
	# the guest's state has arrived (a cut while SWITCHOVER is in flight
	# fails the destination: another matter)
	state "$DST_BUS" postcopy-active
	proxy_kill px
	expect 0 mig-status --bus "$SRC_BUS" --wait-for postcopy-paused --timeout 15
	# the manager tries by itself, and fails while the path is down
	wait_log mgr 'source: mig-recover --to .*still paused' 30
	proxy_start
	# recovered by the manager: the rest at full speed (a migration that
	# has just completed has no bus left to be told)
	wait_log mgr 'source: mig-recover --to .*running again' 60
	set_bandwidth "$SRC_BUS" 0 || [ ! -S "$SRC_BUS" ]
	wait_exit mgr 120
	[ "$status" -eq 0 ] || { cat "$T/mgr.log" >&2; false; }
	wait_exit send 60
	[ "$status" -eq 0 ]
	wait_exit recv 60
	[ "$status" -eq 0 ]
	expect 0 mig-guest verify --ctl "$T/dst.ctl"
	# its log: each event with a timestamp, the pause, the recovery, the end
	grep -q -E '^[0-9-]+ [0-9:.]+  event    postcopy-paused$' "$T/mgr.log"
	grep -q 'the source is paused: recovering' "$T/mgr.log"
	grep -q 'destination: mig-recover --listen .*armed' "$T/mgr.log"
	grep -q -E 'source: mig-recover --to .*running again' "$T/mgr.log"
	grep -q -E '  event    postcopy-recover$' "$T/mgr.log"
	grep -q -E '  event    completed$' "$T/mgr.log"
	grep -q 'manager  the migration completed' "$T/mgr.log"
}

@test "manager: exits 1 when the migration fails, 69 when there is none, 64 on bad usage" {
	PORT=$(free_port)
	SRC_BUS=$(bus_of m send)
	expect 64 "$EX/manager.sh" --bus "$SRC_BUS"
	[[ "$output" == *"--to URI is required"* ]]
	expect 69 "$EX/manager.sh" --bus "$SRC_BUS" --to "tcp:127.0.0.1:$PORT" --wait-bus 1
	[[ "$output" == *"no migration at --bus $SRC_BUS"* ]]
	# a destination that is not there: the migration fails before switchover
	guest src 16M --workload ab
	bg send mig-send --postcopy --name m --guest "$T/src.ctl" --to "tcp:127.0.0.1:$PORT" --linger 5
	expect 1 "$EX/manager.sh" --bus "$SRC_BUS" --to "tcp:127.0.0.1:$PORT"
	[[ "$output" == *"event    failed"* ]]
}

# unit_cmd UNIT: the unit's ExecStart as words, as systemd would run it for
# instance m with /etc/mig/m.conf being $T/m.conf, from the build tree.
unit_cmd() {
	local line
	line=$(sed -n 's/^ExecStart=//p' "$EX/systemd/$1")
	line=${line//%i/m}
	line=${line//\/usr\/local\/bin\//}
	(
		# EnvironmentFile syntax: KEY=the rest of the line
		while IFS='=' read -r k v; do
			[[ $k =~ ^[A-Z_]+$ ]] && export "$k=$v"
		done <"$T/m.conf"
		eval "printf '%s\n' $line"
	)
}

@test "systemd units and the manager: engines killed mid-migration are restarted by the same command line, and it completes" {
	require_uffd
	grep -q '^Restart=on-failure$' "$EX/systemd/mig-send@.service"
	grep -q '^Restart=on-failure$' "$EX/systemd/mig-recv@.service"
	grep -q '^KillMode=process$' "$EX/systemd/mig-recv@.service"
	SRC_BUS=$(bus_of m send) DST_BUS=$(bus_of m recv)
	cat >"$T/m.conf" <<-CONF
		MIG_GUEST=$T/src.ctl
		MIG_TO=unix:$T/dst.sock
		MIG_SEND_OPTS=--link-timeout 2 --max-bandwidth 8M --linger 5
		MIG_LISTEN=unix:$T/dst.sock
		MIG_GUEST_CTL=$T/dst.ctl
		MIG_RECV_OPTS=--link-timeout 2
	CONF
	local -a send recv
	mapfile -t send < <(unit_cmd mig-send@.service)
	mapfile -t recv < <(unit_cmd mig-recv@.service)
	[ "${send[0]}" = mig-send ] && [ "${recv[0]}" = mig-recv ]
	guest src 128M --workload ab
	start recv "${recv[@]}"
	start send "${send[@]}" --postcopy
	bg mgr "$EX/manager.sh" --bus "$SRC_BUS" --to "unix:$T/dst.sock" \
		--listen "unix:$T/dst.sock" --dst-bus "$DST_BUS" --max-backoff 1
	expect 0 mig-status --bus "$SRC_BUS" --wait-for postcopy-active --timeout 15
	kill9 recv
	start recv2 "${recv[@]}" # the unit's restart
	wait_log mgr 'source: mig-recover --to .*running again' 30
	kill9 send
	start send2 "${send[@]}"
	expect 0 mig-status --bus "$SRC_BUS" --wait-for postcopy-active --timeout 15
	# (a migration that has just completed has no bus left to be told)
	set_bandwidth "$SRC_BUS" 0 || [ ! -S "$SRC_BUS" ]
	wait_exit send2 60
	[ "$status" -eq 0 ]
	wait_exit recv2 60
	[ "$status" -eq 0 ]
	wait_exit mgr 30
	[ "$status" -eq 0 ] || { cat "$T/mgr.log" >&2; false; }
	expect 0 mig-guest verify --ctl "$T/dst.ctl"
}
