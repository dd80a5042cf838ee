#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# A status bus that plays an engine at its worst moment, for the exit-status
# rows a real engine cannot be made to show (common.bash's fakebus):
#   fakebus.py PATH STATE MODE --ready-fd N
import json, os, socket, sys
path, state, mode, _, ready = sys.argv[1:6]
s = socket.socket(socket.AF_UNIX)
s.bind(path)
s.listen(4)
os.write(int(ready), b"\n")
os.close(int(ready))
c, _ = s.accept()
def send(o):
    c.sendall(json.dumps(o).encode() + b"\n")
send({"QMP": {"version": {}, "capabilities": []}})
ev = {"event": "MIGRATION", "data": {"status": state},
      "timestamp": {"seconds": 1, "microseconds": 0}}
# requests are JSON values one after another, not lines
dec, buf = json.JSONDecoder(), ""
while True:
    data = c.recv(65536)
    if not data:
        sys.exit(0)
    buf += data.decode()
    while buf.strip():
        try:
            req, end = dec.raw_decode(buf.lstrip())
        except ValueError:
            break
        buf = buf.lstrip()[end:]
        cmd = req.get("execute")
        ret = [ev] if cmd == "x-query-events" else \
            {"status": state} if cmd == "query-migrate" else {}
        send({"return": ret, "id": req.get("id")})
        if mode == "gone" and cmd in ("migrate-pause", "migrate-recover", "migrate"):
            c.close()
            sys.exit(0)
