#include "evco/stream.hpp"

#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "stream_state.hpp"

namespace evco {
namespace detail {
namespace {

constexpr auto linger_timeout = std::chrono::seconds(5);

bool is_read(op_kind k) noexcept {
  switch (k) {
    case op_kind::read_some:
    case op_kind::read_exactly:
    case op_kind::read_until:
      return true;
    case op_kind::write:
    case op_kind::drain:
    case op_kind::shutdown:
      break;
  }
  return false;
}
string_op& as_string(stream_op& op) noexcept {
  return static_cast<string_op&>(op);
}
evbuffer* input(stream_state& s) noexcept {
  return bufferevent_get_input(s.bev);
}
evbuffer* output(stream_state& s) noexcept {
  return bufferevent_get_output(s.bev);
}

// A read that stops early gives back what read_exactly already took, so no byte is lost.
void fail_read(stream_state& s, stream_op& op, std::error_code ec) noexcept {
  if (op.kind == op_kind::read_exactly && op.done > 0) {
    evbuffer_prepend(input(s), op.data, op.done);
    op.done = 0;
  }
  op.ec = ec;
}

// libevent 2.1 reads at most this much per readv (EVBUFFER_MAX_READ), once per loop turn.
constexpr std::size_t libevent_read_cap = 4096;
constexpr std::size_t max_single_write = 256 << 10;
constexpr std::size_t inline_budget = 128 << 10;

// After a recv() that returned nothing: 0 is the peer's end, an errno other than "try again"
// a failure. The first of them sticks: a reset socket reads 0 afterwards, which is no eof.
void note_read_end(stream_state& s, int err) noexcept {
  if (s.read_error || err == EAGAIN || err == EWOULDBLOCK || err == EINTR) return;
  s.read_error = err == 0 ? make_error_code(errc::eof) : system_error(err);
  if (err != 0 && !s.write_error) s.write_error = s.read_error;
}

bool may_read_direct(const stream_state& s) noexcept {
  return s.plain_socket && !s.read_error;
}

// Plain sockets: recv() straight into the caller's buffer, skipping libevent's capped reads
// and the copy out of the input buffer. Only called while the input buffer is empty, so the
// byte order holds. Returns the bytes read; 0 when there were none, or when the stream
// ended or failed (then read_error says so).
std::size_t read_direct(stream_state& s, std::byte* p, std::size_t n) noexcept {
  if (n == 0) return 0;  // recv() of nothing returns 0, which would read as the peer's end
  const ssize_t r = ::recv(bufferevent_getfd(s.bev), p, n, MSG_DONTWAIT);
  if (r > 0) {
    // A full read says more is waiting. After one, a short read does not say the socket is
    // empty: on loopback, a read that opens the receive window lets the sender's queued
    // bytes in at once. Reading on until EAGAIN keeps the window open; parking after every
    // short read instead can leave a bulk transfer stuck at one small window per loop turn
    // (bench/README.md has the figures).
    s.more_pending = static_cast<std::size_t>(r) == n || s.more_pending;
    return static_cast<std::size_t>(r);
  }
  s.more_pending = false;
  note_read_end(s, r == 0 ? 0 : errno);
  return 0;
}

// read_some into a string: makes the room for the bytes about to be read (once): what the
// input buffer holds, or else what one socket read may bring, and at most max (which may
// well be npos, "whatever is there"). False, with the op failed, when out of memory.
bool make_room(stream_state& s, stream_op& op) noexcept {
  if (!op.into_string || op.data) return true;
  string_op& so = as_string(op);
  constexpr std::size_t socket_read_room = 64 << 10;
  const std::size_t buffered = evbuffer_get_length(input(s));
  std::size_t room = buffered > 0 ? buffered : socket_read_room;
  room = std::min({room, so.max, so.line->max_size() - so.line->size()});
  try {
    so.scanned = so.line->size();
    so.line->resize(so.scanned + room);
  } catch (const std::exception&) {
    op.ec = std::make_error_code(std::errc::not_enough_memory);
    return false;
  }
  op.data = reinterpret_cast<std::byte*>(so.line->data()) + so.scanned;
  op.size = room;
  return true;
}

// ... and gives it back when the socket had nothing after all: a waiting read holds no room.
void drop_room(stream_op& op) noexcept {
  if (!op.into_string || !op.data || op.done > 0) return;
  string_op& so = as_string(op);
  so.line->resize(so.scanned);
  op.data = nullptr;
  op.size = 0;
}

// Completes a read from the input buffer or the sticky read error, if it can; true if done.
bool try_read(stream_state& s, stream_op& op) noexcept {
  evbuffer* in = input(s);
  const std::size_t len = evbuffer_get_length(in);
  switch (op.kind) {
    case op_kind::read_some:
      if (len > 0 || (op.into_string ? as_string(op).max : op.size) == 0) {
        if (!make_room(s, op)) return true;
        const int n = evbuffer_remove(in, op.data, std::min(len, op.size));
        op.done = n > 0 ? static_cast<std::size_t>(n) : 0;
        if (op.done < op.size && len >= libevent_read_cap && may_read_direct(s)) {
          op.done += read_direct(s, op.data + op.done, op.size - op.done);
        }
        return true;
      }
      if (s.more_pending && may_read_direct(s)) {
        if (!make_room(s, op)) return true;
        op.done = read_direct(s, op.data, op.size);
        if (op.done > 0) return true;
        drop_room(op);
      }
      break;
    case op_kind::read_exactly:
      if (len > 0 && op.done < op.size) {
        const int n = evbuffer_remove(in, op.data + op.done, std::min(len, op.size - op.done));
        if (n > 0) op.done += static_cast<std::size_t>(n);
      }
      if (op.done < op.size && (len >= libevent_read_cap || s.more_pending) && may_read_direct(s)) {
        op.done += read_direct(s, op.data + op.done, op.size - op.done);
      }
      if (op.done == op.size) return true;
      break;
    case op_kind::read_until: {
      string_op& so = as_string(op);
      const std::size_t dlen = so.delim.size();
      if (len >= dlen && len > so.scanned) {
        evbuffer_ptr start;
        evbuffer_ptr_set(in, &start, so.scanned, EVBUFFER_PTR_SET);
        const evbuffer_ptr found = evbuffer_search(in, so.delim.data(), dlen, &start);
        if (found.pos >= 0) {
          const std::size_t n = static_cast<std::size_t>(found.pos) + dlen;
          if (n > so.max) {
            op.ec = errc::limit_exceeded;
            return true;
          }
          const std::size_t old = so.line->size();
          so.line->resize(old + n);
          evbuffer_remove(in, so.line->data() + old, n);
          op.done = n;
          return true;
        }
        so.scanned = len - dlen + 1;
      }
      if (len >= so.max) {
        op.ec = errc::limit_exceeded;
        return true;
      }
      break;
    }
    default:
      break;
  }
  if (s.read_error) {
    fail_read(s, op, s.read_error);
    return true;
  }
  return false;
}

// A deadline, stop request or close ends a parked write-side op. A write the kernel took part
// of is never torn: the rest is queued, as if it had not had to wait, and the write succeeds.
void interrupt_write(stream_state& s, stream_op& op, std::error_code ec) noexcept {
  if (op.kind == op_kind::write && op.done > 0 && op.done < op.size && !s.write_error) {
    if (evbuffer_add(output(s), op.data + op.done, op.size - op.done) == 0) {
      op.done = op.size;
      return;
    }
    ec = std::make_error_code(std::errc::not_enough_memory);
  }
  op.ec = ec;
}

void on_socket_writable(evutil_socket_t, short what, void* arg);

// Makes the parked writer wait for the socket to be writable (socket_write); false when out
// of memory.
bool wait_writable(stream_state& s) noexcept {
  if (s.write_direct) return true;
  if (!s.socket_write) {
    s.socket_write.reset(event_new(s.lp->native_handle(), bufferevent_getfd(s.bev),
                                   EV_WRITE | EV_PERSIST, on_socket_writable, &s));
    if (!s.socket_write) return false;
  }
  event_add(s.socket_write.get(), nullptr);
  s.write_direct = true;
  return true;
}

// Completes a write-side op if the output buffer allows it; true if done.
bool try_write(stream_state& s, stream_op& op) noexcept {
  if (s.write_error) {
    op.ec = s.write_error;
    return true;
  }
  if (s.write_shut) {
    op.ec = errc::closed;
    return true;
  }
  evbuffer* out = output(s);
  const std::size_t len = evbuffer_get_length(out);
  switch (op.kind) {
    case op_kind::write: {
      if (len == 0 && s.plain_socket) {
        // Nothing queued: hand the bytes to the kernel now, from the caller's buffer.
        // bufferevent would copy them, enable EPOLLOUT, wait a loop turn and disable it
        // again. What the kernel does not take yet is sent from here as well once the socket
        // is writable (park waits on socket_write). MSG_NOSIGNAL: a closed peer is EPIPE.
        if (op.done < op.size) {
          const ssize_t n = ::send(bufferevent_getfd(s.bev), op.data + op.done, op.size - op.done,
                                   MSG_NOSIGNAL | MSG_DONTWAIT);
          if (n >= 0) {
            op.done += static_cast<std::size_t>(n);
          } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            s.write_error = system_error(errno);
            op.ec = s.write_error;
            return true;
          }
        }
        if (op.done == op.size) return true;
        // A parked write (one that waited at the watermark until the queued output drained)
        // now waits on the socket itself.
        if (op.parked && !wait_writable(s)) {
          interrupt_write(s, op, std::make_error_code(std::errc::not_enough_memory));
          return true;
        }
        return false;
      }
      if (s.write_high != 0 && len > s.write_high) return false;
      if (evbuffer_add(out, op.data + op.done, op.size - op.done) != 0) {
        op.ec = std::make_error_code(std::errc::not_enough_memory);
      } else {
        op.done = op.size;
      }
      return true;
    }
    case op_kind::drain:
      return len == 0;
    case op_kind::shutdown:
      if (len != 0) return false;
      // TLS ends its direction with close_notify before the FIN. When the socket is too
      // full to take it, wait until it is writable (park arms socket_write) and try again.
      if (s.send_close_notify && !s.send_close_notify(s.bev)) {
        if (op.parked && !wait_writable(s)) {
          op.ec = std::make_error_code(std::errc::not_enough_memory);
          return true;
        }
        return false;
      }
      if (::shutdown(bufferevent_getfd(s.bev), SHUT_WR) != 0) op.ec = system_error(errno);
      s.write_shut = true;
      return true;
    default:
      return true;
  }
}

bool try_complete(stream_state& s, stream_op& op) noexcept {
  return is_read(op.kind) ? try_read(s, op) : try_write(s, op);
}

void unpark(stream_state& s, stream_op& op) noexcept {
  const bool reading = is_read(op.kind);
  (reading ? s.reader : s.writer) = nullptr;
  op.parked = false;
  op.yielding = false;
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

// An op that parked for the fairness budget was never tried: a timeout or a stop request that
// finds it gives it its try first, so it does not fail with its bytes already there.
bool completes_when_tried(stream_state& s, stream_op& op) noexcept {
  if (!op.yielding) return false;
  op.yielding = false;
  return try_complete(s, op);
}

// --- plain sockets: reading through socket_read ----------------------------------------------

void pause_reading(stream_state& s) noexcept {
  if (s.read_paused) return;
  event_del(s.socket_read.get());
  s.read_paused = true;
}

void resume_reading(stream_state& s) noexcept {
  if (!s.read_paused || s.read_error) return;
  event_add(s.socket_read.get(), nullptr);
  s.read_paused = false;
}

// Reads what the socket holds into the input buffer (at most one chunk per loop turn).
void fill_input(stream_state& s) noexcept {
  constexpr std::size_t chunk = 64 << 10;
  evbuffer* in = input(s);
  // A bufferevent freezes the end of its input buffer; it unfreezes it around its own reads.
  evbuffer_unfreeze(in, 0);
  evbuffer_iovec vec;
  if (evbuffer_reserve_space(in, chunk, &vec, 1) == 1) {
    vec.iov_len = read_direct(s, static_cast<std::byte*>(vec.iov_base), vec.iov_len);
    if (vec.iov_len > 0) evbuffer_commit_space(in, &vec, 1);
  } else {
    note_read_end(s, ENOMEM);
  }
  evbuffer_freeze(in, 0);
}

void on_socket_readable(evutil_socket_t, short, void* arg) {
  auto& s = *static_cast<stream_state*>(arg);
  stream_op* op = s.reader;
  if (op && op->kind != op_kind::read_until && evbuffer_get_length(input(s)) == 0) {
    // Straight into the waiting op's buffer: one recv, no copy.
    if (!make_room(s, *op)) return finish_now(s, *op);
    const std::size_t n = read_direct(s, op->data + op->done, op->size - op->done);
    op->done += n;
    if (op->kind == op_kind::read_some ? n > 0 : op->done == op->size) {
      return finish_now(s, *op);
    }
    drop_room(*op);
  } else {
    fill_input(s);
  }
  // A socket at its end, or failed, stays readable for ever: stop watching it.
  if (s.read_error) pause_reading(s);
  if (op) {
    if (try_read(s, *op)) finish_now(s, *op);
    return;
  }
  // Nobody waits: read ahead up to the read limit.
  if (s.read_high != 0 && evbuffer_get_length(input(s)) >= s.read_high) pause_reading(s);
}

void on_socket_writable(evutil_socket_t, short, void* arg) {
  auto& s = *static_cast<stream_state*>(arg);
  stream_op* op = s.writer;
  if (!op) return;
  if (try_write(s, *op)) finish_now(s, *op);
}

void on_read(bufferevent*, void* arg) {
  auto& s = *static_cast<stream_state*>(arg);
  if (stream_op* op = s.reader; op && try_read(s, *op)) finish_now(s, *op);
}

void on_write(bufferevent*, void* arg) {
  auto& s = *static_cast<stream_state*>(arg);
  if (stream_op* op = s.writer; op && try_write(s, *op)) finish_now(s, *op);
}

void on_event(bufferevent* bev, short what, void* arg) {
  const int err = EVUTIL_SOCKET_ERROR();  // first: anything below may overwrite it
  auto& s = *static_cast<stream_state*>(arg);
  if ((what & BEV_EVENT_EOF) && !s.read_error) s.read_error = errc::eof;
  if (what & BEV_EVENT_ERROR) {
    const std::error_code ec =
        s.map_error ? s.map_error(bev, err) : system_error(err != 0 ? err : EIO);
    if (what & BEV_EVENT_READING) {
      // A failed receive (ECONNRESET) kills the socket both ways.
      s.read_error = ec;
      if (!s.write_error) s.write_error = ec;
    } else if (!s.write_error) {
      s.write_error = ec;
    }
  }
  if (stream_op* op = s.reader; op && try_read(s, *op)) finish_later(s, *op);
  if (stream_op* op = s.writer; op && try_write(s, *op)) finish_later(s, *op);
}

// What a parked op has moved so far, counting bytes still in the buffers: it only grows while
// the op is parked (a read takes from the socket into the input buffer or its own; a write's
// bytes leave the output buffer or its own for the kernel).
std::int64_t progress_of(stream_state& s, const stream_op& op) noexcept {
  const auto done = static_cast<std::int64_t>(op.done);
  return is_read(op.kind) ? done + static_cast<std::int64_t>(evbuffer_get_length(input(s)))
                          : done - static_cast<std::int64_t>(evbuffer_get_length(output(s)));
}

// (Re)starts the parked op's timer at `now`: due at its deadline, or once the direction's
// idle timeout passes without progress.
void arm_timer(stream_state& s, stream_op& op, stream_state::op_timer& t, clock::time_point now) {
  const duration idle = t.reading ? s.read_idle : s.write_idle;
  const auto idle_end =
      idle > duration::zero() ? saturating_add(now, idle) : clock::time_point::max();
  t.progress = progress_of(s, op);
  loop_access::arm(*s.lp, t, std::min(t.op_deadline, idle_end));
}

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
  op.parked = true;
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
             (s.plain_socket && evbuffer_get_length(output(s)) == 0 && !op.yielding)) {
    // A direct write the kernel could not take at once (see try_write), or a close_notify.
    // (One over the fairness budget waits for the retry, which comes after the poll's socket
    // callbacks, so that a reader on the other end of a loopback connection goes first.)
    if (!wait_writable(s)) throw std::bad_alloc();
  }
}

// --- fairness: ops over the inline budget ----------------------------------------------------

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

// --- graceful close -------------------------------------------------------------------------

void linger_done(stream_state* s) noexcept {
  loop_access::release(*s->lp, *s->lingering);
  loop_access::disarm(*s->lp, *s->lingering);
  delete s;
}

void linger_check(stream_state* s) noexcept {
  if (s->write_shut && s->peer_eof) linger_done(s);
}

void linger_read(bufferevent* bev, void* arg) {
  evbuffer* in = bufferevent_get_input(bev);
  evbuffer_drain(in, evbuffer_get_length(in));
  (void)arg;
}

// Ends our direction once the output is flushed: close_notify first on TLS, then FIN.
void linger_shut(stream_state* s) noexcept {
  if (s->write_shut) return;
  if (s->send_close_notify && !s->send_close_notify(s->bev)) {
    // The socket is full: retry once it is writable (bounded by the linger timeout).
    if (!s->socket_write) {
      s->socket_write.reset(event_new(
          s->lp->native_handle(), bufferevent_getfd(s->bev), EV_WRITE,
          [](evutil_socket_t, short, void* a) {
            auto* st = static_cast<stream_state*>(a);
            linger_shut(st);
            linger_check(st);
          },
          s));
    }
    if (s->socket_write && event_add(s->socket_write.get(), nullptr) == 0) return;
  }
  ::shutdown(bufferevent_getfd(s->bev), SHUT_WR);
  s->write_shut = true;
}

void linger_write(bufferevent* bev, void* arg) {
  auto* s = static_cast<stream_state*>(arg);
  if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) linger_shut(s);
  linger_check(s);
}

void linger_event(bufferevent* bev, short what, void* arg) {
  auto* s = static_cast<stream_state*>(arg);
  if (what & BEV_EVENT_EOF) {
    s->peer_eof = true;
    bufferevent_disable(bev, EV_READ);
    linger_check(s);
    return;
  }
  linger_done(s);  // an error: give up on the peer
}

void close_state(stream_state* s) noexcept {
  if (stream_op* op = s->reader) {
    op->ec = errc::closed;
    finish_later(*s, *op);
  }
  if (stream_op* op = s->writer) {
    interrupt_write(*s, *op, errc::closed);  // its queued rest goes out with the close
    finish_later(*s, *op);
  }
  s->read_timer.reset();
  s->write_timer.reset();
  s->socket_write.reset();
  s->retry.reset();
  s->socket_read.reset();  // the linger below reads through the bufferevent again
  if (!s->bev) {
    delete s;
    return;
  }
  const int fd = bufferevent_getfd(s->bev);
  int unread = 0;
  // After the peer's end every byte before it was read already: no need to ask the kernel.
  if (fd >= 0 && s->read_error != errc::eof && ioctl(fd, FIONREAD, &unread) != 0) unread = 0;
  const bool queued = evbuffer_get_length(output(*s)) > 0;
  // Closing with unread bytes in the kernel makes it send RST, which can destroy data the
  // peer has not read yet; so does closing before the output is flushed. Only the common
  // case, nothing pending either way, closes at once.
  // TLS sends close_notify first; only a socket too full to take it makes that linger.
  if (fd < 0 || s->write_error ||
      (!queued && unread == 0 && (!s->send_close_notify || s->send_close_notify(s->bev)))) {
    delete s;
    return;
  }
  try {
    s->lingering = std::make_unique<stream_state::linger_state>();
  } catch (const std::bad_alloc&) {
    delete s;  // no memory to linger with: close at once
    return;
  }
  stream_state::linger_state& l = *s->lingering;
  l.state = s;
  l.destroy = [](owned* o) noexcept {
    linger_done(static_cast<stream_state::linger_state*>(o)->state);
  };
  l.queued = evbuffer_get_length(output(*s));
  l.fire = [](timer_node& n) noexcept {
    auto& t = static_cast<stream_state::linger_state&>(n);
    // As long as the queued output keeps draining, the peer gets another linger_timeout.
    const std::size_t queued = evbuffer_get_length(output(*t.state));
    if (queued < t.queued) {
      t.queued = queued;
      loop_access::arm(*t.state->lp, t, saturating_add(clock::now(), linger_timeout));
      return;
    }
    linger_done(t.state);  // give up on the peer
  };
  try {
    loop_access::arm(*s->lp, l, saturating_add(clock::now(), linger_timeout));
  } catch (const std::bad_alloc&) {
    delete s;  // no room for the timer: close at once rather than without a bound
    return;
  }
  loop_access::adopt(*s->lp, l);
  bufferevent_setcb(s->bev, linger_read, linger_write, linger_event, s);
  bufferevent_setwatermark(s->bev, EV_READ, 0, 0);
  bufferevent_setwatermark(s->bev, EV_WRITE, 0, 0);
  if (s->read_error) s->peer_eof = true;
  evbuffer_drain(input(*s), evbuffer_get_length(input(*s)));
  bufferevent_enable(s->bev, s->peer_eof ? EV_WRITE : EV_READ | EV_WRITE);
  if (!queued) linger_shut(s);
}

}  // namespace

stream_state::op_timer::op_timer(stream_state* st, bool r) noexcept : s(st), reading(r) {
  fire = on_timer;
}

stream_state::~stream_state() {
  // The events on the fd go before bufferevent_free closes it under them.
  socket_read.reset();
  socket_write.reset();
  retry.reset();
  if (bev) bufferevent_free(bev);
}

stream_op::~stream_op() {
  if (parked) {
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
    yielding = true;
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
  if (yielding && !retry_after_poll(*s) && completes_when_tried(*s, *this)) {
    unpark(*s, *this);  // out of memory for the retry event: no poll in between, then
    return false;
  }
  return true;
}

stream attach(loop& lp, bufferevent* bev, bool bufferevent_reads, const tls_hooks* tls) {
  stream st;
  st.s_ = new stream_state(lp, bev);
  if (tls) {
    st.s_->map_error = tls->map_error;
    st.s_->send_close_notify = tls->send_close_notify;
  }
  // The time limits are evco's own: libevent's would disable a direction nobody re-enables.
  bufferevent_set_timeouts(bev, nullptr, nullptr);
  bufferevent_setcb(bev, on_read, on_write, on_event, st.s_);
  // A plain socket's reads are evco's own (socket_read), which keep to the read limit.
  if (bufferevent_reads) bufferevent_setwatermark(bev, EV_READ, 0, st.s_->read_high);
  bufferevent_setwatermark(bev, EV_WRITE, st.s_->write_low, 0);
  bufferevent_enable(bev, bufferevent_reads ? EV_READ | EV_WRITE : EV_WRITE);
  return st;
}

result<stream> make_socket_stream(loop& lp, int fd) {
  bufferevent* bev = bufferevent_socket_new(lp.native_handle(), fd,
                                            BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
  if (!bev) {
    ::close(fd);
    return std::make_error_code(std::errc::not_enough_memory);
  }
  // libevent's default is 16 KiB per writev; a deep output buffer then costs one loop turn
  // per 16 KiB.
  bufferevent_set_max_single_write(bev, max_single_write);
  stream st = attach(lp, bev, false);
  stream_state& s = *st.s_;
  s.plain_socket = true;
  s.socket_read.reset(
      event_new(lp.native_handle(), fd, EV_READ | EV_PERSIST, on_socket_readable, &s));
  if (!s.socket_read) return std::make_error_code(std::errc::not_enough_memory);
  event_add(s.socket_read.get(), nullptr);
  return st;
}

}  // namespace detail

stream& stream::operator=(stream&& o) noexcept {
  if (this != &o) {
    close();
    s_ = std::exchange(o.s_, nullptr);
  }
  return *this;
}

stream stream::from_bufferevent(loop& lp, bufferevent* bev) {
  if (!bev) throw std::invalid_argument("evco::stream::from_bufferevent: null bufferevent");
  return detail::attach(lp, bev, true);
}

result<stream> stream::from_socket(loop& lp, int fd) {
  int type = 0, listening = 0;
  socklen_t len = sizeof type;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) return detail::system_error(errno);
  len = sizeof listening;
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0) {
    return detail::system_error(errno);
  }
  if (type != SOCK_STREAM || listening) return std::make_error_code(std::errc::invalid_argument);
  if (evutil_make_socket_nonblocking(fd) != 0) return detail::system_error(errno);
  return detail::make_socket_stream(lp, fd);
}

void stream::close() noexcept {
  if (s_) detail::close_state(std::exchange(s_, nullptr));
}

void stream::set_timeouts(duration read, duration write) {
  if (!s_) return;
  s_->read_idle = std::max(read, duration::zero());
  s_->write_idle = std::max(write, duration::zero());
  // An op parked now runs on the new timeouts, from now.
  const auto now = clock::now();
  for (detail::stream_op* op : {s_->reader, s_->writer}) {
    if (!op) continue;
    auto& timer = detail::is_read(op->kind) ? s_->read_timer : s_->write_timer;
    if (!timer)
      timer = std::make_unique<detail::stream_state::op_timer>(s_, detail::is_read(op->kind));
    if (!op->armed) timer->op_deadline = clock::time_point::max();
    op->armed = true;
    detail::arm_timer(*s_, *op, *timer, now);
  }
}

void stream::set_read_limit(std::size_t high) {
  if (!s_) return;
  s_->read_high = high;
  if (!s_->plain_socket) bufferevent_setwatermark(s_->bev, EV_READ, 0, high);
  if (high == 0 || evbuffer_get_length(bufferevent_get_input(s_->bev)) < high) {
    detail::resume_reading(*s_);
  }
}

void stream::set_write_watermarks(std::size_t low, std::size_t high) {
  if (!s_) return;
  s_->write_low = std::min(low, high);
  s_->write_high = high;
  bufferevent_setwatermark(s_->bev, EV_WRITE, s_->write_low, 0);
}

std::size_t stream::buffered_input() const noexcept {
  return s_ ? evbuffer_get_length(bufferevent_get_input(s_->bev)) : 0;
}

std::size_t stream::buffered_output() const noexcept {
  return s_ ? evbuffer_get_length(bufferevent_get_output(s_->bev)) : 0;
}

namespace {
result<endpoint> socket_name(detail::stream_state* s, bool peer) {
  if (!s) return errc::closed;
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  const int fd = bufferevent_getfd(s->bev);
  auto* sa = reinterpret_cast<sockaddr*>(&ss);
  if ((peer ? getpeername(fd, sa, &len) : getsockname(fd, sa, &len)) != 0) {
    return std::error_code(errno, std::system_category());
  }
  return endpoint::from_sockaddr(sa, len);
}
}  // namespace

result<endpoint> stream::local_endpoint() const {
  return socket_name(s_, false);
}
result<endpoint> stream::remote_endpoint() const {
  return socket_name(s_, true);
}
bufferevent* stream::native_handle() const noexcept {
  return s_ ? s_->bev : nullptr;
}

}  // namespace evco
