// https_get ADDRESS PORT SERVER_NAME [PATH] [--ca FILE]: an HTTPS GET over evco's TLS streams.
// Connects to the numeric ADDRESS, verifies the server's certificate for SERVER_NAME (sent as
// SNI) against the system trust store, or against the CAs in FILE with --ca, prints the
// response to stdout and how the exchange ended to stderr. Exits 1 when anything failed,
// certificate verification included, and says why.

#include <array>
#include <chrono>
#include <cstdio>
#include <string>
#include <string_view>

#include <unistd.h>

#include <evco/evco.hpp>

#include "args.hpp"

using namespace std::chrono_literals;

namespace {

struct request {
  evco::endpoint server;
  std::string server_name;
  std::string path = "/";
};

std::string host_header(const request& req) {
  std::string host = req.server_name;
  if (req.server.port() != 443) host += ":" + std::to_string(req.server.port());
  return host;
}

evco::task<int> fetch(evco::loop& lp, request req, const evco::tls_context* ctx) {
  std::fprintf(stderr, "[..] GET %s from %s as %s\n", req.path.c_str(),
               req.server.to_string().c_str(), req.server_name.c_str());
  evco::connect_options copts;
  copts.timeout = 10s;
  auto tcp = co_await evco::connect(lp, req.server, copts);
  if (!tcp) {
    std::fprintf(stderr, "[ERR] connect: %s\n", tcp.error().message().c_str());
    co_return 1;
  }
  auto tls = co_await evco::tls_client(std::move(tcp).value(), *ctx, req.server_name, 10s);
  if (!tls) {
    // "certificate verify failed: self-signed certificate", "TLS handshake timed out", ...
    std::fprintf(stderr, "[ERR] TLS handshake with %s: %s\n", req.server_name.c_str(),
                 tls.error().message().c_str());
    co_return 1;
  }
  evco::stream s = std::move(tls).value();
  std::fprintf(stderr, "[*] %s, certificate verified for %s\n", evco::tls_protocol(s).c_str(),
               req.server_name.c_str());
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
  std::array<std::string_view, 4> pos;
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
  if (usage || npos < 3) {
    std::fprintf(stderr, "usage: %s ADDRESS PORT SERVER_NAME [PATH] [--ca FILE]\n", argv[0]);
    return 2;
  }
  const auto server = examples::parse_endpoint(pos[0], pos[1]);
  if (!server) return 2;
  request req;
  req.server = *server;
  req.server_name = pos[2];
  if (npos == 4) req.path = pos[3];
  if (req.path.empty() || req.path.front() != '/') req.path.insert(0, "/");

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
