#pragma once
// endpoint: an IPv4 or IPv6 address and port.

#include <compare>
#include <cstdint>
#include <string>
#include <string_view>

#include <netinet/in.h>
#include <sys/socket.h>

#include "evco/error.hpp"

namespace evco {

class endpoint {
 public:
  endpoint() noexcept;
  /// Parses "1.2.3.4:80" or "[::1]:443". Fails with errc::endpoint_no_port,
  /// endpoint_bad_port, endpoint_not_numeric (a host name: use connect(lp, host, port)) or
  /// endpoint_ipv6_unbracketed, each equal to std::errc::invalid_argument.
  static result<endpoint> parse(std::string_view text);
  /// Parses a numeric address alone ("1.2.3.4", "::1" or "[::1]") and takes `port`; fails with
  /// errc::endpoint_not_numeric for anything else.
  static result<endpoint> parse(std::string_view address, std::uint16_t port);
  /// From the socket address of `len` bytes at `sa` (which need not be aligned). Fails with
  /// address_family_not_supported for a non-IP family, and with invalid_argument for a null
  /// `sa` or a `len` too short for its family.
  static result<endpoint> from_sockaddr(const sockaddr* sa, socklen_t len);

  static endpoint v4_loopback(std::uint16_t port = 0) noexcept;
  static endpoint v6_loopback(std::uint16_t port = 0) noexcept;

  int family() const noexcept { return addr_.ss_family; }
  bool is_v4() const noexcept { return family() == AF_INET; }
  bool is_v6() const noexcept { return family() == AF_INET6; }
  std::uint16_t port() const noexcept;
  void set_port(std::uint16_t p) noexcept;
  /// The address without the port ("127.0.0.1", "::1").
  std::string address() const;
  /// "127.0.0.1:80" or "[::1]:80".
  std::string to_string() const;

  const sockaddr* data() const noexcept { return reinterpret_cast<const sockaddr*>(&addr_); }
  socklen_t size() const noexcept;

  friend bool operator==(const endpoint& a, const endpoint& b) noexcept;
  friend std::strong_ordering operator<=>(const endpoint& a, const endpoint& b) noexcept;

 private:
  sockaddr_storage addr_;
};

}  // namespace evco
