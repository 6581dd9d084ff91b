// Making, connecting and closing a datagram socket, and its queries.

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "state.hpp"

namespace evco {

namespace {

bool is_ip(int family) noexcept {
  return family == AF_INET || family == AF_INET6;
}

bool set_option(int fd, int level, int name, int value) noexcept {
  return setsockopt(fd, level, name, &value, sizeof value) == 0;
}

bool apply(int fd, int family, const datagram_options& o) noexcept {
  if (o.reuse_address && !set_option(fd, SOL_SOCKET, SO_REUSEADDR, 1)) return false;
  if (o.reuse_port && !set_option(fd, SOL_SOCKET, SO_REUSEPORT, 1)) return false;
  if (family == AF_INET6 && !set_option(fd, IPPROTO_IPV6, IPV6_V6ONLY, o.v6_only ? 1 : 0)) {
    return false;
  }
  if (o.receive_buffer > 0 && !set_option(fd, SOL_SOCKET, SO_RCVBUF, o.receive_buffer)) {
    return false;
  }
  return o.send_buffer <= 0 || set_option(fd, SOL_SOCKET, SO_SNDBUF, o.send_buffer);
}

// A non-blocking UDP socket of `family` with `o` applied, bound to `at` if given.
result<int> make_socket(int family, const datagram_options& o, const endpoint* at) {
  if (!is_ip(family)) return std::make_error_code(std::errc::address_family_not_supported);
  if (o.receive_buffer < 0 || o.send_buffer < 0) {
    return std::make_error_code(std::errc::invalid_argument);
  }
  const int fd = ::socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return detail::system_error(errno);
  if (!apply(fd, family, o) || (at && ::bind(fd, at->data(), at->size()) != 0)) {
    const int e = errno;
    ::close(fd);
    return detail::system_error(e);
  }
  return fd;
}

result<endpoint> socket_name(const detail::datagram_state* s, bool peer) {
  if (!s) return errc::closed;
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  auto* sa = reinterpret_cast<sockaddr*>(&ss);
  if ((peer ? getpeername(s->fd, sa, &len) : getsockname(s->fd, sa, &len)) != 0) {
    return detail::system_error(errno);
  }
  return endpoint::from_sockaddr(sa, len);
}

// Wraps `fd` (closed on failure); null when out of memory.
detail::datagram_state* make_state(loop& lp, int fd) noexcept {
  auto* s = new (std::nothrow) detail::datagram_state(lp, fd);
  if (!s) {
    ::close(fd);
    return nullptr;
  }
  try {
    detail::make_events(*s);
  } catch (const std::bad_alloc&) {
    delete s;  // closes fd
    return nullptr;
  }
  return s;
}

}  // namespace

datagram& datagram::operator=(datagram&& o) noexcept {
  if (this != &o) {
    close();
    s_ = std::exchange(o.s_, nullptr);
  }
  return *this;
}

result<datagram> datagram::bind(loop& lp, const endpoint& ep, datagram_options o) {
  return make(lp, ep.family(), o, &ep);
}

result<datagram> datagram::open(loop& lp, int family, datagram_options o) {
  return make(lp, family, o, nullptr);
}

result<datagram> datagram::make(loop& lp, int family, const datagram_options& o,
                                const endpoint* at) {
  auto fd = make_socket(family, o, at);
  if (!fd) return fd.error();
  datagram d;
  d.s_ = make_state(lp, fd.value());
  if (!d.s_) return std::make_error_code(std::errc::not_enough_memory);
  return d;
}

result<void> datagram::connect(const endpoint& peer) {
  if (!s_) return errc::closed;
  if (::connect(s_->fd, peer.data(), peer.size()) != 0) return detail::system_error(errno);
  return success();
}

void datagram::close() noexcept {
  detail::datagram_state* s = std::exchange(s_, nullptr);
  if (!s) return;
  for (detail::datagram_side& side : s->side) {
    if (detail::datagram_op* op = side.op) {
      op->ec = errc::closed;
      detail::unpark(*s, *op);
      detail::loop_access::schedule(*op->lp, *op);
    }
  }
  delete s;
}

std::optional<received> datagram::last_truncated() const noexcept {
  if (!s_) return std::nullopt;
  return s_->truncated;
}

result<endpoint> datagram::local_endpoint() const {
  return socket_name(s_, false);
}

result<endpoint> datagram::remote_endpoint() const {
  return socket_name(s_, true);
}

int datagram::native_handle() const noexcept {
  return s_ ? s_->fd : -1;
}

}  // namespace evco
