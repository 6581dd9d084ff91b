#!/usr/bin/env python3
"""examples/http_server on 1 loop against nginx with 1 worker, under the same wrk load, at
several connection counts.

usage: bench/http_vs_nginx.py [--http-server PATH] [--reps N] [--duration S]
                              [--connections 1,50,200] [--wrk-threads T]

Both answer GET / with a 200 and the 13-byte body "Hello, world!" and the same headers as near
as can be (Server, Date, Content-Type: text/plain, Content-Length, Connection: keep-alive):
nginx from a generated config (`return 200 "Hello, world!"`, `default_type text/plain`,
access_log off, 1 worker). For every repetition each (server, connection count) runs
`wrk -tT -cC -dSs` once after a 1 s warm-up, the servers' order rotating; the load generator
shares the machine's cores with the server.

Prints the median requests/s (and min-max) of each, the ratio evco/nginx at each connection
count (of the medians, and of the best runs), and `RESULT name=... value=...` lines. Exits 1
when wrk reports socket errors or non-2xx responses, or a server does not start.
"""
import argparse
import os
import shutil
import statistics

from httpbench import Evco, Nginx, check_tools, start_or_fail, wrk

BODY = "Hello, world!"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--http-server", default="build-bench/examples/http_server")
    ap.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--connections", default="1,50,200")
    ap.add_argument("--wrk-threads", type=int, default=1)
    args = ap.parse_args()
    check_tools((("wrk", shutil.which("wrk")), ("nginx", args.nginx),
                 ("http_server", args.http_server)))
    conns = [int(c) for c in args.connections.split(",")]
    servers = [Evco(args.http_server, 1, "http_server"), Nginx(args.nginx, 1, BODY)]

    print("# %d cores; wrk -t%d -d%ds at %s connections, %d repetitions; load generator on the "
          "same cores" % (os.cpu_count(), args.wrk_threads, args.duration, args.connections,
                          args.reps))
    rps = {(s.name, c): [] for s in servers for c in conns}
    for rep in range(args.reps):
        order = servers[rep % len(servers):] + servers[:rep % len(servers)]
        for s in order:
            start_or_fail(s)
            try:
                for c in conns:
                    # wrk needs at least one connection per thread.
                    t = min(args.wrk_threads, c)
                    wrk(s.port, t, c, 1)  # warm-up
                    rps[(s.name, c)].append(wrk(s.port, t, c, args.duration))
                    print("  rep %d  %-18s c=%-4d %10.0f req/s"
                          % (rep + 1, s.name, c, rps[(s.name, c)][-1]), flush=True)
            finally:
                s.stop()

    print()
    print("%-18s %5s %12s %24s" % ("server", "conns", "median rps", "min-max"))
    med = {}
    for s in servers:
        for c in conns:
            v = rps[(s.name, c)]
            med[(s.name, c)] = statistics.median(v)
            print("%-18s %5d %12.0f %11.0f-%-12.0f" % (s.name, c, med[(s.name, c)], min(v), max(v)))
            print("RESULT name=%s_c%d value=%.0f unit=req/s"
                  % (s.name.split()[0], c, med[(s.name, c)]))
    print()
    evco, nginx = servers
    for c in conns:
        ratio = med[(evco.name, c)] / med[(nginx.name, c)]
        best = max(rps[(evco.name, c)]) / max(rps[(nginx.name, c)])
        print("evco / nginx at %3d connections: %.2fx (of the best runs: %.2fx)" % (c, ratio, best))
        print("RESULT name=evco_over_nginx_c%d value=%.3f unit=ratio" % (c, ratio))


if __name__ == "__main__":
    main()
