// Writing straight to the socket or into the output buffer.

#include "internal.hpp"

namespace evco::detail {

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
        if (op.state != op_state::idle && !wait_writable(s)) {
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
        if (op.state != op_state::idle && !wait_writable(s)) {
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

}  // namespace evco::detail
