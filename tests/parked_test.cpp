#include "evco/parked.hpp"

#include <doctest/doctest.h>

#include <csignal>

#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <string>

#include "evco/channel.hpp"
#include "evco/signal.hpp"
#include "evco/when_all.hpp"
#include "evco/when_any.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using evco::endpoint;
using evco::listener;
using evco::loop;
using evco::parked_op_info;
using evco::stream;
using evco::task;
using evco::test::error_of;

namespace {

// Yields until `n` ops are parked on `lp` (each yield lets the loop poll once), or fails.
task<void> until_parked(loop& lp, std::size_t n) {
  for (int turns = 0; lp.parked().size() != n; ++turns) {
    REQUIRE_MESSAGE(turns < 10000, "still parked: ", lp.parked().size(), ", waiting for ", n);
    co_await lp.yield();
  }
}

std::vector<parked_op_info> parked_as(const loop& lp, std::string_view what) {
  std::vector<parked_op_info> found;
  for (auto& op : lp.parked())
    if (op.what == what) found.push_back(op);
  return found;
}

// The entry for `what`, of which there must be exactly one.
parked_op_info the(const loop& lp, std::string_view what) {
  auto found = parked_as(lp, what);
  REQUIRE_MESSAGE(found.size() == 1, what);
  return found.front();
}

// The chain's innermost task is `function` (g++ names it with its parameters, clang 14 bare),
// suspended on `line` of this file.
void check_innermost(const parked_op_info& op, std::string_view function, int line) {
  REQUIRE_FALSE(op.chain.empty());
  const parked_op_info::frame& f = op.chain.front();
  CHECK_MESSAGE(f.function.starts_with(function), f.function);
  CHECK(f.function.find("Frame") == std::string::npos);  // g++ 12's actor name, cleaned up
  CHECK(f.file.ends_with("parked_test.cpp"));
  CHECK(f.line == static_cast<std::uint_least32_t>(line));
}

// What dump() writes.
std::string dump_text(const loop& lp) {
  std::FILE* f = std::tmpfile();
  REQUIRE(f);
  lp.dump(f);
  std::rewind(f);
  std::string text;
  for (int c; (c = std::fgetc(f)) != EOF;)
    text += static_cast<char>(c);
  std::fclose(f);
  return text;
}

// A UDP socket on 127.0.0.1 that never answers: a nameserver whose lookups stay out.
struct silent_nameserver {
  silent_nameserver() {
    fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    const auto at = endpoint::v4_loopback();
    REQUIRE(::bind(fd, at.data(), at.size()) == 0);
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    REQUIRE(getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0);
    ep = endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len).value();
  }
  ~silent_nameserver() { ::close(fd); }
  int fd = -1;
  endpoint ep;
};

// ---- one of each kind, parked ---------------------------------------------------------------

struct waits {
  std::stop_source stop;
  int finished = 0;
  int read_line = 0, accept_line = 0, sleep_line = 0, handshake_line = 0, connect_line = 0;
};

void count_failure(std::exception_ptr) {
  FAIL("a parked task threw");
}

task<void> read_forever(stream* s, waits* w) {
  std::array<char, 16> buf;
  w->read_line = __LINE__ + 1;
  auto r = co_await s->read_some(std::span(buf));
  CHECK(r);  // the test writes a byte to end it
  ++w->finished;
}

task<void> accept_forever(listener* l, waits* w) {
  w->accept_line = __LINE__ + 1;
  auto r = co_await l->accept(1h);
  CHECK(error_of(r) == evco::errc::closed);
  ++w->finished;
}

task<void> sleep_long(loop& lp, waits* w) {
  w->sleep_line = __LINE__ + 1;
  auto r = co_await evco::sleep_for(lp, 1h, w->stop.get_token());
  CHECK(error_of(r) == evco::errc::cancelled);
  ++w->finished;
}

task<void> handshake_forever(stream tcp, const evco::tls_context* ctx, waits* w) {
  w->handshake_line = __LINE__ + 1;
  auto r = co_await evco::tls_client(std::move(tcp), *ctx, "", 1h, w->stop.get_token());
  CHECK(error_of(r) == evco::errc::cancelled);
  ++w->finished;
}

task<void> connect_forever(loop& lp, waits* w) {
  w->connect_line = __LINE__ + 1;
  auto r = co_await evco::connect(lp, "silent.test", 80, {}, w->stop.get_token());
  CHECK(error_of(r) == evco::errc::cancelled);
  ++w->finished;
}

task<void> one_of_each(loop& lp) {
  CHECK(lp.parked().empty());
  auto pair = co_await evco::test::connected_pair(lp);
  auto idle = listener::bind(lp, endpoint::v4_loopback());
  REQUIRE(idle);
  // A plain listener that never accepts: the kernel completes TCP, nobody answers TLS.
  auto plain = listener::bind(lp, endpoint::v4_loopback());
  REQUIRE(plain);
  const endpoint plain_ep = plain.value().local_endpoint().value();
  auto tcp = co_await evco::connect(lp, plain_ep);
  REQUIRE(tcp);
  const endpoint tcp_ep = tcp.value().local_endpoint().value();
  evco::tls_client_options insecure;
  insecure.insecure_skip_verify = true;
  auto ctx = evco::tls_context::client(insecure);
  REQUIRE(ctx);
  silent_nameserver dns;
  REQUIRE(lp.set_nameservers(std::span(&dns.ep, 1)));

  waits w;
  lp.spawn(read_forever(&pair.client, &w), count_failure);
  lp.spawn(accept_forever(&idle.value(), &w), count_failure);
  lp.spawn(sleep_long(lp, &w), count_failure);
  lp.spawn(handshake_forever(std::move(tcp).value(), &ctx.value(), &w), count_failure);
  lp.spawn(connect_forever(lp, &w), count_failure);
  // read, accept, sleep, handshake, the hostname connect, and its two lookups (AAAA, A)
  co_await until_parked(lp, 7);

  for (const auto& op : lp.parked())
    CHECK(op.waited >= evco::duration::zero());

  const auto read = the(lp, "read_some");
  CHECK(read.local == pair.client.local_endpoint().value());
  CHECK(read.remote == pair.client.remote_endpoint().value());
  CHECK_FALSE(read.time_left);
  CHECK(read.host.empty());
  check_innermost(read, "read_forever", w.read_line);
  CHECK(read.chain.size() == 1);
  CHECK(read.started_by == parked_op_info::origin::spawned);

  const auto accept = the(lp, "accept");
  CHECK(accept.local == idle.value().local_endpoint().value());
  CHECK_FALSE(accept.remote);
  REQUIRE(accept.time_left);
  CHECK(*accept.time_left > 0s);
  CHECK(*accept.time_left <= 1h);
  check_innermost(accept, "accept_forever", w.accept_line);

  // sleep_for's own frame is left out: the chain starts at the co_await on it.
  const auto sleep = the(lp, "sleep");
  CHECK_FALSE(sleep.local);
  REQUIRE(sleep.time_left);
  CHECK(*sleep.time_left > 0s);
  CHECK(*sleep.time_left <= 1h);
  check_innermost(sleep, "sleep_long", w.sleep_line);
  CHECK(sleep.chain.size() == 1);

  const auto handshake = the(lp, "handshake");
  CHECK(handshake.local == tcp_ep);
  CHECK(handshake.remote == plain_ep);
  REQUIRE(handshake.time_left);
  CHECK(*handshake.time_left <= 1h);
  check_innermost(handshake, "handshake_forever", w.handshake_line);
  CHECK(handshake.chain.size() == 1);  // not tls_client, not its handshake

  const auto connect = the(lp, "connect");
  CHECK(connect.host == "silent.test:80");
  CHECK_FALSE(connect.local);
  check_innermost(connect, "connect_forever", w.connect_line);
  CHECK(connect.started_by == parked_op_info::origin::spawned);

  // The hostname connect spawned its two lookups: their chain ends there.
  const auto lookups = parked_as(lp, "resolve");
  REQUIRE(lookups.size() == 2);
  for (const auto& r : lookups) {
    CHECK(r.host == "silent.test:80");
    CHECK(r.time_left);
    CHECK(r.chain.empty());
    CHECK(r.started_by == parked_op_info::origin::spawned);
  }

  // Every way out leaves the registry: data, a close, a stop request.
  REQUIRE(co_await pair.server.write("x"));
  idle.value().close();
  w.stop.request_stop();
  for (int turns = 0; w.finished < 5 || !lp.parked().empty(); ++turns) {
    REQUIRE_MESSAGE(turns < 10000, "still parked: ", lp.parked().size());
    co_await lp.yield();
  }
  CHECK(lp.parked().empty());
}

// ---- a chain of nested tasks ------------------------------------------------------------------

int inner_line = 0;
int middle_line = 0;
int outer_line = 0;

task<void> inner_read(stream& s) {
  std::array<char, 4> buf;
  inner_line = __LINE__ + 1;
  auto r = co_await s.read_exactly(std::span(buf));
  CHECK(r);
}

task<void> middle(stream& s) {
  middle_line = __LINE__ + 1;
  co_await inner_read(s);
}

task<void> check_then_write(loop& lp, stream* writer) {
  co_await until_parked(lp, 1);
  const auto op = the(lp, "read_exactly");
  REQUIRE(op.chain.size() == 3);
  check_innermost(op, "inner_read", inner_line);
  CHECK(op.chain[1].function.starts_with("middle"));
  CHECK(op.chain[1].line == static_cast<std::uint_least32_t>(middle_line));
  CHECK(op.chain[2].function.starts_with("nested_chain"));
  CHECK(op.chain[2].line == static_cast<std::uint_least32_t>(outer_line));
  CHECK(op.started_by == parked_op_info::origin::run);
  REQUIRE(co_await writer->write("abcd"));
}

task<void> nested_chain(loop& lp) {
  auto pair = co_await evco::test::connected_pair(lp);
  lp.spawn(check_then_write(lp, &pair.server), count_failure);
  outer_line = __LINE__ + 1;
  co_await middle(pair.client);
  CHECK(lp.parked().empty());
}

// ---- a chain through when_any and when_all -----------------------------------------------------

int algorithm_line = 0;
int read_in_task_line = 0;

task<void> read_in_task(stream& s) {
  std::array<char, 4> buf;
  read_in_task_line = __LINE__ + 1;
  CHECK(co_await s.read_exactly(std::span(buf)));
}

// Their own coroutines are left out, as sleep_for's is: each chain goes from the op (or the task
// the algorithm was given) to the co_await on the algorithm.
task<void> check_algorithm_chains(loop& lp, stream* writer, stream* other_writer) {
  co_await until_parked(lp, 3);
  const auto in_task = the(lp, "read_exactly");
  REQUIRE(in_task.chain.size() == 2);
  check_innermost(in_task, "read_in_task", read_in_task_line);
  CHECK(in_task.chain[1].function.starts_with("algorithm_chains"));
  CHECK(in_task.chain[1].line == static_cast<std::uint_least32_t>(algorithm_line));
  for (const char* what : {"sleep", "read_some"}) {
    const auto op = the(lp, what);
    REQUIRE_MESSAGE(op.chain.size() == 1, what);
    check_innermost(op, "algorithm_chains", algorithm_line);
  }
  REQUIRE(co_await writer->write("abcd"));
  REQUIRE(co_await other_writer->write("e"));
}

task<void> algorithm_chains(loop& lp) {
  auto pair = co_await evco::test::connected_pair(lp);
  auto other = co_await evco::test::connected_pair(lp);
  lp.spawn(check_algorithm_chains(lp, &pair.server, &other.server), count_failure);
  std::array<char, 4> buf;
  // The co_await on a line of its own: compilers place one that spans lines differently.
  auto both = evco::when_all(evco::when_any(read_in_task(pair.client), evco::sleep_for(lp, 1h)),
                             other.client.read_some(std::span(buf)));
  algorithm_line = __LINE__ + 1;
  auto [any, n] = co_await std::move(both);
  CHECK(any.index() == 0);
  CHECK(n);
  CHECK(lp.parked().empty());
}

// ---- frames that are not evco tasks -----------------------------------------------------------

// An eager coroutine the test owns and destroys: the frame of a type that is not evco's.
struct foreign {
  struct promise_type {
    foreign get_return_object() {
      return {std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_always final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }
  };
  std::coroutine_handle<promise_type> h;
  foreign(std::coroutine_handle<promise_type> c) : h(c) {}
  foreign(foreign&& o) noexcept : h(std::exchange(o.h, {})) {}
  ~foreign() {
    if (h) h.destroy();
  }
};

foreign foreign_read(stream& s) {
  std::array<char, 4> buf;
  (void)co_await s.read_some(std::span(buf));
}

foreign foreign_accept(listener& l) {
  (void)co_await l.accept();
}

foreign foreign_sleep(loop& lp) {
  (void)co_await evco::sleep_for(lp, 1h);
}

foreign foreign_resolve(loop& lp) {
  (void)co_await evco::resolve(lp, "silent.test", 53);
}

int task_line = 0;

task<void> task_read(stream& s) {
  std::array<char, 4> buf;
  task_line = __LINE__ + 1;
  (void)co_await s.read_some(std::span(buf));
}

foreign foreign_awaits_task(stream& s) {
  co_await task_read(s);
}

task<void> destroyed_frames(loop& lp) {
  auto pair = co_await evco::test::connected_pair(lp);
  auto l = listener::bind(lp, endpoint::v4_loopback());
  REQUIRE(l);
  silent_nameserver dns;
  REQUIRE(lp.set_nameservers(std::span(&dns.ep, 1)));
  {
    auto r = foreign_read(pair.client);
    auto w = foreign_awaits_task(pair.server);
    auto a = foreign_accept(l.value());
    auto s = foreign_sleep(lp);
    auto d = foreign_resolve(lp);
    REQUIRE(lp.parked().size() == 5);  // each parked on its first resume, inline
    for (const auto& op : lp.parked()) {
      CHECK(op.started_by == parked_op_info::origin::other);
      if (op.what == "read_some" && op.local == pair.client.local_endpoint().value()) {
        CHECK(op.chain.empty());  // awaited by no task at all
      }
    }
    const auto reads = parked_as(lp, "read_some");
    REQUIRE(reads.size() == 2);
    const auto& through_task = reads[0].chain.empty() ? reads[1] : reads[0];
    check_innermost(through_task, "task_read", task_line);
    CHECK(through_task.chain.size() == 1);  // then a foreign frame
    CHECK(dump_text(lp).find("(not an evco::task)") != std::string::npos);
  }  // destroyed while parked
  CHECK(lp.parked().empty());
}

// ---- dump ---------------------------------------------------------------------------------

int dump_read_line = 0;

task<void> dump_read(stream* s) {
  std::array<char, 4> buf;
  dump_read_line = __LINE__ + 1;
  (void)co_await s->read_some(std::span(buf));
}

task<void> sleep_until_stopped(loop& lp, std::stop_token st) {
  (void)co_await evco::sleep_for(lp, 1h, std::move(st));
}

task<void> dumps(loop& lp) {
  CHECK(dump_text(lp) == "evco: 0 parked ops\n");
  auto pair = co_await evco::test::connected_pair(lp);
  auto l = listener::bind(lp, endpoint::v4_loopback());
  REQUIRE(l);
  std::stop_source stop;
  lp.spawn(dump_read(&pair.client), count_failure);
  lp.spawn(sleep_until_stopped(lp, stop.get_token()), count_failure);
  co_await until_parked(lp, 2);

  const std::string text = dump_text(lp);
  INFO(text);
  CHECK(text.starts_with("evco: 2 parked ops\n"));
  CHECK(std::count(text.begin(), text.end(), '\n') == 3);
  const std::string read_line = "read_some " + pair.client.local_endpoint().value().to_string() +
                                " <- " + pair.client.remote_endpoint().value().to_string() +
                                "  waited ";
  CHECK(text.find(read_line) != std::string::npos);
  CHECK(text.find("no deadline  in dump_read") != std::string::npos);
  CHECK(text.find("parked_test.cpp:" + std::to_string(dump_read_line) + " <- (spawned)\n") !=
        std::string::npos);
  CHECK(text.find("\nsleep  waited ") != std::string::npos);
  CHECK(text.find(" s left  in ") != std::string::npos);

  stop.request_stop();
  REQUIRE(co_await pair.server.write("x"));
  for (int turns = 0; !lp.parked().empty(); ++turns) {
    REQUIRE(turns < 10000);
    co_await lp.yield();
  }
  CHECK(dump_text(lp) == "evco: 0 parked ops\n");
}

task<void> sleep_forever(loop& lp) {
  (void)co_await evco::sleep_for(lp, 1h);
}

task<void> resolve_forever(loop& lp) {
  (void)co_await evco::resolve(lp, "silent.test", 80);
}

// A channel's waiting receiver and sender, and a signal wait, are listed like any op: by name,
// with the deadline they were given, and they leave once they complete.
task<void> receive_one(evco::channel<int>* ch, int* got) {
  auto r = co_await ch->receive(evco::op_options(1h));
  REQUIRE(r);
  *got = r.value();
}
task<void> send_two(evco::channel<int>* ch) {
  REQUIRE(co_await ch->send(2));
  REQUIRE(co_await ch->send(3));  // waits: the hand-over channel has no room
}
task<void> wait_usr2(loop& lp, int* got) {
  auto r = co_await evco::wait_signal(lp, SIGUSR2);
  REQUIRE(r);
  *got = r.value();
}

task<void> channel_and_signal(loop& lp) {
  evco::channel<int> ch(lp, 0);
  int got = 0, sig = 0;
  lp.spawn(receive_one(&ch, &got), count_failure);
  lp.spawn(wait_usr2(lp, &sig), count_failure);
  co_await until_parked(lp, 2);
  const auto receive = the(lp, "receive");
  REQUIRE(receive.time_left);
  CHECK(*receive.time_left > 59min);
  CHECK(!receive.local);
  CHECK(!the(lp, "wait_signal").time_left);
  lp.spawn(send_two(&ch), count_failure);
  // The receiver takes 2 once it resumes; the second send waits.
  for (int turns = 0; got == 0 || parked_as(lp, "send").empty(); ++turns) {
    REQUIRE(turns < 10000);
    co_await lp.yield();
  }
  CHECK(parked_as(lp, "receive").empty());
  CHECK(!the(lp, "send").time_left);
  std::raise(SIGUSR2);
  REQUIRE(co_await ch.receive());
  co_await until_parked(lp, 0);
  CHECK(got == 2);
  CHECK(sig == SIGUSR2);
}

}  // namespace

TEST_SUITE("parked") {
  TEST_CASE("channel ends and signal waits are listed while they wait, and leave when done") {
    evco::test::run_on_loop(channel_and_signal);
  }

  TEST_CASE(
      "parked() lists a read, an accept, a sleep, a handshake and a connect with their "
      "endpoints, deadlines and awaiting tasks, and forgets each once it completes") {
    evco::test::run_on_loop(one_of_each);
  }

  TEST_CASE("the chain runs from the innermost task to the one loop::run started") {
    evco::test::run_on_loop(nested_chain);
  }

  TEST_CASE("the chain leaves out the coroutines of when_any and when_all, as of sleep_for") {
    evco::test::run_on_loop(algorithm_chains);
  }

  TEST_CASE("ops awaited by other coroutine types are listed, and leave when their frame dies") {
    evco::test::run_on_loop(destroyed_frames);
  }

  TEST_CASE("dump() writes a count line, then one readable line per parked op") {
    evco::test::run_on_loop(dumps);
  }

  TEST_CASE("a loop destroyed with ops parked on it leaves nothing listed behind") {
    silent_nameserver dns;
    {
      loop lp;
      REQUIRE(lp.set_nameservers(std::span(&dns.ep, 1)));
      lp.spawn(sleep_forever(lp), count_failure);
      lp.spawn(resolve_forever(lp), count_failure);
      lp.run(until_parked(lp, 2));
    }  // ~loop destroys both frames; ASan would see a listed op left dangling
  }
}
