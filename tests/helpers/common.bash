# SPDX-License-Identifier: MIT
# Shared by every bats file: programs from the build tree, a private runtime
# directory per test, daemons started with --ready-fd and reaped in teardown,
# bounded waits only, logs printed when a test fails.

MIG_BIN=${MIG_BIN:-$BATS_TEST_DIRNAME/../../build/bin}
PATH=$MIG_BIN:$PATH

# Every daemon a test starts: "pid name" lines.
mig_setup() {
	# short: sun_path holds 108 bytes
	T=$(mktemp -d /tmp/mig.XXXXXX)
	export MIG_RUNTIME_DIR=$T/run
	mkdir -p "$MIG_RUNTIME_DIR"
	: >"$T/pids"
}

mig_teardown() {
	local pid name crashed=0
	while read -r pid name; do
		kill -TERM "$pid" 2>/dev/null
	done <"$T/pids"
	# guests that engines spawned live in their own session: find them by
	# the test directory every path of theirs contains
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		pgrep -f "$T/" >/dev/null || break
		sleep 0.2
	done
	pkill -KILL -f "$T/" 2>/dev/null
	while read -r pid name; do
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
		local rc=$?
		if [ "$rc" -ge 128 ] && [ "$rc" -ne 143 ] && [ "$rc" -ne 137 ]; then
			echo "# $name (pid $pid) died with status $rc"
			crashed=1
		fi
	done <"$T/pids"
	if grep -l -E 'AddressSanitizer|LeakSanitizer|runtime error:' "$T"/*.log 2>/dev/null; then
		crashed=1
	fi
	if [ -z "${BATS_TEST_COMPLETED:-}" ] || [ "$crashed" -ne 0 ]; then
		local f
		for f in "$T"/*.log; do
			[ -s "$f" ] || continue
			echo "# --- $f"
			sed 's/^/# /' "$f"
		done
	fi
	rm -rf "$T"
	[ "$crashed" -eq 0 ]
}

# start NAME CMD...: run CMD in the background with --ready-fd 3 and wait
# (bounded) for its readiness newline. Logs go to $T/NAME.log.
start() {
	local name=$1; shift
	local fifo=$T/$name.ready line
	mkfifo "$fifo"
	"$@" --ready-fd 3 3>"$fifo" >"$T/$name.log" 2>&1 &
	local pid=$!
	echo "$pid $name" >>"$T/pids"
	eval "PID_${name//-/_}=$pid"
	if ! read -r -t 20 line <"$fifo"; then
		echo "# $name did not become ready" >&2
		cat "$T/$name.log" >&2
		return 1
	fi
	rm -f "$fifo"
}

# bg NAME CMD...: a background process without readiness (mig-send).
bg() {
	local name=$1; shift
	"$@" 3>&- >"$T/$name.log" 2>&1 &
	local pid=$!
	echo "$pid $name" >>"$T/pids"
	eval "PID_${name//-/_}=$pid"
}

# wait_exit NAME TIMEOUT: wait for a bg process, set $status to its exit.
wait_exit() {
	local name=$1 timeout=${2:-60} pid
	pid=$(awk -v n="$name" '$2 == n { p = $1 } END { print p }' "$T/pids")
	local i=0
	while kill -0 "$pid" 2>/dev/null; do
		i=$((i + 1))
		if [ "$i" -gt $((timeout * 10)) ]; then
			echo "# $name still running after ${timeout}s" >&2
			return 1
		fi
		sleep 0.1
	done
	status=0
	wait "$pid" || status=$?
}

# expect STATUS CMD...: run with a timeout and fd 3 closed (a background
# child holding it would hang bats), and check the exit status.
expect() {
	local want=$1; shift
	run timeout 60 "$@" 3>&-
	if [ "$status" -ne "$want" ]; then
		echo "# expected status $want, got $status: $*" >&2
		echo "$output" | sed 's/^/# /' >&2
		return 1
	fi
}

# A free TCP port on loopback.
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# guest NAME SIZE [ARGS]: a running guest at $T/NAME.ctl.
guest() {
	local name=$1 size=$2; shift 2
	start "$name" mig-guest --ctl "$T/$name.ctl" --ram "$size" "$@"
}

# guest_progress CTL: its vCPUs' page writes so far.
guest_progress() {
	mig-guest info --ctl "$1" --json | jq -r .progress
}

# events BUS: the MIGRATION statuses seen so far, space-separated.
events_of() {
	timeout 10 mig-status --bus "$1" --watch --json 3>&- |
		jq -r 'select(.event == "MIGRATION") | .data.status' | tr '\n' ' ' | sed 's/ $//'
}

bus_of() { echo "$MIG_RUNTIME_DIR/$1.$2.sock"; }

# qmp BUS COMMAND: send one QMP command (JSON text) to a bus after the
# capabilities negotiation, as any QMP client would; $output holds every
# line the bus answered (greeting, replies, events).
qmp() {
	run bash -c 'printf "%s\n" "{\"execute\":\"qmp_capabilities\"}" "$2" |
		timeout 5 socat -t 2 - "UNIX-CONNECT:$1"' _ "$1" "$2" 3>&-
}

# state BUS STATE [SECS]: wait (bounded) until the side is in STATE.
state() { expect 0 mig-status --bus "$1" --wait-for "$2" --timeout "${3:-15}"; }

# history BUS: every MIGRATION status so far (the bus replays its log).
history() {
	timeout 2 mig-status --bus "$1" --watch --json 3>&- |
		jq -r 'select(.event == "MIGRATION") | .data.status' | tr '\n' ' ' | sed 's/ $//'
}
