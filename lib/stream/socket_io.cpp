// Plain sockets, read and written through events of their own.

#include <unistd.h>

#include "internal.hpp"

namespace evco::detail {

namespace {

void pause_reading(stream_state& s) noexcept {
  if (s.read_paused) return;
  event_del(s.socket_read.get());
  s.read_paused = true;
}

}  // namespace

void resume_reading(stream_state& s) noexcept {
  if (!s.read_paused || s.read_error) return;
  event_add(s.socket_read.get(), nullptr);
  s.read_paused = false;
}

namespace {

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

}  // namespace

void on_socket_writable(evutil_socket_t, short, void* arg) {
  auto& s = *static_cast<stream_state*>(arg);
  stream_op* op = s.writer;
  if (!op) return;
  if (try_write(s, *op)) finish_now(s, *op);
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

}  // namespace evco::detail
