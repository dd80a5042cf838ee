#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# The small tools read replies from an engine they did not start: numbers
# out of any sane range, terminal escape sequences and invalid UTF-8 from
# a scripted fake bus (tests/helpers/fakebus.py) are shown as "?" or
# refused, never computed with (run with MIG_BIN=build/san/bin, UBSan
# would abort on a float-to-integer or signed overflow) nor printed raw.
# And the real bus answers hostile requests with valid UTF-8 only.

load ../helpers/common

setup() {
	mig_setup
	H=$BATS_TEST_DIRNAME/../helpers
}
teardown() { mig_teardown; }

# fake NAME STATE JSON: a fake bus at $T/NAME.sock answering as JSON says
# (fakebus.py's SCRIPT), in STATE for everything else.
fake() {
	printf '%s\n' "$3" >"$T/$1.json"
	start "$1" python3 "$H/fakebus.py" "$T/$1.sock" "$2" script "$T/$1.json"
}

# tool OUT STATUS CMD...: run CMD (stdout and stderr into $T/OUT), expect
# STATUS, and no sanitizer report.
tool() {
	local out=$1 want=$2 rc=0
	shift 2
	timeout 60 "$@" </dev/null >"$T/$out" 2>&1 3>&- || rc=$?
	if [ "$rc" -ne "$want" ] || grep -q -E 'runtime error|Sanitizer' "$T/$out"; then
		echo "# expected status $want, got $rc: $*" >&2
		sed 's/^/# /' "$T/$out" >&2
		return 1
	fi
}

# clean FILE...: what a person would see is valid UTF-8 without control
# characters (but newlines) and without absurd numbers.
clean() {
	python3 - "$@" <<'EOF'
import re, sys
for f in sys.argv[1:]:
    t = open(f, 'rb').read().decode('utf-8', errors='strict')
    bad = [c for c in t if (ord(c) < 0x20 and c != '\n') or 0x7f <= ord(c) < 0xa0]
    assert not bad, f'{f}: control characters {bad!r} in {t!r}'
    assert not re.search(r'\d{17}', t), f'{f}: an absurd number in {t!r}'
    assert not re.search(r'(?<![\w-])-\d', t), f'{f}: a negative figure in {t!r}'
EOF
}

# has FILE TEXT: FILE holds the line TEXT (spaces squeezed).
has() {
	tr -s ' ' <"$T/$1" | grep -qxF -- "$2" || {
		echo "# no line '$2' in $1:" >&2
		sed 's/^/#   /' "$T/$1" >&2
		return 1
	}
}

HOSTILE_INFO='{"status": "postcopy-active", "total-time": 9.3e18,
  "setup-time": -5, "x-state-time": 1e308, "x-downtime-us": 1e308,
  "postcopy-blocktime": -1e308,
  "ram": {"total": 1e300, "remaining": -5, "transferred": -5,
    "page-size": -1, "mbps": 1e308, "pages-per-second": -1,
    "dirty-sync-count": 1e300, "dirty-pages-rate": 1e308,
    "postcopy-requests": -3},
  "x-postcopy-latency": {"count": 9.3e18, "p50-us": 1e308,
    "p99-us": -1e308, "max-us": 1e308}}'

@test "mig-status: numbers out of range are shown as ?" {
	fake h postcopy-active "{\"query-migrate\": {\"return\": $HOSTILE_INFO}}"
	tool out 0 mig-status --bus "$T/h.sock"
	clean "$T/out"
	has out "state: postcopy-active"
	has out "elapsed: ? (setup ?)"
	has out "state time: ?"
	has out "pages: ?"
	has out "bytes: ?"
	has out "throughput: ? Mbps, ? pages/s"
	has out "precopy: ? passes, dirty rate ? pages/s"
	has out "requests: ? pages"
	has out "fault latency: ?"
	has out "blocktime: ?"
	has out "downtime: ?"
}

@test "mig-status: sizes that cannot be, each alone" {
	# page-size 0, pages beyond the total, a fraction, a string
	fake h postcopy-active '{"query-migrate": [
	  {"return": {"status": "active", "ram": {"total": 8192, "remaining": 0,
	    "transferred": 4096, "page-size": 0}}},
	  {"return": {"status": "active", "ram": {"total": 8192, "remaining": 9e15,
	    "transferred": 1.5, "page-size": 4096}}},
	  {"return": {"status": "active", "ram": {"total": "8192", "remaining": 0},
	    "total-time": "1", "x-postcopy-latency": {"count": 3, "p50-us": 7,
	    "p99-us": 1e300, "max-us": 9}}}]}'
	tool out1 0 mig-status --bus "$T/h.sock"
	tool out2 0 mig-status --bus "$T/h.sock"
	tool out3 0 mig-status --bus "$T/h.sock"
	clean "$T/out1" "$T/out2" "$T/out3"
	has out1 "pages: ?"
	has out1 "bytes: 8.0 KiB of 8.0 KiB (100.0%), 4.0 KiB transferred"
	has out2 "pages: ?"
	has out2 "bytes: ?"
	has out3 "bytes: ?"
	has out3 "elapsed: ?"
	has out3 "fault latency: p50 7 us, p99 ?, max 9 us (3 faults)"
}

@test "mig-status --watch: timestamps and passes out of range, and the progress line" {
	local evs='[{"event": "MIGRATION", "data": {"status": "active"},
	    "timestamp": {"seconds": 1e300, "microseconds": -1}},
	  {"event": "MIGRATION_PASS", "data": {"pass": 1e300},
	    "timestamp": {"seconds": 9.2e15, "microseconds": 1e300}},
	  {"event": "MIGRATION", "data": {"status": "completed"},
	    "timestamp": {"seconds": -9.2e18, "microseconds": 5}}]'
	fake w completed "{\"x-query-events\": {\"return\": $evs}}"
	tool out 0 mig-status --bus "$T/w.sock" --watch
	clean "$T/out"
	has out "? - active"
	has out "? - pass ?"
	has out "? - completed"
	# on a terminal: a progress line from a hostile reply, then the end
	local comp='{"event": "MIGRATION", "data": {"status": "completed"},
	    "timestamp": {"seconds": 2, "microseconds": 0}}'
	fake p active "{\"query-migrate\": [{\"return\": {\"status\": \"active\"}},
	  {\"return\": $HOSTILE_INFO},
	  {\"return\": {\"status\": \"active\", \"ram\": {\"total\": 1e9,
	    \"remaining\": 5e8, \"mbps\": 1e300, \"transferred\": 1}}},
	  {\"return\": {\"status\": \"active\", \"ram\": {\"total\": 1e9,
	    \"remaining\": 4e8, \"mbps\": 1e300, \"transferred\": 1}},
	    \"_then\": [$comp]}]}"
	tool tty 0 script -q -e -c "mig-status --bus $T/p.sock --watch" /dev/null
	grep -q completed "$T/tty"
}

@test "mig-status list: hostile sizes and states of several buses" {
	fake a active '{"query-migrate": {"return": {"status": "active\u001b[2J",
	  "ram": {"total": 1e300, "remaining": -1e300}}}}'
	fake b active '{"query-migrate": {"return": {"status": "active",
	  "ram": {"total": 100, "remaining": 200}}}}'
	ln -s "$T/a.sock" "$MIG_RUNTIME_DIR/a.send.sock"
	ln -s "$T/b.sock" "$MIG_RUNTIME_DIR/b.recv.sock"
	tool out 0 mig-status
	clean "$T/out"
	has out "a source active?[2J -"
	has out "b destination active -"
	tool json 0 mig-status --json
	[ "$(jq -r '.[0].percent // "none"' "$T/json")" = none ]
}

ESC_DESC='"\u001b[2J\u001b]0;pwned\u0007 \u009b31m bad\u007f\nnext"'

@test "escape sequences in a bus's text never reach the terminal" {
	fake pa postcopy-active "{\"migrate-pause\": {\"error\": {\"class\": \"GenericError\", \"desc\": $ESC_DESC}}}"
	tool pause 1 mig-pause --bus "$T/pa.sock"
	clean "$T/pause"
	has pause "mig-pause: ?[2J?]0;pwned? ?31m bad??next"
	fake re postcopy-paused "{\"migrate-recover\": {\"error\": {\"class\": \"GenericError\", \"desc\": $ESC_DESC}}}"
	tool recover 1 mig-recover --bus "$T/re.sock" --listen "unix:$T/r.sock"
	clean "$T/recover"
	has recover "mig-recover: ?[2J?]0;pwned? ?31m bad??next"
	fake st active "{\"query-migrate\": {\"error\": {\"class\": \"GenericError\", \"desc\": $ESC_DESC}}}"
	tool status 1 mig-status --bus "$T/st.sock"
	clean "$T/status"
	has status "mig-status: query-migrate: ?[2J?]0;pwned? ?31m bad??next"
	fake v active "{\"query-migrate\": {\"return\": {\"status\": \"act\u001b[1mive\",
	  \"x-side\": \"src\u009b\", \"x-name\": \"n\u001b]2;t\u0007\",
	  \"error-desc\": $ESC_DESC}}}"
	tool view 0 mig-status --bus "$T/v.sock"
	clean "$T/view"
	has view "side: src?"
	has view "name: n?]2;t?"
	has view "state: act?[1mive"
	has view "last error: ?[2J?]0;pwned? ?31m bad??next"
	# --watch: the side and the state of the progress line
	fake wa active '{"query-migrate": [{"return": {"x-side": "\u001b[31msource"}},
	  {"return": {"status": "completed\u001b[5m"}, "_then": [{"event": "MIGRATION",
	    "data": {"status": "completed"}, "timestamp": {"seconds": 1, "microseconds": 0}}]}]}'
	tool watch 0 script -q -e -c "mig-status --bus $T/wa.sock --watch" /dev/null
	tr -d '\r' <"$T/watch" | sed 's/\x1b\[K//g' >"$T/watch.shown"
	clean "$T/watch.shown"
	grep -q '?\[31msource completed?\[5m' "$T/watch.shown"
	grep -q '?\[31msource completed$' "$T/watch.shown"
}

@test "invalid UTF-8 from a bus: refused, or cut text repaired, never printed raw" {
	# a reply that is not UTF-8 is no reply: the bus breaks the protocol
	fake pa postcopy-active '{"migrate-pause": "{\"error\": {\"class\": \"GenericError\", \"desc\": \"bad \u00ff\u00fe\"}, \"id\": %ID%}"}'
	tool pause 1 mig-pause --bus "$T/pa.sock"
	clean "$T/pause"
	has pause "mig-pause: bus: Protocol error"
	fake st active '{"query-migrate": "{\"return\": {\"status\": \"active\", \"x-name\": \"\u00c3\"}, \"id\": %ID%}"}'
	tool status 1 mig-status --bus "$T/st.sock"
	clean "$T/status"
	# a long desc the client cuts to its buffer, inside a character
	local long
	long=$(python3 -c 'print("\"" + "\u00e9" * 200 + "\"")')
	fake re postcopy-paused "{\"migrate-recover\": {\"error\": {\"class\": \"GenericError\", \"desc\": $long}}}"
	tool recover 1 mig-recover --bus "$T/re.sock" --listen "unix:$T/r.sock"
	clean "$T/recover"
	grep -q 'é?$' "$T/recover"
}

@test "the real bus: invalid UTF-8 and long multibyte text get valid UTF-8 replies" {
	require_uffd
	start recv mig-recv --name u --defer --guest-ctl "$T/dst.ctl"
	python3 - "$(bus_of u recv)" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
buf = b""
def reply():
    global buf
    while b"\n" not in buf:
        d = s.recv(65536)
        assert d, "the bus hung up"
        buf += d
    line, buf = buf.split(b"\n", 1)
    return json.loads(line.decode("utf-8", errors="strict"))
def ask(raw):
    s.sendall(raw)
    return reply()
reply()  # the greeting
assert "return" in ask(b'{"execute": "qmp_capabilities"}')
r = ask(b'{"execute": "query-\xff\xfe", "id": 1}')
assert r["error"]["desc"] == "JSON parse error", r
r = ask(b'{"execute": "query-status", "id": "\xc3"}')
assert r["error"]["desc"] == "JSON parse error", r
r = ask(b'{"execute": "query-status", "id": "\\udc80"}')
assert r["error"]["desc"] == "JSON parse error", r
# cut by the bus inside a character: "The command %.200s has not been found"
name = "x" + "\u00e9" * 150
r = ask(json.dumps({"execute": name, "id": "\u00e9"}, ensure_ascii=False).encode())
assert r["error"]["class"] == "CommandNotFound", r
assert r["error"]["desc"].startswith("The command x" + "\u00e9" * 99 + "\ufffd has"), r
assert r["id"] == "\u00e9", r
uri = "unix:" + "\u00e9" * 147 + "a"
assert len(uri.encode()) == 300
r = ask(json.dumps({"execute": "migrate-recover", "arguments": {"uri": uri}},
                  ensure_ascii=False).encode())
assert r["error"]["desc"].startswith("Invalid migration address 'unix:" + "\u00e9" * 57 + "\ufffd'"), r
# still serving
assert ask(b'{"execute": "query-migrate"}')["return"]["status"], "no status"
EOF
}
