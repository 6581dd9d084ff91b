// chat_server ADDRESS PORT: a line-based chat room. Port 0 picks a free port; the address it
// listens on is printed on stdout as `listening on IP:PORT`.
//
// The protocol, as `nc 127.0.0.1 PORT` shows it:
// - The server greets a client with `* hello: the first line you send is your name`.
// - A client's first line is its name. A name is 1 to 32 letters, digits, '_', '-' or '.',
//   not starting with "guest" and not in use by another client; any other first line (an
//   empty one, say) makes the client guest<N>, N being its connection's number (1, 2, ...).
//   The server answers `* welcome NAME, K others here`.
// - Every later line goes to every other client as `NAME: line`; empty lines are dropped, and
//   a "\r" before the "\n" too. Lines from the server start with "* " (someone joined or
//   left, the server is going down): no name can, so they cannot be forged.
//
// Limits, so that no client can cost the others memory or time:
// - A line is at most 4096 bytes, its "\n" included: a longer one gets its client
//   disconnected.
// - Lines to a client queue in a channel of 64 lines, which its writer drains to the socket.
//   Lines are fanned out with try_send, which never waits: a client whose queue is full (it
//   stopped reading, so its socket and then its queue filled up) is disconnected on the spot.
//   The sender, and everyone else, goes on at full speed. So a client costs at most its
//   queue (64 lines of up to 4 KiB), 16 KiB read ahead from its socket, and its socket's
//   kernel buffers, whatever it does.
// - A client that sends nothing for 10 minutes, or does not read for 1 minute while lines
//   wait for it, is disconnected.
//
// SIGINT or SIGTERM stops the server: it stops accepting, tells every client, gives them 2 s
// to receive what is queued for them, cuts off those still going, and exits with status 0.
// SIGUSR1 prints every parked operation (what each coroutine waits for) to stderr.

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <evco/evco.hpp>

#include "args.hpp"

namespace {

using namespace std::chrono_literals;

constexpr std::size_t max_line = 4096;         // bytes, "\n" included
constexpr std::size_t max_name = 32;           // bytes
constexpr std::size_t queued_lines = 64;       // per client, before it counts as too slow
constexpr std::size_t input_limit = 16 << 10;  // bytes read ahead from a client's socket
constexpr auto read_idle = 10min;
constexpr auto write_idle = 1min;
constexpr auto stop_deadline = 2s;

// One connection. Lives in its session's frame; the room lists it while the session runs.
struct client {
  client(evco::loop& lp, evco::stream st, unsigned n)
      : s(std::move(st)), out(lp, queued_lines), number(n) {}

  evco::stream s;
  evco::channel<std::string> out;  // lines for this client, written by write_lines()
  std::string name;                // empty until its first line is read
  std::string peer;                // its address, for the log
  std::string why;                 // why the server ended the connection, if it did
  unsigned number;
};

bool valid_name(std::string_view name) {
  return !name.empty() && name.size() <= max_name && !name.starts_with("guest") &&
         std::all_of(name.begin(), name.end(), [](char ch) {
           return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' || ch == '.';
         });
}

class room {
 public:
  explicit room(evco::loop& lp) noexcept : lp_(&lp) {}

  evco::loop& loop() const noexcept { return *lp_; }

  // Lists `c` from its construction to its destruction, whatever way its session ends.
  class member {
   public:
    member(room& r, client& c) : r_(r), c_(c) { r_.clients_.push_back(&c_); }
    member(const member&) = delete;
    member& operator=(const member&) = delete;
    ~member() { std::erase(r_.clients_, &c_); }

   private:
    room& r_;
    client& c_;
  };

  // `c`'s first line: its name, or guest<N>.
  void join(client& c, std::string_view wanted) {
    const bool taken = std::any_of(clients_.begin(), clients_.end(),
                                   [&](const client* o) { return o->name == wanted; });
    c.name =
        valid_name(wanted) && !taken ? std::string(wanted) : "guest" + std::to_string(c.number);
    std::fprintf(stderr, "[=] %s is %s\n", c.peer.c_str(), c.name.c_str());
    const auto others = std::count_if(clients_.begin(), clients_.end(),
                                      [&](const client* o) { return o != &c && !o->name.empty(); });
    // Its queue holds the greeting at most: nothing else goes to a client without a name.
    (void)c.out.try_send("* welcome " + c.name + ", " + std::to_string(others) + " others here\n");
    broadcast(c, "* " + c.name + " joined\n");
  }

  // Queues `line` for every named client but `from`, without waiting: a client with a full
  // queue is disconnected instead, so that it slows nobody down.
  void broadcast(const client& from, const std::string& line) {
    for (client* c : clients_) {
      if (c == &from || c->name.empty()) continue;
      auto sent = c->out.try_send(line);
      if (!sent && sent.error() == std::errc::resource_unavailable_try_again) {
        disconnect(*c, "too slow: " + std::to_string(queued_lines) + " lines queued");
      }
      // errc::closed: that client is on its way out already.
    }
  }

  // Ends `c`'s connection now: its writer stops (its queue is closed, the write it may be
  // parked in fails), and so does its reader (its stream is closed).
  static void disconnect(client& c, std::string why) {
    if (c.why.empty()) c.why = std::move(why);
    c.out.close();
    c.s.close();
  }

  // After `c`'s session ended.
  void left(const client& c) {
    const std::string how = c.why.empty() ? "left" : "disconnected: " + c.why;
    std::fprintf(stderr, "[-] %s (%s) %s\n", c.peer.c_str(),
                 c.name.empty() ? "no name yet" : c.name.c_str(), how.c_str());
    if (c.name.empty() || stopping_) return;
    broadcast(c, "* " + c.name + " left" + (c.why.empty() ? "" : " (" + c.why + ")") + "\n");
  }

  // Tells every client that the server stops, and closes their queues: each writer sends what
  // is queued, then closes its stream, which ends its reader too.
  void stop() {
    stopping_ = true;
    for (client* c : clients_) {
      (void)c->out.try_send(std::string("* server shutting down\n"));  // unless it is full
      c->out.close();
    }
  }

  std::size_t size() const noexcept { return clients_.size(); }

 private:
  evco::loop* lp_;
  std::vector<client*> clients_;
  bool stopping_ = false;
};

// Reads `c`'s lines until it leaves, breaks a limit, or its stream is closed under it (by
// its writer, or by room::disconnect). `r` and `c` by reference: session() awaits this at once.
evco::task<void> read_lines(room& r, client& c) {
  std::string line;
  for (;;) {
    line.clear();
    auto n = co_await c.s.read_until(line, "\n", max_line);
    if (!n) {
      const std::error_code ec = n.error();
      if (ec == evco::errc::limit_exceeded) {
        (void)c.out.try_send("* line longer than " + std::to_string(max_line) + " bytes, bye\n");
        c.why = "sent a line longer than " + std::to_string(max_line) + " bytes";
      } else if (ec == evco::errc::timed_out) {
        (void)c.out.try_send(std::string("* idle for too long, bye\n"));
        c.why = "idle for too long";
      } else if (ec == evco::errc::cancelled) {
        c.why = "still open at the shutdown deadline";
      } else if (ec != evco::errc::eof && ec != evco::errc::closed && c.why.empty()) {
        c.why = "read: " + ec.message();  // ECONNRESET, say
      }
      break;
    }
    line.pop_back();  // the "\n"
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (c.name.empty()) {
      r.join(c, line);
    } else if (!line.empty()) {
      r.broadcast(c, c.name + ": " + line + "\n");
      // A read completes at once while lines are buffered, so one read from the socket can
      // hold hundreds: let every writer run before the next one is fanned out, so that a
      // queue fills only when its client stops reading, not when another sends in bursts.
      co_await r.loop().yield();
    }
  }
  // The writer sends what is still queued (a farewell, say), then closes the stream.
  c.out.close();
}

// Writes `c`'s queued lines until its queue is closed and empty, or a write fails; then
// closes the stream (gracefully: what the kernel holds still goes out, then a FIN), which ends
// the reader if it is still reading.
evco::task<void> write_lines(client& c) {
  std::error_code ec;
  for (;;) {
    auto line = co_await c.out.receive();
    if (!line) {
      ec = line.error();  // errc::closed: everything queued was written
      break;
    }
    if (auto w = co_await c.s.write(line.value()); !w) {
      ec = w.error();
      break;
    }
  }
  if (c.why.empty()) {
    if (ec == evco::errc::timed_out) {
      c.why = "not reading";
    } else if (ec == evco::errc::cancelled) {
      c.why = "still open at the shutdown deadline";
    } else if (ec != evco::errc::closed) {
      c.why = "write: " + ec.message();  // EPIPE, ECONNRESET
    }
  }
  c.s.close();
}

evco::task<void> session(room& r, evco::stream s, unsigned number) {
  client c(r.loop(), std::move(s), number);
  const auto peer = c.s.remote_endpoint();
  c.peer = peer ? peer.value().to_string() : std::string("(peer already gone)");
  std::fprintf(stderr, "[+] %s connected\n", c.peer.c_str());
  c.s.set_timeouts(read_idle, write_idle);
  c.s.set_read_limit(input_limit);
  room::member listed(r, c);
  (void)c.out.try_send(std::string("* hello: the first line you send is your name\n"));
  // Either side ending ends the other: the reader closes the queue, the writer the stream.
  co_await evco::when_all(read_lines(r, c), write_lines(c));
  r.left(c);
}

bool out_of_resources(std::error_code ec) {
  return ec == std::errc::too_many_files_open || ec == std::errc::too_many_files_open_in_system ||
         ec == std::errc::no_buffer_space || ec == std::errc::not_enough_memory;
}

// Accepts clients into `conns` until the listener fails. `l` and `conns` by reference: serve()
// awaits this at once.
evco::task<evco::result<void>> accept_clients(room& r, evco::listener& l, evco::task_group& conns) {
  for (unsigned number = 1;; ++number) {
    auto accepted = co_await l.accept();
    if (!accepted) {
      // Running out of descriptors passes once clients leave; the listener rests before the
      // next accept, so retrying does not spin.
      if (!out_of_resources(accepted.error())) co_return accepted.error();
      std::fprintf(stderr, "[!] accept: %s\n", accepted.error().message().c_str());
      continue;
    }
    // A session never fails (it reports its own errors), so the group never stops on one.
    EVCO_TRYV(co_await conns.spawn(session(r, std::move(accepted).value(), number)));
  }
}

// Completes with SIGINT or SIGTERM; prints the loop's parked ops at each SIGUSR1.
evco::task<evco::result<int>> stop_signal(evco::loop& lp) {
  for (;;) {
    EVCO_TRY(const int sig, co_await evco::wait_signal(lp, {SIGINT, SIGTERM, SIGUSR1}));
    if (sig != SIGUSR1) co_return sig;
    lp.dump(stderr);
  }
}

evco::task<int> serve(evco::loop& lp, evco::listener l) {
  room r(lp);  // declared before the group: sessions use it until join() says they ended
  evco::task_group conns(lp);

  // Until a stop signal, or a failure of the listener: whichever ends cancels the other.
  auto ended = co_await evco::when_any(accept_clients(r, l, conns), stop_signal(lp));
  l.close();  // from now on the kernel refuses new connections
  int status = 0;
  if (ended.index() == 0) {
    std::fprintf(stderr, "[ERR] accept: %s\n", std::get<0>(ended).error().message().c_str());
    status = 1;
  } else if (const auto& sig = std::get<1>(ended); !sig) {
    std::fprintf(stderr, "[ERR] cannot watch SIGINT/SIGTERM/SIGUSR1: %s\n",
                 sig.error().message().c_str());
    status = 1;
  } else {
    std::fprintf(stderr, "[*] %s received, shutting down %zu connections\n",
                 sig.value() == SIGINT ? "SIGINT" : "SIGTERM", r.size());
  }

  r.stop();
  // A join cancelled by the deadline cancels the sessions, and still waits for them to end.
  if (auto joined = co_await evco::with_timeout(lp, conns.join(), stop_deadline); !joined) {
    if (joined.error() != evco::errc::timed_out) {
      std::fprintf(stderr, "[ERR] %s\n", joined.error().message().c_str());
      co_return 1;
    }
    std::fprintf(stderr, "[*] cut off the connections still open after %lld s\n",
                 static_cast<long long>(stop_deadline.count()));
  }
  std::fprintf(stderr, "[*] stopped\n");
  co_return status;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s ADDRESS PORT\n", argv[0]);
    return 2;
  }
  const auto ep = examples::parse_endpoint(argv[1], argv[2]);
  if (!ep) return 2;

  // Declared first: destroyed last.
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

  return lp.run(serve(lp, std::move(l)));
}
