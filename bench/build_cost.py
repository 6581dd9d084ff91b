#!/usr/bin/env python3
"""Build cost of a small client: evco against Boost.Asio (awaitable / use_awaitable).

Writes two translation units to a temporary directory, each a coroutine that connects to
127.0.0.1:7, writes 5 bytes, reads 5 back and returns, run from main (evco: on an evco::loop,
including evco/connect.hpp and evco/loop.hpp; Asio: co_spawn on an io_context, including
boost/asio.hpp), and compiles each `-std=c++20 -c` (no link, so no built library is needed)
with the same compiler and flags, N times per optimisation level, alternating. Prints
medians, min-max and the ratio evco/asio of the medians; then, from one `-H` run of the evco
TU, which headers it pulls in (standard library, Boost.Outcome, evco's own, other), and from
`-ftime-report` (g++) the share of parsing against code generation.

  bench/build_cost.py                     # g++, -O0 and -O2, 5 runs each
  bench/build_cost.py --cxx=clang++ --reps=3 --opt=-O0
  bench/build_cost.py --header=evco/evco.hpp   # the umbrella header instead

Standard library only. Exit status 1 when a compile fails.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

EVCO_TU = """\
#include <string>
{includes}

evco::task<int> client(evco::loop& lp, evco::endpoint ep) {{
  auto s = co_await evco::connect(lp, ep);
  if (!s) co_return 1;
  std::string msg = "hello";
  if (!co_await s.value().write(msg)) co_return 2;
  std::string in;
  auto n = co_await s.value().read_some(in, 5);
  if (!n) co_return 3;
  co_return 0;
}}

int main() {{
  evco::loop lp;
  auto ep = evco::endpoint::parse("127.0.0.1:7");
  if (!ep) return 1;
  return lp.run(client(lp, ep.value()));
}}
"""

ASIO_TU = """\
#include <string>
#include <boost/asio.hpp>

namespace asio = boost::asio;
using asio::ip::tcp;

asio::awaitable<int> client(tcp::endpoint ep) {
  auto ex = co_await asio::this_coro::executor;
  tcp::socket s(ex);
  co_await s.async_connect(ep, asio::use_awaitable);
  std::string msg = "hello";
  co_await asio::async_write(s, asio::buffer(msg), asio::use_awaitable);
  char in[5];
  std::size_t n = co_await s.async_read_some(asio::buffer(in), asio::use_awaitable);
  co_return n == 5 ? 0 : 3;
}

int main() {
  asio::io_context io(1);
  int rc = 1;
  asio::co_spawn(io, client(tcp::endpoint(asio::ip::make_address("127.0.0.1"), 7)),
                 [&](std::exception_ptr e, int r) { rc = e ? 1 : r; });
  io.run();
  return rc;
}
"""


def compile_once(cmd):
    """Runs one compile; returns (wall s, CPU s of the compiler and its children, stderr)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        sys.stderr.write("compile failed: %s\n%s" % (" ".join(cmd), err))
        sys.exit(1)
    return wall, ru.ru_utime + ru.ru_stime, err


def classify(path):
    path = os.path.normpath(path)
    if path.startswith(os.path.join(ROOT, "include")) or "/evco/" in path:
        return "evco"
    if "/boost/outcome/" in path:
        return "boost.outcome"
    if "/boost/" in path:
        return "boost (other)"
    if re.search(r"/c\+\+/(v1/|\d+/)", path):
        return "standard library"
    return "C / system"


def header_report(cmd):
    """Which headers the TU reads, from -H (one line per header opened, depth in dots).

    Returns the system headers (standard, C, POSIX) and the Boost ones that evco's headers
    name in their own #include lines."""
    err = compile_once(cmd + ["-H", "-fsyntax-only"])[2]
    seen = {}
    for line in err.splitlines():
        m = re.match(r"^\.+ (.*)$", line)
        if m:
            path = os.path.normpath(m.group(1))
            seen.setdefault(path, classify(path))
    counts = {}
    for kind in seen.values():
        counts[kind] = counts.get(kind, 0) + 1
    print("\nheaders the evco TU reads (-H, each counted once):")
    for kind in sorted(counts, key=lambda k: -counts[k]):
        print("  %-18s %4d" % (kind, counts[kind]))
    # -E -dI keeps each #include that the preprocessor took (not those in a false #if),
    # after the line marker of the file it is in.
    pp = subprocess.run([c for c in cmd if c not in ("-c", "-o") and not c.endswith(".o")]
                        + ["-E", "-dI"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                        text=True).stdout
    system, boost, current = {}, {}, ""
    for line in pp.splitlines():
        m = re.match(r'^# \d+ "([^"]+)"', line)
        if m:
            current = os.path.normpath(m.group(1))
            continue
        m = re.match(r"^#include <([^>]+)>", line)
        if m and classify(current) == "evco" and not m.group(1).startswith("evco/"):
            h = m.group(1)
            by = os.path.relpath(current, os.path.join(ROOT, "include"))
            lst = (boost if h.startswith("boost/") else system).setdefault(h, [])
            if by not in lst:
                lst.append(by)
    print("  system and Boost headers that those evco headers include:")
    for h in sorted(system) + sorted(boost):
        by = (system.get(h) or boost.get(h))
        print("    %-32s %s" % ("<%s>" % h, ", ".join(sorted(by)[:3]) +
                                (" and %d more" % (len(by) - 3) if len(by) > 3 else "")))
    return sorted(system), sorted(boost)


def time_report(cmd, cxx):
    """g++ -ftime-report: the front end (parsing, templates) against code generation."""
    if "clang" in os.path.basename(cxx):
        return
    err = compile_once(cmd + ["-ftime-report"])[2]
    phases, total = {}, None
    for line in err.splitlines():
        m = re.match(r"^ (phase [^:]+?)\s*:\s*(.*)$", line)
        if m:
            nums = re.findall(r"([\d.]+) \(\s*\d+%\)", m.group(2))
            if len(nums) >= 3:
                phases[m.group(1)] = float(nums[2])
        m = re.match(r"^ TOTAL\s*:\s*(.*)$", line)
        if m:
            nums = re.findall(r"([\d.]+)", m.group(1))
            if len(nums) >= 3:
                total = float(nums[2])
    if phases and total:
        print("\n-ftime-report, the evco TU at -O0 (one compile, wall s): " + ", ".join(
            "%s %.2f" % (k.replace("phase ", ""), v) for k, v in phases.items() if v >= 0.005)
            + "; total %.2f" % total)


def instructions(cmd):
    """Instructions the compile executes (the driver, cc1plus and as), under callgrind:
    the same figure run after run, whatever else the machine is doing."""
    err = compile_once(["valgrind", "--tool=callgrind", "--trace-children=yes",
                        "--callgrind-out-file=/dev/null"] + cmd)[2]
    return sum(int(n.replace(",", "")) for n in re.findall(r"Collected : ([\d,]+)", err)) / 1e9


def measure(cmd, reps, mode):
    """Median CPU seconds of `reps` compiles, or billions of instructions of one."""
    if mode == "instructions":
        return instructions(cmd)
    return statistics.median(compile_once(cmd)[1] for _ in range(reps))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cxx", default=os.environ.get("CXX", "g++"))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--opt", default="-O0,-O2", help="comma-separated optimisation levels")
    ap.add_argument("--header", default="evco/connect.hpp,evco/loop.hpp",
                    help="comma-separated evco headers the client TU includes")
    ap.add_argument("--flags", default="", help="extra compiler flags, space-separated")
    ap.add_argument("--instructions", action="store_true",
                    help="count instructions under callgrind (one compile each; slow: ~50x)")
    ap.add_argument("--tu", default="evco,asio",
                    help="which TUs to compile (the ratio needs both): evco,asio or evco")
    ap.add_argument("--no-breakdown", action="store_true", help="skip the per-header part")
    a = ap.parse_args()

    mode = "instructions" if a.instructions else "cpu"
    unit = "G instr" if a.instructions else "s"
    headers = a.header.split(",")
    flags = a.flags.split()
    incs = ["-I" + os.path.join(ROOT, "include")]
    version = subprocess.run([a.cxx, "--version"], stdout=subprocess.PIPE,
                             text=True).stdout.splitlines()[0]
    with tempfile.TemporaryDirectory(prefix="evco-build-cost-") as tmp:
        srcs = {"evco": os.path.join(tmp, "client_evco.cpp"),
                "asio": os.path.join(tmp, "client_asio.cpp")}
        with open(srcs["evco"], "w") as f:
            f.write(EVCO_TU.format(includes="\n".join("#include <%s>" % h for h in headers)))
        with open(srcs["asio"], "w") as f:
            f.write(ASIO_TU)
        print("compiler: %s (%s)" % (a.cxx, version))
        print("evco TU includes %s; asio TU <boost/asio.hpp>"
              % ", ".join("<%s>" % h for h in headers))
        print("%s -std=c++20 -c %s" % (a.cxx, " ".join(flags)))
        if a.instructions:
            print("billions of instructions of one compile (callgrind)")
            print("%-5s %-5s %9s" % ("opt", "TU", "G instr"))
        else:
            print("%d compiles per TU and level, alternating; CPU seconds (user + sys of the "
                  "compiler), wall beside it" % a.reps)
            print("%-5s %-5s %9s %13s %10s" % ("opt", "TU", "cpu med", "cpu min-max", "wall med"))
        results = []
        for opt in a.opt.split(","):
            cmds = {k: [a.cxx, "-std=c++20", opt, "-c", srcs[k], "-o",
                        os.path.join(tmp, k + ".o")] + incs + flags for k in srcs}
            order = a.tu.split(",")
            med = {}
            if a.instructions:
                for k in order:
                    med[k] = instructions(cmds[k])
                    print("%-5s %-5s %9.3f" % (opt, k, med[k]))
            else:
                runs = {k: [] for k in order}
                for i in range(a.reps):
                    for k in (order if i % 2 == 0 else order[::-1]):
                        runs[k].append(compile_once(cmds[k])[:2])
                for k in order:
                    cpu = [c for _, c in runs[k]]
                    med[k] = statistics.median(cpu)
                    print("%-5s %-5s %9.3f %6.3f-%.3f %10.3f" % (
                        opt, k, med[k], min(cpu), max(cpu),
                        statistics.median(w for w, _ in runs[k])))
            if len(med) == 2:
                results.append((opt, med["evco"] / med["asio"]))
                print("%-5s ratio evco/asio %.3f" % (opt, results[-1][1]))
        for opt, ratio in results:
            print("RESULT build_cost opt=%s cxx=%s measure=%s ratio=%.3f"
                  % (opt, os.path.basename(a.cxx), mode, ratio))
        if a.no_breakdown:
            return
        base = [a.cxx, "-std=c++20", "-O0", "-c", srcs["evco"], "-o",
                os.path.join(tmp, "h.o")] + incs + flags
        system, outcome = header_report(base)
        # Cumulative layers, each an -fsyntax-only TU of includes: what the system headers
        # that evco's headers include cost by themselves, what Boost.Outcome adds, what
        # evco's own headers add, and the client's code.
        layers = [("the system headers above", ["<string>"] + ["<%s>" % h for h in system]),
                  ("+ the Boost ones", ["<%s>" % h for h in outcome]),
                  ("+ evco's own", ["<%s>" % h for h in headers])]
        print("\nthe includes alone, cumulative (-fsyntax-only, %s):"
              % ("G instr" if a.instructions else "CPU median of %d" % a.reps))
        text, prev = "", 0.0
        hdr_only = os.path.join(tmp, "includes_only.cpp")
        for name, lines in layers:
            text += "".join("#include %s\n" % h for h in lines)
            with open(hdr_only, "w") as f:
                f.write(text)
            t = measure([a.cxx, "-std=c++20", "-fsyntax-only", hdr_only] + incs + flags,
                        a.reps, mode)
            print("  %-36s %6.3f %s  (+%.3f)" % (name, t, unit, t - prev))
            prev = t
        t = measure([a.cxx, "-std=c++20", "-fsyntax-only", srcs["evco"]] + incs + flags,
                    a.reps, mode)
        print("  %-36s %6.3f %s  (+%.3f)" % ("+ the client's code", t, unit, t - prev))
        t = measure(base, a.reps, mode)
        print("  %-36s %6.3f %s  (+%.3f)" % ("+ code generation (-O0 -c)", t, unit, t - prev))
        if "asio" in a.tu.split(","):
            with open(hdr_only, "w") as f:
                f.write("#include <boost/asio.hpp>\n")
            t = measure([a.cxx, "-std=c++20", "-fsyntax-only", hdr_only] + flags, a.reps, mode)
            print("  %-36s %6.3f %s" % ("<boost/asio.hpp> alone", t, unit))
        if not a.instructions:
            time_report(base, a.cxx)


if __name__ == "__main__":
    main()
