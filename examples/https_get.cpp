// https_get HOST PORT [PATH] [--ca FILE]: the seed's GET over TLS to a host name.
// Resolves HOST through libevent's async DNS (a numeric address skips it), connects with
// Happy Eyeballs, verifies the server's certificate for HOST (sent as SNI) against the system
// trust store, or against the CAs in FILE with --ca, prints the response to stdout and how the
// exchange ended to stderr. Exits 1 when anything failed, certificate verification included,
// and says why.

#include <array>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <string>
#include <string_view>

#include <unistd.h>

#include <evco/evco.hpp>

using namespace std::chrono_literals;

namespace {

struct request {
  std::string host;
  std::uint16_t port = 443;
  std::string path = "/";
};

std::string host_header(const request& req) {
  // Appended piece by piece: g++ 12 at -O3 reports a false -Wrestrict for
  // "literal" + std::string (GCC PR 105329).
  const bool v6 = req.host.find(':') != std::string::npos;
  std::string host = v6 ? "[" : "";
  host += req.host;
  if (v6) host += ']';
  if (req.port != 443) {
    host += ':';
    host += std::to_string(req.port);
  }
  return host;
}

evco::task<int> fetch(evco::loop& lp, request req, const evco::tls_context* ctx) {
  std::fprintf(stderr, "[..] GET %s from %s port %u\n", req.path.c_str(), req.host.c_str(),
               req.port);
  evco::connect_report report;
  evco::connect_options copts;
  copts.resolve_timeout = 10s;
  copts.timeout = 10s;  // per address
  copts.total_timeout = 30s;
  copts.tls = ctx;
  copts.handshake_timeout = 10s;
  copts.report = &report;
  auto tls = co_await evco::connect(lp, req.host, req.port, copts);
  if (!tls) {
    // "resolve: dns: no such host", "127.0.0.1:443: Connection refused",
    // "handshake: tls: certificate verify failed: self-signed certificate", ...
    std::fprintf(stderr, "[ERR] %s\n", report.to_string().c_str());
    co_return 1;
  }
  evco::stream s = std::move(tls).value();
  std::fprintf(stderr, "[*] connected to %s, %s, certificate verified for %s\n",
               s.remote_endpoint() ? s.remote_endpoint().value().to_string().c_str() : "?",
               evco::tls_protocol(s).c_str(), req.host.c_str());
  s.set_timeouts(10s, 10s);

  const std::string get = "GET " + req.path + " HTTP/1.1\r\nHost: " + host_header(req) +
                          "\r\nConnection: close\r\n\r\n";
  if (auto w = co_await s.write(get); !w) {
    std::fprintf(stderr, "[ERR] send: %s\n", w.error().message().c_str());
    co_return 1;
  }
  std::size_t received = 0;
  bool mid_line = false;
  std::array<char, 16 * 1024> buf;
  for (;;) {
    auto n = co_await s.read_some(buf);
    if (!n) {
      std::fflush(stdout);
      if (mid_line && isatty(STDOUT_FILENO)) std::fputc('\n', stderr);
      // A clean TLS end (close_notify) is eof; a TCP close without it is tls_errc::truncated.
      if (n.error() == evco::errc::eof && received > 0) {
        std::fprintf(stderr, "[*] server closed the connection (%zu bytes received)\n", received);
        co_return 0;
      }
      std::fprintf(stderr, "[ERR] read after %zu bytes: %s\n", received,
                   n.error().message().c_str());
      co_return 1;
    }
    received += n.value();
    std::fwrite(buf.data(), 1, n.value(), stdout);
    mid_line = buf[n.value() - 1] != '\n';
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string ca_file;
  std::array<std::string_view, 3> pos;
  std::size_t npos = 0;
  bool usage = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--ca" && i + 1 < argc) {
      ca_file = argv[++i];
    } else if (a.starts_with("-") || npos == pos.size()) {
      usage = true;
    } else {
      pos[npos++] = a;
    }
  }
  if (usage || npos < 2) {
    std::fprintf(stderr, "usage: %s HOST PORT [PATH] [--ca FILE]\n", argv[0]);
    return 2;
  }
  request req;
  req.host = pos[0];
  unsigned port = 0;
  const auto [end, ec] = std::from_chars(pos[1].data(), pos[1].data() + pos[1].size(), port);
  if (ec != std::errc{} || end != pos[1].data() + pos[1].size() || port == 0 || port > 65535) {
    std::fprintf(stderr, "[ERR] bad port '%.*s'\n", static_cast<int>(pos[1].size()), pos[1].data());
    return 2;
  }
  req.port = static_cast<std::uint16_t>(port);
  if (npos == 3) req.path = pos[2];
  // Not insert(0, "/"): g++ 12 at -O3 reports a false -Wrestrict for it (GCC PR 105329).
  if (req.path.empty() || req.path.front() != '/') req.path.insert(req.path.begin(), '/');

  evco::tls_client_options opts;  // verification on: system trust store, or --ca
  opts.ca_file = ca_file;
  auto ctx = evco::tls_context::client(opts);
  if (!ctx) {
    std::fprintf(stderr, "[ERR] TLS setup%s%s: %s\n", ca_file.empty() ? "" : " with CA file ",
                 ca_file.c_str(), ctx.error().message().c_str());
    return 1;
  }
  evco::loop lp;
  return lp.run(fetch(lp, req, &ctx.value()));
}
