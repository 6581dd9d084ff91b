// The awaiter protocol, written once for every stream op: try now, park, deadline and idle
// timeout, stop request, fairness budget, finish from the loop, unpark on frame destruction.
// What differs between ops is their op_type (read.cpp, write.cpp).

#include "internal.hpp"

namespace evco::detail {

void fail(stream_state&, stream_op& op, std::error_code ec) noexcept {
  op.ec = ec;
}

void unpark(stream_state& s, stream_op& op) noexcept {
  const op_type& type = type_of(op.kind);
  side_state& side = s.side[type.dir];
  side.op = nullptr;
  op.state = op_state::idle;
  op.unlist();
  if (side.limits) side.limits->disarm();
  if (type.dir == writing && s.write_direct) {
    event_del(s.socket_write.get());
    s.write_direct = false;
  }
  if (type.unparked) type.unparked(s, op);
}

// Hot path (data callbacks): resume at once, as the callback's last action.
void finish_now(stream_state& s, stream_op& op) noexcept {
  unpark(s, op);
  op.handle.resume();
}

// Error and close paths may complete both directions; the first resumption could destroy the
// stream or the other frame, so both go through the loop's ready list instead.
void finish_later(stream_state& s, stream_op& op) noexcept {
  unpark(s, op);
  loop_access::schedule(*op.lp, op);
}

namespace {

// An op that parked for the fairness budget was never tried: a timeout that finds it gives it
// its try first, so it does not fail with its bytes already there. A stop request does not: a
// cancelled op moves nothing (when_any discards what a loser returns).
bool completes_when_tried(stream_state& s, stream_op& op) noexcept {
  if (op.state != op_state::yielding) return false;
  op.state = op_state::parked;
  return type_of(op.kind).perform(s, op);
}

// What a parked op has moved so far, counting bytes still in the buffers: it only grows while
// the op is parked (a read takes from the socket into the input buffer or its own; a write's
// bytes leave the output buffer or its own for the kernel).
std::int64_t progress_of(stream_state& s, const stream_op& op) noexcept {
  const auto done = static_cast<std::int64_t>(op.done);
  return type_of(op.kind).dir == reading ? done + static_cast<std::int64_t>(input_length(s))
                                         : done - static_cast<std::int64_t>(output_length(s));
}

clock::time_point due(const side_limits& l, clock::time_point now) noexcept {
  const auto idle_end =
      l.idle > duration::zero() ? saturating_add(now, l.idle) : clock::time_point::max();
  return std::min(l.op_deadline, idle_end);
}

// The deadline, the idle timeout, a stop request or the end of the frame ended the parked op.
void interrupt(stream_state& s, stream_op& op, std::error_code ec) noexcept {
  if (ec != errc::cancelled && completes_when_tried(s, op)) return finish_now(s, op);
  type_of(op.kind).interrupt(s, op, ec);
  finish_now(s, op);
}

void on_limit(op_limits& l, errc why) noexcept {
  auto& limits = static_cast<side_limits&>(l);
  stream_state& s = *limits.s;
  stream_op* op = s.side[limits.dir].op;
  if (!op) return;
  const auto now = clock::now();
  // Before the deadline it is the idle timeout, which progress since it started restarts. It
  // comes at least `idle` after the last progress, and at most twice that.
  if (why == errc::timed_out && now < limits.op_deadline &&
      progress_of(s, *op) != limits.progress) {
    limits.progress = progress_of(s, *op);
    limits.move_deadline(due(limits, now));  // cannot throw: see move_deadline
    return;
  }
  interrupt(s, *op, why);
}

}  // namespace

side_limits::side_limits(stream_state& st, direction d) noexcept
    : op_limits(*st.lp, &on_limit), s(&st), dir(d) {}

void arm_limits(stream_state& s, direction d, clock::time_point op_deadline) {
  side_state& side = s.side[d];
  if (!side.limits) side.limits = std::make_unique<side_limits>(s, d);
  side.limits->op_deadline = op_deadline;
  side.limits->progress = progress_of(s, *side.op);
  if (!side.limits->arm(due(*side.limits, clock::now()), side.op->stop)) throw std::bad_alloc();
}

namespace {

void park(stream_state& s, stream_op& op) {
  const op_type& type = type_of(op.kind);
  side_state& side = s.side[type.dir];
  op.lp = s.lp;
  if (op.state == op_state::idle) op.state = op_state::parked;  // or still yielding
  loop_access::list_parked(*s.lp, op, type.listed_as);
  side.op = &op;
  if (op.timeout != duration::zero() || op.stop.stop_possible() ||
      (side.limits && side.limits->idle > duration::zero())) {
    arm_limits(s, type.dir, deadline_after(op.timeout));
  }
  if (type.dir == reading) {
    s.input_viewed = false;  // a peek's view ends with the next read (see peek.cpp)
    s.io->reader_parked(s);
  }
  if (type.parked) type.parked(s, op);
}

// After the next poll, tries the ops that parked for the inline budget (see await_ready); one
// that still cannot complete stays parked as usual. A completed write resumes through the
// ready list, behind the pass's other callbacks (resumed right here, a sender gets ahead of
// its receiver again: bench/README.md has the figures). A completed read
// resumes at once, so that no frame can end between here and there with its bytes taken;
// and since that may end the stream, last.
void on_retry(evutil_socket_t, short, void* arg) {
  auto& s = *static_cast<stream_state*>(arg);
  if (stream_op* w = s.side[writing].op; w && completes_when_tried(s, *w)) finish_later(s, *w);
  if (stream_op* r = s.side[reading].op; r && completes_when_tried(s, *r)) finish_now(s, *r);
}

bool retry_after_poll(stream_state& s) noexcept {
  if (!s.retry) {
    s.retry.reset(event_new(s.lp->native_handle(), -1, 0, on_retry, &s));
    if (!s.retry) return false;
  }
  static constexpr timeval now{0, 0};  // a zero timeout fires only after the next poll
  return event_add(s.retry.get(), &now) == 0;
}

}  // namespace

namespace {
// A frame destroyed in the middle of a direct write leaves the stream untorn, and one destroyed
// in the middle of read_exactly gives back what it took.
[[gnu::noinline]] void abandon(stream_state& s, stream_op& op) noexcept {
  type_of(op.kind).interrupt(s, op, errc::cancelled);
  unpark(s, op);
}
}  // namespace

stream_op::~stream_op() {
  if (state != op_state::idle) {
    abandon(*s, *this);
  } else if (queued) {
    loop_access::unschedule(*lp, *this);
  }
}

bool stream_op::await_ready() {
  if (stop.stop_requested()) {
    ec = errc::cancelled;
    return true;
  }
  if (!s) {
    ec = errc::closed;
    return true;
  }
  const op_type& type = type_of(kind);
  side_state& side = s->side[type.dir];
  if (side.op != nullptr) {
    ec = errc::busy;
    return true;
  }
  // Fairness: a direction that keeps completing at once (a writer the kernel keeps taking
  // from, a reader the socket keeps feeding) lets the loop poll after every inline_budget
  // bytes, so the other end of the data, and every other connection, runs in between.
  // Without it a sender runs megabytes ahead of its receiver, out of the CPU caches. The op
  // over the budget waits like any parked op (it holds its direction, and a close, a stop or
  // the end of its frame find it untouched) and is tried again after the next poll.
  if (side.inline_moved >= inline_budget) {
    state = op_state::yielding;
    return false;
  }
  if (!type.perform(*s, *this)) return false;
  side.inline_moved += static_cast<std::uint32_t>(std::min<std::size_t>(done, inline_budget));
  return true;
}

bool stream_op::await_suspend(std::coroutine_handle<> h) {
  handle = h;
  s->side[type_of(kind).dir].inline_moved = 0;
  park(*s, *this);
  if (state == op_state::yielding && !retry_after_poll(*s) && completes_when_tried(*s, *this)) {
    unpark(*s, *this);  // out of memory for the retry event: no poll in between, then
    return false;
  }
  return true;
}

}  // namespace evco::detail
