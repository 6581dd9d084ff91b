#include "evco/connect.hpp"
#include "evco/tls.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <exception>
#include <memory>
#include <optional>

#include "evco/dns.hpp"
#include "evco/loop.hpp"
#include "event_op.hpp"
#include "stream/state.hpp"

namespace evco {
namespace {

std::error_code last_error() noexcept {
  return {errno, std::system_category()};
}

struct socket_guard {
  int fd;
  ~socket_guard() {
    if (fd >= 0) ::close(fd);
  }
  int release() noexcept { return std::exchange(fd, -1); }
};

// Waits until a non-blocking connect on `fd` to `target` finished; reads its outcome from
// SO_ERROR.
struct connect_wait : detail::event_op {
  int fd;
  duration timeout;
  const endpoint& target;

  connect_wait(loop& l, int f, const endpoint& to, duration t, std::stop_token st)
      : event_op(l, std::move(st), &on_event, parked_type), fd(f), timeout(t), target(to) {}

  // loop::parked(): the local end it connects from, and the target.
  static void describe(const detail::parked_op& p, parked_op_info& out) {
    const auto& self = static_cast<const connect_wait&>(p);
    detail::describe_socket(self.fd, out);
    out.remote = self.target;
    describe_deadline(p, out);
  }
  static constexpr detail::parked_op_type parked_type{"connect", &describe};

  bool await_ready() noexcept { return false; }
  bool await_suspend(std::coroutine_handle<> h) {
    return park(h, detail::deadline_after(timeout), fd, EV_WRITE);
  }
  result<void> await_resume() const noexcept {
    if (ec) return ec;
    return success();
  }

  static void on_event(evutil_socket_t, short what, void* arg) {
    auto& self = *static_cast<connect_wait*>(arg);
    if (self.cancelled()) return self.finish(errc::cancelled);
    if (what & EV_TIMEOUT) return self.finish(errc::connect_timed_out);
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(self.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    self.finish(err != 0 ? std::error_code(err, std::system_category()) : std::error_code{});
  }
};

}  // namespace

task<result<stream>> connect(loop& lp, endpoint ep, connect_options o, std::stop_token stop) {
  co_await detail::internal_frame{};
  if (stop.stop_requested()) co_return errc::cancelled;
  socket_guard sock{::socket(ep.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)};
  if (sock.fd < 0) co_return last_error();
  if (o.no_delay && !ep.is_unix()) {
    const int one = 1;
    setsockopt(sock.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  if (::connect(sock.fd, ep.data(), ep.size()) != 0) {
    if (errno != EINPROGRESS) co_return last_error();
    EVCO_TRYV(co_await connect_wait{lp, sock.fd, ep, o.timeout, std::move(stop)});
  }
  co_return detail::make_socket_stream(lp, sock.release());
}

// Hostname connect: resolve, then Happy Eyeballs (RFC 8305) over the public endpoint connect.
namespace {

// Shared by the hostname connect and its attempts (each a spawned coroutine, owned by the loop),
// so that neither side depends on the other's frame: an attempt that finishes after the
// connect returned, or after its frame was destroyed, only writes here.
struct race_state {
  explicit race_state(loop& l) noexcept : lp(l) {}
  loop& lp;
  std::stop_source stop;  // cancels every attempt still running
  std::vector<connect_report::attempt> attempts;
  std::optional<stream> winner;
  std::size_t winner_index = 0;
  std::size_t running = 0;
  std::size_t failures = 0;
  std::error_code last_error;
  bool finished = false;  // the connect has returned (or its frame is gone)
  std::exception_ptr exception;
  event* wake = nullptr;  // the connect's race_wait event while it is parked

  // RFC 8305 section 3: AAAA and A are looked up apart, so that the first answer can start
  // connecting. Each holds its addresses not tried yet.
  struct family {
    bool asked = false;  // a lookup was started (not for a numeric host)
    bool done = false;
    clock::time_point at{};  // when the answer came
    std::error_code error;
    std::size_t answered = 0;     // addresses in the answer
    std::vector<endpoint> addrs;  // those not tried yet
  };
  family v6, v4;

  void notify() noexcept {
    if (wake) event_active(wake, EV_TIMEOUT, 0);
  }
};

task<void> run_attempt(loop& lp, std::shared_ptr<race_state> st, std::size_t i, connect_options o) {
  co_await detail::internal_frame{};
  const endpoint ep = st->attempts[i].address;
  auto r = co_await connect(lp, ep, o, st->stop.get_token());
  --st->running;
  if (!r) {
    st->attempts[i].error = st->last_error = r.error();
    ++st->failures;
  } else if (st->finished || st->winner) {
    // Connected too late: the stream closes when `r` goes, so no fd outlives the race.
    st->attempts[i].error = errc::cancelled;
  } else {
    st->winner.emplace(std::move(r).value());
    st->winner_index = i;
  }
  st->notify();
}

task<void> run_lookup(loop& lp, std::shared_ptr<race_state> st, std::string host,
                      std::uint16_t port, int family, duration budget) {
  co_await detail::internal_frame{};
  resolve_options ro;
  ro.family = family;
  ro.timeout = budget;
  auto r = co_await resolve(lp, std::move(host), port, ro, st->stop.get_token());
  race_state::family& f = family == AF_INET6 ? st->v6 : st->v4;
  f.done = true;
  f.at = clock::now();
  if (r) {
    f.addrs = std::move(r).value();
    f.answered = f.addrs.size();
  } else {
    f.error = r.error();
  }
  st->notify();
}

// When neither family has an address: the more telling of the two errors (a missing name, a
// failure or a timeout rather than "no address of this family").
std::error_code resolve_error(const race_state& st) noexcept {
  const auto telling = [](const std::error_code& e) { return e && e != dns_errc::no_address; };
  if (telling(st.v4.error)) return st.v4.error;
  if (telling(st.v6.error)) return st.v6.error;
  return st.v4.error ? st.v4.error : st.v6.error;
}

// Parks the connect to `host` until an attempt reports, `until` passes, or `stop` is requested.
struct race_wait : detail::event_op {
  race_wait(loop& l, race_state& s, clock::time_point u, std::stop_token t, const std::string& h,
            std::uint16_t p)
      : event_op(l, std::move(t), &on_event, parked_type), st(s), until(u), host(h), port(p) {}

  // loop::parked(): the host and port (the attempts, parked on their own, show the addresses).
  static void describe(const detail::parked_op& p, parked_op_info& out) {
    const auto& self = static_cast<const race_wait&>(p);
    out.host = self.host + ':' + std::to_string(self.port);
    describe_deadline(p, out);
  }
  static constexpr detail::parked_op_type parked_type{"connect", &describe};
  ~race_wait() {
    if (ev && st.wake == ev.get()) st.wake = nullptr;
  }

  bool await_ready() const noexcept { return stop.stop_requested(); }
  bool await_suspend(std::coroutine_handle<> h) {
    if (!park(h, until, -1, 0, true)) return false;
    st.wake = ev.get();
    return true;
  }
  // errc::cancelled when the wait ended on a stop request (the connect's own token, or the one
  // its task inherited, which only the op sees: co_await merges it into `stop`), the error when
  // it could not park (out of memory), else nothing: the race has news.
  std::error_code await_resume() const noexcept {
    if (stop.stop_requested()) return errc::cancelled;
    return ec;
  }

  static void on_event(evutil_socket_t, short, void* arg) {
    auto& self = *static_cast<race_wait*>(arg);
    self.st.wake = nullptr;
    self.finish({});
  }

  race_state& st;
  clock::time_point until;
  const std::string& host;
  std::uint16_t port;
};

// However the connect ends (returns, throws, or its frame is destroyed), the attempts still
// running are cancelled; they hold the state until they finish.
struct race_finisher {
  race_state& st;
  ~race_finisher() {
    st.finished = true;
    st.wake = nullptr;
    st.stop.request_stop();
  }
};

// `budget` capped by what is left until `deadline`.
// A negative budget has already expired (as for every evco limit), and stays so.
duration capped(duration budget, clock::time_point deadline, clock::time_point now) {
  if (deadline == clock::time_point::max() || budget < duration::zero()) return budget;
  const duration left = std::max<duration>(deadline - now, duration(1));
  return budget > duration::zero() ? std::min(budget, left) : left;
}

}  // namespace

std::string connect_report::to_string() const {
  if (failed == connect_phase::handshake) {
    return "handshake: " + std::string(handshake_error.category().name()) + ": " +
           handshake_error.message();
  }
  if (failed == connect_phase::resolve) {
    return "resolve: " + std::string(resolve_error.category().name()) + ": " +
           resolve_error.message();
  }
  std::string s;
  for (const auto& a : attempts) {
    if (!s.empty()) s += "; ";
    s += a.address.to_string() + ": " + (a.error ? a.error.message() : "connected");
  }
  if (s.empty()) s = failed == connect_phase::none ? "connected" : "no attempt";
  for (const auto& l : lookups) {
    s += l.family == AF_INET6 ? "; AAAA: " : "; A: ";
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(l.after).count();
    switch (l.outcome) {
      case lookup::state::pending:
        s += "still out";
        break;
      case lookup::state::answered:
        s += std::to_string(l.addresses) + (l.addresses == 1 ? " address" : " addresses");
        s += " after " + std::to_string(ms) + " ms";
        break;
      case lookup::state::failed:
        s += l.error.message() + " after " + std::to_string(ms) + " ms";
        break;
    }
  }
  return s;
}

task<result<stream>> connect(loop& lp, std::string host, std::uint16_t port, connect_options o,
                             std::stop_token stop) {
  co_await detail::internal_frame{};
  const auto started = clock::now();
  const auto deadline = o.total_timeout > duration::zero()
                            ? detail::saturating_add(started, o.total_timeout)
                            : clock::time_point::max();
  connect_report* const report = o.report;
  if (report) *report = {};
  if (stop.stop_requested()) {
    if (report) report->failed = connect_phase::resolve;
    co_return errc::cancelled;
  }

  std::string server_name = o.tls ? host : std::string();
  auto st = std::make_shared<race_state>(lp);
  race_finisher finisher{*st};
  if (auto ep = endpoint::parse(host, port)) {
    (ep.value().is_v6() ? st->v6 : st->v4).addrs.push_back(ep.value());
    st->v6.done = st->v4.done = true;
  } else {
    const duration budget = capped(o.resolve_timeout, deadline, clock::now());
    for (const int family : {AF_INET6, AF_INET}) {
      (family == AF_INET6 ? st->v6 : st->v4).asked = true;
      lp.spawn(run_lookup(lp, st, host, port, family, budget), [st](std::exception_ptr e) {
        st->exception = e;
        st->notify();
      });
    }
  }

  bool v6_next = true;  // the families alternate, IPv6 first
  std::size_t failures_seen = 0;
  auto next_at = clock::now();
  std::error_code ec;
  bool resolve_failed = false;
  for (;;) {
    if (st->exception) std::rethrow_exception(st->exception);
    if (st->winner) break;
    const auto now = clock::now();
    if (stop.stop_requested()) {
      ec = errc::cancelled;
      resolve_failed = st->attempts.empty();
      break;
    }
    const bool resolving = !st->v6.done || !st->v4.done;
    // IPv6 addresses start at once; IPv4 ones alone wait up to the resolution delay for the
    // IPv6 answer (RFC 8305 section 3), and for no more than half of what was left of the
    // total budget then, so that the address in hand still gets its try.
    duration delay = o.resolution_delay;
    if (deadline != clock::time_point::max() && st->v4.at < deadline) {
      delay = std::min(delay, (deadline - st->v4.at) / 2);
    }
    const auto v4_start = std::min(detail::saturating_add(st->v4.at, delay), deadline);
    const bool can_v6 = !st->v6.addrs.empty();
    const bool can_v4 = !st->v4.addrs.empty() && (st->v6.done || now >= v4_start);
    // Until there is an address to try, the lookups' own budgets (capped by the deadline)
    // end the wait, as a resolve failure.
    const bool connecting = !st->attempts.empty() || can_v6 || can_v4;
    if (now >= deadline && connecting) {
      // Every attempt failed while the other family's lookup was still out: that is the error.
      const bool all_failed = st->running == 0 && !st->attempts.empty() && st->last_error;
      ec = all_failed ? st->last_error : make_error_code(errc::connect_timed_out);
      break;
    }
    // The next address starts when the delay is up, or at once when an attempt failed.
    if ((can_v6 || can_v4) &&
        (now >= next_at || st->failures > failures_seen || st->running == 0)) {
      failures_seen = st->failures;
      const bool take_v6 = can_v6 && (v6_next || !can_v4);
      v6_next = !take_v6;
      auto& list = (take_v6 ? st->v6 : st->v4).addrs;
      const endpoint ep = list.front();
      list.erase(list.begin());
      connect_options ao = o;
      ao.report = nullptr;
      ao.timeout = capped(o.timeout, deadline, now);
      const std::size_t i = st->attempts.size();
      st->attempts.push_back({ep, {}});
      ++st->running;
      lp.spawn(run_attempt(lp, st, i, ao), [st](std::exception_ptr e) {
        st->exception = e;
        st->notify();
      });
      next_at = detail::saturating_add(now, o.happy_eyeballs_delay);
      continue;
    }
    if (!resolving && st->v6.addrs.empty() && st->v4.addrs.empty() && st->running == 0) {
      resolve_failed = st->attempts.empty();
      ec = resolve_failed ? resolve_error(*st) : st->last_error;
      break;
    }
    auto until = connecting ? deadline : clock::time_point::max();
    if (can_v6 || can_v4) {
      until = std::min(until, next_at);
    } else if (!st->v4.addrs.empty()) {
      until = std::min(until, v4_start);
    }
    race_wait w(lp, *st, until, stop, host, port);
    if (const std::error_code e = co_await w) {
      ec = e;
      resolve_failed = st->attempts.empty();
      break;
    }
  }

  // The race is over: cancel the lookup and the attempts still out before any handshake.
  st->finished = true;
  st->wake = nullptr;
  st->stop.request_stop();

  if (report) {
    report->attempts = st->attempts;
    for (std::size_t i = 0; i < report->attempts.size(); ++i) {
      auto& a = report->attempts[i];
      report->addresses.push_back(a.address);
      if (!a.error && (ec || i != st->winner_index)) a.error = ec ? ec : errc::cancelled;
    }
    // Then those never tried, in the order they would have been.
    detail::alternate(v6_next ? st->v6.addrs : st->v4.addrs, v6_next ? st->v4.addrs : st->v6.addrs,
                      report->addresses);
    for (const race_state::family* f : {&st->v6, &st->v4}) {
      if (!f->asked) continue;
      connect_report::lookup l;
      l.family = f == &st->v6 ? AF_INET6 : AF_INET;
      if (f->done) {
        l.outcome = f->error ? connect_report::lookup::state::failed
                             : connect_report::lookup::state::answered;
        l.error = f->error;
        l.addresses = f->answered;
        l.after = f->at - started;
      }
      report->lookups.push_back(l);
    }
    if (resolve_failed) {
      report->failed = connect_phase::resolve;
      report->resolve_error = ec;
    } else {
      report->failed = ec ? connect_phase::connect : connect_phase::none;
    }
  }
  if (ec) co_return ec;
  if (!o.tls) co_return std::move(*st->winner);
  auto tls = co_await tls_client(std::move(*st->winner), *o.tls, std::move(server_name),
                                 capped(o.handshake_timeout, deadline, clock::now()), stop);
  if (!tls && report) {
    report->failed = connect_phase::handshake;
    report->handshake_error = tls.error();
  }
  co_return tls;
}

}  // namespace evco
