#pragma once
// Ops that park on a queue until something else completes or wakes them (a channel's senders
// and receivers, a loop's signal waiters); not part of the API. The protocol is written once,
// in lib/wait_queue.cpp: park (with a deadline and a stop request), complete or wake from the
// loop, unpark on frame destruction.

#include <coroutine>
#include <cstddef>
#include <stop_token>
#include <system_error>
#include <utility>

#include "evco/detail/parked_op.hpp"
#include "evco/detail/waiter.hpp"
#include "evco/op_options.hpp"

namespace evco {
class loop;
}

namespace evco::detail {

struct pooled_limits;  // lib/wait_queue.cpp: an op_limits lent to a parked op

// The limits (a timer node and a stop callback) that parked ops with a
// timeout or a stop token borrow, kept for reuse: once the pool has grown to the number of
// such ops parked at once, parking allocates nothing. Every op must have been unparked
// before the pool goes.
struct limits_pool {
  explicit limits_pool(loop& l) noexcept : lp(&l) {}
  limits_pool(const limits_pool&) = delete;
  limits_pool& operator=(const limits_pool&) = delete;
  ~limits_pool();
  loop* lp;
  pooled_limits* free = nullptr;
};

struct queued_op;
struct wait_queue;

// Whoever hands out what a queue's ops wait for (a channel), told when one of them leaves the
// queue by itself: its deadline passed, its stop request came, or its frame was destroyed. A
// channel then gives the wake-up that op held, or takes back the ones its item backed.
struct queue_owner {
  void (*left)(queue_owner& self) noexcept;
};

// Parked ops in the order they parked. Intrusive: parking allocates nothing. The first
// `woken` of them are woken (see wake()), the others wait.
struct wait_queue {
  explicit wait_queue(limits_pool& p, queue_owner* o = nullptr) noexcept : pool(&p), owner(o) {}
  wait_queue(const wait_queue&) = delete;
  wait_queue& operator=(const wait_queue&) = delete;
  bool empty() const noexcept { return head == nullptr; }
  queued_op* front() const noexcept { return head; }
  // The first op that waits and is not woken, or null.
  queued_op* first_unwoken() const noexcept;

  limits_pool* pool;
  queue_owner* owner;
  queued_op* head = nullptr;
  queued_op* tail = nullptr;
  queued_op* last_woken = nullptr;  // the last of the woken ops, null when there is none
  std::size_t size = 0;             // ops parked, the woken ones included
  std::size_t woken = 0;
};

// One awaiter parked on a wait_queue. It lives in the awaiting coroutine's frame; while
// parked it is listed on its queue, and once completed it waits on the loop's ready list with
// its outcome. A woken op is on both: scheduled to resume, and still parked (its deadline and
// stop request armed) until it has resumed and decided its outcome there. Its destructor takes
// it off whichever it is on, so a frame may end at any time. While parked it is on the loop's
// registry too (loop::parked()), as a `type`.
struct queued_op : waiter, parked_op {
  queued_op(loop& l, op_options o, const parked_op_type& t) noexcept
      : parked_op(&t), lp(&l), timeout(o.timeout), stop(std::move(o.stop)) {}
  // Movable until it is awaited, so that when_any and when_all can take it in.
  queued_op(queued_op&& o) noexcept
      : parked_op(o.type), lp(o.lp), timeout(o.timeout), stop(std::move(o.stop)), ec(o.ec) {}
  queued_op& operator=(const queued_op&) = delete;
  ~queued_op() {
    if (queued || queue) leave();  // inline: most ops complete at once, on neither
  }

  bool parked() const noexcept { return queue != nullptr; }
  // Off the ready list and the queue, telling the queue's owner (the frame is going).
  void leave() noexcept;
  queued_op* next_parked() const noexcept { return q_next; }

  loop* lp;
  wait_queue* queue = nullptr;  // set while parked
  queued_op* q_prev = nullptr;
  queued_op* q_next = nullptr;
  pooled_limits* limits = nullptr;  // borrowed while parked with a timeout or a stop token
  duration timeout;
  std::stop_token stop;
  std::error_code ec;
  bool woken = false;  // parked, and scheduled to resume (wake())
};

inline queued_op* wait_queue::first_unwoken() const noexcept {
  return last_woken ? last_woken->q_next : head;
}

// What loop::parked() calls them (lib/wait_queue.cpp).
extern const parked_op_type send_type, receive_type, wait_signal_type, spawn_type;

// The one place an op parks: at the back of `q`, with its deadline and stop request armed
// (its outcome is then set by complete(), or by the op itself once woken). False, without
// parking, when it cannot: a negative timeout (op.ec = errc::timed_out: it was a poll) or no
// memory (not_enough_memory). await_suspend's result, so that the awaiter goes on at once.
// When the deadline passes or the stop request comes first, the op completes with
// errc::timed_out or errc::cancelled and q.owner is told.
bool park(wait_queue& q, queued_op& op, std::coroutine_handle<> h) noexcept;
// The one place an op unparks: off its queue (no longer woken), its limits back in the pool.
// No resumption, and a woken op stays scheduled.
void unpark(queued_op& op) noexcept;
// Unparks `op` and resumes it from the loop (never inline) with `ec`.
void complete(queued_op& op, std::error_code ec = {}) noexcept;
// complete() for every op parked on `q`, in order.
void complete_all(wait_queue& q, std::error_code ec) noexcept;
// Schedules `op`, parked on `q` and not woken, to resume from the loop while it stays parked:
// it decides its outcome when it resumes (a stop request or deadline that came meanwhile
// wins), which is what makes "resumed" and "done" one moment. It becomes the last woken op,
// moved there in `q` if other unwoken ops were ahead of it.
void wake(wait_queue& q, queued_op& op) noexcept;
// Takes back the last wake-up: that op is no longer scheduled and waits again, first in line,
// its deadline and stop request still armed.
void unwake_last(wait_queue& q) noexcept;

}  // namespace evco::detail
