#include "evco/signal.hpp"

#include <doctest/doctest.h>

#include <csignal>
#include <vector>

#include "evco/loop.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using evco::errc;
using evco::loop;
using evco::result;
using evco::task;
using evco::test::error_of;

// Each TEST_CASE sits right below the coroutine it runs. The signals raised are SIGUSR1 and
// SIGUSR2, with SIGWINCH (default action: ignore) to mark a point in the signal stream.
TEST_SUITE_BEGIN("signal");

namespace {

// ---- helpers shared by several tests --------------------------------------------------------

task<void> raise_signal(int sig) {
  std::raise(sig);
  co_return;
}

// Waits until the loop has handled every signal raised before this call: the watch on
// SIGWINCH, whose number is above the others', sees its delivery after theirs.
task<void> signals_handled(loop& lp) {
  lp.spawn(raise_signal(SIGWINCH), [](std::exception_ptr) { FAIL("raise"); });
  auto r = co_await evco::wait_signal(lp, {SIGWINCH});
  REQUIRE_MESSAGE(r, error_of(r));
  CHECK(r.value() == SIGWINCH);
}

// A wait with a negative timeout: completes only if a signal is pending, else timed_out. It
// also installs the watches, so that the signals are caught from then on.
result<int> poll(loop& lp, std::initializer_list<int> signals) {
  return lp.run([](loop& l, std::vector<int> s) -> task<result<int>> {
    co_return co_await evco::wait_signal(l, evco::signal_set(std::span<const int>(s)), -1ns);
  }(lp, std::vector<int>(signals)));
}

struct waiters {
  std::vector<int> got;  // each waiter's signal, in the order they resumed
  int expected = 0;
  evco::test::signal all_done;
  static task<void> wait(loop& lp, waiters* self, std::vector<int> signals) {
    auto r = co_await evco::wait_signal(lp, evco::signal_set(std::span<const int>(signals)));
    REQUIRE_MESSAGE(r, error_of(r));
    self->got.push_back(r.value());
    if (static_cast<int>(self->got.size()) == self->expected) self->all_done.set();
  }
};

task<void> flag_when_run(bool* ran) {
  *ran = true;
  co_return;
}

// ---- delivery -------------------------------------------------------------------------------

task<void> every_waiter_once(loop& lp) {
  waiters on1, on2;
  on1.expected = 8;
  on2.expected = 5;
  auto spawn = [&lp](waiters* w, std::vector<int> s) {
    lp.spawn(waiters::wait(lp, w, std::move(s)), [](std::exception_ptr) { FAIL("waiter"); });
  };
  for (int i = 0; i < 5; ++i)
    spawn(&on1, {SIGUSR1});
  for (int i = 0; i < 3; ++i)
    spawn(&on1, {SIGUSR1, SIGUSR2});
  for (int i = 0; i < 5; ++i)
    spawn(&on2, {SIGUSR2});
  co_await lp.yield();  // every waiter is parked now
  std::raise(SIGUSR1);
  CHECK(on1.got.empty());  // resumed from the loop, not inside the handler or raise()
  co_await on1.all_done;
  CHECK(on1.got == std::vector<int>(8, SIGUSR1));
  CHECK(on2.got.empty());
  std::raise(SIGUSR2);
  co_await on2.all_done;
  CHECK(on2.got == std::vector<int>(5, SIGUSR2));
  co_await signals_handled(lp);
  CHECK(on1.got.size() == 8);  // once each
  CHECK(on2.got.size() == 5);
}

TEST_CASE("a raised signal resumes every waiter on it once, from the loop") {
  evco::test::run_on_loop(every_waiter_once);
}

TEST_CASE("a signal delivered to waiters is not kept pending as well") {
  loop lp;
  lp.run(every_waiter_once(lp));
  CHECK(poll(lp, {SIGUSR1, SIGUSR2}).error() == errc::timed_out);
}

task<void> either_signal(loop& lp) {
  lp.spawn(raise_signal(SIGUSR2), [](std::exception_ptr) { FAIL("raise"); });
  auto r = co_await evco::wait_signal(lp, {SIGUSR1, SIGUSR2});
  REQUIRE_MESSAGE(r, error_of(r));
  CHECK(r.value() == SIGUSR2);
}

TEST_CASE("a wait on several signals completes with the one delivered") {
  evco::test::run_on_loop(either_signal);
}

// ---- signals nobody waits for ---------------------------------------------------------------

task<void> kept_once(loop& lp) {
  for (int i = 0; i < 3; ++i)
    std::raise(SIGUSR1);
  co_await signals_handled(lp);
  bool ran = false;
  lp.spawn(flag_when_run(&ran), [](std::exception_ptr) {});
  auto r = co_await evco::wait_signal(lp, {SIGUSR1});
  REQUIRE_MESSAGE(r, error_of(r));
  CHECK(r.value() == SIGUSR1);
  CHECK_FALSE(ran);  // completed at once, without suspending
  // The three deliveries coalesced into one.
  auto again = co_await evco::wait_signal(lp, {SIGUSR1}, -1ns);
  REQUIRE_FALSE(again);
  CHECK(again.error() == errc::timed_out);
}

TEST_CASE("a signal delivered while nobody waits is kept, once, for the next wait") {
  loop lp;
  REQUIRE(poll(lp, {SIGUSR1}).error() == errc::timed_out);  // installs the watch
  lp.run(kept_once(lp));
}

task<void> earliest_first(loop& lp) {
  std::raise(SIGUSR2);
  co_await signals_handled(lp);
  std::raise(SIGUSR1);
  co_await signals_handled(lp);
  auto first = co_await evco::wait_signal(lp, {SIGUSR1, SIGUSR2});
  auto second = co_await evco::wait_signal(lp, {SIGUSR1, SIGUSR2});
  REQUIRE(first);
  REQUIRE(second);
  CHECK(first.value() == SIGUSR2);
  CHECK(second.value() == SIGUSR1);
}

TEST_CASE("pending signals complete later waits in the order they arrived") {
  loop lp;
  REQUIRE(poll(lp, {SIGUSR1, SIGUSR2}).error() == errc::timed_out);
  lp.run(earliest_first(lp));
}

TEST_CASE("a pending signal completes only a wait that includes it") {
  loop lp;
  REQUIRE(poll(lp, {SIGUSR1, SIGUSR2}).error() == errc::timed_out);
  // poll() runs the loop itself: not from inside a task running on it.
  lp.run([](loop& l) -> task<void> {
    std::raise(SIGUSR2);
    co_await signals_handled(l);
  }(lp));
  CHECK(poll(lp, {SIGUSR1}).error() == errc::timed_out);
  auto r = poll(lp, {SIGUSR2});
  REQUIRE(r);
  CHECK(r.value() == SIGUSR2);
}

// A frame destroyed while it waits is no longer listed: the signal that follows finds nobody.
task<void> destroyed_waiter(loop& lp) {
  {
    auto t = [](loop& l) -> task<result<int>> {
      co_return co_await evco::wait_signal(l, {SIGUSR1});
    }(lp);
    auto h = t.handle();
    REQUIRE(h.promise().start(h, std::noop_coroutine()));  // parked
  }
  std::raise(SIGUSR1);
  co_await signals_handled(lp);
  auto r = co_await evco::wait_signal(lp, {SIGUSR1}, -1ns);
  REQUIRE(r);  // kept pending for the next wait
  CHECK(r.value() == SIGUSR1);
}

TEST_CASE("destroying a waiting frame unlists it") {
  evco::test::run_on_loop(destroyed_waiter);
}

// ---- timeout and cancellation ---------------------------------------------------------------

TEST_CASE("a wait times out with errc::timed_out, never early") {
  loop lp;
  const auto start = evco::clock::now();
  auto r = lp.run([](loop& l) -> task<result<int>> {
    co_return co_await evco::wait_signal(l, {SIGUSR1}, 20ms);
  }(lp));
  REQUIRE_FALSE(r);
  CHECK(r.error() == errc::timed_out);
  CHECK(r.error() == std::errc::timed_out);
  CHECK(evco::clock::now() - start >= 20ms);
}

task<result<int>> cancel_while_waiting(loop& lp, evco::test::stop_probe* p) {
  p->stop_from_loop(lp);
  auto r = co_await evco::wait_signal(lp, {SIGUSR1}, p->src.get_token());
  p->op_resumed = true;
  co_return r;
}

TEST_CASE("a stop request cancels a wait, resuming it from the loop and not inline") {
  loop lp;
  evco::test::stop_probe probe;
  auto r = lp.run(cancel_while_waiting(lp, &probe));
  REQUIRE_FALSE(r);
  CHECK(r.error() == errc::cancelled);
  CHECK_FALSE(probe.resumed_inside_request_stop);
}

TEST_CASE("a wait with a stop already requested is cancelled at once") {
  loop lp;
  std::stop_source src;
  src.request_stop();
  auto r = lp.run([](loop& l, std::stop_token st) -> task<result<int>> {
    co_return co_await evco::wait_signal(l, {SIGUSR1}, st);
  }(lp, src.get_token()));
  REQUIRE_FALSE(r);
  CHECK(r.error() == errc::cancelled);
}

task<void> signal_after_cancel(loop& lp) {
  std::stop_source src;
  lp.spawn(
      [](std::stop_source* s) -> task<void> {
        s->request_stop();
        co_return;
      }(&src),
      [](std::exception_ptr) {});
  auto r = co_await evco::wait_signal(lp, {SIGUSR1}, src.get_token());
  REQUIRE_FALSE(r);
  CHECK(r.error() == errc::cancelled);
  std::raise(SIGUSR1);
  co_await signals_handled(lp);
  auto next = co_await evco::wait_signal(lp, {SIGUSR1}, -1ns);
  REQUIRE(next);  // the cancelled wait took nothing with it
  CHECK(next.value() == SIGUSR1);
}

TEST_CASE("a signal after a wait was cancelled stays pending for the next one") {
  evco::test::run_on_loop(signal_after_cancel);
}

// A wait takes its signal when it resumes. libevent delivers the signals read from its pipe in
// one pass, lowest number first, so the SIGUSR1 wait resumes before the SIGUSR2 one and can
// request its stop in between: after the signal woke it, before it resumed.
task<void> stop_one(loop& lp, std::stop_source* victim, int* got) {
  auto r = co_await evco::wait_signal(lp, {SIGUSR1});
  REQUIRE_MESSAGE(r, error_of(r));
  *got = r.value();
  victim->request_stop();
}

task<void> wait_into(loop& lp, evco::signal_set s, std::stop_token st, result<int>* out,
                     evco::test::signal* done) {
  *out = co_await evco::wait_signal(lp, s, st);
  done->set();
}

task<void> stopped_after_wake(loop& lp) {
  std::stop_source src;
  int first = 0;
  result<int> second = errc::eof;
  evco::test::signal done;
  lp.spawn(stop_one(lp, &src, &first), [](std::exception_ptr) { FAIL("stop_one"); });
  lp.spawn(wait_into(lp, {SIGUSR2}, src.get_token(), &second, &done),
           [](std::exception_ptr) { FAIL("wait_into"); });
  co_await lp.yield();  // both wait
  std::raise(SIGUSR1);
  std::raise(SIGUSR2);
  co_await done;
  CHECK(first == SIGUSR1);
  REQUIRE_FALSE(second);
  CHECK(second.error() == errc::cancelled);
  auto next = co_await evco::wait_signal(lp, {SIGUSR2}, -1ns);
  REQUIRE_MESSAGE(next, error_of(next));  // the cancelled wait did not swallow it
  CHECK(next.value() == SIGUSR2);
}

TEST_CASE(
    "a wait stopped after a signal woke it, before it resumed, is cancelled and the "
    "signal stays pending") {
  evco::test::run_on_loop(stopped_after_wake);
}

task<void> taken_by_another(loop& lp) {
  std::stop_source src;
  int first = 0;
  result<int> second = errc::eof, third = errc::eof;
  evco::test::signal second_done, third_done;
  lp.spawn(stop_one(lp, &src, &first), [](std::exception_ptr) { FAIL("stop_one"); });
  lp.spawn(wait_into(lp, {SIGUSR1}, src.get_token(), &second, &second_done),
           [](std::exception_ptr) { FAIL("wait_into"); });
  lp.spawn(wait_into(lp, {SIGUSR1}, {}, &third, &third_done),
           [](std::exception_ptr) { FAIL("wait_into"); });
  co_await lp.yield();
  std::raise(SIGUSR1);  // wakes all three, in the order they waited
  co_await second_done;
  co_await third_done;
  CHECK(first == SIGUSR1);
  REQUIRE_FALSE(second);
  CHECK(second.error() == errc::cancelled);
  REQUIRE(third);
  CHECK(third.value() == SIGUSR1);
  // Delivered (twice): not pending as well.
  CHECK((co_await evco::wait_signal(lp, {SIGUSR1}, -1ns)).error() == errc::timed_out);
}

TEST_CASE(
    "a signal that one woken wait took is not pending again when another woken wait is "
    "cancelled") {
  evco::test::run_on_loop(taken_by_another);
}

// ---- bad input ------------------------------------------------------------------------------

TEST_CASE("a wait for no signal, or for one that cannot be awaited, is invalid_argument") {
  loop lp;
  const std::vector<std::vector<int>> bad = {
      {},        {0},      {-1},     {NSIG},   {65}, {1000}, {SIGKILL},    {SIGSTOP},
      {SIGSEGV}, {SIGBUS}, {SIGFPE}, {SIGILL}, {32}, {33},   {SIGUSR1, 0}, {SIGUSR1, SIGKILL},
  };
  for (const auto& set : bad) {
    CAPTURE(set.size());
    auto r = lp.run([](loop& l, std::vector<int> s) -> task<result<int>> {
      co_return co_await evco::wait_signal(l, evco::signal_set(std::span<const int>(s)));
    }(lp, set));
    REQUIRE_FALSE(r);
    CHECK(r.error() == std::errc::invalid_argument);
  }
}

TEST_CASE("real-time signals can be awaited") {
  loop lp;
  CHECK(poll(lp, {SIGRTMIN, SIGRTMAX}).error() == errc::timed_out);
  auto r = lp.run([](loop& l) -> task<result<int>> {
    l.spawn(raise_signal(SIGRTMIN + 1), [](std::exception_ptr) {});
    co_return co_await evco::wait_signal(l, {SIGRTMIN + 1});
  }(lp));
  REQUIRE_MESSAGE(r, error_of(r));
  CHECK(r.value() == SIGRTMIN + 1);
}

// ---- one loop owns the signals --------------------------------------------------------------

TEST_CASE("a second loop cannot wait for signals while the first owns them") {
  loop second;
  {
    loop first;
    REQUIRE(poll(first, {SIGUSR1}).error() == errc::timed_out);
    auto same = poll(second, {SIGUSR1});
    REQUIRE_FALSE(same);
    CHECK(same.error() == std::errc::device_or_resource_busy);
    // libevent tells one base about every signal, so another signal is refused too.
    auto other = poll(second, {SIGUSR2});
    REQUIRE_FALSE(other);
    CHECK(other.error() == std::errc::device_or_resource_busy);
    CHECK(poll(first, {SIGUSR2}).error() == errc::timed_out);  // the owner goes on
  }
  CHECK(poll(second, {SIGUSR1}).error() == errc::timed_out);  // owned by `second` now
  second.run([](loop& l) -> task<void> {
    std::raise(SIGUSR1);
    co_await signals_handled(l);
  }(second));
  auto r = poll(second, {SIGUSR1});
  REQUIRE(r);
  CHECK(r.value() == SIGUSR1);
}

// ---- the handler and the loop's lifetime ----------------------------------------------------

int own_handler_calls = 0;

TEST_CASE("the loop keeps the signal caught until it is destroyed, then restores the handler") {
  struct sigaction mine {
  }, old{};
  mine.sa_handler = [](int) { ++own_handler_calls; };
  sigemptyset(&mine.sa_mask);
  REQUIRE(sigaction(SIGUSR1, &mine, &old) == 0);
  {
    loop lp;
    REQUIRE(poll(lp, {SIGUSR1}).error() == errc::timed_out);
    lp.run([](loop& l) -> task<void> {
      std::raise(SIGUSR1);  // libevent's handler now, though nobody waits
      co_await signals_handled(l);
    }(lp));
    CHECK(own_handler_calls == 0);
    CHECK(poll(lp, {SIGUSR1}).value() == SIGUSR1);
  }
  struct sigaction now {};
  REQUIRE(sigaction(SIGUSR1, nullptr, &now) == 0);
  CHECK((now.sa_handler == mine.sa_handler));
  std::raise(SIGUSR1);
  CHECK(own_handler_calls == 1);
  sigaction(SIGUSR1, &old, nullptr);
}

task<void> park_forever(loop& lp, std::stop_token st) {
  auto r = co_await evco::wait_signal(lp, {SIGUSR1, SIGUSR2}, {1h, st});
  FAIL("resumed: " << error_of(r));
}

TEST_CASE("destroying the loop with waits parked frees them") {
  std::stop_source src;
  {
    loop lp;
    for (int i = 0; i < 3; ++i)
      lp.spawn(park_forever(lp, src.get_token()), [](std::exception_ptr) {});
    lp.run([](loop& l) -> task<void> { co_await l.yield(); }(lp));
  }
  // LeakSanitizer (the ASan build) checks that nothing is left; the handlers are restored.
  struct sigaction now {};
  REQUIRE(sigaction(SIGUSR2, nullptr, &now) == 0);
  CHECK((now.sa_handler == SIG_DFL));
}

}  // namespace

TEST_SUITE_END();
