#include "evco/endpoint.hpp"

#include <arpa/inet.h>
#include <sys/un.h>

#include <charconv>
#include <cstddef>
#include <cstring>

namespace evco {

namespace {

constexpr socklen_t path_offset = offsetof(sockaddr_un, sun_path);
// A path needs its terminating NUL within sun_path (Linux takes one without, but nobody else
// does); an abstract name has the leading NUL instead.
constexpr std::size_t max_unix_name = sizeof(sockaddr_un::sun_path) - 1;
constexpr std::string_view unix_prefix = "unix:";

}  // namespace

endpoint::endpoint() noexcept {
  std::memset(&addr_, 0, sizeof addr_);
  addr_.ss_family = AF_INET;
}

endpoint endpoint::v4_loopback(std::uint16_t port) noexcept {
  endpoint e;
  auto& sin = reinterpret_cast<sockaddr_in&>(e.addr_);
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sin.sin_port = htons(port);
  return e;
}

endpoint endpoint::v6_loopback(std::uint16_t port) noexcept {
  endpoint e;
  auto& sin6 = reinterpret_cast<sockaddr_in6&>(e.addr_);
  sin6.sin6_family = AF_INET6;
  sin6.sin6_addr = in6addr_loopback;
  sin6.sin6_port = htons(port);
  return e;
}

namespace {

// inet_pton on a NUL-terminated copy of `text`. A NUL inside `text` is no address: inet_pton
// would stop there and accept the part before it ("127.0.0.1\0junk").
bool parse_ip(std::string_view text, int family, void* out) noexcept {
  char buf[INET6_ADDRSTRLEN + 1];
  if (text.empty() || text.size() >= sizeof buf || text.find('\0') != std::string_view::npos) {
    return false;
  }
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  return inet_pton(family, buf, out) == 1;
}

bool is_ipv6(std::string_view text) noexcept {
  in6_addr a;
  return parse_ip(text, AF_INET6, &a);
}

}  // namespace

result<endpoint> endpoint::unix_path(std::string_view path) {
  const bool abstract = !path.empty() && path.front() == '@';
  const std::string_view name = abstract ? path.substr(1) : path;
  if (name.empty() || name.find('\0') != std::string_view::npos) {
    return std::make_error_code(std::errc::invalid_argument);
  }
  if (name.size() > max_unix_name) return errc::endpoint_path_too_long;
  endpoint e;
  auto& sun = reinterpret_cast<sockaddr_un&>(e.addr_);
  sun.sun_family = AF_UNIX;
  std::memcpy(sun.sun_path + (abstract ? 1 : 0), name.data(), name.size());
  // An abstract name is exactly its bytes after the leading NUL; a path ends with a NUL.
  e.unix_size_ = static_cast<socklen_t>(path_offset + 1 + name.size());
  return e;
}

std::string_view endpoint::unix_bytes() const noexcept {
  const auto& sun = reinterpret_cast<const sockaddr_un&>(addr_);
  std::string_view bytes(sun.sun_path, unix_size_ - path_offset);
  if (!bytes.empty() && bytes.front() != '\0') bytes = bytes.substr(0, bytes.find('\0'));
  return bytes;
}

result<endpoint> endpoint::parse(std::string_view address, std::uint16_t port) {
  if (address.starts_with(unix_prefix)) return unix_path(address.substr(unix_prefix.size()));
  if (address.size() >= 2 && address.front() == '[' && address.back() == ']') {
    address = address.substr(1, address.size() - 2);
  }
  endpoint e;
  auto& sin = reinterpret_cast<sockaddr_in&>(e.addr_);
  auto& sin6 = reinterpret_cast<sockaddr_in6&>(e.addr_);
  if (parse_ip(address, AF_INET, &sin.sin_addr)) {
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    return e;
  }
  std::memset(&e.addr_, 0, sizeof e.addr_);
  if (parse_ip(address, AF_INET6, &sin6.sin6_addr)) {
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(port);
    return e;
  }
  return errc::endpoint_not_numeric;
}

result<endpoint> endpoint::parse(std::string_view text) {
  if (text.starts_with(unix_prefix)) return unix_path(text.substr(unix_prefix.size()));
  if (text.empty()) return errc::endpoint_no_port;
  std::string_view host = text;
  std::string_view port_text;
  bool has_port = false;
  if (text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos) return errc::endpoint_ipv6_unbracketed;
    host = text.substr(1, close - 1);
    const std::string_view rest = text.substr(close + 1);
    has_port = !rest.empty() && rest.front() == ':';
    if (has_port) port_text = rest.substr(1);
    if (!rest.empty() && !has_port) return errc::endpoint_no_port;  // "[::1]80"
  } else if (const auto colon = text.rfind(':'); colon != std::string_view::npos) {
    host = text.substr(0, colon);
    if (host.find(':') != std::string_view::npos) {
      // "::1:80" is ambiguous (it is also an IPv6 address), and "::1" has no port.
      if (is_ipv6(text) || is_ipv6(host)) return errc::endpoint_ipv6_unbracketed;
      return errc::endpoint_not_numeric;
    }
    has_port = true;
    port_text = text.substr(colon + 1);
  }
  // The address first: "localhost" needs connect(host, port), not a port.
  auto e = parse(host, 0);
  if (!e) return e;
  if (!has_port || port_text.empty()) return errc::endpoint_no_port;
  unsigned port = 0;
  const auto [end, ec] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc{} || end != port_text.data() + port_text.size() || port > 65535) {
    return errc::endpoint_bad_port;
  }
  e.value().set_port(static_cast<std::uint16_t>(port));
  return e;
}

result<endpoint> endpoint::from_sockaddr(const sockaddr* sa, socklen_t len) {
  // The family is read with memcpy: `sa` may point into a byte buffer, unaligned.
  constexpr socklen_t family_end = offsetof(sockaddr, sa_family) + sizeof(sa_family_t);
  if (sa == nullptr || len < family_end) {
    return std::make_error_code(std::errc::invalid_argument);
  }
  sa_family_t family;
  std::memcpy(&family, reinterpret_cast<const char*>(sa) + offsetof(sockaddr, sa_family),
              sizeof family);
  std::size_t need;
  if (family == AF_UNIX) {
    if (len > static_cast<socklen_t>(sizeof(sockaddr_un))) {
      return std::make_error_code(std::errc::invalid_argument);
    }
    endpoint e;
    std::memcpy(&e.addr_, sa, len);
    e.unix_size_ = len;
    // The kernel may count a path's NUL or not: keep one form, so that equal paths compare equal.
    if (const std::string_view bytes = e.unix_bytes(); !bytes.empty() && bytes.front() != '\0') {
      e.unix_size_ = static_cast<socklen_t>(path_offset + bytes.size() + 1);
    }
    return e;
  }
  if (family == AF_INET) {
    need = sizeof(sockaddr_in);
  } else if (family == AF_INET6) {
    need = sizeof(sockaddr_in6);
  } else {
    return std::make_error_code(std::errc::address_family_not_supported);
  }
  if (len < need) return std::make_error_code(std::errc::invalid_argument);  // truncated
  endpoint e;
  std::memcpy(&e.addr_, sa, need);
  return e;
}

std::uint16_t endpoint::port() const noexcept {
  if (is_unix()) return 0;
  if (is_v6()) return ntohs(reinterpret_cast<const sockaddr_in6&>(addr_).sin6_port);
  return ntohs(reinterpret_cast<const sockaddr_in&>(addr_).sin_port);
}

void endpoint::set_port(std::uint16_t p) noexcept {
  if (is_unix()) return;
  if (is_v6()) {
    reinterpret_cast<sockaddr_in6&>(addr_).sin6_port = htons(p);
  } else {
    reinterpret_cast<sockaddr_in&>(addr_).sin_port = htons(p);
  }
}

socklen_t endpoint::size() const noexcept {
  if (is_unix()) return unix_size_;
  return is_v6() ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
}

std::string endpoint::path() const {
  if (!is_unix()) return {};
  const std::string_view bytes = unix_bytes();
  if (bytes.empty() || bytes.front() != '\0') return std::string(bytes);
  // reserve + append: operator+ trips g++ 12's -Wrestrict false positive at -O3 (GCC PR 105329).
  std::string s;
  s.reserve(bytes.size());
  s += '@';
  s += bytes.substr(1);
  return s;
}

std::string endpoint::address() const {
  if (is_unix()) return path();
  char buf[INET6_ADDRSTRLEN] = {};
  if (is_v6()) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(addr_).sin6_addr, buf, sizeof buf);
  } else {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(addr_).sin_addr, buf, sizeof buf);
  }
  return buf;
}

std::string endpoint::to_string() const {
  // reserve + append: operator+ trips g++ 12's -Wrestrict false positive at -O3 (GCC PR 105329).
  if (is_unix()) {
    std::string s(unix_prefix);
    s += path();
    return s;
  }
  const std::string addr = address();
  std::string s;
  s.reserve(addr.size() + 8);
  if (is_v6()) s += '[';
  s += addr;
  if (is_v6()) s += ']';
  s += ':';
  s += std::to_string(port());
  return s;
}

bool operator==(const endpoint& a, const endpoint& b) noexcept {
  return (a <=> b) == 0;
}

// By family, then address (in network order, so 127.0.0.1 < 127.0.0.2), then port, then (IPv6)
// scope id: sorted endpoints group by host. IPv6 flow labels do not count. Unix endpoints by
// their bytes (abstract names, which start with NUL, first).
std::strong_ordering operator<=>(const endpoint& a, const endpoint& b) noexcept {
  if (auto c = a.family() <=> b.family(); c != 0) return c;
  if (a.is_unix()) return a.unix_bytes() <=> b.unix_bytes();
  const auto bytes = [](int c) {
    return c < 0 ? std::strong_ordering::less
                 : (c > 0 ? std::strong_ordering::greater : std::strong_ordering::equal);
  };
  if (a.is_v6()) {
    const auto& x = reinterpret_cast<const sockaddr_in6&>(*a.data());
    const auto& y = reinterpret_cast<const sockaddr_in6&>(*b.data());
    if (auto c = bytes(std::memcmp(&x.sin6_addr, &y.sin6_addr, sizeof x.sin6_addr)); c != 0) {
      return c;
    }
    if (auto c = a.port() <=> b.port(); c != 0) return c;
    return x.sin6_scope_id <=> y.sin6_scope_id;
  }
  const auto& x = reinterpret_cast<const sockaddr_in&>(*a.data());
  const auto& y = reinterpret_cast<const sockaddr_in&>(*b.data());
  if (auto c = bytes(std::memcmp(&x.sin_addr, &y.sin_addr, sizeof x.sin_addr)); c != 0) return c;
  return a.port() <=> b.port();
}

}  // namespace evco
