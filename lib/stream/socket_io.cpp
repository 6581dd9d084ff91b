// The plain-socket transport: read and written through events of its own, straight between
// the socket and the ops' buffers where it can (see read.cpp and write.cpp).

#include <unistd.h>

#include "internal.hpp"

namespace evco::detail {

namespace {

void pause_reading(stream_state& s) noexcept {
  if (s.read_paused) return;
  event_del(s.socket_read.get());
  s.read_paused = true;
}

void resume_reading(stream_state& s) noexcept {
  if (!s.read_paused || s.side[reading].error || s.input_viewed) return;
  event_add(s.socket_read.get(), nullptr);
  s.read_paused = false;
}

void limit_input(stream_state& s, std::size_t high) noexcept {
  if (high == 0 || input_length(s) < high) resume_reading(s);
}

// The socket has bytes, or its end: a parked read takes them its own way (straight into its
// buffer where it can); with nobody waiting they are read ahead, up to the read limit.
void on_socket_readable(evutil_socket_t, short, void* arg) {
  auto& s = *static_cast<stream_state*>(arg);
  stream_op* op = s.side[reading].op;
  bool done = false;
  if (op) {
    s.readable = true;
    done = type_of(op->kind).perform(s, *op);
    s.readable = false;
  } else {
    fill_input(s);
  }
  // A socket at its end, or failed, stays readable for ever: stop watching it.
  if (s.side[reading].error) {
    pause_reading(s);
  } else if (!op && s.read_high != 0 && input_length(s) >= s.read_high) {
    pause_reading(s);
  }
  if (done) finish_now(s, *op);
}

void on_socket_writable(evutil_socket_t, short, void* arg) {
  auto& s = *static_cast<stream_state*>(arg);
  if (stream_op* op = s.side[writing].op; op && type_of(op->kind).perform(s, *op)) {
    finish_now(s, *op);
  }
}

}  // namespace

const transport socket_transport{true,          resume_reading, limit_input,
                                 pause_reading, shut_socket,    linger_close};

std::size_t fill_input(stream_state& s) noexcept {
  constexpr std::size_t chunk = 64 << 10;
  if (!buffers(s)) {
    note_read_end(s, ENOMEM);
    return 0;
  }
  evbuffer* in = input(s);
  // No further than the input's limit (what a waiting op needs counts: see input_limit), so
  // that the read limit bounds what is buffered, not what one read brings past it.
  const std::size_t limit = input_limit(s), have = evbuffer_get_length(in);
  const std::size_t want = limit == 0 ? chunk : limit > have ? std::min(chunk, limit - have) : 0;
  if (want == 0) return 0;
  // A bufferevent freezes the end of its input buffer; it unfreezes it around its own reads.
  evbuffer_unfreeze(in, 0);
  evbuffer_iovec vec;
  std::size_t n = 0;
  if (evbuffer_reserve_space(in, static_cast<ev_ssize_t>(want), &vec, 1) == 1) {
    n = read_direct(s, static_cast<std::byte*>(vec.iov_base), std::min(vec.iov_len, want));
    vec.iov_len = n;
    if (n > 0) evbuffer_commit_space(in, &vec, 1);
  } else {
    note_read_end(s, ENOMEM);
  }
  evbuffer_freeze(in, 0);
  return n;
}

bool wait_writable(stream_state& s) noexcept {
  if (s.write_direct) return true;
  if (!s.socket_write) {
    s.socket_write.reset(
        event_new(s.lp->native_handle(), fd_of(s), EV_WRITE | EV_PERSIST, on_socket_writable, &s));
    if (!s.socket_write) return false;
  }
  event_add(s.socket_write.get(), nullptr);
  s.write_direct = true;
  return true;
}

// No bufferevent yet: it is made when the stream first needs a buffer (see buffers()). Until
// then the stream owns the socket itself.
result<stream> make_socket_stream(loop& lp, int fd) {
  stream st = attach(lp, nullptr, socket_transport);
  stream_state& s = *st.s_;
  s.fd = fd;
  s.socket_read.reset(
      event_new(lp.native_handle(), fd, EV_READ | EV_PERSIST, on_socket_readable, &s));
  // The first event on the fd makes libevent's entry for it, which can fail: then nothing
  // would ever wake a reader.
  if (!s.socket_read || event_add(s.socket_read.get(), nullptr) != 0) {
    return std::make_error_code(std::errc::not_enough_memory);
  }
  return st;
}

}  // namespace evco::detail
