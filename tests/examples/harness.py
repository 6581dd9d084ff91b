"""Helpers for the tests that drive the example programs with real clients over loopback.

Python 3 standard library only. Nothing sleeps to synchronise: every wait is a select() for
the event that proves the state a test needs, bounded by a deadline, and fails with a message
that says what did not happen in time.
"""

import os
import select
import socket
import subprocess
import time

TIMEOUT = 10.0  # seconds, for any one expected event


class TestFailure(Exception):
    pass


def fail(message):
    raise TestFailure(message)


class Server:
    """An example program started with `argv`, which prints `listening on IP:PORT` on stdout
    before anything else; its stderr goes to ours, so that the test log shows it. `env` holds
    variables set for it on top of ours."""

    def __init__(self, argv, timeout=TIMEOUT, env=None):
        self.argv = argv
        # `env`: variables to set on top of ours.
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     env=dict(os.environ, **env) if env else None)
        line = self._first_line(timeout)
        prefix = b"listening on "
        if not line.startswith(prefix):
            self.kill()
            fail(f"{argv[0]} printed {line!r}, expected 'listening on IP:PORT'")
        host, _, port = line[len(prefix):].decode().strip().rpartition(":")
        self.host = host.strip("[]")
        self.port = int(port)

    def _first_line(self, timeout):
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        got = b""
        while b"\n" not in got:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                fail(f"{self.argv[0]} printed no 'listening on' line within {timeout} s")
            readable, _, _ = select.select([fd], [], [], left)
            if readable:
                chunk = os.read(fd, 4096)
                if not chunk:
                    status = self.proc.wait(timeout)
                    fail(f"{self.argv[0]} exited with status {status} before listening")
                got += chunk
        return got.split(b"\n", 1)[0]

    def check_running(self):
        status = self.proc.poll()
        if status is not None:
            fail(f"{self.argv[0]} exited early, with status {status}")

    def signal(self, sig):
        self.check_running()
        self.proc.send_signal(sig)

    def wait(self, timeout=TIMEOUT):
        """The exit status, which must come within `timeout`."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            fail(f"{self.argv[0]} did not exit within {timeout} s")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()


class LineClient:
    """A non-blocking TCP client that queues what it sends and splits what it receives into
    lines; pump() moves the bytes. `ended` turns 'eof' or 'reset' when the server ends the
    connection. With `reading` False it leaves what arrives in its socket."""

    def __init__(self, host, port, label, rcvbuf=None, timeout=TIMEOUT):
        self.label = label
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        if rcvbuf is not None:
            # Before connect(), so that the window the server sees is small from the start.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.sock.setblocking(False)
        self.out = bytearray()
        self.partial = bytearray()
        self.lines = []  # every complete line received, decoded, without its "\n"
        self.received = 0  # bytes
        self.ended = None
        self.reading = True

    def fileno(self):
        return self.sock.fileno()

    def send(self, data):
        self.out += data.encode() if isinstance(data, str) else data

    def send_line(self, text):
        self.send(text + "\n")

    def close(self):
        self.sock.close()
        self.ended = self.ended or "closed"

    def on_readable(self):
        try:
            data = self.sock.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return
        except ConnectionResetError:
            self.ended = "reset"
            return
        if not data:
            self.ended = "eof"
            return
        self.received += len(data)
        self.partial += data
        if b"\n" in data:
            *complete, rest = self.partial.split(b"\n")
            self.partial = bytearray(rest)
            for line in complete:
                self.line_received(line.decode(errors="replace"))

    def line_received(self, line):
        """Called with each complete line, without its "\n"; keeps it in `lines`."""
        self.lines.append(line)

    def on_writable(self):
        try:
            n = self.sock.send(self.out)
        except (BlockingIOError, InterruptedError):
            return
        except (BrokenPipeError, ConnectionResetError):
            self.ended = "reset"
            self.out.clear()
            return
        del self.out[:n]


def pump(clients, done, what, timeout=TIMEOUT, server=None):
    """Moves bytes for `clients` until `done()` holds; fails after `timeout` seconds, or as soon
    as `server` has exited."""
    deadline = time.monotonic() + timeout
    while not done():
        if server is not None:
            server.check_running()
        left = deadline - time.monotonic()
        if left <= 0:
            fail(f"timed out after {timeout} s waiting for {what}")
        readers = [c for c in clients if c.reading and c.ended is None]
        writers = [c for c in clients if c.out and c.ended is None]
        if not readers and not writers:
            fail(f"every connection ended while waiting for {what}")
        readable, writable, _ = select.select(readers, writers, [], min(left, 0.5))
        for c in writable:
            c.on_writable()
        for c in readable:
            c.on_readable()
