// timer_cancel on evco: one coroutine arms `sleep_for(lp, 10s, token)` timer after timer, a
// second one cancels each through its std::stop_source; see bench/README.md.

#include <stop_token>
#include <string>

#include <evco/evco.hpp>

#include "common.hpp"

namespace bench::evco_impl {
namespace {

using namespace std::chrono_literals;

struct timer_state {
  std::stop_source src{std::nostopstate};  // the waiting timer's
  int armed = 0;                           // timers armed so far: the one waiting is this one
  int cancelled = 0;                       // ... and those that ended with errc::cancelled
  bool done = false;                       // the waiter has ended
  std::string error;
  clock::time_point t0{}, t1{};
  heap_counters h0{}, h1{};

  void fail(std::string why) {
    if (error.empty()) error = std::move(why);
  }
};

// Arms `total` timers one after another, each with a new stop source (one cannot be reset),
// and expects every one to end cancelled. The first `warmup` are not timed.
evco::task<evco::result<void>> timer_waiter(evco::loop& lp, timer_params p, timer_state* st) {
  for (int i = 0; i < p.warmup + p.count; ++i) {
    if (i == p.warmup) {
      st->h0 = heap_now();
      st->t0 = clock::now();
    }
    st->src = std::stop_source();
    ++st->armed;
    auto r = co_await evco::sleep_for(lp, 10s, st->src.get_token());
    if (r || r.error() != evco::errc::cancelled) {
      st->fail(r ? "a timer expired" : "a timer failed: " + r.error().message());
      break;
    }
    ++st->cancelled;
  }
  st->t1 = clock::now();
  st->h1 = heap_now();
  st->done = true;
  co_return evco::success();
}

// Cancels timer `i` once the waiter has armed it (and so is parked in it): the waiter runs
// until it parks, so whenever this coroutine runs, timer `armed` is the one waiting.
evco::task<evco::result<void>> timer_main(evco::loop& lp, timer_params p, timer_state* st) {
  lp.spawn(timer_waiter(lp, p, st), [st](std::error_code ec) {
    st->fail("waiter: " + ec.message());
    st->done = true;
  });
  for (int i = 1; i <= p.warmup + p.count; ++i) {
    while (st->armed != i && !st->done)
      co_await lp.yield();
    if (st->done) break;
    if (!st->src.request_stop()) {
      st->fail("request_stop found the timer stopped already");
      break;
    }
  }
  while (!st->done)
    co_await lp.yield();
  co_return evco::success();
}

}  // namespace

run_result timer_cancel(const timer_params& p) {
  timer_state st;
  {
    evco::loop lp;
    auto r = lp.run(timer_main(lp, p, &st));
    if (!r) return bench::fail("evco: " + r.error().message());
    if (!lp.parked().empty()) return bench::fail("evco: a timer is still parked");
  }
  if (!st.error.empty()) return bench::fail("evco: " + st.error);
  if (st.cancelled != p.warmup + p.count) return bench::fail("evco: a timer was not cancelled");
  run_result r;
  r.ok = true;
  r.seconds = seconds_between(st.t0, st.t1);
  r.items = static_cast<std::uint64_t>(p.count);
  r.steady_news = st.h1.news - st.h0.news;
  r.steady_event_mallocs = st.h1.event_mallocs - st.h0.event_mallocs;
  r.steady_round_trips = static_cast<std::uint64_t>(p.count);
  return r;
}

}  // namespace bench::evco_impl
