// echo_server ADDRESS PORT [GRACE_MS]: sends every byte back to whoever sent it, to many
// clients at once. Port 0 picks a free port and prints it. SIGINT or SIGTERM stops it
// gracefully: it stops accepting, gives open connections GRACE_MS (default 5000) to end, then
// cancels those left and exits with status 0. SIGUSR1 prints every parked operation (what each
// coroutine waits for) to stderr.

#include <array>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <evco/evco.hpp>

#include "args.hpp"

namespace {

// A client that sends nothing for this long is dropped, so stalled peers cannot pile up.
constexpr auto idle_limit = std::chrono::minutes(5);

// One connection. It reports its own errors: in a task_group, a child that failed would cancel
// its siblings, and one client's reset is no reason to drop the others.
evco::task<void> serve(evco::stream s, std::string peer) {
  s.set_timeouts(idle_limit, idle_limit);
  std::array<char, 16 * 1024> buf;
  for (;;) {
    auto n = co_await s.read_some(buf);
    if (!n) {
      if (n.error() == evco::errc::eof) break;
      if (n.error() == evco::errc::cancelled) {
        std::fprintf(stderr, "[-] %s: closed at shutdown\n", peer.c_str());
        co_return;
      }
      std::fprintf(stderr, "[ERR] %s: %s\n", peer.c_str(), n.error().message().c_str());
      co_return;
    }
    // write() copies into the output buffer, so buf is free again once it completes; it
    // waits while the client reads slower than it sends, which bounds memory per client.
    if (auto w = co_await s.write(std::string_view(buf.data(), n.value())); !w) {
      std::fprintf(stderr, "[ERR] %s: %s\n", peer.c_str(), w.error().message().c_str());
      co_return;
    }
  }
  std::fprintf(stderr, "[-] %s disconnected\n", peer.c_str());
}

bool out_of_resources(std::error_code ec) {
  return ec == std::errc::too_many_files_open || ec == std::errc::too_many_files_open_in_system ||
         ec == std::errc::no_buffer_space || ec == std::errc::not_enough_memory;
}

// Accepts until cancelled (when_any in run() does that at a stop signal), or until the listener
// fails; each connection becomes a child of `conns`.
evco::task<evco::result<void>> accept_loop(evco::listener& l, evco::task_group& conns) {
  for (;;) {
    auto accepted = co_await l.accept();
    if (!accepted) {
      if (accepted.error() == evco::errc::cancelled) co_return evco::success();
      // Running out of descriptors passes once clients leave; the listener rests before
      // the next accept, so retrying does not spin.
      if (!out_of_resources(accepted.error())) co_return accepted.error();
      std::fprintf(stderr, "[!] accept: %s\n", accepted.error().message().c_str());
      continue;
    }
    evco::stream s = std::move(accepted).value();
    const auto peer_ep = s.remote_endpoint();
    std::string peer = peer_ep ? peer_ep.value().to_string() : std::string("(peer already gone)");
    std::fprintf(stderr, "[+] %s connected\n", peer.c_str());
    EVCO_TRYV(co_await conns.spawn(serve(std::move(s), std::move(peer))));
  }
}

// Completes at SIGINT or SIGTERM with the signal; prints the loop's parked ops at SIGUSR1.
evco::task<evco::result<int>> stop_signal(evco::loop& lp) {
  for (;;) {
    EVCO_TRY(const int sig, co_await evco::wait_signal(lp, {SIGINT, SIGTERM, SIGUSR1}));
    if (sig != SIGUSR1) co_return sig;
    lp.dump(stderr);
  }
}

// The graceful stop: serve until a stop signal, then stop accepting, give the connections
// `grace` to end, cancel those left, and wait for them.
evco::task<int> run(evco::loop& lp, evco::listener& l, std::chrono::milliseconds grace) {
  evco::task_group conns(lp);
  auto first = co_await evco::when_any(accept_loop(l, conns), stop_signal(lp));
  l.close();  // new clients are refused from here on
  int status = 0;
  if (first.index() == 0) {
    const auto& r = std::get<0>(first);
    std::fprintf(stderr, "[ERR] accept: %s\n", r ? "ended" : r.error().message().c_str());
    status = 1;
  } else if (const auto& sig = std::get<1>(first); !sig) {
    std::fprintf(stderr, "[ERR] cannot watch signals: %s\n", sig.error().message().c_str());
    status = 1;
  } else {
    std::fprintf(stderr, "[*] %s received, %zu connection(s) open, shutting down\n",
                 sig.value() == SIGINT ? "SIGINT" : "SIGTERM", conns.size());
  }
  // A join cancelled by the deadline cancels the children, and still waits for them to end.
  if (auto joined = co_await evco::with_timeout(lp, conns.join(), grace);
      !joined && joined.error() == evco::errc::timed_out) {
    std::fprintf(stderr, "[*] grace period over: remaining connections cancelled\n");
  }
  co_return status;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3 && argc != 4) {
    std::fprintf(stderr, "usage: %s ADDRESS PORT [GRACE_MS]\n", argv[0]);
    return 2;
  }
  const auto ep = examples::parse_endpoint(argv[1], argv[2]);
  if (!ep) return 2;
  long grace_ms = 5000;
  if (argc == 4) {
    char* end = nullptr;
    grace_ms = std::strtol(argv[3], &end, 10);
    if (*argv[3] == '\0' || *end != '\0' || grace_ms < 0) {
      std::fprintf(stderr, "[ERR] bad GRACE_MS '%s': expected milliseconds >= 0\n", argv[3]);
      return 2;
    }
  }

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

  const int status = lp.run(run(lp, l, std::chrono::milliseconds(grace_ms)));
  if (status == 0) std::fprintf(stderr, "[*] stopped\n");
  return status;
}
