// The read ops: read_some (into a span or a string), read_exactly, read_until. Each takes what
// the input buffer holds first, then (plain sockets) straight from the socket.

#include <sys/uio.h>

#include "internal.hpp"

namespace evco::detail {

// After a recv() that returned nothing: 0 is the peer's end, an errno other than "try again"
// a failure. The first of them sticks: a reset socket reads 0 afterwards, which is no eof.
void note_read_end(stream_state& s, int err) noexcept {
  std::error_code& read_error = s.side[reading].error;
  if (read_error || err == EAGAIN || err == EWOULDBLOCK || err == EINTR) return;
  read_error = err == 0 ? make_error_code(errc::eof) : system_error(err);
  if (err != 0 && !s.side[writing].error) s.side[writing].error = read_error;
}

namespace {

// What a direct read of `got` bytes, into room for `asked`, says about the socket.
void note_read(stream_state& s, std::size_t got, std::size_t asked) noexcept {
  // A full read says more is waiting. After one, a short read does not say the socket is
  // empty: on loopback, a read that opens the receive window lets the sender's queued
  // bytes in at once. Reading on until EAGAIN keeps the window open; parking after every
  // short read instead can leave a bulk transfer stuck at one small window per loop turn
  // (bench/README.md has the figures).
  s.more_pending = got == asked || s.more_pending;
  s.readable = s.readable && got == asked;
}

std::size_t note_no_read(stream_state& s, ssize_t r) noexcept {
  s.more_pending = false;
  s.readable = false;
  note_read_end(s, r == 0 ? 0 : errno);
  return 0;
}

// A small direct read also reads ahead, in the same syscall, into this much scratch room.
constexpr std::size_t read_ahead_room = 16 << 10;

}  // namespace

// Plain sockets: recv() straight into the caller's buffer, skipping libevent's capped reads
// and the copy out of the input buffer. Only called while the input buffer is empty, so the
// byte order holds. Returns the bytes read; 0 when there were none, or when the stream
// ended or failed (then the read side's error says so).
std::size_t read_direct(stream_state& s, std::byte* p, std::size_t n) noexcept {
  if (n == 0) return 0;  // recv() of nothing returns 0, which would read as the peer's end
  const ssize_t r = ::recv(s.fd, p, n, MSG_DONTWAIT);
  if (r <= 0) return note_no_read(s, r);
  note_read(s, static_cast<std::size_t>(r), n);
  return static_cast<std::size_t>(r);
}

// A small read fills the caller's buffer and, by the same readv(), a scratch area behind it,
// whose bytes go to the input buffer: a read that filled the buffer but not the scratch found
// the socket empty, with no failing recv() to say so (pingpong: a read_exactly of one message
// no longer tries once more before it waits). Like read_direct, only called while the input
// buffer is empty, so the bytes read ahead come first there. A plain socket is non-blocking
// (make_socket_stream's contract: every path that makes one sets O_NONBLOCK), so readv()
// needs no MSG_DONTWAIT; it costs less than recvmsg() (bench/README.md). Nothing is read
// ahead while a peek's view is out, nor past the input's limit.
std::size_t read_direct_ahead(stream_state& s, std::byte* p, std::size_t n) noexcept {
  if (n == 0 || n >= read_ahead_room || s.input_viewed) return read_direct(s, p, n);
  // The input's limit (none: 0), looked up only when it may be below the scratch's size: it
  // is at least the read limit, 1 MiB by default.
  const std::size_t limit = s.read_high != 0 && s.read_high <= read_ahead_room ? input_limit(s) : 0;
  const std::size_t room = limit != 0 ? std::min(limit, read_ahead_room) : read_ahead_room;
  std::byte scratch[read_ahead_room];
  iovec iov[2] = {{p, n}, {scratch, room}};
  const ssize_t r = ::readv(s.fd, iov, 2);
  if (r <= 0) return note_no_read(s, r);
  const auto got = static_cast<std::size_t>(r);
  note_read(s, got, n + room);
  if (got <= n) return got;
  int added = -1;
  if (buffers(s)) {  // a plain socket's are made when first needed: here
    evbuffer* in = input(s);
    // The end of the input buffer is frozen (see fill_input).
    evbuffer_unfreeze(in, 0);
    added = evbuffer_add(in, scratch, got - n);
    evbuffer_freeze(in, 0);
  }
  if (added != 0) {
    note_read_end(s, ENOMEM);  // those bytes are lost: the stream cannot go on
  } else if (limit != 0 && got - n >= limit) {
    s.io->pause_reading(s);  // at the input's limit, as on_socket_readable does
  }
  return n;
}

// Nothing (more) to read now: the op is done only if the stream has ended or failed.
bool read_ended(stream_state& s, stream_op& op) noexcept {
  if (!s.side[reading].error) return false;
  type_of(op.kind).interrupt(s, op, s.side[reading].error);
  return true;
}

std::size_t input_needed(const stream_op& op) noexcept {
  switch (op.kind) {
    case op_kind::read_until:
      return static_cast<const string_op&>(op).max;
    case op_kind::read_line: {
      const std::size_t max = static_cast<const read_line_op&>(op).max;
      return max > SIZE_MAX - 2 ? max : max + 2;  // and its CR LF
    }
    case op_kind::peek:
      return op.size;
    case op_kind::read_frame:
      return 10;  // its header, whole (a varint's longest); the payload is taken as it comes
    default:
      return 0;
  }
}

std::size_t input_limit(const stream_state& s) noexcept {
  const stream_op* op = s.side[reading].op;
  return s.read_high == 0 || !op ? s.read_high : std::max(s.read_high, input_needed(*op));
}

void grow_input(stream_state& s, stream_op& op) {
  const std::size_t need = input_needed(op);
  if (s.read_high != 0 && need > s.read_high) s.io->limit_input(s, need);
}
void restore_input(stream_state& s, stream_op& op) noexcept {
  if (s.read_high != 0 && input_needed(op) > s.read_high) s.io->limit_input(s, s.read_high);
}

namespace {

bool perform_read_some(stream_state& s, stream_op& op) noexcept {
  if (op.size == 0) return true;  // only a zero-size read returns 0
  op.done = take(s, op.data, op.size, input_length(s));
  return op.done > 0 || read_ended(s, op);
}

// Into a string: the room for the bytes (what the input buffer holds, or else what one socket
// read may bring, and at most max, which may well be npos: "whatever is there") is made only
// once they are there, and given back when the socket had none after all: a waiting read
// holds no buffer.
bool perform_read_some_string(stream_state& s, stream_op& op) noexcept {
  string_op& so = as_string(op);
  if (so.max == 0) return true;
  const std::size_t buffered = input_length(s);
  if (buffered == 0 && !socket_may_hold_more(s, 0)) return read_ended(s, op);
  constexpr std::size_t socket_read_room = 64 << 10;
  const std::size_t room = std::min(
      {buffered > 0 ? buffered : socket_read_room, so.max, so.line->max_size() - so.line->size()});
  try {
    so.base = so.line->size();
    so.line->resize(so.base + room);
  } catch (const std::exception&) {
    op.ec = std::make_error_code(std::errc::not_enough_memory);
    return true;
  }
  op.data = reinterpret_cast<std::byte*>(so.line->data()) + so.base;
  op.size = room;
  op.done = take(s, op.data, op.size, buffered);
  if (op.done > 0) return true;  // await_resume cuts the string to what was read
  so.line->resize(so.base);
  op.data = nullptr;
  op.size = 0;
  return read_ended(s, op);
}

bool perform_read_exactly(stream_state& s, stream_op& op) noexcept {
  op.done += take(s, op.data + op.done, op.size - op.done, input_length(s));
  return op.done == op.size || read_ended(s, op);
}

// A read_exactly that stops early gives back what it took, so no byte is lost.
void interrupt_read_exactly(stream_state& s, stream_op& op, std::error_code ec) noexcept {
  if (op.done > 0) {
    if (!buffers(s) || evbuffer_prepend(input(s), op.data, op.done) != 0) {
      ec = std::make_error_code(std::errc::not_enough_memory);
    }
    op.done = 0;
  }
  op.ec = ec;
}

// Searches the input buffer for the delimiter, past what earlier tries searched already;
// true once the op is done (the frame found, or the limit reached).
bool find_frame(stream_state& s, string_op& so) noexcept {
  evbuffer* in = input(s);
  const std::size_t len = evbuffer_get_length(in);
  const std::size_t dlen = so.delim.size();
  if (len >= dlen && len > so.scanned) {
    evbuffer_ptr start;
    evbuffer_ptr_set(in, &start, so.scanned, EVBUFFER_PTR_SET);
    const evbuffer_ptr found = evbuffer_search(in, so.delim.data(), dlen, &start);
    if (found.pos >= 0) {
      const std::size_t n = static_cast<std::size_t>(found.pos) + dlen;
      if (n > so.max) {
        so.ec = errc::limit_exceeded;
        return true;
      }
      const std::size_t old = so.line->size();
      so.line->resize(old + n);
      evbuffer_remove(in, so.line->data() + old, n);
      so.done = n;
      return true;
    }
    so.scanned = len - dlen + 1;
  }
  if (len >= so.max) {
    so.ec = errc::limit_exceeded;
    return true;
  }
  return false;
}

// Frames are searched for in the input buffer, which a plain socket fills by one chunk here
// when it may hold more.
bool perform_read_until(stream_state& s, stream_op& op) noexcept {
  string_op& so = as_string(op);
  if (so.delim.empty()) {
    op.ec = std::make_error_code(std::errc::invalid_argument);
    return true;
  }
  if (!buffers(s)) {  // frames are searched for in the input buffer
    op.ec = std::make_error_code(std::errc::not_enough_memory);
    return true;
  }
  if (find_frame(s, so)) return true;
  if (socket_may_hold_more(s, input_length(s)) && fill_input(s) > 0 && find_frame(s, so)) {
    return true;
  }
  return read_ended(s, op);
}

}  // namespace

const op_type read_some_type{
    {"read_some", describe_stream_op}, reading, perform_read_some, fail, nullptr, nullptr};
const op_type read_some_string_type{
    {"read_some", describe_stream_op}, reading, perform_read_some_string, fail, nullptr, nullptr};
const op_type read_exactly_type{{"read_exactly", describe_stream_op},
                                reading,
                                perform_read_exactly,
                                interrupt_read_exactly,
                                nullptr,
                                nullptr};
const op_type read_until_type{{"read_until", describe_stream_op},
                              reading,
                              perform_read_until,
                              fail,
                              grow_input,
                              restore_input};

}  // namespace evco::detail
