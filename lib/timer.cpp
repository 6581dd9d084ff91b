#include "evco/timer.hpp"

#include "evco/loop.hpp"
#include "event_op.hpp"

namespace evco {
namespace {

constexpr detail::parked_op_type sleep_type{"sleep", &detail::event_op::describe_deadline};

struct timer_op : detail::event_op {
  clock::time_point deadline;
  bool at_once;  // the deadline has passed already: complete without suspending

  timer_op(loop& l, clock::time_point d, bool now, std::stop_token st)
      : event_op(l, std::move(st), &on_event, sleep_type), deadline(d), at_once(now) {}

  bool await_ready() const noexcept { return stop.stop_requested() || at_once; }
  bool await_suspend(std::coroutine_handle<> h) { return park(h, deadline); }
  result<void> await_resume() const noexcept {
    if (stop.stop_requested() && !handle) return errc::cancelled;
    if (ec) return ec;
    return success();
  }

  static void on_event(evutil_socket_t, short, void* arg) {
    auto& self = *static_cast<timer_op*>(arg);
    self.finish(self.cancelled() ? make_error_code(errc::cancelled) : std::error_code{});
  }
};

}  // namespace

task<result<void>> sleep_until(loop& lp, clock::time_point deadline, std::stop_token stop) {
  co_await detail::internal_frame{};
  co_return co_await timer_op{lp, deadline, deadline < clock::now(), std::move(stop)};
}

task<result<void>> sleep_for(loop& lp, duration d, std::stop_token stop) {
  co_await detail::internal_frame{};
  const auto deadline = detail::saturating_add(clock::now(), d);
  co_return co_await timer_op{lp, deadline, d < duration::zero(), std::move(stop)};
}

}  // namespace evco
