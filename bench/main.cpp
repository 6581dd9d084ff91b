// evco-bench: the same workloads on evco, raw libevent callbacks, Boost.Asio coroutines and a
// hand-written epoll loop, alternated in one process; prints a table of medians, spreads and
// ratios, and one RESULT line per scenario and implementation. Exits non-zero when any
// workload lost or corrupted a byte, or did not complete.

#include <malloc.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <event2/event.h>
#include <event2/thread.h>
#include <boost/version.hpp>

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "common.hpp"

#ifndef EVCO_BENCH_BUILDTYPE
#define EVCO_BENCH_BUILDTYPE "unknown"
#endif

// --- heap counters --------------------------------------------------------------------------

namespace {
bench::heap_counters g_heap;

void* counted_malloc(std::size_t n) {
  ++g_heap.event_mallocs;
  return std::malloc(n);
}
void* counted_realloc(void* p, std::size_t n) {
  if (!p) ++g_heap.event_mallocs;
  return std::realloc(p, n);
}
void counted_free(void* p) {
  std::free(p);
}
}  // namespace

void* operator new(std::size_t n) {
  ++g_heap.news;
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
  ++g_heap.news;
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
// Out of line: once inlined, g++ 12 sees free() on a pointer from operator new and warns
// (-Wmismatched-new-delete), not knowing that this operator new is malloc.
[[gnu::noinline]] static void release(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p) noexcept {
  release(p);
}
void operator delete[](void* p) noexcept {
  release(p);
}
void operator delete(void* p, std::size_t) noexcept {
  release(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  release(p);
}

namespace bench {

heap_counters heap_now() noexcept {
  return g_heap;
}

std::size_t heap_bytes_in_use() noexcept {
  const struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

namespace {
std::size_t resident_bytes() noexcept {
  // /proc/self/statm: size resident shared text lib data dt, in pages.
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  unsigned long size = 0, resident = 0;
  const bool ok = std::fscanf(f, "%lu %lu", &size, &resident) == 2;
  std::fclose(f);
  return ok ? resident * static_cast<std::size_t>(sysconf(_SC_PAGESIZE)) : 0;
}
}  // namespace

memory_mark memory_before() noexcept {
  malloc_trim(0);
  return {heap_bytes_in_use(), resident_bytes()};
}

memory_mark memory_now() noexcept {
  return {heap_bytes_in_use(), resident_bytes()};
}

void per_conn(run_result& r, const memory_mark& before, const memory_mark& after,
              int conns) noexcept {
  const auto diff = [conns](std::size_t a, std::size_t b) {
    return (static_cast<double>(b) - static_cast<double>(a)) / conns;
  };
  r.bytes_per_conn = diff(before.heap, after.heap);
  r.rss_bytes_per_conn = diff(before.rss, after.rss);
}

// --- payloads ---------------------------------------------------------------------------------

const stream_source& source() {
  static const stream_source src = [] {
    stream_source s;
    s.data.resize(2 * chunk_size);
    std::uint64_t x = 0x2545F4914F6CDD1Dull;
    for (auto& b : s.data) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      b = static_cast<unsigned char>(x >> 24);
    }
    return s;
  }();
  return src;
}

std::uint64_t expected_checksum(std::uint64_t total) {
  static std::map<std::uint64_t, std::uint64_t> cache;
  if (auto it = cache.find(total); it != cache.end()) return it->second;
  checksum ck;
  std::uint64_t done = 0;
  for (std::uint64_t i = 0; done < total; ++i) {
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(chunk_size, total - done));
    ck.update(source().chunk(i), n);
    done += n;
  }
  return cache[total] = ck.value();
}

// --- sockets ----------------------------------------------------------------------------------

std::string errno_text(const char* what) {
  return std::string(what) + ": " + std::strerror(errno);
}

void set_nodelay(int fd) {
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

void set_nonblocking(int fd) {
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

std::string unix_name() {
  static unsigned n = 0;
  return "@evco-bench-" + std::to_string(getpid()) + "-" + std::to_string(n++);
}

socklen_t unix_address(const std::string& name, sockaddr_un& sa) {
  sa = sockaddr_un{};
  sa.sun_family = AF_UNIX;
  const std::size_t n = std::min(name.size(), sizeof sa.sun_path);
  std::memcpy(sa.sun_path, name.data(), n);
  sa.sun_path[0] = '\0';  // the '@': an abstract name
  return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + n);
}

int listen_loopback(std::uint16_t& port, int backlog) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sa;
  if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || listen(fd, backlog) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
    close(fd);
    return -1;
  }
  port = ntohs(sa.sin_port);
  return fd;
}

int udp_loopback(std::uint16_t& port, std::uint16_t peer) {
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sa;
  bool ok = bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0 &&
            getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) == 0;
  port = ntohs(sa.sin_port);
  if (ok && peer != 0) {
    sa.sin_port = htons(peer);
    ok = connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
  }
  if (!ok) {
    close(fd);
    return -1;
  }
  return fd;
}

}  // namespace bench

// --- the harness ------------------------------------------------------------------------------

namespace {

using namespace bench;

struct impl {
  const char* name;
  run_result (*pingpong)(const pingpong_params&);
  run_result (*throughput)(std::uint64_t);
  run_result (*connect_rate)(int);
  run_result (*idle_memory)(const idle_params&);
  run_result (*channel_pingpong)(const channel_params&);  // null: no channel to measure
  run_result (*udp_pingpong)(const pingpong_params&);
};

const impl all_impls[] = {
    {"evco", evco_impl::pingpong, evco_impl::throughput, evco_impl::connect_rate,
     evco_impl::idle_memory, evco_impl::channel_pingpong, evco_impl::udp_pingpong},
    {"libevent", libevent_impl::pingpong, libevent_impl::throughput, libevent_impl::connect_rate,
     libevent_impl::idle_memory, nullptr, libevent_impl::udp_pingpong},
    {"asio", asio_impl::pingpong, asio_impl::throughput, asio_impl::connect_rate,
     asio_impl::idle_memory,
#if BOOST_VERSION >= 107800  // experimental::channel is new in 1.78
     asio_impl::channel_pingpong,
#else
     nullptr,
#endif
     asio_impl::udp_pingpong},
    {"epoll", epoll_impl::pingpong, epoll_impl::throughput, epoll_impl::connect_rate,
     epoll_impl::idle_memory, nullptr, epoll_impl::udp_pingpong},
};

struct scenario {
  std::string name;
  std::string unit;
  bool higher_is_better;
  std::function<run_result(const impl&)> run;
  std::function<double(const run_result&)> value;
  // Figures derived from the same runs (the steady-state allocation counts of pingpong_1).
  struct derived {
    std::string name, unit;
    std::function<double(const run_result&)> value;
  };
  std::vector<derived> also;
  // Whether `im` has this workload at all (empty: every impl); the others show "-".
  std::function<bool(const impl&)> applies;
};

struct row {
  std::string name, unit;
  bool higher_is_better;
  std::map<std::string, std::vector<double>> values;  // impl -> one value per repetition
  std::map<std::string, std::string> failed;          // impl -> why
};

const char* g_current = "";  // "scenario/impl" for the watchdog message
char g_current_buf[128];

extern "C" void on_alarm(int) {
  const char head[] = "\nevco-bench: TIMEOUT (per-run time cap) in ";
  (void)!write(2, head, sizeof head - 1);
  (void)!write(2, g_current, std::strlen(g_current));
  (void)!write(2, "\n", 1);
  _exit(3);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string fmt(double v) {
  char buf[64];
  const double a = v < 0 ? -v : v;
  if (a >= 1e6) {
    std::snprintf(buf, sizeof buf, "%.3gM", v / 1e6);
  } else if (a >= 1e4) {
    std::snprintf(buf, sizeof buf, "%.1fk", v / 1e3);
  } else if (a >= 100) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
  } else if (a >= 1) {
    std::snprintf(buf, sizeof buf, "%.2f", v);
  } else {
    std::snprintf(buf, sizeof buf, "%.3f", v);
  }
  return buf;
}

void usage() {
  std::fprintf(stderr,
               "usage: evco-bench [--quick] [--reps=N] [--scenario=NAME[,NAME...]] "
               "[--impl=NAME[,NAME...]]\n"
               "  scenarios: pingpong_1 udp_pingpong pingpong_100 pingpong_1000 pingpong_5000\n"
               "             throughput connect_rate idle_memory idle_memory_1k idle_memory_9k\n"
               "             channel_pingpong channel_handover pingpong_timeout pingpong_race\n"
               "             group_spawn unix_pingpong rate_limited timer_cancel\n"
               "  impls:     evco libevent asio epoll\n");
}

bool listed(const std::string& list, std::string_view name) {
  if (list.empty()) return true;
  std::size_t pos = 0;
  while (pos <= list.size()) {
    const std::size_t end = std::min(list.find(',', pos), list.size());
    if (list.compare(pos, end - pos, name) == 0) return true;
    pos = end + 1;
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  int reps = 0;
  std::string only_scenarios, only_impls;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--quick") {
      quick = true;
    } else if (a.starts_with("--reps=")) {
      reps = std::atoi(argv[i] + 7);
    } else if (a.starts_with("--scenario=")) {
      only_scenarios = std::string(a.substr(11));
    } else if (a.starts_with("--impl=")) {
      only_impls = std::string(a.substr(7));
    } else {
      usage();
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }
  if (reps <= 0) reps = quick ? 3 : 5;

  // Before libevent allocates anything: count its allocations too.
  event_set_mem_functions(counted_malloc, counted_realloc, counted_free);
  std::signal(SIGPIPE, SIG_IGN);
  std::signal(SIGALRM, on_alarm);
  // idle_memory holds 2 fds per connection.
  if (rlimit rl{}; getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }

  std::vector<const impl*> impls;
  for (const impl& im : all_impls) {
    if (listed(only_impls, im.name)) impls.push_back(&im);
  }
  if (impls.empty()) {
    usage();
    return 2;
  }
  const bool with_evco = std::any_of(impls.begin(), impls.end(), [](const impl* im) {
    return std::string_view(im->name) == "evco";
  });
  // evco's loop turns on libevent's pthread locking for the whole process; do it up front so
  // that every libevent run pays the same, whatever the order.
  if (with_evco && evthread_use_pthreads() != 0) {
    std::fprintf(stderr, "evco-bench: evthread_use_pthreads failed\n");
    return 1;
  }

  const pingpong_params pp1{1, quick ? 2000 : 5000, quick ? 50000 : 500000};
  const pingpong_params pp100{100, 0, quick ? 500 : 5000};
  const pingpong_params pp1000{1000, 0, quick ? 50 : 500};
  const pingpong_params pp5000{5000, 0, quick ? 10 : 100};
  const std::uint64_t stream_bytes = quick ? (256ull << 20) : (1ull << 30);
  const int connects = quick ? 5000 : 10000;
  const int idle_conns = 1000;
  const channel_params chan1{1, quick ? 2000 : 20000, quick ? 200000 : 2000000};
  const channel_params chan0{0, chan1.warmup, chan1.count};
  const unsigned run_cap_s = quick ? 20 : 60;

  auto rate = [](const run_result& r) { return static_cast<double>(r.items) / r.seconds; };
  const auto news_per_op = [](const run_result& r) {
    return static_cast<double>(r.steady_news) / (4.0 * static_cast<double>(r.steady_round_trips));
  };
  std::vector<scenario> scenarios;
  scenarios.push_back({"pingpong_1",
                       "rt/s",
                       true,
                       [&](const impl& im) { return im.pingpong(pp1); },
                       rate,
                       {{"allocs_per_op", "new/op", news_per_op},
                        {"heap_allocs_per_op", "allocs/op",
                         [](const run_result& r) {
                           return static_cast<double>(r.steady_news + r.steady_event_mallocs) /
                                  (4.0 * static_cast<double>(r.steady_round_trips));
                         }}},
                       {}});
  // pingpong_1 over a Unix domain socket (an abstract name: nothing to clean up after).
  pingpong_params pp_unix = pp1;
  pp_unix.via = pingpong_params::transport::unix_socket;
  scenarios.push_back({"unix_pingpong",
                       "rt/s",
                       true,
                       [pp_unix](const impl& im) { return im.pingpong(pp_unix); },
                       rate,
                       {{"unix_allocs_per_op", "new/op", news_per_op}},
                       {}});
  scenarios.push_back({"udp_pingpong",
                       "rt/s",
                       true,
                       [&](const impl& im) { return im.udp_pingpong(pp1); },
                       rate,
                       {{"udp_allocs_per_op", "new/op", news_per_op}},
                       {}});
  // Many connections at once: per-connection state that no longer fits in the caches.
  for (const pingpong_params* pp : {&pp100, &pp1000, &pp5000}) {
    const pingpong_params params = *pp;
    scenarios.push_back({"pingpong_" + std::to_string(params.conns),
                         "rt/s",
                         true,
                         [params](const impl& im) { return im.pingpong(params); },
                         rate,
                         {},
                         {}});
  }
  scenarios.push_back(
      {"throughput",
       "GB/s",
       true,
       [&](const impl& im) { return im.throughput(stream_bytes); },
       [](const run_result& r) { return static_cast<double>(r.items) / r.seconds / 1e9; },
       {},
       {}});
  scenarios.push_back({"connect_rate",
                       "conn/s",
                       true,
                       [&](const impl& im) { return im.connect_rate(connects); },
                       rate,
                       {},
                       {}});
  // Idle connections, both reader styles; the dynamic one also at 9000 connections, so that
  // what a connection costs can be seen not to grow with their number.
  struct idle_scenario {
    const char* name;
    const char* rss;
    idle_params params;
  };
  for (const idle_scenario isc :
       {idle_scenario{"idle_memory", "idle_rss", {idle_conns, idle_params::dynamic}},
        idle_scenario{"idle_memory_1k", "idle_rss_1k", {idle_conns, idle_params::frame_buffer}},
        idle_scenario{"idle_memory_9k", "idle_rss_9k", {9000, idle_params::dynamic}}}) {
    const idle_params params = isc.params;
    scenarios.push_back(
        {isc.name,
         "bytes/conn",
         false,
         [params](const impl& im) { return im.idle_memory(params); },
         [](const run_result& r) { return r.bytes_per_conn; },
         {{isc.rss, "bytes/conn", [](const run_result& r) { return r.rss_bytes_per_conn; }}},
         {}});
  }
  // pingpong_1 whose client reads race a 10 s timer (evco: when_any(read, sleep_for); Asio:
  // read || timer), next to evco's read with a 10 s timeout of its own, the same limit.
  const auto is = [](std::vector<std::string> names) {
    return [names = std::move(names)](const impl& im) {
      return std::find(names.begin(), names.end(), im.name) != names.end();
    };
  };
  pingpong_params pp_timeout = pp1, pp_race = pp1;
  pp_timeout.read = pingpong_params::op_timeout;
  pp_race.read = pingpong_params::race;
  scenarios.push_back({"pingpong_timeout",
                       "rt/s",
                       true,
                       [pp_timeout](const impl& im) { return im.pingpong(pp_timeout); },
                       rate,
                       {},
                       is({"evco"})});
  scenarios.push_back({"pingpong_race",
                       "rt/s",
                       true,
                       [pp_race](const impl& im) { return im.pingpong(pp_race); },
                       rate,
                       {{"race_allocs_per_rt", "new/rt",
                         [](const run_result& r) {
                           return static_cast<double>(r.steady_news) /
                                  static_cast<double>(r.steady_round_trips);
                         }}},
                       is({"evco", "asio"})});
  const int group_tasks = quick ? 200000 : 1000000;
  scenarios.push_back(
      {"group_spawn",
       "ns/task",
       false,
       [group_tasks](const impl&) { return evco_impl::group_spawn(group_tasks); },
       [](const run_result& r) { return r.seconds * 1e9 / static_cast<double>(r.items); },
       {{"group_allocs_per_task", "new/task",
         [](const run_result& r) {
           return static_cast<double>(r.steady_news) / static_cast<double>(r.steady_round_trips);
         }}},
       is({"evco"})});
  // Timers armed for 10 s and cancelled before they expire (bench/timers_*.cpp).
  const timer_params timers{1000, quick ? 200000 : 1000000};
  scenarios.push_back(
      {"timer_cancel",
       "ns/timer",
       false,
       [timers](const impl& im) {
         return std::string_view(im.name) == "evco" ? evco_impl::timer_cancel(timers)
                                                    : asio_impl::timer_cancel(timers);
       },
       [](const run_result& r) { return r.seconds * 1e9 / static_cast<double>(r.items); },
       {{"timer_allocs", "new/timer",
         [](const run_result& r) {
           return static_cast<double>(r.steady_news) / static_cast<double>(r.steady_round_trips);
         }}},
       is({"evco", "asio"})});
  // A limited stream: how close the achieved rate comes to the limit (1.0 = exactly), and the
  // CPU time the whole process spent meanwhile, as a share of the wall time.
  constexpr std::size_t limited_rate = 10'000'000;
  const auto limited_for = std::chrono::milliseconds(2000);
  scenarios.push_back(
      {"rate_limited",
       "x limit",
       false,
       [=](const impl&) { return evco_impl::rate_limited(limited_rate, limited_for); },
       [=](const run_result& r) {
         return static_cast<double>(r.items) / r.seconds / static_cast<double>(limited_rate);
       },
       {{"rate_limited_cpu", "cpu %",
         [](const run_result& r) { return 100 * r.cpu_seconds / r.seconds; }}},
       is({"evco"})});
  const auto has_channel = [](const impl& im) { return im.channel_pingpong != nullptr; };
  const auto news_per_rt = [](const run_result& r) {
    return static_cast<double>(r.steady_news) / static_cast<double>(r.steady_round_trips);
  };
  struct channel_scenario {
    const char* name;
    const char* allocs;
    const channel_params* params;
  };
  for (const channel_scenario cs :
       {channel_scenario{"channel_pingpong", "chan_allocs_per_rt", &chan1},
        channel_scenario{"channel_handover", "hand_allocs_per_rt", &chan0}}) {
    const channel_params* params = cs.params;
    scenarios.push_back({cs.name,
                         "rt/s",
                         true,
                         [params](const impl& im) { return im.channel_pingpong(*params); },
                         rate,
                         {{cs.allocs, "new/rt", news_per_rt}},
                         has_channel});
  }

  std::fprintf(stderr,
               "evco-bench: %s mode, %d repetitions, buildtype=%s, libevent %s%s\n"
               "  pingpong_1 and udp_pingpong: %d+%d round trips of %zu bytes; "
               "pingpong_100/1000/5000: 100 x %d, 1000 x %d, 5000 x %d; "
               "throughput: %llu MiB in %zu KiB writes;\n"
               "  connect_rate: %d connections; idle_memory: %d connections (9k: 9000);\n"
               "  channel_pingpong (capacity 1) and channel_handover (capacity 0): %d+%d round "
               "trips; per-run cap %us\n",
               quick ? "quick" : "full", reps, EVCO_BENCH_BUILDTYPE, event_get_version(),
               with_evco ? " (pthread locks on)" : " (no thread locks)", pp1.warmup, pp1.count,
               msg_size, pp100.count, pp1000.count, pp5000.count,
               static_cast<unsigned long long>(stream_bytes >> 20), chunk_size >> 10, connects,
               idle_conns, chan1.warmup, chan1.count, run_cap_s);
  if (std::string_view(EVCO_BENCH_BUILDTYPE) != "release") {
    std::fprintf(stderr, "evco-bench: WARNING: not a release build; figures are not comparable\n");
  }

  const auto started = clock::now();
  std::vector<row> rows;
  bool any_failed = false;
  for (const scenario& sc : scenarios) {
    if (!listed(only_scenarios, sc.name)) continue;
    row main_row{sc.name, sc.unit, sc.higher_is_better, {}, {}};
    std::vector<row> derived_rows;
    for (const auto& d : sc.also)
      derived_rows.push_back({d.name, d.unit, false, {}, {}});
    for (int rep = 0; rep < reps; ++rep) {
      // Alternate the implementations, and rotate who goes first.
      for (std::size_t k = 0; k < impls.size(); ++k) {
        const impl& im = *impls[(k + static_cast<std::size_t>(rep)) % impls.size()];
        if (main_row.failed.count(im.name) || (sc.applies && !sc.applies(im))) continue;
        std::snprintf(g_current_buf, sizeof g_current_buf, "%s/%s rep %d", sc.name.c_str(), im.name,
                      rep + 1);
        g_current = g_current_buf;
        alarm(run_cap_s);
        const run_result r = sc.run(im);
        alarm(0);
        if (!r.ok || (!(r.seconds > 0) && !sc.name.starts_with("idle_memory"))) {
          const std::string why = r.ok ? "no time measured" : r.error;
          std::fprintf(stderr, "FAIL %s: %s\n", g_current, why.c_str());
          main_row.failed[im.name] = why;
          any_failed = true;
          continue;
        }
        const double v = sc.value(r);
        main_row.values[im.name].push_back(v);
        std::fprintf(stderr, "  %-14s %-9s rep %d: %s %s\n", sc.name.c_str(), im.name, rep + 1,
                     fmt(v).c_str(), sc.unit.c_str());
        for (std::size_t d = 0; d < sc.also.size(); ++d) {
          derived_rows[d].values[im.name].push_back(sc.also[d].value(r));
        }
      }
    }
    for (auto& d : derived_rows)
      d.failed = main_row.failed;
    rows.push_back(std::move(main_row));
    for (auto& d : derived_rows)
      rows.push_back(std::move(d));
  }

  // The table.
  const char* names[] = {"evco", "libevent", "asio", "epoll"};
  std::printf("\n%-19s %-10s", "scenario", "unit");
  for (const char* n : names)
    std::printf(" %-24s", n);
  std::printf(" %9s %9s %9s\n", "evco/lev", "evco/asio", "evco/epol");
  for (const row& r : rows) {
    std::printf("%-19s %-10s", r.name.c_str(), r.unit.c_str());
    std::map<std::string, double> med;
    for (const char* n : names) {
      std::string cell = "-";
      if (r.failed.count(n)) {
        cell = "FAILED";
      } else if (auto it = r.values.find(n); it != r.values.end() && !it->second.empty()) {
        const auto [lo, hi] = std::minmax_element(it->second.begin(), it->second.end());
        med[n] = median(it->second);
        cell = fmt(med[n]) + " [" + fmt(*lo) + "-" + fmt(*hi) + "]";
      }
      std::printf(" %-24s", cell.c_str());
    }
    for (const char* other : {"libevent", "asio", "epoll"}) {
      char cell[32] = "-";
      if (med.count("evco") && med.count(other) && med[other] != 0) {
        std::snprintf(cell, sizeof cell, "%.3f", med["evco"] / med[other]);
      }
      std::printf(" %9s", cell);
    }
    std::printf("\n");
  }
  std::printf(
      "(median [min-max] of %d runs; ratios are evco/other medians; for %s\n"
      " higher is better, for the memory and allocation rows lower is better)\n\n",
      reps, "rt/s, GB/s, conn/s");
  for (const row& r : rows) {
    for (const char* n : names) {
      if (auto it = r.values.find(n);
          it != r.values.end() && !it->second.empty() && !r.failed.count(n)) {
        std::printf("RESULT scenario=%s impl=%s value=%.6g unit=%s\n", r.name.c_str(), n,
                    median(it->second), r.unit.c_str());
      }
    }
  }
  for (const row& r : rows) {
    for (const auto& [n, why] : r.failed) {
      std::printf("FAILED scenario=%s impl=%s error=\"%s\"\n", r.name.c_str(), n.c_str(),
                  why.c_str());
    }
  }
  std::fprintf(stderr, "evco-bench: %.1f s total%s\n", seconds_between(started, clock::now()),
               any_failed ? ", SOME WORKLOADS FAILED" : "");
  return any_failed ? 1 : 0;
}
