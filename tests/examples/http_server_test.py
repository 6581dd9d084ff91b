#!/usr/bin/env python3
"""Drives examples/http_server with Python's sockets: keep-alive, pipelining, requests split
into many packets, the error statuses, bodies, HTTP/1.0, the idle timeout and the graceful stop.

usage: http_server_test.py PATH_TO_HTTP_SERVER
Every wait is bounded (harness.TIMEOUT seconds, a socket timeout); a failure prints what was
expected and exits 1.
"""
import os
import signal
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import fail  # noqa: E402

HELLO = b"Hello, world!"


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def header(self, name):
        return self.headers.get(name.lower())


class Client:
    """A blocking connection that reads responses one at a time (bounded by a socket
    timeout), keeping what follows one for the next."""

    def __init__(self, server, timeout=harness.TIMEOUT):
        self.sock = socket.create_connection((server.host, server.port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _more(self, what):
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            fail("no %s within %s s (have %r)" % (what, self.sock.gettimeout(), self.buf[:200]))
        if not chunk:
            fail("connection ended before %s (have %r)" % (what, self.buf[:200]))
        self.buf += chunk

    def response(self, head_only=False):
        while b"\r\n\r\n" not in self.buf:
            self._more("a response head")
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or parts[0] != "HTTP/1.1":
            fail("bad status line %r" % lines[0])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        status = int(parts[1])
        length = 0 if head_only or status == 100 else int(headers.get("content-length", "-1"))
        if length < 0:
            fail("response without Content-Length: %r" % head)
        while len(self.buf) < length:
            self._more("a response body of %d bytes" % length)
        body, self.buf = self.buf[:length], self.buf[length:]
        return Response(status, headers, body)

    def expect_eof(self, what):
        """The server closes the connection (after any bytes already buffered)."""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                fail("%s: the connection was not closed within %s s"
                     % (what, self.sock.gettimeout()))
            except ConnectionResetError:
                return
            if not chunk:
                return
            self.buf += chunk

    def close(self):
        self.sock.close()


def get(path="/", extra="", version="1.1"):
    return ("GET %s HTTP/%s\r\nHost: test\r\n%s\r\n" % (path, version, extra)).encode()


def post(path, body, extra=""):
    return (("POST %s HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n%s\r\n"
             % (path, len(body), extra)).encode() + body)


def expect_hello(r, what):
    if r.status != 200 or r.body != HELLO or r.header("content-length") != "13":
        fail("%s: expected 200 %r, got %d %r %r" % (what, HELLO, r.status, r.headers, r.body))


def expect_status(r, status, what):
    if r.status != status:
        fail("%s: expected %d, got %d %r" % (what, status, r.status, r.body))


def test_keep_alive(server):
    c = Client(server)
    for i in range(3):
        c.send(get())
        r = c.response()
        expect_hello(r, "request %d on one connection" % i)
        if r.header("connection") != "keep-alive":
            fail("HTTP/1.1 response without Connection: keep-alive: %r" % r.headers)
    c.send(get(extra="Connection: close\r\n"))
    r = c.response()
    expect_hello(r, "Connection: close request")
    if r.header("connection") != "close":
        fail("expected Connection: close, got %r" % r.headers)
    c.expect_eof("after Connection: close")
    c.close()


def test_pipelining(server):
    c = Client(server)
    batch = b""
    expected = []
    for i in range(30):
        if i % 3 == 0:
            batch += get()
            expected.append((200, HELLO))
        elif i % 3 == 1:
            body = b"body %d" % i
            batch += post("/echo", body)
            expected.append((200, body))
        else:
            batch += get("/missing/%d" % i)
            expected.append((404, None))
    c.send(batch)  # all in one send
    for i, (status, body) in enumerate(expected):
        r = c.response()
        expect_status(r, status, "pipelined request %d" % i)
        if body is not None and r.body != body:
            fail("pipelined request %d: body %r, expected %r" % (i, r.body, body))
    c.close()


def test_dribbled(server):
    c = Client(server)
    for b in post("/echo", b"dribbled body", "User-Agent: byte-by-byte\r\n"):
        c.send(bytes([b]))
    r = c.response()
    if r.status != 200 or r.body != b"dribbled body":
        fail("dribbled request: got %d %r" % (r.status, r.body))
    c.close()


def test_crlf_split(server):
    c = Client(server)
    for part in (b"GET / HTTP/1.1\r", b"\nHost: test\r", b"\n\r", b"\n"):
        c.send(part)
    expect_hello(c.response(), "request with its CRLFs split across packets")
    c.close()


def test_errors(server):
    cases = [
        (b"GARBAGE\r\n\r\n", 400, "no target or version"),
        (b"GET / HTTP/1.1\r\nHost: test\r\nContent-Length: 12a\r\n\r\n", 400, "bad Content-Length"),
        (b"GET / HTTP/1.1\r\nHost: test\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400,
         "Content-Length overflow"),
        (b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
         400, "disagreeing Content-Lengths"),
        (b"GET / HTTP/1.1\r\n\r\n", 400, "no Host"),
        (b"GET / HTTP/1.1\r\nHost : test\r\n\r\n", 400, "space before the colon"),
        (b"GET / HTTP/1.1\r\nHost: test\r\n folded\r\n\r\n", 400, "obs-fold"),
        (b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 2000000\r\n\r\n", 413,
         "body over the cap"),
        (b"GET / HTTP/1.1\r\nHost: test\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431,
         "head over 8 KiB"),
        (b"GET / HTTP/1.1\r\nHost: test\r\n" + b"X-A: b\r\n" * 70 + b"\r\n", 431,
         "too many headers"),
        (b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
         501, "chunked body"),
        (b"GET / HTTP/2.0\r\nHost: test\r\n\r\n", 505, "HTTP/2.0"),
    ]
    for request, status, what in cases:
        c = Client(server)
        c.send(get())  # a good request first: it is answered before the bad one
        expect_hello(c.response(), "request before %s" % what)
        c.send(request)
        r = c.response()
        expect_status(r, status, what)
        if r.header("connection") != "close":
            fail("%s: the error response says Connection %r" % (what, r.header("connection")))
        c.expect_eof(what)
        c.close()


def test_bodies(server):
    c = Client(server)
    # Longer than the server's buffer: streamed through it in pieces.
    big = bytes((i * 7 + i // 251) % 256 for i in range(300 * 1024))
    for body in (b"", b"x", b"small body", big):
        c.send(post("/echo", body))
        r = c.response()
        if r.status != 200 or r.body != body:
            fail("echo of %d bytes: got %d, %d bytes" % (len(body), r.status, len(r.body)))
    # A body on another route is read and dropped; the connection goes on.
    c.send(post("/", b"ignored" * 1000) + get())
    expect_status(c.response(), 405, "POST /")
    expect_hello(c.response(), "GET after a dropped body")
    c.send(b"HEAD / HTTP/1.1\r\nHost: test\r\n\r\n")
    r = c.response(head_only=True)
    if r.status != 200 or r.header("content-length") != "13":
        fail("HEAD /: got %d %r" % (r.status, r.headers))
    expect_hello((c.send(get()), c.response())[1], "GET after HEAD")
    # Expect: 100-continue: the interim response comes before the body is sent.
    c.send(b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    expect_status(c.response(), 100, "Expect: 100-continue")
    c.send(b"hello")
    r = c.response()
    if r.status != 200 or r.body != b"hello":
        fail("body after 100 Continue: got %d %r" % (r.status, r.body))
    c.close()


def test_http10(server):
    c = Client(server)
    c.send(get(version="1.0"))
    r = c.response()
    expect_hello(r, "HTTP/1.0 request")
    if r.header("connection") != "close":
        fail("HTTP/1.0 response says Connection %r" % r.header("connection"))
    c.expect_eof("after an HTTP/1.0 request")
    c.close()
    c = Client(server)
    for i in range(2):
        c.send(get(version="1.0", extra="Connection: keep-alive\r\n"))
        r = c.response()
        expect_hello(r, "HTTP/1.0 keep-alive request %d" % i)
        if r.header("connection") != "keep-alive":
            fail("HTTP/1.0 keep-alive response says Connection %r" % r.header("connection"))
    c.close()


def test_idle_timeout(exe):
    with harness.Server([exe, "127.0.0.1", "0"], env={"HTTP_SERVER_IDLE_MS": "500"}) as server:
        c = Client(server)
        c.send(get())
        expect_hello(c.response(), "request before idling")
        c.expect_eof("idle keep-alive connection with a 500 ms idle timeout")
        c.close()
        c = Client(server)
        c.send(b"GET / HTTP/1.1\r\nHost: te")  # stalls in the middle of a head
        c.expect_eof("connection stalled mid-head with a 500 ms idle timeout")
        c.close()
        server.check_running()


def test_stop(exe):
    with harness.Server([exe, "127.0.0.1", "0"]) as server:
        idle = Client(server)
        idle.send(get())
        expect_hello(idle.response(), "request before the stop")
        # In flight at the stop: a head half sent, and a body half sent (its response head and
        # the body's first half are echoed before the stop).
        head = Client(server)
        head.send(b"GET / HTTP/1.1\r\nHost: te")
        body = Client(server)
        body.send(b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\nhalf ")
        # `head` was accepted too then: it came first, and accept takes them in order.
        while not body.buf.endswith(b"half "):
            body._more("the first half of the echo")
        server.signal(signal.SIGTERM)
        # The server has seen the stop once it closes the idle connection.
        idle.expect_eof("idle keep-alive connection at SIGTERM")
        idle.close()
        head.send(b"st\r\n\r\n")
        r = head.response()
        expect_hello(r, "head in flight at SIGTERM")
        if r.header("connection") != "close":
            fail("response during the stop says Connection %r" % r.header("connection"))
        head.expect_eof("in-flight head's connection after its response")
        head.close()
        body.send(b"done!")
        r = body.response()
        if r.status != 200 or r.body != b"half done!":
            fail("body in flight at SIGTERM: got %d %r" % (r.status, r.body))
        body.expect_eof("in-flight body's connection after its response")
        body.close()
        status = server.wait()
        if status != 0:
            fail("exit status %d after SIGTERM, expected 0" % status)


def test_threads(exe):
    with harness.Server([exe, "127.0.0.1", "0", "2"]) as server:
        clients = [Client(server) for _ in range(8)]
        for c in clients:
            c.send(get() + post("/echo", b"two loops"))
        for c in clients:
            expect_hello(c.response(), "2 loops")
            if c.response().body != b"two loops":
                fail("2 loops: echo lost")
            c.close()
        server.signal(signal.SIGINT)
        if server.wait() != 0:
            fail("exit status after SIGINT with 2 loops is not 0")


def main():
    exe = sys.argv[1]
    with harness.Server([exe, "127.0.0.1", "0"]) as server:
        for test in (test_keep_alive, test_pipelining, test_dribbled, test_crlf_split,
                     test_errors, test_bodies, test_http10):
            test(server)
            server.check_running()
            print("ok", test.__name__, flush=True)
    for test in (test_idle_timeout, test_stop, test_threads):
        test(exe)
        print("ok", test.__name__, flush=True)


if __name__ == "__main__":
    try:
        main()
    except harness.TestFailure as e:
        print("FAIL:", e)
        sys.exit(1)
