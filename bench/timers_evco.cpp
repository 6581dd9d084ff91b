// timer_cancel on evco: one coroutine arms `sleep_for(lp, 10s, token)` timer after timer, a
// second one cancels each through its std::stop_source; see bench/README.md.

#include <stop_token>
#include <string>

#include <evco/evco.hpp>

#include "common.hpp"

namespace bench::evco_impl {
namespace {

using namespace std::chrono_literals;

struct timer_state : timer_tally {
  std::stop_source src{std::nostopstate};  // the waiting timer's
};

// Arms warmup + count timers one after another, each with a new stop source (one cannot be
// reset), and expects every one to end cancelled. The first `warmup` are not timed.
evco::task<evco::result<void>> timer_waiter(evco::loop& lp, timer_params p, timer_state* st) {
  for (int i = 0; i < p.warmup + p.count; ++i) {
    if (i == p.warmup) st->start_timing();
    st->src = std::stop_source();
    ++st->armed;
    auto r = co_await evco::sleep_for(lp, 10s, st->src.get_token());
    if (r || r.error() != evco::errc::cancelled) {
      st->fail(r ? "a timer expired" : "a timer failed: " + r.error().message());
      break;
    }
    ++st->cancelled;
  }
  st->finish();
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
  return st.result("evco", p);
}

}  // namespace bench::evco_impl
