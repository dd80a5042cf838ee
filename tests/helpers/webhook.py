#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A webhook endpoint for tests of --notify: a tiny HTTP server on loopback
that records what it is POSTed, or plays a dead endpoint.

  webhook.py PORT LOGFILE [--mode ok|refuse-after-N|hang] [--ready-fd FD]

  ok              every POST body is appended to LOGFILE as one line (and
                  flushed at once), answered 204 No Content. The default.
  refuse-after-N  the first N POSTs as in mode ok, then the listening socket
                  is closed, so every later connection is refused;
                  refuse-after-0 refuses from the start (like a port where
                  nothing listens, but with the port kept by this process).
  hang            every connection is accepted, its request read (and its
                  body logged as in mode ok), then never answered: the
                  handler sleeps until the process is killed. The worst kind
                  of dead endpoint: TCP says all is well, HTTP never does.

--ready-fd FD: write a newline to FD once listening, then close it.
SIGTERM and SIGINT exit at once with status 0 (hanging handlers included).
Each request also goes to stderr, one line, for the test's log.
"""
import argparse
import http.server
import os
import re
import signal
import sys
import threading
import time


def log(msg):
    sys.stderr.write("webhook: %s\n" % msg)
    sys.stderr.flush()


def parse_mode(arg):
    if arg in ("ok", "hang"):
        return arg, None
    m = re.fullmatch(r"refuse-after-(\d+)", arg)
    if m:
        return "refuse", int(m.group(1))
    raise argparse.ArgumentTypeError("bad mode '%s' (ok, refuse-after-N, hang)" % arg)


class Hook:
    """What the handlers share: the log file, the mode, the POST count."""

    def __init__(self, logfile, mode, limit):
        self.out = open(logfile, "ab")
        self.mode = mode
        self.limit = limit
        self.count = 0
        self.lock = threading.Lock()
        self.refuse = threading.Event()  # set: close the listener now

    def record(self, body):
        """Log one body; False once the refuse limit is reached."""
        with self.lock:
            if self.mode == "refuse" and self.count >= self.limit:
                return False
            self.count += 1
            self.out.write(body.replace(b"\n", b" ").rstrip() + b"\n")
            self.out.flush()
            if self.mode == "refuse" and self.count >= self.limit:
                self.refuse.set()
            return True


class Handler(http.server.BaseHTTPRequestHandler):
    hook = None  # set in main()

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n > 0 else b""
        if not self.hook.record(body):
            # a connection accepted before the listener closed
            self.close_connection = True
            return
        if self.hook.mode == "hang":
            while True:
                time.sleep(3600)
        self.send_response(204)
        self.end_headers()

    def log_message(self, fmt, *args):
        log("%s %s" % (self.address_string(), fmt % args))


def main():
    ap = argparse.ArgumentParser(description="test webhook endpoint")
    ap.add_argument("port", type=int)
    ap.add_argument("logfile")
    ap.add_argument("--mode", type=parse_mode, default=("ok", None))
    ap.add_argument("--ready-fd", type=int)
    a = ap.parse_args()

    # exit now, whatever the handler threads do: a hanging one must not
    # hold the process, and ThreadingHTTPServer.server_close() would join it
    def stop(_sig, _frame):
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    hook = Hook(a.logfile, *a.mode)
    Handler.hook = hook
    http.server.ThreadingHTTPServer.allow_reuse_address = True
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.daemon_threads = True
    if hook.mode == "refuse" and hook.limit == 0:
        hook.refuse.set()
    else:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    if a.ready_fd is not None:
        os.write(a.ready_fd, b"\n")
        os.close(a.ready_fd)
    log("listening on 127.0.0.1:%d, mode %s" % (a.port, a.mode[0]))
    hook.refuse.wait()
    if hook.mode == "refuse":
        if hook.limit:
            srv.shutdown()
        srv.socket.close()
        log("listener closed after %d POSTs: refusing from now on" % hook.count)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
