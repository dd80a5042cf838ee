#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# Bad input gets one clear line and a documented exit status, and leaves
# nothing running that the test did not start.

load ../helpers/common

# Most tests here start no incoming guest; those that do say so.
setup() { mig_setup; }
teardown() { mig_teardown; }

@test "unknown options are usage errors (64) in every program" {
	local p
	for p in mig-guest mig-send mig-recv mig-pause mig-recover mig-status; do
		expect 64 "$p" --no-such-option
		[[ "$output" == *"Try '$p --help'."* ]] || { echo "# $p: $output" >&2; false; }
		expect 0 "$p" --help
		[[ "$output" == Usage:* ]]
		expect 0 "$p" --version
	done
}

@test "bad sizes are refused with the value named" {
	for size in 12X 0 4097 -1 1.5G 2T ""; do
		expect 64 mig-guest --ctl "$T/g.ctl" --ram "$size"
		[ "${#lines[@]}" -le 2 ]
		[[ "${lines[0]}" == *"--ram '$size' is not a non-zero multiple of 4K"* ]] ||
			{ echo "# $size: $output" >&2; false; }
	done
	expect 64 mig-send --guest "$T/g.ctl" --to tcp:127.0.0.1:1 --max-bandwidth 10Q
	[[ "$output" == *"--max-bandwidth"* ]]
	only_running
}

@test "bad URIs are refused before anything starts" {
	for uri in foo:bar tcp:host tcp:host:0 tcp:host:70000 unix: "tcp::80" udp:h:1; do
		expect 64 mig-recv --listen "$uri"
		[[ "$output" == *"$uri"* ]] || { echo "# $output" >&2; false; }
		expect 64 mig-send --guest "$T/g.ctl" --to "$uri"
		[[ "$output" == *"--to '$uri' is not"* ]] || { echo "# $output" >&2; false; }
	done
	expect 64 mig-recover --bus "$T/b.sock" --to "tcp:nohost"
	[[ "$output" == *"invalid URI 'tcp:nohost'"* ]]
	only_running
}

@test "a listen address in use is refused, the running listener unharmed" {
	local port; port=$(free_port)
	start one mig-recv --name one --listen "tcp:127.0.0.1:$port" --guest-ctl "$T/d1.ctl"
	expect 1 mig-recv --name two --listen "tcp:127.0.0.1:$port" --guest-ctl "$T/d2.ctl"
	[[ "$output" == *"address already in use"* ]]
	[ "${#lines[@]}" -le 2 ]
	# and the same for the status bus of a name already taken
	expect 1 mig-recv --name one --listen "tcp:127.0.0.1:$(free_port)"
	[[ "$output" == *"in use"* ]]
	only_running "$PID_one"
	expect 0 mig-status --bus "$(bus_of one recv)" --wait-for setup --timeout 5
}

@test "no guest at --guest: 69, and no listener left behind" {
	local port; port=$(free_port)
	start r mig-recv --name r --listen "tcp:127.0.0.1:$port" --guest-ctl "$T/d.ctl"
	expect 69 mig-send --name s --guest "$T/nothing.ctl" --to "tcp:127.0.0.1:$port"
	[[ "$output" == *"no guest at $T/nothing.ctl"* ]]
	[ ! -e "$(bus_of s send)" ]
	only_running "$PID_r"
}

@test "no destination: 69, and the guest keeps running untouched" {
	guest src 32M
	expect 69 mig-send --guest "$T/src.ctl" --to "tcp:127.0.0.1:$(free_port)"
	[[ "$output" == *"cannot connect"* ]]
	run mig-guest info --ctl "$T/src.ctl" --json 3>&-
	echo "$output" | jq -e '.running == true and .attached == false'
	expect 0 mig-guest verify --ctl "$T/src.ctl"
}

@test "a second mig-send on a guest being migrated is refused; the first completes" {
	require_uffd
	guest src 128M
	local port; port=$(free_port)
	start r mig-recv --name a --listen "tcp:127.0.0.1:$port" --guest-ctl "$T/dst.ctl"
	start s1 mig-send --postcopy --name a --guest "$T/src.ctl" --to "tcp:127.0.0.1:$port" --max-bandwidth 64M
	expect 1 mig-send --name b --guest "$T/src.ctl" --to "tcp:127.0.0.1:$(free_port)"
	[[ "$output" == *"already being migrated (attached to pid $PID_s1)"* ]]
	wait_exit s1 60
	[ "$status" -eq 0 ]
	expect 0 mig-guest verify --ctl "$T/dst.ctl"
}

@test "a peer whose hello carries another UUID is refused and reported" {
	require_uffd
	guest src 128M
	guest other 16M
	local port; port=$(free_port)
	start r mig-recv --name a --listen "tcp:127.0.0.1:$port" --guest-ctl "$T/dst.ctl"
	start s1 mig-send --postcopy --name a --guest "$T/src.ctl" --to "tcp:127.0.0.1:$port" \
		--uuid 11111111-2222-4333-8444-555555555555 --max-bandwidth 64M
	expect 0 mig-status --bus "$(bus_of a send)" --wait-for postcopy-active --timeout 20
	expect 1 mig-send --name b --guest "$T/other.ctl" --to "tcp:127.0.0.1:$port" \
		--uuid 99999999-2222-4333-8444-555555555555
	[[ "$output" == *"refused"*"99999999-2222-4333-8444-555555555555 is not the one running here"* ]]
	grep -q "refused connection from" "$T/r.log"
	# the refused source's guest is whole and running; the first migration goes on
	expect 0 mig-guest verify --ctl "$T/other.ctl"
	wait_exit s1 60
	[ "$status" -eq 0 ]
	expect 0 mig-guest verify --ctl "$T/dst.ctl"
}

@test "a hello that is not mig's is dropped without disturbing the listener" {
	require_uffd
	local port; port=$(free_port)
	start r mig-recv --name a --listen "tcp:127.0.0.1:$port" --guest-ctl "$T/dst.ctl"
	printf 'GET / HTTP/1.0\r\n\r\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' |
		timeout 5 socat - "TCP:127.0.0.1:$port" 3>&- || true
	head -c 100000 /dev/urandom | timeout 5 socat - "TCP:127.0.0.1:$port" 3>&- || true
	expect 0 mig-status --bus "$(bus_of a recv)" --wait-for setup --timeout 5
	guest src 16M
	start s mig-send --postcopy --name a --guest "$T/src.ctl" --to "tcp:127.0.0.1:$port"
	wait_exit s 60
	[ "$status" -eq 0 ]
	grep -q "refused connection" "$T/r.log"
}

@test "engine restarts: every wrong use is one line and a documented status, and touches no guest" {
	guest g 64M --workload ab
	# nothing at --attach: 69; a guest that is no destination past switchover: 1
	expect 69 mig-recv --name r --attach "$T/none.ctl"
	[[ "$output" == *"no guest at $T/none.ctl"* ]]
	expect 1 mig-recv --name r --attach "$T/g.ctl"
	[[ "$output" == *"in no migration: nothing to attach to"* ]]
	# a plain mig-recv never takes a guest that is not its own
	expect 1 mig-recv --name r --listen "unix:$T/l.sock" --guest-ctl "$T/g.ctl"
	[[ "$output" == *"choose another --guest-ctl"* ]]
	[ ! -e "$T/l.sock" ] # nothing left listening
	expect 64 mig-recv --attach "$T/g.ctl" --guest-ctl "$T/other.ctl"
	[[ "$output" == *"--attach and --guest-ctl name different guests"* ]]
	expect 64 mig-send --guest "$T/g.ctl" --resume --postcopy
	[[ "$output" == *"--resume and --postcopy exclude each other"* ]]
	expect 64 mig-send --guest "$T/g.ctl"
	[[ "$output" == *"--guest and --to are required"* ]]
	expect 1 mig-send --name s --guest "$T/g.ctl" --resume
	[[ "$output" == *"nothing to resume"* ]]
	expect 64 mig-guest abandon --ctl "$T/g.ctl" --uuid nope
	[[ "$output" == *"--uuid 'nope' is not a UUID"* ]]
	local uuid; uuid=$(cat /proc/sys/kernel/random/uuid)
	expect 64 mig-guest cont --ctl "$T/g.ctl" --uuid "$uuid"
	[[ "$output" == *"--uuid is only for 'abandon'"* ]]
	expect 1 mig-guest abandon --ctl "$T/g.ctl" --uuid "$uuid"
	[[ "$output" == *"abandon $T/g.ctl: the guest is not in that migration"* ]]
	run mig-guest info --ctl "$T/g.ctl" --json 3>&-
	jq -e '.running == true and .migration == null and .attached == false' <<<"$output"
}

@test "socket paths: a file, a directory, a symlink or a live socket is never removed; a stale socket is replaced" {
	guest g 64M
	local p kind
	mkpaths() {
		rm -rf "$T/p"; mkdir "$T/p"
		echo data >"$T/p/file"
		mkdir "$T/p/dir"
		ln -s "$T/p/file" "$T/p/link"
		python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$T/p/stale"
	}
	check_left() {
		[ "$(cat "$T/p/file")" = data ] && [ -d "$T/p/dir" ] && [ -L "$T/p/link" ] && [ -S "$T/g.ctl" ]
	}
	mkpaths
	for kind in file dir link; do
		p=$T/p/$kind
		expect 1 mig-send --bus "$p" --guest "$T/g.ctl" --to "unix:$T/nowhere"
		[[ "$output" == *"$p exists and is not a socket: left alone"* ]]
		expect 1 mig-recv --bus "$p" --listen "unix:$T/l.sock"
		[[ "$output" == *"$p exists and is not a socket"* ]]
		expect 1 mig-recv --name r --listen "unix:$p"
		[[ "$output" == *"cannot listen on unix:$p"* ]]
		expect 1 mig-guest --ctl "$p" --ram 4M
		[[ "$output" == *"$p exists and is not a socket"* ]]
		check_left
	done
	# a live socket (the guest's) is in use, whoever asks
	expect 1 mig-send --bus "$T/g.ctl" --guest "$T/g.ctl" --to "unix:$T/nowhere"
	[[ "$output" == *"the status bus is in use"* ]]
	expect 1 mig-guest --ctl "$T/g.ctl" --ram 4M
	[[ "$output" == *"in use"* ]]
	check_left
	expect 0 mig-guest info --ctl "$T/g.ctl"
	# a stale one is taken over, for each kind of socket
	expect 69 mig-send --bus "$T/p/stale" --guest "$T/g.ctl" --to "unix:$T/nowhere"
	[[ "$output" == *"cannot connect"* ]] || { echo "# $output" >&2; false; }
	mkpaths
	start st mig-guest --ctl "$T/p/stale" --ram 4M
	expect 0 mig-guest quit --ctl "$T/p/stale"
}
