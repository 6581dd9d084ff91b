#pragma once
// The seed's HTTP GET client as one coroutine, shared by http_get and evco-demo.

#include <array>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <string_view>
#include <system_error>

#include <evco/evco.hpp>

namespace examples {

struct http_request {
  evco::endpoint server;
  std::string path = "/";
  evco::duration connect_timeout = std::chrono::seconds(10);
  /// The stream's idle timeout: how long the server may stay silent (or not accept our
  /// bytes) before we give up. It restarts with every byte, so a slow but steady download
  /// never hits it.
  evco::duration idle_timeout = std::chrono::seconds(10);
};

/// How a fetch ended. With "Connection: close" the response ends when the server closes
/// the connection, so end of stream in the read phase is the successful outcome.
struct http_outcome {
  const char* phase = "";  ///< "connect", "send" or "read": where the fetch stopped
  std::error_code ec;
  std::size_t received = 0;

  bool ok() const noexcept { return ec == evco::errc::eof && received > 0; }
};

/// "127.0.0.1:8080", "[::1]:8080", or the bare address for port 80.
inline std::string host_header(const evco::endpoint& ep) {
  // Appended piece by piece: g++ 12 at -O3 reports a false -Wrestrict for
  // "literal" + std::string (GCC PR 105329).
  const bool v6 = ep.is_v6();
  std::string host = v6 ? "[" : "";
  host += ep.address();
  if (v6) host += ']';
  if (ep.port() != 80) {
    host += ':';
    host += std::to_string(ep.port());
  }
  return host;
}

/// Connects, sends the GET and hands every chunk of the response to `on_data` as it arrives.
inline evco::task<http_outcome> http_get(evco::loop& lp, http_request req,
                                         std::function<void(std::string_view)> on_data) {
  http_outcome out;
  evco::connect_options copts;
  copts.timeout = req.connect_timeout;
  auto connected = co_await evco::connect(lp, req.server, copts);
  if (!connected) {
    out.phase = "connect";
    out.ec = connected.error();
    co_return out;
  }
  evco::stream s = std::move(connected).value();
  s.set_timeouts(req.idle_timeout, req.idle_timeout);

  const std::string request = "GET " + req.path + " HTTP/1.1\r\nHost: " + host_header(req.server) +
                              "\r\nConnection: close\r\n\r\n";
  if (auto w = co_await s.write(request); !w) {
    out.phase = "send";
    out.ec = w.error();
    co_return out;
  }

  out.phase = "read";
  std::array<char, 16 * 1024> buf;
  for (;;) {
    auto n = co_await s.read_some(buf);
    if (!n) {
      out.ec = n.error();
      co_return out;
    }
    out.received += n.value();
    on_data(std::string_view(buf.data(), n.value()));
  }
}

inline std::string seconds_text(evco::duration d) {
  char text[32];
  std::snprintf(text, sizeof text, "%g s", std::chrono::duration<double>(d).count());
  return text;
}

/// One line in the seed's style: "[*] server closed the connection", "[ERR] connect: ...".
inline std::string describe(const http_outcome& o, const http_request& req) {
  if (o.ok()) {
    return "[*] server closed the connection (" + std::to_string(o.received) + " bytes received)";
  }
  if (o.ec == evco::errc::eof) return "[ERR] server closed the connection without a response";
  if (o.ec == std::errc::timed_out) {
    const std::string_view phase = o.phase;
    if (phase == "connect")
      return "[!] timed out: no connection after " + seconds_text(req.connect_timeout);
    if (phase == "read")
      return "[!] timed out: server silent for " + seconds_text(req.idle_timeout);
    return "[!] timed out: server took no data for " + seconds_text(req.idle_timeout);
  }
  return std::string("[ERR] ") + o.phase + ": " + o.ec.message();
}

}  // namespace examples
