#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A mig peer that completes the hello exchange and then falls silent: it
holds the other side in postcopy-recover (or any state past a hello) so that
tests can check what gets it out (mig-pause, the link timeout).

  fakepeer.py dest URI               answer every hello with the same UUID
                                      and role, then say nothing
  fakepeer.py source URI UUID         open a recovery (RESUME) main channel
                                      with that UUID, read what comes, say
                                      nothing more
Signals readiness once listening / connected: a newline on --ready-fd N
(as the mig programs do), else "ready" on stdout. Exits after 120 s.
"""
import os
import socket
import struct
import sys
import threading
import time
import uuid as uuidlib

MAGIC, VERSION, HELLO, HDR = 0x4D494757, 1, 1, 8
ROLE_MAIN, RESUME = 1, 0x1


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
        s.listen(8)
    return s


def recv_exact(c, n):
    buf = b""
    while len(buf) < n:
        chunk = c.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def hello(role, flags, uid):
    return struct.pack(">IIIIII", HELLO, 32, MAGIC, VERSION, role, flags) + uid


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
    if READY_FD is None:
        ready()
    else:
        os.write(READY_FD, b"\n")
        os.close(READY_FD)


def main():
    global READY_FD
    args = sys.argv[1:]
    if "--ready-fd" in args:
        i = args.index("--ready-fd")
        READY_FD = int(args[i + 1])
        del args[i:i + 2]
    mode, uri = args[0], args[1]
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
    c.settimeout(120)
    try:
        while c.recv(65536):
            pass
    except (socket.timeout, OSError):
        pass


if __name__ == "__main__":
    main()
