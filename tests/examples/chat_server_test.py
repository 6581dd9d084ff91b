#!/usr/bin/env python3
"""Drives examples/chat_server with real clients over loopback.

usage: chat_server_test.py PATH_TO_chat_server

1. four clients join by name (and one more, whose first line is no name, as guest<N>) and
   exchange lines: each receives every other's lines exactly once, in order, with the right
   name, and none its own;
2. a client that stops reading is disconnected once its socket and its queue are full, while
   the others go on receiving everything;
3. a line over the 4 KiB cap gets its sender disconnected, and nobody receives any of it;
4. SIGTERM with clients connected (one still to send its name): each is told and sees its
   stream end, and the server exits with status 0.
"""

import signal
import sys

from harness import TIMEOUT, LineClient, Server, TestFailure, fail, pump

MAX_LINE = 4096  # examples/chat_server.cpp's cap, "\n" included
QUEUED_LINES = 64  # and the lines it queues for a client
GREETING = "hello: the first line you send is your name"


class ChatClient(LineClient):
    """Sorts what it receives: server notices ("* ...") and (sender, text) chat lines."""

    def __init__(self, server, label, **kwargs):
        super().__init__(server.host, server.port, label, **kwargs)
        self.notices = []
        self.chat = []

    def line_received(self, line):
        if line.startswith("* "):
            self.notices.append(line[2:])
            return
        sender, sep, text = line.partition(": ")
        if not sep:
            fail(f"{self.label} received a line that is neither chat nor notice: {line!r}")
        self.chat.append((sender, text))

    def told(self, notice):
        return notice in self.notices


class Room:
    def __init__(self, server):
        self.server = server
        self.clients = []  # those connected

    def pump(self, done, what, timeout=TIMEOUT):
        pump(self.clients, done, what, timeout, self.server)

    def connect(self, label, **kwargs):
        c = ChatClient(self.server, label, **kwargs)
        self.clients.append(c)
        self.pump(lambda: c.told(GREETING), f"the greeting to {label}")
        return c

    def join(self, name_line, name, others, **kwargs):
        c = self.connect(name, **kwargs)
        c.send_line(name_line)
        welcome = f"welcome {name}, {others} others here"
        self.pump(lambda: c.told(welcome), f"'* {welcome}'")
        return c

    def drop(self, c):
        self.clients.remove(c)
        c.close()


def exchange(room, clients, count, tag, pad=0):
    """Each of `clients` sends `count` lines; waits until each has every line of the others,
    and checks that each arrived exactly once, in order, with its sender's name."""
    start = {c: len(c.chat) for c in clients}
    filler = "x" * pad
    want = [f"{tag} {i} {filler}" for i in range(count)]
    for c in clients:
        for line in want:
            c.send_line(line)
    expected = count * (len(clients) - 1)
    room.pump(lambda: all(len(c.chat) - start[c] >= expected for c in clients),
              f"{count} lines '{tag} ...' from each of {len(clients)} clients at the others")
    for c in clients:
        got = c.chat[start[c]:]
        if len(got) != expected:
            fail(f"{c.label} received {len(got)} lines, expected {expected}")
        for s in clients:
            from_s = [text for sender, text in got if sender == s.label]
            if s is c and from_s:
                fail(f"{c.label} received {len(from_s)} of its own lines")
            if s is not c and from_s != want:
                fail(f"{c.label} did not receive {s.label}'s '{tag}' lines exactly once and "
                     f"in order: {len(from_s)} of {count}")


def join_and_chat(room):
    names = ["alice", "bob", "carol", "dave"]
    fast = [room.join(name, name, i) for i, name in enumerate(names)]
    room.pump(lambda: all(c.told(f"{later} joined") for i, c in enumerate(fast)
                          for later in names[i + 1:]), "the notices of who joined later")

    # Connection 5's first line is not a name: it is guest5, and announced as it leaves.
    guest = room.join("not a name!", "guest5", len(fast))
    guest.send_line("hello from a guest")
    room.pump(lambda: all(("guest5", "hello from a guest") in c.chat for c in fast),
              "guest5's line at the others")
    room.drop(guest)
    room.pump(lambda: all(c.told("guest5 left") for c in fast), "'* guest5 left'")

    exchange(room, fast, 100, "hello")
    print(f"ok: {len(fast)} clients exchanged 100 lines each, each delivered once, in order")
    return fast


def kernel_send_buffer_max():
    """How far Linux lets a socket's send buffer grow (tcp_wmem's maximum): what the server's
    side of a connection can hold for a client that reads nothing."""
    try:
        with open("/proc/sys/net/ipv4/tcp_wmem") as f:
            return int(f.read().split()[2])
    except (OSError, ValueError, IndexError):
        return 4 << 20


def slow_client(room, fast):
    # A small receive buffer, so that little fills its side of the connection.
    slow = room.join("slow", "slow", len(fast), rcvbuf=4096)
    slow.reading = False

    # Bursts of 64 lines of 1 KB from each fast client, each delivered in full to the other
    # fast ones, until the server has dropped the slow one. Before that, the server's socket
    # buffer, the small one of slow and its 64 lines must fill up: twice that, at most.
    kicked = f"slow left (too slow: {QUEUED_LINES} lines queued)"
    burst = len(fast) * QUEUED_LINES * 1024
    cap = 2 * (kernel_send_buffer_max() + (1 << 20))
    bursts = 0
    while not all(c.told(kicked) for c in fast):
        if bursts * burst >= cap:
            fail(f"slow was not disconnected after {bursts} bursts of {burst >> 10} KB "
                 f"(it read {slow.received} bytes before it stopped reading)")
        exchange(room, fast, QUEUED_LINES, f"burst{bursts}", pad=1000)
        bursts += 1
    exchange(room, fast, QUEUED_LINES, "after", pad=1000)
    print(f"ok: slow was disconnected after {bursts} bursts of {burst >> 10} KB; the others "
          f"received every line meanwhile")

    # However much is still on its way to it, its stream ends: a clean end or a reset.
    slow.reading = True
    room.pump(lambda: slow.ended is not None, "the end of slow's stream once it reads again")
    sent = bursts * len(fast) * QUEUED_LINES
    if len(slow.chat) >= sent:
        fail(f"slow received all {sent} lines sent to it: it was not cut off")
    print(f"ok: slow's stream ended ({slow.ended}) after {len(slow.chat)} of {sent} lines")
    room.drop(slow)


def long_line(room, fast):
    big = room.join("big", "big", len(fast))
    big.send("y" * (MAX_LINE + 1000) + "\n")
    room.pump(lambda: big.ended is not None, "big's disconnection after its long line")
    bye = f"line longer than {MAX_LINE} bytes, bye"
    if not big.told(bye):
        fail(f"big was not told '* {bye}': got {big.notices}")
    left = f"big left (sent a line longer than {MAX_LINE} bytes)"
    room.pump(lambda: all(c.told(left) for c in fast), f"'* {left}' at the others")
    for c in fast:
        if any(sender == "big" for sender, _ in c.chat):
            fail(f"{c.label} received a line from big")
    room.drop(big)
    exchange(room, fast, 20, "still")
    print(f"ok: a line over {MAX_LINE} bytes disconnected its sender ({big.ended}), "
          f"and only it")


def terminate(room, fast):
    quiet = room.connect("quiet")  # has not sent its name yet
    everyone = fast + [quiet]
    room.server.signal(signal.SIGTERM)
    # The server exits meanwhile: no liveness check in this pump.
    pump(everyone, lambda: all(c.ended is not None for c in everyone),
         "every client's end of stream after SIGTERM")
    for c in everyone:
        if not c.told("server shutting down"):
            fail(f"{c.label} was not told that the server shuts down: got {c.notices}")
    status = room.server.wait(timeout=5)
    if status != 0:
        fail(f"chat_server exited with status {status} after SIGTERM, expected 0")
    print(f"ok: SIGTERM with {len(everyone)} clients connected: each was told, and the "
          f"server exited with status 0")
    for c in everyone:
        c.close()


def main():
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} PATH_TO_chat_server", file=sys.stderr)
        return 2
    try:
        with Server([sys.argv[1], "127.0.0.1", "0"]) as server:
            room = Room(server)
            fast = join_and_chat(room)
            slow_client(room, fast)
            long_line(room, fast)
            terminate(room, fast)
    except TestFailure as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
