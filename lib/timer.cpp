#include "evco/timer.hpp"

#include "evco/loop.hpp"
#include "event_op.hpp"

namespace evco {
namespace {

struct timer_op : detail::event_op {
  loop& lp;
  clock::time_point deadline;

  timer_op(loop& l, clock::time_point d, std::stop_token st)
      : event_op(std::move(st)), lp(l), deadline(d) {}

  bool await_ready() const noexcept { return stop.stop_requested(); }
  void await_suspend(std::coroutine_handle<> h) {
    handle = h;
    ev.reset(event_new(
        lp.native_handle(), -1, 0,
        [](evutil_socket_t, short, void* arg) {
          auto& self = *static_cast<timer_op*>(arg);
          self.finish(self.cancelled() ? make_error_code(errc::cancelled) : std::error_code{});
        },
        this));
    if (!ev) throw std::bad_alloc();
    const timeval tv = detail::to_timeval(deadline - clock::now());
    event_add(ev.get(), &tv);
    watch_stop();
  }
  result<void> await_resume() const noexcept {
    if (stop.stop_requested() && !handle) return errc::cancelled;
    if (ec) return ec;
    return success();
  }
};

}  // namespace

task<result<void>> sleep_until(loop& lp, clock::time_point deadline, std::stop_token stop) {
  co_return co_await timer_op{lp, deadline, std::move(stop)};
}

task<result<void>> sleep_for(loop& lp, duration d, std::stop_token stop) {
  return sleep_until(lp, clock::now() + d, std::move(stop));
}

}  // namespace evco
