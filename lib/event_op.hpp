#pragma once
// Private: an awaiter parked on a libevent event of its own and/or its limits (sleeps,
// connect, the TLS handshake, the hostname connect's race).

#include <coroutine>
#include <stop_token>
#include <system_error>

#include "evco/error.hpp"
#include "evco/loop.hpp"
#include "libevent.hpp"
#include "op_limits.hpp"
#include "parked.hpp"

namespace evco::detail {

// `callback` decides the outcome and calls finish(); it is called by the event (fd readiness,
// or a wake-up from elsewhere: event_active) and, with EV_TIMEOUT, by the deadline or a stop
// request: check cancelled() first. finish() unregisters everything (the limits, then the
// event) and resumes the awaiter last. Destroying a parked frame unregisters the same way.
// While parked, the op is on the loop's registry as a `type`.
struct event_op : parked_op {
  using callback = void (*)(evutil_socket_t, short, void*);

  event_op(loop& l, std::stop_token st, callback cb, const parked_op_type& type) noexcept
      : parked_op(&type), lp(l), stop(std::move(st)), limits(l, this), cb_(cb) {}
  event_op(const event_op&) = delete;
  event_op& operator=(const event_op&) = delete;
  ~event_op() { unregister(); }

  // Parks the awaiter `h` until `deadline` (time_point::max(): none), a stop request or the
  // event, which is made when there is an fd to watch (`what` on `fd`) or when the op is
  // `woken` from elsewhere (event_active on `ev`). Out of memory, it fails the op with
  // not_enough_memory and returns false: await_suspend's result, so that the awaiter goes on
  // at once.
  bool park(std::coroutine_handle<> h, clock::time_point deadline, int fd = -1, short what = 0,
            bool woken = false) noexcept {
    handle = h;
    loop_access::list_parked(lp, *this, *type);
    if (fd >= 0 || woken) {
      ev.reset(event_new(lp.native_handle(), fd, what, cb_, this));
      if (!ev || (fd >= 0 && event_add(ev.get(), nullptr) != 0)) return out_of_memory();
    }
    if (!limits.arm(deadline, stop)) return out_of_memory();
    return true;
  }
  bool cancelled() const noexcept { return why == errc::cancelled; }

  void unregister() noexcept {
    limits.disarm();
    if (ev) event_del(ev.get());
    unlist();
  }
  void finish(std::error_code e) noexcept {
    ec = e;
    unregister();
    handle.resume();
  }

  // A parked_op_type's describe for an op that shows only its deadline.
  static void describe_deadline(const parked_op& op, parked_op_info& out) {
    const auto& self = static_cast<const event_op&>(op);
    if (self.limits.active) describe_timer(self.limits, out);
  }

  loop& lp;
  event_ptr ev;
  std::coroutine_handle<> handle;
  std::error_code ec;
  std::stop_token stop;

 private:
  bool out_of_memory() noexcept {
    unregister();
    ec = std::make_error_code(std::errc::not_enough_memory);
    return false;
  }
  struct own_limits : op_limits {
    own_limits(loop& l, event_op* o) noexcept : op_limits(l, &on_end), op(o) {}
    static void on_end(op_limits& l, errc w) noexcept {
      event_op* self = static_cast<own_limits&>(l).op;
      self->why = w;
      self->cb_(-1, EV_TIMEOUT, self);
    }
    event_op* op;
  } limits;
  errc why{};
  callback cb_;
};

}  // namespace evco::detail
