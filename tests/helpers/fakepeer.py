#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Scripted mig peers speaking the wire protocol (man/mig-protocol.7), for
tests of what an engine does with peers that are silent, out of place or
hostile.

  fakepeer.py dest URI               answer every hello with the same UUID
                                      and role, then say nothing
  fakepeer.py source URI UUID         open a recovery (RESUME) main channel
                                      with that UUID, read what comes, say
                                      nothing more
  fakepeer.py main URI THEN           open a new migration (a main hello of
                                      a random UUID); once answered: THEN is
                                      close (end the stream), badram (a
                                      RAM_INFO of 512-byte pages), badframe
                                      (a header of an unknown type) or stall
                                      (say nothing); then wait for the
                                      other side to close. Exit 3 if refused.
  fakepeer.py preempt URI UUID [--resume]
                                      a stranger's preempt channel of that
                                      migration: refused, print "refused
                                      CODE REASON" and exit 3; answered,
                                      write 0xa5 over the first 16 pages of
                                      guest RAM and exit 0
  fakepeer.py bulk URI UUID N [--resume]
                                      the same with a stranger's bulk
                                      channel N (1-7) of that migration
  fakepeer.py flood URI N [SECS]      hold N connections open, silent, each
                                      replaced by a new one after SECS
                                      (default 4), until killed
  fakepeer.py mitm LISTEN TARGET AFTER INJECT
                                      forward every connection from LISTEN to
                                      TARGET; once, right after the first
                                      AFTER message (a type name, either
                                      direction) on a main channel, send an
                                      INJECT message to the destination there
                                      too: a copy of the last SWITCHOVER or
                                      RAM_INFO seen, or an empty CANCEL,
                                      RESUME or EOS
--tls DIR: connect over TLS 1.3 with DIR's client-cert.pem and
client-key.pem, trusting DIR's ca-cert.pem (the peer's name unchecked); a
TLS failure, in the handshake or in the first read after it (TLS 1.3 checks
our certificate once we have sent), prints "refused tls REASON", exit 3.
Signals readiness once listening / connected / answered: a newline on
--ready-fd N (as the mig programs do), else "ready" on stdout. Exits after
120 s (flood and mitm: when killed).
"""
import os
import socket
import ssl
import struct
import sys
import threading
import time
import uuid as uuidlib

MAGIC, VERSION, HDR = 0x4D494757, 1, 8
ROLE_MAIN, ROLE_PREEMPT, ROLE_BULK, RESUME = 1, 2, 3, 0x1
TYPES = {"HELLO": 1, "REFUSE": 2, "RAM_INFO": 3, "PAGES": 4, "SWITCHOVER": 5,
         "EOS": 6, "CANCEL": 7, "RESUME": 8, "PING": 9, "DISCARD": 11, "REQ": 16,
         "COMPLETE": 17, "RESUME_ACK": 20}


def sock_for(uri, listen):
    kind, rest = uri.split(":", 1)
    if kind == "unix":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(rest) if listen else s.connect(rest)
    else:
        host, port = rest.rsplit(":", 1)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if listen:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, int(port)))
        else:
            s.connect((host, int(port)))
    if listen:
        s.listen(64)
    elif TLS_DIR is not None:
        s = tls_wrap(s)
    return s


TLS_DIR = None


def tls_wrap(s):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.load_verify_locations(os.path.join(TLS_DIR, "ca-cert.pem"))
    ctx.load_cert_chain(os.path.join(TLS_DIR, "client-cert.pem"),
                        os.path.join(TLS_DIR, "client-key.pem"))
    return ctx.wrap_socket(s)


def recv_exact(c, n):
    buf = b""
    while len(buf) < n:
        chunk = c.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def msg(t, payload=b""):
    return struct.pack(">II", t, len(payload)) + payload


def recv_msg(c):
    t, n = struct.unpack(">II", recv_exact(c, HDR))
    return t, recv_exact(c, n)


def hello(role, flags, uid):
    return msg(TYPES["HELLO"], struct.pack(">IIII", MAGIC, VERSION, role, flags) + uid)


def serve(c):
    try:
        h = recv_exact(c, HDR + 32)
        _, _, _, _, role, _ = struct.unpack(">IIIIII", h[:24])
        c.sendall(hello(role, 0, h[24:40]))
        while c.recv(65536):
            pass  # swallow, never answer
    except (EOFError, OSError):
        pass


READY_FD = None


def ready():
    global READY_FD
    if READY_FD is None:
        print("ready", flush=True)
    else:
        os.write(READY_FD, b"\n")
        os.close(READY_FD)
        READY_FD = None


def drain(c, secs=120):
    """Read until the other side closes (or secs pass)."""
    c.settimeout(secs)
    try:
        while c.recv(65536):
            pass
    except (socket.timeout, OSError):
        pass


def answered(c):
    """The answer to our hello: True for a HELLO; a REFUSE exits 3."""
    t, p = recv_msg(c)
    if t == TYPES["REFUSE"]:
        code = struct.unpack(">I", p[:4])[0]
        print("refused %d %s" % (code, p[4:].decode(errors="replace")), flush=True)
        sys.exit(3)
    return t == TYPES["HELLO"]


def stranger_main(uri, then):
    c = sock_for(uri, False)
    c.settimeout(30)
    c.sendall(hello(ROLE_MAIN, 0, uuidlib.uuid4().bytes))
    if not answered(c):
        sys.exit("not answered with a hello")
    print("answered", flush=True)
    if then == "close":
        c.shutdown(socket.SHUT_WR)
    elif then == "badram":
        c.sendall(msg(TYPES["RAM_INFO"], struct.pack(">QII", 1 << 20, 512, 0)))
    elif then == "badframe":
        c.sendall(struct.pack(">II", 99, 16) + bytes(16))
    elif then != "stall":
        sys.exit("unknown THEN " + then)
    ready()
    drain(c)
    print("closed by the other side", flush=True)


def stranger_preempt(uri, uid, flags, role=ROLE_PREEMPT):
    c = sock_for(uri, False)
    c.settimeout(30)
    c.sendall(hello(role, flags, uid))
    if not answered(c):
        sys.exit("not answered with a hello")
    for page in range(16):
        c.sendall(msg(TYPES["PAGES"], struct.pack(">QII", page * 4096, 1, 0) +
                      b"\xa5" * 4096))
    print("accepted: wrote 16 pages", flush=True)
    c.close()


def flood(uri, n, secs):
    conns = []
    while True:
        while len(conns) < n:
            try:
                conns.append((time.monotonic(), sock_for(uri, False)))
            except OSError:
                time.sleep(0.1)
        if READY_FD is not None:
            ready()
        since, c = conns[0]
        time.sleep(max(0.0, since + secs - time.monotonic()))
        c.close()
        conns.pop(0)


def pipe(src, dst, frames):
    """Copy src to dst, whole messages: frames(buf) -> (out, rest)."""
    buf = b""
    try:
        while True:
            data = src.recv(1 << 20)
            if not data:
                break
            buf += data
            out, buf = frames(buf)
            dst.sendall(out)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class Mitm:
    def __init__(self, after, inject):
        self.name, self.after, self.inject = after, TYPES[after], inject
        self.lock = threading.Lock()
        self.due = self.done = False
        self.seen = {}

    def injected(self):
        if self.inject in ("SWITCHOVER", "RAM_INFO"):
            return msg(TYPES[self.inject], self.seen[TYPES[self.inject]])
        return msg(TYPES[self.inject])

    def frames(self, conn, to_dest):
        """A parser for one direction of connection conn (a dict whose
        "main" the source's hello sets)."""
        def parse(buf):
            out = b""
            while True:
                with self.lock:
                    if to_dest and conn.get("main") and self.due and not self.done:
                        self.done = True
                        out += self.injected()
                        print("injected %s after %s" % (self.inject, self.name),
                              flush=True)
                if len(buf) < HDR:
                    break
                t, n = struct.unpack(">II", buf[:HDR])
                if len(buf) < HDR + n:
                    break
                frame, buf = buf[:HDR + n], buf[HDR + n:]
                out += frame
                if to_dest and "main" not in conn:
                    conn["main"] = struct.unpack(">I", frame[HDR + 8:HDR + 12])[0] == ROLE_MAIN
                    continue
                if to_dest:
                    self.seen[t] = frame[HDR:]
                with self.lock:
                    if conn.get("main") and t == self.after:
                        self.due = True
            return out, buf
        return parse

    def serve(self, c, target):
        try:
            t = sock_for(target, False)
        except OSError:
            c.close()
            return
        conn = {}
        threading.Thread(target=pipe, args=(t, c, self.frames(conn, False)),
                         daemon=True).start()
        pipe(c, t, self.frames(conn, True))


def main():
    try:
        run(sys.argv[1:])
    except ssl.SSLError as e:
        if TLS_DIR is None:
            raise
        print("refused tls %s" % (e.reason or e), flush=True)
        sys.exit(3)


def run(args):
    global READY_FD, TLS_DIR
    if "--ready-fd" in args:
        i = args.index("--ready-fd")
        READY_FD = int(args[i + 1])
        del args[i:i + 2]
    if "--tls" in args:
        i = args.index("--tls")
        TLS_DIR = args[i + 1]
        del args[i:i + 2]
    mode, uri = args[0], args[1]
    if mode == "main":
        return stranger_main(uri, args[2])
    if mode == "preempt":
        return stranger_preempt(uri, uuidlib.UUID(args[2]).bytes,
                                RESUME if "--resume" in args else 0)
    if mode == "bulk":
        return stranger_preempt(uri, uuidlib.UUID(args[2]).bytes,
                                int(args[3]) << 8 | (RESUME if "--resume" in args else 0),
                                ROLE_BULK)
    if mode == "flood":
        return flood(uri, int(args[2]), float(args[3]) if len(args) > 3 else 4)
    if mode == "mitm":
        m = Mitm(args[3], args[4])
        ls = sock_for(uri, True)
        ready()
        while True:
            c, _ = ls.accept()
            threading.Thread(target=m.serve, args=(c, args[2]), daemon=True).start()
    if mode == "dest":
        ls = sock_for(uri, True)
        ready()
        ls.settimeout(120)
        try:
            while True:
                c, _ = ls.accept()
                threading.Thread(target=serve, args=(c,), daemon=True).start()
        except socket.timeout:
            return
    uid = uuidlib.UUID(args[2]).bytes
    c = sock_for(uri, False)
    c.sendall(hello(ROLE_MAIN, RESUME, uid))
    ready()
    drain(c)


if __name__ == "__main__":
    main()
