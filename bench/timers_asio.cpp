// timer_cancel on Boost.Asio: one coroutine arms a steady_timer for 10 s and waits on it, timer
// after timer, a second one cancels each wait with cancel(); see bench/README.md.

#include <string>
#include <utility>  // first: Boost 1.74's asio/awaitable.hpp uses std::exchange without it

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "common.hpp"

namespace bench::asio_impl {
namespace {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using error_code = boost::system::error_code;
using namespace std::chrono_literals;

struct timer_state {
  int armed = 0;      // waits started so far: the one pending is this one
  int cancelled = 0;  // ... and those that ended with operation_aborted
  bool done = false;  // the waiter has ended
  std::string error;
  clock::time_point t0{}, t1{};
  heap_counters h0{}, h1{};

  void fail(std::string why) {
    if (error.empty()) error = std::move(why);
  }
};

// Re-arms the one timer `total` times and expects every wait to end with operation_aborted.
// The first `warmup` are not timed.
awaitable<void> timer_waiter(asio::steady_timer* t, timer_params p, timer_state* st) {
  for (int i = 0; i < p.warmup + p.count; ++i) {
    if (i == p.warmup) {
      st->h0 = heap_now();
      st->t0 = clock::now();
    }
    if (t->expires_after(10s) != 0) {
      st->fail("expires_after cancelled a wait");
      break;
    }
    ++st->armed;
    error_code ec;
    co_await t->async_wait(asio::redirect_error(use_awaitable, ec));
    if (ec != asio::error::operation_aborted) {
      st->fail(ec ? "a wait failed: " + ec.message() : "a timer expired");
      break;
    }
    ++st->cancelled;
  }
  st->t1 = clock::now();
  st->h1 = heap_now();
  st->done = true;
}

// Cancels wait `i` once the waiter has started it (and so is suspended in it).
awaitable<void> timer_main(asio::steady_timer* t, timer_params p, timer_state* st) {
  const auto ex = co_await asio::this_coro::executor;
  for (int i = 1; i <= p.warmup + p.count; ++i) {
    while (st->armed != i && !st->done)
      co_await asio::post(ex, use_awaitable);
    if (st->done) break;
    if (t->cancel() != 1) {
      st->fail("cancel found no wait");
      break;
    }
  }
}

}  // namespace

run_result timer_cancel(const timer_params& p) {
  timer_state st;
  try {
    asio::io_context io(1);
    asio::steady_timer t(io);
    asio::co_spawn(io, timer_waiter(&t, p, &st), asio::detached);
    asio::co_spawn(io, timer_main(&t, p, &st), asio::detached);
    io.run();
  } catch (const std::exception& e) {
    st.fail(std::string("exception: ") + e.what());
  }
  if (!st.error.empty()) return bench::fail("asio: " + st.error);
  if (!st.done || st.cancelled != p.warmup + p.count) {
    return bench::fail("asio: a timer was not cancelled");
  }
  run_result r;
  r.ok = true;
  r.seconds = seconds_between(st.t0, st.t1);
  r.items = static_cast<std::uint64_t>(p.count);
  r.steady_news = st.h1.news - st.h0.news;
  r.steady_event_mallocs = st.h1.event_mallocs - st.h0.event_mallocs;
  r.steady_round_trips = static_cast<std::uint64_t>(p.count);
  return r;
}

}  // namespace bench::asio_impl
