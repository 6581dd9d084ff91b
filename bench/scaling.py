#!/usr/bin/env python3
"""Servers on every core: requests/s of evco's http_hello on 1 and 2 loops, beside nginx with
1 and 2 workers, under the same wrk load from another process.

usage: bench/scaling.py [--http-hello PATH] [--reps N] [--duration S] [--connections C]
                        [--wrk-threads T] [--loops 1,2]

Each server answers a keep-alive GET with a 200 "hello": evco's bench/http_hello (loop_pool,
one SO_REUSEPORT listener per loop), and nginx from a generated config in a temporary
directory (worker_processes N, `listen ... reuseport` so that each worker has its own socket as
each evco loop does, `return 200 "hello"`, access_log off, not a daemon). For every repetition
each configuration runs `wrk -tT -cC -dSs` once, in an order that rotates; a server is started
once per configuration and warmed up for 1 s. The load generator shares the machine's cores
with the server: on a 2-core machine, 2 server threads and 2 wrk threads compete.

Prints the median requests/s (and min-max) of each, then the ratio N loops / 1 loop for both
(of the medians, and of the best runs: on a machine shared with other work, the least
disturbed figure), and `RESULT name=... value=...` lines for scripts. Exits 1 when wrk reports socket errors or
non-2xx responses, or a server does not start.
"""
import argparse
import os
import shutil
import statistics

from httpbench import Evco, Nginx, check_tools, start_or_fail, wrk


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--http-hello", default="build-bench/bench/http_hello")
    ap.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--loops", default="1,2", help="loop / worker counts, the first the base")
    args = ap.parse_args()
    check_tools((("wrk", shutil.which("wrk")), ("nginx", args.nginx),
                 ("http_hello", args.http_hello)))
    counts = [int(c) for c in args.loops.split(",")]
    servers = [Evco(args.http_hello, n) for n in counts] + [Nginx(args.nginx, n) for n in counts]

    print("# %d cores; wrk -t%d -c%d -d%ds, %d repetitions; load generator on the same cores"
          % (os.cpu_count(), args.wrk_threads, args.connections, args.duration, args.reps))
    rps = {s.name: [] for s in servers}
    for rep in range(args.reps):
        order = servers[rep % len(servers):] + servers[:rep % len(servers)]
        for s in order:
            start_or_fail(s)
            try:
                wrk(s.port, args.wrk_threads, args.connections, 1)  # warm-up
                rps[s.name].append(wrk(s.port, args.wrk_threads, args.connections, args.duration))
            finally:
                s.stop()
            print("  rep %d  %-16s %10.0f req/s" % (rep + 1, s.name, rps[s.name][-1]), flush=True)

    print()
    print("%-16s %12s %24s" % ("server", "median rps", "min-max"))
    med = {}
    for s in servers:
        v = rps[s.name]
        med[s.name] = statistics.median(v)
        print("%-16s %12.0f %11.0f-%-12.0f" % (s.name, med[s.name], min(v), max(v)))
        print("RESULT name=%s value=%.0f unit=req/s" % (s.name.replace(" ", "_"), med[s.name]))
    print()
    base = counts[0]
    for n in counts[1:]:
        for kind, group in (("evco", servers[:len(counts)]), ("nginx", servers[len(counts):])):
            ratio = med[group[counts.index(n)].name] / med[group[0].name]
            best = max(rps[group[counts.index(n)].name]) / max(rps[group[0].name])
            print("%-6s %d/%d scaling: %.2fx (of the best runs: %.2fx)" % (kind, n, base, ratio, best))
            print("RESULT name=%s_scaling_%d_over_%d value=%.3f unit=ratio" % (kind, n, base, ratio))
        evco_n = med[servers[counts.index(n)].name]
        nginx_n = med[servers[len(counts) + counts.index(n)].name]
        print("evco / nginx at %d: %.2fx" % (n, evco_n / nginx_n))


if __name__ == "__main__":
    main()
