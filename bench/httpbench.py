"""What bench/scaling.py and bench/http_vs_nginx.py share: starting an evco HTTP server or nginx
on a free loopback port, stopping it, and loading it with wrk.

Python 3 standard library only; wrk and nginx are Debian packages (apt-get install wrk
nginx-light), needed by the benchmarks only.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

START_WAIT = 10.0


def fail(msg):
    print("FAILED:", msg)
    sys.exit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc):
    deadline = time.monotonic() + START_WAIT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)  # polling a port a child process opens: no event to wait for
    return False


class Evco:
    """An evco example server run as `exe 127.0.0.1 PORT LOOPS`; SIGTERM stops it."""

    def __init__(self, exe, loops, label="evco"):
        self.name = "%s %d loop%s" % (label, loops, "s" if loops > 1 else "")
        self.exe, self.loops = exe, loops

    def start(self):
        self.port = free_port()
        self.p = subprocess.Popen([self.exe, "127.0.0.1", str(self.port), str(self.loops)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return wait_listening(self.port, self.p)

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(timeout=START_WAIT)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            fail("%s did not stop at SIGTERM" % self.name)


NGINX_CONF = """
worker_processes {workers};
daemon off;
master_process on;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 60s;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  server {{
    listen 127.0.0.1:{port} reuseport;
    location / {{
      default_type text/plain;
      return 200 "{body}";
    }}
  }}
}}
"""


class Nginx:
    """nginx from a generated config in a temporary directory: `workers` worker processes,
    each with its own `reuseport` socket, answering every request with 200 `body`."""

    def __init__(self, exe, workers, body="hello"):
        self.name = "nginx %d worker%s" % (workers, "s" if workers > 1 else "")
        self.exe, self.workers, self.body = exe, workers, body

    def start(self):
        self.dir = tempfile.mkdtemp(prefix="evco-bench-nginx-")
        self.port = free_port()
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(workers=self.workers, dir=self.dir, port=self.port,
                                      body=self.body))
        self.p = subprocess.Popen([self.exe, "-p", self.dir, "-c", conf, "-e",
                                   os.path.join(self.dir, "error.log")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return wait_listening(self.port, self.p)

    def stop(self):
        self.p.send_signal(signal.SIGTERM)  # fast shutdown
        try:
            self.p.wait(timeout=START_WAIT)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def start_or_fail(server):
    if not server.start():
        p = server.p
        err = p.stderr.read().decode(errors="replace") if p.poll() is not None else ""
        fail("%s did not start listening: %s" % (server.name, err))


def wrk(port, threads, connections, duration):
    """Requests/s of `wrk -tT -cC -dDs` on http://127.0.0.1:PORT/; fails on socket errors and
    non-2xx responses."""
    cmd = ["wrk", "-t%d" % threads, "-c%d" % connections, "-d%ds" % duration,
           "http://127.0.0.1:%d/" % port]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30).stdout
    m = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    if not m:
        fail("no Requests/sec in wrk's output: %r" % out)
    if "Socket errors" in out or "Non-2xx" in out:
        fail("wrk reports errors: %r" % out)
    return float(m.group(1))


def check_tools(tools):
    """`tools`: (name, path) pairs, each of which must be an executable."""
    for tool, path in tools:
        if not path or not os.access(path, os.X_OK):
            fail("%s not found (Debian: apt-get install wrk nginx-light; evco's servers: build "
                 "them, see the usage)" % tool)
