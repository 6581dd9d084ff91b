// The workloads on evco: coroutines on one evco::loop, client and server on the same thread.

#include <array>
#include <coroutine>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <sys/resource.h>

#include <evco/evco.hpp>

#include "common.hpp"

namespace bench::evco_impl {
namespace {

using namespace std::chrono_literals;
using evco::errc;
using evco::result;
using evco::task;

// Counts finished coroutines; the awaiting one is resumed from the loop (via post) once the
// count reaches zero, never inline from inside the last finisher.
struct latch {
  evco::loop* lp;
  int remaining;
  std::coroutine_handle<> waiter{};

  void count_down() {
    if (--remaining == 0 && waiter) {
      lp->post([h = std::exchange(waiter, {})] { h.resume(); });
    }
  }
  auto wait() noexcept {
    struct awaiter {
      latch& l;
      bool await_ready() const noexcept { return l.remaining <= 0; }
      void await_suspend(std::coroutine_handle<> h) noexcept { l.waiter = h; }
      void await_resume() const noexcept {}
    };
    return awaiter{*this};
  }
};

struct shared {
  explicit shared(evco::loop& lp, int n) : done{&lp, n}, started{&lp, 0}, expected(n) {}
  latch done;
  latch started;
  int expected;
  std::string error;
  clock::time_point t0{}, t1{};
  heap_counters h0{}, h1{};
  bool steady = false;
  int finished = 0;
  std::uint64_t verified = 0;

  void fail(std::string why) {
    if (error.empty()) error = std::move(why);
  }
  auto sink(const char* who) {
    return [this, who](std::error_code ec) {
      fail(std::string(who) + ": " + ec.message());
      done.count_down();
    };
  }
  auto server_sink() {
    return [this](std::error_code ec) { fail("server: " + ec.message()); };
  }
};

// Records what went wrong (the spawn sink only sees the error code) and fails the coroutine.
std::error_code mismatch(shared* sh, const char* what) {
  sh->fail(what);
  return std::make_error_code(std::errc::bad_message);
}

// The echo server of every scenario: read what is there, write it back, until eof. Into a
// 1 KiB buffer in the frame, as the Asio and epoll servers do; or (idle_memory's dynamic style)
// into a string, which is empty while the connection is idle and keeps its capacity after.
task<result<void>> echo_conn(evco::stream s, latch* started) {
  std::array<std::byte, echo_buf_size> buf;
  if (started) started->count_down();
  for (;;) {
    auto n = co_await s.read_some(buf);
    if (!n) {
      if (n.error() == errc::eof) co_return evco::success();
      co_return n.as_failure();
    }
    EVCO_TRYV(co_await s.write(std::span(buf).first(n.value())));
  }
}

task<result<void>> echo_conn_dynamic(evco::stream s, latch* started) {
  std::string buf;
  if (started) started->count_down();
  for (;;) {
    buf.clear();
    auto n = co_await s.read_some(buf, echo_buf_size);
    if (!n) {
      if (n.error() == errc::eof) co_return evco::success();
      co_return n.as_failure();
    }
    EVCO_TRYV(co_await s.write(buf));
  }
}

task<result<void>> pingpong_client(evco::loop& s_loop, evco::stream s, std::uint32_t conn,
                                   int warmup, int count, pingpong_params::style style,
                                   shared* sh) {
  unsigned char out[msg_size];
  unsigned char in[msg_size];
  for (int i = 0; i < warmup + count; ++i) {
    if (i == warmup && sh->steady) {
      sh->h0 = heap_now();
      sh->t0 = clock::now();
    }
    fill_message(out, conn, static_cast<std::uint32_t>(i));
    EVCO_TRYV(co_await s.write(std::as_bytes(std::span(out))));
    const auto into = std::as_writable_bytes(std::span(in));
    if (style == pingpong_params::race) {
      auto r = co_await evco::when_any(s.read_exactly(into), evco::sleep_for(s_loop, 10s));
      if (r.index() != 0) co_return mismatch(sh, "client: the 10 s timer won");
      EVCO_TRYV(std::get<0>(r));
    } else if (style == pingpong_params::op_timeout) {
      EVCO_TRYV(co_await s.read_exactly(into, 10s));
    } else {
      EVCO_TRYV(co_await s.read_exactly(into));
    }
    if (std::memcmp(in, out, msg_size) != 0) co_return mismatch(sh, "client: echo mismatch");
  }
  if (++sh->finished == sh->expected) {
    sh->t1 = clock::now();
    sh->h1 = heap_now();
  }
  sh->done.count_down();
  co_return evco::success();
}

// Where a pingpong listens: 127.0.0.1 on a free port, or a fresh abstract Unix name.
result<evco::endpoint> listen_at(pingpong_params::transport via) {
  if (via == pingpong_params::transport::unix_socket) return evco::endpoint::unix_path(unix_name());
  return evco::endpoint::v4_loopback(0);
}

task<result<void>> pingpong_main(evco::loop& lp, pingpong_params p, shared* sh) {
  EVCO_TRY(const auto at, listen_at(p.via));
  EVCO_TRY(auto l, evco::listener::bind(lp, at));
  EVCO_TRY(const auto ep, l.local_endpoint());
  std::vector<evco::stream> clients;
  clients.reserve(static_cast<std::size_t>(p.conns));
  for (int i = 0; i < p.conns; ++i) {
    EVCO_TRY(auto c, co_await evco::connect(lp, ep));
    EVCO_TRY(auto srv, co_await l.accept());
    lp.spawn(echo_conn(std::move(srv), nullptr), sh->server_sink());
    clients.push_back(std::move(c));
  }
  sh->t0 = clock::now();
  for (int i = 0; i < p.conns; ++i) {
    lp.spawn(pingpong_client(lp, std::move(clients[static_cast<std::size_t>(i)]),
                             static_cast<std::uint32_t>(i), p.warmup, p.count, p.read, sh),
             sh->sink("client"));
  }
  co_await sh->done.wait();
  co_return evco::success();
}

task<result<void>> stream_receiver(evco::stream s, std::uint64_t total, shared* sh) {
  std::vector<unsigned char> buf(chunk_size);
  checksum ck;
  std::uint64_t got = 0;
  while (got < total) {
    EVCO_TRY(const std::size_t n, co_await s.read_some(std::as_writable_bytes(std::span(buf))));
    if (n > total - got) co_return mismatch(sh, "receiver: bytes beyond the end");
    ck.update(buf.data(), n);
    got += n;
  }
  sh->t1 = clock::now();
  auto end = co_await s.read_some(std::as_writable_bytes(std::span(buf)));
  if (end) co_return mismatch(sh, "receiver: bytes beyond the end");
  if (end.error() != errc::eof) co_return end.as_failure();
  if (ck.value() != expected_checksum(total)) co_return mismatch(sh, "receiver: checksum mismatch");
  sh->verified = got;
  sh->done.count_down();
  co_return evco::success();
}

task<result<void>> throughput_main(evco::loop& lp, std::uint64_t total, shared* sh) {
  EVCO_TRY(auto l, evco::listener::bind(lp, evco::endpoint::v4_loopback(0)));
  EVCO_TRY(const auto ep, l.local_endpoint());
  EVCO_TRY(auto c, co_await evco::connect(lp, ep));
  EVCO_TRY(auto srv, co_await l.accept());
  lp.spawn(stream_receiver(std::move(srv), total, sh), sh->sink("receiver"));
  const stream_source& src = source();
  sh->t0 = clock::now();
  std::uint64_t sent = 0;
  for (std::uint64_t i = 0; sent < total; ++i) {
    const std::size_t n =
        static_cast<std::size_t>(std::min<std::uint64_t>(chunk_size, total - sent));
    EVCO_TRYV(co_await c.write(std::as_bytes(std::span(src.chunk(i), n))));
    sent += n;
  }
  EVCO_TRYV(co_await c.shutdown());
  co_await sh->done.wait();
  co_return evco::success();
}

task<result<void>> acceptor(evco::listener* l, int count, shared* sh) {
  for (int i = 0; i < count; ++i) {
    EVCO_TRY(auto s, co_await l->accept());
    ++sh->finished;  // and `s` closes here: the server side closes first
  }
  sh->done.count_down();
  co_return evco::success();
}

task<result<void>> connect_main(evco::loop& lp, int count, shared* sh) {
  EVCO_TRY(auto l, evco::listener::bind(lp, evco::endpoint::v4_loopback(0)));
  EVCO_TRY(const auto ep, l.local_endpoint());
  lp.spawn(acceptor(&l, count, sh), sh->sink("acceptor"));
  sh->t0 = clock::now();
  std::byte buf[16];
  for (int i = 0; i < count; ++i) {
    EVCO_TRY(auto c, co_await evco::connect(lp, ep));
    auto r = co_await c.read_some(buf);
    if (r) co_return mismatch(sh, "client: unexpected data");
    if (r.error() != errc::eof) co_return r.as_failure();
    ++sh->verified;
  }
  sh->t1 = clock::now();
  co_await sh->done.wait();
  co_return evco::success();
}

constexpr auto byte_table = [] {
  std::array<std::byte, 256> t{};
  for (std::size_t i = 0; i < t.size(); ++i)
    t[i] = static_cast<std::byte>(i);
  return t;
}();

// The idle client: parked in one read until its byte comes back.
result<void> check_idle_echo(std::span<const std::byte> got, std::uint32_t i, shared* sh) {
  if (got.size() != 1 || got[0] != byte_table[i % 256])
    return mismatch(sh, "client: echo mismatch");
  ++sh->verified;
  sh->done.count_down();
  return evco::success();
}

task<result<void>> idle_client(evco::stream* s, std::uint32_t i, shared* sh) {
  std::array<std::byte, echo_buf_size> buf;
  sh->started.count_down();
  EVCO_TRY(const std::size_t n, co_await s->read_some(buf));
  co_return check_idle_echo(std::span(buf).first(n), i, sh);
}

task<result<void>> idle_client_dynamic(evco::stream* s, std::uint32_t i, shared* sh) {
  std::string buf;
  sh->started.count_down();
  EVCO_TRYV(co_await s->read_some(buf, echo_buf_size));
  co_return check_idle_echo(std::as_bytes(std::span(buf)), i, sh);
}

task<result<void>> idle_main(evco::loop& lp, idle_params p, shared* sh, run_result* out) {
  EVCO_TRY(auto l, evco::listener::bind(lp, evco::endpoint::v4_loopback(0)));
  EVCO_TRY(const auto ep, l.local_endpoint());
  std::vector<evco::stream> clients;
  clients.reserve(static_cast<std::size_t>(p.conns));
  const bool dynamic = p.reader == idle_params::dynamic;
  const memory_mark before = memory_before();
  for (int i = 0; i < p.conns; ++i) {
    EVCO_TRY(auto c, co_await evco::connect(lp, ep));
    EVCO_TRY(auto srv, co_await l.accept());
    lp.spawn(dynamic ? echo_conn_dynamic(std::move(srv), &sh->started)
                     : echo_conn(std::move(srv), &sh->started),
             sh->server_sink());
    clients.push_back(std::move(c));
    const auto id = static_cast<std::uint32_t>(i);
    lp.spawn(dynamic ? idle_client_dynamic(&clients.back(), id, sh)
                     : idle_client(&clients.back(), id, sh),
             sh->sink("client"));
  }
  co_await sh->started.wait();  // every coroutine on both ends is parked in a read now
  per_conn(*out, before, memory_now(), p.conns);
  for (int i = 0; i < p.conns; ++i) {
    const auto idx = static_cast<std::size_t>(i);
    EVCO_TRYV(co_await clients[idx].write(std::span(&byte_table[idx % 256], 1)));
  }
  co_await sh->done.wait();
  co_return evco::success();
}

// B: receives n, sends n + 1 back, until its channel closes.
task<result<void>> channel_echo(evco::channel<std::uint64_t>* in, evco::channel<std::uint64_t>* out,
                                shared* sh) {
  for (;;) {
    auto n = co_await in->receive();
    if (!n && n.error() == errc::closed) break;
    if (!n) {
      out->close();  // A's receive fails rather than waits forever
      co_return n.as_failure();
    }
    EVCO_TRYV(co_await out->send(n.value() + 1));
  }
  sh->done.count_down();
  co_return evco::success();
}

// A: sends n, expects n + 1.
task<result<void>> channel_main(evco::loop& lp, channel_params p, shared* sh) {
  evco::channel<std::uint64_t> there(lp, p.capacity), back(lp, p.capacity);
  lp.spawn(channel_echo(&there, &back, sh), sh->sink("B"));
  for (int i = 0; i < p.warmup + p.count; ++i) {
    if (i == p.warmup) {
      sh->h0 = heap_now();
      sh->t0 = clock::now();
    }
    const auto n = static_cast<std::uint64_t>(i) * 2;
    EVCO_TRYV(co_await there.send(std::uint64_t(n)));
    EVCO_TRY(const std::uint64_t got, co_await back.receive());
    if (got != n + 1) co_return mismatch(sh, "A: wrong reply");
    ++sh->verified;
  }
  sh->t1 = clock::now();
  sh->h1 = heap_now();
  there.close();
  co_await sh->done.wait();  // B saw the close: nothing is parked on the channels any more
  co_return evco::success();
}

// udp_pingpong's server: an unconnected socket that sends each datagram back to its sender.
task<result<void>> udp_echo(evco::datagram* d, int count) {
  std::array<std::byte, echo_buf_size> buf;
  for (int i = 0; i < count; ++i) {
    EVCO_TRY(const evco::received r, co_await d->receive_from(buf));
    EVCO_TRYV(co_await d->send_to(std::span(buf).first(r.size), r.from));
  }
  co_return evco::success();
}

// The client: a connected socket, one datagram out and its echo back at a time.
task<result<void>> udp_main(evco::loop& lp, pingpong_params p, shared* sh) {
  EVCO_TRY(auto server, evco::datagram::bind(lp, evco::endpoint::v4_loopback(0)));
  EVCO_TRY(auto client, evco::datagram::bind(lp, evco::endpoint::v4_loopback(0)));
  EVCO_TRY(const auto to, server.local_endpoint());
  EVCO_TRYV(client.connect(to));
  lp.spawn(udp_echo(&server, p.warmup + p.count), sh->server_sink());
  unsigned char out[msg_size];
  unsigned char in[msg_size];
  for (int i = 0; i < p.warmup + p.count; ++i) {
    if (i == p.warmup) {
      sh->h0 = heap_now();
      sh->t0 = clock::now();
    }
    fill_message(out, 0, static_cast<std::uint32_t>(i));
    EVCO_TRYV(co_await client.send(std::as_bytes(std::span(out))));
    EVCO_TRY(const std::size_t n, co_await client.receive(std::as_writable_bytes(std::span(in))));
    if (n != msg_size || std::memcmp(in, out, msg_size) != 0) {
      co_return mismatch(sh, "client: echo mismatch");
    }
  }
  sh->t1 = clock::now();
  sh->h1 = heap_now();
  ++sh->finished;
  co_return evco::success();
}

run_result finish(result<void> r, shared& sh) {
  if (!r) return bench::fail("evco: " + r.error().message());
  if (!sh.error.empty()) return bench::fail("evco: " + sh.error);
  run_result out;
  out.ok = true;
  out.seconds = seconds_between(sh.t0, sh.t1);
  return out;
}

double cpu_now() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  const auto sec = [](const timeval& tv) {
    return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
  };
  return sec(ru.ru_utime) + sec(ru.ru_stime);
}

task<result<void>> counting_receiver(evco::stream s, shared* sh, std::uint64_t* got, checksum* ck) {
  std::vector<unsigned char> buf(chunk_size);
  for (;;) {
    auto n = co_await s.read_some(std::as_writable_bytes(std::span(buf)));
    if (!n) {
      if (n.error() != errc::eof) co_return n.as_failure();
      break;
    }
    ck->update(buf.data(), n.value());
    *got += n.value();
  }
  sh->t1 = clock::now();
  sh->done.count_down();
  co_return evco::success();
}

task<result<void>> rate_main(evco::loop& lp, std::size_t rate, evco::duration run_for, shared* sh,
                             std::uint64_t* sent, std::uint64_t* got, checksum* ck, double* cpu) {
  EVCO_TRY(auto l, evco::listener::bind(lp, evco::endpoint::v4_loopback(0)));
  EVCO_TRY(const auto ep, l.local_endpoint());
  EVCO_TRY(auto c, co_await evco::connect(lp, ep));
  EVCO_TRY(auto srv, co_await l.accept());
  lp.spawn(counting_receiver(std::move(srv), sh, got, ck), sh->sink("receiver"));
  const stream_source& src = source();
  const double cpu0 = cpu_now();
  sh->t0 = clock::now();
  EVCO_TRYV(c.set_rate_limit({.write_rate = rate}));
  for (std::uint64_t i = 0; clock::now() - sh->t0 < run_for; ++i) {
    EVCO_TRYV(co_await c.write(std::as_bytes(std::span(src.chunk(i), chunk_size))));
    *sent += chunk_size;
  }
  EVCO_TRYV(co_await c.shutdown());
  co_await sh->done.wait();
  *cpu = cpu_now() - cpu0;
  co_return evco::success();
}

task<void> empty_task() {
  co_return;
}

task<result<void>> group_main(evco::loop& lp, int count, shared* sh) {
  evco::task_group g(lp);
  sh->h0 = heap_now();
  sh->t0 = clock::now();
  for (int i = 0; i < count; ++i)
    EVCO_TRYV(co_await g.spawn(empty_task()));
  EVCO_TRYV(co_await g.join());
  sh->t1 = clock::now();
  sh->h1 = heap_now();
  co_return evco::success();
}

}  // namespace

run_result group_spawn(int count) {
  evco::loop lp;
  shared sh(lp, 1);
  auto r = finish(lp.run(group_main(lp, count, &sh)), sh);
  if (!r.ok) return r;
  r.items = static_cast<std::uint64_t>(count);
  r.steady_news = sh.h1.news - sh.h0.news;
  r.steady_round_trips = static_cast<std::uint64_t>(count);
  return r;
}

run_result rate_limited(std::size_t rate, std::chrono::milliseconds run_for) {
  evco::loop lp;
  shared sh(lp, 1);
  std::uint64_t sent = 0, got = 0;
  checksum ck;
  double cpu = 0;
  auto r = finish(lp.run(rate_main(lp, rate, run_for, &sh, &sent, &got, &ck, &cpu)), sh);
  if (!r.ok) return r;
  if (got != sent) return bench::fail("evco: byte count mismatch");
  if (ck.value() != expected_checksum(sent)) return bench::fail("evco: checksum mismatch");
  r.items = got;
  r.cpu_seconds = cpu;
  // Faster than the limit is a broken limit (its burst is 30 ms of the rate, see rate_limit).
  if (static_cast<double>(got) > static_cast<double>(rate) * (r.seconds * 1.1)) {
    return bench::fail("evco: faster than the rate limit");
  }
  return r;
}

run_result pingpong(const pingpong_params& p) {
  evco::loop lp;
  shared sh(lp, p.conns);
  sh.steady = p.conns == 1;
  auto r = finish(lp.run(pingpong_main(lp, p, &sh)), sh);
  if (!r.ok) return r;
  if (sh.finished != p.conns) return bench::fail("evco: not every client finished");
  r.items = static_cast<std::uint64_t>(p.conns) * static_cast<std::uint64_t>(p.count);
  if (sh.steady) {
    r.steady_news = sh.h1.news - sh.h0.news;
    r.steady_event_mallocs = sh.h1.event_mallocs - sh.h0.event_mallocs;
    r.steady_round_trips = static_cast<std::uint64_t>(p.count);
  }
  return r;
}

run_result udp_pingpong(const pingpong_params& p) {
  evco::loop lp;
  shared sh(lp, 1);
  auto r = finish(lp.run(udp_main(lp, p, &sh)), sh);
  if (!r.ok) return r;
  if (sh.finished != 1) return bench::fail("evco: the client did not finish");
  r.items = static_cast<std::uint64_t>(p.count);
  r.steady_news = sh.h1.news - sh.h0.news;
  r.steady_event_mallocs = sh.h1.event_mallocs - sh.h0.event_mallocs;
  r.steady_round_trips = static_cast<std::uint64_t>(p.count);
  return r;
}

run_result throughput(std::uint64_t total_bytes) {
  evco::loop lp;
  shared sh(lp, 1);
  auto r = finish(lp.run(throughput_main(lp, total_bytes, &sh)), sh);
  if (!r.ok) return r;
  if (sh.verified != total_bytes) return bench::fail("evco: byte count mismatch");
  r.items = total_bytes;
  return r;
}

run_result connect_rate(int count) {
  evco::loop lp;
  shared sh(lp, 1);
  auto r = finish(lp.run(connect_main(lp, count, &sh)), sh);
  if (!r.ok) return r;
  if (sh.finished != count || sh.verified != static_cast<std::uint64_t>(count)) {
    return bench::fail("evco: connection count mismatch");
  }
  r.items = static_cast<std::uint64_t>(count);
  return r;
}

run_result channel_pingpong(const channel_params& p) {
  evco::loop lp;
  shared sh(lp, 1);
  auto r = finish(lp.run(channel_main(lp, p, &sh)), sh);
  if (!r.ok) return r;
  const auto total = static_cast<std::uint64_t>(p.warmup + p.count);
  if (sh.verified != total) return bench::fail("evco: round trip count mismatch");
  r.items = static_cast<std::uint64_t>(p.count);
  r.steady_news = sh.h1.news - sh.h0.news;
  r.steady_event_mallocs = sh.h1.event_mallocs - sh.h0.event_mallocs;
  r.steady_round_trips = static_cast<std::uint64_t>(p.count);
  return r;
}

run_result idle_memory(const idle_params& p) {
  evco::loop lp;
  shared sh(lp, p.conns);
  sh.started.remaining = 2 * p.conns;
  run_result mem;
  auto r = finish(lp.run(idle_main(lp, p, &sh, &mem)), sh);
  if (!r.ok) return r;
  if (sh.verified != static_cast<std::uint64_t>(p.conns)) {
    return bench::fail("evco: idle echo count");
  }
  r.bytes_per_conn = mem.bytes_per_conn;
  r.rss_bytes_per_conn = mem.rss_bytes_per_conn;
  r.items = static_cast<std::uint64_t>(p.conns);
  return r;
}

}  // namespace bench::evco_impl
