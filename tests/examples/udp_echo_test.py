#!/usr/bin/env python3
"""Drives examples/udp_echo with Python's sockets over loopback.

usage: udp_echo_test.py PATH_TO_udp_echo

1. over IPv4 (and IPv6 where the loopback has it), two clients send datagrams of every size
   (empty, one byte, 1400 bytes, the largest UDP payload): each gets exactly its own back,
   whole and in order;
2. SIGTERM and SIGINT stop it with status 0.
Every wait is bounded (harness.TIMEOUT); a failure says what did not happen and exits 1.
"""

import os
import signal
import socket
import sys

from harness import TIMEOUT, Server, TestFailure, fail

# The largest UDP payloads: 65535 minus the UDP header and the IPv4 header (IPv6's header is
# not counted in its payload length).
LARGEST = {socket.AF_INET: 65507, socket.AF_INET6: 65527}


def has_ipv6():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def client(family, host):
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.bind((host, 0))
    s.settimeout(TIMEOUT)
    return s


def echoes(server, family):
    a, b = client(family, server.host), client(family, server.host)
    to = (server.host, server.port)
    sizes = [0, 1, 1400, LARGEST[family]]
    sent = {a: [], b: []}
    for i, size in enumerate(sizes):
        for c in (a, b):
            data = os.urandom(size)
            c.sendto(data, to)
            sent[c].append(data)
    for c in (a, b):
        for i, want in enumerate(sent[c]):
            try:
                data, peer = c.recvfrom(65536)
            except socket.timeout:
                fail(f"no echo of datagram {i} ({len(want)} bytes) within {TIMEOUT} s")
            if peer[:2] != to:
                fail(f"echo came from {peer}, expected {to}")
            if data != want:
                fail(f"echo {i}: {len(data)} bytes differ from the {len(want)} sent")
    # Nothing else arrives: a marker sent last comes back next, so each got exactly its own.
    for c in (a, b):
        c.sendto(b"marker", to)
        data, _ = c.recvfrom(65536)
        if data != b"marker":
            fail(f"an extra datagram of {len(data)} bytes arrived before the marker")
        c.close()
    print(f"ok: {socket.AddressFamily(family).name}: {len(sizes)} sizes up to "
          f"{sizes[-1]} bytes echoed to two clients, each its own")


def stops(exe, sig):
    with Server([exe, "127.0.0.1", "0"]) as server:
        # One echo first: udp_echo watches the signals before it echoes.
        c = client(socket.AF_INET, server.host)
        c.sendto(b"up?", (server.host, server.port))
        if c.recvfrom(16)[0] != b"up?":
            fail("the first echo differs")
        c.close()
        server.signal(sig)
        status = server.wait()
        if status != 0:
            fail(f"udp_echo exited with status {status} after {sig.name}, expected 0")
    print(f"ok: {sig.name} stops it with status 0")


def main():
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} PATH_TO_udp_echo", file=sys.stderr)
        return 2
    exe = sys.argv[1]
    try:
        with Server([exe, "127.0.0.1", "0"]) as server:
            echoes(server, socket.AF_INET)
        if has_ipv6():
            with Server([exe, "::1", "0"]) as server:
                echoes(server, socket.AF_INET6)
        else:
            print("skipped: no IPv6 loopback")
        stops(exe, signal.SIGTERM)
        stops(exe, signal.SIGINT)
    except TestFailure as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
