#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Status-bus subscribers that never read, and a witness that does.

  subscribers.py BUS N [--hold] [--deadline SECS] --ready-fd FD

N connections to BUS each send qmp_capabilities and then read nothing: the
bus's greeting, its reply and every event pile up, in the kernel's socket
buffer and then in the bus's. Ready (a newline on FD) once every one of
them has been answered (its receive queue holds the greeting and the
reply, counted with FIONREAD, not read), so it is subscribed.

With --hold, they are only held until SIGTERM. Otherwise a witness
connection reads every event as it comes; once it has seen the migration
end (a MIGRATION event with status completed, failed or cancelled; within
--deadline, 120 s), each subscriber's stream is read out and set against
the witness's: either it holds every event up to that end (whole), or the
bus hung up on it (cut) after a run of events with none missing. What a
cut subscriber was never sent is counted: what an engine without limits
would hold for them. Prints one JSON object:
  {"clients", "whole", "cut", "events", "event_bytes",
   "undelivered_bytes", "problems": [...]}
Exit 0, or 1 if there are problems (an event missing, a stream neither
whole nor ended, the end not seen in time).
"""
import argparse
import fcntl
import json
import signal
import socket
import struct
import sys
import threading
import time

FIONREAD = 0x541B
NEGOTIATE = b'{"execute":"qmp_capabilities"}\n'
TERMINAL = ("completed", "failed", "cancelled")
DRAIN_TIMEOUT_S = 10


def inq(s):
    return struct.unpack("i", fcntl.ioctl(s, FIONREAD, b"\0" * 4))[0]


def lines(data):
    """The messages of a stream: "\\r\\n"-terminated lines; a partial last
    one is kept as it is, to be found missing."""
    out = data.split(b"\r\n")
    if out[-1] == b"":
        out.pop()
    return out


def is_end(line):
    try:
        msg = json.loads(line)
    except ValueError:
        return False
    return (msg.get("event") == "MIGRATION" and
            msg.get("data", {}).get("status") in TERMINAL)


class Witness(threading.Thread):
    """Reads everything; ended is set at the migration's end."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.sock.sendall(NEGOTIATE)
        self.data = b""
        self.ended = threading.Event()
        while self.data.count(b"\r\n") < 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise OSError("the bus hung up on the witness")
            self.data += chunk
        # the greeting and the reply
        self.head = b"".join(m + b"\r\n" for m in lines(self.data)[:2])

    def run(self):
        while not self.ended.is_set():
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                break  # report() finds no end
            self.data += chunk
            done = self.data[:self.data.rfind(b"\r\n") + 2]
            if any(is_end(m) for m in lines(done)[-8:]):
                self.ended.set()
                self.data = done


def drain(s, last):
    """What is queued for s, up to the line last (the witness's end) or
    the bus's hang-up; and whether it hung up (None: neither came)."""
    got = b""
    s.settimeout(DRAIN_TIMEOUT_S)
    while not got.endswith(last):
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            return got, None
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return got, True
        got += chunk
    return got, False


def judge(i, got, hung_up, events, out):
    """Set subscriber i's stream against the witness's events. Cut, it may
    end inside a message: the bus sends what the socket takes, and drops
    the rest with the connection."""
    complete = got[:got.rfind(b"\r\n") + 2]
    tail = got[len(complete):]
    mine = lines(complete)[2:]  # past its greeting and reply
    if hung_up is None:
        out["problems"].append("subscriber %d: neither whole nor cut after %d s"
                               % (i, DRAIN_TIMEOUT_S))
        return
    start = events.index(mine[0]) if mine and mine[0] in events else 0
    end = start + len(mine)
    if mine and events[start:end] != mine or \
            tail and not (end < len(events) and events[end].startswith(tail)):
        out["problems"].append("subscriber %d: %d events, not a run of the "
                               "witness's %d" % (i, len(mine), len(events)))
        return
    if not hung_up or end == len(events):
        out["whole"] += 1
        return
    out["cut"] += 1
    out["undelivered_bytes"] += sum(len(e) + 2 for e in events[end:]) - len(tail)


def report(w, subs, deadline):
    out = {"clients": len(subs), "whole": 0, "cut": 0, "problems": []}
    if not w.ended.wait(deadline):
        out["problems"].append("no end of the migration within %g s" % deadline)
        w.ended.set()
    events = lines(w.data)[2:]
    out["events"] = len(events)
    out["event_bytes"] = sum(len(e) + 2 for e in events)
    out["undelivered_bytes"] = 0
    last = events[-1] + b"\r\n" if events else w.head
    for i, s in enumerate(subs):
        got, hung_up = drain(s, last)
        judge(i, got, hung_up, events, out)
    print(json.dumps(out))
    return 1 if out["problems"] else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bus")
    ap.add_argument("n", type=int)
    ap.add_argument("--hold", action="store_true")
    ap.add_argument("--deadline", type=float, default=120)
    ap.add_argument("--ready-fd", type=int, required=True)
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # the witness's greeting and reply, as every subscriber is sent them
    w = Witness(a.bus)
    if a.hold:
        w.sock.close()
    subs = []
    for _ in range(a.n):
        s = socket.socket(socket.AF_UNIX)
        s.connect(a.bus)
        s.sendall(NEGOTIATE)
        subs.append(s)
    # events go to negotiated clients only: a byte past the greeting and
    # the reply is an event, so holding those bytes is being subscribed
    end = time.monotonic() + 20
    while any(inq(s) < len(w.head) for s in subs):
        if time.monotonic() > end:
            print("subscribers.py: not all answered in 20 s", file=sys.stderr)
            return 1
        time.sleep(0.02)
    if not a.hold:
        w.start()
    with open(a.ready_fd, "wb", closefd=True) as f:
        f.write(b"\n")
    if a.hold:
        while True:
            time.sleep(3600)
    return report(w, subs, a.deadline)


if __name__ == "__main__":
    sys.exit(main())
