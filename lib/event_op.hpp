#pragma once
// Private: an awaiter parked on one libevent event of its own (timers, connect, accept).

#include <coroutine>
#include <optional>
#include <stop_token>
#include <system_error>

#include "evco/detail/waiter.hpp"
#include "evco/error.hpp"
#include "libevent.hpp"

namespace evco::detail {

// The event's callback decides the outcome and calls finish(); finish() unregisters
// everything (stop callback first, then the event) and resumes the awaiter last. Destroying
// a parked frame runs the same unregistration through the destructor.
struct event_op {
  event_ptr ev;
  std::coroutine_handle<> handle;
  std::error_code ec;
  std::atomic<bool> stop_requested{false};
  std::stop_token stop;
  std::optional<std::stop_callback<cancel_fn>> on_stop;

  explicit event_op(std::stop_token st) noexcept : stop(std::move(st)) {}
  event_op(const event_op&) = delete;
  event_op& operator=(const event_op&) = delete;
  ~event_op() { unregister(); }

  // Arms stop-token cancellation; call once the event exists.
  void watch_stop() {
    if (stop.stop_possible()) on_stop.emplace(stop, cancel_fn{ev.get(), &stop_requested});
  }
  bool cancelled() const noexcept { return stop_requested.load(std::memory_order_acquire); }

  void unregister() noexcept {
    on_stop.reset();  // blocks while the callback runs on another thread
    if (ev) event_del(ev.get());
  }
  void finish(std::error_code e) noexcept {
    ec = e;
    unregister();
    handle.resume();
  }
};

}  // namespace evco::detail
