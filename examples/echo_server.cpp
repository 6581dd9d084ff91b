// echo_server ADDRESS PORT: sends every byte back to whoever sent it, to many clients at
// once, until SIGINT or SIGTERM. Port 0 picks a free port and prints it. SIGUSR1 prints every
// parked operation (what each coroutine waits for) to stderr.

#include <array>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <string>

#include <evco/evco.hpp>

#include "args.hpp"

namespace {

// A client that sends nothing for this long is dropped, so stalled peers cannot pile up.
constexpr auto idle_limit = std::chrono::minutes(5);

evco::task<evco::result<void>> serve(evco::stream s) {
  s.set_timeouts(idle_limit, idle_limit);
  std::array<char, 16 * 1024> buf;
  for (;;) {
    auto n = co_await s.read_some(buf);
    if (!n) {
      if (n.error() == evco::errc::eof) co_return evco::success();
      co_return n.error();
    }
    // write() copies into the output buffer, so buf is free again once it completes; it
    // waits while the client reads slower than it sends, which bounds memory per client.
    EVCO_TRYV(co_await s.write(std::string_view(buf.data(), n.value())));
  }
}

bool out_of_resources(std::error_code ec) {
  return ec == std::errc::too_many_files_open || ec == std::errc::too_many_files_open_in_system ||
         ec == std::errc::no_buffer_space || ec == std::errc::not_enough_memory;
}

// `l` stays in main(); stop_on_signal closes it, which ends accept() with errc::closed.
evco::task<evco::result<void>> accept_loop(evco::loop& lp, evco::listener* l) {
  for (;;) {
    auto accepted = co_await l->accept();
    if (!accepted) {
      if (accepted.error() == evco::errc::closed) co_return evco::success();
      // Running out of descriptors passes once clients leave; the listener rests before
      // the next accept, so retrying does not spin.
      if (!out_of_resources(accepted.error())) co_return accepted.error();
      std::fprintf(stderr, "[!] accept: %s\n", accepted.error().message().c_str());
      continue;
    }
    evco::stream s = std::move(accepted).value();
    const auto peer_ep = s.remote_endpoint();
    const std::string peer =
        peer_ep ? peer_ep.value().to_string() : std::string("(peer already gone)");
    std::fprintf(stderr, "[+] %s connected\n", peer.c_str());
    lp.spawn(serve(std::move(s)), [peer](std::error_code ec) {
      std::fprintf(stderr, "[ERR] %s: %s\n", peer.c_str(), ec.message().c_str());
    });
  }
}

// Prints the loop's parked ops at SIGUSR1; closes the listener at SIGINT or SIGTERM:
// accept_loop then ends, and so does main().
evco::task<evco::result<void>> on_signals(evco::loop& lp, evco::listener* l) {
  for (;;) {
    EVCO_TRY(const int sig, co_await evco::wait_signal(lp, {SIGINT, SIGTERM, SIGUSR1}));
    if (sig == SIGUSR1) {
      lp.dump(stderr);
      continue;
    }
    std::fprintf(stderr, "[*] %s received, shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    l->close();
    co_return evco::success();
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s ADDRESS PORT\n", argv[0]);
    return 2;
  }
  const auto ep = examples::parse_endpoint(argv[1], argv[2]);
  if (!ep) return 2;

  // Declared first: destroyed last. ~loop ends the connections still open at shutdown.
  evco::loop lp;
  auto bound = evco::listener::bind(lp, *ep);
  if (!bound) {
    std::fprintf(stderr, "[ERR] bind %s: %s\n", ep->to_string().c_str(),
                 bound.error().message().c_str());
    return 1;
  }
  evco::listener l = std::move(bound).value();
  const auto local = l.local_endpoint();
  if (!local) {
    std::fprintf(stderr, "[ERR] getsockname: %s\n", local.error().message().c_str());
    return 1;
  }
  // stdout, flushed: a script that started us on port 0 reads the port from here.
  std::printf("listening on %s\n", local.value().to_string().c_str());
  std::fflush(stdout);

  bool unwatched = false;
  lp.spawn(on_signals(lp, &l), [&](std::error_code ec) {
    std::fprintf(stderr, "[ERR] cannot watch SIGINT/SIGTERM/SIGUSR1: %s\n", ec.message().c_str());
    unwatched = true;
    l.close();
  });

  if (auto r = lp.run(accept_loop(lp, &l)); !r) {
    std::fprintf(stderr, "[ERR] accept: %s\n", r.error().message().c_str());
    return 1;
  }
  if (unwatched) return 1;
  std::fprintf(stderr, "[*] stopped\n");
  return 0;
}
