#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A forwarding proxy for tests that need a link to misbehave on cue: the
Nth connection held silent for a while, refused, or every connection from
the Nth on refused (so that a second channel, e.g. mig's preempt channel,
can never be made while the first one works).

  proxy.py LISTEN_URI TARGET_URI [--hold N:SECS] [--hold-reply N:SECS]
           [--stall N:BYTES:SECS[:TIMES]] [--refuse N] [--refuse-from N] [--ready-fd FD]

URIs are tcp:HOST:PORT or unix:PATH. Connections are numbered from 1 in the
order they are accepted, whatever happens to them. Every accepted connection
is forwarded to TARGET_URI (a new connection per accepted one), except:

  --hold N:SECS    the Nth connection is accepted, then held silent for SECS
                   seconds, or until the proxy gets SIGUSR1 (so that a test
                   can end the hold when it is done, not after a guess):
                   nothing is read from it, the target is not even
                   connected; afterwards it is forwarded normally, bytes the
                   client sent meanwhile included. Repeatable.
  --hold-reply N:SECS[:BYTES]
                   the Nth connection is forwarded at once one way (what the
                   client sends reaches the target), but what the target
                   answers is held back, after its first BYTES (default 0),
                   for SECS seconds or until SIGUSR1, then forwarded: both
                   ends wait on each other, mid-handshake. Repeatable.
  --stall N:BYTES:SECS[:TIMES]
                   the Nth connection stalls SECS seconds after every BYTES
                   it forwards from the client, wherever that falls in the
                   stream (a link that loses a segment now and then and
                   waits out TCP's retransmission timeout), TIMES times at
                   most (default: for as long as it lasts). Repeatable.
  --refuse N       the Nth connection is closed right after accept.
                   Repeatable.
  --refuse-from N  every connection from the Nth on is closed right after
                   accept.
  --ready-fd FD    write a newline to FD once listening, then close it.

A forwarded connection ends both ways when either side closes (or fails):
what one side sent before closing is delivered to the other first.

Each connection's fate goes to stderr, one line each, for tests to count:
  proxy: connection N accepted | held S s | released | stalled S s |
         refused | closed
A stream socket listener is unlinked on exit (unix:). SIGTERM and SIGINT
are a clean stop, exit status 0; connection threads are daemons, so none
can keep the process alive.
"""
import argparse
import os
import signal
import socket
import sys
import threading
import time

BUF_BYTES = 65536  # per recv: large enough that a page run is one syscall


def log(msg):
    sys.stderr.write("proxy: %s\n" % msg)
    sys.stderr.flush()


def parse_uri(uri):
    kind, _, rest = uri.partition(":")
    if kind == "unix" and rest:
        return socket.AF_UNIX, rest
    if kind == "tcp":
        host, _, port = rest.rpartition(":")
        if host and port.isdigit():
            return socket.AF_INET, (host.strip("[]"), int(port))
    raise argparse.ArgumentTypeError("bad URI '%s' (tcp:HOST:PORT or unix:PATH)" % uri)


def parse_hold(arg):
    n, sep, secs = arg.partition(":")
    try:
        if sep and int(n) >= 1 and float(secs) >= 0:
            return int(n), float(secs)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError("--hold wants N:SECS, not '%s'" % arg)


def parse_hold_reply(arg):
    head, sep, after = arg.rpartition(":")
    if sep and head.count(":") == 1 and after.isdigit():
        return parse_hold(head) + (int(after),)
    return parse_hold(arg) + (0,)


def parse_stall(arg):
    parts = arg.split(":")
    try:
        if len(parts) in (3, 4) and int(parts[0]) >= 1 and int(parts[1]) >= 1 \
                and float(parts[2]) >= 0 and (len(parts) == 3 or int(parts[3]) >= 1):
            times = int(parts[3]) if len(parts) == 4 else None
            return int(parts[0]), (int(parts[1]), float(parts[2]), times)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError("--stall wants N:BYTES:SECS[:TIMES], not '%s'" % arg)


def positive(arg):
    try:
        if int(arg) >= 1:
            return int(arg)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError("'%s' is not a connection number (1, 2, ...)" % arg)


class Proxy:
    def __init__(self, opts):
        self.opts = opts
        self.target = opts.target
        self.holds = dict(opts.hold or [])
        self.reply_holds = {n: (secs, after)
                            for n, secs, after in opts.hold_reply or []}
        self.stalls = dict(opts.stall or [])
        self.refuse = set(opts.refuse or [])
        self.stopping = threading.Event()  # wakes held connections early
        self.release = threading.Event()   # SIGUSR1: end every hold now
        self.lock = threading.Lock()
        self.socks = set()                 # every open socket, closed on exit

    def track(self, s):
        with self.lock:
            self.socks.add(s)

    def close(self, s):
        with self.lock:
            self.socks.discard(s)
        try:
            s.close()
        except OSError:
            pass

    def shutdown_all(self):
        with self.lock:
            socks = list(self.socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.close(s)

    def refused(self, n):
        f = self.opts.refuse_from
        return n in self.refuse or (f is not None and n >= f)

    def hold(self, n, secs):
        """Wait SECS or until SIGUSR1; False if the proxy is stopping."""
        log("connection %d held %g s" % (n, secs))
        deadline = time.monotonic() + secs
        while not self.release.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            # short waits: a signal handler may set release
            self.stopping.wait(min(left, 0.05))
            if self.stopping.is_set():
                return False
        log("connection %d released" % n)
        return True

    def handle(self, n, client):
        try:
            secs = self.holds.get(n)
            if secs is not None and not self.hold(n, secs):
                return
            family, addr = self.target
            server = socket.socket(family, socket.SOCK_STREAM)
            self.track(server)
            try:
                server.connect(addr)
            except OSError as e:
                log("connection %d: cannot reach the target: %s" % (n, e))
                return
            done = threading.Event()
            threading.Thread(target=self.pump,
                             args=(client, server, done, n, self.stalls.get(n)),
                             daemon=True).start()
            if n in self.reply_holds:
                secs, after = self.reply_holds[n]
                if not self.forward(server, client, after) or \
                        not self.hold(n, secs):
                    return
            threading.Thread(target=self.pump, args=(server, client, done),
                             daemon=True).start()
            done.wait()
            # either side closed: end the other one too, both ways
            for s in (client, server):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.close(server)
        finally:
            self.close(client)
            log("connection %d closed" % n)

    @staticmethod
    def forward(a, b, nbytes):
        """Exactly nbytes from a to b; False if a closed first."""
        try:
            while nbytes > 0:
                data = a.recv(min(nbytes, BUF_BYTES))
                if not data:
                    return False
                b.sendall(data)
                nbytes -= len(data)
        except OSError:
            return False
        return True

    def pump(self, a, b, done, n=0, stall=None):
        every, secs, times = stall or (0, 0, None)
        left = every  # bytes until the next stall
        try:
            while True:
                data = a.recv(min(BUF_BYTES, left) if every else BUF_BYTES)
                if not data:
                    break
                b.sendall(data)
                left -= len(data)
                if every and left <= 0:
                    left = every
                    log("connection %d stalled %g s" % (n, secs))
                    if self.stopping.wait(secs):
                        break
                    if times is not None:
                        times -= 1
                        every = 0 if times == 0 else every
        except OSError:
            pass
        done.set()

    def serve(self, ls):
        n = 0
        while True:
            client, _ = ls.accept()
            n += 1
            if self.refused(n):
                client.close()
                log("connection %d refused" % n)
                continue
            self.track(client)
            log("connection %d accepted" % n)
            threading.Thread(target=self.handle, args=(n, client),
                             daemon=True).start()


def listen(uri):
    family, addr = uri
    ls = socket.socket(family, socket.SOCK_STREAM)
    if family == socket.AF_UNIX:
        try:
            os.unlink(addr)  # a stale socket from a killed run
        except FileNotFoundError:
            pass
    else:
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(addr)
    ls.listen(64)
    return ls


class Stop(Exception):
    pass


def on_signal(sig, frame):
    raise Stop()


def main():
    ap = argparse.ArgumentParser(
        prog="proxy.py",
        description="forward LISTEN_URI to TARGET_URI, misbehaving on cue")
    ap.add_argument("listen", type=parse_uri, metavar="LISTEN_URI")
    ap.add_argument("target", type=parse_uri, metavar="TARGET_URI")
    ap.add_argument("--hold", type=parse_hold, action="append", metavar="N:SECS")
    ap.add_argument("--hold-reply", type=parse_hold_reply, action="append",
                    metavar="N:SECS[:BYTES]")
    ap.add_argument("--stall", type=parse_stall, action="append",
                    metavar="N:BYTES:SECS[:TIMES]")
    ap.add_argument("--refuse", type=positive, action="append", metavar="N")
    ap.add_argument("--refuse-from", type=positive, metavar="N")
    ap.add_argument("--ready-fd", type=int, metavar="FD")
    opts = ap.parse_args()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    proxy = Proxy(opts)
    signal.signal(signal.SIGUSR1, lambda sig, frame: proxy.release.set())
    ls = None
    try:
        ls = listen(opts.listen)
        log("listening on %s, forwarding to %s" % (sys.argv[1], sys.argv[2]))
        if opts.ready_fd is not None:
            os.write(opts.ready_fd, b"\n")
            os.close(opts.ready_fd)
        proxy.serve(ls)
    except Stop:
        pass
    except OSError as e:
        log("error: %s" % e)
        return 1
    finally:
        # the signal handler only runs in this (main) thread; the others
        # are daemons blocked in recv or in a hold, woken here
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        proxy.stopping.set()
        if ls is not None:
            ls.close()
            if opts.listen[0] == socket.AF_UNIX:
                try:
                    os.unlink(opts.listen[1])
                except OSError:
                    pass
        proxy.shutdown_all()
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
