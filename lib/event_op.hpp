#pragma once
// Private: an awaiter parked on a libevent event of its own and/or a deadline on the loop's
// timer queue (sleeps, connect, the TLS handshake, the hostname connect's race).

#include <coroutine>
#include <optional>
#include <stop_token>
#include <system_error>

#include "evco/detail/waiter.hpp"
#include "evco/error.hpp"
#include "evco/loop.hpp"
#include "libevent.hpp"
#include "parked.hpp"

namespace evco::detail {

// `callback` decides the outcome and calls finish(); it is called by the event (fd readiness,
// a stop request or a wake-up from elsewhere: event_active) and, with EV_TIMEOUT, by the
// deadline. A stop request comes with EV_TIMEOUT too: check cancelled() first. finish() unregisters
// everything (stop callback first, then the event and the deadline) and resumes the awaiter last.
// Destroying a parked frame runs the same unregistration through the destructor. While parked,
// the op is on the loop's registry as a `type`.
struct event_op : parked_op {
  using callback = void (*)(evutil_socket_t, short, void*);

  event_op(loop& l, std::stop_token st, callback cb, const parked_op_type& type) noexcept
      : parked_op(&type), lp(l), stop(std::move(st)), timer(this), cb_(cb) {}
  event_op(const event_op&) = delete;
  event_op& operator=(const event_op&) = delete;
  ~event_op() { unregister(); }

  // Parks the awaiter `h` until `deadline` (time_point::max(): none) or the event. The event
  // is made when there is an fd to watch (`what` on `fd`), when the op is `woken` from
  // elsewhere (event_active on `ev`), or when the stop token can ask for a stop. Out of
  // memory, it fails the op with not_enough_memory and returns false: await_suspend's
  // result, so that the awaiter goes on at once.
  bool park(std::coroutine_handle<> h, clock::time_point deadline, int fd = -1, short what = 0,
            bool woken = false) noexcept {
    handle = h;
    loop_access::list_parked(lp, *this, *type);
    try {
      if (fd >= 0 || woken || stop.stop_possible()) {
        ev.reset(event_new(lp.native_handle(), fd, what, cb_, this));
        if (!ev || (fd >= 0 && event_add(ev.get(), nullptr) != 0)) throw std::bad_alloc();
      }
      loop_access::arm(lp, timer, deadline);
      if (stop.stop_possible()) on_stop.emplace(stop, cancel_fn{ev.get(), &stop_requested});
    } catch (const std::bad_alloc&) {
      unregister();
      ec = std::make_error_code(std::errc::not_enough_memory);
      return false;
    }
    return true;
  }
  bool cancelled() const noexcept { return stop_requested.load(std::memory_order_acquire); }

  void unregister() noexcept {
    on_stop.reset();  // blocks while the callback runs on another thread
    if (ev) event_del(ev.get());
    loop_access::disarm(lp, timer);
    unlist();
  }

  // A parked_op_type's describe for an op that shows only its deadline.
  static void describe_deadline(const parked_op& op, parked_op_info& out) {
    describe_timer(static_cast<const event_op&>(op).timer, out);
  }
  void finish(std::error_code e) noexcept {
    ec = e;
    unregister();
    handle.resume();
  }

  loop& lp;
  event_ptr ev;
  std::coroutine_handle<> handle;
  std::error_code ec;
  std::atomic<bool> stop_requested{false};
  std::stop_token stop;
  std::optional<std::stop_callback<cancel_fn>> on_stop;

 private:
  struct deadline_node : timer_node {
    explicit deadline_node(event_op* o) noexcept : op(o) {
      fire = [](timer_node& n) noexcept {
        event_op* self = static_cast<deadline_node&>(n).op;
        self->cb_(-1, EV_TIMEOUT, self);
      };
    }
    event_op* op;
  };
  deadline_node timer;
  callback cb_;
};

}  // namespace evco::detail
