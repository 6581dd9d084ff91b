#pragma once
// endpoint: an IPv4 or IPv6 address and port, or a Unix domain socket's path.

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
  /// Parses "1.2.3.4:80", "[::1]:443", or "unix:/run/app.sock" and "unix:@name" (see
  /// unix_path). Fails with errc::endpoint_no_port,
  /// endpoint_bad_port, endpoint_not_numeric (a host name: use connect(lp, host, port)) or
  /// endpoint_ipv6_unbracketed, each equal to std::errc::invalid_argument.
  static result<endpoint> parse(std::string_view text);
  /// Parses a numeric address alone ("1.2.3.4", "::1" or "[::1]") and takes `port`; fails with
  /// errc::endpoint_not_numeric for anything else. "unix:PATH" is a Unix endpoint (the port
  /// is not used), so that a program taking ADDRESS PORT serves either.
  static result<endpoint> parse(std::string_view address, std::uint16_t port);
  /// A Unix domain socket: a file system path ("/run/app.sock", "sock" relative to the working
  /// directory), or with a leading '@' a Linux abstract name ("@app": no file, gone with the
  /// last socket). Fails with errc::endpoint_path_too_long past 107 bytes (sun_path, less its
  /// terminator; an abstract name's 107 after the '@'), and with invalid_argument for an empty
  /// path, a lone "@", or a NUL inside.
  static result<endpoint> unix_path(std::string_view path);
  /// From the socket address of `len` bytes at `sa` (which need not be aligned): AF_INET,
  /// AF_INET6 or AF_UNIX (of any length from the family on: an unbound client's is unnamed).
  /// Fails with address_family_not_supported for another family, and with invalid_argument
  /// for a null `sa` or a `len` too short (or, for AF_UNIX, too long) for its family.
  static result<endpoint> from_sockaddr(const sockaddr* sa, socklen_t len);

  static endpoint v4_loopback(std::uint16_t port = 0) noexcept;
  static endpoint v6_loopback(std::uint16_t port = 0) noexcept;

  int family() const noexcept { return addr_.ss_family; }
  bool is_v4() const noexcept { return family() == AF_INET; }
  bool is_v6() const noexcept { return family() == AF_INET6; }
  bool is_unix() const noexcept { return family() == AF_UNIX; }
  /// The port; 0 for a Unix endpoint (where set_port does nothing).
  std::uint16_t port() const noexcept;
  void set_port(std::uint16_t p) noexcept;
  /// The address without the port ("127.0.0.1", "::1"); a Unix endpoint's path().
  std::string address() const;
  /// A Unix endpoint's path as unix_path() takes it ("/run/app.sock", "@app"), or "" for an
  /// unnamed one (the peer of an accepted connection, usually); "" for IP endpoints.
  std::string path() const;
  /// "127.0.0.1:80", "[::1]:80", "unix:/run/app.sock", "unix:@app", or "unix:" (unnamed):
  /// what parse() takes back.
  std::string to_string() const;

  const sockaddr* data() const noexcept { return reinterpret_cast<const sockaddr*>(&addr_); }
  socklen_t size() const noexcept;

  friend bool operator==(const endpoint& a, const endpoint& b) noexcept;
  friend std::strong_ordering operator<=>(const endpoint& a, const endpoint& b) noexcept;

 private:
  std::string_view unix_bytes() const noexcept;  // sun_path's bytes in use

  sockaddr_storage addr_;
  // AF_UNIX only: the address's length (an abstract name is its bytes, not NUL-terminated).
  socklen_t unix_size_ = 0;
};

}  // namespace evco
