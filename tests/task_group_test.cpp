// task_group: spawn, join, the first failure, limits, and teardown.
#include "evco/task_group.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <vector>

#include "evco/channel.hpp"
#include "evco/when_any.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using evco::errc;
using evco::loop;
using evco::result;
using evco::task;
using evco::task_group;
using evco::test::error_of;

// Each TEST_CASE sits right below the coroutine it runs.
TEST_SUITE_BEGIN("task_group");

namespace {

struct counters {
  int started = 0;
  int ended = 0;
  int cancelled = 0;
  int running = 0;
  int most_running = 0;
};

task<void> child(loop& lp, evco::duration d, counters* c) {
  ++c->started;
  ++c->running;
  c->most_running = std::max(c->most_running, c->running);
  auto r = co_await evco::sleep_for(lp, d);
  if (!r && r.error() == errc::cancelled) ++c->cancelled;
  --c->running;
  ++c->ended;
}

task<result<void>> fails_after(loop& lp, evco::duration d, std::error_code ec) {
  EVCO_TRYV(co_await evco::sleep_for(lp, d));
  co_return ec;
}

task<void> throws_after(loop& lp, evco::duration d) {
  (void)co_await evco::sleep_for(lp, d);
  throw std::runtime_error("child");
}

task<void> spawn_and_join(loop& lp) {
  task_group g(lp);
  counters c;
  for (int i = 0; i < 10; ++i)
    REQUIRE(co_await g.spawn(child(lp, std::chrono::milliseconds(i % 3), &c)));
  CHECK(g.size() == 10);
  auto r = co_await g.join();
  CHECK(r);
  CHECK(c.ended == 10);
  CHECK(c.cancelled == 0);
  CHECK(g.size() == 0);
  CHECK(co_await g.join());  // nothing left: at once
}
TEST_CASE("task_group: join waits for every child") {
  evco::test::run_on_loop(spawn_and_join);
}

task<void> first_failure_cancels(loop& lp) {
  task_group g(lp);
  counters c;
  REQUIRE(co_await g.spawn(child(lp, 1h, &c)));
  REQUIRE(co_await g.spawn(fails_after(lp, 1ms, std::make_error_code(std::errc::io_error))));
  REQUIRE(co_await g.spawn(child(lp, 1h, &c)));
  auto r = co_await g.join();
  CHECK(error_of(r) == std::errc::io_error);
  CHECK(c.cancelled == 2);
  CHECK(g.stop_requested());
  // A stopped group runs nothing more.
  auto late = co_await g.spawn(child(lp, 0ms, &c));
  CHECK(error_of(late) == errc::cancelled);
  CHECK(c.started == 2);
}
TEST_CASE("task_group: the first failure cancels the siblings and is what join returns") {
  evco::test::run_on_loop(first_failure_cancels);
}

task<void> exception_reaches_join(loop& lp) {
  task_group g(lp);
  counters c;
  REQUIRE(co_await g.spawn(child(lp, 1h, &c)));
  REQUIRE(co_await g.spawn(throws_after(lp, 1ms)));
  CHECK_THROWS_AS((void)co_await g.join(), std::runtime_error);
  CHECK(c.cancelled == 1);
}
TEST_CASE("task_group: an exception in a child reaches join") {
  evco::test::run_on_loop(exception_reaches_join);
}

task<void> limit_in_flight(loop& lp) {
  task_group g(lp, 3);
  counters c;
  for (int i = 0; i < 20; ++i)
    REQUIRE(co_await g.spawn(child(lp, std::chrono::milliseconds(i % 2), &c)));
  CHECK(co_await g.join());
  CHECK(c.ended == 20);
  CHECK(c.most_running == 3);
}
TEST_CASE("task_group: spawn waits while max_in_flight children run") {
  evco::test::run_on_loop(limit_in_flight);
}

task<void> spawn_wait_cancelled(loop& lp) {
  task_group g(lp, 1);
  counters c;
  REQUIRE(co_await g.spawn(child(lp, 1h, &c)));
  auto r = co_await g.spawn(child(lp, 0ms, &c), 2ms);
  CHECK(error_of(r) == errc::timed_out);
  CHECK(c.started == 1);  // the waiting one never ran
  g.request_stop();
  CHECK(co_await g.join());  // the child returned normally after its cancelled sleep
  CHECK(c.cancelled == 1);
}
TEST_CASE("task_group: a spawn waiting for room times out without running its task") {
  evco::test::run_on_loop(spawn_wait_cancelled);
}

task<void> join_with_deadline(loop& lp) {
  task_group g(lp);
  counters c;
  REQUIRE(co_await g.spawn(child(lp, 1ms, &c)));
  REQUIRE(co_await g.spawn(child(lp, 1h, &c)));
  auto r = co_await evco::with_timeout(lp, g.join(), 20ms);
  // The quick child finished; the slow one was cancelled at the deadline and awaited.
  CHECK(error_of(r) == errc::timed_out);
  CHECK(c.ended == 2);
  CHECK(c.cancelled == 1);
  CHECK(g.size() == 0);
}
TEST_CASE("task_group: with_timeout(join) gives children a deadline, then cancels them") {
  evco::test::run_on_loop(join_with_deadline);
}

struct flag_on_destroy {
  bool* destroyed;
  ~flag_on_destroy() { *destroyed = true; }
};
task<void> holds_flag(loop& lp, bool* destroyed, counters* c) {
  flag_on_destroy f{destroyed};
  co_await child(lp, 1h, c);
}
task<void> group_destroyed_early(loop& lp, counters* c) {
  bool destroyed = false;
  {
    task_group g(lp);
    REQUIRE(co_await g.spawn(holds_flag(lp, &destroyed, c)));
    REQUIRE(co_await g.spawn(child(lp, 1h, c)));
    CHECK(lp.parked().size() == 2);
  }  // not joined: the children's frames go with the group, there and then
  CHECK(destroyed);
  CHECK(c->started == 2);
  CHECK(c->ended == 0);  // destroyed where they waited, not resumed
  CHECK(lp.parked().empty());
}
TEST_CASE("task_group: destroying a group destroys its children's frames at once") {
  loop lp;
  counters c;
  lp.run(group_destroyed_early(lp, &c));
}

task<void> join_into(task_group* g, result<void>* out, bool* done) {
  *out = co_await g->join();
  *done = true;
}
task<void> group_destroyed_under_join(loop& lp) {
  auto g = std::make_unique<task_group>(lp);
  counters c;
  REQUIRE(co_await g->spawn(child(lp, 1h, &c)));
  result<void> joined = evco::success();
  bool done = false;
  lp.spawn(join_into(g.get(), &joined, &done), [](std::exception_ptr) { FAIL("threw"); });
  REQUIRE(co_await evco::sleep_for(lp, 0ms));  // the join parks
  CHECK_FALSE(done);
  g.reset();  // destroys the child there and then
  CHECK(c.ended == 0);
  for (int i = 0; i < 100 && !done; ++i)
    REQUIRE(co_await evco::sleep_for(lp, 0ms));
  CHECK(done);
  CHECK(error_of(joined) == errc::cancelled);
}
TEST_CASE("task_group: a join parked when the group goes fails with cancelled") {
  evco::test::run_on_loop(group_destroyed_under_join);
}

task<void> child_until(loop& lp, evco::clock::time_point t, counters* c) {
  ++c->started;
  (void)co_await evco::sleep_until(lp, t);
  ++c->ended;
}
task<void> spawner(task_group* g, loop* lp, counters* c) {  // W1: parks, room comes at T
  REQUIRE(co_await g->spawn(child(*lp, 0ms, c)));
}
task<void> spawn_at(loop* lp, evco::clock::time_point t, task_group* g, counters* c,
                    result<void>* out) {
  (void)co_await evco::sleep_until(*lp, t);
  *out = co_await g->spawn(child(*lp, 0ms, c), -1ms);  // a poll: room now, or timed_out
}
task<void> room_after_a_grant(loop& lp) {
  // At T, in one timer pass: A ends (a waiting spawn is given its slot, and resumes later),
  // B ends with nobody else waiting, then another coroutine spawns: there is room for it.
  task_group g(lp, 2);
  counters c;
  const auto t = evco::clock::now() + 2ms;
  REQUIRE(co_await g.spawn(child_until(lp, t, &c)));
  REQUIRE(co_await g.spawn(child_until(lp, t, &c)));
  lp.spawn(spawner(&g, &lp, &c), [](std::exception_ptr) { FAIL("threw"); });
  result<void> late = errc::busy;
  lp.spawn(spawn_at(&lp, t, &g, &c, &late), [](std::exception_ptr) { FAIL("threw"); });
  CHECK(co_await g.join());
  REQUIRE(co_await evco::sleep_for(lp, 0ms));
  CHECK(late);
  CHECK(co_await g.join());
  CHECK(c.started == 4);
}
TEST_CASE("task_group: a slot freed while none waits is room at once") {
  evco::test::run_on_loop(room_after_a_grant);
}

task<void> error_then_exception(loop& lp) {
  task_group g(lp);
  REQUIRE(co_await g.spawn(fails_after(lp, 1ms, std::make_error_code(std::errc::io_error))));
  REQUIRE(co_await g.spawn(throws_after(lp, 1h)));  // throws once cancelled
  CHECK_THROWS_AS((void)co_await g.join(), std::runtime_error);
}
TEST_CASE("task_group: an exception after a first error value is not dropped") {
  evco::test::run_on_loop(error_then_exception);
}

// `turns` zero sleeps in a row (each resumes once the loop has polled again); counts it ended.
task<void> zero_sleeps(loop& lp, int turns, counters* c) {
  ++c->started;
  for (int i = 0; i < turns; ++i) {
    if (auto r = co_await evco::sleep_for(lp, 0ms); !r) {
      ++c->cancelled;
      break;
    }
  }
  ++c->ended;
}
task<result<void>> zero_sleeps_r(loop& lp, int turns) {
  for (int i = 0; i < turns; ++i)
    EVCO_TRYV(co_await evco::sleep_for(lp, 0ms));
  co_return evco::success();
}
task<void> races(loop& lp) {
  int cancelled = 0;
  for (int i = 0; i < 10000; ++i) {
    task_group g(lp);
    counters c;
    REQUIRE(co_await g.spawn(zero_sleeps(lp, i % 3, &c)));
    REQUIRE(co_await g.spawn(zero_sleeps(lp, i % 4, &c)));
    (void)co_await evco::when_any(g.join(), zero_sleeps_r(lp, i % 5));
    g.request_stop();
    CHECK(co_await g.join());
    REQUIRE(c.ended == 2);  // each child exactly once, whichever way the race went
    REQUIRE(g.size() == 0);
    cancelled += c.cancelled;
  }
  CHECK(cancelled > 0);
}
TEST_CASE("task_group: 10,000 races of a child's end against cancellation") {
  evco::test::run_on_loop(races);
}

task<void> parked_everywhere(loop& lp) {
  evco::channel<int> ch(lp, 0);
  task_group g(lp);
  counters c;
  REQUIRE(co_await g.spawn(child(lp, 1h, &c)));
  (void)co_await evco::when_any(g.join(), ch.receive());
}
TEST_CASE("a loop destroyed with a group, a when_any and channel waiters parked frees all") {
  loop lp;
  lp.spawn(parked_everywhere(lp), [](std::exception_ptr) { FAIL("threw"); });
  lp.run(evco::sleep_for(lp, 1ms)).value();
  CHECK(lp.parked().size() == 3);  // the child's sleep, the join, the receive
  // ~loop destroys the frame, with its channel, group and when_any (LSan checks the rest).
}

}  // namespace

TEST_SUITE_END();
