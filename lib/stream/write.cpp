// The write ops: write, drain, shutdown. A write goes straight to the socket while nothing is
// queued (plain sockets), and into the output buffer otherwise.

#include "internal.hpp"

namespace evco::detail {

namespace {

// A deadline, stop request or close ends a parked write. One the kernel took part of is never
// torn: the rest is queued, as if it had not had to wait, and the write succeeds.
void interrupt_write(stream_state& s, stream_op& op, std::error_code ec) noexcept {
  if (op.done > 0 && op.done < op.size && !s.side[writing].error) {
    if (queue_output(s, op.data + op.done, op.size - op.done) == 0) {
      op.done = op.size;
      return;
    }
    ec = std::make_error_code(std::errc::not_enough_memory);
  }
  op.ec = ec;
}

// Every write-side op fails at once on a failed socket, or after shutdown.
bool write_ended(stream_state& s, stream_op& op) noexcept {
  if (s.side[writing].error) {
    op.ec = s.side[writing].error;
    return true;
  }
  if (s.write_shut) {
    op.ec = errc::closed;
    return true;
  }
  return false;
}

// Nothing queued on a plain socket: hands the bytes to the kernel now, from the caller's
// buffer. bufferevent would copy them, enable EPOLLOUT, wait a loop turn and disable it
// again. What the kernel does not take yet is sent from here as well once the socket is
// writable (the parked write waits on socket_write). MSG_NOSIGNAL: a closed peer is EPIPE.
bool write_direct(stream_state& s, stream_op& op) noexcept {
  const ssize_t n = ::send(s.fd, op.data + op.done, op.size - op.done, MSG_NOSIGNAL | MSG_DONTWAIT);
  if (n >= 0) {
    op.done += static_cast<std::size_t>(n);
  } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
    s.side[writing].error = system_error(errno);
    op.ec = s.side[writing].error;
    return true;
  }
  if (op.done == op.size) return true;
  // A parked write (one that waited at the watermark until the queued output drained) now
  // waits on the socket itself.
  if (op.state != op_state::idle && !wait_writable(s)) {
    interrupt_write(s, op, std::make_error_code(std::errc::not_enough_memory));
    return true;
  }
  return false;
}

bool perform_write(stream_state& s, stream_op& op) noexcept {
  if (write_ended(s, op)) return true;
  const std::size_t queued = evbuffer_get_length(output(s));
  if (queued == 0 && s.io->direct) return op.done == op.size || write_direct(s, op);
  if (s.write_high != 0 && queued > s.write_high) return false;
  if (queue_output(s, op.data + op.done, op.size - op.done) != 0) {
    op.ec = std::make_error_code(std::errc::not_enough_memory);
  } else {
    op.done = op.size;
  }
  return true;
}

// A direct write the kernel could not take at once waits for the socket. (One over the
// fairness budget waits for the retry, which comes after the poll's socket callbacks, so that
// a reader on the other end of a loopback connection goes first.)
void write_parked(stream_state& s, stream_op& op) {
  if (s.io->direct && evbuffer_get_length(output(s)) == 0 && op.state != op_state::yielding &&
      !wait_writable(s)) {
    throw std::bad_alloc();
  }
}

bool perform_drain(stream_state& s, stream_op& op) noexcept {
  return write_ended(s, op) || evbuffer_get_length(output(s)) == 0;
}

// drain and shutdown wait for the output buffer to empty: the write callback, only then.
void wait_for_empty(stream_state& s, stream_op&) {
  bufferevent_setwatermark(s.bev, EV_WRITE, 0, 0);
}
void restore_watermark(stream_state& s, stream_op&) noexcept {
  bufferevent_setwatermark(s.bev, EV_WRITE, s.write_low, 0);
}

bool perform_shutdown(stream_state& s, stream_op& op) noexcept {
  if (write_ended(s, op)) return true;
  if (evbuffer_get_length(output(s)) != 0) return false;
  // TLS ends its direction with close_notify before the FIN. When the socket is too full to
  // take it, wait until it is writable (parked: socket_write) and try again.
  if (s.tls && !s.tls->send_close_notify(s.bev)) {
    if (op.state != op_state::idle && !wait_writable(s)) {
      op.ec = std::make_error_code(std::errc::not_enough_memory);
      return true;
    }
    return false;
  }
  op.ec = s.io->shut_writing(s);
  s.write_shut = true;
  return true;
}

void shutdown_parked(stream_state& s, stream_op& op) {
  if (evbuffer_get_length(output(s)) > 0) return wait_for_empty(s, op);
  // A close_notify the socket could not take (otherwise the shutdown parked only for the
  // fairness budget, and the retry tries it again).
  if (s.tls && !wait_writable(s)) throw std::bad_alloc();
}

}  // namespace

const op_type write_type{
    {"write", describe_stream_op}, writing, perform_write, interrupt_write, write_parked, nullptr};
const op_type drain_type{
    {"drain", describe_stream_op}, writing, perform_drain, fail, wait_for_empty, restore_watermark};
const op_type shutdown_type{{"shutdown", describe_stream_op},
                            writing,
                            perform_shutdown,
                            fail,
                            shutdown_parked,
                            restore_watermark};

}  // namespace evco::detail
