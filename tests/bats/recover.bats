#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# Pause and recovery: a broken link never loses the guest. Links are broken
# for real: socat proxies killed or frozen, peers that fall silent.

load ../helpers/common

setup() {
	mig_setup
	PORT=$(free_port)
	SRC_BUS=$(bus_of m send)
	DST_BUS=$(bus_of m recv)
}
teardown() { mig_teardown; }

# Proxy a: the source's unix socket -> tcp PORT; proxy b: tcp PORT -> the
# destination's unix socket. Killing b cuts the path in the middle.
proxy_a() {
	bg pa socat "unix-listen:$T/src.sock,reuseaddr,fork" "tcp:127.0.0.1:$PORT"
	wait_for_path "$T/src.sock"
}
proxy_b() {
	bg pb socat "tcp-listen:$PORT,reuseaddr,fork" "unix:$T/dst.sock"
	wait_for_port "$PORT"
}
# socat forks a child per connection with the same command line: kill all.
kill_proxy_b() { pkill -KILL -f "tcp-listen:$PORT,reuseaddr" || true; }

wait_for_path() {
	for _ in $(seq 100); do [ -S "$1" ] && return 0; sleep 0.05; done
	echo "# $1 never appeared" >&2; return 1
}
wait_for_port() {
	for _ in $(seq 100); do
		python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $1), 0.2)" 2>/dev/null && return 0
		sleep 0.05
	done
	echo "# port $1 never listened" >&2; return 1
}

# A migration through both proxies, paused on the source once running.
start_paused_through_proxies() {
	guest src 256M --workload ab
	start recv mig-recv --name m --listen "unix:$T/dst.sock" --guest-ctl "$T/dst.ctl" --link-timeout 2
	proxy_b
	proxy_a
	start send mig-send --postcopy --name m --guest "$T/src.ctl" --to "unix:$T/src.sock" --link-timeout 2
	bg ws mig-status --bus "$SRC_BUS" --watch --json
	bg wr mig-status --bus "$DST_BUS" --watch --json
	state "$SRC_BUS" postcopy-active
	expect 0 mig-pause --bus "$SRC_BUS"
	state "$SRC_BUS" postcopy-paused
	state "$DST_BUS" postcopy-paused
}

finish_and_verify() {
	wait_exit send 120
	[ "$status" -eq 0 ]
	wait_exit recv 60
	[ "$status" -eq 0 ]
	expect 0 mig-guest verify --ctl "$T/dst.ctl"
}

events_match() {
	local got
	got=$(jq -r 'select(.event == "MIGRATION") | .data.status' "$T/$1.log" | tr '\n' ' ' | sed 's/ $//')
	if ! [[ "$got" =~ ^$2$ ]]; then
		echo "# $1 saw: '$got'; expected /$2/" >&2
		return 1
	fi
}

@test "two proxies: pause, cut the middle, a failed recovery, then a good one completes" {
	start_paused_through_proxies
	kill_proxy_b
	# the destination accepts recovery; nobody can reach it yet: still paused
	expect 75 mig-recover --bus "$DST_BUS" --listen "unix:$T/dst.sock" --timeout 1
	SECONDS=0
	expect 75 mig-recover --bus "$SRC_BUS" --to "unix:$T/src.sock" --timeout 20
	[ "$SECONDS" -lt 15 ]
	state "$SRC_BUS" postcopy-paused
	proxy_b
	expect 0 mig-recover --bus "$SRC_BUS" --to "unix:$T/src.sock" --timeout 20
	finish_and_verify
	wait_exit ws 10
	wait_exit wr 10
	events_match ws "setup active postcopy-active postcopy-paused postcopy-recover-setup (postcopy-recover )?postcopy-paused postcopy-recover-setup postcopy-recover postcopy-active completed"
	events_match wr "setup active postcopy-active postcopy-paused postcopy-recover postcopy-active completed"
}

@test "recovery to an unused port: exactly postcopy-recover-setup, postcopy-paused" {
	start_paused_through_proxies
	local before after
	before=$(history "$SRC_BUS")
	expect 75 mig-recover --bus "$SRC_BUS" --to "tcp:127.0.0.1:$(free_port)" --timeout 20
	after=$(history "$SRC_BUS")
	[ "$after" = "$before postcopy-recover-setup postcopy-paused" ] ||
		{ echo "# before: $before; after: $after" >&2; false; }
	expect 0 mig-recover --bus "$DST_BUS" --listen "unix:$T/dst.sock" --timeout 1 || [ "$status" -eq 75 ]
	expect 0 mig-recover --bus "$SRC_BUS" --to "unix:$T/src.sock" --timeout 20
	finish_and_verify
}

@test "mig-pause kicks the source out of postcopy-recover held by a silent peer" {
	start_paused_through_proxies
	local fake=$(free_port)
	start fake "$BATS_TEST_DIRNAME/../helpers/fakepeer.py" dest "tcp:127.0.0.1:$fake"
	bg rec mig-recover --bus "$SRC_BUS" --to "tcp:127.0.0.1:$fake" --timeout 60
	state "$SRC_BUS" postcopy-recover
	expect 0 mig-pause --bus "$SRC_BUS" --timeout 5
	wait_exit rec 10
	[ "$status" -eq 75 ]
	# without a pause, the link timeout gets it out too
	bg rec2 mig-recover --bus "$SRC_BUS" --to "tcp:127.0.0.1:$fake" --timeout 60
	state "$SRC_BUS" postcopy-recover
	state "$SRC_BUS" postcopy-paused 15
	wait_exit rec2 10
	[ "$status" -eq 75 ]
	expect 0 mig-recover --bus "$SRC_BUS" --to "unix:$T/src.sock" --timeout 20 ||
		{ mig-recover --bus "$DST_BUS" --listen "unix:$T/dst.sock" --timeout 1 3>&- || true
		  expect 0 mig-recover --bus "$SRC_BUS" --to "unix:$T/src.sock" --timeout 20; }
	finish_and_verify
}

@test "mig-pause kicks the destination out of postcopy-recover held by a silent peer" {
	start_paused_through_proxies
	local uuid
	uuid=$(mig-status --bus "$DST_BUS" --json 3>&- | jq -r .uuid)
	expect 75 mig-recover --bus "$DST_BUS" --listen "unix:$T/dst.sock" --timeout 1
	start fake "$BATS_TEST_DIRNAME/../helpers/fakepeer.py" source "unix:$T/dst.sock" "$uuid"
	state "$DST_BUS" postcopy-recover
	expect 0 mig-pause --bus "$DST_BUS" --timeout 5
	state "$DST_BUS" postcopy-paused
	expect 0 mig-recover --bus "$SRC_BUS" --to "unix:$T/src.sock" --timeout 20
	finish_and_verify
}

@test "a silent link (frozen proxy) pauses both sides within the link timeout" {
	guest src 256M --workload ab
	start recv mig-recv --name m --listen "tcp:127.0.0.1:$PORT" --guest-ctl "$T/dst.ctl" --link-timeout 1
	local via; via=$(free_port)
	bg px socat "tcp-listen:$via,reuseaddr,fork" "tcp:127.0.0.1:$PORT"
	wait_for_port "$via"
	start send mig-send --postcopy --name m --guest "$T/src.ctl" --to "tcp:127.0.0.1:$via" --link-timeout 1 --max-bandwidth 8M
	state "$SRC_BUS" postcopy-active
	# no FIN, no RST: the proxy just stops moving bytes
	pkill -STOP -f "tcp-listen:$via" 
	state "$SRC_BUS" postcopy-paused 10
	state "$DST_BUS" postcopy-paused 10
	pkill -KILL -f "tcp-listen:$via" || true
	expect 75 mig-recover --bus "$DST_BUS" --listen "tcp:127.0.0.1:$PORT" --timeout 1
	expect 0 mig-recover --bus "$SRC_BUS" --to "tcp:127.0.0.1:$PORT" --timeout 20
	finish_and_verify
}

@test "migrate-cancel is refused once postcopy has started" {
	start_paused_through_proxies
	qmp "$SRC_BUS" '{"execute":"migrate-cancel","id":7}'
	echo "$output" | grep '"id":7' | jq -e '.error.class == "GenericError" and (.error.desc | test("refused: postcopy has started"))'
	qmp "$DST_BUS" '{"execute":"migrate-cancel","id":8}'
	echo "$output" | grep '"id":8' | jq -e '.error.desc | test("refused")'
	expect 0 mig-recover --bus "$DST_BUS" --listen "unix:$T/dst.sock" --timeout 1 || [ "$status" -eq 75 ]
	expect 0 mig-recover --bus "$SRC_BUS" --to "unix:$T/src.sock" --timeout 20
	finish_and_verify
}

@test "the cron example retries until the migration runs again" {
	start_paused_through_proxies
	kill_proxy_b
	local cron="$BATS_TEST_DIRNAME/../../examples/cron-recover.sh"
	expect 75 "$cron" --bus "$DST_BUS" --listen "unix:$T/dst.sock" --timeout 1
	expect 75 "$cron" --bus "$SRC_BUS" --to "unix:$T/src.sock" --timeout 10
	expect 75 "$cron" --bus "$SRC_BUS" --to "unix:$T/src.sock" --timeout 10
	proxy_b
	expect 0 "$cron" --bus "$SRC_BUS" --to "unix:$T/src.sock" --timeout 20
	# idempotent: running it again changes nothing
	expect 0 "$cron" --bus "$SRC_BUS" --to "unix:$T/src.sock" --timeout 20 || [ "$status" -eq 69 ]
	finish_and_verify
}

@test "the link breaks as the destination completes: the source learns it on recovery" {
	guest src 64M --workload ab
	start recv env MIG_FAULT=dest-complete-lost mig-recv -v --name m \
		--listen "tcp:127.0.0.1:$PORT" --guest-ctl "$T/dst.ctl"
	start send mig-send --postcopy --name m --guest "$T/src.ctl" --to "tcp:127.0.0.1:$PORT"
	state "$DST_BUS" completed
	state "$SRC_BUS" postcopy-paused
	# the destination stays until the source knows, whatever mig-recover it gets
	expect 0 mig-recover --bus "$DST_BUS" --listen "tcp:127.0.0.1:$PORT" --timeout 1
	expect 0 mig-recover --bus "$SRC_BUS" --to "tcp:127.0.0.1:$PORT" --timeout 20
	finish_and_verify
	grep -q "told the reconnected source" "$T/recv.log"
}
