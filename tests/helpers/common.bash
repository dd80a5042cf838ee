# SPDX-License-Identifier: MIT
# Shared by every bats file, and by bench/run.sh: programs from the build
# tree, a private runtime directory per test, daemons started with
# --ready-fd and reaped in teardown, bounded waits only, logs printed when a
# test fails. Functions that need bats (run, skip) say so.

MIG_BIN=${MIG_BIN:-$BATS_TEST_DIRNAME/../../build/bin}
PATH=$MIG_BIN:$PATH

# --- a test's directory and processes ----------------------------------------

# Every daemon a test starts: "pid name" lines in $T/pids.
mig_setup() {
	# short: sun_path holds 108 bytes
	T=$(mktemp -d /tmp/mig.XXXXXX)
	export MIG_RUNTIME_DIR=$T/run
	mkdir -p "$MIG_RUNTIME_DIR"
	: >"$T/pids"
}

# our_procs [DIR]: the pids of every process whose MIG_RUNTIME_DIR is in DIR
# (default: this test's $T), whoever started it: each inherits it from the
# test, the guests the engines spawn in their own process group included. The
# environment, not the command line: a process cannot match by naming a
# path, and the scanner itself is run without the variable. One grep over
# every environ (NUL-separated entries, each matched whole): teardown runs
# it several times per test, where a python3 would take a good part of a
# second each. No other process beside it (a pipe's would have the
# variable): the pids are cut out of the paths by bash.
# shellcheck disable=SC2120 # DIR: examples.bats
our_procs() {
	local dir=${1:-$T} f
	for f in $(env -u MIG_RUNTIME_DIR grep -l -s -z -x -E \
		"MIG_RUNTIME_DIR=${dir//./\\.}(/.*)?" /proc/[0-9]*/environ); do
		f=${f#/proc/}
		echo "${f%/environ}"
	done
}

no_procs() { [ -z "$(our_procs)" ]; }

# stat_field PID N: field N of /proc/PID/stat (5 pgrp, 6 session, 19 nice,
# 41 policy; PID may be a thread's id). The comm in parentheses may hold
# spaces: fields are counted from after it.
stat_field() { awk -v n="$2" '{ sub(/^.*\) /, ""); print $(n - 2) }' "/proc/$1/stat"; }

# only_running PID...: nothing of this test's runs but the PIDs given.
only_running() {
	local pid want ok
	for pid in $(our_procs); do
		ok=0
		for want in "$@"; do [ "$pid" = "$want" ] && ok=1; done
		if [ "$ok" -eq 0 ]; then
			echo "# stray process: $(ps -o pid=,args= -p "$pid")" >&2
			return 1
		fi
	done
}

# The last resort: a test must end what it started itself (by pid), but a
# failed one may leave anything behind; what carries its MIG_RUNTIME_DIR
# goes here, so that no test's leftovers load the next.
mig_teardown() {
	local pid name crashed=0 left
	while read -r pid name; do
		kill -TERM "$pid" 2>/dev/null
	done <"$T/pids"
	left=$(our_procs)
	# shellcheck disable=SC2086 # one pid per word
	[ -z "$left" ] || kill -TERM $left 2>/dev/null
	wait_for 2 "" no_procs
	left=$(our_procs)
	# shellcheck disable=SC2086
	[ -z "$left" ] || kill -KILL $left 2>/dev/null
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
# (bounded) for its readiness newline. Logs (stdout and stderr) go to
# $LOGS/NAME.log, $LOGS being $T unless set. Sets PID_NAME.
start() {
	local name=$1; shift
	local dir=${LOGS:-$T} line
	local fifo=$dir/$name.ready
	mkfifo "$fifo"
	"$@" --ready-fd 3 3>"$fifo" >"$dir/$name.log" 2>&1 &
	local pid=$!
	echo "$pid $name" >>"$T/pids"
	printf -v "PID_${name//-/_}" %s "$pid"
	# the read end opens once the child has opened the write end (or died)
	if ! read -r -t 20 line <"$fifo"; then
		echo "# $name did not become ready" >&2
		cat "$dir/$name.log" >&2
		return 1
	fi
	rm -f "$fifo"
}

# bg NAME CMD...: a background process without readiness (mig-send).
bg() {
	local name=$1; shift
	"$@" 3>&- >"${LOGS:-$T}/$name.log" 2>&1 &
	local pid=$!
	echo "$pid $name" >>"$T/pids"
	printf -v "PID_${name//-/_}" %s "$pid"
}

# pid_of NAME: the pid of the latest process started as NAME.
pid_of() { awk -v n="$1" '$2 == n { p = $1 } END { print p }' "$T/pids"; }

# wait_exit NAME TIMEOUT: wait for a bg process, set $status to its exit.
wait_exit() {
	local name=$1 timeout=${2:-60} pid
	pid=$(pid_of "$name")
	wait_for "$timeout" "$name (pid $pid) to exit" proc_gone "$pid" || return 1
	status=0
	wait "$pid" || status=$?
}

# kill9 NAME: kill -9 and wait for it to be gone, as a supervisor does
# before it restarts a service (its sockets close only then); 1 if it had
# already exited.
kill9() {
	local pid
	pid=$(pid_of "$1")
	kill -KILL "$pid" 2>/dev/null || { echo "# $1 (pid $pid) had already exited" >&2; return 1; }
	wait "$pid" 2>/dev/null || true
}

# --- bounded waits -----------------------------------------------------------

# wait_for SECS WHAT CMD...: run CMD until it succeeds, SECS (decimals
# allowed) at most; then say that WHAT never happened, and fail. The poll
# interval is no synchronisation: only CMD's success ends the wait.
wait_for() {
	local secs=$1 what=$2 now end
	shift 2
	now=${EPOCHREALTIME/./}
	end=$((now + $(awk -v s="$secs" 'BEGIN { printf "%d", s * 1000000 }')))
	until "$@" >/dev/null 2>&1; do
		if [ "${EPOCHREALTIME/./}" -ge "$end" ]; then
			[ -z "$what" ] || echo "# timed out after ${secs}s waiting for $what" >&2
			return 1
		fi
		sleep 0.05
	done
}

proc_gone() { ! kill -0 "$1" 2>/dev/null; }
file_gone() { [ ! -e "$1" ]; }
log_has() { grep -q -E "$2" "${LOGS:-$T}/$1.log"; }
# bash's own connect (/dev/tcp): a python3 to start would cost more than
# the wait it polls for
port_listens() {
	# shellcheck disable=SC2016 # $0: the inner bash's
	timeout 1 bash -c ': <>"/dev/tcp/127.0.0.1/$0"' "$1" 3>&-
}

# wait_socket PATH [SECS]: until a socket is at PATH.
wait_socket() { wait_for "${2:-5}" "a socket at $1" test -S "$1"; }
# wait_port PORT [SECS]: until something listens on loopback PORT.
wait_port() { wait_for "${2:-5}" "a listener on port $1" port_listens "$1"; }
# wait_gone PATH [SECS]: until nothing is at PATH.
wait_gone() { wait_for "${2:-5}" "$1 to be removed" file_gone "$1"; }
# wait_dead PID [SECS]: until process PID (not ours to wait(2) for) is
# gone, reaped by its parent.
wait_dead() { wait_for "${2:-5}" "pid $1 to be gone" proc_gone "$1"; }
# wait_log NAME REGEX [SECS]: until the log of NAME matches.
wait_log() { wait_for "${3:-20}" "$1.log to match /$2/" log_has "$1" "$2"; }
# wait_only_running SECS PID...: until nothing of the test's runs but PIDs.
wait_only_running() {
	local secs=$1; shift
	wait_for "$secs" "nothing but pids $* to be left" only_running "$@" || only_running "$@"
}

# --- permissions -------------------------------------------------------------

# require_root WHY: skip (bats) unless root.
require_root() {
	[ "$(id -u)" -eq 0 ] || skip "needs root: $1"
}

# require_uffd: skip (bats) where an incoming guest cannot have its RAM
# through userfaultfd (neither /dev/userfaultfd nor the syscall is allowed
# to this user); any other failure of the probe fails the test. Probed once
# per bats file.
require_uffd() {
	local cache=${BATS_FILE_TMPDIR:-$T}/uffd-probe
	[ -e "$cache" ] || uffd_probe >"$cache"
	case $(head -n 1 "$cache") in
	ok) return 0 ;;
	skip) skip "$(tail -n +2 "$cache")" ;;
	*) tail -n +2 "$cache" >&2; return 1 ;;
	esac
}

# uffd_probe: "ok", or "skip"/"fail" and why, from a 4 MiB incoming guest.
uffd_probe() {
	local d pid rc=0
	d=$(mktemp -d /tmp/mig-probe.XXXXXX)
	mig-guest --ctl "$d/p.ctl" --ram 4M --incoming --ready-fd 3 \
		3>"$d/ready" >"$d/log" 2>&1 &
	pid=$!
	wait_for 20 "the probe guest to be ready or exit" probe_done "$pid" "$d/ready"
	if [ -s "$d/ready" ]; then
		kill -TERM "$pid"
		wait "$pid" 2>/dev/null || true
		echo ok
	else
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || rc=$?
		if [ "$rc" -eq 69 ]; then
			echo skip
			echo "no userfaultfd for user $(id -un) here: $(tail -n 1 "$d/log")"
		else
			echo fail
			echo "# the probe guest failed (exit $rc):"
			sed 's/^/# /' "$d/log"
		fi
	fi
	rm -rf "$d"
}
probe_done() { [ -s "$2" ] || proc_gone "$1"; }

# assert_eq WHAT GOT WANT: GOT is WANT, or say what WHAT was.
assert_eq() {
	if [ "$2" != "$3" ]; then
		echo "# $1: got '$2', expected '$3'" >&2
		return 1
	fi
}

# --- commands ----------------------------------------------------------------

# expect STATUS CMD...: (bats) run with a timeout and fd 3 closed (a
# background child holding it would hang bats), and check the exit status.
expect() {
	local want=$1; shift
	run timeout 60 "$@" 3>&-
	if [ "$status" -ne "$want" ]; then
		echo "# expected status $want, got $status: $*" >&2
		echo "$output" | sed 's/^/# /' >&2
		return 1
	fi
}

# A free TCP port on loopback: the kernel's pick for a bind to port 0. By
# perl's Socket (perl-base, always there on Debian): tests take several
# ports each, and a python3 takes ten times as long to start.
free_port() {
	perl -MSocket -e 'socket(S, PF_INET, SOCK_STREAM, 0) or die "socket: $!\n";
		bind(S, pack_sockaddr_in(0, inet_aton("127.0.0.1"))) or die "bind: $!\n";
		print((unpack_sockaddr_in(getsockname(S)))[0], "\n")'
}

bus_of() { echo "$MIG_RUNTIME_DIR/$1.$2.sock"; }

# qmp_send BUS COMMAND: send one QMP command (JSON text) to a bus after the
# capabilities negotiation, as any QMP client would; prints every line the
# bus answered (greeting, replies, events). qmp: the same into $output.
qmp_send() {
	printf '%s\n' '{"execute":"qmp_capabilities"}' "$2" |
		timeout 5 socat -t 2 - "UNIX-CONNECT:$1" 3>&-
}
qmp() { run qmp_send "$1" "$2"; }

# set_bandwidth BUS BYTES: the source's limits, precopy's and the postcopy
# pump's, changed live (0: none).
set_bandwidth() {
	qmp_ok "$1" migrate-set-parameters "{\"max-bandwidth\":$2,\"max-postcopy-bandwidth\":$2}"
}

# qmp_ok BUS CMD [ARGS-JSON]: run CMD on BUS; its reply must be an empty
# return, or the reply is shown and it fails.
qmp_ok() {
	local out args=${3:+,\"arguments\":$3}
	out=$(qmp_send "$1" "{\"execute\":\"$2\"$args,\"id\":\"ok\"}")
	grep '"id":"ok"' <<<"$out" | jq -e '.return == {}' >/dev/null ||
		{ echo "# $2 ${3:-} on $1: $out" >&2; return 1; }
}

# state BUS STATE [SECS]: wait (bounded) until the side is in STATE.
state() {
	local out
	out=$(mig-status --bus "$1" --wait-for "$2" --timeout "${3:-15}" 2>&1 3>&-) && return 0
	echo "# $1 did not reach $2: $out" >&2
	return 1
}

# history BUS: every MIGRATION status so far, from the bus's own log.
history() {
	qmp_send "$1" '{"execute":"x-query-events","id":"h"}' |
		jq -r 'select(.id == "h") | .return[] | select(.event == "MIGRATION") | .data.status' |
		tr '\n' ' ' | sed 's/ $//'
}

# log_events NAME: the MIGRATION statuses a `mig-status --watch --json`
# started as NAME printed, space-separated.
log_events() {
	jq -r 'select(.event == "MIGRATION") | .data.status' "${LOGS:-$T}/$1.log" |
		tr '\n' ' ' | sed 's/ $//'
}

# events_match NAME REGEX: those statuses match REGEX, whole.
events_match() {
	local got; got=$(log_events "$1")
	if ! [[ "$got" =~ ^$2$ ]]; then
		echo "# $1 saw: '$got'; expected /$2/" >&2
		return 1
	fi
}

# guest_pid BUS|SIDE: the pid of the guest a side's engine drives, as its
# query-migrate reports it ("x-guest-pid"); SIDE (source or destination) is
# the only migration on this host's.
guest_pid() {
	local out pid
	if [[ $1 == */* ]]; then
		out=$(mig-status --bus "$1" --json 2>&1 3>&-)
	else
		out=$(mig-status --side "$1" --json 2>&1 3>&-)
	fi
	pid=$(jq -r '."x-guest-pid" // empty' <<<"$out" 2>/dev/null)
	[[ $pid =~ ^[1-9][0-9]*$ ]] || { echo "# no x-guest-pid from $1: $out" >&2; return 1; }
	echo "$pid"
}

# has_digest BUS: the source has its digest of all RAM at switchover.
has_digest() { [ -n "$(mig-status --bus "$1" --json 3>&- | jq -r '."x-ram-digest" // empty')" ]; }

# --- guests ------------------------------------------------------------------

# guest NAME SIZE [ARGS]: a running guest at $T/NAME.ctl.
guest() {
	local name=$1 size=$2; shift 2
	start "$name" mig-guest --ctl "$T/$name.ctl" --ram "$size" "$@"
}

# guest_json CTL FILTER: a field of the guest's info.
guest_json() { mig-guest info --ctl "$1" --json 3>&- | jq -r "$2"; }

# guest_progress CTL: its vCPUs' page writes so far.
guest_progress() { guest_json "$1" .progress; }

progress_above() { [ "$(guest_progress "$1")" -gt "$2" ]; }

# guest_wrote CTL N [SECS]: until its vCPUs have made N page writes: as
# many as it has pages, and a migration moves data, not untouched pages.
guest_wrote() {
	wait_for "${3:-30}" "the guest at $1 to make $2 page writes" progress_above "$1" $(($2 - 1))
}

# guest_runs CTL: it is running, and its vCPUs write on (bounded).
guest_runs() {
	local p
	[ "$(guest_json "$1" .running)" = true ] ||
		{ echo "# guest at $1: $(mig-guest info --ctl "$1" --json 2>&1 3>&-)" >&2; return 1; }
	p=$(guest_progress "$1")
	wait_for 10 "the guest at $1 to write past $p pages" progress_above "$1" "$p"
}

# verifies CTL: the guest's own invariant holds.
verifies() {
	expect 0 mig-guest verify --ctl "$1"
	[[ "$output" == *"invariant holds"* ]] || { echo "# verify: $output" >&2; return 1; }
}

# finish_and_verify: mig-send and mig-recv (started as send and recv) exit
# 0 and the guest at $T/dst.ctl verifies.
finish_and_verify() {
	wait_exit send 120
	[ "$status" -eq 0 ] || { echo "# mig-send exited $status" >&2; return 1; }
	wait_exit recv 60
	[ "$status" -eq 0 ] || { echo "# mig-recv exited $status" >&2; return 1; }
	verifies "$T/dst.ctl"
}

# --- proxies -----------------------------------------------------------------

# socat_proxy NAME FROM TO: a socat forwarding FROM (a socat listen
# address) to TO, a child per connection; started as NAME.
socat_proxy() { bg "$1" socat "$2,reuseaddr,fork" "$3"; }

# The two-proxy path: proxy a, the source's unix socket -> tcp PORT;
# proxy b, tcp PORT -> the destination's unix socket. Killing b cuts the
# path in the middle.
proxy_a() {
	socat_proxy pa "unix-listen:$T/src.sock" "tcp:127.0.0.1:$PORT"
	wait_socket "$T/src.sock"
}
proxy_b() {
	socat_proxy pb "tcp-listen:$PORT" "unix:$T/dst.sock"
	wait_port "$PORT"
}

# proxy_kill NAME: cut every connection of socat proxy NAME at once: the
# parent held still first (so it forks no more), its children, then it.
proxy_kill() {
	local pid; pid=$(pid_of "$1")
	kill -STOP "$pid"
	# shellcheck disable=SC2046 # one pid per word
	kill -KILL $(pgrep -P "$pid") 2>/dev/null || true
	kill -KILL "$pid"
	wait "$pid" 2>/dev/null || true
}

# proxy_freeze NAME: the proxy stops moving bytes, no FIN, no RST.
proxy_freeze() {
	local pid; pid=$(pid_of "$1")
	kill -STOP "$pid"
	# shellcheck disable=SC2046
	kill -STOP $(pgrep -P "$pid") 2>/dev/null || true
}

# --- messages and stand-ins -------------------------------------------------

# says TEXT: the last command's output ($output) names what was wrong.
says() {
	[[ $output == *"$1"* ]] || {
		echo "# expected '$1' in:" >&2
		sed 's/^/#   /' <<<"$output" >&2
		return 1
	}
}

# log_says NAME TEXT: the same for a daemon's log.
log_says() {
	grep -qF -- "$2" "$T/$1.log" || {
		echo "# expected '$2' in $1.log" >&2
		return 1
	}
}

# usage_error PROG ARGS...: exit 64, one line naming the problem, then
# "Try 'PROG --help'."; $output holds both lines.
usage_error() {
	local p=$1
	expect 64 "$@"
	[ "${#lines[@]}" -eq 2 ] || { echo "# $p: not two lines: $output" >&2; return 1; }
	[[ ${lines[0]} == "$p: "* ]] || { echo "# $p: no '$p: ' prefix: $output" >&2; return 1; }
	[ "${lines[1]}" = "Try '$p --help'." ] || { echo "# $p: no Try line: $output" >&2; return 1; }
}

# fakebus NAME STATE MODE: a status bus at $T/NAME.sock whose migration is
# in STATE. MODE gone: it closes as soon as it has accepted a command
# (migrate-pause, migrate-recover, migrate), as an engine that dies then;
# silent: it accepts and never sends an event.
fakebus() {
	local name=$1 state=$2 mode=$3
	start "$name" python3 "$BATS_TEST_DIRNAME/../helpers/fakebus.py" "$T/$name.sock" "$state" "$mode"
}
