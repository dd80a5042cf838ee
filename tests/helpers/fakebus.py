#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# A status bus that plays an engine at its worst moment, for the exit-status
# rows a real engine cannot be made to show (common.bash's fakebus), and an
# engine that answers whatever a script says (hostile-bus.bats):
#   fakebus.py PATH STATE MODE [SCRIPT] --ready-fd N
# MODE gone: it closes as soon as it has accepted a command (migrate-pause,
# migrate-recover, migrate); anything else: it answers and sends nothing
# unasked. It serves one client after another.
#
# SCRIPT, a JSON file, maps a command to its reply: an object ({"return":
# ...} or {"error": ...}; the request's id is added), or a string sent as
# it is, one byte per character (U+0000..U+00FF, so invalid UTF-8 can be
# sent), with %ID% replaced by the id; or a list of those, used in turn,
# the last one again and again. An object reply may carry "_then": a list
# of events (in the same two forms) sent right after it. Commands the
# script does not name get the answers above.
import json, os, socket, sys
args = sys.argv[1:]
ready = args[args.index("--ready-fd") + 1]
args = args[:args.index("--ready-fd")]
path, state, mode = args[:3]
script = json.load(open(args[3])) if len(args) > 3 else {}
used = {}
s = socket.socket(socket.AF_UNIX)
s.bind(path)
s.listen(4)
os.write(int(ready), b"\n")
os.close(int(ready))
ev = {"event": "MIGRATION", "data": {"status": state},
      "timestamp": {"seconds": 1, "microseconds": 0}}


def send(c, o, rid=None):
    if isinstance(o, str):
        c.sendall(o.replace("%ID%", json.dumps(rid)).encode("latin-1") + b"\n")
    else:
        c.sendall(json.dumps(o).encode() + b"\n")


def scripted(cmd):
    r = script[cmd]
    if isinstance(r, list):
        n = used.get(cmd, 0)
        used[cmd] = n + 1
        r = r[min(n, len(r) - 1)]
    return r


def answer(c, req):
    cmd = req.get("execute")
    rid = req.get("id")
    if cmd in script:
        r = scripted(cmd)
        if isinstance(r, str):
            send(c, r, rid)
            return
        r = dict(r)
        then = r.pop("_then", [])
        r["id"] = rid
        send(c, r)
        for e in then:
            send(c, e)
        return
    ret = [ev] if cmd == "x-query-events" else \
        {"status": state} if cmd == "query-migrate" else {}
    send(c, {"return": ret, "id": rid})
    if mode == "gone" and cmd in ("migrate-pause", "migrate-recover", "migrate"):
        c.close()
        sys.exit(0)


def serve(c):
    send(c, {"QMP": {"version": {}, "capabilities": []}})
    # requests are JSON values one after another, not lines
    dec, buf = json.JSONDecoder(), ""
    while True:
        data = c.recv(65536)
        if not data:
            return
        buf += data.decode()
        while buf.strip():
            try:
                req, end = dec.raw_decode(buf.lstrip())
            except ValueError:
                break
            buf = buf.lstrip()[end:]
            answer(c, req)


while True:
    c, _ = s.accept()
    try:
        serve(c)
    except (BrokenPipeError, ConnectionResetError):
        pass
    c.close()
