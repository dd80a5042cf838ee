#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Drive one QEMU postcopy migration over QMP, for bench/run.sh's `qemu`.

  migrate.py SRC-QMP DST-QMP PORT [--preempt] [--timeout S]

Both QEMUs must be up, the destination started with -incoming defer. Sets
postcopy-ram (and postcopy-preempt with --preempt) on both sides and
postcopy-blocktime on the destination, lifts the source's precopy
bandwidth limit (QEMU's default is 32 MiB/s; the postcopy one is already
none) so that neither engine is throttled, then `migrate` and at once
`migrate-start-postcopy`, and polls query-migrate on the source until it
ends, then on the destination until it has completed too.

Prints one JSON object: status, wall_s (from `migrate` to the poll that saw
completed), the source's total-time, downtime and RAM figures, the
destination's postcopy-blocktime and run state. Exit 0 if completed and
the destination runs, 1 otherwise (the reason on stderr).
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "tests", "helpers"))
from qmp import QMP, QMPError, TERMINAL  # noqa: E402

POLL_S = 0.02   # how finely wall_s is resolved; QEMU's total-time is its own


def must(q, name, args=None):
    reply = q.cmd(name, args)
    if "return" not in reply:
        raise QMPError("%s: %s" % (name, json.dumps(reply.get("error", reply))))
    return reply["return"]


def poll(q, deadline):
    """query-migrate until a terminal status or the deadline."""
    while True:
        info = must(q, "query-migrate")
        if info.get("status") in TERMINAL or time.monotonic() >= deadline:
            return info
        time.sleep(POLL_S)


def migrate(src, dst, port, preempt, timeout):
    caps = [{"capability": "postcopy-ram", "state": True}]
    if preempt:
        caps.append({"capability": "postcopy-preempt", "state": True})
    must(src, "migrate-set-capabilities", {"capabilities": caps})
    must(dst, "migrate-set-capabilities",
         {"capabilities": caps + [{"capability": "postcopy-blocktime", "state": True}]})
    must(src, "migrate-set-parameters", {"max-bandwidth": 1 << 40})
    uri = "tcp:127.0.0.1:%d" % port
    must(dst, "migrate-incoming", {"uri": uri})

    t0 = time.monotonic()
    must(src, "migrate", {"uri": uri})
    must(src, "migrate-start-postcopy")
    deadline = t0 + timeout
    info = poll(src, deadline)
    wall = time.monotonic() - t0
    dinfo = poll(dst, deadline) if info.get("status") == "completed" else {}
    run = must(dst, "query-status")
    ram = info.get("ram", {})
    return {
        "status": info.get("status"),
        "dst_status": dinfo.get("status"),
        "dst_run_state": run.get("status"),
        "wall_s": round(wall, 3),
        "total_s": info["total-time"] / 1000 if "total-time" in info else None,
        "setup_ms": info.get("setup-time"),
        "downtime_ms": info.get("downtime"),
        "mb_per_s": round(ram["mbps"] / 8, 1) if "mbps" in ram else None,
        "transferred": ram.get("transferred"),
        "requests": ram.get("postcopy-requests"),
        "blocktime_ms": dinfo.get("postcopy-blocktime"),
        "error": info.get("error-desc"),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("port", type=int)
    ap.add_argument("--preempt", action="store_true")
    ap.add_argument("--timeout", type=float, default=120)
    a = ap.parse_args()
    try:
        src, dst = QMP(a.src), QMP(a.dst)
        res = migrate(src, dst, a.port, a.preempt, a.timeout)
    except (OSError, QMPError) as e:
        print("migrate.py: %s" % e, file=sys.stderr)
        return 1
    res["preempt"] = a.preempt
    print(json.dumps(res))
    if res["status"] != "completed" or res["dst_status"] != "completed":
        print("migrate.py: source %s, destination %s%s" % (
            res["status"], res["dst_status"],
            ": " + res["error"] if res["error"] else ""), file=sys.stderr)
        return 1
    if res["dst_run_state"] != "running":
        print("migrate.py: destination %s, not running" % res["dst_run_state"],
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
