// Reading from the input buffer or straight from the socket.

#include "internal.hpp"

namespace evco::detail {

// A read that stops early gives back what read_exactly already took, so no byte is lost.
void fail_read(stream_state& s, stream_op& op, std::error_code ec) noexcept {
  if (op.kind == op_kind::read_exactly && op.done > 0) {
    evbuffer_prepend(input(s), op.data, op.done);
    op.done = 0;
  }
  op.ec = ec;
}

// After a recv() that returned nothing: 0 is the peer's end, an errno other than "try again"
// a failure. The first of them sticks: a reset socket reads 0 afterwards, which is no eof.
void note_read_end(stream_state& s, int err) noexcept {
  if (s.read_error || err == EAGAIN || err == EWOULDBLOCK || err == EINTR) return;
  s.read_error = err == 0 ? make_error_code(errc::eof) : system_error(err);
  if (err != 0 && !s.write_error) s.write_error = s.read_error;
}

namespace {

bool may_read_direct(const stream_state& s) noexcept {
  return s.plain_socket && !s.read_error;
}

}  // namespace

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
    so.base = so.line->size();
    so.line->resize(so.base + room);
  } catch (const std::exception&) {
    op.ec = std::make_error_code(std::errc::not_enough_memory);
    return false;
  }
  op.data = reinterpret_cast<std::byte*>(so.line->data()) + so.base;
  op.size = room;
  return true;
}

// ... and gives it back when the socket had nothing after all: a waiting read holds no room.
void drop_room(stream_op& op) noexcept {
  if (!op.into_string || !op.data || op.done > 0) return;
  string_op& so = as_string(op);
  so.line->resize(so.base);
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

}  // namespace evco::detail
