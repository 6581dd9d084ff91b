// echo_server ADDRESS PORT: sends every byte back to whoever sent it, to many clients at
// once, until SIGINT or SIGTERM. Port 0 picks a free port and prints it. SIGUSR1 prints what
// every coroutine is waiting for (loop::dump) to stderr.

#include <array>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <memory>
#include <string>

#include <event2/event.h>

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

// `l` stays in main(); the signal handler closes it, which ends accept() with errc::closed.
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

struct event_deleter {
  void operator()(event* ev) const noexcept { event_free(ev); }
};
using event_ptr = std::unique_ptr<event, event_deleter>;

// Runs from the loop, like every libevent callback: the loop is between ops, so dump() sees
// each of them parked.
void on_dump(evutil_socket_t, short, void* arg) {
  static_cast<const evco::loop*>(arg)->dump(stderr);
}

void on_signal(evutil_socket_t sig, short, void* arg) {
  std::fprintf(stderr, "[*] %s received, shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
  static_cast<evco::listener*>(arg)->close();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s ADDRESS PORT\n", argv[0]);
    return 2;
  }
  const auto ep = examples::parse_endpoint(argv[1], argv[2]);
  if (!ep) return 2;

  // Declared first: destroyed last. ~loop ends the connections still open at shutdown, and
  // the signal events below must be freed while their base is alive.
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

  event_ptr on_int(evsignal_new(lp.native_handle(), SIGINT, on_signal, &l));
  event_ptr on_term(evsignal_new(lp.native_handle(), SIGTERM, on_signal, &l));
  event_ptr on_usr1(evsignal_new(lp.native_handle(), SIGUSR1, on_dump, &lp));
  if (!on_int || !on_term || !on_usr1 || event_add(on_int.get(), nullptr) != 0 ||
      event_add(on_term.get(), nullptr) != 0 || event_add(on_usr1.get(), nullptr) != 0) {
    std::fprintf(stderr, "[ERR] cannot watch SIGINT/SIGTERM/SIGUSR1\n");
    return 1;
  }

  if (auto r = lp.run(accept_loop(lp, &l)); !r) {
    std::fprintf(stderr, "[ERR] accept: %s\n", r.error().message().c_str());
    return 1;
  }
  std::fprintf(stderr, "[*] stopped\n");
  return 0;
}
