// http_hello ADDRESS PORT [THREADS]: the smallest keep-alive HTTP/1.1 server, for
// bench/scaling.py. Every request (its header up to the blank line; a body is not expected)
// gets the same 200 "hello". THREADS loops (default 1; 0: one per core) run on a
// evco::loop_pool, each with its own SO_REUSEPORT listener on the same port. Port 0 picks a
// free one; "listening on ADDRESS:PORT" goes to stdout once every loop listens. SIGINT or
// SIGTERM stops it: connections are cancelled (this is a benchmark peer, no grace period).

#include <charconv>
#include <cstdio>
#include <string>
#include <string_view>

#include <evco/evco.hpp>

namespace {

constexpr std::string_view response =
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Length: 5\r\n"
    "\r\n"
    "hello";

// A request header larger than this closes the connection.
constexpr std::size_t max_header = 8192;

evco::task<void> serve(evco::stream s) {
  std::string request;
  for (;;) {
    if (!co_await s.read_until(request, "\r\n\r\n", max_header)) co_return;
    request.clear();  // what follows (a pipelined request) stays in the stream
    if (!co_await s.write(response)) co_return;
  }
}

// fn(lp, index): runs with the pool's stop token, so the accept and the join end at the stop.
evco::task<evco::result<void>> accept_loop(evco::loop& lp, evco::listener l) {
  evco::task_group conns(lp);
  for (;;) {
    auto s = co_await l.accept();
    if (!s) {
      if (s.error() == std::errc::too_many_files_open) continue;  // accept backs off itself
      break;
    }
    if (!co_await conns.spawn(serve(std::move(s).value()))) break;
  }
  l.close();
  co_return co_await conns.join();
}

evco::task<evco::result<void>> failed(std::error_code ec) {
  co_return ec;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3 && argc != 4) {
    std::fprintf(stderr, "usage: %s ADDRESS PORT [THREADS]\n", argv[0]);
    return 2;
  }
  unsigned port = 0;
  const std::string_view port_text = argv[2];
  auto [p, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  auto ep = evco::endpoint::parse(argv[1], static_cast<std::uint16_t>(port));
  std::size_t threads = 1;
  if (argc == 4) threads = std::strtoul(argv[3], nullptr, 10);
  if (ec != std::errc{} || port > 65535 || !ep) {
    std::fprintf(stderr, "http_hello: bad address or port\n");
    return 2;
  }
  evco::endpoint at = ep.value();
  evco::loop_pool pool(threads);
  // fn is called for loop 0, 1, ... in turn: loop 0 picks the port, the others bind it too.
  const auto r = pool.run([&](evco::loop& lp, std::size_t i) -> evco::task<evco::result<void>> {
    auto l = evco::listener::bind(lp, at, {.reuse_port = true});
    if (!l) return failed(l.error());
    auto local = l.value().local_endpoint();
    if (!local) return failed(local.error());
    at = local.value();
    if (i + 1 == pool.size()) {
      std::printf("listening on %s\n", at.to_string().c_str());
      std::fflush(stdout);
    }
    return accept_loop(lp, std::move(l).value());
  });
  if (!r) {
    std::fprintf(stderr, "http_hello: %s\n", r.error().message().c_str());
    return 1;
  }
  return 0;
}
