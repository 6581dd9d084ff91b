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
using namespace std::chrono_literals;

// Re-arms the one timer warmup + count times and expects every wait to end with operation_aborted.
// The first `warmup` are not timed.
asio::awaitable<void> timer_waiter(asio::steady_timer* t, timer_params p, timer_tally* st) {
  for (int i = 0; i < p.warmup + p.count; ++i) {
    if (i == p.warmup) st->start_timing();
    if (t->expires_after(10s) != 0) {
      st->fail("expires_after cancelled a wait");
      break;
    }
    ++st->armed;
    boost::system::error_code ec;
    co_await t->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (ec != asio::error::operation_aborted) {
      st->fail(ec ? "a wait failed: " + ec.message() : "a timer expired");
      break;
    }
    ++st->cancelled;
  }
  st->finish();
}

// Cancels wait `i` once the waiter has started it (and so is suspended in it).
asio::awaitable<void> timer_main(asio::steady_timer* t, timer_params p, timer_tally* st) {
  const auto ex = co_await asio::this_coro::executor;
  for (int i = 1; i <= p.warmup + p.count; ++i) {
    while (st->armed != i && !st->done)
      co_await asio::post(ex, asio::use_awaitable);
    if (st->done) break;
    if (t->cancel() != 1) {
      st->fail("cancel found no wait");
      break;
    }
  }
}

}  // namespace

run_result timer_cancel(const timer_params& p) {
  timer_tally st;
  try {
    asio::io_context io(1);
    asio::steady_timer t(io);
    asio::co_spawn(io, timer_waiter(&t, p, &st), asio::detached);
    asio::co_spawn(io, timer_main(&t, p, &st), asio::detached);
    io.run();
  } catch (const std::exception& e) {
    st.fail(std::string("exception: ") + e.what());
  }
  return st.result("asio", p);
}

}  // namespace bench::asio_impl
