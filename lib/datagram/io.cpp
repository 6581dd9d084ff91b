// How each datagram op makes progress: one non-blocking recvfrom, recvmmsg, sendto or
// sendmmsg straight between the socket and the op's buffers.

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "state.hpp"

namespace evco::detail {

namespace {

// MSG_TRUNC makes Linux return a datagram's real length even when it did not fit: never
// silently cut.
constexpr int receive_flags = MSG_DONTWAIT | MSG_TRUNC;
// MSG_NOSIGNAL: a send never raises SIGPIPE (UDP would not, but the rule is kept).
constexpr int send_flags = MSG_DONTWAIT | MSG_NOSIGNAL;

bool would_block(int e) noexcept {
  return e == EAGAIN || e == EWOULDBLOCK;
}

// After a syscall failed with `e`: false (wait) when the socket would block, else the op is
// done with that error. A receive that found nothing stops trying before it waits.
bool failed(datagram_state& s, datagram_op& op, int e) noexcept {
  if (would_block(e)) {
    if (direction_of(op.kind) == receiving) s.speculate = false;
    return false;
  }
  op.ec = system_error(e);
  return true;
}

// recvfrom and sendto rather than recvmsg and sendmsg for one datagram: the kernel then has
// no msghdr and iovec to copy in and out, which saves ~200 ns a call here (bench/README.md).
bool receive_one(datagram_state& s, datagram_op& op) noexcept {
  // The sender is asked for by every receive: last_truncated() reports it.
  socklen_t len = sizeof op.addr;
  ssize_t n;
  while ((n = ::recvfrom(s.fd, op.data, op.size, receive_flags,
                         reinterpret_cast<sockaddr*>(&op.addr), &len)) < 0 &&
         errno == EINTR) {
  }
  if (n < 0) return failed(s, op, errno);
  op.done = static_cast<std::size_t>(n);
  op.addr_len = len;
  if (op.done > op.size) {  // MSG_TRUNC: the real length
    op.ec = errc::message_truncated;
    auto from = endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&op.addr), op.addr_len);
    s.truncated = received{op.done, from ? from.value() : endpoint{}};
  }
  return true;
}

// The message headers of a batch, on the stack: batch_max of each.
struct batch_headers {
  mmsghdr msgs[batch_max];
  iovec iov[batch_max];
  sockaddr_in6 names[batch_max];
};

bool receive_batch(datagram_state& s, datagram_op& op) noexcept {
  auto* slots = static_cast<datagram_slot*>(op.data);
  const std::size_t n = std::min(op.size, batch_max);
  if (n == 0) return true;
  batch_headers h;
  for (std::size_t i = 0; i < n; ++i) {
    h.iov[i] = {slots[i].buffer.data(), slots[i].buffer.size()};
    h.msgs[i] = {};
    h.msgs[i].msg_hdr.msg_name = &h.names[i];
    h.msgs[i].msg_hdr.msg_namelen = sizeof h.names[i];
    h.msgs[i].msg_hdr.msg_iov = &h.iov[i];
    h.msgs[i].msg_hdr.msg_iovlen = 1;
  }
  int got;
  while ((got = ::recvmmsg(s.fd, h.msgs, static_cast<unsigned>(n), receive_flags, nullptr)) < 0 &&
         errno == EINTR) {
  }
  if (got < 0) return failed(s, op, errno);
  for (int i = 0; i < got; ++i) {
    const mmsghdr& m = h.msgs[i];
    slots[i].size = m.msg_len;  // the real length (MSG_TRUNC)
    auto from = endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&h.names[i]),
                                        m.msg_hdr.msg_namelen);
    slots[i].from = from ? from.value() : endpoint{};
  }
  op.done = static_cast<std::size_t>(got);
  return true;
}

bool send_one(datagram_state& s, datagram_op& op) noexcept {
  const bool addressed = op.kind == datagram_kind::send_to;
  const auto* to = addressed ? reinterpret_cast<const sockaddr*>(&op.addr) : nullptr;
  ssize_t n;
  while ((n = ::sendto(s.fd, op.data, op.size, send_flags, to, addressed ? op.addr_len : 0)) < 0 &&
         errno == EINTR) {
  }
  if (n < 0) return failed(s, op, errno);
  op.done = static_cast<std::size_t>(n);  // all of it: a datagram goes whole or not at all
  return true;
}

bool send_batch(datagram_state& s, datagram_op& op) noexcept {
  const auto* out = static_cast<const outgoing_datagram*>(op.data);
  const std::size_t n = std::min(op.size, batch_max);
  if (n == 0) return true;
  batch_headers h;
  for (std::size_t i = 0; i < n; ++i) {
    h.iov[i] = {const_cast<std::byte*>(out[i].data.data()), out[i].data.size()};
    h.msgs[i] = {};
    if (const endpoint* to = out[i].to) {
      h.msgs[i].msg_hdr.msg_name = const_cast<sockaddr*>(to->data());
      h.msgs[i].msg_hdr.msg_namelen = to->size();
    }
    h.msgs[i].msg_hdr.msg_iov = &h.iov[i];
    h.msgs[i].msg_hdr.msg_iovlen = 1;
  }
  int sent;
  while ((sent = ::sendmmsg(s.fd, h.msgs, static_cast<unsigned>(n), send_flags)) < 0 &&
         errno == EINTR) {
  }
  if (sent < 0) return failed(s, op, errno);
  op.done = static_cast<std::size_t>(sent);
  return true;
}

}  // namespace

bool perform(datagram_state& s, datagram_op& op) noexcept {
  switch (op.kind) {
    case datagram_kind::receive_from:
    case datagram_kind::receive:
      return receive_one(s, op);
    case datagram_kind::receive_batch:
      return receive_batch(s, op);
    case datagram_kind::send_to:
    case datagram_kind::send:
      return send_one(s, op);
    case datagram_kind::send_batch:
      return send_batch(s, op);
  }
  return true;
}

}  // namespace evco::detail
