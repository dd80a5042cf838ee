#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# What local users and misbehaving local clients can do to the engines'
# status bus and the guest's control socket: another uid is refused even
# where a mode was loosened; connections that never negotiate, or never
# read, neither lock the tools out nor grow the engine; fds sent where none
# are expected are closed; running out of fds does not spin; a runtime
# directory someone else made for us is refused.

load ../helpers/common
bats_require_minimum_version 1.5.0 # run --separate-stderr

BATS_TEST_TIMEOUT=${BATS_TEST_TIMEOUT:-180}

setup() {
	mig_setup
	clients_script >"$T/clients.py"
	chmod 644 "$T/clients.py"
}
teardown() {
	[ -z "${SQUAT:-}" ] || rm -rf "$SQUAT"
	mig_teardown
}

SRC_BUS() { bus_of m send; }

# clients_script: the misbehaving clients, as `start NAME python3
# $T/clients.py MODE PATH N`: ready (--ready-fd) once MODE's setup is done.
#   idle   N bus connections that never send; exits 0 once the bus cut all
#   stuck  N that negotiate, ask for the schema 60 times, never read;
#          ready once the bus has read every request (SIOCOUTQ 0)
#   fds    N guest connections, each a message (empty, a header, garbage,
#          too long) with 8 fds; exits when done, every socket closed
#   hold   N guest connections held open
clients_script() {
	cat <<'EOF'
import array, fcntl, os, selectors, socket, struct, sys, time

mode, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
ready_fd = int(sys.argv[5]) if len(sys.argv) > 5 else -1

def ready():
    if ready_fd >= 0:
        os.write(ready_fd, b"\n")
        os.close(ready_fd)

def idle():
    sel = selectors.DefaultSelector()
    for _ in range(n):
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    ready()
    cut, end = 0, time.monotonic() + 30
    while cut < n and time.monotonic() < end:
        for key, _ in sel.select(1):
            try:
                data = key.fileobj.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                sel.unregister(key.fileobj)
                key.fileobj.close()
                cut += 1
    print("cut %d of %d" % (cut, n))
    sys.exit(0 if cut == n else 1)

def outq(s):
    return struct.unpack("i", fcntl.ioctl(s, 0x5411, b"\0" * 4))[0]  # SIOCOUTQ

def stuck():
    req = b'{"execute":"qmp_capabilities"}\n' + \
          b'{"execute":"query-qmp-schema"}\n' * 60
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        s.setblocking(False)
        try:
            s.sendall(req)
        except (BlockingIOError, BrokenPipeError, ConnectionResetError):
            pass
        socks.append(s)
    end = time.monotonic() + 60
    while any(outq(s) for s in socks) and time.monotonic() < end:
        time.sleep(0.05)
    ready()
    while True:
        time.sleep(3600)

def fds():
    hdr = struct.pack("<IHHIiI", 0x4347494d, 2, 1, 7, 0, 0)  # INFO
    msgs = [b"", hdr, b"garbage", hdr + b"x" * 600]
    held = []
    for i in range(n):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        s.connect(path)
        fl = [os.open("/dev/null", os.O_RDONLY) for _ in range(8)]
        try:
            s.sendmsg([msgs[i % 4]], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                       array.array("i", fl))])
        except OSError:
            pass
        for f in fl:
            os.close(f)
        held.append(s)
        if len(held) > 16:
            held.pop(0).close()
    for s in held:
        s.close()
    ready()

def hold():
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        s.connect(path)
        socks.append(s)
    ready()
    while True:
        time.sleep(3600)

{"idle": idle, "stuck": stuck, "fds": fds, "hold": hold}[mode]()
EOF
}

# as_nobody_ok: skip unless nobody can run the programs here.
as_nobody_ok() {
	[ "$(id -u)" -eq 0 ] || skip "needs root to run as another user"
	[ -x /usr/bin/python3 ] || skip "no /usr/bin/python3 for nobody"
	setpriv --reuid=65534 --regid=65534 --clear-groups test -x "$MIG_BIN/mig-status" ||
		skip "nobody cannot run the programs in $MIG_BIN (a directory above is closed)"
}
AS_NOBODY=(setpriv --reuid=65534 --regid=65534 --clear-groups)

# bus_greets_nobody BUS: what a connection as nobody was sent, in bytes:
# 0 if the bus hung up at once (without the fix, the greeting, then a
# 5 s wait for the end that never comes).
bus_greets_nobody() {
	"${AS_NOBODY[@]}" /usr/bin/python3 - "$1" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
s.connect(sys.argv[1])
got = b""
try:
    while True:
        d = s.recv(4096)
        if not d:
            break
        got += d
except socket.timeout:
    pass
print(len(got))
EOF
}

fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 | wc -l; }
fds_are() { [ "$(fd_count "$1")" -eq "$2" ]; }
rss_anon_kb() { awk '/^RssAnon:/ { print $2 }' "/proc/$1/status"; }

@test "another uid is refused on the bus and on the guest socket, their modes loosened" {
	as_nobody_ok
	require_uffd
	guest g 16M
	start recv mig-recv --name s --listen "unix:$T/s.sock" --guest-ctl "$T/s.ctl"
	local bus; bus=$(bus_of s recv)
	# what a careless chmod or a shared directory would leave
	chmod 0755 "$T"
	chmod 0777 "$MIG_RUNTIME_DIR" "$bus" "$T/g.ctl"
	run bus_greets_nobody "$bus"
	assert_eq "bytes the bus sent to nobody" "$output" 0
	wait_log recv "refusing a client of uid 65534"
	run timeout 20 "${AS_NOBODY[@]}" "$MIG_BIN/mig-status" --bus "$bus" 3>&-
	[ "$status" -ne 0 ] || { echo "# mig-status as nobody: $output" >&2; false; }
	run timeout 20 "${AS_NOBODY[@]}" "$MIG_BIN/mig-guest" info --ctl "$T/g.ctl" 3>&-
	[ "$status" -ne 0 ] || { echo "# mig-guest info as nobody: $output" >&2; false; }
	wait_log g "refusing a client of uid 65534"
	# our own uid still gets in
	expect 0 mig-status --bus "$bus" --json
	expect 0 mig-guest info --ctl "$T/g.ctl"
}

@test "300 connections that never negotiate are cut, and mig-status and mig-pause work meanwhile" {
	require_uffd
	# idle: no faults hurry the pages, the pump's 4 MB/s keeps it going
	guest src 128M --workload idle
	start recv mig-recv --name m --listen "unix:$T/d.sock" --guest-ctl "$T/dst.ctl" --linger 30
	start send mig-send --postcopy --name m --guest "$T/src.ctl" --to "unix:$T/d.sock" \
		--max-bandwidth 4M --linger 30
	state "$(SRC_BUS)" postcopy-active
	start idle python3 "$T/clients.py" idle "$(SRC_BUS)" 300
	expect 0 mig-status --bus "$(SRC_BUS)" --json
	expect 0 mig-pause --bus "$(SRC_BUS)"
	state "$(SRC_BUS)" postcopy-paused
	wait_exit idle 40
	[ "$status" -eq 0 ] || { cat "$T/idle.log" >&2; false; }
	log_says send "sent no qmp_capabilities within"
}

@test "clients that never read during a whole migration: the engine stays under 32 MiB more, the migration completes" {
	require_uffd
	# In a SANITIZE=1 build, AddressSanitizer's quarantine would keep the
	# dropped clients' output (up to 256 MiB): the sanitizer's, not ours.
	export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=0:thread_local_quarantine_size_kb=0
	# idle: nothing faults, the pump's 1 MB/s keeps it under way until
	# the limit is lifted
	guest src 128M --workload idle
	start recv mig-recv --name m --listen "unix:$T/d.sock" --guest-ctl "$T/dst.ctl"
	start send mig-send --postcopy --name m --guest "$T/src.ctl" --to "unix:$T/d.sock" \
		--max-bandwidth 1M
	state "$(SRC_BUS)" postcopy-active
	local before after
	before=$(rss_anon_kb "$PID_send")
	# 150 clients asking for 900 kB of replies each: within a client's
	# bound, not within the total; 100 MB beyond what the kernel takes
	start stuck python3 "$T/clients.py" stuck "$(SRC_BUS)" 150
	after=$(rss_anon_kb "$PID_send")
	echo "# mig-send RssAnon: $before kB before, $after kB with the clients" >&3
	[ "$((after - before))" -lt 32768 ] ||
		{ echo "# mig-send grew by $((after - before)) kB" >&2; false; }
	log_says send "disconnecting"
	state "$(SRC_BUS)" postcopy-active 1 # still under way: it was during
	set_bandwidth "$(SRC_BUS)" 0
	finish_and_verify
}

hwm_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

# cycled_migration R N CYCLES: migration R, a 128M idle guest with
# postcopy, its pump held to 1 MB/s (it cannot complete meanwhile) through
# CYCLES pause/recover cycles (cycles.py): each emits four events on the
# source's bus, three on the destination's. With N > 0, N subscribers that
# never read (subscribers.py) on each bus from postcopy-active on; their
# verdicts in $T/subs-R-send.log and $T/subs-R-recv.log. Then at full
# speed to the end, verified. The engines linger so that their peak RSS
# can be read once both have completed: HWM_send and HWM_recv, in kB.
cycled_migration() {
	local r=$1 n=$2 cycles=$3 side
	local sbus; sbus=$(bus_of "$r" send)
	local dbus; dbus=$(bus_of "$r" recv)
	guest "src-$r" 128M --workload idle
	# -q: the cycles would log thousands of warnings about broken links
	start "recv-$r" mig-recv -q --name "$r" --listen "unix:$T/d-$r.sock" \
		--guest-ctl "$T/dst-$r.ctl" --linger 60
	start "send-$r" mig-send -q --postcopy --name "$r" --guest "$T/src-$r.ctl" \
		--to "unix:$T/d-$r.sock" --max-bandwidth 1M --linger 60
	state "$sbus" postcopy-active
	if [ "$n" -gt 0 ]; then
		start "subs-$r-send" python3 "$BATS_TEST_DIRNAME/../helpers/subscribers.py" "$sbus" "$n"
		start "subs-$r-recv" python3 "$BATS_TEST_DIRNAME/../helpers/subscribers.py" "$dbus" "$n"
	fi
	run timeout 150 python3 "$BATS_TEST_DIRNAME/../helpers/cycles.py" \
		--src "$sbus" --dst "$dbus" --listen "unix:$T/d-$r.sock" --to "unix:$T/d-$r.sock" \
		--cycles "$cycles" --timeout 20 --deadline 140 3>&-
	[ "$status" -eq 0 ] || { echo "# cycles.py ($r): $output" >&2; return 1; }
	echo "# $r: $cycles cycles in $(jq .seconds <<<"$output") s" >&3
	set_bandwidth "$sbus" 0
	state "$sbus" completed 60
	state "$dbus" completed 60
	HWM_send=$(hwm_kb "$(pid_of "send-$r")")
	HWM_recv=$(hwm_kb "$(pid_of "recv-$r")")
	if [ "$n" -gt 0 ]; then
		for side in send recv; do
			wait_exit "subs-$r-$side" 60
			[ "$status" -eq 0 ] || { cat "$T/subs-$r-$side.log" >&2; return 1; }
		done
	fi
	kill -TERM "$(pid_of "send-$r")" "$(pid_of "recv-$r")" # end --linger
	for side in send recv; do
		wait_exit "$side-$r" 30
		[ "$status" -eq 0 ] || { echo "# mig-$side ($r) exited $status" >&2; return 1; }
	done
	verifies "$T/dst-$r.ctl"
}

# The bus queues at most 8 MiB of output for all its clients together
# (MIG_BUS_TOTAL_OUT_BYTES; 1 MiB each, which 240 clients never reach
# here), then disconnects those furthest behind. What it counts is the
# bytes queued; the buffers holding them grow by doubling, so they may
# take twice that: 16 MiB. 8 MiB more for the rest: what the allocator
# keeps around them (freed buffers are not handed back) and each client's
# 4 KiB input buffer. So an engine with 240 never-reading subscribers may
# peak 24 MiB above the same migration without them. Without the limit it
# would hold at least what its cut subscribers were never sent: checked
# to be more than that.
SUBS_MARGIN_KB=$((24 * 1024))

@test "240 subscribers that never read on each bus, 600 pause/recover cycles: cut with no event missing, the engines within the bus's bound, the migration completes" {
	require_uffd
	# as above: the sanitizer's quarantine would hold the dropped output
	export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=0:thread_local_quarantine_size_kb=0
	local side base_send base_recv peak base cut lost growth=$SUBS_MARGIN_KB
	# AddressSanitizer rounds every buffer up to a size class, adds
	# redzones and caches freed chunks per thread: in a SANITIZE=1 build
	# the same queues took about twice as much (45 and 47 MiB), so three
	# times the margin there
	! ldd "$MIG_BIN/mig-send" | grep -q libasan || growth=$((3 * SUBS_MARGIN_KB))
	# the baseline needs fewer cycles: 500 more move an engine's memory
	# by under 1 MiB (memory.bats), well inside the margin
	cycled_migration a 0 100
	base_send=$HWM_send base_recv=$HWM_recv
	cycled_migration b 240 600
	for side in send recv; do
		base=base_$side peak=HWM_$side
		cut=$(jq .cut "$T/subs-b-$side.log")
		lost=$(jq .undelivered_bytes "$T/subs-b-$side.log")
		echo "# mig-$side: VmHWM ${!base} kB alone, ${!peak} kB with the subscribers;" \
			"$(jq -c 'del(.problems)' "$T/subs-b-$side.log")" >&3
		# the bus's limit was reached, and mattered: cut subscribers,
		# and more never sent to them than the bound allows
		[ "$cut" -gt 0 ] || { echo "# mig-$side: no subscriber cut" >&2; false; }
		[ "$lost" -gt $((SUBS_MARGIN_KB * 1024)) ] ||
			{ echo "# mig-$side: only $lost bytes withheld: the test proves nothing" >&2; false; }
		[ "${!peak}" -le $((${!base} + growth)) ] ||
			{ echo "# mig-$side grew by $((${!peak} - ${!base})) kB" >&2; false; }
	done
}

@test "SCM_RIGHTS where none are expected: the guest keeps no fd, and migrates afterwards" {
	guest src 64M --workload ab
	local n; n=$(fd_count "$PID_src")
	start spam python3 "$T/clients.py" fds "$T/src.ctl" 124
	wait_for 10 "the guest to be back to $n fds" fds_are "$PID_src" "$n" || true
	assert_eq "the guest's fds after 124 connections with 8 fds each" "$(fd_count "$PID_src")" "$n"
	start recv mig-recv --listen "unix:$T/d.sock" --guest-ctl "$T/dst.ctl"
	bg send mig-send --guest "$T/src.ctl" --to "unix:$T/d.sock"
	finish_and_verify
}

@test "out of fds, the guest's accept does not spin: one log line, and it serves again" {
	guest g 16M
	local n; n=$(fd_count "$PID_g")
	# room for two clients, then EMFILE with connections waiting
	prlimit --pid "$PID_g" --nofile=$((n + 2)):$((n + 2))
	start hold python3 "$T/clients.py" hold "$T/g.ctl" 8
	wait_log g "accept: Too many open files"
	kill -TERM "$PID_hold"
	wait "$PID_hold" 2>/dev/null || true
	wait_for 10 "the guest to answer again" mig-guest info --ctl "$T/g.ctl"
	local lines; lines=$(grep -c "accept:" "$T/g.log")
	[ "$lines" -le 2 ] || { echo "# $lines accept lines in g.log" >&2; false; }
	[ "$(stat -c %s "$T/g.log")" -lt 4096 ]
}

# The victim: a uid with nothing of its own here, no $XDG_RUNTIME_DIR, so
# its runtime directory is /tmp/mig-64999.
AS_VICTIM=(env -u MIG_RUNTIME_DIR -u XDG_RUNTIME_DIR setpriv --reuid=64999 --regid=64999 --clear-groups)

# refused DIR STATUS CMD...: CMD exits STATUS having said, in exactly one
# line on stderr and nothing on stdout, that DIR is not ours: what was
# wrong, and no second line from a caller restating it.
refused() {
	local dir=$1 want=$2
	shift 2
	run --separate-stderr timeout 60 "$@" 3>&-
	if [ "$status" -ne "$want" ] || [ -n "$output" ] || [ "${#stderr_lines[@]}" -ne 1 ] ||
		[[ $stderr != *"runtime directory $dir is not ours"* ]]; then
		echo "# expected status $want and one line about $dir, got $status: $*" >&2
		printf '# stdout: %s\n' "${lines[@]}" >&2
		printf '# stderr: %s\n' "${stderr_lines[@]}" >&2
		return 1
	fi
}

@test "a /tmp/mig-UID another user made is refused, by the tools and the engines" {
	as_nobody_ok
	SQUAT=/tmp/mig-64999
	rm -rf "$SQUAT"
	# nobody got there first and planted a bus for the victim's tools
	mkdir -m 0777 "$SQUAT"
	chown 65534:65534 "$SQUAT"
	fakebus planted completed silent
	mv "$T/planted.sock" "$SQUAT/default.send.sock"
	chmod 0777 "$SQUAT/default.send.sock"
	refused "$SQUAT" 69 "${AS_VICTIM[@]}" "$MIG_BIN/mig-status"
	[[ $stderr != *completed* ]] || { echo "# talked to the planted bus: $stderr" >&2; false; }
	chmod 0755 "$T"
	refused "$SQUAT" 1 "${AS_VICTIM[@]}" "$MIG_BIN/mig-recv" --listen "unix:$T/x.sock" \
		--guest-ctl "$T/x.ctl"
	refused "$SQUAT" 1 "${AS_VICTIM[@]}" "$MIG_BIN/mig-send" --guest "$T/x.ctl" \
		--to "unix:$T/x.sock"
	# the victim's own, but open to others: refused as well
	rm -rf "$SQUAT"
	mkdir -m 0755 "$SQUAT"
	chown 64999:64999 "$SQUAT"
	refused "$SQUAT" 69 "${AS_VICTIM[@]}" "$MIG_BIN/mig-status"
	# none there: nothing to refuse
	rm -rf "$SQUAT"
	expect 69 "${AS_VICTIM[@]}" "$MIG_BIN/mig-pause" x
	says "no migration 'x' on this host"
	# an explicit MIG_RUNTIME_DIR owned by another user than us or root
	mkdir -m 0777 "$T/other"
	chown 65534:65534 "$T/other"
	refused "$T/other" 69 env MIG_RUNTIME_DIR="$T/other" setpriv --reuid=64999 --regid=64999 \
		--clear-groups "$MIG_BIN/mig-status"
}
