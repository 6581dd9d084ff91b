#include "evco/timer.hpp"

#include <doctest/doctest.h>

#include <thread>
#include <vector>

#include "evco/loop.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using evco::loop;
using evco::task;

// Each TEST_CASE sits right below the coroutine it runs.
TEST_SUITE_BEGIN("timer");

namespace {

// ---- helpers shared by several tests --------------------------------------------------------

// Each sleeper checks its own lower bound and records the order in which the sleeps ended.
struct sleepers {
  std::vector<int> order;
  int early = 0;
  std::vector<bool> late;  // sleep_until sleepers that started past their deadline
  int finished = 0;        // sleep_for sleepers that are done
  int expected = -1;       // ... and how many there are: `all_done` is set when they all are
  evco::test::signal all_done;
  static task<void> sleep_until(loop& lp, sleepers* self, int index, evco::clock::time_point at) {
    if (evco::clock::now() >= at) self->late[static_cast<std::size_t>(index)] = true;
    REQUIRE(co_await evco::sleep_until(lp, at));
    if (evco::clock::now() < at) ++self->early;
    self->order.push_back(index);
  }
  static task<void> sleep_for(loop& lp, sleepers* self, evco::duration d) {
    const auto start = evco::clock::now();
    REQUIRE(co_await evco::sleep_for(lp, d));
    if (evco::clock::now() - start < d) ++self->early;
    if (++self->finished == self->expected) self->all_done.set();
  }
};

// ---- no sleep ends early --------------------------------------------------------------------

task<void> spawn_sleepers_for(loop& lp, sleepers* all, int n) {
  all->expected = n;
  for (int i = 0; i < n; ++i)
    lp.spawn(sleepers::sleep_for(lp, all, std::chrono::milliseconds(i % 50)),
             [](std::exception_ptr) { FAIL("sleeper"); });
  // Long work in the same callback as the spawns: the later sleeps start after it.
  evco::test::busy_for(5ms);
  co_return;
}

TEST_CASE("no sleep resumes before its duration, measured from the call") {
  loop lp;
  sleepers all;
  lp.run(spawn_sleepers_for(lp, &all, 2000));
  lp.run([](sleepers* a) -> task<void> { co_await a->all_done; }(&all));
  CHECK(all.finished == 2000);
  CHECK(all.early == 0);
}

TEST_CASE("a lone sleep on a fresh loop never ends early") {
  for (int i = 0; i < 10; ++i) {
    loop lp;
    const auto start = evco::clock::now();
    REQUIRE(lp.run(evco::sleep_for(lp, 20ms)));
    CHECK(evco::clock::now() - start >= 20ms);
  }
}

TEST_CASE("sleep_for completes successfully no earlier than its duration") {
  loop lp;
  const auto start = evco::clock::now();
  auto r = lp.run(evco::sleep_for(lp, 20ms));
  CHECK(r);
  CHECK(evco::clock::now() - start >= 20ms);
}

task<bool> sleep_then_check(loop& lp, evco::duration busy, evco::duration d) {
  evco::test::busy_for(busy);  // inside the loop's callback: its cached time falls behind
  const auto start = evco::clock::now();
  REQUIRE(co_await evco::sleep_for(lp, d));
  co_return evco::clock::now() - start >= d;
}

TEST_CASE("a sleep started after long work inside a callback still lasts its duration") {
  loop lp;
  CHECK(lp.run(sleep_then_check(lp, 100ms, 50ms)));
}

// ---- deadline order -------------------------------------------------------------------------

TEST_CASE("sleeps complete in deadline order, equal deadlines in the order they started") {
  loop lp;
  sleepers all;
  all.late.assign(2000, false);
  // Far enough ahead that every sleeper has started (and armed its timer) before the first is
  // due, even under ThreadSanitizer on a loaded machine (20 ms was not: late starters found
  // their deadline past and completed at once, out of order).
  const auto base = evco::clock::now() + 300ms;
  std::vector<evco::clock::time_point> at;
  for (int i = 0; i < 2000; ++i) {
    at.push_back(base + std::chrono::milliseconds((i * 7) % 30));
    lp.spawn(sleepers::sleep_until(lp, &all, i, at.back()),
             [](std::exception_ptr) { FAIL("sleeper"); });
  }
  REQUIRE(lp.run(evco::sleep_until(lp, base + 40ms)));
  REQUIRE(all.order.size() == 2000);
  CHECK(all.early == 0);
  // One that started past its deadline completes at once, wherever that falls: the order is
  // that of the others.
  std::vector<int> in_time;
  for (int i : all.order)
    if (!all.late[static_cast<std::size_t>(i)]) in_time.push_back(i);
  CHECK(in_time.size() > 1000);
  int out_of_order = 0;
  for (std::size_t k = 1; k < in_time.size(); ++k) {
    const int a = in_time[k - 1], b = in_time[k];
    if (at[a] > at[b] || (at[a] == at[b] && a > b)) ++out_of_order;
  }
  CHECK(out_of_order == 0);
}

// ---- past deadlines, and durations at the ends of the range ---------------------------------

task<void> flag_when_run(bool* ran) {
  *ran = true;
  co_return;
}

// Whether the sleep completed without going through the loop (a task spawned before it has
// not run yet).
task<bool> completes_without_suspending(loop& lp, task<evco::result<void>> sleep) {
  bool ran = false;
  lp.spawn(flag_when_run(&ran), [](std::exception_ptr) {});
  REQUIRE(co_await std::move(sleep));
  co_return !ran;
}

TEST_CASE("a negative sleep or a past deadline completes at once, without suspending") {
  loop lp;
  CHECK(lp.run(completes_without_suspending(lp, evco::sleep_for(lp, -1s))));
  CHECK(lp.run(completes_without_suspending(lp, evco::sleep_for(lp, evco::duration::min()))));
  CHECK(lp.run(
      completes_without_suspending(lp, evco::sleep_until(lp, evco::clock::time_point::min()))));
}

TEST_CASE("sleep_until a past deadline completes successfully") {
  loop lp;
  CHECK(lp.run(evco::sleep_until(lp, evco::clock::now() - 1s)));
}

TEST_CASE("durations saturate at the clock's range and keep their sign when rounded") {
  using evco::detail::saturating_ceil;
  CHECK(saturating_ceil(std::chrono::hours::max()) == evco::duration::max());
  CHECK(saturating_ceil(std::chrono::hours::min()) == evco::duration::min());
  CHECK(saturating_ceil(std::chrono::duration<double>(1e30)) == evco::duration::max());
  CHECK(saturating_ceil(std::chrono::duration<double>(-1e-10)) < evco::duration::zero());
  CHECK(saturating_ceil(std::chrono::duration<double, std::milli>(1.5)) ==
        std::chrono::microseconds(1500));
}

task<evco::result<void>> cancel_never_ending(loop& lp, evco::test::stop_probe* p, int which) {
  p->stop_from_loop(lp);
  const auto token = p->src.get_token();
  if (which == 0) co_return co_await evco::sleep_for(lp, evco::duration::max(), token);
  if (which == 1) co_return co_await evco::sleep_until(lp, evco::clock::time_point::max(), token);
  co_return co_await evco::sleep_for(lp, std::chrono::hours::max(), token);
}

TEST_CASE("the longest sleeps saturate instead of overflowing, and a stop still ends them") {
  for (int which = 0; which < 3; ++which) {
    CAPTURE(which);
    loop lp;
    evco::test::stop_probe probe;
    auto r = lp.run(cancel_never_ending(lp, &probe, which));
    REQUIRE_FALSE(r);
    CHECK(r.error() == evco::errc::cancelled);
  }
}

// ---- cancellation ---------------------------------------------------------------------------

task<evco::result<void>> cancel_while_sleeping(loop& lp, evco::test::stop_probe* p) {
  p->stop_from_loop(lp);
  auto r = co_await evco::sleep_for(lp, 1h, p->src.get_token());
  p->op_resumed = true;
  co_return r;
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

// One coroutine arms sleep after sleep, another cancels each once it is parked (bench/'s
// timer_cancel): every request_stop() finds its sleep still waiting, none resumes inside it,
// and every sleep ends cancelled.
struct relay {
  std::stop_source src{std::nostopstate};
  int armed = 0, cancelled = 0, other = 0, refused = 0, inline_ends = 0;
  bool done = false;
};

task<void> relay_sleeper(loop& lp, relay* r, int n) {
  for (int i = 0; i < n; ++i) {
    r->src = std::stop_source();
    ++r->armed;
    auto res = co_await evco::sleep_for(lp, 1h, r->src.get_token());
    ++(!res && res.error() == evco::errc::cancelled ? r->cancelled : r->other);
  }
  r->done = true;
}

task<void> relay_canceller(loop& lp, relay* r, int n) {
  lp.spawn(relay_sleeper(lp, r, n), [](std::exception_ptr) { FAIL("relay_sleeper"); });
  for (int i = 1; i <= n; ++i) {
    while (r->armed != i)
      co_await lp.yield();
    const int before = r->cancelled;
    if (!r->src.request_stop()) ++r->refused;
    if (r->cancelled != before) ++r->inline_ends;
  }
  while (!r->done)
    co_await lp.yield();
}

TEST_CASE("sleeps armed in turn and each cancelled by another coroutine end cancelled, once each") {
  loop lp;
  relay r;
  lp.run(relay_canceller(lp, &r, 1000));
  CHECK(r.cancelled == 1000);
  CHECK(r.other == 0);
  CHECK(r.refused == 0);
  CHECK(r.inline_ends == 0);
  CHECK(lp.parked().empty());
}

// Sleep i, once cancelled, cancels sleep i + 1: a stop requested while the loop ends another.
struct chain {
  std::vector<std::stop_source> src = std::vector<std::stop_source>(50);
  std::vector<int> ended;  // the order the sleeps ended cancelled in
  int inline_ends = 0;
  evco::test::signal all_done;
};

task<void> chained_sleeper(loop& lp, chain* c, std::size_t i) {
  auto res = co_await evco::sleep_for(lp, 1h, c->src[i].get_token());
  if (!res && res.error() == evco::errc::cancelled) c->ended.push_back(static_cast<int>(i));
  if (i + 1 == c->src.size()) {
    c->all_done.set();
    co_return;
  }
  const std::size_t before = c->ended.size();
  c->src[i + 1].request_stop();
  if (c->ended.size() != before) ++c->inline_ends;
}

TEST_CASE("a stop requested by a sleep that a stop ended ends the next sleep too, from the loop") {
  loop lp;
  chain c;
  lp.run([](loop& lp, chain* c) -> task<void> {
    for (std::size_t i = 0; i < c->src.size(); ++i)
      lp.spawn(chained_sleeper(lp, c, i), [](std::exception_ptr) { FAIL("chained_sleeper"); });
    co_await lp.yield();                         // behind the sleepers: they are all parked by now
    lp.post([c] { c->src[0].request_stop(); });  // from a posted function
    co_await c->all_done;
  }(lp, &c));
  REQUIRE(c.ended.size() == c.src.size());
  for (std::size_t i = 0; i < c.ended.size(); ++i)
    CHECK(c.ended[i] == static_cast<int>(i));
  CHECK(c.inline_ends == 0);
  CHECK(lp.parked().empty());
}

task<evco::result<void>> cancel_from_thread(loop& lp) {
  std::stop_source src;
  std::thread th([&src] { src.request_stop(); });
  auto r = co_await evco::sleep_for(lp, 1h, src.get_token());
  th.join();
  co_return r;
}

TEST_CASE("a stop requested from another thread cancels a sleep") {
  loop lp;
  auto r = lp.run(cancel_from_thread(lp));
  REQUIRE_FALSE(r);
  CHECK(r.error() == evco::errc::cancelled);
}

}  // namespace

TEST_SUITE_END();
