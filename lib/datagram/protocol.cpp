// The awaiter protocol, written once for every datagram op: try now, park on the socket's
// readiness, deadline, stop request, fairness budget, finish from the loop, unpark on frame
// destruction. How each op makes progress is io.cpp.

#include <unistd.h>

#include <cstring>

#include "../parked.hpp"
#include "state.hpp"

namespace evco::detail {

namespace {

void on_limit(op_limits& l, errc why) noexcept;

// What loop::parked() shows: the socket's endpoints (a send_to's destination as the remote
// one), and the op's deadline.
void describe(const parked_op& p, parked_op_info& out) {
  const auto& op = static_cast<const datagram_op&>(p);
  describe_socket(op.s->fd, out);
  if (op.kind == datagram_kind::send_to) {
    if (auto to =
            endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&op.addr), op.addr_len)) {
      out.remote = to.value();
    }
  }
  const op_limits& limits = op.s->side[direction_of(op.kind)].limits;
  if (limits.active) describe_timer(limits, out);
}

constexpr parked_op_type types[] = {
    {"receive_from", describe}, {"receive", describe}, {"receive_batch", describe},
    {"send_to", describe},      {"send", describe},    {"send_batch", describe},
};

const parked_op_type& type_of(datagram_kind k) noexcept {
  return types[static_cast<unsigned char>(k)];
}

// Makes sure the socket's readiness in `d` is watched; false when out of memory.
bool watch(datagram_state& s, datagram_direction d) noexcept {
  datagram_side& side = s.side[d];
  if (side.watching) return true;
  if (event_add(side.ready.get(), nullptr) != 0) return false;
  side.watching = true;
  return true;
}

void stop_watching(datagram_side& side) noexcept {
  if (!side.watching) return;
  event_del(side.ready.get());
  side.watching = false;
}

// Hot path (readiness callbacks): resume at once, as the callback's last action.
void finish_now(datagram_state& s, datagram_op& op) noexcept {
  unpark(s, op);
  op.handle.resume();
}

// When a callback may complete both directions: the first resumption could destroy the
// socket or the other frame, so that one goes through the loop's ready list instead.
void finish_later(datagram_state& s, datagram_op& op) noexcept {
  unpark(s, op);
  loop_access::schedule(*op.lp, op);
}

// The socket has a datagram (or an error, an ICMP one on a connected socket). With nobody to
// receive it, stop watching (level-triggered: it would fire at every poll) and let the next
// receive try at once: datagrams come faster than they are received.
void on_readable(evutil_socket_t, short, void* arg) {
  auto& s = *static_cast<datagram_state*>(arg);
  datagram_op* op = s.side[receiving].op;
  if (!op) {
    stop_watching(s.side[receiving]);
    s.speculate = true;
    return;
  }
  op->state = datagram_op_state::parked;  // an op yielding for the budget: this is its poll
  if (perform(s, *op)) finish_now(s, *op);
}

void on_writable(evutil_socket_t, short, void* arg) {
  auto& s = *static_cast<datagram_state*>(arg);
  datagram_op* op = s.side[sending].op;
  if (!op) return stop_watching(s.side[sending]);
  op->state = datagram_op_state::parked;
  if (perform(s, *op)) finish_now(s, *op);
}

// The op of `d` parked for the budget, tried after the poll: false when it waits on as usual.
bool completes_when_tried(datagram_state& s, datagram_direction d) noexcept {
  datagram_op* op = s.side[d].op;
  if (!op || op->state != datagram_op_state::yielding) return false;
  op->state = datagram_op_state::parked;
  if (perform(s, *op)) return true;
  if (watch(s, d)) return false;
  op->ec = std::make_error_code(std::errc::not_enough_memory);
  return true;
}

// After the next poll, tries the ops that parked for the budget. A completed send resumes
// through the ready list, a completed receive at once, last (it may end the socket).
void on_retry(evutil_socket_t, short, void* arg) {
  auto& s = *static_cast<datagram_state*>(arg);
  if (completes_when_tried(s, sending)) finish_later(s, *s.side[sending].op);
  if (completes_when_tried(s, receiving)) finish_now(s, *s.side[receiving].op);
}

bool retry_after_poll(datagram_state& s) noexcept {
  static constexpr timeval now{0, 0};  // a zero timeout fires only after the next poll
  return event_add(s.retry.get(), &now) == 0;
}

// The deadline or a stop request. An op that parked for the budget was never tried: a
// deadline that finds it gives it its try first, so that it does not fail with a datagram
// there; a stop request does not (a cancelled op moves nothing).
void on_limit(op_limits& l, errc why) noexcept {
  auto& limits = static_cast<datagram_side::side_limits&>(l);
  datagram_state& s = *limits.s;
  datagram_op* op = s.side[limits.dir].op;
  if (!op) return;
  if (why == errc::timed_out && op->state == datagram_op_state::yielding) {
    op->state = datagram_op_state::parked;
    if (perform(s, *op)) return finish_now(s, *op);
  }
  op->ec = why;
  finish_now(s, *op);
}

}  // namespace

datagram_side::side_limits::side_limits(datagram_state& st, datagram_direction d) noexcept
    : op_limits(*st.lp, &on_limit), s(&st), dir(d) {}

void make_events(datagram_state& s) {
  event_base* base = s.lp->native_handle();
  s.side[receiving].ready.reset(event_new(base, s.fd, EV_READ | EV_PERSIST, on_readable, &s));
  s.side[sending].ready.reset(event_new(base, s.fd, EV_WRITE | EV_PERSIST, on_writable, &s));
  s.retry.reset(event_new(base, -1, 0, on_retry, &s));
  if (!s.side[receiving].ready || !s.side[sending].ready || !s.retry) throw std::bad_alloc();
}

void unpark(datagram_state& s, datagram_op& op) noexcept {
  const datagram_direction d = direction_of(op.kind);
  datagram_side& side = s.side[d];
  side.op = nullptr;
  op.state = datagram_op_state::idle;
  op.unlist();
  side.limits.disarm();
  if (d == sending) stop_watching(side);
}

datagram_state::~datagram_state() {
  for (datagram_side& side : this->side) {
    side.ready.reset();
    side.limits.disarm();
  }
  retry.reset();
  ::close(fd);
}

datagram_op::datagram_op(datagram_state* st, const void* p, std::size_t n, const endpoint& to,
                         op_options o) noexcept
    : s(st),
      kind(datagram_kind::send_to),
      data(const_cast<void*>(p)),
      size(n),
      timeout(o.timeout),
      stop(std::move(o.stop)) {
  // A family other than IPv4 and IPv6 is left for sendto to refuse (addr_len 0: no address).
  // Copied whole: sockaddr_in6 holds either, and an endpoint's storage is larger still.
  static_assert(sizeof(sockaddr_in6) >= sizeof(sockaddr_in));
  if (to.is_v4() || to.is_v6()) {
    addr_len = to.is_v6() ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
    std::memcpy(&addr, to.data(), sizeof addr);
  }
}

datagram_op::~datagram_op() {
  if (state != datagram_op_state::idle) {
    unpark(*s, *this);  // the frame died while the op was parked
  } else if (queued) {
    loop_access::unschedule(*lp, *this);
  }
}

bool datagram_op::await_ready() {
  if (stop.stop_requested()) {
    ec = errc::cancelled;
    return true;
  }
  if (!s) {
    ec = errc::closed;
    return true;
  }
  const datagram_direction d = direction_of(kind);
  if (s->side[d].op != nullptr) {
    ec = errc::busy;
    return true;
  }
  // Fairness: a socket whose ops keep completing at once (a receiver the socket keeps
  // feeding, a sender the kernel keeps taking from) lets the loop poll after every
  // inline_budget of them. The op over the budget waits like any parked op (it holds its
  // direction, and a close, a stop or the end of its frame find it untouched) and is tried
  // after the next poll.
  if (s->inline_done >= inline_budget) {
    state = datagram_op_state::yielding;
    return false;
  }
  // An expired deadline asks for a poll: it is always tried.
  if (d == receiving && !s->speculate && timeout >= duration::zero()) return false;
  if (!perform(*s, *this)) return false;
  ++s->inline_done;
  return true;
}

bool datagram_op::await_suspend(std::coroutine_handle<> h) {
  handle = h;
  lp = s->lp;
  s->inline_done = 0;  // the loop polls before this op goes on
  const datagram_direction d = direction_of(kind);
  datagram_side& side = s->side[d];
  if (state == datagram_op_state::idle) state = datagram_op_state::parked;
  loop_access::list_parked(*lp, *this, type_of(kind));
  side.op = this;
  bool ok = state == datagram_op_state::yielding ? retry_after_poll(*s) : watch(*s, d);
  if (ok && (timeout != duration::zero() || stop.stop_possible())) {
    ok = side.limits.arm(deadline_after(timeout), stop);
  }
  if (ok) return true;
  unpark(*s, *this);
  ec = std::make_error_code(std::errc::not_enough_memory);
  return false;
}

result<received> datagram_receive_from_op::await_resume() const {
  if (ec) return ec;
  auto from = endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&addr), addr_len);
  if (!from) return from.error();
  return received{done, from.value()};
}

}  // namespace evco::detail
