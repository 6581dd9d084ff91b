#include "evco/detail/wait_queue.hpp"

#include <new>

#include "evco/loop.hpp"
#include "op_limits.hpp"
#include "parked.hpp"

namespace evco::detail {

struct pooled_limits : op_limits {
  explicit pooled_limits(loop& l) noexcept : op_limits(l, &on_end) {}
  // Only a parked op has its limits armed, so `op` is set whenever this runs. A woken op
  // completes here too: it is scheduled already, and resumes with `why`.
  static void on_end(op_limits& l, errc why) noexcept {
    queued_op& op = *static_cast<pooled_limits&>(l).op;
    queue_owner* owner = op.queue->owner;
    complete(op, why);
    if (owner) owner->left(*owner);
  }
  queued_op* op = nullptr;        // while lent
  pooled_limits* next = nullptr;  // while in the pool
};

limits_pool::~limits_pool() {
  while (pooled_limits* l = free) {
    free = l->next;
    delete l;
  }
}

void queued_op::leave() noexcept {
  if (queued) loop_access::unschedule(*lp, *this);
  if (queue) {
    queue_owner* owner = queue->owner;
    unpark(*this);
    if (owner) owner->left(*owner);
  }
}

namespace {
// A channel end or a signal wait has no endpoint: only its deadline, if it has one.
void describe(const parked_op& p, parked_op_info& out) {
  const auto& op = static_cast<const queued_op&>(p);
  if (op.limits && op.limits->active) describe_timer(*op.limits, out);
}
}  // namespace

const parked_op_type send_type{"send", describe};
const parked_op_type receive_type{"receive", describe};
const parked_op_type wait_signal_type{"wait_signal", describe};
const parked_op_type spawn_type{"spawn", describe};

bool park(wait_queue& q, queued_op& op, std::coroutine_handle<> h) noexcept {
  if (op.timeout < duration::zero()) {
    op.ec = errc::timed_out;
    return false;
  }
  op.handle = h;
  if (op.timeout != duration::zero() || op.stop.stop_possible()) {
    limits_pool& pool = *q.pool;
    pooled_limits* l = pool.free;
    if (l) {
      pool.free = l->next;
    } else {
      l = new (std::nothrow) pooled_limits(*pool.lp);
    }
    // Armed before it is listed: a stop already requested only queues it on the loop.
    if (!l || !l->arm(deadline_after(op.timeout), op.stop)) {
      if (l) {
        l->next = pool.free;
        pool.free = l;
      }
      op.ec = std::make_error_code(std::errc::not_enough_memory);
      return false;
    }
    l->op = &op;
    op.limits = l;
  }
  loop_access::list_parked(*op.lp, op, *op.type);
  op.queue = &q;
  op.q_next = nullptr;
  op.q_prev = q.tail;
  (q.tail ? q.tail->q_next : q.head) = &op;
  q.tail = &op;
  ++q.size;
  return true;
}

namespace {
void unlink(wait_queue& q, queued_op& op) noexcept {
  (op.q_prev ? op.q_prev->q_next : q.head) = op.q_next;
  (op.q_next ? op.q_next->q_prev : q.tail) = op.q_prev;
}
}  // namespace

void unpark(queued_op& op) noexcept {
  wait_queue& q = *op.queue;
  if (op.woken) {
    // The woken ops come first in `q`, so the one before the last is woken too (or none is).
    if (q.last_woken == &op) q.last_woken = op.q_prev;
    --q.woken;
    op.woken = false;
  }
  unlink(q, op);
  --q.size;
  op.q_prev = op.q_next = nullptr;
  op.queue = nullptr;
  op.unlist();
  if (pooled_limits* l = std::exchange(op.limits, nullptr)) {
    l->disarm();  // first: a stop callback running on another thread is waited for
    l->op = nullptr;
    l->next = q.pool->free;
    q.pool->free = l;
  }
}

void complete(queued_op& op, std::error_code ec) noexcept {
  op.ec = ec;
  unpark(op);
  loop_access::schedule(*op.lp, op);
}

void complete_all(wait_queue& q, std::error_code ec) noexcept {
  while (queued_op* op = q.front())
    complete(*op, ec);
}

void wake(wait_queue& q, queued_op& op) noexcept {
  if (&op != q.first_unwoken()) {
    unlink(q, op);
    op.q_prev = q.last_woken;
    op.q_next = q.first_unwoken();
    (op.q_prev ? op.q_prev->q_next : q.head) = &op;
    (op.q_next ? op.q_next->q_prev : q.tail) = &op;
  }
  op.woken = true;
  q.last_woken = &op;
  ++q.woken;
  loop_access::schedule(*op.lp, op);
}

void unwake_last(wait_queue& q) noexcept {
  queued_op& op = *q.last_woken;
  loop_access::unschedule(*op.lp, op);
  op.woken = false;
  q.last_woken = op.q_prev;
  --q.woken;
}

}  // namespace evco::detail
