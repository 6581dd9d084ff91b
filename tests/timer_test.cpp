#include "evco/timer.hpp"

#include <doctest/doctest.h>

#include <thread>

#include "evco/loop.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using evco::loop;
using evco::task;

namespace {

task<evco::result<void>> cancel_while_sleeping(loop& lp, evco::test::stop_probe* p) {
  p->stop_from_loop(lp);
  auto r = co_await evco::sleep_for(lp, 1h, p->src.get_token());
  p->op_resumed = true;
  co_return r;
}

task<evco::result<void>> cancel_from_thread(loop& lp) {
  std::stop_source src;
  std::thread th([&src] { src.request_stop(); });
  auto r = co_await evco::sleep_for(lp, 1h, src.get_token());
  th.join();
  co_return r;
}

}  // namespace

TEST_SUITE("timer") {
  TEST_CASE("sleep_for completes successfully no earlier than its duration") {
    loop lp;
    const auto start = evco::clock::now();
    auto r = lp.run(evco::sleep_for(lp, 20ms));
    CHECK(r);
    CHECK(evco::clock::now() - start >= 20ms);
  }

  TEST_CASE("sleep_until a past deadline completes at once") {
    loop lp;
    CHECK(lp.run(evco::sleep_until(lp, evco::clock::now() - 1s)));
  }

  TEST_CASE("a stop request cancels a sleep, resuming it from the loop and not inline") {
    loop lp;
    evco::test::stop_probe probe;
    auto r = lp.run(cancel_while_sleeping(lp, &probe));
    REQUIRE_FALSE(r);
    CHECK(r.error() == evco::errc::cancelled);
    CHECK(r.error() == std::errc::operation_canceled);
    CHECK_FALSE(probe.resumed_inside_request_stop);
  }

  TEST_CASE("a sleep with an already stopped token reports cancelled") {
    loop lp;
    std::stop_source src;
    src.request_stop();
    auto r = lp.run(evco::sleep_for(lp, 1h, src.get_token()));
    REQUIRE_FALSE(r);
    CHECK(r.error() == evco::errc::cancelled);
  }

  TEST_CASE("a stop requested from another thread cancels a sleep") {
    loop lp;
    auto r = lp.run(cancel_from_thread(lp));
    REQUIRE_FALSE(r);
    CHECK(r.error() == evco::errc::cancelled);
  }
}
