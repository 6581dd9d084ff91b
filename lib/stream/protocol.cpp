// The awaiter protocol (try now, park, deadline, stop, fairness, finish).

#include "internal.hpp"

namespace evco::detail {

namespace {

bool try_complete(stream_state& s, stream_op& op) noexcept {
  return is_read(op.kind) ? try_read(s, op) : try_write(s, op);
}

}  // namespace

void unpark(stream_state& s, stream_op& op) noexcept {
  const bool reading = is_read(op.kind);
  (reading ? s.reader : s.writer) = nullptr;
  op.state = op_state::idle;
  op.unlist();
  if (op.armed) {
    stream_state::op_timer& timer = *(reading ? s.read_timer : s.write_timer);
    timer.on_stop.reset();  // first: blocks while a stop callback runs on another thread
    if (timer.stop_wake) event_del(timer.stop_wake.get());
    loop_access::disarm(*s.lp, timer);
    op.armed = false;
  }
  if (s.write_direct && !reading) {
    event_del(s.socket_write.get());
    s.write_direct = false;
  }
  if (op.kind == op_kind::read_until && !s.plain_socket && s.read_high != 0 &&
      as_string(op).max > s.read_high) {
    bufferevent_setwatermark(s.bev, EV_READ, 0, s.read_high);
  } else if (op.kind == op_kind::drain || op.kind == op_kind::shutdown) {
    bufferevent_setwatermark(s.bev, EV_WRITE, s.write_low, 0);
  }
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

// An op that parked for the fairness budget was never tried: a timeout or a stop request that
// finds it gives it its try first, so it does not fail with its bytes already there.
bool completes_when_tried(stream_state& s, stream_op& op) noexcept {
  if (op.state != op_state::yielding) return false;
  op.state = op_state::parked;
  return try_complete(s, op);
}

// What a parked op has moved so far, counting bytes still in the buffers: it only grows while
// the op is parked (a read takes from the socket into the input buffer or its own; a write's
// bytes leave the output buffer or its own for the kernel).
std::int64_t progress_of(stream_state& s, const stream_op& op) noexcept {
  const auto done = static_cast<std::int64_t>(op.done);
  return is_read(op.kind) ? done + static_cast<std::int64_t>(evbuffer_get_length(input(s)))
                          : done - static_cast<std::int64_t>(evbuffer_get_length(output(s)));
}

}  // namespace

// (Re)starts the parked op's timer at `now`: due at its deadline, or once the direction's
// idle timeout passes without progress.
void arm_timer(stream_state& s, stream_op& op, stream_state::op_timer& t, clock::time_point now) {
  const duration idle = t.reading ? s.read_idle : s.write_idle;
  const auto idle_end =
      idle > duration::zero() ? saturating_add(now, idle) : clock::time_point::max();
  t.progress = progress_of(s, op);
  loop_access::arm(*s.lp, t, std::min(t.op_deadline, idle_end));
}

namespace {

// The deadline, the idle timeout or a stop request ended the parked op.
void interrupt(stream_state& s, stream_op& op, std::error_code ec) noexcept {
  if (completes_when_tried(s, op)) return finish_now(s, op);
  if (is_read(op.kind)) {
    fail_read(s, op, ec);
  } else {
    interrupt_write(s, op, ec);
  }
  finish_now(s, op);
}

void on_timer(timer_node& n) noexcept {
  auto& t = static_cast<stream_state::op_timer&>(n);
  stream_state& s = *t.s;
  stream_op* op = t.reading ? s.reader : s.writer;
  if (!op) return;
  const auto now = clock::now();
  // Before the deadline it is the idle timeout, which progress since it started restarts. It
  // comes at least `idle` after the last progress, and at most twice that.
  if (now < t.op_deadline && progress_of(s, *op) != t.progress) {
    arm_timer(s, *op, t, now);  // cannot throw: the queue just gave this timer's room back
    return;
  }
  interrupt(s, *op, errc::timed_out);
}

void on_stop_wake(evutil_socket_t, short, void* arg) {
  auto& t = *static_cast<stream_state::op_timer*>(arg);
  stream_state& s = *t.s;
  if (stream_op* op = t.reading ? s.reader : s.writer) interrupt(s, *op, errc::cancelled);
}

void park(stream_state& s, stream_op& op) {
  const bool reading = is_read(op.kind);
  op.lp = s.lp;
  if (op.state == op_state::idle) op.state = op_state::parked;  // or still yielding
  loop_access::list_parked(*s.lp, op, stream_op_types[static_cast<std::size_t>(op.kind)]);
  (reading ? s.reader : s.writer) = &op;
  const duration idle = reading ? s.read_idle : s.write_idle;
  if (op.timeout != duration::zero() || idle > duration::zero() || op.stop.stop_possible()) {
    std::unique_ptr<stream_state::op_timer>& timer = reading ? s.read_timer : s.write_timer;
    if (!timer) timer = std::make_unique<stream_state::op_timer>(&s, reading);
    stream_state::op_timer& t = *timer;
    if (op.stop.stop_possible() && !t.stop_wake) {
      t.stop_wake.reset(event_new(s.lp->native_handle(), -1, 0, on_stop_wake, &t));
      if (!t.stop_wake) throw std::bad_alloc();
    }
    op.armed = true;
    t.op_deadline = deadline_after(op.timeout);
    arm_timer(s, op, t, clock::now());
    if (op.stop.stop_possible()) t.on_stop.emplace(op.stop, cancel_fn{t.stop_wake.get(), nullptr});
  }
  if (reading) {
    if (s.socket_read) resume_reading(s);
    // A framed read may need more than the read limit holds; it has its own maximum.
    if (op.kind == op_kind::read_until && !s.plain_socket && s.read_high != 0 &&
        as_string(op).max > s.read_high) {
      bufferevent_setwatermark(s.bev, EV_READ, 0, as_string(op).max);
    }
  } else if (op.kind == op_kind::drain ||
             (op.kind == op_kind::shutdown && evbuffer_get_length(output(s)) > 0)) {
    bufferevent_setwatermark(s.bev, EV_WRITE, 0, 0);  // write callback only once empty
  } else if (op.kind == op_kind::shutdown ||
             (s.plain_socket && evbuffer_get_length(output(s)) == 0 &&
              op.state != op_state::yielding)) {
    // A direct write the kernel could not take at once (see try_write), or a close_notify.
    // (One over the fairness budget waits for the retry, which comes after the poll's socket
    // callbacks, so that a reader on the other end of a loopback connection goes first.)
    if (!wait_writable(s)) throw std::bad_alloc();
  }
}

// After the next poll, tries the ops that parked for the inline budget (see await_ready); one
// that still cannot complete stays parked as usual. A completed write resumes through the
// ready list, behind the pass's other callbacks (resumed right here, a sender gets ahead of
// its receiver again: bench/README.md has the figures). A completed read
// resumes at once, so that no frame can end between here and there with its bytes taken;
// and since that may end the stream, last.
void on_retry(evutil_socket_t, short, void* arg) {
  auto& s = *static_cast<stream_state*>(arg);
  if (stream_op* w = s.writer; w && completes_when_tried(s, *w)) finish_later(s, *w);
  if (stream_op* r = s.reader; r && completes_when_tried(s, *r)) finish_now(s, *r);
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

stream_state::op_timer::op_timer(stream_state* st, bool r) noexcept : s(st), reading(r) {
  fire = on_timer;
}

stream_op::~stream_op() {
  if (state != op_state::idle) {
    // A frame destroyed in the middle of a direct write leaves the stream untorn, and one
    // destroyed in the middle of read_exactly gives back what it took.
    if (kind == op_kind::write) interrupt_write(*s, *this, errc::cancelled);
    if (kind == op_kind::read_exactly) fail_read(*s, *this, errc::cancelled);
    unpark(*s, *this);
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
  if (kind == op_kind::read_until && as_string(*this).delim.empty()) {
    ec = std::make_error_code(std::errc::invalid_argument);
    return true;
  }
  const bool reading = is_read(kind);
  if ((reading ? s->reader : s->writer) != nullptr) {
    ec = errc::busy;
    return true;
  }
  // Fairness: a direction that keeps completing at once (a writer the kernel keeps taking
  // from, a reader the socket keeps feeding) lets the loop poll after every inline_budget
  // bytes, so the other end of the data, and every other connection, runs in between.
  // Without it a sender runs megabytes ahead of its receiver, out of the CPU caches. The op
  // over the budget waits like any parked op (it holds its direction, and a close, a stop or
  // the end of its frame find it untouched) and is tried again after the next poll.
  std::uint32_t& moved = reading ? s->inline_read : s->inline_write;
  if (moved >= inline_budget) {
    state = op_state::yielding;
    return false;
  }
  if (!try_complete(*s, *this)) return false;
  moved += static_cast<std::uint32_t>(std::min<std::size_t>(done, inline_budget));
  return true;
}

bool stream_op::await_suspend(std::coroutine_handle<> h) {
  handle = h;
  (is_read(kind) ? s->inline_read : s->inline_write) = 0;
  park(*s, *this);
  if (state == op_state::yielding && !retry_after_poll(*s) && completes_when_tried(*s, *this)) {
    unpark(*s, *this);  // out of memory for the retry event: no poll in between, then
    return false;
  }
  return true;
}

}  // namespace evco::detail
