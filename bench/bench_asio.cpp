// The workloads on Boost.Asio C++20 coroutines: one io_context run on this thread, both ends
// on it. Boost 1.74 has no as_tuple (it arrived in 1.77 as experimental::as_tuple), so errors
// come back through redirect_error(use_awaitable, ec): no exceptions on expected failures.

#include <array>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>  // first: Boost 1.74's asio/awaitable.hpp uses std::exchange without it
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/version.hpp>
#if BOOST_VERSION >= 107800  // experimental::channel is new in 1.78
#include <boost/asio/experimental/channel.hpp>
#define EVCO_BENCH_ASIO_CHANNEL 1
#endif
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "common.hpp"

namespace bench::asio_impl {
namespace {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

auto with(error_code& ec) {
  return asio::redirect_error(use_awaitable, ec);
}

struct shared {
  std::string error;
  clock::time_point t0{}, t1{};
  heap_counters h0{}, h1{};
  bool steady = false;
  int expected = 0;
  int finished = 0;
  int started = 0;
  std::uint64_t verified = 0;
  run_result mem;                      // idle_memory's per-connection figures
  asio::steady_timer* wake = nullptr;  // cancelled to wake the main coroutine

  void fail(std::string why) {
    if (error.empty()) error = std::move(why);
  }
  void fail(const char* who, const error_code& ec) { fail(std::string(who) + ": " + ec.message()); }
  void poke() {
    if (wake) wake->cancel();
  }
};

// Sleeps until `wake` is cancelled (or the condition already holds).
template <class Pred>
awaitable<void> wait_until(shared* sh, Pred done) {
  while (!done()) {
    error_code ec;
    co_await sh->wake->async_wait(with(ec));
  }
}

template <class Socket>
awaitable<void> echo_conn(Socket s, shared* sh, bool count_start) {
  std::array<unsigned char, echo_buf_size> buf;
  error_code ec;
  if (count_start && ++sh->started == 2 * sh->expected) sh->poke();
  for (;;) {
    const std::size_t n = co_await s.async_read_some(asio::buffer(buf), with(ec));
    if (ec) {
      if (ec != asio::error::eof) sh->fail("server", ec);
      co_return;
    }
    co_await asio::async_write(s, asio::buffer(buf.data(), n), with(ec));
    if (ec) co_return sh->fail("server", ec);
  }
}

// idle_memory's dynamic style: no buffer while waiting. The read waits for readiness, and the
// string grows only once bytes are there (and keeps its capacity after, as evco's does).
template <class Socket>
awaitable<void> echo_conn_dynamic(Socket s, shared* sh) {
  std::string buf;
  error_code ec;
  if (++sh->started == 2 * sh->expected) sh->poke();
  for (;;) {
    co_await s.async_wait(Socket::wait_read, with(ec));
    if (!ec) {
      buf.resize(echo_buf_size);
      buf.resize(s.read_some(asio::buffer(buf), ec));
    }
    if (ec == asio::error::would_block) continue;
    if (ec) {
      if (ec != asio::error::eof) sh->fail("server", ec);
      co_return;
    }
    co_await asio::async_write(s, asio::buffer(buf), with(ec));
    if (ec) co_return sh->fail("server", ec);
  }
}

// Connects a client and accepts its server end (TCP or Unix); false (with the error recorded)
// on failure.
template <class Acceptor, class Socket>
awaitable<bool> make_pair(Acceptor& acc, Socket& c, Socket& srv, shared* sh) {
  error_code ec;
  co_await c.async_connect(acc.local_endpoint(), with(ec));
  if (ec) {
    sh->fail("connect", ec);
    co_return false;
  }
  srv = co_await acc.async_accept(with(ec));
  if (ec) {
    sh->fail("accept", ec);
    co_return false;
  }
  if constexpr (std::is_same_v<Socket, tcp::socket>) {  // a Unix socket has no TCP_NODELAY
    c.set_option(tcp::no_delay(true));
    srv.set_option(tcp::no_delay(true));
  }
  co_return true;
}

template <class Socket>
awaitable<void> pingpong_client(Socket s, std::uint32_t conn, int warmup, int count,
                                pingpong_params::style style, shared* sh) {
  unsigned char out[msg_size];
  unsigned char in[msg_size];
  error_code ec;
  for (int i = 0; i < warmup + count; ++i) {
    if (i == warmup && sh->steady) {
      sh->h0 = heap_now();
      sh->t0 = clock::now();
    }
    fill_message(out, conn, static_cast<std::uint32_t>(i));
    co_await asio::async_write(s, asio::buffer(out), with(ec));
    if (ec) co_return sh->fail("client write", ec);
    if (style == pingpong_params::race) {
      using namespace asio::experimental::awaitable_operators;
      asio::steady_timer timer(s.get_executor(), std::chrono::seconds(10));
      error_code timer_ec;
      auto r = co_await (asio::async_read(s, asio::buffer(in), with(ec)) ||
                         timer.async_wait(with(timer_ec)));
      if (r.index() != 0) co_return sh->fail("client: the 10 s timer won");
    } else {
      co_await asio::async_read(s, asio::buffer(in), with(ec));
    }
    if (ec) co_return sh->fail("client read", ec);
    if (std::memcmp(in, out, msg_size) != 0) co_return sh->fail("client: echo mismatch");
  }
  if (++sh->finished == sh->expected) {
    sh->t1 = clock::now();
    sh->h1 = heap_now();
  }
}

template <class Acceptor>
awaitable<void> pingpong_main(Acceptor* acc, pingpong_params p, shared* sh) {
  using socket = typename Acceptor::protocol_type::socket;
  auto ex = co_await asio::this_coro::executor;
  std::vector<socket> clients;
  clients.reserve(static_cast<std::size_t>(p.conns));
  for (int i = 0; i < p.conns; ++i) {
    socket c(ex), srv(ex);
    if (!co_await make_pair(*acc, c, srv, sh)) co_return;
    asio::co_spawn(ex, echo_conn(std::move(srv), sh, false), asio::detached);
    clients.push_back(std::move(c));
  }
  acc->close();
  sh->t0 = clock::now();
  for (int i = 0; i < p.conns; ++i) {
    asio::co_spawn(ex,
                   pingpong_client(std::move(clients[static_cast<std::size_t>(i)]),
                                   static_cast<std::uint32_t>(i), p.warmup, p.count, p.read, sh),
                   asio::detached);
  }
}

awaitable<void> stream_receiver(tcp::socket s, std::uint64_t total, shared* sh) {
  std::vector<unsigned char> buf(chunk_size);
  checksum ck;
  std::uint64_t got = 0;
  error_code ec;
  while (got < total) {
    const std::size_t n = co_await s.async_read_some(asio::buffer(buf), with(ec));
    if (ec) co_return sh->fail("receiver", ec);
    if (n > total - got) co_return sh->fail("receiver: bytes beyond the end");
    ck.update(buf.data(), n);
    got += n;
  }
  sh->t1 = clock::now();
  co_await s.async_read_some(asio::buffer(buf), with(ec));
  if (ec != asio::error::eof) co_return sh->fail("receiver: no eof after the data");
  if (ck.value() != expected_checksum(total)) co_return sh->fail("receiver: checksum mismatch");
  sh->verified = got;
}

awaitable<void> throughput_main(tcp::acceptor* acc, std::uint64_t total, shared* sh) {
  auto ex = co_await asio::this_coro::executor;
  tcp::socket c(ex), srv(ex);
  if (!co_await make_pair(*acc, c, srv, sh)) co_return;
  acc->close();
  asio::co_spawn(ex, stream_receiver(std::move(srv), total, sh), asio::detached);
  const stream_source& src = source();
  error_code ec;
  sh->t0 = clock::now();
  std::uint64_t sent = 0;
  for (std::uint64_t i = 0; sent < total; ++i) {
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(chunk_size, total - sent));
    co_await asio::async_write(c, asio::buffer(src.chunk(i), n), with(ec));
    if (ec) co_return sh->fail("sender", ec);
    sent += n;
  }
  c.shutdown(tcp::socket::shutdown_send, ec);
  if (ec) sh->fail("sender shutdown", ec);
}

awaitable<void> acceptor_loop(tcp::acceptor* acc, int count, shared* sh) {
  error_code ec;
  for (int i = 0; i < count; ++i) {
    tcp::socket s = co_await acc->async_accept(with(ec));
    if (ec) co_return sh->fail("accept", ec);
    ++sh->finished;  // and `s` closes here: the server side closes first
  }
}

awaitable<void> connect_main(tcp::acceptor* acc, int count, shared* sh) {
  auto ex = co_await asio::this_coro::executor;
  const tcp::endpoint ep = acc->local_endpoint();
  asio::co_spawn(ex, acceptor_loop(acc, count, sh), asio::detached);
  sh->t0 = clock::now();
  unsigned char buf[16];
  error_code ec;
  for (int i = 0; i < count; ++i) {
    tcp::socket c(ex);
    co_await c.async_connect(ep, with(ec));
    if (ec) co_return sh->fail("connect", ec);
    co_await c.async_read_some(asio::buffer(buf), with(ec));
    if (ec != asio::error::eof) co_return sh->fail("client: expected eof");
    ++sh->verified;
  }
  sh->t1 = clock::now();
}

const auto byte_table = [] {
  std::array<unsigned char, 256> t{};
  for (std::size_t i = 0; i < t.size(); ++i)
    t[i] = static_cast<unsigned char>(i);
  return t;
}();

void check_idle_echo(const unsigned char* got, std::size_t n, std::uint32_t i, shared* sh) {
  if (n != 1 || got[0] != byte_table[i % 256]) return sh->fail("client: echo mismatch");
  if (++sh->verified == static_cast<std::uint64_t>(sh->expected)) sh->poke();
}

awaitable<void> idle_client(tcp::socket* s, std::uint32_t i, shared* sh) {
  std::array<unsigned char, echo_buf_size> buf;
  error_code ec;
  if (++sh->started == 2 * sh->expected) sh->poke();
  const std::size_t n = co_await s->async_read_some(asio::buffer(buf), with(ec));
  if (ec) co_return sh->fail("client", ec);
  check_idle_echo(buf.data(), n, i, sh);
}

awaitable<void> idle_client_dynamic(tcp::socket* s, std::uint32_t i, shared* sh) {
  std::string buf;
  error_code ec;
  if (++sh->started == 2 * sh->expected) sh->poke();
  std::size_t n = 0;
  do {
    co_await s->async_wait(tcp::socket::wait_read, with(ec));
    if (ec) co_return sh->fail("client", ec);
    buf.resize(echo_buf_size);
    n = s->read_some(asio::buffer(buf), ec);
  } while (ec == asio::error::would_block);
  if (ec) co_return sh->fail("client", ec);
  check_idle_echo(reinterpret_cast<const unsigned char*>(buf.data()), n, i, sh);
}

awaitable<void> idle_main(tcp::acceptor* acc, idle_params p, shared* sh) {
  auto ex = co_await asio::this_coro::executor;
  std::vector<tcp::socket> clients;
  clients.reserve(static_cast<std::size_t>(p.conns));
  const bool dynamic = p.reader == idle_params::dynamic;
  const memory_mark before = memory_before();
  for (int i = 0; i < p.conns; ++i) {
    tcp::socket c(ex), srv(ex);
    if (!co_await make_pair(*acc, c, srv, sh)) co_return;
    if (dynamic) {
      asio::co_spawn(ex, echo_conn_dynamic(std::move(srv), sh), asio::detached);
    } else {
      asio::co_spawn(ex, echo_conn(std::move(srv), sh, true), asio::detached);
    }
    clients.push_back(std::move(c));
    const auto id = static_cast<std::uint32_t>(i);
    if (dynamic) {
      asio::co_spawn(ex, idle_client_dynamic(&clients.back(), id, sh), asio::detached);
    } else {
      asio::co_spawn(ex, idle_client(&clients.back(), id, sh), asio::detached);
    }
  }
  co_await wait_until(sh, [sh] { return sh->started == 2 * sh->expected; });
  per_conn(sh->mem, before, memory_now(), p.conns);
  error_code ec;
  for (int i = 0; i < p.conns; ++i) {
    auto idx = static_cast<std::size_t>(i);
    co_await asio::async_write(clients[idx], asio::buffer(&byte_table[idx % 256], 1), with(ec));
    if (ec) co_return sh->fail("client write", ec);
  }
  co_await wait_until(sh,
                      [sh] { return sh->verified == static_cast<std::uint64_t>(sh->expected); });
  acc->close();
}

#ifdef EVCO_BENCH_ASIO_CHANNEL
using channel = asio::experimental::channel<void(error_code, std::uint64_t)>;

// B: receives n, sends n + 1 back, until its channel closes.
awaitable<void> channel_echo(channel* in, channel* out, shared* sh) {
  error_code ec;
  for (;;) {
    const std::uint64_t n = co_await in->async_receive(with(ec));
    if (ec == asio::experimental::error::channel_closed) co_return;
    if (ec) {
      out->close();  // A's receive fails rather than waits forever
      co_return sh->fail("B receive", ec);
    }
    co_await out->async_send(error_code{}, n + 1, with(ec));
    if (ec) co_return sh->fail("B send", ec);
  }
}

// A: sends n, expects n + 1.
awaitable<void> channel_main(channel_params p, channel* there, channel* back, shared* sh) {
  error_code ec;
  for (int i = 0; i < p.warmup + p.count; ++i) {
    if (i == p.warmup) {
      sh->h0 = heap_now();
      sh->t0 = clock::now();
    }
    const auto n = static_cast<std::uint64_t>(i) * 2;
    co_await there->async_send(error_code{}, n, with(ec));
    if (ec) co_return sh->fail("A send", ec);
    const std::uint64_t got = co_await back->async_receive(with(ec));
    if (ec) co_return sh->fail("A receive", ec);
    if (got != n + 1) co_return sh->fail("A: wrong reply");
    ++sh->verified;
  }
  sh->t1 = clock::now();
  sh->h1 = heap_now();
  there->close();  // B's receive completes with channel_closed; run() returns once it has
}

#endif

// udp_pingpong's server: an unconnected socket that sends each datagram back to its sender.
awaitable<void> udp_echo(asio::ip::udp::socket* s, int count, shared* sh) {
  std::array<unsigned char, echo_buf_size> buf;
  asio::ip::udp::endpoint from;
  error_code ec;
  for (int i = 0; i < count; ++i) {
    const std::size_t n = co_await s->async_receive_from(asio::buffer(buf), from, with(ec));
    if (ec) co_return sh->fail("server receive", ec);
    co_await s->async_send_to(asio::buffer(buf.data(), n), from, with(ec));
    if (ec) co_return sh->fail("server send", ec);
  }
}

// The client: a connected socket, one datagram out and its echo back at a time.
awaitable<void> udp_client(asio::ip::udp::socket* c, pingpong_params p, shared* sh) {
  unsigned char out[msg_size];
  unsigned char in[msg_size];
  error_code ec;
  for (int i = 0; i < p.warmup + p.count; ++i) {
    if (i == p.warmup) {
      sh->h0 = heap_now();
      sh->t0 = clock::now();
    }
    fill_message(out, 0, static_cast<std::uint32_t>(i));
    co_await c->async_send(asio::buffer(out), with(ec));
    if (ec) co_return sh->fail("client send", ec);
    const std::size_t n = co_await c->async_receive(asio::buffer(in), with(ec));
    if (ec) co_return sh->fail("client receive", ec);
    if (n != msg_size || std::memcmp(in, out, msg_size) != 0) {
      co_return sh->fail("client: echo mismatch");
    }
  }
  sh->t1 = clock::now();
  sh->h1 = heap_now();
  ++sh->finished;
}

// Where a run listens: 127.0.0.1 on a free port, or a fresh abstract Unix name.
tcp::endpoint listen_at(tcp) {
  return {asio::ip::address_v4::loopback(), 0};
}
asio::local::stream_protocol::endpoint listen_at(asio::local::stream_protocol) {
  std::string name = unix_name();
  name[0] = '\0';  // the '@': an abstract name
  return {name};
}

// Runs `main` to completion on a fresh single-threaded io_context, with an acceptor of
// `protocol` (TCP or a Unix socket).
template <class Make, class Protocol = tcp>
run_result drive(shared& sh, Make make, Protocol protocol = tcp::v4()) {
  run_result r;
  try {
    asio::io_context io(1);
    typename Protocol::acceptor acc(io, listen_at(protocol));
    asio::steady_timer wake(io, asio::steady_timer::time_point::max());
    sh.wake = &wake;
    asio::co_spawn(io, make(&acc), asio::detached);
    io.run();
    sh.wake = nullptr;
  } catch (const std::exception& e) {
    sh.fail(std::string("exception: ") + e.what());
  }
  if (!sh.error.empty()) {
    r.error = "asio: " + sh.error;
    return r;
  }
  r.ok = true;
  r.seconds = seconds_between(sh.t0, sh.t1);
  return r;
}

}  // namespace

run_result pingpong(const pingpong_params& p) {
  shared sh;
  sh.expected = p.conns;
  sh.steady = p.conns == 1;
  const auto make = [&](auto* acc) { return pingpong_main(acc, p, &sh); };
  auto r = p.via == pingpong_params::transport::unix_socket
               ? drive(sh, make, asio::local::stream_protocol())
               : drive(sh, make);
  if (!r.ok) return r;
  if (sh.finished != p.conns) return bench::fail("asio: not every client finished");
  r.items = static_cast<std::uint64_t>(p.conns) * static_cast<std::uint64_t>(p.count);
  if (sh.steady) {
    r.steady_news = sh.h1.news - sh.h0.news;
    r.steady_event_mallocs = sh.h1.event_mallocs - sh.h0.event_mallocs;
    r.steady_round_trips = static_cast<std::uint64_t>(p.count);
  }
  return r;
}

run_result udp_pingpong(const pingpong_params& p) {
  shared sh;
  try {
    using udp = asio::ip::udp;
    asio::io_context io(1);
    udp::socket server(io, udp::endpoint(asio::ip::address_v4::loopback(), 0));
    udp::socket client(io, udp::endpoint(asio::ip::address_v4::loopback(), 0));
    client.connect(server.local_endpoint());
    asio::co_spawn(io, udp_echo(&server, p.warmup + p.count, &sh), asio::detached);
    asio::co_spawn(io, udp_client(&client, p, &sh), asio::detached);
    io.run();
  } catch (const std::exception& e) {
    sh.fail(std::string("exception: ") + e.what());
  }
  if (!sh.error.empty()) return bench::fail("asio: " + sh.error);
  if (sh.finished != 1) return bench::fail("asio: the client did not finish");
  run_result r;
  r.ok = true;
  r.seconds = seconds_between(sh.t0, sh.t1);
  r.items = static_cast<std::uint64_t>(p.count);
  r.steady_news = sh.h1.news - sh.h0.news;
  r.steady_event_mallocs = sh.h1.event_mallocs - sh.h0.event_mallocs;
  r.steady_round_trips = static_cast<std::uint64_t>(p.count);
  return r;
}

run_result throughput(std::uint64_t total_bytes) {
  shared sh;
  auto r = drive(sh, [&](tcp::acceptor* acc) { return throughput_main(acc, total_bytes, &sh); });
  if (!r.ok) return r;
  if (sh.verified != total_bytes) return bench::fail("asio: byte count mismatch");
  r.items = total_bytes;
  return r;
}

run_result connect_rate(int count) {
  shared sh;
  auto r = drive(sh, [&](tcp::acceptor* acc) { return connect_main(acc, count, &sh); });
  if (!r.ok) return r;
  if (sh.finished != count || sh.verified != static_cast<std::uint64_t>(count)) {
    return bench::fail("asio: connection count mismatch");
  }
  r.items = static_cast<std::uint64_t>(count);
  return r;
}

#ifdef EVCO_BENCH_ASIO_CHANNEL
run_result channel_pingpong(const channel_params& p) {
  shared sh;
  run_result r;
  try {
    asio::io_context io(1);
    channel there(io, p.capacity), back(io, p.capacity);
    asio::co_spawn(io, channel_echo(&there, &back, &sh), asio::detached);
    asio::co_spawn(io, channel_main(p, &there, &back, &sh), asio::detached);
    io.run();
  } catch (const std::exception& e) {
    sh.fail(std::string("exception: ") + e.what());
  }
  if (!sh.error.empty()) return bench::fail("asio: " + sh.error);
  if (sh.verified != static_cast<std::uint64_t>(p.warmup + p.count)) {
    return bench::fail("asio: round trip count mismatch");
  }
  r.ok = true;
  r.seconds = seconds_between(sh.t0, sh.t1);
  r.items = static_cast<std::uint64_t>(p.count);
  r.steady_news = sh.h1.news - sh.h0.news;
  r.steady_event_mallocs = sh.h1.event_mallocs - sh.h0.event_mallocs;
  r.steady_round_trips = static_cast<std::uint64_t>(p.count);
  return r;
}

#endif

run_result idle_memory(const idle_params& p) {
  shared sh;
  sh.expected = p.conns;
  auto r = drive(sh, [&](tcp::acceptor* acc) { return idle_main(acc, p, &sh); });
  if (!r.ok) return r;
  if (sh.verified != static_cast<std::uint64_t>(p.conns)) {
    return bench::fail("asio: idle echo count");
  }
  r.bytes_per_conn = sh.mem.bytes_per_conn;
  r.rss_bytes_per_conn = sh.mem.rss_bytes_per_conn;
  r.items = static_cast<std::uint64_t>(p.conns);
  return r;
}

}  // namespace bench::asio_impl
