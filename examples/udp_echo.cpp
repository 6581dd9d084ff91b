// udp_echo ADDRESS PORT: sends every UDP datagram back to whoever sent it. Port 0 picks a free
// port and prints it. SIGINT or SIGTERM stops it: the pending receive is cancelled and it
// exits with status 0.

#include <array>
#include <csignal>
#include <cstdio>

#include <evco/evco.hpp>

#include "args.hpp"

namespace {

// Echoes until cancelled (when_any in run() does that at a stop signal). One peer's trouble
// (a datagram too large for the buffer, a send the kernel refuses) is reported and skipped;
// a failing receive ends the loop, since the next one would fail the same way.
evco::task<evco::result<void>> echo(evco::datagram& d) {
  std::array<std::byte, 65536> buf;  // the largest UDP payload fits
  for (;;) {
    auto r = co_await d.receive_from(buf);
    if (!r) {
      if (r.error() == evco::errc::cancelled) co_return evco::success();
      if (r.error() != evco::errc::message_truncated) co_return r.error();
      const auto cut = d.last_truncated();
      std::fprintf(stderr, "[!] %zu-byte datagram from %s truncated: dropped\n", cut->size,
                   cut->from.to_string().c_str());
      continue;
    }
    const auto [size, from] = r.value();
    if (auto s = co_await d.send_to(std::span(buf).first(size), from); !s) {
      std::fprintf(stderr, "[ERR] send to %s: %s\n", from.to_string().c_str(),
                   s.error().message().c_str());
    }
  }
}

// Completes at SIGINT or SIGTERM with the signal.
evco::task<evco::result<int>> stop_signal(evco::loop& lp) {
  co_return co_await evco::wait_signal(lp, {SIGINT, SIGTERM});
}

// Echoes until SIGINT or SIGTERM. The signal watch starts first (when_any starts its
// arguments in order): a stop signal is caught from the first echo on.
evco::task<int> run(evco::loop& lp, evco::datagram& d) {
  auto first = co_await evco::when_any(stop_signal(lp), echo(d));
  if (first.index() == 1) {
    const auto& r = std::get<1>(first);
    std::fprintf(stderr, "[ERR] receive: %s\n", r ? "ended" : r.error().message().c_str());
    co_return 1;
  }
  const auto& sig = std::get<0>(first);
  if (!sig) {
    std::fprintf(stderr, "[ERR] cannot watch signals: %s\n", sig.error().message().c_str());
    co_return 1;
  }
  std::fprintf(stderr, "[*] %s received, stopped\n", sig.value() == SIGINT ? "SIGINT" : "SIGTERM");
  co_return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s ADDRESS PORT\n", argv[0]);
    return 2;
  }
  const auto ep = examples::parse_endpoint(argv[1], argv[2]);
  if (!ep) return 2;

  evco::loop lp;
  auto bound = evco::datagram::bind(lp, *ep);
  if (!bound) {
    std::fprintf(stderr, "[ERR] bind %s: %s\n", ep->to_string().c_str(),
                 bound.error().message().c_str());
    return 1;
  }
  evco::datagram d = std::move(bound).value();
  const auto local = d.local_endpoint();
  if (!local) {
    std::fprintf(stderr, "[ERR] getsockname: %s\n", local.error().message().c_str());
    return 1;
  }
  // stdout, flushed: a script that started us on port 0 reads the port from here.
  std::printf("listening on %s\n", local.value().to_string().c_str());
  std::fflush(stdout);
  return lp.run(run(lp, d));
}
