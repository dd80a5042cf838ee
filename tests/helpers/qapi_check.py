#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Check a bus against the QAPI schema it serves, as a typed QMP client
generated from that schema would decode it, and that schema against QEMU's.

  qapi_check.py schema BUS
      the served schema: self-consistent (every type it names exists, the
      query-qmp-schema reply fits its own SchemaInfo), and what it shares
      with QEMU 9.1's qapi/migration.json, control.json, introspect.json
      and run-state.json spelled and typed as there (QEMU_REF below). Prints
      the problems; exit 0 if none.
  qapi_check.py watch --bus SIDE=PATH... --report FILE [--progress FILE]
      until SIGTERM/SIGINT, or every bus has ended (terminal state) or gone:
      on each bus, round after round, every query command the schema lists
      (query-qmp-schema and x-query-events once a state), plus an argument
      error, each reply checked against the command's ret-type (an error:
      its class and desc); every event, from the history and live, checked
      against its arg-type. Writes {"errors": [each once], "states": {SIDE: [the
      states a whole round was checked in]}, "replies": N, "events": N}.
      --progress: a line "SIDE STATE" appended as each state is first
      checked whole, for a test to wait on before it moves the migration.

Strict as a generated decoder is: a member the schema does not declare, a
mandatory one missing, an integer that is not one, a value outside an
enum, each is an error with the JSON path. Importable (Schema, fetch).
"""
import argparse
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qmp  # noqa: E402

# JSON types of QEMU's builtins, as introspection reports them.
JSON_OF = {"int": "int", "number": "number", "str": "string", "bool": "boolean",
           "any": "value", "null": "null"}

# What mig shares with QEMU 9.1, from its QAPI schema: members (a leading
# '*' marks optional), array types as [T], enum values. Integer types of
# every width are "int", as QEMU's introspection maps them.
QEMU_REF = {
    "MigrationStats": {m: "int" for m in (
        "transferred", "remaining", "total", "duplicate", "normal",
        "normal-bytes", "dirty-pages-rate", "dirty-sync-count",
        "postcopy-requests", "page-size", "multifd-bytes", "pages-per-second",
        "precopy-bytes", "downtime-bytes", "postcopy-bytes",
        "dirty-sync-missed-zero-copy")} | {"mbps": "number"},
    "MigrationInfo": {
        "*status": "MigrationStatus", "*ram": "MigrationStats",
        "*vfio": "VfioStats", "*xbzrle-cache": "XBZRLECacheStats",
        "*total-time": "int", "*expected-downtime": "int", "*downtime": "int",
        "*setup-time": "int", "*cpu-throttle-percentage": "int",
        "*error-desc": "str", "*blocked-reasons": "[str]",
        "*postcopy-blocktime": "int", "*postcopy-vcpu-blocktime": "[int]",
        "*socket-address": "[SocketAddress]",
        "*dirty-limit-throttle-time-per-round": "int",
        "*dirty-limit-ring-full-time": "int"},
    "MigrationStatus": ["none", "setup", "cancelling", "cancelled", "active",
                        "postcopy-active", "postcopy-paused",
                        "postcopy-recover-setup", "postcopy-recover",
                        "completed", "failed", "colo", "pre-switchover",
                        "device", "wait-unplug"],
    "MigrationCapability": [
        "xbzrle", "rdma-pin-all", "auto-converge", "zero-blocks", "events",
        "postcopy-ram", "x-colo", "release-ram", "return-path",
        "pause-before-switchover", "multifd", "dirty-bitmaps",
        "postcopy-blocktime", "late-block-activate", "x-ignore-shared",
        "validate-uuid", "background-snapshot", "zero-copy-send",
        "postcopy-preempt", "switchover-ack", "dirty-limit", "mapped-ram"],
    "MigrationCapabilityStatus": {"capability": "MigrationCapability",
                                  "state": "bool"},
    "MigrateSetParameters": {"*max-bandwidth": "int", "*downtime-limit": "int",
                             "*max-postcopy-bandwidth": "int",
                             "*multifd-channels": "int", "*tls-creds": "StrOrNull",
                             "*tls-hostname": "StrOrNull", "*tls-authz": "StrOrNull"},
    "MigrationParameters": {"*max-bandwidth": "int", "*downtime-limit": "int",
                            "*max-postcopy-bandwidth": "int",
                            "*multifd-channels": "int", "*tls-creds": "str",
                            "*tls-hostname": "str", "*tls-authz": "str"},
    "MigrationChannel": {"channel-type": "MigrationChannelType",
                         "addr": "MigrationAddress"},
    "MigrationChannelType": ["main"],
    "MigrationAddress": {"transport": "MigrationAddressType"},
    "MigrationAddressType": ["socket", "exec", "rdma", "file"],
    "SocketAddress": {"type": "SocketAddressType"},
    "SocketAddressType": ["inet", "unix", "vsock", "fd"],
    "InetSocketAddress": {"host": "str", "port": "str", "*numeric": "bool",
                          "*to": "int", "*ipv4": "bool", "*ipv6": "bool",
                          "*keep-alive": "bool"},
    "UnixSocketAddress": {"path": "str", "*abstract": "bool", "*tight": "bool"},
    "VersionInfo": {"qemu": "VersionTriple", "package": "str"},
    "VersionTriple": {"major": "int", "minor": "int", "micro": "int"},
    "CommandInfo": {"name": "str"},
    "StatusInfo": {"running": "bool", "status": "RunState"},
    "RunState": ["debug", "inmigrate", "internal-error", "io-error", "paused",
                 "postmigrate", "prelaunch", "finish-migrate", "restore-vm",
                 "running", "save-vm", "shutdown", "suspended", "watchdog",
                 "guest-panicked", "colo"],
    "QMPCapability": ["oob"],
    "SchemaMetaType": ["builtin", "enum", "array", "object", "alternate",
                       "command", "event"],
    "JSONType": ["string", "number", "int", "boolean", "null", "object",
                 "array", "value"],
}
# Commands: arguments (as above) and the type returned.
QEMU_CMDS = {
    "qmp_capabilities": ({"*enable": "[QMPCapability]"}, None),
    "query-version": ({}, "VersionInfo"),
    "query-commands": ({}, "[CommandInfo]"),
    "query-qmp-schema": ({}, "[SchemaInfo]"),
    "query-status": ({}, "StatusInfo"),
    "query-migrate": ({}, "MigrationInfo"),
    "migrate": ({"*uri": "str", "*channels": "[MigrationChannel]",
                 "*detach": "bool", "*resume": "bool"}, None),
    "migrate-incoming": ({"*uri": "str", "*channels": "[MigrationChannel]",
                          "*exit-on-error": "bool"}, None),
    "migrate-recover": ({"uri": "str"}, None),
    "migrate-pause": ({}, None),
    "migrate-start-postcopy": ({}, None),
    "migrate_cancel": ({}, None),
    "migrate-set-capabilities": (
        {"capabilities": "[MigrationCapabilityStatus]"}, None),
    "query-migrate-capabilities": ({}, "[MigrationCapabilityStatus]"),
    "migrate-set-parameters": ("MigrateSetParameters", None),
    "query-migrate-parameters": ({}, "MigrationParameters"),
}
QEMU_EVENTS = {"MIGRATION": {"status": "MigrationStatus"},
               "MIGRATION_PASS": {"pass": "int"}}


def own(name):
    """mig's own names: x- members, commands and types; MIG_ events."""
    return name.startswith("x-") or name.startswith("[x-") or \
        name.startswith("MIG_")


class Schema:
    def __init__(self, entries):
        self.entries = entries
        self.types = {e["name"]: e for e in entries}

    # ---- values ----

    def check(self, value, tname, path="$"):
        t = self.types.get(tname)
        if t is None:
            return ["%s: the schema has no type %s" % (path, tname)]
        meta = t["meta-type"]
        if meta == "builtin":
            return self.check_builtin(value, t["json-type"], path)
        if meta == "enum":
            names = [m["name"] for m in t["members"]]
            if not isinstance(value, str) or value not in names:
                return ["%s: %r is not one of %s %s" % (path, value, tname, names)]
            return []
        if meta == "array":
            if not isinstance(value, list):
                return ["%s: %r is not an array of %s" % (path, value,
                                                          t["element-type"])]
            errs = []
            for i, v in enumerate(value):
                errs += self.check(v, t["element-type"], "%s[%d]" % (path, i))
            return errs
        if meta == "object":
            return self.check_object(value, t, path)
        return ["%s: %s is a %s, not a type" % (path, tname, meta)]

    @staticmethod
    def check_builtin(value, jt, path):
        ok = {"value": lambda v: True,
              "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
              "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
              "string": lambda v: isinstance(v, str),
              "boolean": lambda v: isinstance(v, bool),
              "null": lambda v: v is None,
              "object": lambda v: isinstance(v, dict),
              "array": lambda v: isinstance(v, list)}[jt]
        return [] if ok(value) else ["%s: %r is not of JSON type %s" % (path, value, jt)]

    def members_of(self, t, value):
        members = list(t.get("members", []))
        tag = t.get("tag")
        if tag and isinstance(value, dict):
            for v in t.get("variants", []):
                if v["case"] == value.get(tag):
                    members += self.members_of(self.types[v["type"]], value)
        return members

    def check_object(self, value, t, path):
        if not isinstance(value, dict):
            return ["%s: %r is not an object (%s)" % (path, value, t["name"])]
        members = {m["name"]: m for m in self.members_of(t, value)}
        errs = ["%s.%s: not a member of %s" % (path, k, t["name"])
                for k in value if k not in members]
        for name, m in members.items():
            if name in value:
                errs += self.check(value[name], m["type"], "%s.%s" % (path, name))
            elif "default" not in m:
                errs.append("%s.%s: mandatory member of %s missing"
                            % (path, name, t["name"]))
        return errs

    # ---- the schema itself ----

    def refs(self, e):
        meta = e["meta-type"]
        if meta == "array":
            yield e["element-type"]
        elif meta == "object":
            for m in e["members"]:
                yield m["type"]
            for v in e.get("variants", []):
                yield v["type"]
        elif meta == "command":
            yield e["arg-type"]
            yield e["ret-type"]
        elif meta == "event":
            yield e["arg-type"]

    def self_errors(self):
        errs = self.check(self.entries, "[SchemaInfo]", "query-qmp-schema")
        if len(self.types) != len(self.entries):
            errs.append("a name is defined twice")
        for e in self.entries:
            errs += ["%s names undefined type %s" % (e["name"], r)
                     for r in self.refs(e) if r not in self.types]
            if e["meta-type"] == "object" and e.get("tag"):
                if e["tag"] not in [m["name"] for m in e["members"]]:
                    errs.append("%s: tag %s is no member" % (e["name"], e["tag"]))
        return errs

    # ---- against QEMU ----

    def shape(self, tname):
        t = self.types[tname]
        if t["meta-type"] == "builtin":
            return {v: k for k, v in JSON_OF.items()}.get(t["json-type"], tname)
        if t["meta-type"] == "array":
            return "[%s]" % self.shape(t["element-type"])
        return tname

    def compare_members(self, where, mine, ref):
        errs = []
        for m in mine:
            name = m["name"]
            if own(name):
                continue
            key = name if name in ref else "*" + name
            if key not in ref:
                errs.append("%s.%s: QEMU has no such member" % (where, name))
                continue
            if ("default" in m) != key.startswith("*"):
                errs.append("%s.%s: optional in one, mandatory in the other"
                            % (where, name))
            if self.shape(m["type"]) != ref[key]:
                errs.append("%s.%s: type %s, QEMU's %s" % (where, name,
                                                           self.shape(m["type"]), ref[key]))
        have = {m["name"] for m in mine}
        errs += ["%s.%s: QEMU's mandatory member is missing" % (where, k)
                 for k in ref if not k.startswith("*") and k not in have]
        return errs

    def qemu_errors(self):
        errs = []
        for name, ref in QEMU_REF.items():
            t = self.types.get(name)
            if t is None:
                continue
            if isinstance(ref, list):
                errs += ["%s: QEMU has no value %s" % (name, m["name"])
                         for m in t["members"] if not own(m["name"]) and
                         m["name"] not in ref]
            else:
                errs += self.compare_members(name, t["members"], ref)
        for e in self.entries:
            if e["meta-type"] == "command" and not own(e["name"]):
                errs += self.compare_command(e)
            if e["meta-type"] == "event" and not own(e["name"]):
                ref = QEMU_EVENTS.get(e["name"])
                if ref is None:
                    errs.append("event %s: not QEMU's" % e["name"])
                else:
                    errs += self.compare_members(e["name"],
                                                 self.types[e["arg-type"]]["members"], ref)
        return errs

    def compare_command(self, e):
        name = e["name"]
        if name not in QEMU_CMDS:
            return [] if name == "migrate-cancel" else \
                ["command %s: not QEMU's and not x-" % name]
        args, ret = QEMU_CMDS[name]
        if isinstance(args, str):
            if e["arg-type"] != args:
                return ["%s: arguments are %s, QEMU's %s" % (name, e["arg-type"], args)]
            args_errs = []
        else:
            args_errs = self.compare_members(name, self.types[e["arg-type"]]["members"],
                                             args)
        got = self.shape(e["ret-type"])
        want = ret or "q_empty"
        if got != want:
            args_errs.append("%s: returns %s, QEMU's %s" % (name, got, want))
        return args_errs


def fetch(q):
    reply = q.cmd("query-qmp-schema")
    if "return" not in reply:
        raise qmp.QMPError("query-qmp-schema: %r" % reply)
    return Schema(reply["return"])


def check_reply(schema, cmd, reply, where):
    """Errors of one reply: its return against the ret-type, or an error's shape."""
    if "error" in reply:
        err = reply["error"]
        ok = isinstance(err, dict) and set(err) == {"class", "desc"} and \
            err["class"] in ("GenericError", "CommandNotFound") and \
            isinstance(err["desc"], str) and err["desc"] and "\n" not in err["desc"]
        return [] if ok else ["%s: %s: malformed error %r" % (where, cmd, err)]
    t = schema.types.get(cmd)
    if t is None:
        return ["%s: %s answered but is not in the schema" % (where, cmd)]
    return schema.check(reply.get("return"), t["ret-type"], "%s: %s" % (where, cmd))


def check_event(schema, ev, where):
    t = schema.types.get(ev.get("event"))
    errs = []
    if t is None or t["meta-type"] != "event":
        return ["%s: event %r is not in the schema" % (where, ev.get("event"))]
    ts = ev.get("timestamp", {})
    if set(ev) - {"event", "data", "timestamp"} or not \
            (isinstance(ts.get("seconds"), int) and isinstance(ts.get("microseconds"), int)):
        errs.append("%s: malformed event %r" % (where, ev))
    return errs + schema.check(ev.get("data", {}), t["arg-type"],
                               "%s: %s.data" % (where, ev["event"]))


def cmd_schema(path):
    q = qmp.QMP(path)
    schema = fetch(q)
    errs = schema.self_errors() + schema.qemu_errors()
    for e in errs:
        print(e)
    return 1 if errs else 0


class Watch:
    def __init__(self, side, path, progress):
        self.side, self.q, self.progress = side, qmp.QMP(path), progress
        self.schema = fetch(self.q)
        self.ev_q = qmp.QMP(path)  # events: history, then live
        self.queries = [e["name"] for e in self.schema.entries
                        if e["meta-type"] == "command" and
                        e["name"].startswith("query-") and
                        e["name"] != "query-qmp-schema"]
        self.states, self.last, self.done = [], None, False
        self.replies = self.events = 0
        self.errors = []
        hist = self.ev_q.cmd("x-query-events")
        self.errors += check_reply(self.schema, "x-query-events", hist, side)
        for ev in hist.get("return", []):
            self.event(ev)

    def event(self, ev):
        self.events += 1
        self.errors += check_event(self.schema, ev, self.side)

    def drain_events(self):
        self.ev_q.sock.setblocking(False)
        try:
            while True:
                msg = self.ev_q.read()
                if "event" in msg:
                    self.event(msg)
        except (BlockingIOError, qmp.QMPError):
            pass
        finally:
            self.ev_q.sock.settimeout(self.ev_q.timeout)

    def call(self, cmd, args=None):
        reply = self.q.cmd(cmd, args)
        self.replies += 1
        self.errors += check_reply(self.schema, cmd, reply,
                                   "%s (%s)" % (self.side, self.last))
        return reply

    def round(self):
        st = self.call("query-migrate").get("return", {}).get("status")
        new = st != self.last
        self.last = st
        for cmd in self.queries:
            self.call(cmd)
        if new:  # the big ones once a state
            self.call("query-qmp-schema")
            self.call("x-query-events")
        self.call("migrate-set-parameters", {"x-bogus": 1})
        after = self.call("query-migrate").get("return", {}).get("status")
        if after == st and st not in self.states:
            self.states.append(st)
            if self.progress:
                with open(self.progress, "a") as f:
                    f.write("%s %s\n" % (self.side, st))
        self.done = st in qmp.TERMINAL
        self.drain_events()


def cmd_watch(buses, report, progress):
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    signal.signal(signal.SIGINT, lambda *a: stop.append(1))
    watches = [Watch(*b.split("=", 1), progress) for b in buses]
    gone = []
    while not stop and len(gone) + sum(w.done for w in watches) < len(watches):
        for w in watches:
            if w in gone or w.done:
                continue
            try:
                w.round()
            except (OSError, qmp.QMPError):
                gone.append(w)  # the engine ended: what it said is checked
        time.sleep(0.002)
    errors = sum((w.errors for w in watches), [])
    out = {"errors": sorted(set(errors), key=errors.index),
           "states": {w.side: w.states for w in watches},
           "replies": sum(w.replies for w in watches),
           "events": sum(w.events for w in watches)}
    with open(report, "w") as f:
        json.dump(out, f)
    return 1 if out["errors"] else 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="what", required=True)
    s = sub.add_parser("schema")
    s.add_argument("bus")
    w = sub.add_parser("watch")
    w.add_argument("--bus", action="append", required=True, metavar="SIDE=PATH")
    w.add_argument("--report", required=True)
    w.add_argument("--progress")
    o = ap.parse_args()
    if o.what == "schema":
        return cmd_schema(o.bus)
    return cmd_watch(o.bus, o.report, o.progress)


if __name__ == "__main__":
    sys.exit(main())
