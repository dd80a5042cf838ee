#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Write the seed inputs of tests/fuzz/corpus/NAME/: a few valid messages of
# each kind (man/mig-protocol.7's layouts; the bus requests from the served
# schema). Run from anywhere; the output is committed, so run it again only
# when a format changes. Regression inputs (crash-*) are kept as they are.
import json
import os
import struct

TOP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
OUT = os.path.join(TOP, "tests", "fuzz", "corpus")
PAGE = 4096


def put(name, seed, data):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, seed), "wb") as f:
        f.write(data)


def msg(t, payload=b""):
    return struct.pack(">II", t, len(payload)) + payload


HELLO, REFUSE, RAM_INFO, PAGES, SWITCHOVER, EOS, CANCEL, RESUME = range(1, 9)
PING, PONG, DISCARD = 9, 10, 11
REQ, COMPLETE, BITMAP, BITMAP_END, RESUME_ACK = 16, 17, 18, 19, 20
UUID = bytes(range(16))


def hello(role, flags):
    return msg(HELLO, struct.pack(">IIII", 0x4D494757, 1, role, flags) + UUID)


def pages(off, n, flags, data=b""):
    return msg(PAGES, struct.pack(">QII", off, n, flags) + data)


def run(off, n):
    return struct.pack(">QII", off, n, 0)


# One zero page as an LZ4 block: a literal 0, a match of 4090 bytes at
# offset 1 (length 4 + 15 + 15*255 + 246), then the 5 literals a block ends
# with.
LZ4_ZERO_PAGE = (bytes([0x1F, 0x00, 0x01, 0x00]) + b"\xff" * 15 + b"\xf6" +
                 bytes([0x50]) + bytes(5))


def wire():
    ram = msg(RAM_INFO, struct.pack(">QII", 64 * PAGE, PAGE, 0))
    put("wire", "precopy",
        hello(1, 2) + ram + pages(0, 1, 0, b"\xab" * PAGE) +
        pages(PAGE, 4, 1) + pages(5 * PAGE, 1, 2, LZ4_ZERO_PAGE) +
        msg(EOS) + msg(SWITCHOVER, b"vcpu-state") + msg(PING, bytes(8)))
    put("wire", "preempt", hello(2, 0) + pages(63 * PAGE, 1, 1) +
        msg(DISCARD, run(0, 2)) + msg(PONG, struct.pack(">Q", 7)))
    put("wire", "resume", hello(1, 1) + msg(RESUME) + msg(CANCEL))
    put("wire", "refuse", msg(REFUSE, struct.pack(">I", 2) + b"uuid mismatch"))


def return_path():
    bits = bytes([0xFF] * 12 + [0x0F])  # 100 pages: 4 bits of the last byte
    put("return-path", "requests",
        hello(1, 0) + msg(REQ, run(0, 1)) + msg(REQ, run(99 * PAGE, 1)) +
        msg(COMPLETE) + msg(PING, bytes(8)))
    put("return-path", "recovery",
        hello(1, 1) + msg(BITMAP, struct.pack(">QII", 0, 100, 0) + bits) +
        msg(BITMAP, struct.pack(">QII", 96, 3, 0) + b"\x05") +
        msg(BITMAP_END, struct.pack(">Q", 100)) + msg(RESUME_ACK))


def ctl_msg(nfds, op, payload=b"", status=0, seq=1):
    return bytes([nfds]) + struct.pack("<IHHIiI", 0x4347494D, 2, op, seq,
                                       status, len(payload)) + payload


def ctl():
    peer = b"tcp:127.0.0.1:4444".ljust(256, b"\0")
    info = (struct.pack("<III", 1234, 0x3, 2) +
            struct.pack("<QQQ", 64 << 20, 0x7F0000000000, 99) +
            b"ab".ljust(64, b"\0") + UUID + bytes([0, 1, 3, 0]) + peer)
    bind = UUID + bytes([1, 0, 0, 0]) + peer
    put("ctl", "info", ctl_msg(0, 1, info))
    put("ctl", "bind", ctl_msg(0, 15, bind))
    put("ctl", "get-fds", ctl_msg(2 + 4 * 2, 3, struct.pack("<I", 2)))
    put("ctl", "busy", ctl_msg(0, 2, struct.pack("<I", 42), status=-16))
    put("ctl", "state", ctl_msg(1 + 4, 7, struct.pack("<I", 6) + b"blob!!"))
    put("ctl", "poke", ctl_msg(0, 14, struct.pack("<Q", 5), seq=9))


def fnv1a(b):
    h = 2166136261
    for c in b:
        h = ((h ^ c) * 16777619) & 0xFFFFFFFF
    return h


def state_blob(wid, spec, ram, words, machine=None):
    """workload-state.c's layout: header, spec, per-vCPU u64 words, the
    kvm machine section, FNV-1a."""
    body = spec + b"".join(struct.pack("<Q", w) for vcpu in words for w in vcpu)
    if machine is not None:
        body += struct.pack("<I", len(machine)) + machine
    n = 28 + len(body) + 4
    b = struct.pack("<IHHIIQI", 0x5347494D, 1, wid, n, len(words), ram,
                    len(spec)) + body
    return b + struct.pack("<I", fnv1a(b))


# kvm-record.c's sections: tag, the kernel structure's size (x86-64).
KVM_SECTIONS = [(1, 144), (2, 312), (3, 392), (4, 4096), (5, 32), (6, 64),
                (7, 4), (8, 128)]


def kvm_record():
    out = b""
    for tag, size in KVM_SECTIONS:
        data = bytes(size)
        if tag == 5:  # the TSC and PAT
            data = struct.pack("<IIQIIQ", 0x10, 0, 12345, 0x277, 0, 0x0007040600070406)
        out += struct.pack("<II", tag, size) + data
    return out


def state():
    put("state", "ab", state_blob(1, b"ab", 64 * PAGE, [[3], [0]]))
    put("state", "dirty", state_blob(3, b"dirty:rate=8M,pattern=hot", 64 * PAGE,
                                     [[1, 0x9E3779B97F4A7C15, 4096]]))
    put("state", "kvm", state_blob(4, b"kvm", 16 << 20, [[5, 7, 1], [0, 6, 1]],
                                   kvm_record() * 2))


def jsonstream():
    put("jsonstream", "requests",
        b"\x05" + b'{"execute":"qmp_capabilities"}{"execute":"query-status",'
        b'"id":1}\n  {"execute":"migrate","arguments":{"uri":"tcp:h:1"}}')
    put("jsonstream", "strings",
        b"\x2a" + b'["a\\"}", "\\\\", {"k":"]"}] "x\\u0041"\r\n')
    put("jsonstream", "scalars", b"\x03" + b"12 true null -1.5e3,}]:[[]]")


def json_():
    put("json", "greeting", '{"QMP":{"version":{"qemu":{"major":9,"minor":0,'
        '"micro":0},"package":"mig 0.1.0"},"capabilities":[]}}')
    put("json", "reply", '{"return":{"status":"postcopy-active","ram":'
        '{"transferred":123456789012,"mbps":1.5e3,"dirty-sync-count":0}},'
        '"id":"x"}')
    put("json", "values", '[null,true,false,-0,1e308,"\\u00e9\\ud83d\\ude00",'
        '{"":[]},9007199254740993]')


def sample(types, name, depth=0):
    t = types.get(name, {"meta-type": "builtin", "json-type": "string"})
    mt = t["meta-type"]
    if mt == "builtin":
        return {"int": 1, "number": 1.5, "boolean": True,
                "value": {"any": 1}}.get(t["json-type"], "x")
    if mt == "enum":
        return t["members"][0]["name"]
    if mt == "array":
        return [sample(types, t["element-type"], depth + 1)]
    if mt == "alternate":  # its members are types, not names
        return sample(types, t["members"][0]["type"], depth + 1)
    obj = {}
    for m in t.get("members", []):
        obj[m["name"]] = sample(types, m["type"], depth + 1)
    if "variants" in t:
        v = t["variants"][0]
        obj[t["tag"]] = v["case"]
        obj.update(sample(types, v["type"], depth + 1))
    return obj


def qapi():
    with open(os.path.join(TOP, "lib", "engine", "schema.json")) as f:
        schema = json.load(f)["schema"]
    types = {t["name"]: t for t in schema}
    for t in schema:
        if t["meta-type"] != "command":
            continue
        req = {"execute": t["name"], "id": 1}
        args = sample(types, t["arg-type"])
        if args:
            req["arguments"] = args
        put("qapi", t["name"], json.dumps(req))


def qmp():
    greet = ('{"QMP":{"version":{"qemu":{"major":9,"minor":0,"micro":0},'
             '"package":"mig"},"capabilities":[]}}\r\n')
    caps = '{"return":{},"id":1}\r\n'
    ev = ('{"event":"MIGRATION","data":{"status":"active"},"timestamp":'
          '{"seconds":1,"microseconds":2}}\r\n')
    put("qmp", "session", greet + caps + ev +
        '{"return":{"running":true,"status":"running"},"id":2}\r\n' +
        '{"return":[' + ev.strip() + '],"id":3}' + ev)
    put("qmp", "errors", greet + caps +
        '{"error":{"class":"GenericError","desc":"no"},"id":2}' +
        '{"return":{},"id":99}{"return":{},"id":3}')
    put("qmp", "refused", greet +
        '{"error":{"class":"CommandNotFound","desc":"x"},"id":1}')


JSON_TOKENS = ['{', '}', '[', ']', ':', ',', '"', '\\"', '\\\\', '\\u',
               'true', 'false', 'null', '-0', '1e999', '"execute"',
               '"arguments"', '"id"', '"return"', '"error"', '"desc"',
               '"event"', '"QMP"', '"data"', '"timestamp"']


def dicts():
    """libFuzzer dictionaries (tests/fuzz/dict/NAME.dict): JSON's tokens,
    and for the schema checks every name the schema has."""
    d = os.path.join(TOP, "tests", "fuzz", "dict")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(TOP, "lib", "engine", "schema.json")) as f:
        schema = json.load(f)["schema"]
    names = set()
    for t in schema:
        names.add(t["name"])
        for m in t.get("members", []):
            names.add(m.get("name", m.get("type")))  # alternate: types
        for v in t.get("variants", []):
            names.add(v["case"])
    toks = [json.dumps(t) for t in JSON_TOKENS]
    for name in ("json", "jsonstream", "qmp"):
        with open(os.path.join(d, name + ".dict"), "w") as f:
            f.write("\n".join(toks) + "\n")
    with open(os.path.join(d, "qapi.dict"), "w") as f:
        f.write("\n".join(toks + [json.dumps('"%s"' % n)
                                  for n in sorted(names)]) + "\n")


for gen in (wire, return_path, ctl, state, jsonstream, json_, qapi, qmp, dicts):
    gen()
