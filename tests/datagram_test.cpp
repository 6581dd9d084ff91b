#include "evco/datagram.hpp"

#include <doctest/doctest.h>

#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "support.hpp"

extern char** environ;

using namespace std::chrono_literals;
using evco::datagram;
using evco::endpoint;
using evco::errc;
using evco::loop;
using evco::result;
using evco::task;
using evco::test::error_of;
using evco::test::pattern;

// Counted by the operator new in counting_new.cpp, linked into this suite only.
extern std::atomic<std::size_t> allocations;
extern const bool counting_new_active;

// Each TEST_CASE sits right below the coroutine it runs.
TEST_SUITE_BEGIN("datagram");

namespace {

// ---- helpers --------------------------------------------------------------------------------

// Every case runs on a loop of its own and leaves the fd count as it found it.
template <class F>
void run_counted(F body) {
  const auto fds = evco::test::open_fds();
  evco::test::run_on_loop(body);
  CHECK(evco::test::open_fds() == fds);
}

std::span<char> span_of(std::string& s) {
  return {s.data(), s.size()};
}

// A socket bound to `at` (port 0), or a failed test; false where the address is unavailable
// (no IPv6 here), after saying so.
bool bind_or_skip(loop& lp, datagram& out, const endpoint& at) {
  auto d = datagram::bind(lp, at);
  if (!d && at.is_v6()) {
    MESSAGE("no IPv6 loopback here: ", d.error());
    return false;
  }
  REQUIRE_MESSAGE(d, error_of(d));
  out = std::move(d).value();
  return true;
}

endpoint local(const datagram& d) {
  auto ep = d.local_endpoint();
  REQUIRE_MESSAGE(ep, error_of(ep));
  return ep.value();
}

task<void> until_parked(loop& lp, std::size_t n) {
  for (int turns = 0; lp.parked().size() != n; ++turns) {
    REQUIRE_MESSAGE(turns < 10000, "still parked: ", lp.parked().size(), ", waiting for ", n);
    co_await lp.yield();
  }
}

void spawn_failure(std::exception_ptr) {
  FAIL("a spawned task threw");
}

// Receives one datagram into a buffer of `size` bytes; its outcome goes to `out` and `text`.
task<void> receive_into(datagram* d, std::size_t size, std::error_code* out, std::string* text,
                        evco::test::signal* done) {
  std::string buf(size, '\0');
  auto r = co_await d->receive_from(span_of(buf));
  *out = error_of(r);
  if (r) *text = buf.substr(0, r.value().size);
  done->set();
}

// ---- send and receive -----------------------------------------------------------------------

task<void> round_trip(loop& lp, endpoint at) {
  datagram a, b;
  if (!bind_or_skip(lp, a, at) || !bind_or_skip(lp, b, at)) co_return;
  const endpoint a_ep = local(a), b_ep = local(b);
  CHECK(a_ep.port() != 0);
  CHECK(a_ep.family() == at.family());
  REQUIRE(co_await a.send_to("hello", b_ep));
  std::string buf(64, '\0');
  auto r = co_await b.receive_from(span_of(buf));
  REQUIRE_MESSAGE(r, error_of(r));
  CHECK(r.value().size == 5);
  CHECK(buf.substr(0, 5) == "hello");
  CHECK(r.value().from == a_ep);
  // And back, to the sender it reported.
  REQUIRE(co_await b.send_to("world!", r.value().from));
  auto back = co_await a.receive_from(span_of(buf));
  REQUIRE_MESSAGE(back, error_of(back));
  CHECK(back.value().size == 6);
  CHECK(buf.substr(0, 6) == "world!");
  CHECK(back.value().from == b_ep);
}

TEST_CASE("send_to and receive_from carry a datagram and its sender over IPv4") {
  run_counted([](loop& lp) { return round_trip(lp, endpoint::v4_loopback()); });
}

TEST_CASE("send_to and receive_from carry a datagram and its sender over IPv6") {
  run_counted([](loop& lp) { return round_trip(lp, endpoint::v6_loopback()); });
}

task<void> unbound_sender(loop& lp) {
  auto sender = datagram::open(lp, AF_INET);
  REQUIRE_MESSAGE(sender, error_of(sender));
  CHECK(sender.value().local_endpoint().value().port() == 0);  // not bound yet
  datagram b;
  bind_or_skip(lp, b, endpoint::v4_loopback());
  REQUIRE(co_await sender.value().send_to("x", local(b)));
  const endpoint bound = local(sender.value());
  CHECK(bound.port() != 0);  // the kernel bound it on the first send
  std::array<std::byte, 8> buf;
  auto r = co_await b.receive_from(buf);
  REQUIRE_MESSAGE(r, error_of(r));
  CHECK(r.value().from.port() == bound.port());
  // The kernel may have picked any local address; the reply reaches it.
  REQUIRE(co_await b.send_to("y", r.value().from));
  auto n = co_await sender.value().receive(buf);
  REQUIRE_MESSAGE(n, error_of(n));
  CHECK(n.value() == 1);
}

TEST_CASE("open() makes a sender the kernel binds on its first send, which can be answered") {
  run_counted(unbound_sender);
}

TEST_CASE("bind and open refuse what they cannot make, as values") {
  loop lp;
  CHECK(error_of(datagram::open(lp, AF_UNIX)) == std::errc::address_family_not_supported);
  CHECK(error_of(datagram::bind(lp, endpoint::v4_loopback(), {.receive_buffer = -1})) ==
        std::errc::invalid_argument);
  auto a = datagram::bind(lp, endpoint::v4_loopback());
  REQUIRE(a);
  auto taken = datagram::bind(lp, a.value().local_endpoint().value());
  CHECK(error_of(taken) == std::errc::address_in_use);
}

task<void> reuse_port(loop& lp) {
  auto a = datagram::bind(lp, endpoint::v4_loopback(), {.reuse_port = true});
  REQUIRE(a);
  auto b = datagram::bind(lp, a.value().local_endpoint().value(), {.reuse_port = true});
  CHECK_MESSAGE(b, error_of(b));
  co_return;
}

TEST_CASE("SO_REUSEPORT lets two sockets share a port") {
  run_counted(reuse_port);
}

task<void> buffer_sizes(loop& lp) {
  auto a = datagram::bind(lp, endpoint::v4_loopback(),
                          {.receive_buffer = 64 * 1024, .send_buffer = 32 * 1024});
  REQUIRE(a);
  int rcv = 0, snd = 0;
  socklen_t len = sizeof rcv;
  REQUIRE(getsockopt(a.value().native_handle(), SOL_SOCKET, SO_RCVBUF, &rcv, &len) == 0);
  REQUIRE(getsockopt(a.value().native_handle(), SOL_SOCKET, SO_SNDBUF, &snd, &len) == 0);
  CHECK(rcv >= 64 * 1024);  // Linux doubles what it is asked for (bookkeeping)
  CHECK(snd >= 32 * 1024);
  co_return;
}

TEST_CASE("receive_buffer and send_buffer set SO_RCVBUF and SO_SNDBUF") {
  run_counted(buffer_sizes);
}

// ---- connected mode -------------------------------------------------------------------------

task<void> connected(loop& lp, endpoint at) {
  datagram a, b, stranger;
  if (!bind_or_skip(lp, a, at) || !bind_or_skip(lp, b, at) || !bind_or_skip(lp, stranger, at)) {
    co_return;
  }
  CHECK(error_of(a.remote_endpoint()) == std::errc::not_connected);
  std::array<char, 16> buf;
  CHECK(error_of(co_await a.send("nobody")) == std::errc::destination_address_required);
  REQUIRE(a.connect(local(b)));
  REQUIRE(b.connect(local(a)));
  CHECK(a.remote_endpoint().value() == local(b));
  // A connected socket takes datagrams from its peer only.
  REQUIRE(co_await stranger.send_to("stranger", local(a)));
  REQUIRE(co_await b.send("ping"));
  auto n = co_await a.receive(buf);
  REQUIRE_MESSAGE(n, error_of(n));
  CHECK(std::string_view(buf.data(), n.value()) == "ping");
  REQUIRE(co_await a.send("pong"));
  auto m = co_await b.receive_from(buf);
  REQUIRE_MESSAGE(m, error_of(m));
  CHECK(std::string_view(buf.data(), m.value().size) == "pong");
  CHECK(m.value().from == local(a));
}

TEST_CASE("connected mode: send and receive talk to the peer, and only the peer is heard") {
  SUBCASE("IPv4") {
    run_counted([](loop& lp) { return connected(lp, endpoint::v4_loopback()); });
  }
  SUBCASE("IPv6") {
    run_counted([](loop& lp) { return connected(lp, endpoint::v6_loopback()); });
  }
}

// Waits (bounded) until the kernel has queued an error on `fd`: the ICMP reply has arrived.
void wait_for_socket_error(int fd) {
  pollfd p{fd, 0, 0};
  REQUIRE(::poll(&p, 1, 10000) == 1);
  REQUIRE((p.revents & POLLERR) != 0);
}

task<void> icmp_refusal(loop& lp, endpoint at) {
  datagram a, gone;
  if (!bind_or_skip(lp, a, at) || !bind_or_skip(lp, gone, at)) co_return;
  const endpoint closed_port = local(gone);
  gone.close();  // nobody listens there any more: the kernel answers port unreachable
  REQUIRE(a.connect(closed_port));
  std::array<char, 16> buf;

  // A receive (parked or not) is the next op: it reports the refusal.
  REQUIRE(co_await a.send("anyone?"));
  auto r = co_await a.receive(buf, 10s);
  REQUIRE_FALSE(r);
  CHECK(r.error() == std::errc::connection_refused);

  // A send is the next op: it reports it.
  REQUIRE(co_await a.send("still?"));
  wait_for_socket_error(a.native_handle());
  CHECK(error_of(co_await a.send("again")) == std::errc::connection_refused);

  // The socket goes on: connected to a live peer, it talks.
  datagram live;
  REQUIRE(bind_or_skip(lp, live, at));
  REQUIRE(a.connect(local(live)));
  REQUIRE(co_await a.send("ok"));
  auto got = co_await live.receive_from(buf, 10s);
  REQUIRE_MESSAGE(got, error_of(got));
  CHECK(std::string_view(buf.data(), got.value().size) == "ok");
  REQUIRE(co_await live.send_to("back", got.value().from));
  auto n = co_await a.receive(buf, 10s);
  REQUIRE_MESSAGE(n, error_of(n));
  CHECK(std::string_view(buf.data(), n.value()) == "back");
}

TEST_CASE("an ICMP port unreachable comes back as connection_refused; the socket stays usable") {
  SUBCASE("IPv4") {
    run_counted([](loop& lp) { return icmp_refusal(lp, endpoint::v4_loopback()); });
  }
  SUBCASE("IPv6") {
    run_counted([](loop& lp) { return icmp_refusal(lp, endpoint::v6_loopback()); });
  }
}

// ---- sizes: truncation and empty datagrams ---------------------------------------------------

task<void> truncation(loop& lp) {
  datagram a, b;
  bind_or_skip(lp, a, endpoint::v4_loopback());
  bind_or_skip(lp, b, endpoint::v4_loopback());
  CHECK_FALSE(b.last_truncated());
  const std::string big = pattern(3000, 3);
  REQUIRE(co_await a.send_to(big, local(b)));
  REQUIRE(co_await a.send_to("next", local(b)));
  REQUIRE(co_await a.send_to(big.substr(0, 200), local(b)));
  std::string buf(100, '\0');
  auto r = co_await b.receive_from(span_of(buf));
  REQUIRE_FALSE(r);
  CHECK(r.error() == errc::message_truncated);
  CHECK(r.error() == std::errc::message_size);
  CHECK(buf == big.substr(0, 100));  // the part that fit
  auto cut = b.last_truncated();
  REQUIRE(cut);
  CHECK(cut->size == 3000);  // the datagram's real size
  CHECK(cut->from == local(a));
  // The next datagram is intact.
  auto next = co_await b.receive_from(span_of(buf));
  REQUIRE_MESSAGE(next, error_of(next));
  CHECK(next.value().size == 4);
  CHECK(buf.substr(0, 4) == "next");
  // receive() reports it the same way.
  auto n = co_await b.receive(std::span(buf.data(), 50));
  CHECK(error_of(n) == errc::message_truncated);
  CHECK(b.last_truncated()->size == 200);
  CHECK(buf.substr(0, 50) == big.substr(0, 50));
}

TEST_CASE(
    "a datagram larger than the buffer is message_truncated with its real size; the next "
    "one is intact") {
  run_counted(truncation);
}

task<void> empty_datagrams(loop& lp) {
  datagram a, b;
  bind_or_skip(lp, a, endpoint::v4_loopback());
  bind_or_skip(lp, b, endpoint::v4_loopback());
  REQUIRE(b.connect(local(a)));
  std::array<char, 16> buf;
  REQUIRE(co_await a.send_to(std::string_view(), local(b)));
  auto r = co_await b.receive_from(buf);
  REQUIRE_MESSAGE(r, error_of(r));
  CHECK(r.value().size == 0);
  CHECK(r.value().from == local(a));
  REQUIRE(co_await a.send_to("", local(b)));
  auto n = co_await b.receive(buf);
  REQUIRE_MESSAGE(n, error_of(n));
  CHECK(n.value() == 0);
  // An empty buffer takes a datagram too: an empty one fits, another is truncated.
  REQUIRE(co_await b.send(""));
  auto e = co_await a.receive_from(std::span<char>());
  REQUIRE_MESSAGE(e, error_of(e));
  CHECK(e.value().size == 0);
  REQUIRE(co_await b.send("xyz"));
  CHECK(error_of(co_await a.receive_from(std::span<char>())) == errc::message_truncated);
  CHECK(a.last_truncated()->size == 3);
}

TEST_CASE("zero-length datagrams are received with size 0, and are not an end") {
  run_counted(empty_datagrams);
}

task<void> too_large(loop& lp) {
  datagram a;
  bind_or_skip(lp, a, endpoint::v4_loopback());
  const std::string huge(70000, 'h');  // more than an IPv4 datagram holds
  CHECK(error_of(co_await a.send_to(huge, local(a))) == std::errc::message_size);
  // Sent to a family the socket does not speak: refused by the kernel, as a value.
  CHECK(error_of(co_await a.send_to("x", endpoint::v6_loopback(9))));
}

TEST_CASE("a send the kernel refuses fails with its errno") {
  run_counted(too_large);
}

// ---- limits: timeouts, cancellation, close, busy ---------------------------------------------

task<void> receive_timeout(loop& lp) {
  datagram a, b;
  bind_or_skip(lp, a, endpoint::v4_loopback());
  bind_or_skip(lp, b, endpoint::v4_loopback());
  std::array<char, 16> buf;
  evco::test::busy_for(50ms);  // libevent's cached time is now behind: the deadline is not
  const auto start = evco::clock::now();
  auto r = co_await a.receive_from(buf, 60ms);
  const auto took = evco::clock::now() - start;
  REQUIRE_FALSE(r);
  CHECK(r.error() == errc::timed_out);
  CHECK(r.error() == std::errc::timed_out);
  CHECK(took >= 60ms);
  // The socket is still usable, and its next datagram is whole.
  REQUIRE(co_await b.send_to("late", local(a)));
  auto n = co_await a.receive(buf, 10s);
  REQUIRE_MESSAGE(n, error_of(n));
  CHECK(std::string_view(buf.data(), n.value()) == "late");
}

TEST_CASE("a receive with a timeout and no datagram reports timed_out, never early") {
  run_counted(receive_timeout);
}

task<void> expired_deadline(loop& lp) {
  datagram a, b;
  bind_or_skip(lp, a, endpoint::v4_loopback());
  bind_or_skip(lp, b, endpoint::v4_loopback());
  std::array<char, 16> buf;
  // A receive that waited: the next ones wait for readiness without trying first ...
  lp.spawn([](datagram* b, endpoint to) -> task<void> { REQUIRE(co_await b->send_to("1", to)); }(
                                            &b, local(a)),
           spawn_failure);
  REQUIRE(co_await a.receive(buf, 10s));
  // ... except one whose deadline has passed already: it is a poll.
  REQUIRE(co_await b.send_to("2", local(a)));
  auto n = co_await a.receive(buf, -1ms);
  REQUIRE_MESSAGE(n, error_of(n));
  CHECK(buf[0] == '2');
  CHECK(error_of(co_await a.receive(buf, -1ms)) == errc::timed_out);
}

TEST_CASE("a receive whose deadline has passed takes a queued datagram, else times out") {
  run_counted(expired_deadline);
}

task<void> cancel_receive(loop& lp) {
  datagram a, b;
  bind_or_skip(lp, a, endpoint::v4_loopback());
  bind_or_skip(lp, b, endpoint::v4_loopback());
  std::array<char, 16> buf;
  evco::test::stop_probe probe;
  probe.stop_from_loop(lp);
  auto r = co_await a.receive_from(buf, probe.src.get_token());
  probe.op_resumed = true;
  REQUIRE_FALSE(r);
  CHECK(r.error() == std::errc::operation_canceled);
  CHECK_FALSE(probe.resumed_inside_request_stop);
  // A stop already requested fails at once.
  CHECK(error_of(co_await a.receive(buf, probe.src.get_token())) == errc::cancelled);
  // The socket is still usable.
  REQUIRE(co_await b.send_to("after", local(a)));
  auto n = co_await a.receive(buf, 10s);
  REQUIRE_MESSAGE(n, error_of(n));
  CHECK(std::string_view(buf.data(), n.value()) == "after");
}

TEST_CASE("a stop request cancels a parked receive from the loop; the socket stays usable") {
  run_counted(cancel_receive);
}

task<void> race_receive(loop& lp) {
  datagram a, b;
  bind_or_skip(lp, a, endpoint::v4_loopback());
  bind_or_skip(lp, b, endpoint::v4_loopback());
  std::array<char, 16> buf;
  auto r = co_await evco::when_any(a.receive_from(buf), evco::sleep_for(lp, 20ms));
  CHECK(r.index() == 1);  // the sleep won; the receive was cancelled and awaited
  REQUIRE(co_await b.send_to("won", local(a)));
  auto again = co_await evco::when_any(a.receive_from(buf), evco::sleep_for(lp, 10s));
  REQUIRE(again.index() == 0);
  REQUIRE(std::get<0>(again));
  CHECK(std::string_view(buf.data(), std::get<0>(again).value().size) == "won");
}

TEST_CASE("when_any cancels a losing receive, and the next receive gets the datagram") {
  run_counted(race_receive);
}

task<void> close_while_parked(loop& lp) {
  datagram a;
  bind_or_skip(lp, a, endpoint::v4_loopback());
  std::error_code ec;
  std::string text;
  evco::test::signal done;
  lp.spawn(receive_into(&a, 16, &ec, &text, &done), spawn_failure);
  co_await until_parked(lp, 1);
  a.close();
  CHECK_FALSE(done.is_set);  // resumed from the loop, not inside close()
  co_await done;
  CHECK(ec == errc::closed);
  CHECK(lp.parked().empty());
  std::array<char, 4> buf;
  CHECK(error_of(co_await a.receive(buf)) == errc::closed);
  CHECK(error_of(co_await a.send("x")) == errc::closed);
  CHECK(error_of(a.local_endpoint()) == errc::closed);
  CHECK(a.native_handle() == -1);
}

TEST_CASE("closing a socket resumes its parked receive with closed") {
  run_counted(close_while_parked);
}

task<void> second_receive_is_busy(loop& lp) {
  datagram a, b;
  bind_or_skip(lp, a, endpoint::v4_loopback());
  bind_or_skip(lp, b, endpoint::v4_loopback());
  std::error_code ec;
  std::string text;
  evco::test::signal done;
  lp.spawn(receive_into(&a, 16, &ec, &text, &done), spawn_failure);
  co_await until_parked(lp, 1);
  std::array<char, 16> buf;
  CHECK(error_of(co_await a.receive_from(buf)) == errc::busy);
  CHECK(error_of(co_await a.receive_batch({})) == errc::busy);
  // Sending is the other direction: not busy.
  REQUIRE(co_await b.send_to("first", local(a)));
  co_await done;
  CHECK(text == "first");  // the parked receive got it
}

TEST_CASE("a second receive while one is parked gets busy; the first still completes") {
  run_counted(second_receive_is_busy);
}

task<void> receive_forever(loop& lp, int* started) {
  auto d = datagram::bind(lp, endpoint::v4_loopback());
  REQUIRE(d);
  ++*started;
  std::array<char, 16> buf;
  auto r = co_await d.value().receive_from(buf, 1h);
  FAIL("resumed: ", error_of(r));
}

TEST_CASE("destroying the loop while a receive is parked frees everything") {
  const auto fds = evco::test::open_fds();
  int started = 0;
  {
    loop lp;
    lp.spawn(receive_forever(lp, &started), spawn_failure);
    lp.spawn(receive_forever(lp, &started), spawn_failure);
    lp.run(until_parked(lp, 2));
  }  // ~loop destroys both frames; LeakSanitizer checks the rest
  CHECK(started == 2);
  CHECK(evco::test::open_fds() == fds);
}

task<void> listed(loop& lp) {
  datagram a;
  bind_or_skip(lp, a, endpoint::v4_loopback());
  std::error_code ec;
  std::string text;
  evco::test::signal done;
  lp.spawn(
      [](datagram* d, std::error_code* ec, evco::test::signal* done) -> task<void> {
        std::array<char, 4> buf;
        *ec = error_of(co_await d->receive_from(buf, 1h));
        done->set();
      }(&a, &ec, &done),
      spawn_failure);
  co_await until_parked(lp, 1);
  const auto ops = lp.parked();
  REQUIRE(ops.size() == 1);
  CHECK(ops[0].what == "receive_from");
  CHECK(ops[0].local == local(a));
  CHECK_FALSE(ops[0].remote);
  REQUIRE(ops[0].time_left);
  CHECK(*ops[0].time_left <= 1h);
  CHECK(*ops[0].time_left > 1h - 1min);
  a.close();
  co_await done;
  CHECK(ec == errc::closed);
}

TEST_CASE("loop::parked() lists a parked receive with its local endpoint and deadline") {
  run_counted(listed);
}

// ---- bursts, batches, fairness ----------------------------------------------------------------

// The datagrams the kernel dropped at `fd`'s receive queue (the last column of its line in
// /proc/net/udp or udp6, found by the socket's inode).
std::uint64_t kernel_drops(int fd) {
  struct stat st {};
  REQUIRE(fstat(fd, &st) == 0);
  const std::string inode = std::to_string(st.st_ino);
  for (const char* table : {"/proc/net/udp", "/proc/net/udp6"}) {
    std::ifstream in(table);
    std::string line;
    std::getline(in, line);  // the header
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::vector<std::string> f;
      for (std::string w; fields >> w;)
        f.push_back(w);
      if (f.size() >= 13 && f[9] == inode) return std::stoull(f.back());
    }
  }
  FAIL("socket not found in /proc/net/udp");
  return 0;
}

std::uint32_t sequence_of(std::span<const std::byte> d) {
  std::uint32_t n = 0;
  std::memcpy(&n, d.data(), sizeof n);
  return n;
}

// 1000 datagrams of 64 bytes, each numbered, sent as fast as the kernel takes them; received
// one by one or in batches. None may be lost unnoticed: received + dropped == sent, in order.
task<void> burst(loop& lp, bool batched) {
  constexpr std::uint32_t count = 1000;
  auto rx = datagram::bind(lp, endpoint::v4_loopback(), {.receive_buffer = 4 << 20});
  REQUIRE(rx);
  datagram tx;
  bind_or_skip(lp, tx, endpoint::v4_loopback());
  const endpoint to = local(rx.value());
  std::uint32_t sent = 0;
  for (std::uint32_t i = 0; i < count; ++i) {
    std::array<std::byte, 64> msg{};
    std::memcpy(msg.data(), &i, sizeof i);
    auto r = co_await tx.send_to(msg, to);
    if (!r) {
      CHECK(r.error() == std::errc::no_buffer_space);  // the only refusal allowed
      continue;
    }
    ++sent;
  }
  std::uint32_t got = 0, largest_batch = 0;
  std::int64_t last = -1;
  std::vector<std::array<std::byte, 64>> bufs(16);
  std::vector<evco::datagram_slot> slots(bufs.begin(), bufs.end());
  for (;;) {
    const auto drops = kernel_drops(rx.value().native_handle());
    if (got + drops >= sent) {
      CHECK(got + drops == sent);
      MESSAGE("sent ", sent, ", received ", got, ", dropped by the kernel ", drops);
      break;
    }
    std::size_t n = 0;
    if (batched) {
      auto r = co_await rx.value().receive_batch(slots, 10s);
      REQUIRE_MESSAGE(r, error_of(r));
      n = r.value();
    } else {
      auto r = co_await rx.value().receive_from(bufs[0], 10s);
      REQUIRE_MESSAGE(r, error_of(r));
      slots[0].size = r.value().size;
      n = 1;
    }
    largest_batch = std::max(largest_batch, static_cast<std::uint32_t>(n));
    for (std::size_t i = 0; i < n; ++i) {
      REQUIRE(slots[i].size == 64);
      const std::uint32_t seq = sequence_of(slots[i].data());
      CHECK(seq > last);  // in order, no duplicates
      last = seq;
      ++got;
    }
  }
  CHECK(got > 0);
  if (batched) CHECK(largest_batch > 1);
}

TEST_CASE("a burst of 1000 datagrams: each one the kernel took is received or counted dropped") {
  SUBCASE("received one by one") {
    run_counted([](loop& lp) { return burst(lp, false); });
  }
  SUBCASE("received in batches") {
    run_counted([](loop& lp) { return burst(lp, true); });
  }
}

task<void> batches(loop& lp) {
  datagram a, b;
  bind_or_skip(lp, a, endpoint::v4_loopback());
  bind_or_skip(lp, b, endpoint::v4_loopback());
  const endpoint to = local(b);
  std::vector<std::string> payloads;
  for (int i = 0; i < 10; ++i)
    payloads.push_back(pattern(static_cast<std::size_t>(i * 3), static_cast<unsigned>(i)));
  payloads[7] = pattern(40, 7);  // larger than its slot
  std::vector<evco::outgoing_datagram> out;
  for (const auto& p : payloads)
    out.emplace_back(p, &to);
  auto sent = co_await a.send_batch(out);
  REQUIRE_MESSAGE(sent, error_of(sent));
  CHECK(sent.value() == out.size());  // sendmmsg took them all in one go

  std::vector<std::array<std::byte, 32>> bufs(16);
  std::vector<evco::datagram_slot> slots(bufs.begin(), bufs.end());
  std::size_t got = 0;
  std::size_t largest = 0;
  while (got < payloads.size()) {
    auto r = co_await b.receive_batch(slots, 10s);
    REQUIRE_MESSAGE(r, error_of(r));
    REQUIRE(r.value() >= 1);
    largest = std::max(largest, r.value());
    for (std::size_t i = 0; i < r.value(); ++i, ++got) {
      const std::string& want = payloads[got];
      CHECK(slots[i].size == want.size());
      CHECK(slots[i].from == local(a));
      CHECK(slots[i].truncated() == (want.size() > 32));
      const auto bytes = slots[i].data();
      CHECK(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()) ==
            std::string_view(want).substr(0, 32));
    }
  }
  CHECK(largest > 1);  // several datagrams in one completion
  // Empty batches complete at once; a batch waits while nothing is queued.
  CHECK((co_await b.receive_batch({})).value() == 0);
  CHECK((co_await a.send_batch({})).value() == 0);
  CHECK(error_of(co_await b.receive_batch(slots, 20ms)) == errc::timed_out);
  // Connected: a null destination is the peer.
  REQUIRE(a.connect(to));
  const evco::outgoing_datagram to_peer[] = {{"p"}};
  CHECK((co_await a.send_batch(to_peer)).value() == 1);
  auto r = co_await b.receive_batch(slots, 10s);
  REQUIRE(r);
  CHECK(r.value() == 1);
  CHECK(slots[0].size == 1);
}

TEST_CASE("send_batch and receive_batch move several datagrams per completion, in order") {
  run_counted(batches);
}

task<void> note_turn(bool* ran) {
  *ran = true;
  co_return;
}

// A socket that always has a datagram does not keep the loop to itself: another coroutine runs
// before the receiver has taken them all.
task<void> fairness(loop& lp) {
  auto rx = datagram::bind(lp, endpoint::v4_loopback(), {.receive_buffer = 1 << 20});
  REQUIRE(rx);
  datagram tx;
  bind_or_skip(lp, tx, endpoint::v4_loopback());
  constexpr int count = 300;
  for (int i = 0; i < count; ++i)
    REQUIRE(co_await tx.send_to("d", local(rx.value())));
  bool ran = false;
  lp.spawn(note_turn(&ran), spawn_failure);
  int received_before_turn = -1;
  std::array<char, 4> buf;
  for (int i = 0; i < count; ++i) {
    if (ran && received_before_turn < 0) received_before_turn = i;
    auto r = co_await rx.value().receive(buf, 10s);
    REQUIRE_MESSAGE(r, error_of(r));
  }
  CHECK(ran);
  CHECK(received_before_turn >= 0);
  CHECK(received_before_turn <= 65);  // within one budget of ops completed at once
}

TEST_CASE("a socket that always has datagrams lets the loop run others between them") {
  run_counted(fairness);
}

// ---- a peer evco did not write ---------------------------------------------------------------

// Python's socket module: binds the address it is given (port 0), says hello to evco's port,
// then echoes every datagram to its sender until "quit" (or 10 s of silence).
constexpr const char* python_echo = R"(
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(10)
s.bind((host, 0))
s.sendto(b"hello", (host, port))
while True:
    data, peer = s.recvfrom(65536)
    if data == b"quit":
        break
    s.sendto(data, peer)
)";

struct child_process {
  pid_t pid = -1;
  int status = -1;
  bool start(std::vector<std::string> args) {
    std::vector<char*> argv;
    for (auto& a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    return posix_spawnp(&pid, argv[0], nullptr, nullptr, argv.data(), environ) == 0;
  }
  int wait() {
    if (pid > 0 && waitpid(pid, &status, 0) == pid) pid = -1;
    return status;
  }
  ~child_process() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      wait();
    }
  }
};

task<void> python_peer(loop& lp, endpoint at) {
  datagram d;
  if (!bind_or_skip(lp, d, at)) co_return;
  child_process py;
  REQUIRE(py.start({"python3", "-c", python_echo, at.address(), std::to_string(local(d).port())}));
  std::string buf(65536, '\0');
  auto hello = co_await d.receive_from(span_of(buf), 20s);
  REQUIRE_MESSAGE(hello, error_of(hello));
  CHECK(buf.substr(0, hello.value().size) == "hello");
  const endpoint peer = hello.value().from;
  const std::string payloads[] = {"", "a", pattern(1200, 5), pattern(60000, 6)};
  for (const std::string& p : payloads) {
    REQUIRE(co_await d.send_to(p, peer));
    auto r = co_await d.receive_from(span_of(buf), 10s);
    REQUIRE_MESSAGE(r, error_of(r));
    CHECK(r.value().from == peer);
    REQUIRE(r.value().size == p.size());
    CHECK(buf.substr(0, p.size()) == p);
  }
  REQUIRE(co_await d.send_to("quit", peer));
  const int status = py.wait();
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("a Python peer echoes datagrams of every size back, over IPv4 and IPv6") {
  SUBCASE("IPv4") {
    run_counted([](loop& lp) { return python_peer(lp, endpoint::v4_loopback()); });
  }
  SUBCASE("IPv6") {
    run_counted([](loop& lp) { return python_peer(lp, endpoint::v6_loopback()); });
  }
}

// ---- steady state allocates nothing ------------------------------------------------------------

task<void> echo(datagram* d, int count) {
  std::array<std::byte, 64> buf{};
  for (int i = 0; i < count; ++i) {
    auto r = co_await d->receive_from(buf, 10s);
    REQUIRE(r);
    REQUIRE(co_await d->send_to(std::span(buf).first(r.value().size), r.value().from));
  }
}

// Both ends wait for every datagram (the echo in a coroutine of its own), with and without
// a deadline.
task<void> steady_state_allocations(loop& lp, std::size_t* counted) {
  datagram a, b;
  bind_or_skip(lp, a, endpoint::v4_loopback());
  bind_or_skip(lp, b, endpoint::v4_loopback());
  REQUIRE(a.connect(local(b)));
  constexpr int warmup = 100, count = 1000;
  lp.spawn(echo(&b, warmup + count), spawn_failure);
  std::array<std::byte, 64> msg{}, buf{};
  std::size_t before = 0;
  for (int i = 0; i < warmup + count; ++i) {
    if (i == warmup) before = allocations.load();
    REQUIRE(co_await a.send(msg));
    REQUIRE(co_await a.receive(buf, i % 2 ? evco::op_options(10s) : evco::op_options()));
  }
  *counted = allocations.load() - before;
  CHECK(lp.parked().empty());
}

TEST_CASE("steady-state receives and sends allocate nothing") {
  if (!counting_new_active) {
    MESSAGE("operator new cannot be replaced in this build (ThreadSanitizer): not counted");
    return;
  }
  loop lp;
  std::size_t n = 1;
  lp.run(steady_state_allocations(lp, &n));
  CHECK(n == 0);
}

}  // namespace

TEST_SUITE_END();
