#pragma once
// Shared by the four implementations of each workload: the parameters, what a run reports,
// the heap counters, the payload patterns and the streamed-bytes checksum.

#include <sys/socket.h>
#include <sys/un.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace bench {

using clock = std::chrono::steady_clock;

inline double seconds_between(clock::time_point a, clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// --- heap counters (defined in main.cpp) ----------------------------------------------------

// Every global operator new, and every malloc/calloc/realloc libevent makes (through
// event_set_mem_functions). Single-threaded process: plain loads and stores, no locked RMW.
struct heap_counters {
  std::uint64_t news = 0;
  std::uint64_t event_mallocs = 0;
};
heap_counters heap_now() noexcept;
// Bytes in use on the malloc heap (mallinfo2: uordblks + hblkhd).
std::size_t heap_bytes_in_use() noexcept;

// --- what one run of one workload reports ---------------------------------------------------

struct run_result {
  bool ok = false;
  std::string error;        // why the run failed (lost bytes, mismatch, an I/O error, ...)
  double seconds = 0;       // the timed part
  std::uint64_t items = 0;  // round trips, bytes, connections: what `seconds` covered
  // pingpong with one connection: heap allocations during the steady state
  std::uint64_t steady_news = 0;
  std::uint64_t steady_event_mallocs = 0;
  std::uint64_t steady_round_trips = 0;
  double bytes_per_conn = 0;      // idle memory: malloc heap bytes in use, per connection
  double rss_bytes_per_conn = 0;  // ... and resident set size, per connection
  double cpu_seconds = 0;  // rate_limited: the process's CPU time (user + system) over the run
};

inline run_result fail(std::string why) {
  run_result r;
  r.error = std::move(why);
  return r;
}

// Memory in use, by two measures, taken before and after the idle connections are made. The
// resident set counts pages, which the heap keeps after free(): the first measure gives the
// heap's free pages back (malloc_trim) so that only pages touched since count.
struct memory_mark {
  std::size_t heap = 0;
  std::size_t rss = 0;
};
memory_mark memory_before() noexcept;
memory_mark memory_now() noexcept;
// The difference per connection, into r.bytes_per_conn and r.rss_bytes_per_conn.
void per_conn(run_result& r, const memory_mark& before, const memory_mark& after,
              int conns) noexcept;

struct pingpong_params {
  int conns;
  int warmup;  // round trips per connection before the timed part (only used with conns == 1)
  int count;   // timed round trips per connection
  // How the client reads each echo: plainly; with a 10 s deadline of its own (evco: the op's
  // timeout); or racing a 10 s timer (evco: when_any(read, sleep_for); Asio: read || timer).
  enum style { plain, op_timeout, race } read = plain;
  // What the connections run over: TCP on 127.0.0.1, or a Unix domain socket (unix_pingpong)
  // under a fresh abstract name (unix_name()).
  enum class transport { tcp, unix_socket } via = transport::tcp;
};

// Idle connections: both ends of each parked in a read. How each end reads: into a 1 KiB buffer
// it holds while it waits (in the coroutine frame, or the connection's struct), or into a
// buffer that exists only once bytes have arrived (evco: read_some into a std::string; Asio:
// async_wait(wait_read), then read_some into a std::string; libevent: its input evbuffer;
// epoll: one buffer shared by every connection).
struct idle_params {
  int conns;
  enum style { dynamic, frame_buffer } reader = dynamic;
};

// Two coroutines on one loop, each receiving on a channel of its own: A sends n, B sends n + 1
// back. The same counters as pingpong_1 (steady_* over the `count` timed round trips).
struct channel_params {
  std::size_t capacity;  // of both channels: 1 (channel_pingpong) or 0 (channel_handover)
  int warmup;
  int count;
};

// --- payloads -------------------------------------------------------------------------------

constexpr std::size_t msg_size = 64;
constexpr std::size_t echo_buf_size = 1024;    // every echo server reads into this much
constexpr std::size_t chunk_size = 64 * 1024;  // stream throughput write size
constexpr std::size_t write_high = 1 << 20;    // libevent baseline: stop queuing above this
constexpr std::size_t write_low = 256 << 10;   // ... and resume below this (evco's defaults)

// Message `i` of connection `conn`: every byte depends on both, so a reordered, duplicated or
// cross-wired message fails the comparison.
inline void fill_message(unsigned char* out, std::uint32_t conn, std::uint32_t i) noexcept {
  const std::uint32_t seed = conn * 2654435761u ^ i * 40503u;
  for (std::size_t j = 0; j < msg_size; ++j) {
    out[j] = static_cast<unsigned char>((seed >> (j % 4 * 8)) + j * 7u);
  }
}

// The source of the streamed bytes: chunk `i` starts at a different offset of a random
// buffer, so a lost, duplicated or reordered chunk changes the checksum.
struct stream_source {
  std::vector<unsigned char> data;  // 2 * chunk_size random bytes
  const unsigned char* chunk(std::uint64_t i) const noexcept {
    return data.data() + (i * 7919u) % chunk_size;
  }
};
const stream_source& source();

// Fletcher-style checksum over 64-bit words, position sensitive, ~1 cycle per word.
class checksum {
 public:
  void update(const unsigned char* p, std::size_t n) noexcept {
    if (fill_ != 0) {
      const std::size_t take = n < 8 - fill_ ? n : 8 - fill_;
      std::memcpy(pend_ + fill_, p, take);
      fill_ += static_cast<unsigned>(take);
      p += take;
      n -= take;
      if (fill_ < 8) return;
      add(word(pend_));
      fill_ = 0;
    }
    while (n >= 8) {
      add(word(p));
      p += 8;
      n -= 8;
    }
    std::memcpy(pend_, p, n);
    fill_ = static_cast<unsigned>(n);
  }
  std::uint64_t value() const noexcept {
    std::uint64_t a = a_, b = b_;
    if (fill_ != 0) {
      unsigned char tmp[8] = {};
      std::memcpy(tmp, pend_, fill_);
      a += word(tmp) ^ fill_;
      b += a;
    }
    return a ^ (b * 0x9E3779B97F4A7C15ull);
  }

 private:
  static std::uint64_t word(const unsigned char* p) noexcept {
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    return w;
  }
  void add(std::uint64_t w) noexcept {
    a_ += w;
    b_ += a_;
  }
  std::uint64_t a_ = 0, b_ = 0;
  unsigned char pend_[8] = {};
  unsigned fill_ = 0;
};

// The checksum of the first `total` bytes of the chunk sequence (computed once per size).
std::uint64_t expected_checksum(std::uint64_t total);

// --- socket helpers (plain POSIX) -----------------------------------------------------------

// A non-blocking listening socket on 127.0.0.1:0; returns the fd and sets `port`.
int listen_loopback(std::uint16_t& port, int backlog = 4096);
// A non-blocking UDP socket bound to 127.0.0.1:0 (connected to 127.0.0.1:`peer` unless that is
// 0); returns the fd and sets `port`, or -1.
int udp_loopback(std::uint16_t& port, std::uint16_t peer = 0);
void set_nodelay(int fd);
void set_nonblocking(int fd);
std::string errno_text(const char* what);
// A Linux abstract Unix socket name, a new one on every call: "@evco-bench-<pid>-<n>". It has
// no socket file, so a run leaves nothing behind, and concurrent runs do not collide.
std::string unix_name();
// The socket address of such a name (the '@' becomes sun_path's leading NUL); returns its
// length, which counts the name's bytes only, as the kernel takes abstract names.
socklen_t unix_address(const std::string& name, sockaddr_un& sa);

// --- the implementations ---------------------------------------------------------------------

#define BENCH_DECLARE_IMPL(ns)                       \
  namespace ns {                                     \
  run_result pingpong(const pingpong_params& p);     \
  run_result throughput(std::uint64_t total_bytes);  \
  run_result connect_rate(int count);                \
  run_result idle_memory(const idle_params& p);      \
  run_result udp_pingpong(const pingpong_params& p); \
  }

BENCH_DECLARE_IMPL(evco_impl)
BENCH_DECLARE_IMPL(libevent_impl)
BENCH_DECLARE_IMPL(asio_impl)
BENCH_DECLARE_IMPL(epoll_impl)

#undef BENCH_DECLARE_IMPL

// Only evco and Asio have channels; libevent and epoll report no value for these scenarios.
namespace evco_impl {
run_result channel_pingpong(const channel_params& p);
// task_group: spawn `count` empty tasks, then join.
run_result group_spawn(int count);
// One connection whose sender is limited to `rate` bytes/s (stream::set_rate_limit), writing
// for `run_for`; items are the bytes that arrived (checksummed), seconds until the eof.
run_result rate_limited(std::size_t rate, std::chrono::milliseconds run_for);
}  // namespace evco_impl
namespace asio_impl {
run_result channel_pingpong(const channel_params& p);
}

// timer_cancel (bench/timers_*.cpp): `warmup` + `count` timers of 10 s armed one after another
// by one coroutine and each cancelled by a second one; the waiter checks that every wait ended
// cancelled. items and steady_round_trips are `count`, steady_* the heap counts over them.
struct timer_params {
  int warmup;
  int count;
};
// What both waiters record, and the run_result made of it.
struct timer_tally {
  int armed = 0;      // timers armed so far: the one waiting is this one
  int cancelled = 0;  // ... and those that ended cancelled
  bool done = false;  // the waiter has ended
  std::string error;
  clock::time_point t0{}, t1{};
  heap_counters h0{}, h1{};

  void fail(std::string why) {
    if (error.empty()) error = std::move(why);
  }
  void start_timing() {
    h0 = heap_now();
    t0 = clock::now();
  }
  void finish() {
    t1 = clock::now();
    h1 = heap_now();
    done = true;
  }
  run_result result(const std::string& impl, const timer_params& p) const {
    if (!error.empty()) return bench::fail(impl + ": " + error);
    if (!done || cancelled != p.warmup + p.count) {
      return bench::fail(impl + ": a timer was not cancelled");
    }
    run_result r;
    r.ok = true;
    r.seconds = seconds_between(t0, t1);
    r.items = static_cast<std::uint64_t>(p.count);
    r.steady_news = h1.news - h0.news;
    r.steady_event_mallocs = h1.event_mallocs - h0.event_mallocs;
    r.steady_round_trips = static_cast<std::uint64_t>(p.count);
    return r;
  }
};
namespace evco_impl {
run_result timer_cancel(const timer_params& p);
}
namespace asio_impl {
run_result timer_cancel(const timer_params& p);
}

}  // namespace bench
