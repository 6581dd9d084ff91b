// echo_server ADDRESS PORT [GRACE_MS [THREADS]]: sends every byte back to whoever sent it, to
// many clients at once. Port 0 picks a free port and prints it. SIGINT or SIGTERM stops it
// gracefully: it stops accepting, gives open connections GRACE_MS (default 5000) to end, then
// cancels those left and exits with status 0. SIGUSR1 prints every parked operation (what each
// coroutine waits for) to stderr. ADDRESS may be a Unix socket, `unix:/run/echo.sock` (its file
// is removed at the exit) or `unix:@name`.
//
// THREADS (default 1; 0: one per core) loops run on threads of their own (evco::loop_pool),
// each accepting on its own SO_REUSEPORT listener bound to the same port: the kernel spreads
// the connections over them.

#include <array>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <stop_token>
#include <string>
#include <vector>

#include <evco/evco.hpp>

#include "args.hpp"

namespace {

// A client that sends nothing for this long is dropped, so stalled peers cannot pile up.
constexpr auto idle_limit = std::chrono::minutes(5);

// Shared by the loops, each on its own thread: atomics.
std::atomic<std::size_t> open_connections{0};
std::atomic<std::size_t> listening{0};  // loops that have not closed their listener yet
std::atomic<int> stop_signal{0};        // the signal that stopped the server, if one did

// Counts a connection as open for as long as it lives.
struct open_connection {
  open_connection() noexcept { ++open_connections; }
  ~open_connection() { --open_connections; }
  open_connection(const open_connection&) = delete;
  open_connection& operator=(const open_connection&) = delete;
};

// One connection. It reports its own errors: in a task_group, a child that failed would cancel
// its siblings, and one client's reset is no reason to drop the others.
evco::task<void> serve(evco::stream s, std::string peer) {
  const open_connection counted;
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

// Accepts until `stop` (the pool's, at a stop signal), or until the listener fails; each
// connection becomes a child of `conns`.
evco::task<evco::result<void>> accept_loop(evco::listener& l, evco::task_group& conns,
                                           std::stop_token stop) {
  for (;;) {
    auto accepted = co_await l.accept(stop);
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

// Prints every loop's parked ops, one loop after the other: each dump runs on its own loop's
// thread (loop::dump must), then posts the next one.
struct dump_from {
  evco::loop_pool* pool;
  const std::vector<evco::loop*>* loops;
  std::size_t index;
  void operator()() const {
    std::fprintf(stderr, "[*] loop %zu:\n", index);
    (*loops)[index]->dump(stderr);
    if (index + 1 == loops->size()) {
      std::fprintf(stderr, "[*] end of dump\n");
    } else if (!pool->post(index + 1, dump_from{pool, loops, index + 1})) {
      std::fprintf(stderr, "[*] loop %zu: stopped\n", index + 1);
    }
  }
};

// On loop 0: stops the pool at SIGINT or SIGTERM; dumps the parked ops at SIGUSR1.
evco::task<evco::result<void>> watch_signals(evco::loop& lp, evco::loop_pool& pool,
                                             const std::vector<evco::loop*>& loops,
                                             std::stop_token stop) {
  for (;;) {
    auto sig = co_await evco::wait_signal(lp, {SIGINT, SIGTERM, SIGUSR1}, stop);
    if (!sig) {
      if (sig.error() == evco::errc::cancelled) co_return evco::success();  // stopped otherwise
      std::fprintf(stderr, "[ERR] cannot watch signals: %s\n", sig.error().message().c_str());
      pool.request_stop();
      co_return sig.error();
    }
    if (sig.value() == SIGUSR1) {
      (void)pool.post(0, dump_from{&pool, &loops, 0});
      continue;
    }
    stop_signal = sig.value();
    pool.request_stop();
    co_return evco::success();
  }
}

// One loop's graceful stop: serve until `stop`, then stop accepting, give the connections
// `grace` to end, cancel those left, and wait for them. A listener that fails stops every loop
// the same way (the pool would only once this task has ended).
evco::task<evco::result<void>> serve_loop(evco::loop& lp, evco::listener l,
                                          std::chrono::milliseconds grace, std::stop_token stop,
                                          evco::loop_pool& pool) {
  evco::task_group conns(lp);
  auto accepted = co_await accept_loop(l, conns, stop);
  l.close();  // new clients are refused from here on
  if (!accepted) {
    std::fprintf(stderr, "[ERR] accept: %s\n", accepted.error().message().c_str());
    pool.request_stop();
  }
  // The last loop to close its listener says so: from then on every connection is refused.
  if (--listening == 0 && stop_signal != 0) {
    std::fprintf(stderr, "[*] %s received, %zu connection(s) open, shutting down\n",
                 stop_signal == SIGINT ? "SIGINT" : "SIGTERM", open_connections.load());
  }
  // A join cancelled by the deadline cancels the children, and still waits for them to end.
  if (auto joined = co_await evco::with_timeout(lp, conns.join(), grace);
      !joined && joined.error() == evco::errc::timed_out) {
    std::fprintf(stderr, "[*] grace period over: remaining connections cancelled\n");
  }
  co_return accepted;
}

// Loop 0 serves and watches the signals (one loop in the process may); both end at the stop.
evco::task<evco::result<void>> serve_and_watch(evco::loop& lp, evco::listener l,
                                               std::chrono::milliseconds grace,
                                               std::stop_token stop, evco::loop_pool& pool,
                                               const std::vector<evco::loop*>& loops) {
  auto [served, watched] = co_await evco::when_all(serve_loop(lp, std::move(l), grace, stop, pool),
                                                   watch_signals(lp, pool, loops, stop));
  co_return !served ? served : watched;
}

evco::task<evco::result<void>> failed(std::error_code ec) {
  co_return ec;
}

// A non-negative number from the command line, or false.
bool parse_count(const char* text, long& out) {
  char* end = nullptr;
  out = std::strtol(text, &end, 10);
  return *text != '\0' && *end == '\0' && out >= 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3 || argc > 5) {
    std::fprintf(stderr, "usage: %s ADDRESS PORT [GRACE_MS [THREADS]]\n", argv[0]);
    return 2;
  }
  auto ep = examples::parse_endpoint(argv[1], argv[2]);
  if (!ep) return 2;
  long grace_ms = 5000;
  if (argc >= 4 && !parse_count(argv[3], grace_ms)) {
    std::fprintf(stderr, "[ERR] bad GRACE_MS '%s': expected milliseconds >= 0\n", argv[3]);
    return 2;
  }
  long threads = 1;
  if (argc == 5 && !parse_count(argv[4], threads)) {
    std::fprintf(stderr, "[ERR] bad THREADS '%s': expected a count >= 0\n", argv[4]);
    return 2;
  }
  const auto grace = std::chrono::milliseconds(grace_ms);

  // The signals are loop 0's to watch (SIGUSR1 too), not the pool's.
  evco::run_options options;
  options.stop_signals = {};
  evco::loop_pool pool(static_cast<std::size_t>(threads), options);
  std::vector<evco::loop*> loops(pool.size());
  listening = pool.size();
  // fn is called for loop 0, 1, ... in turn: loop 0 binds (port 0 picks one), the others then
  // bind the same port, each with a listener of its own.
  auto r = pool.run(
      [&](evco::loop& lp, std::size_t i, std::stop_token stop) -> evco::task<evco::result<void>> {
        loops[i] = &lp;
        auto bound = evco::listener::bind(lp, *ep, {.reuse_port = pool.size() > 1});
        if (!bound) {
          std::fprintf(stderr, "[ERR] bind %s: %s\n", ep->to_string().c_str(),
                       bound.error().message().c_str());
          return failed(bound.error());
        }
        evco::listener l = std::move(bound).value();
        const auto local = l.local_endpoint();
        if (!local) {
          std::fprintf(stderr, "[ERR] getsockname: %s\n", local.error().message().c_str());
          return failed(local.error());
        }
        ep = local.value();
        if (i + 1 == pool.size()) {
          // stdout, flushed: a script that started us on port 0 reads the port from here.
          std::printf("listening on %s\n", ep->to_string().c_str());
          std::fflush(stdout);
          std::fprintf(stderr, "[*] %zu loop(s), each on a thread of its own\n", pool.size());
        }
        if (i == 0) return serve_and_watch(lp, std::move(l), grace, std::move(stop), pool, loops);
        return serve_loop(lp, std::move(l), grace, std::move(stop), pool);
      });
  if (!r) {
    std::fprintf(stderr, "[ERR] stopped by a failure: %s\n", r.error().message().c_str());
    return 1;
  }
  std::fprintf(stderr, "[*] stopped\n");
  return 0;
}
