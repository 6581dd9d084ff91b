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
  if (high == 0 || evbuffer_get_length(input(s)) < high) resume_reading(s);
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
  } else if (!op && s.read_high != 0 && evbuffer_get_length(input(s)) >= s.read_high) {
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
  evbuffer* in = input(s);
  // A bufferevent freezes the end of its input buffer; it unfreezes it around its own reads.
  evbuffer_unfreeze(in, 0);
  evbuffer_iovec vec;
  std::size_t n = 0;
  if (evbuffer_reserve_space(in, chunk, &vec, 1) == 1) {
    n = read_direct(s, static_cast<std::byte*>(vec.iov_base), vec.iov_len);
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
    s.socket_write.reset(event_new(s.lp->native_handle(), bufferevent_getfd(s.bev),
                                   EV_WRITE | EV_PERSIST, on_socket_writable, &s));
    if (!s.socket_write) return false;
  }
  event_add(s.socket_write.get(), nullptr);
  s.write_direct = true;
  return true;
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
  stream st = attach(lp, bev, socket_transport);
  stream_state& s = *st.s_;
  s.fd = fd;
  s.socket_read.reset(
      event_new(lp.native_handle(), fd, EV_READ | EV_PERSIST, on_socket_readable, &s));
  if (!s.socket_read) return std::make_error_code(std::errc::not_enough_memory);
  event_add(s.socket_read.get(), nullptr);
  return st;
}

}  // namespace evco::detail
