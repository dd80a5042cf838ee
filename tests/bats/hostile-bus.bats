#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# The small tools read replies from an engine they did not start, and the
# bus echoes a client's bytes: the real bus answers hostile requests with
# valid UTF-8 only.

load ../helpers/common

setup() {
	mig_setup
	H=$BATS_TEST_DIRNAME/../helpers
}
teardown() { mig_teardown; }

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
