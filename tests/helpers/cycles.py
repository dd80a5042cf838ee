#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Drive N pause/recover cycles of one postcopy migration and report the
engines' memory, for tests that look for memory held per cycle.

  cycles.py --src BUS --dst BUS --listen URI --to URI --cycles N
            [--sample 1,50,500] [--src-pid PID] [--dst-pid PID]
            [--timeout SECS] [--deadline SECS]

One QMP connection to each bus for the whole run (a connection per cycle
would itself be a per-cycle cost to the engines). Per cycle: migrate-pause
on the source, both sides' postcopy-paused; migrate-recover on the
destination (re-arms it: needed before every recovery), migrate resume on
the source, both sides' postcopy-active. After the cycles listed in
--sample, the VmRSS (and its parts) of each given pid, in kB.

Prints one JSON object: {"cycles", "seconds", "rss": {"CYCLE": {"send":
{"VmRSS": kB, "RssAnon": ...}, "recv": {...}}}}. Exit 0, or 1 with the
reason on stderr (a command refused, an event not seen in time).
Every wait is bounded by --timeout; the whole run by --deadline.
"""
import argparse
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qmp  # noqa: E402

RSS_FIELDS = ("VmRSS", "RssAnon", "RssFile", "RssShmem")


class Fail(Exception):
    pass


class Bus(qmp.QMP):
    """One QMP connection for the whole run; events are kept in order."""

    def __init__(self, name, path, timeout):
        self.name, self.timeout = name, timeout
        try:
            super().__init__(path, timeout)
        except (OSError, qmp.QMPError) as e:
            raise Fail(f"{name}: {e}")

    def execute(self, cmd, **args):
        try:
            msg = self.cmd(cmd, args or None)
        except (OSError, qmp.QMPError) as e:
            raise Fail(f"{self.name}: {cmd}: {e}")
        if "error" in msg:
            raise Fail(f"{self.name}: {cmd}: {msg['error'].get('desc')}")
        return msg.get("return")

    def wait_status(self, want):
        """Consume events up to the first MIGRATION with status want."""
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Fail(f"{self.name}: nothing from the bus in time")
            try:
                ev = self.next_event(left)
            except socket.timeout:
                continue
            except (OSError, qmp.QMPError) as e:
                raise Fail(f"{self.name}: {e}")
            if not ev or ev.get("event") != "MIGRATION":
                continue
            st = ev.get("data", {}).get("status")
            if st == want:
                return
            if st in qmp.TERMINAL:
                raise Fail(f"{self.name}: {st} while waiting for {want}")


def rss(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, val = line.partition(":")
            if key in RSS_FIELDS:
                out[key] = int(val.split()[0])
    return out


def cycle(src, dst, listen, to):
    src.execute("migrate-pause")
    src.wait_status("postcopy-paused")
    dst.wait_status("postcopy-paused")
    dst.execute("migrate-recover", uri=listen)
    src.execute("migrate", uri=to, resume=True)
    src.wait_status("postcopy-active")
    dst.wait_status("postcopy-active")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", required=True, help="source status bus")
    ap.add_argument("--dst", required=True, help="destination status bus")
    ap.add_argument("--listen", required=True, help="migrate-recover URI")
    ap.add_argument("--to", required=True, help="migrate resume URI")
    ap.add_argument("--cycles", type=int, required=True)
    ap.add_argument("--sample", default="", help="cycles to sample, 1,50,...")
    ap.add_argument("--src-pid", type=int)
    ap.add_argument("--dst-pid", type=int)
    ap.add_argument("--timeout", type=float, default=10, help="per wait, s")
    ap.add_argument("--deadline", type=float, default=300, help="whole run, s")
    a = ap.parse_args()
    samples = {int(c) for c in a.sample.split(",") if c}
    pids = {k: v for k, v in (("send", a.src_pid), ("recv", a.dst_pid)) if v}
    t0 = time.monotonic()
    result = {"cycles": 0, "rss": {}}
    try:
        src = Bus("source", a.src, a.timeout)
        dst = Bus("destination", a.dst, a.timeout)
        if 0 in samples:
            result["rss"]["0"] = {k: rss(p) for k, p in pids.items()}
        for n in range(1, a.cycles + 1):
            if time.monotonic() - t0 > a.deadline:
                raise Fail(f"deadline of {a.deadline} s passed at cycle {n}")
            cycle(src, dst, a.listen, a.to)
            result["cycles"] = n
            if n in samples:
                result["rss"][str(n)] = {k: rss(p) for k, p in pids.items()}
    except (Fail, OSError, ValueError) as e:
        result["error"] = str(e)
        print(f"cycles.py: cycle {result['cycles'] + 1}: {e}", file=sys.stderr)
    result["seconds"] = round(time.monotonic() - t0, 3)
    print(json.dumps(result))
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
