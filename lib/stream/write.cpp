// The write ops: write, drain, shutdown. A write goes straight to the socket while nothing is
// queued (plain sockets), and into the output buffer otherwise.

#include "internal.hpp"

namespace evco::detail {

namespace {

// A frame's header goes before its payload (write_frame); `done` counts both.
std::size_t header_size(const stream_op& op) noexcept {
  return op.kind == op_kind::write_frame ? static_cast<const write_frame_op&>(op).header.size : 0;
}

bool all_sent(const stream_op& op) noexcept {
  return op.done == op.size + header_size(op);
}

// What is left to send of the header, and of the data.
std::span<const std::byte> header_rest(const stream_op& op) noexcept {
  const std::size_t n = header_size(op);
  if (op.done >= n) return {};
  return std::span(static_cast<const write_frame_op&>(op).header.bytes)
      .subspan(op.done, n - op.done);
}
std::span<const std::byte> data_rest(const stream_op& op) noexcept {
  const std::size_t sent = op.done - std::min(op.done, header_size(op));
  return {op.data + sent, op.size - sent};
}

// Copies what the op has not sent yet into the output buffer, all or nothing; false when out
// of memory.
bool queue_rest(stream_state& s, stream_op& op) noexcept {
  if (!buffers(s)) return false;
  evbuffer* out = output(s);
  const auto head = header_rest(op);
  const auto data = data_rest(op);
  if (!head.empty() && (evbuffer_expand(out, head.size() + data.size()) != 0 ||
                        evbuffer_add(out, head.data(), head.size()) != 0)) {
    return false;
  }
  if (queue_output(s, data.data(), data.size()) != 0)
    return false;  // small chains under TLS limits
  op.done += head.size() + data.size();
  return true;
}

// A deadline, stop request or close ends a parked write. One the kernel took part of is never
// torn: the rest is queued, as if it had not had to wait, and the write succeeds.
void interrupt_write(stream_state& s, stream_op& op, std::error_code ec) noexcept {
  if (op.done > 0 && !all_sent(op) && !s.side[writing].error) {
    if (queue_rest(s, op)) return;
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

// One syscall for what is left: send() of the data, or a frame's header and payload together.
ssize_t send_rest(int fd, const stream_op& op) noexcept {
  constexpr int flags = MSG_NOSIGNAL | MSG_DONTWAIT;
  const auto data = data_rest(op);
  const auto head = header_rest(op);
  if (head.empty()) return ::send(fd, data.data(), data.size(), flags);
  iovec iov[2] = {{const_cast<std::byte*>(head.data()), head.size()},
                  {const_cast<std::byte*>(data.data()), data.size()}};
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = 2;
  return ::sendmsg(fd, &msg, flags);
}

// Nothing queued on a plain socket: hands the bytes to the kernel now, from the caller's
// buffer. bufferevent would copy them, enable EPOLLOUT, wait a loop turn and disable it
// again. What the kernel does not take yet is sent from here as well once the socket is
// writable (the parked write waits on socket_write). MSG_NOSIGNAL: a closed peer is EPIPE.
bool write_direct(stream_state& s, stream_op& op) noexcept {
  const ssize_t n = send_rest(s.fd, op);
  if (n >= 0) {
    op.done += static_cast<std::size_t>(n);
  } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
    s.side[writing].error = system_error(errno);
    op.ec = s.side[writing].error;
    return true;
  }
  if (all_sent(op)) return true;
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
  const std::size_t queued = output_length(s);
  if (queued == 0 && s.io->direct) return all_sent(op) || write_direct(s, op);
  if (s.write_high != 0 && queued > s.write_high) return false;
  if (!queue_rest(s, op)) op.ec = std::make_error_code(std::errc::not_enough_memory);
  return true;
}
// A frame too large for its header or its maximum fails before a byte leaves.
bool perform_write_frame(stream_state& s, stream_op& op) noexcept {
  if (static_cast<write_frame_op&>(op).too_large) {
    op.ec = errc::limit_exceeded;
    return true;
  }
  return perform_write(s, op);
}

// A direct write the kernel could not take at once waits for the socket. (One over the
// fairness budget waits for the retry, which comes after the poll's socket callbacks, so that
// a reader on the other end of a loopback connection goes first.)
void write_parked(stream_state& s, stream_op& op) {
  if (s.io->direct && output_length(s) == 0 && op.state != op_state::yielding &&
      !wait_writable(s)) {
    throw std::bad_alloc();
  }
}

bool perform_drain(stream_state& s, stream_op& op) noexcept {
  return write_ended(s, op) || output_length(s) == 0;
}

// drain and shutdown wait for the output buffer to empty: the write callback, only then.
void wait_for_empty(stream_state& s, stream_op&) {
  if (s.bev) bufferevent_setwatermark(s.bev, EV_WRITE, 0, 0);
}
void restore_watermark(stream_state& s, stream_op&) noexcept {
  if (s.bev) bufferevent_setwatermark(s.bev, EV_WRITE, s.write_low, 0);
}

bool perform_shutdown(stream_state& s, stream_op& op) noexcept {
  if (write_ended(s, op)) return true;
  if (output_length(s) != 0) return false;
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
  if (output_length(s) > 0) return wait_for_empty(s, op);
  // A close_notify the socket could not take (otherwise the shutdown parked only for the
  // fairness budget, and the retry tries it again).
  if (s.tls && !wait_writable(s)) throw std::bad_alloc();
}

}  // namespace

const op_type write_type{
    {"write", describe_stream_op}, writing, perform_write, interrupt_write, write_parked, nullptr};
const op_type write_frame_type{{"write_frame", describe_stream_op},
                               writing,
                               perform_write_frame,
                               interrupt_write,
                               write_parked,
                               nullptr};
const op_type drain_type{
    {"drain", describe_stream_op}, writing, perform_drain, fail, wait_for_empty, restore_watermark};
const op_type shutdown_type{{"shutdown", describe_stream_op},
                            writing,
                            perform_shutdown,
                            fail,
                            shutdown_parked,
                            restore_watermark};

}  // namespace evco::detail
