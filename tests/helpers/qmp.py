#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A plain QMP client, as a manager written for QEMU would drive a bus:
greeting, qmp_capabilities, then commands by QEMU's spellings.

  qmp.py SOCKET CMD [ARGS-JSON]   run one command; print the reply object
                                  ({"return": ...} or {"error": ...}) on
                                  one line; exit 0 on return, 2 on error
  qmp.py SOCKET --greeting        print the greeting, exit 0
  qmp.py SOCKET --wait-status S [TIMEOUT]
                                  wait (events, then query-migrate) until
                                  the migration's status is S; exit 0, or
                                  1 on timeout, 3 if it ended otherwise
  qmp.py SOCKET --time S CMD [ARGS-JSON]
                                  run CMD, then wait for the MIGRATION
                                  event of status S; print the ms from
                                  just before the command was sent to the
                                  event's arrival; exit 0, 2 if CMD failed,
                                  1 on a 30 s timeout, 3 if another final
                                  status came first
  qmp.py SOCKET --serve           one connection for many commands: each
                                  line on stdin, "CMD" or "CMD ARGS-JSON",
                                  is answered by one line "STATUS REPLY",
                                  STATUS as the exit status of a single
                                  command (0, 2, 5); exit 0 at the end of
                                  input

Exit 4 when the bus cannot be reached or breaks the protocol. With
MIG_QAPI_CHECK=1 in the environment the reply is also checked against
the schema the bus serves (qapi_check.py): exit 5, the problems on stderr,
if it does not fit.
Importable: QMP(path).cmd(name, args) returns the reply object.
"""
import json
import os
import socket
import sys
import time

TERMINAL = ("completed", "failed", "cancelled")


class QMPError(Exception):
    pass


class QMP:
    def __init__(self, path, timeout=10.0, negotiate=True):
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.events = []
        self.next_id = 0
        self.greeting = self.read()
        if "QMP" not in self.greeting:
            raise QMPError("no greeting: %r" % self.greeting)
        if negotiate:
            reply = self.cmd("qmp_capabilities")
            if "return" not in reply:
                raise QMPError("qmp_capabilities: %r" % reply)

    def read(self):
        dec = json.JSONDecoder()
        while True:
            text = self.buf.decode("utf-8", "replace").lstrip()
            if text:
                try:
                    obj, end = dec.raw_decode(text)
                    self.buf = text[end:].encode()
                    return obj
                except ValueError:
                    pass
            chunk = self.sock.recv(65536)
            if not chunk:
                raise QMPError("connection closed")
            self.buf += chunk

    def send_raw(self, text):
        self.sock.sendall(text.encode() + b"\n")

    def cmd(self, name, args=None, **extra):
        self.next_id += 1
        req = {"execute": name, "id": self.next_id}
        if args is not None:
            req["arguments"] = args
        req.update(extra)
        self.send_raw(json.dumps(req))
        while True:
            msg = self.read()
            if "event" in msg:
                self.events.append(msg)
            elif msg.get("id") == self.next_id:
                return msg

    def next_event(self, timeout):
        """The next event, or None for another message; socket.timeout."""
        if self.events:
            return self.events.pop(0)
        self.sock.settimeout(timeout)
        try:
            msg = self.read()
        finally:
            self.sock.settimeout(self.timeout)
        return msg if "event" in msg else None

    def close(self):
        self.sock.close()


def wait_status(q, want, timeout):
    """Wait until query-migrate says want: events wake us, the query decides."""
    deadline = time.monotonic() + timeout
    while True:
        st = q.cmd("query-migrate").get("return", {}).get("status")
        if st == want:
            return 0
        if st in TERMINAL:
            print("status %s, not %s" % (st, want), file=sys.stderr)
            return 3
        left = deadline - time.monotonic()
        if left <= 0:
            print("timeout: status %s, not %s" % (st, want), file=sys.stderr)
            return 1
        try:
            q.next_event(min(left, 0.5))
        except socket.timeout:
            pass


def time_to_status(q, want, name, args):
    """How long from sending name to the MIGRATION event of status want."""
    t0 = time.monotonic()
    reply = q.cmd(name, args)
    if "return" not in reply:
        print(json.dumps(reply))
        return 2
    deadline = t0 + 30
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return 1
        try:
            ev = q.next_event(left)
        except socket.timeout:
            return 1
        st = ev.get("data", {}).get("status") if ev and ev.get("event") == "MIGRATION" else None
        if st == want:
            print("%.3f" % ((time.monotonic() - t0) * 1000))
            return 0
        if st in TERMINAL:
            return 3


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 64
    try:
        q = QMP(argv[1])
        if argv[2] == "--greeting":
            print(json.dumps(q.greeting))
            return 0
        if argv[2] == "--time":
            return time_to_status(q, argv[3], argv[4],
                                  json.loads(argv[5]) if len(argv) > 5 else None)
        if argv[2] == "--serve":
            return serve(q)
        if argv[2] == "--wait-status":
            return wait_status(q, argv[3], float(argv[4]) if len(argv) > 4 else 30)
        args = json.loads(argv[3]) if len(argv) > 3 else None
        reply = q.cmd(argv[2], args)
        errs = conformance(q, argv[2], reply)
    except (OSError, QMPError) as e:
        print("qmp.py: %s: %s" % (argv[1], e), file=sys.stderr)
        return 4
    print(json.dumps(reply))
    for e in errs:
        print("qmp.py: does not fit the schema: %s" % e, file=sys.stderr)
    if errs:
        return 5
    return 0 if "return" in reply else 2


def serve(q):
    """--serve: the schema is fetched once, for the whole connection."""
    schema = []
    for line in sys.stdin:
        name, _, args = line.strip().partition(" ")
        reply = q.cmd(name, json.loads(args) if args else None)
        errs = conformance(q, name, reply, schema)
        for e in errs:
            print("qmp.py: does not fit the schema: %s" % e, file=sys.stderr)
        st = 5 if errs else 0 if "return" in reply else 2
        print(st, json.dumps(reply), flush=True)
    return 0


def conformance(q, cmd, reply, cache=None):
    """The reply's problems against the bus's schema (MIG_QAPI_CHECK=1);
    a list given as cache keeps the schema fetched for the next call."""
    if not os.environ.get("MIG_QAPI_CHECK"):
        return []
    import qapi_check
    if cache is None:
        cache = []
    if not cache:
        cache.append(qapi_check.fetch(q))
    return qapi_check.check_reply(cache[0], cmd, reply, "reply")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
