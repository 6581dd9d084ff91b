#pragma once
// Command-line parsing shared by the example programs.

#include <charconv>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string_view>

#include <evco/endpoint.hpp>

namespace examples {

/// ADDRESS PORT as typed by the user: a numeric IPv4 or IPv6 address and a port 0..65535, or a
/// Unix socket "unix:/path" or "unix:@name" (the port is then not used).
/// Prints what is wrong and returns nothing when either is malformed.
inline std::optional<evco::endpoint> parse_endpoint(std::string_view address,
                                                    std::string_view port_text) {
  unsigned port = 0;
  const char* end = port_text.data() + port_text.size();
  const auto [ptr, ec] = std::from_chars(port_text.data(), end, port);
  if (port_text.empty() || ec != std::errc{} || ptr != end || port > 65535) {
    std::fprintf(stderr, "[ERR] bad port '%.*s': expected 0..65535\n",
                 static_cast<int>(port_text.size()), port_text.data());
    return std::nullopt;
  }
  auto ep = evco::endpoint::parse(address, static_cast<std::uint16_t>(port));
  if (!ep) {
    // evco::connect takes an endpoint; resolving names would need evdns, which this
    // example keeps out of the way.
    std::fprintf(
        stderr, "[ERR] bad address '%.*s': expected a numeric IPv4 or IPv6 address, or unix:PATH\n",
        static_cast<int>(address.size()), address.data());
    return std::nullopt;
  }
  return ep.value();
}

}  // namespace examples
