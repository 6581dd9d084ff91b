#include "evco/connect.hpp"

#include <doctest/doctest.h>

#include <sys/socket.h>
#include <unistd.h>

#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;
using evco::endpoint;
using evco::errc;
using evco::listener;
using evco::loop;
using evco::result;
using evco::stream;
using evco::task;
using evco::test::error_of;

// Each TEST_CASE sits right below the coroutine it runs.
TEST_SUITE_BEGIN("connect");

namespace {

using evco::test::bound_port;
using evco::test::full_backlog;

// ---- connects that fail ---------------------------------------------------------------------

task<void> refused(loop& lp) {
  bound_port port;
  REQUIRE(port.bind());
  auto c = co_await evco::connect(lp, port.ep);
  REQUIRE_FALSE(c);
  CHECK(c.error() == std::errc::connection_refused);
}

TEST_CASE("connecting to a bound port that does not listen is refused") {
  evco::test::run_on_loop(refused);
}

task<void> times_out(loop& lp) {
  full_backlog fb;
  auto filled = co_await full_backlog::fill(lp, &fb);
  REQUIRE_MESSAGE(filled, error_of(filled));
  const auto fds = evco::test::open_fds();
  auto c = co_await evco::connect(lp, fb.ep, {.timeout = 30ms});
  REQUIRE_FALSE(c);
  CHECK(c.error() == errc::connect_timed_out);
  CHECK(c.error() == std::errc::timed_out);
  CHECK(evco::test::open_fds() == fds);  // the attempt's socket is gone: no late success
}

TEST_CASE("a connect that never completes times out and leaves no socket behind") {
  evco::test::run_on_loop(times_out);
}

// A connect budget armed after long work inside a callback still lasts its whole duration.
task<void> times_out_after_busy(loop& lp) {
  full_backlog fb;
  auto filled = co_await full_backlog::fill(lp, &fb);
  REQUIRE_MESSAGE(filled, error_of(filled));
  evco::test::busy_for(100ms);
  const auto start = evco::clock::now();
  auto c = co_await evco::connect(lp, fb.ep, {.timeout = 50ms});
  const auto took = evco::clock::now() - start;
  REQUIRE_FALSE(c);
  CHECK(c.error() == errc::connect_timed_out);
  CHECK(took >= 50ms);
}

TEST_CASE("a connect budget armed after long work inside a callback never ends early") {
  evco::test::run_on_loop(times_out_after_busy);
}

task<void> cancelled_connect(loop& lp) {
  full_backlog fb;
  auto filled = co_await full_backlog::fill(lp, &fb);
  REQUIRE_MESSAGE(filled, error_of(filled));
  std::stop_source src;
  struct stopper {
    static task<void> run(std::stop_source* s) {
      s->request_stop();
      co_return;
    }
  };
  lp.spawn(stopper::run(&src), [](std::exception_ptr) {});
  auto c = co_await evco::connect(lp, fb.ep, {}, src.get_token());
  REQUIRE_FALSE(c);
  CHECK(c.error() == std::errc::operation_canceled);
}

TEST_CASE("a stop request cancels a pending connect") {
  evco::test::run_on_loop(cancelled_connect);
}

// ---- many cycles ----------------------------------------------------------------------------

task<result<void>> echo_once(stream s) {
  std::string buf(64, '\0');
  for (;;) {
    auto n = co_await s.read_some(std::span<char>(buf));
    if (!n) co_return n.error() == errc::eof ? result<void>(evco::success()) : n.error();
    EVCO_TRYV(co_await s.write(std::string_view(buf.data(), n.value())));
  }
}

task<void> serve(loop& lp, listener* l, int* served) {
  for (;;) {
    auto s = co_await l->accept();
    if (!s) co_return;  // closed
    ++*served;
    lp.spawn(echo_once(std::move(s).value()), [](std::error_code) {});
  }
}

struct cycle_counts {
  int normal = 0, refused = 0, timed_out = 0, cancelled = 0;
};

task<void> cycles(loop& lp, int n, cycle_counts* counts) {
  auto l = listener::bind(lp, endpoint::v4_loopback());
  REQUIRE(l);
  const endpoint ep = l.value().local_endpoint().value();
  int served = 0;
  lp.spawn(serve(lp, &l.value(), &served), [](std::exception_ptr) { FAIL("server"); });
  bound_port closed_port;
  REQUIRE(closed_port.bind());
  full_backlog fb;
  REQUIRE(co_await full_backlog::fill(lp, &fb));
  std::string buf(8, '\0');
  for (int i = 0; i < n; ++i) {
    if (i % 100 == 1) {
      auto c = co_await evco::connect(lp, closed_port.ep);
      REQUIRE(c.error() == std::errc::connection_refused);
      ++counts->refused;
    } else if (i % 100 == 2) {
      auto c = co_await evco::connect(lp, fb.ep, {.timeout = 1ms});
      REQUIRE(c.error() == std::errc::timed_out);
      ++counts->timed_out;
    } else if (i % 100 == 3) {
      std::stop_source src;
      src.request_stop();
      auto c = co_await evco::connect(lp, ep, {}, src.get_token());
      REQUIRE(c.error() == errc::cancelled);
      ++counts->cancelled;
    } else {
      auto c = co_await evco::connect(lp, ep);
      REQUIRE_MESSAGE(c, error_of(c));
      REQUIRE(co_await c.value().write("12345678"));
      REQUIRE(co_await c.value().read_exactly(std::span<char>(buf)));
      REQUIRE(buf == "12345678");
      ++counts->normal;
    }
  }
  l.value().close();
  CHECK(served == counts->normal);
}

TEST_CASE("10,000 connect/echo/close cycles leave the fd count where it started") {
  const auto before = evco::test::open_fds();
  cycle_counts counts;
  {
    loop lp;
    lp.run(cycles(lp, 10000, &counts));
  }
  CHECK(counts.refused == 100);
  CHECK(counts.timed_out == 100);
  CHECK(counts.cancelled == 100);
  CHECK(counts.normal == 9700);
  CHECK(evco::test::open_fds() == before);
}

}  // namespace

TEST_SUITE_END();
