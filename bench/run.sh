#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# make bench: measure the engines against loopback references taken in the
# same run on the same machine, print a table of ratios and append the same
# figures as JSON lines to $MIG_BENCH_DIR/results.jsonl so runs can be
# compared. Speed is measured here, never asserted in tests.
#
# Usage: bench/run.sh [SCENARIO...]   (default: all of them; see SCENARIOS)
# Environment: MIG_BIN, MIG_BENCH_DIR, MIG_GUEST_IMG (the boot sector the
# KVM guests run; all three set by make bench), MIG_BENCH_RAM
# (guest size, default 1G), MIG_BENCH_POLL_S (bus poll interval, 0.1),
# MIG_BENCH_RECOVERIES (timed recoveries in `recovery`, default 7).
#
# Starting programs, waiting for states and exits, and finding processes is
# tests/helpers/common.bash's, as in the tests: every process this script
# starts, and the guests mig-recv spawns in their own session, inherit
# MIG_RUNTIME_DIR=$T/run: that is how they are all found and ended on exit,
# even on failure (our_procs).
#
# Adding a scenario: write scenario_NAME that leaves a JSON object in
# "$R/ROW.json" and appends ROW to "$R/order" (record_migration does both
# for a migration), then add NAME to SCENARIOS.
# shellcheck disable=SC2154 # REF_* and PID_* are set through printf -v
set -Eeuo pipefail

here=$(cd "$(dirname "$0")" && pwd)
MIG_BIN=${MIG_BIN:-$here/../build/bin}
MIG_BENCH_DIR=${MIG_BENCH_DIR:-$here/../build/bench}
GUEST_IMG=${MIG_GUEST_IMG:-$here/../build/gen/abguest.img}
RAM=${MIG_BENCH_RAM:-1G}
POLL_S=${MIG_BENCH_POLL_S:-0.1}
MIGRATION_TIMEOUT_S=120   # a 1 GiB loopback migration takes seconds
RESULTS=$MIG_BENCH_DIR/results.jsonl

SCENARIOS=(postcopy_preempt postcopy_nopreempt random_preempt random_nopreempt
	   notify_refused notify_hang
	   channels floor stall slow_subscriber tls sparse qemu kvm
	   recovery restart precopy_1g_10m precopy_1g_100m precopy_1g_400m precopy_4g_100m)
RECOVERIES=${MIG_BENCH_RECOVERIES:-7}   # timed recoveries in `recovery`
RECOVERY_BANDWIDTH=64M    # keeps the migration going through all of them
RESTARTS=${MIG_BENCH_RESTARTS:-6}       # timed engine restarts in `restart`
SLOW_SUBSCRIBERS=64   # never-reading clients on each bus in `slow_subscriber`
SLOW_PAIRS=3          # its migrations without and with them, alternately
TLS_PAIRS=3           # `tls`: migrations in clear and with TLS, alternately
CHANNEL_PAIRS=3       # `channels`: with --channels 1 and 2, alternately
SPARSE_PAIRS=3        # `sparse`: a quarter of a second each, noisy
QEMU_PAIRS=3          # `qemu`: 1 GiB migrations by QEMU and by mig, alternately
QEMU_PAIRS_4G=2       # and 4 GiB ones: a median of two, not one draw
KVM_PAIRS=2           # `kvm`: the same, both guests a virtual machine

# Shared by the jq programs that sum up a scenario's rows: a median of an
# even count is a mean, rounded as every ratio is.
JQ_LIB='def r3: if . then . * 1000 | round / 1000 else null end;
	def med: sort | if length == 0 then null elif length % 2 == 1
		then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 | r3 end;'

PATH=$MIG_BIN:$PATH
# short: sun_path holds 108 bytes
T=$(mktemp -d /tmp/mig-bench.XXXXXX)
R=$T/results                 # one JSON object per scenario
export MIG_RUNTIME_DIR=$T/run
mkdir -p "$MIG_RUNTIME_DIR" "$R"
: >"$T/pids"
# shellcheck source=../tests/helpers/common.bash
. "$here/../tests/helpers/common.bash"
# shellcheck source=qemu/migrate.sh
. "$here/qemu/migrate.sh"
# shellcheck source=qemu/kvm.sh
. "$here/qemu/kvm.sh"

log() { printf 'bench: %s\n' "$*" >&2; }
# where errexit stops us (not commands whose failure is handled)
trap 'rc=$?; [[ $- == *e* ]] && log "line $LINENO: \"$BASH_COMMAND\" failed (status $rc)"' ERR

# --- processes -------------------------------------------------------------

# stop_all: TERM everything of ours, wait (bounded), then KILL.
stop_all() {
	local pids
	pids=$(our_procs)
	[ -n "$pids" ] || return 0
	# shellcheck disable=SC2086 # one pid per word
	kill -TERM $pids 2>/dev/null || true
	wait_for 5 "" no_procs && return 0
	pids=$(our_procs)
	log "still running 5 s after SIGTERM, killing: $(ps -o pid=,args= -p "${pids//$'\n'/,}" | tr '\n' ';')"
	# shellcheck disable=SC2086
	kill -KILL $pids 2>/dev/null || true
}

SCENARIO_PID=
cleanup() {
	local rc=$? left
	trap - ERR EXIT INT TERM
	set +e
	# the scenario's shell first, so it starts nothing more
	[ -n "$SCENARIO_PID" ] && kill -TERM "$SCENARIO_PID" 2>/dev/null
	stop_all
	wait 2>/dev/null
	left=$(our_procs)
	if [ -n "$left" ]; then
		log "left behind: $(ps -o pid=,args= -p "${left//$'\n'/,}" | tr '\n' ';')"
		rc=1
	fi
	rm -rf "$T"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# guest_populate CTL: the guest runs ~1 s and until the workload has made
# as many page writes as it has pages (bounded), so the migration moves
# real data, not holes.
guest_populate() {
	local ctl=$1 pages
	sleep 1 # settle
	pages=$(guest_json "$ctl" '."ram-bytes" / 4096')
	guest_wrote "$ctl" "$pages" 30 2>/dev/null ||
		{ log "guest at $ctl did not write all its pages in 30 s"; return 1; }
}

# guest_stop CTL: ask a guest we cannot wait(2) for to quit, and make sure
# it is gone (its pid from info --json).
guest_stop() {
	local ctl=$1 pid
	pid=$(guest_json "$ctl" .pid 2>/dev/null) || return 0
	[[ $pid =~ ^[0-9]+$ ]] || return 0
	mig-guest quit --ctl "$ctl" >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
	wait_dead "$pid" 5 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
}

# poll_bus BUS OUT PID...: while any PID runs, save the bus's query-migrate
# JSON every POLL_S, as a management layer polls; OUT keeps the last good
# answer (the bus disappears when the engine exits, so the final state
# itself is usually missed). Nothing heavier than mig-status runs per poll:
# a jq here took 40-50 ms of CPU each time, a quarter of this 2-core
# machine at 10 polls a second, and showed in the migrations' tails.
poll_bus() {
	local bus=$1 out=$2 p alive end=$((SECONDS + MIGRATION_TIMEOUT_S))
	shift 2
	while [ "$SECONDS" -lt "$end" ]; do
		alive=0
		for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
		[ "$alive" -eq 1 ] || return 0
		# mig-status prints a whole answer or fails
		if mig-status --bus "$bus" --json >"$out.new" 2>/dev/null; then
			mv "$out.new" "$out"
		fi
		sleep "$POLL_S"
	done
	log "migration still running after ${MIGRATION_TIMEOUT_S}s"
	return 1
}

# --- parsing -----------------------------------------------------------------

# summary_line LOG: an engine's --summary line ("mig-send: source
# completed in 0.288 s: ...", see mig_engine_summary()) in its log.
summary_line() {
	grep -E '^mig-(send|recv): (source|destination) [a-z-]+ in [0-9.]+ s:' "$1" | tail -n 1 || true
}

# summary_field LOG BEFORE [AFTER]: the number between the regexes BEFORE
# and AFTER in that line, or null when it is not there.
summary_field() {
	local v
	v=$(summary_line "$1" | sed -nE "s#.*$2 ([0-9.]+)${3:-}.*#\\1#p" | head -n1)
	echo "${v:-null}"
}

# ratio A B: A/B with 3 decimals, or null when either is missing or B is 0.
ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN {
		if (a == "null" || b == "null" || a == "" || b == "" || b + 0 == 0) print "null";
		else printf "%.3f\n", a / b }'
}

# --- references --------------------------------------------------------------

# ref_run NAME [ARGS]: run the reference program NAME, which prints
# key=value lines, and keep them as REF_key.
ref_run() {
	local name=$1 out=$T/$1.out
	shift
	"$MIG_BENCH_DIR/$name" "$@" >"$out"
	while IFS='=' read -r k v; do
		printf -v "REF_$k" %s "$v"
	done <"$out"
}

ref_tcp() {
	log "references: loopback TCP (tcpref)"
	ref_run tcpref
	jq -n --arg s tcpref --argjson tp "$REF_tcp_bytes_per_s" \
		--argjson r16 "$REF_rtt16_p50_us" --argjson r16q "$REF_rtt16_p99_us" \
		--argjson r4 "$REF_rtt4k_p50_us" --argjson r4q "$REF_rtt4k_p99_us" \
		'{scenario: $s, tcp_mb_per_s: ($tp / 1e6), rtt16_p50_us: $r16,
		  rtt16_p99_us: $r16q, rtt4k_p50_us: $r4, rtt4k_p99_us: $r4q}' \
		>"$R/tcpref.json"
}

# The destination's ceiling: one thread placing 1 GiB with UFFDIO_COPY into
# a new memfd, twice: first with pages as the kernel hands them out (often
# cold on this VM, as a migrating guest's are), then reusing those (warm).
# How cold the first pass is depends on what ran before: noisy by nature.
ref_uffd() {
	log "references: UFFDIO_COPY placement (uffdref)"
	ref_run uffdref 1G
	jq -n --arg s uffdref --argjson c "$REF_uffd_copy_first_bytes_per_s" \
		--argjson w "$REF_uffd_copy_reused_bytes_per_s" \
		'{scenario: $s, copy_first_mb_per_s: ($c / 1e6),
		  copy_reused_mb_per_s: ($w / 1e6)}' >"$R/uffdref.json"
}

# The destination's floor with the kernel's parts alone: one and two
# loopback streams, each spliced from a memfd and placed 64 KiB at a time
# with UFFDIO_COPY by a receiver doing nothing else, no vCPU running. mig's
# bulk rate with as many streams, vCPU and bookkeeping included, is below
# it; how far below is what mig itself costs.
ref_place() {
	log "references: receive and place, 1 and 2 streams (placeref)"
	ref_run placeref 1G
	jq -n --arg s placeref --argjson p1 "$REF_place_1s_bytes_per_s" \
		--argjson p2 "$REF_place_2s_bytes_per_s" \
		--argjson c1 "$REF_place_1s_recv_cpu_s" --argjson c2 "$REF_place_2s_recv_cpu_s" \
		'{scenario: $s, place_1s_mb_per_s: ($p1 / 1e6), place_2s_mb_per_s: ($p2 / 1e6),
		  place_1s_recv_cpu_s_per_gib: $c1, place_2s_recv_cpu_s_per_gib: $c2}' \
		>"$R/placeref.json"
}

# --- scenarios ---------------------------------------------------------------

# migrate_postcopy NAME SEND-ARGS...: a RAM-sized ab guest with one vCPU (the
# machine has two cores: the engines need the other), migrated on loopback
# TCP with postcopy; the destination bus is polled for its statistics, the
# migrated guest verified. Leaves $R/NAME.json. With PEAK_RSS set, each
# engine runs under GNU time, which leaves its peak RSS (kB) in
# $d/send.peak_kb and $d/recv.peak_kb; with SUBSCRIBERS=N, N clients that
# never read are on each bus from as soon as the source's is up; with
# DEFER set, mig-send starts deferred and the migration with the bus
# command migrate, once those clients are in (mig-send times it from
# there, so what starting them costs this machine is not counted); with
# TLS_PSK=FILE, mig-recv takes --tls-psk FILE (mig-send's are in SEND-ARGS).
migrate_postcopy() {
	local name=$1 d=$T/$1 port to rc_send rc_recv vrc=0 vmsg t0 t1
	local LOGS=$d peak_send=() peak_recv=() how=()
	local recv_args=()
	[ -z "${TLS_PSK:-}" ] || recv_args=(--tls-psk "$TLS_PSK")
	shift
	if [ -n "${PEAK_RSS:-}" ]; then
		peak_send=(/usr/bin/time -f %M -o "$d/send.peak_kb")
		peak_recv=(/usr/bin/time -f %M -o "$d/recv.peak_kb")
	fi
	mkdir -p "$d"
	port=$(free_port)
	log "$name: $RAM ${WORKLOAD:-ab} guest, mig-send $*"

	start guest mig-guest --ctl "$d/A" --ram "$RAM" --workload "${WORKLOAD:-ab}" --vcpus 1
	case ${WORKLOAD:-ab} in
	idle*) ;; # filled before it is ready; no vCPU writes to wait for
	*) guest_populate "$d/A" ;;
	esac
	start recv "${peak_recv[@]}" mig-recv --name "$name" --listen "tcp:127.0.0.1:$port" \
		--guest-ctl "$d/B" --summary "${recv_args[@]}"
	to=tcp:127.0.0.1:$port
	if [ -n "${STALL:-}" ]; then
		# through the tests' proxy, its --stall N:BYTES:SECS
		to=tcp:127.0.0.1:$(free_port)
		start px python3 "$here/../tests/helpers/proxy.py" "$to" \
			"tcp:127.0.0.1:$port" --stall "$STALL"
	fi
	how=(--to "$to")
	[ -z "${DEFER:-}" ] || how=(--defer)
	t0=$EPOCHREALTIME
	start send "${peak_send[@]}" mig-send --name "$name" --guest "$d/A" \
		"${how[@]}" --summary "$@"
	subscribe "$name" "${SUBSCRIBERS:-0}"
	if [ -n "${DEFER:-}" ]; then
		t0=$EPOCHREALTIME
		python3 "$here/../tests/helpers/qmp.py" "$MIG_RUNTIME_DIR/$name.send.sock" \
			migrate "{\"uri\": \"$to\"}" >"$d/migrate.reply"
	fi
	poll_bus "$MIG_RUNTIME_DIR/$name.recv.sock" "$d/recv.json" "$PID_send" "$PID_recv"
	wait_exit send 10
	rc_send=$status
	t1=$EPOCHREALTIME
	wait_exit recv 10
	rc_recv=$status
	unsubscribe "${SUBSCRIBERS:-0}"
	if [ -n "${STALL:-}" ]; then
		kill -TERM "$PID_px" 2>/dev/null || true
		wait_exit px 10 || true
	fi
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }' >"$d/wall_s"

	if [ -S "$d/B" ]; then
		vmsg=$(timeout 60 mig-guest verify --ctl "$d/B" 2>&1) || vrc=$?
	else
		vrc=69 vmsg="no migrated guest at $d/B"
	fi
	log "$name: verify: ${vmsg//$'\n'/ } (status $vrc)"
	guest_stop "$d/B"
	kill -TERM "$PID_guest" 2>/dev/null || true
	wait_exit guest 10 || true

	record_migration "$name" "$d" "$rc_send" "$rc_recv" "$vrc" "$vmsg" "$*"
	if [ "$rc_send" -ne 0 ] || [ "$rc_recv" -ne 0 ] || [ "$vrc" -ne 0 ]; then
		log "$name: mig-send $rc_send, mig-recv $rc_recv, verify $vrc; logs:"
		tail -n 20 "$d"/*.log >&2 || true
		return 1
	fi
}

# subscribe NAME N: N clients on each of migration NAME's buses that
# negotiate and never read (tests/helpers/subscribers.py --hold), started
# as subs-send and subs-recv; unsubscribe N ends them.
subscribe() {
	local side
	[ "$2" -gt 0 ] || return 0
	for side in send recv; do
		start "subs-$side" python3 "$here/../tests/helpers/subscribers.py" \
			"$MIG_RUNTIME_DIR/$1.$side.sock" "$2" --hold
	done
}
unsubscribe() {
	[ "$1" -gt 0 ] || return 0
	kill -TERM "$PID_subs_send" "$PID_subs_recv" 2>/dev/null || true
	wait_exit subs-send 10 || true
	wait_exit subs-recv 10 || true
}

# record_migration NAME DIR RC_SEND RC_RECV RC_VERIFY VERIFY_MSG SEND_ARGS:
# final figures from the --summary lines, the rest from the last bus answer.
record_migration() {
	local name=$1 d=$2 s=$2/send.log r=$2/recv.log j=$2/recv.json
	local mbps p50 p99
	[ -s "$j" ] || echo '{}' >"$j"
	mbps=$(summary_field "$s" ',' ' MB/s')
	p50=$(summary_field "$r" 'latency p50')
	p99=$(summary_field "$r" 'p99')
	jq -n --arg scenario "$name" --arg args "$7" --arg ram "$RAM" \
		--argjson rc_send "$3" --argjson rc_recv "$4" --argjson rc_verify "$5" \
		--arg verify "$6" \
		--argjson total_s "$(summary_field "$s" '[a-z-]+ in')" \
		--argjson wall_s "$(cat "$d/wall_s" 2>/dev/null || echo null)" \
		--argjson downtime_ms "$(summary_field "$s" 'downtime')" \
		--argjson mb_per_s "$mbps" \
		--argjson mb_ratio_tcp "$(ratio "$mbps" "$(awk -v b="$REF_tcp_bytes_per_s" 'BEGIN { print b / 1e6 }')")" \
		--argjson mb_ratio_copy "$(ratio "$mbps" "$(awk -v b="$REF_uffd_copy_first_bytes_per_s" 'BEGIN { print b / 1e6 }')")" \
		--argjson requests "$(summary_field "$s" ',' ' page requests')" \
		--argjson twice "$(summary_field "$r" ',' ' pages twice')" \
		--argjson lat_p50_us "$p50" --argjson lat_p99_us "$p99" \
		--argjson p50_ratio_rtt4k "$(ratio "$p50" "$REF_rtt4k_p50_us")" \
		--argjson p99_ratio_rtt4k "$(ratio "$p99" "$REF_rtt4k_p50_us")" \
		--argjson blocked_ms "$(summary_field "$r" 'vCPUs blocked')" \
		--slurpfile q "$j" \
		--arg send_summary "$(summary_line "$s")" --arg recv_summary "$(summary_line "$r")" \
		'{scenario: $scenario, send_args: $args, ram: $ram,
		  rc_send: $rc_send, rc_recv: $rc_recv,
		  verify: (if $rc_verify == 0 then "pass" else "FAIL" end),
		  verify_msg: $verify,
		  total_s: $total_s, wall_s: $wall_s, downtime_ms: $downtime_ms,
		  mb_per_s: $mb_per_s, mb_ratio_tcp: $mb_ratio_tcp,
		  mb_ratio_copy: $mb_ratio_copy,
		  requests: $requests, pages_twice: $twice,
		  lat_p50_us: $lat_p50_us, lat_p99_us: $lat_p99_us,
		  p50_ratio_rtt4k: $p50_ratio_rtt4k, p99_ratio_rtt4k: $p99_ratio_rtt4k,
		  blocked_ms: $blocked_ms,
		  last_recv_query: ($q[0] | {status, "total-time", "x-postcopy-latency",
		                           "postcopy-blocktime",
		                           requests: .ram."postcopy-requests"}),
		  send_summary: $send_summary, recv_summary: $recv_summary}' \
		>"$R/$name.json"
	echo "$name" >>"$R/order"
}

# median_runs NAME N SEND-ARGS...: migrate_postcopy NAME-1 .. NAME-N, then a
# row NAME of their medians, which the goals take: one draw of a p99 here
# swings several times over from one run to the next (the machine's
# scheduling, see design.md), and so do one run's rate and requests.
median_runs() {
	local name=$1 n=$2 i
	shift 2
	for i in $(seq "$n"); do
		migrate_postcopy "$name-$i" "$@"
	done
	jq -s --arg s "$name" "$JQ_LIB"'
		def m($runs; $k): $runs | map(.[$k] | numbers) | med;
		. as $runs |
		{scenario: $s, send_args: .[0].send_args, ram: .[0].ram, runs: length,
		 verify: (if all(.[]; .verify == "pass") then "pass" else "FAIL" end)} +
		(["total_s", "wall_s", "downtime_ms", "mb_per_s", "mb_ratio_tcp",
		  "mb_ratio_copy", "requests", "pages_twice", "lat_p50_us", "lat_p99_us",
		  "p50_ratio_rtt4k", "p99_ratio_rtt4k", "blocked_ms"] |
		 map({key: ., value: m($runs; .)}) | from_entries)' \
		"$R/$name"-[0-9]*.json >"$R/$name.json"
	echo "$name" >>"$R/order"
}

scenario_postcopy_preempt() { median_runs postcopy-preempt 3 --postcopy; }
scenario_postcopy_nopreempt() { migrate_postcopy postcopy-nopreempt --postcopy --no-preempt; }

# random_*: the vCPU writes random pages as fast as it can, so on the
# destination it faults on random missing pages while the pump fills the
# link: what the preempt channel is for. Three runs with it (their medians
# are the goal's), one without.
scenario_random_preempt() {
	WORKLOAD=dirty:pattern=random median_runs random-preempt 3 --postcopy
}
scenario_random_nopreempt() {
	WORKLOAD=dirty:pattern=random migrate_postcopy random-nopreempt --postcopy --no-preempt
}

# notify_*: what a dead webhook endpoint costs the migration and mig-send's
# exit (the tests only show that it fails neither): postcopy-preempt again,
# mig-send notifying an endpoint that refuses every connection, or one that
# accepts and never answers (tests/helpers/webhook.py --mode hang).
scenario_notify_refused() {
	migrate_postcopy notify-refused --postcopy --notify "http://127.0.0.1:$(free_port)/send"
}
scenario_notify_hang() {
	local port d=$T/notify-hang
	local LOGS=$d
	mkdir -p "$d"
	port=$(free_port)
	start hook python3 "$here/../tests/helpers/webhook.py" "$port" "$d/hook.jsonl" --mode hang
	migrate_postcopy notify-hang --postcopy --notify "http://127.0.0.1:$port/send"
	kill -TERM "$PID_hook"
	wait_exit hook 10 || true
}

# slow_subscriber: what clients that subscribe and never read cost the
# migration: postcopy_preempt's, alone and with SLOW_SUBSCRIBERS on each
# bus, in SLOW_PAIRS pairs taken alternately so that the machine's drift
# falls on both; the medians, their ratio and the engines' peak RSS. Both
# start deferred: the clients' two Python processes, started during the
# migration, took it 7-48% longer on this 2-core machine. (The bus's
# limits on what it queues for them: tests/bats/local-access.bats.)
scenario_slow_subscriber() {
	local i n row
	for i in $(seq "$SLOW_PAIRS"); do
		for n in 0 "$SLOW_SUBSCRIBERS"; do
			row=slow-sub-$n-$i
			DEFER=1 SUBSCRIBERS=$n PEAK_RSS=1 migrate_postcopy "$row" --postcopy
			jq --argjson n "$n" --argjson ps "$(tail -n 1 "$T/$row/send.peak_kb")" \
				--argjson pr "$(tail -n 1 "$T/$row/recv.peak_kb")" \
				'. + {subscribers: $n, peak_rss_send_kb: $ps, peak_rss_recv_kb: $pr}' \
				"$R/$row.json" >"$T/row.json"
			mv "$T/row.json" "$R/$row.json"
		done
	done
	# verify: reached only if every one passed (migrate_postcopy fails)
	jq -s --arg ram "$RAM" --argjson n "$SLOW_SUBSCRIBERS" "$JQ_LIB"'
		def of($with; $k): map(select((.subscribers > 0) == $with) | .[$k]);
		{scenario: "slow-subscriber", ram: $ram, subscribers: $n, pairs: (length / 2),
		 total_s_alone: of(false; "total_s"), total_s_with: of(true; "total_s"),
		 total_s_alone_median: (of(false; "total_s") | med),
		 total_s_with_median: (of(true; "total_s") | med),
		 peak_rss_send_kb_alone: (of(false; "peak_rss_send_kb") | med),
		 peak_rss_send_kb_with: (of(true; "peak_rss_send_kb") | med),
		 peak_rss_recv_kb_alone: (of(false; "peak_rss_recv_kb") | med),
		 peak_rss_recv_kb_with: (of(true; "peak_rss_recv_kb") | med), verify: "pass"} |
		.with_ratio_alone = (if .total_s_alone_median > 0 and .total_s_with_median then
			(.total_s_with_median / .total_s_alone_median * 1000 | round) / 1000 else null end)' \
		"$R"/slow-sub-*.json >"$R/slow-subscriber.json"
	echo slow-subscriber >>"$R/order"
}

# tls: what TLS 1.3 (a pre-shared key; x509 differs only in its handshake)
# costs a postcopy migration, against the same in clear, alternately, and
# how much of one core's AEAD sealing rate (tlsref) the pump keeps.
scenario_tls() {
	local i key=$T/tls.psk
	log "references: AEAD sealing rate (tlsref)"
	"$MIG_BENCH_DIR/tlsref" >"$T/tlsref.out"
	printf 'mig:%s\n' "$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')" >"$key"
	for i in $(seq "$TLS_PAIRS"); do
		migrate_postcopy "tls-clear-$i" --postcopy
		TLS_PSK=$key migrate_postcopy "tls-psk-$i" --postcopy --tls-psk "$key"
	done
	jq -s --arg ram "$RAM" --argjson tcp "$REF_tcp_bytes_per_s" \
		--argjson aes256 "$(sed -n 's/^aes256gcm_bytes_per_s=//p' "$T/tlsref.out")" \
		--argjson aes128 "$(sed -n 's/^aes128gcm_bytes_per_s=//p' "$T/tlsref.out")" "$JQ_LIB"'
		def of($tls; $k): map(select((.scenario | startswith("tls-psk")) == $tls) | .[$k]);
		{scenario: "tls", ram: $ram, pairs: (length / 2),
		 aes256gcm_mb_per_s: ($aes256 / 1e6 | round), aes128gcm_mb_per_s: ($aes128 / 1e6 | round),
		 total_s_clear: of(false; "total_s"), total_s_tls: of(true; "total_s"),
		 total_s_clear_median: (of(false; "total_s") | med),
		 total_s_tls_median: (of(true; "total_s") | med),
		 mb_per_s_clear_median: (of(false; "mb_per_s") | med),
		 mb_per_s_tls_median: (of(true; "mb_per_s") | med),
		 lat_p99_us_clear_median: (of(false; "lat_p99_us") | med),
		 lat_p99_us_tls_median: (of(true; "lat_p99_us") | med), verify: "pass"} |
		.tls_ratio_clear = (.total_s_tls_median / .total_s_clear_median | r3) |
		.tls_ratio_aes256 = (.mb_per_s_tls_median * 1e6 / $aes256 | r3) |
		.clear_ratio_tcp = (.mb_per_s_clear_median * 1e6 / $tcp | r3)' \
		"$R"/tls-clear-*.json "$R"/tls-psk-*.json >"$R/tls.json"
	echo tls >>"$R/order"
}

# channels: the background pump on one stream and on two (main and one
# bulk channel), alternately, postcopy from the start; medians and ratios.
scenario_channels() {
	local i
	for i in $(seq "$CHANNEL_PAIRS"); do
		migrate_postcopy "channels-1-$i" --postcopy --channels 1
		migrate_postcopy "channels-2-$i" --postcopy --channels 2
	done
	jq -s --arg ram "$RAM" --argjson tcp "$REF_tcp_bytes_per_s" \
		--argjson copy "$REF_uffd_copy_first_bytes_per_s" "$JQ_LIB"'
		def of($n; $k): map(select(.scenario | startswith("channels-\($n)-")) | .[$k]);
		{scenario: "channels", ram: $ram, pairs: (length / 2),
		 total_s_1: of(1; "total_s"), total_s_2: of(2; "total_s"),
		 total_s_1_median: (of(1; "total_s") | med),
		 total_s_2_median: (of(2; "total_s") | med),
		 mb_per_s_1_median: (of(1; "mb_per_s") | med),
		 mb_per_s_2_median: (of(2; "mb_per_s") | med),
		 lat_p99_us_1_median: (of(1; "lat_p99_us") | med),
		 lat_p99_us_2_median: (of(2; "lat_p99_us") | med), verify: "pass"} |
		.ratio_2_to_1 = (.total_s_2_median / .total_s_1_median | r3) |
		.best_ratio_limit = (([.mb_per_s_1_median, .mb_per_s_2_median] | max) * 1e6 /
			([$tcp, $copy] | min) | r3)' \
		"$R"/channels-1-*.json "$R"/channels-2-*.json >"$R/channels.json"
	echo channels >>"$R/order"
}

# floor: what mig costs over the kernel's own parts. An idle 1 GiB guest
# all data (no vCPU to share the machine with) on one stream and on two,
# alternately, against placeref's bare streams with as many (ref_place).
scenario_floor() {
	local i
	for i in 1 2; do
		RAM=1G WORKLOAD=idle:data=100 migrate_postcopy "floor-1-$i" --postcopy --channels 1
		RAM=1G WORKLOAD=idle:data=100 migrate_postcopy "floor-2-$i" --postcopy --channels 2
	done
	jq -s --argjson p1 "$REF_place_1s_bytes_per_s" --argjson p2 "$REF_place_2s_bytes_per_s" "$JQ_LIB"'
		def of($n): map(select(.scenario | startswith("floor-\($n)-")) | .mb_per_s);
		{scenario: "floor", mb_per_s_1: of(1), mb_per_s_2: of(2),
		 mb_per_s_1_median: (of(1) | med), mb_per_s_2_median: (of(2) | med),
		 verify: "pass"} |
		.ratio_place_1 = (.mb_per_s_1_median * 1e6 / $p1 | r3) |
		.ratio_place_2 = (.mb_per_s_2_median * 1e6 / $p2 | r3)' \
		"$R"/floor-1-*.json "$R"/floor-2-*.json >"$R/floor.json"
	echo floor >>"$R/order"
}

# stall: a bulk stream that stalls 0.2 s after every 200 kB (the tests'
# proxy, as a link that loses a segment now and then waits out TCP's
# retransmission timeout), under a 256 MiB guest writing every page: the
# vCPU's pages held up there are asked for again on the preempt channel.
scenario_stall() {
	local i
	for i in 1 2; do
		RAM=256M STALL=3:200000:0.2 migrate_postcopy "stall-$i" --postcopy --channels 2
	done
}

# sparse: what zero pages cost. A 4 GiB idle guest with data in 10% of its
# pages (idle:data=10: 410 MiB) against a 410 MiB guest all data
# (idle:data=100), postcopy, alternately, SPARSE_PAIRS pairs: the goal is
# at most 1.2x.
scenario_sparse() {
	local i
	for i in $(seq "$SPARSE_PAIRS"); do
		RAM=410M WORKLOAD=idle:data=100 migrate_postcopy "dense-410m-$i" --postcopy
		RAM=4G WORKLOAD=idle:data=10 migrate_postcopy "sparse-4g-$i" --postcopy
	done
	jq -s "$JQ_LIB"'
		def of($p): map(select(.scenario | startswith($p)) | .total_s);
		{scenario: "sparse", dense_total_s: of("dense"), sparse_total_s: of("sparse"),
		 dense_median_s: (of("dense") | med), sparse_median_s: (of("sparse") | med),
		 verify: "pass"} |
		.sparse_ratio_dense = (.sparse_median_s / .dense_median_s | r3)' \
		"$R"/dense-410m-*.json "$R"/sparse-4g-*.json >"$R/sparse.json"
	echo sparse >>"$R/order"
}

# qemu: QEMU itself, on this machine in this run, migrating its guest with
# postcopy (and the preempt channel) from the first moment, against mig's
# postcopy_preempt migration of a guest of the same size: QEMU_PAIRS pairs
# at 1 GiB taken alternately so the machine's drift falls on both, then
# QEMU_PAIRS_4G at 4 GiB, then one at 1 GiB with neither using a preempt
# channel; the medians and mig's / QEMU's. QEMU's guest is
# lib/guest/abguest.S, a boot sector dirtying every page as mig-guest's ab
# workload does. Skipped, with the reason in its row, where QEMU or KVM is
# not to be had.
scenario_qemu() {
	local img=$GUEST_IMG why i
	why=$(qemu_skip_reason "$img")
	if [ -n "$why" ]; then
		log "qemu: skipped: $why"
		jq -n --arg why "$why" '{scenario: "qemu", skipped: $why}' >"$R/qemu.json"
		echo qemu >>"$R/order"
		return 0
	fi
	for i in $(seq "$QEMU_PAIRS"); do
		qemu_migrate "qemu-1g-$i" 1G "$img" 1
		RAM=1G migrate_postcopy "qemu-mig-1g-$i" --postcopy
	done
	for i in $(seq "$QEMU_PAIRS_4G"); do
		qemu_migrate "qemu-4g-$i" 4G "$img" 1
		RAM=4G migrate_postcopy "qemu-mig-4g-$i" --postcopy
	done
	qemu_migrate qemu-1g-nopreempt-1 1G "$img" 0
	RAM=1G migrate_postcopy qemu-mig-1g-nopreempt-1 --postcopy --no-preempt
	# verify: reached only if every one passed (both kinds fail)
	jq -s "$JQ_LIB"'
		def preempt: if .scenario | startswith("qemu-mig-")
			then .send_args | test("--no-preempt") | not else .preempt end;
		def of($kind; $ram; $pre; $k): map(select(.ram == $ram and preempt == $pre and
			(.scenario | startswith("qemu-mig-")) == ($kind == "mig")) | .[$k]);
		def size($ram; $pre): {ram: $ram, preempt: $pre,
			qemu_total_s: of("qemu"; $ram; $pre; "total_s"),
			mig_total_s: of("mig"; $ram; $pre; "total_s"),
			qemu_downtime_ms: of("qemu"; $ram; $pre; "downtime_ms"),
			mig_downtime_ms: of("mig"; $ram; $pre; "downtime_ms"),
			qemu_blocktime_ms: of("qemu"; $ram; $pre; "blocktime_ms"),
			mig_blocked_ms: of("mig"; $ram; $pre; "blocked_ms"),
			qemu_mb_per_s: of("qemu"; $ram; $pre; "mb_per_s"),
			mig_mb_per_s: of("mig"; $ram; $pre; "mb_per_s"),
			qemu_wall_s: of("qemu"; $ram; $pre; "wall_s"),
			mig_wall_s: of("mig"; $ram; $pre; "wall_s"),
			qemu_requests: of("qemu"; $ram; $pre; "requests"),
			mig_requests: of("mig"; $ram; $pre; "requests")} |
			.qemu_total_s_median = (.qemu_total_s | med) |
			.mig_total_s_median = (.mig_total_s | med) |
			.mig_ratio_qemu = (if .qemu_total_s_median > 0 and .mig_total_s_median then
				(.mig_total_s_median / .qemu_total_s_median | r3) else null end);
		{scenario: "qemu", qemu: .[0].qemu,
		 sizes: [size("1G"; true), size("4G"; true), size("1G"; false)], verify: "pass"}' \
		"$R"/qemu-*.json >"$R/qemu.json"
	echo qemu >>"$R/order"
}

# migrate_precopy NAME RAM RATE: a dirty guest writing RATE of random pages
# a second, migrated with the default policy (precopy; stop-and-copy if the
# rest fits 300 ms, else postcopy once passes stop converging). The engines
# linger so the final query-migrate (passes, bytes) can be read.
migrate_precopy() {
	local name=$1 ram=$2 rate=$3 d=$T/$1 port src q hist rc_send rc_recv vrc=0 vmsg
	local LOGS=$d
	mkdir -p "$d"
	port=$(free_port)
	src=$MIG_RUNTIME_DIR/$name.send.sock
	log "$name: $ram dirty guest at $rate/s, precopy (default policy)"
	start guest mig-guest --ctl "$d/A" --ram "$ram" \
		--workload "dirty:rate=$rate,pattern=uniform" --vcpus 1
	# a slow writer cannot fill its RAM in the populate window: it then
	# migrates partly written, as such a guest would
	guest_populate "$d/A" || log "$name: migrating a partly written guest"
	start recv mig-recv --name "$name" --listen "tcp:127.0.0.1:$port" \
		--guest-ctl "$d/B" --summary --linger 60
	start send mig-send --name "$name" --guest "$d/A" \
		--to "tcp:127.0.0.1:$port" --summary --linger 60
	state "$src" completed,failed,cancelled "$MIGRATION_TIMEOUT_S" 2>/dev/null || true
	q=$(mig-status --bus "$src" --json 2>/dev/null || echo '{}')
	hist=$(history "$src" || true)
	kill -TERM "$PID_send" "$PID_recv" 2>/dev/null || true
	wait_exit send 10
	rc_send=$status
	wait_exit recv 10
	rc_recv=$status
	vmsg=$(timeout 60 mig-guest verify --ctl "$d/B" 2>&1) || vrc=$?
	log "$name: verify: ${vmsg//$'\n'/ } (status $vrc)"
	guest_stop "$d/B"
	kill -TERM "$PID_guest" 2>/dev/null || true
	wait_exit guest 10 || true
	jq -n --arg scenario "$name" --arg ram "$ram" --arg rate "$rate" \
		--arg states "$hist" --argjson q "$q" --argjson rc_send "$rc_send" \
		--arg verify "$([ "$vrc" -eq 0 ] && echo pass || echo FAIL)" \
		--arg send_summary "$(summary_line "$d/send.log")" \
		'{scenario: $scenario, precopy: true, ram: $ram, dirty_rate: $rate,
		  rc_send: $rc_send, verify: $verify, states: $states,
		  postcopy: ($states | test("postcopy")),
		  total_s: (($q."total-time" // 0) / 1000),
		  downtime_ms: (if $q."x-downtime-us" then ($q."x-downtime-us" / 100 | round / 10) else null end),
		  passes: $q.ram."dirty-sync-count",
		  discarded: $q.ram."x-discarded",
		  bytes_per_ram_byte: (if $q.ram.total then
			(($q.ram.transferred / $q.ram.total) * 1000 | round / 1000) else null end),
		  send_summary: $send_summary}' >"$R/$name.json"
	echo "$name" >>"$R/order"
	[ "$rc_send" -eq 0 ] && [ "$vrc" -eq 0 ]
}

scenario_precopy_1g_10m() { migrate_precopy precopy-1g-10m 1G 10M; }
scenario_precopy_1g_100m() { migrate_precopy precopy-1g-100m 1G 100M; }
scenario_precopy_1g_400m() { migrate_precopy precopy-1g-400m 1G 400M; }
scenario_precopy_4g_100m() { migrate_precopy precopy-4g-100m 4G 100M; }

# median FILE: the median of the numbers in FILE, one a line.
median() {
	sort -n "$1" | awk '{ v[NR] = $1 } END {
		if (NR == 0) print "null";
		else if (NR % 2) print v[(NR + 1) / 2];
		else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# recovery: how long a recovery takes, through the bus as a manager drives
# it: from the source's `migrate` with resume (the destination armed by
# migrate-recover already) to its postcopy-active event: connect main and
# preempt, the destination's received bitmap, the resume handshake. A
# RAM-sized ab guest migrates with postcopy over loopback TCP, the pump held
# to RECOVERY_BANDWIDTH so it outlasts RECOVERIES pause / recover cycles;
# then the limit is lifted, the migration completes and is verified.
scenario_recovery() {
	local name=recovery d=$T/recovery dport src_bus dst_bus i rc
	local rc_send rc_recv vrc=0 vmsg ms=$T/recovery/ms
	local LOGS=$d
	mkdir -p "$d"
	: >"$ms"
	dport=$(free_port)
	src_bus=$MIG_RUNTIME_DIR/$name.send.sock
	dst_bus=$MIG_RUNTIME_DIR/$name.recv.sock
	log "$name: $RAM ab guest, postcopy at $RECOVERY_BANDWIDTH/s, $RECOVERIES recoveries"

	start guest mig-guest --ctl "$d/A" --ram "$RAM" --workload ab --vcpus 1
	guest_populate "$d/A"
	start recv mig-recv --name "$name" --listen "tcp:127.0.0.1:$dport" \
		--guest-ctl "$d/B" --summary
	start send mig-send --name "$name" --guest "$d/A" --to "tcp:127.0.0.1:$dport" \
		--postcopy --max-bandwidth "$RECOVERY_BANDWIDTH" --summary
	state "$src_bus" postcopy-active 20

	for i in $(seq "$RECOVERIES"); do
		sleep 0.3 # let it run between pauses
		mig-pause --bus "$src_bus" --timeout 5
		state "$src_bus" postcopy-paused 10
		state "$dst_bus" postcopy-paused 10
		rc=0
		mig-recover --bus "$dst_bus" --listen "tcp:127.0.0.1:$dport" --timeout 0.2 \
			2>>"$d/recover-listen.log" || rc=$?
		if [ "$rc" -ne 75 ]; then
			log "$name: mig-recover --listen on the destination: status $rc, expected 75"
			return 1
		fi
		# timed through the bus, as a manager drives it: from the
		# migrate resume command to the postcopy-active event
		rc=0
		python3 "$here/../tests/helpers/qmp.py" "$src_bus" --time postcopy-active \
			migrate "{\"uri\": \"tcp:127.0.0.1:$dport\", \"resume\": true}" \
			>"$d/recover-ms" || rc=$?
		if [ "$rc" -ne 0 ]; then
			log "$name: recovery $i: migrate resume: status $rc ($(cat "$d/recover-ms")); logs:"
			tail -n 20 "$d"/*.log >&2 || true
			return 1
		fi
		cat "$d/recover-ms" >>"$ms"
		log "$name: recovery $i: $(tail -n1 "$ms") ms"
	done

	# the rest at full speed
	set_bandwidth "$src_bus" 0
	wait_exit send "$MIGRATION_TIMEOUT_S"
	rc_send=$status
	wait_exit recv 10
	rc_recv=$status
	if [ -S "$d/B" ]; then
		vmsg=$(timeout 60 mig-guest verify --ctl "$d/B" 2>&1) || vrc=$?
	else
		vrc=69 vmsg="no migrated guest at $d/B"
	fi
	log "$name: verify: ${vmsg//$'\n'/ } (status $vrc)"
	guest_stop "$d/B"
	kill -TERM "$PID_guest" 2>/dev/null || true
	wait_exit guest 10 || true

	local med rtt_ms
	med=$(median "$ms")
	rtt_ms=$(awk -v u="$REF_rtt16_p50_us" 'BEGIN { print u / 1000 }')
	jq -n --arg scenario "$name" --arg ram "$RAM" --arg bw "$RECOVERY_BANDWIDTH" \
		--argjson rc_send "$rc_send" --argjson rc_recv "$rc_recv" \
		--argjson rc_verify "$vrc" --arg verify "$vmsg" \
		--argjson ms "$(jq -s . "$ms")" --argjson median "$med" \
		--argjson rtt16_p50_us "$REF_rtt16_p50_us" \
		--argjson ratio "$(ratio "$med" "$rtt_ms")" \
		--arg send_summary "$(summary_line "$d/send.log")" \
		'{scenario: $scenario, ram: $ram, max_bandwidth: $bw,
		  rc_send: $rc_send, rc_recv: $rc_recv,
		  verify: (if $rc_verify == 0 then "pass" else "FAIL" end),
		  verify_msg: $verify,
		  recoveries: ($ms | length), recover_ms: $ms,
		  recover_median_ms: $median, recover_min_ms: ($ms | min),
		  recover_max_ms: ($ms | max), rtt16_p50_us: $rtt16_p50_us,
		  median_ratio_rtt16: $ratio, send_summary: $send_summary}' \
		>"$R/$name.json"
	echo "$name" >>"$R/order"
	if [ "$rc_send" -ne 0 ] || [ "$rc_recv" -ne 0 ] || [ "$vrc" -ne 0 ]; then
		log "$name: mig-send $rc_send, mig-recv $rc_recv, verify $vrc; logs:"
		tail -n 20 "$d"/*.log >&2 || true
		return 1
	fi
}

# restart_one SIDE I: kill -9 the SIDE engine, restart it with its restart
# command line and time from that command to postcopy-active again on the
# source (a dead destination also needs the source's mig-recover --to, as
# cron or a manager runs it: counted in).
restart_one() {
	local side=$1 i=$2 d=$T/restart name=restart t0 t1
	local src_bus=$MIG_RUNTIME_DIR/$name.send.sock dst_bus=$MIG_RUNTIME_DIR/$name.recv.sock
	kill9 "$side"
	if [ "$side" = recv ]; then
		state "$src_bus" postcopy-paused 10
		t0=$(date +%s%N)
		start recv mig-recv --name "$name" --attach "$d/B" --summary
		mig-recover --bus "$src_bus" --to "tcp:127.0.0.1:$RESTART_PORT" --timeout 20 >/dev/null
	else
		state "$dst_bus" postcopy-paused 10
		mig-recover --bus "$dst_bus" --listen "tcp:127.0.0.1:$RESTART_PORT" --timeout 0.1 \
			2>/dev/null || true
		t0=$(date +%s%N)
		start send mig-send --name "$name" --guest "$d/A" --resume \
			--max-bandwidth "$RECOVERY_BANDWIDTH" --summary
		state "$src_bus" postcopy-active 20
	fi
	t1=$(date +%s%N)
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f\n", (b - a) / 1e6 }' >>"$d/$side.ms"
	log "$name: restart $i of mig-$side: $(tail -n1 "$d/$side.ms") ms to postcopy-active"
}

scenario_restart() {
	local name=restart d=$T/restart i rc_send rc_recv vrc=0 vmsg
	# shellcheck disable=SC2034 # start reads it, here and in restart_one
	local LOGS=$d
	mkdir -p "$d"
	: >"$d/send.ms"
	: >"$d/recv.ms"
	RESTART_PORT=$(free_port)
	log "$name: $RAM ab guest, postcopy at $RECOVERY_BANDWIDTH/s, $RESTARTS engine kills and restarts"
	start guest mig-guest --ctl "$d/A" --ram "$RAM" --workload ab --vcpus 1
	guest_populate "$d/A"
	start recv mig-recv --name "$name" --listen "tcp:127.0.0.1:$RESTART_PORT" \
		--guest-ctl "$d/B" --summary
	start send mig-send --name "$name" --guest "$d/A" --to "tcp:127.0.0.1:$RESTART_PORT" \
		--postcopy --max-bandwidth "$RECOVERY_BANDWIDTH" --summary
	state "$MIG_RUNTIME_DIR/$name.send.sock" postcopy-active 20
	for i in $(seq "$RESTARTS"); do
		sleep 0.3
		if [ $((i % 2)) -eq 1 ]; then restart_one recv "$i"; else restart_one send "$i"; fi
	done
	set_bandwidth "$MIG_RUNTIME_DIR/$name.send.sock" 0
	wait_exit send "$MIGRATION_TIMEOUT_S"
	rc_send=$status
	wait_exit recv 10
	rc_recv=$status
	vmsg=$(timeout 60 mig-guest verify --ctl "$d/B" 2>&1) || vrc=$?
	log "$name: verify: ${vmsg//$'\n'/ } (status $vrc)"
	guest_stop "$d/B"
	local rtt_ms med_s med_r
	med_s=$(median "$d/send.ms")
	med_r=$(median "$d/recv.ms")
	rtt_ms=$(awk -v u="$REF_rtt16_p50_us" 'BEGIN { print u / 1000 }')
	jq -n --arg scenario "$name" --arg ram "$RAM" \
		--argjson rc_send "$rc_send" --argjson rc_recv "$rc_recv" \
		--argjson rc_verify "$vrc" --arg verify "$vmsg" \
		--argjson send_ms "$(jq -s . "$d/send.ms")" --argjson recv_ms "$(jq -s . "$d/recv.ms")" \
		--argjson send_median "$med_s" --argjson recv_median "$med_r" \
		--argjson rtt16_p50_us "$REF_rtt16_p50_us" \
		--argjson send_ratio "$(ratio "$med_s" "$rtt_ms")" \
		--argjson recv_ratio "$(ratio "$med_r" "$rtt_ms")" \
		'{scenario: $scenario, ram: $ram, rc_send: $rc_send, rc_recv: $rc_recv,
		  verify: (if $rc_verify == 0 then "pass" else "FAIL" end), verify_msg: $verify,
		  restart_send_ms: $send_ms, restart_recv_ms: $recv_ms,
		  restart_send_median_ms: $send_median, restart_recv_median_ms: $recv_median,
		  rtt16_p50_us: $rtt16_p50_us, send_ratio_rtt16: $send_ratio,
		  recv_ratio_rtt16: $recv_ratio}' >"$R/$name.json"
	echo "$name" >>"$R/order"
	[ "$rc_send" -eq 0 ] && [ "$rc_recv" -eq 0 ] && [ "$vrc" -eq 0 ]
}

# --- report ------------------------------------------------------------------

# goals: issue 13's goals in one table, each figure against its reference
# measured in this run, from the scenarios that ran (the others show -).
# Indented rows set a goal against placeref, the kernel's receive-and-place
# path alone: its rate (a reference, not a bound: mig with a blocked vCPU
# has beaten it), and the CPU its receivers take for the guest against all
# the CPU the machine has in the goal's time: what is left of 1 is all the
# source's sends, the vCPU and every engine's bookkeeping could have.
goals() {
	local f all=$T/all.json
	for f in $(sed "s|.*|$R/&.json|" "$R/order" 2>/dev/null); do cat "$f"; done |
		jq -rs --argjson tcp "$REF_tcp_bytes_per_s" \
			--argjson copy "$REF_uffd_copy_first_bytes_per_s" \
			--argjson rtt4k "$REF_rtt4k_p50_us" \
			--argjson place2 "$REF_place_2s_bytes_per_s" \
			--argjson place_cpu "$REF_place_1s_recv_cpu_s" --argjson ncpu "$(nproc)" \
"$JQ_LIB"'
		def by($n): map(select(.scenario == $n)) | .[0] // {};
		def qemu_size($ram): (by("qemu").sizes // []) |
			map(select(.ram == $ram and .preempt)) | .[0] // {};
		def qemu($ram): qemu_size($ram).mig_ratio_qemu;
		# the CPU of placeref receivers on one stream (their least per GiB)
		# for $gib GiB / all CPUs for 0.4 of the QEMU time
		def cpu_need($ram; $gib): qemu_size($ram).qemu_total_s_median as $q |
			if $q then $place_cpu * $gib / ($ncpu * 0.4 * $q) | r3 else null end;
		(by("postcopy-preempt")) as $p | (by("channels")) as $c | (by("kvm")) as $k |
		[["bulk rate / min(TCP, UFFDIO_COPY)",
		  ([$p.mb_per_s, $c.mb_per_s_1_median, $c.mb_per_s_2_median] | map(select(. != null)) |
		   if length > 0 then max * 1e6 / ([$tcp, $copy] | min) else null end | r3), ">= 0.8"],
		 ["  placeref 2 streams / min(TCP, COPY)", ($place2 / ([$tcp, $copy] | min) | r3),
		  "no vCPU: reference"],
		 ["idle guest, 1 stream / placeref 1 stream", by("floor").ratio_place_1, "reported"],
		 ["idle guest, 2 streams / placeref 2 streams", by("floor").ratio_place_2, "reported"],
		 ["1 GiB total time, mig / QEMU", qemu("1G"), "<= 0.4"],
		 ["4 GiB total time, mig / QEMU", qemu("4G"), "<= 0.4"],
		 ["  placeref CPU, 1 GiB / CPU in 0.4x QEMU", cpu_need("1G"; 1), "its share of the goal"],
		 ["  placeref CPU, 4 GiB / CPU in 0.4x QEMU", cpu_need("4G"; 4), "its share of the goal"],
		 ["pages twice / RAM pages (1 GiB)", (if $p.pages_twice == null then null
		   else $p.pages_twice / 262144 | . * 10000 | round / 10000 end), "<= 0.01"],
		 ["4 GiB 10% data / 410 MiB all data", by("sparse").sparse_ratio_dense, "<= 1.2"],
		 ["fault p99 / idle 4 KiB round trip (ab)", $p.p99_ratio_rtt4k, "<= 10"],
		 ["request p99 / idle 4 KiB RTT (random)", by("random-preempt").p99_ratio_rtt4k, "<= 10"],
		 ["recovery, resume to postcopy-active (ms)", by("recovery").recover_median_ms, "<= 3"],
		 ["--channels 2 / 1, total time", $c.ratio_2_to_1, "(scaling)"],
		 ["1 GiB KVM guest total time, mig / QEMU", $k.total_ratio_qemu, "reported"],
		 ["1 GiB KVM guest downtime, mig / QEMU", $k.downtime_ratio_qemu, "reported"],
		 ["1 GiB KVM guest vCPU blocked, mig / QEMU", $k.blocked_ratio_qemu, "reported"]] |
		.[] | [.[0], (.[1] // "-" | tostring), .[2]] | @tsv' >"$all"
	printf '\nGoals (figures from this run, each against its reference in this run):\n'
	awk -F'\t' '{ printf "  %-42s %8s   %s%s\n", $1, $2, $3 ~ /^[<>]/ ? "goal " : "", $3 }' "$all"
}

# section KEY FILTER: jq -r FILTER on each row in order whose JSON has KEY.
section() {
	local name
	while read -r name; do
		jq -e --arg k "$1" 'has($k)' "$R/$name.json" >/dev/null || continue
		jq -r "$2" "$R/$name.json"
	done <"$R/order"
}

report() {
	local ts run git f name
	ts=$(date -u +%Y-%m-%dT%H:%M:%SZ)
	run=$(date +%s)-$$
	git=$(git -C "$here/.." describe --always --dirty 2>/dev/null || echo unknown)

	printf '\nReferences (loopback, this run): TCP one stream %.0f MB/s; ' \
		"$(awk -v b="$REF_tcp_bytes_per_s" 'BEGIN { print b / 1e6 }')"
	printf 'round trip 16 B p50/p99 %s/%s us, 4 KiB p50/p99 %s/%s us;\n' \
		"$REF_rtt16_p50_us" "$REF_rtt16_p99_us" "$REF_rtt4k_p50_us" "$REF_rtt4k_p99_us"
	printf 'UFFDIO_COPY 64 KiB runs into a new memfd: first pass %s MB/s, reused pages %s MB/s\n' \
		"$(awk -v b="$REF_uffd_copy_first_bytes_per_s" 'BEGIN { printf "%.0f", b / 1e6 }')" \
		"$(awk -v b="$REF_uffd_copy_reused_bytes_per_s" 'BEGIN { printf "%.0f", b / 1e6 }')"
	printf 'Received and placed, no vCPU (placeref): 1 stream %s MB/s, 2 streams %s MB/s; receivers CPU %s / %s s per GiB\n\n' \
		"$(awk -v b="$REF_place_1s_bytes_per_s" 'BEGIN { printf "%.0f", b / 1e6 }')" \
		"$(awk -v b="$REF_place_2s_bytes_per_s" 'BEGIN { printf "%.0f", b / 1e6 }')" \
		"$REF_place_1s_recv_cpu_s" "$REF_place_2s_recv_cpu_s"
	printf 'Migrations: %s guest (ab, or dirty:pattern=random for random-*), 1 vCPU, postcopy over loopback TCP\n' "$RAM"
	printf '%-19s %7s %9s %5s %5s %6s %8s %6s %6s %6s %7s %7s %9s %6s\n' \
		scenario total_s down_ms MB/s xTCP xCOPY requests twice p50_us p99_us p50xRTT p99xRTT blocked_ms verify
	while read -r name; do
		f=$R/$name.json
		jq -e 'has("recover_ms") or has("precopy") or has("restart_send_ms") or
			has("with_ratio_alone") or has("tls_ratio_clear") or
			has("sparse_ratio_dense") or has("ratio_2_to_1") or has("ratio_place_1") or
			(.scenario | startswith("qemu")) or (.scenario | startswith("kvm"))' \
			"$f" >/dev/null && continue
		jq -r '[.scenario, .total_s, .downtime_ms, .mb_per_s, .mb_ratio_tcp,
			.mb_ratio_copy, .requests, .pages_twice, .lat_p50_us, .lat_p99_us,
			.p50_ratio_rtt4k, .p99_ratio_rtt4k, .blocked_ms, .verify] | map(. // "-") | @tsv' "$f" |
			awk -F'\t' '{ printf "%-19s %7s %9s %5s %5s %6s %8s %6s %6s %6s %7s %7s %9s %6s\n",
				$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14 }'
	done <"$R/order"
	echo
	echo "xTCP, xCOPY: throughput / loopback TCP, / UFFDIO_COPY first pass;"
	echo "twice: pages that reached the destination a second time (refused there, never placed twice);"
	echo "pNNxRTT: page-request latency / idle 4 KiB round-trip p50;"
	echo "a scenario whose runs are numbered (NAME-1, NAME-2, ...) is followed by NAME, their medians"
	if grep -q '^notify-' "$R/order"; then
		printf '\nDead webhook endpoints (mig-send --notify), against no webhook: total_s / mig-send start to exit (s)\n'
		for name in postcopy-preempt notify-refused notify-hang; do
			f=$R/$name.json
			[ -s "$f" ] || continue
			jq -r '"  \(.scenario): \(.total_s // "-") / \(.wall_s // "-")"' "$f"
		done
	fi
	section recover_ms '"\nRecovery (\(.ram) ab guest, postcopy at \(.max_bandwidth)/s, loopback TCP):",
			"migrate resume (QMP) until its postcopy-active event, \(.recoveries) times: median \(.recover_median_ms) ms, min \(.recover_min_ms) ms, max \(.recover_max_ms) ms",
			"  (\(.recover_ms | map(tostring) | join(" ")) ms)",
			"  median / idle 16 B round-trip p50 (\(.rtt16_p50_us) us): \(.median_ratio_rtt16 // "-")x; migration verify: \(.verify)"'

	section restart_send_ms '"\nEngine restarts (\(.ram) ab guest, postcopy, kill -9 then the restart command until postcopy-active):",
			"  mig-recv --attach (+ the source'"'"'s mig-recover --to): median \(.restart_recv_median_ms) ms (\(.restart_recv_ms | map(tostring) | join(" "))), \(.recv_ratio_rtt16 // "-")x the idle 16 B round trip",
			"  mig-send --resume: median \(.restart_send_median_ms) ms (\(.restart_send_ms | map(tostring) | join(" "))), \(.send_ratio_rtt16 // "-")x; verify: \(.verify)"'

	section with_ratio_alone 'def mib: if . then (. / 1024 | round | tostring) + " MiB" else "-" end;
			"\nSubscribers that never read (\(.subscribers) on each bus; postcopy-preempt'"'"'s migration, \(.pairs) pairs, alternately):",
			"  total_s median \(.total_s_with_median) with, \(.total_s_alone_median) alone: \(.with_ratio_alone // "-")x",
			"  (with: \(.total_s_with | map(tostring) | join(" ")); alone: \(.total_s_alone | map(tostring) | join(" ")))",
			"  peak RSS, median with / alone: mig-send \(.peak_rss_send_kb_with | mib) / \(.peak_rss_send_kb_alone | mib), mig-recv \(.peak_rss_recv_kb_with | mib) / \(.peak_rss_recv_kb_alone | mib); verify: \(.verify)"'

	section tls_ratio_clear '"\nTLS 1.3 with a pre-shared key against clear text (postcopy-preempt'"'"'s migration, \(.pairs) pairs, alternately):",
			"  total_s median \(.total_s_tls_median) with TLS, \(.total_s_clear_median) clear: \(.tls_ratio_clear)x",
			"  (TLS: \(.total_s_tls | map(tostring) | join(" ")); clear: \(.total_s_clear | map(tostring) | join(" ")))",
			"  MB/s median \(.mb_per_s_tls_median) with TLS = \(.tls_ratio_aes256)x one core sealing AES-256-GCM (\(.aes256gcm_mb_per_s) MB/s; AES-128-GCM \(.aes128gcm_mb_per_s)); clear \(.mb_per_s_clear_median) = \(.clear_ratio_tcp)x TCP",
			"  page-request p99 median: \(.lat_p99_us_tls_median) us with TLS, \(.lat_p99_us_clear_median) us clear; verify: \(.verify)"'

	section ratio_2_to_1 '"\nBackground streams (--channels; postcopy, \(.pairs) pairs, alternately):",
			"  total_s median \(.total_s_2_median) with 2, \(.total_s_1_median) with 1: \(.ratio_2_to_1)x",
			"  (2: \(.total_s_2 | map(tostring) | join(" ")); 1: \(.total_s_1 | map(tostring) | join(" ")))",
			"  MB/s median \(.mb_per_s_2_median) with 2, \(.mb_per_s_1_median) with 1; the better / min(TCP, UFFDIO_COPY): \(.best_ratio_limit)x (goal: at least 0.8x)",
			"  page-request p99 median: \(.lat_p99_us_2_median) us with 2, \(.lat_p99_us_1_median) us with 1; verify: \(.verify)"'

	section ratio_place_1 '"\nAn idle 1 GiB guest all data, no vCPU (postcopy, alternately), against placeref:",
			"  MB/s median \(.mb_per_s_1_median) with 1 stream: \(.ratio_place_1)x placeref; \(.mb_per_s_2_median) with 2: \(.ratio_place_2)x",
			"  (1: \(.mb_per_s_1 | map(tostring) | join(" ")); 2: \(.mb_per_s_2 | map(tostring) | join(" ")))"'

	section sparse_ratio_dense '"\nZero pages: a 4 GiB idle guest with data in 10% of its pages against 410 MiB all data (postcopy, alternately):",
			"  total_s median \(.sparse_median_s) sparse, \(.dense_median_s) dense: \(.sparse_ratio_dense)x (goal: at most 1.2x)",
			"  (sparse: \(.sparse_total_s | map(tostring) | join(" ")); dense: \(.dense_total_s | map(tostring) | join(" ")))"'

	while read -r name; do
		[ "$name" = qemu ] || continue
		jq -r 'def l: map(tostring) | join(" ");
			if .skipped then "\nQEMU: skipped: \(.skipped)" else
			"\nQEMU against mig, postcopy from the start, 1 vCPU, loopback TCP (\(.qemu // "QEMU"), KVM, abguest):",
			(.sizes[] | select(.qemu_total_s | length > 0) |
			"  \(.ram) \(if .preempt then "preempt" else "no preempt" end): total_s median QEMU \(.qemu_total_s_median), mig \(.mig_total_s_median): mig/QEMU \(.mig_ratio_qemu // "-")x",
			"    total_s QEMU \(.qemu_total_s | l); mig \(.mig_total_s | l)",
			"    downtime_ms QEMU \(.qemu_downtime_ms | l); mig \(.mig_downtime_ms | l)",
			"    vCPU blocked ms QEMU (postcopy-blocktime) \(.qemu_blocktime_ms | l); mig \(.mig_blocked_ms | l)",
			"    MB/s QEMU \(.qemu_mb_per_s | l); mig \(.mig_mb_per_s | l)",
			"    page requests QEMU \(.qemu_requests | l); mig \(.mig_requests | l)"),
			"  (the guests differ in how fast their vCPU dirties: blocked time and requests are each its own)",
			"  verify: \(.verify) (QEMU: the destination guest completes a pass after completion)" end' \
			"$R/$name.json"
	done <"$R/order"

	kvm_report

	if grep -q '^precopy' "$R/order"; then
		printf '\nPrecopy, dirty guests (1 vCPU, random pages), default policy, loopback TCP:\n'
		printf '%-17s %5s %10s %7s %9s %6s %9s %12s %8s %6s\n' scenario ram dirty_rate total_s down_ms passes postcopy bytes/RAM discarded verify
		grep '^precopy' "$R/order" | while read -r name; do
			jq -r '[.scenario, .ram, .dirty_rate, .total_s, .downtime_ms, .passes,
				.postcopy, .bytes_per_ram_byte, .discarded, .verify] | map(. // "-") | @tsv' \
				"$R/$name.json" |
				awk -F'\t' '{ printf "%-17s %5s %10s %7s %9s %6s %9s %12s %8s %6s\n",
					$1, $2, $3, $4, $5, $6, $7, $8, $9, $10 }'
		done
	fi

	goals

	for f in "$R/tcpref.json" "$R/uffdref.json" "$R/placeref.json" $(sed "s|.*|$R/&.json|" "$R/order" 2>/dev/null); do
		jq -c --arg ts "$ts" --arg run "$run" --arg git "$git" \
			--arg host "$(hostname)" --argjson ncpu "$(nproc)" \
			'{ts: $ts, run: $run, git: $git, host: $host, ncpu: $ncpu} + .' "$f"
	done >>"$RESULTS"
	echo "appended to $RESULTS"
}

main() {
	local s rows rc failed=()
	for s in "$@"; do
		declare -F "scenario_$s" >/dev/null || { log "no scenario '$s' (have: ${SCENARIOS[*]})"; exit 64; }
	done
	[ $# -gt 0 ] && SCENARIOS=("$@")
	mkdir -p "$MIG_BENCH_DIR"
	: >"$R/order"
	ref_tcp
	ref_uffd
	ref_place
	for s in "${SCENARIOS[@]}"; do
		# in a subshell, so one failed scenario still leaves a table; in
		# the background, so a signal to us is handled at once (cleanup
		# ends it); errexit on inside, which an `if` would turn off
		rows=$(wc -l <"$R/order")
		(set -e; "scenario_$s") &
		SCENARIO_PID=$!
		rc=0
		wait "$SCENARIO_PID" || rc=$?
		SCENARIO_PID=
		if [ "$rc" -ne 0 ]; then
			failed+=("$s")
			if [ "$(wc -l <"$R/order")" -eq "$rows" ]; then
				jq -n --arg s "$s" '{scenario: $s, verify: "not run (failed)"}' >"$R/$s.json"
				echo "$s" >>"$R/order"
			fi
		fi
		stop_all # whatever a failed scenario left must not load the next
	done
	report
	if [ ${#failed[@]} -gt 0 ]; then
		log "failed: ${failed[*]}"
		exit 1
	fi
}

main "$@"
