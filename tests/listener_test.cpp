#include "evco/listener.hpp"

#include <doctest/doctest.h>

#include <event2/bufferevent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <unistd.h>

#include <vector>

#include "evco/connect.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using evco::endpoint;
using evco::errc;
using evco::listener;
using evco::loop;
using evco::result;
using evco::task;
using evco::test::error_of;

// Each TEST_CASE sits right below the coroutine it runs.
TEST_SUITE_BEGIN("listener");

namespace {

// ---- accept ---------------------------------------------------------------------------------

task<void> accept_and_talk(loop& lp) {
  auto l = listener::bind(lp, endpoint::v4_loopback());
  REQUIRE(l);
  auto ep = l.value().local_endpoint();
  REQUIRE(ep);
  CHECK(ep.value().port() != 0);
  auto c = co_await evco::connect(lp, ep.value());
  REQUIRE(c);
  auto s = co_await l.value().accept();
  REQUIRE(s);
  CHECK(s.value().remote_endpoint().value() == c.value().local_endpoint().value());
  CHECK(s.value().local_endpoint().value() == ep.value());
  int nodelay = 0;
  socklen_t len = sizeof nodelay;
  REQUIRE(getsockopt(bufferevent_getfd(s.value().native_handle()), IPPROTO_TCP, TCP_NODELAY,
                     &nodelay, &len) == 0);
  CHECK(nodelay == 1);  // inherited from the listening socket
  REQUIRE(co_await c.value().write("hi"));
  std::string buf(2, '\0');
  REQUIRE(co_await s.value().read_exactly(std::span<char>(buf)));
  CHECK(buf == "hi");
}

TEST_CASE("accept returns a connected stream") {
  evco::test::run_on_loop(accept_and_talk);
}

task<void> ipv6_loopback(loop& lp) {
  auto l = listener::bind(lp, endpoint::v6_loopback());
  if (!l) {
    MESSAGE("no IPv6 loopback here: ", l.error());
    co_return;
  }
  auto c = co_await evco::connect(lp, l.value().local_endpoint().value());
  REQUIRE(c);
  auto s = co_await l.value().accept();
  REQUIRE(s);
  CHECK(s.value().remote_endpoint().value().is_v6());
}

TEST_CASE("listeners and connects work over IPv6 loopback") {
  evco::test::run_on_loop(ipv6_loopback);
}

// ---- timeouts and cancellation --------------------------------------------------------------

task<void> cancel_accept(loop& lp) {
  auto l = listener::bind(lp, endpoint::v4_loopback());
  REQUIRE(l);
  evco::test::stop_probe probe;
  probe.stop_from_loop(lp);
  auto s = co_await l.value().accept(probe.src.get_token());
  probe.op_resumed = true;
  REQUIRE_FALSE(s);
  CHECK(s.error() == std::errc::operation_canceled);
  CHECK_FALSE(probe.resumed_inside_request_stop);
  // The listener is still usable.
  auto c = co_await evco::connect(lp, l.value().local_endpoint().value());
  REQUIRE(c);
  auto s2 = co_await l.value().accept();
  CHECK_MESSAGE(s2, error_of(s2));
}

TEST_CASE("a stop request cancels a pending accept from the loop; the listener stays usable") {
  evco::test::run_on_loop(cancel_accept);
}

task<void> accept_timeout(loop& lp) {
  auto l = listener::bind(lp, endpoint::v4_loopback());
  REQUIRE(l);
  auto s = co_await l.value().accept(20ms);
  REQUIRE_FALSE(s);
  CHECK(s.error() == std::errc::timed_out);
}

TEST_CASE("accept with a timeout and no client reports timed_out") {
  evco::test::run_on_loop(accept_timeout);
}

// An accept deadline armed after long work inside a callback still lasts its whole duration.
task<void> accept_deadline_after_busy(loop& lp) {
  auto l = listener::bind(lp, endpoint::v4_loopback());
  REQUIRE(l);
  evco::test::busy_for(100ms);
  const auto start = evco::clock::now();
  auto s = co_await l.value().accept(50ms);
  const auto took = evco::clock::now() - start;
  REQUIRE_FALSE(s);
  CHECK(s.error() == errc::timed_out);
  CHECK(took >= 50ms);
}

TEST_CASE("an accept deadline armed after long work inside a callback never ends early") {
  evco::test::run_on_loop(accept_deadline_after_busy);
}

// ---- close ----------------------------------------------------------------------------------

task<result<evco::stream>> accept_on(listener* l) {
  co_return co_await l->accept();
}

task<void> close_while_accepting(loop& lp) {
  auto l = listener::bind(lp, endpoint::v4_loopback());
  REQUIRE(l);
  std::error_code ec;
  struct runner {
    static task<void> run(listener* l, std::error_code* ec) {
      *ec = error_of(co_await accept_on(l));
    }
  };
  lp.spawn(runner::run(&l.value(), &ec), [](std::exception_ptr) {});
  (void)co_await evco::sleep_for(lp, 0ms);
  l.value().close();
  (void)co_await evco::sleep_for(lp, 0ms);
  CHECK(ec == errc::closed);
  auto again = co_await l.value().accept();
  REQUIRE_FALSE(again);
  CHECK(again.error() == errc::closed);
}

TEST_CASE("closing a listener resumes its pending accept with closed") {
  evco::test::run_on_loop(close_while_accepting);
}

// ---- bind options and errors ----------------------------------------------------------------

TEST_CASE("a negative backlog is invalid_argument") {
  loop lp;
  auto l = listener::bind(lp, endpoint::v4_loopback(), {.backlog = -1});
  CHECK(error_of(l) == std::errc::invalid_argument);
}

task<void> reuse_port(loop& lp) {
  auto a = listener::bind(lp, endpoint::v4_loopback(), {.reuse_port = true});
  REQUIRE(a);
  auto b = listener::bind(lp, a.value().local_endpoint().value(), {.reuse_port = true});
  REQUIRE_MESSAGE(b, error_of(b));
  auto c = listener::bind(lp, a.value().local_endpoint().value());
  REQUIRE_FALSE(c);
  CHECK(c.error() == std::errc::address_in_use);
  co_return;
}

TEST_CASE("SO_REUSEPORT lets two listeners share a port, and without it bind fails") {
  evco::test::run_on_loop(reuse_port);
}

task<void> out_of_fds(loop& lp) {
  auto l = listener::bind(lp, endpoint::v4_loopback());
  REQUIRE(l);
  auto c = co_await evco::connect(lp, l.value().local_endpoint().value());
  REQUIRE(c);
  // Compared only once descriptors are back: clang's UBSan needs one for its vptr checks.
  std::error_code first, again;
  {
    evco::test::fd_exhaustion full;
    first = error_of(co_await l.value().accept());
    // The next accept rests first instead of spinning on the readable socket.
    again = error_of(co_await l.value().accept());
  }
  CHECK(first == std::errc::too_many_files_open);
  CHECK(again == std::errc::too_many_files_open);
  auto s = co_await l.value().accept();  // the queued connection was never lost
  REQUIRE_MESSAGE(s, error_of(s));
  REQUIRE(co_await c.value().write("ok"));
  std::string buf(2, '\0');
  REQUIRE(co_await s.value().read_exactly(std::span<char>(buf)));
  CHECK(buf == "ok");
}

TEST_CASE("out of file descriptors, accept reports EMFILE and later accepts the connection") {
  evco::test::run_on_loop(out_of_fds);
}

}  // namespace

TEST_SUITE_END();
