#pragma once
// Private: what ends a parked op from outside, written once for every op that parks (stream
// ops, accept, resolve, and the event_op waits: sleeps, connect, the TLS handshake).

#include <optional>
#include <stop_token>
#include <system_error>

#include "evco/detail/waiter.hpp"
#include "evco/error.hpp"
#include "evco/loop.hpp"
#include "libevent.hpp"

namespace evco::detail {

// A deadline (this node, on the loop's timer queue) and a stop request (a std::stop_callback,
// which may run on any thread, so it only queues this node on its loop, which does the rest).
// Either calls `ended` from the loop: with errc::timed_out once steady_clock reaches the
// deadline, with errc::cancelled after a stop request. `ended` may arm the limits again (an
// idle timeout restarted by progress) or disarm them; its owner finishes the op.
struct op_limits : timer_node {
  using ended_fn = void (*)(op_limits&, errc why) noexcept;

  op_limits(loop& l, ended_fn f) noexcept : lp(&l), ended(f) {
    fire = [](timer_node& n) noexcept {
      auto& self = static_cast<op_limits&>(n);
      self.ended(self, errc::timed_out);
    };
  }
  op_limits(const op_limits&) = delete;
  op_limits& operator=(const op_limits&) = delete;
  ~op_limits() { disarm(); }

  // Due at `deadline` (time_point::max(): never) and at a stop request on `stop`. False, with
  // nothing armed, when out of memory.
  bool arm(clock::time_point deadline, const std::stop_token& stop) noexcept;
  // Moves the deadline (the stop request stays watched). Cannot fail from inside `ended`,
  // which the queue calls with this node's room in the heap given back.
  void move_deadline(clock::time_point deadline) { loop_access::arm(*lp, *this, deadline); }
  void disarm() noexcept {
    if (active) release();
  }

  // The stop callback: queues the node on its loop (loop_access::stopped), from any thread.
  struct on_stop_fn {
    op_limits* self;
    void operator()() const noexcept { loop_access::stopped(*self->lp, *self); }
  };

  loop* lp;
  ended_fn ended;
  bool active = false;
  std::optional<std::stop_callback<on_stop_fn>> on_stop;
  // On the loop's list of stopped limits, under its lock (lib/loop.cpp).
  bool stop_queued = false;
  op_limits* next_stopped = nullptr;
  op_limits* prev_stopped = nullptr;

 private:
  void release() noexcept;
};

}  // namespace evco::detail
