#!/usr/bin/env python3
"""Drives examples/echo_server with Python's sockets: echo, then the graceful stop.

usage: echo_server_test.py PATH_TO_ECHO_SERVER
Every wait is bounded (WAIT seconds); a failure prints what was expected and exits 1.
"""
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time

WAIT = 10.0


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


class Server:
    def __init__(self, exe, grace_ms, threads=None, address="127.0.0.1"):
        args = [exe, address, "0", str(grace_ms)]
        if threads is not None:
            args.append(str(threads))
        self.p = subprocess.Popen(args,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.err = b""
        line = self._readline(self.p.stdout)
        if not line.startswith("listening on "):
            fail("no 'listening on' line: %r" % line)
        self.endpoint = line[len("listening on "):].strip()
        if self.endpoint.startswith("unix:"):
            self.path = self.endpoint[len("unix:"):]
        else:
            self.port = int(line.rsplit(":", 1)[1])

    def _readline(self, pipe):
        deadline = time.monotonic() + WAIT
        buf = b""
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([pipe], [], [], left)[0]:
                fail("timed out reading the server's output")
            c = os.read(pipe.fileno(), 1)
            if not c:
                break
            buf += c
        return buf.decode()

    def wait_stderr(self, text):
        """Reads the server's stderr until `text` shows up."""
        deadline = time.monotonic() + WAIT
        while text.encode() not in self.err:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.p.stderr], [], [], left)[0]:
                fail("timed out waiting for %r on stderr; got %r" % (text, self.err))
            chunk = os.read(self.p.stderr.fileno(), 65536)
            if not chunk:
                fail("stderr closed before %r; got %r" % (text, self.err))
            self.err += chunk

    def connect(self):
        if self.endpoint.startswith("unix:"):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(WAIT)
            s.connect(self.path)
            return s
        return socket.create_connection(("127.0.0.1", self.port), timeout=WAIT)

    def exit_status(self, within):
        try:
            status = self.p.wait(timeout=within)
        except subprocess.TimeoutExpired:
            self.p.kill()
            fail("still running %.1f s after the stop signal" % within)
        rest = self.p.stderr.read()
        self.err += rest
        return status


def echo(s, data):
    s.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = s.recv(65536)
        if not chunk:
            fail("connection ended after %d of %d echoed bytes" % (len(got), len(data)))
        got += chunk
    if got != data:
        fail("echo differs")


def expect_eof(s):
    s.settimeout(WAIT)
    try:
        if s.recv(1) != b"":
            fail("expected the end of the stream")
    except socket.timeout:
        fail("the server did not end the connection")


def test_echo_and_stop_with_deadline(exe):
    srv = Server(exe, 300)
    a, b = srv.connect(), srv.connect()
    echo(a, b"hello")
    echo(b, os.urandom(200000))
    srv.wait_stderr("connected")
    srv.p.send_signal(signal.SIGTERM)
    srv.wait_stderr("SIGTERM received, 2 connection(s) open")
    started = time.monotonic()
    # Still served during the grace period ...
    echo(a, b"still there")
    # ... but nobody new is let in.
    try:
        socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT).close()
        fail("a connection was accepted after the stop signal")
    except ConnectionRefusedError:
        pass
    # Past the deadline, the connections left are ended, and the server exits with 0.
    expect_eof(a)
    expect_eof(b)
    if time.monotonic() - started < 0.25:
        fail("connections ended before the grace period")
    if srv.exit_status(WAIT) != 0:
        fail("exit status not 0; stderr: %r" % srv.err)
    if b"grace period over" not in srv.err or b"stopped" not in srv.err:
        fail("unexpected shutdown log: %r" % srv.err)


def test_stop_ends_early_when_clients_leave(exe):
    srv = Server(exe, 60000)  # a long grace period that must not be waited out
    a = srv.connect()
    echo(a, b"x")
    srv.p.send_signal(signal.SIGINT)
    srv.wait_stderr("SIGINT received, 1 connection(s) open")
    a.close()
    started = time.monotonic()
    if srv.exit_status(WAIT) != 0:
        fail("exit status not 0; stderr: %r" % srv.err)
    if time.monotonic() - started > WAIT / 2:
        fail("waited for the grace period although every client had left")


def test_sigusr1_dumps_parked_ops(exe):
    srv = Server(exe, 0)
    a = srv.connect()
    echo(a, b"x")
    srv.p.send_signal(signal.SIGUSR1)
    srv.wait_stderr("parked ops")
    srv.wait_stderr("read_some")
    srv.wait_stderr("in serve")  # clang 14 names it without its parameters
    srv.p.send_signal(signal.SIGTERM)
    expect_eof(a)  # a grace period of 0 ends the connection at once
    if srv.exit_status(WAIT) != 0:
        fail("exit status not 0; stderr: %r" % srv.err)


def test_two_threads_share_the_port_and_stop_together(exe):
    srv = Server(exe, 300, threads=2)
    srv.wait_stderr("2 loop(s)")
    # Each connection lands on one of the two SO_REUSEPORT listeners (the kernel hashes its
    # addresses): with 32 of them, both loops have some unless a 1 in 2**31 chance hits.
    clients = [srv.connect() for _ in range(32)]
    for i, c in enumerate(clients):
        echo(c, b"client %d" % i)
    srv.p.send_signal(signal.SIGUSR1)
    srv.wait_stderr("[*] end of dump")
    # Each loop's parked ops follow its "[*] loop N:" line.
    dump = srv.err.split(b"[*] loop 0:", 1)[1].split(b"[*] end of dump", 1)[0]
    per_loop = dump.split(b"[*] loop 1:")
    reads = [part.count(b"read_some") for part in per_loop]
    if min(reads) == 0 or sum(reads) != len(clients):
        fail("connections per loop (parked reads): %r; stderr: %r" % (reads, srv.err))
    srv.p.send_signal(signal.SIGTERM)
    srv.wait_stderr("SIGTERM received, 32 connection(s) open")
    echo(clients[0], b"still there")  # served during the grace period, on whichever loop
    try:
        socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT).close()
        fail("a connection was accepted after the stop signal")
    except ConnectionRefusedError:
        pass
    for c in clients:
        expect_eof(c)
    if srv.exit_status(WAIT) != 0:
        fail("exit status not 0; stderr: %r" % srv.err)
    if b"grace period over" not in srv.err or b"stopped" not in srv.err:
        fail("unexpected shutdown log: %r" % srv.err)


def test_unix_socket(exe):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "echo.sock")
        srv = Server(exe, 300, address="unix:" + path)
        if srv.endpoint != "unix:" + path:
            fail("listening on %r, not the path asked for" % srv.endpoint)
        a = srv.connect()
        echo(a, b"over a Unix socket")
        echo(a, os.urandom(200000))
        srv.p.send_signal(signal.SIGTERM)
        srv.wait_stderr("SIGTERM received, 1 connection(s) open")
        expect_eof(a)
        if srv.exit_status(WAIT) != 0:
            fail("exit status not 0; stderr: %r" % srv.err)
        if os.path.exists(path):
            fail("the server left its socket file behind")


def main():
    exe = sys.argv[1]
    for t in (test_echo_and_stop_with_deadline, test_stop_ends_early_when_clients_leave,
              test_sigusr1_dumps_parked_ops, test_two_threads_share_the_port_and_stop_together,
              test_unix_socket):
        t(exe)
        print("ok", t.__name__)


if __name__ == "__main__":
    main()
