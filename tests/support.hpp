#pragma once
// Shared test helpers: readable error codes, loopback pairs, fd counting.

#include <doctest/doctest.h>

#include <dirent.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <string>
#include <system_error>
#include <vector>

#include "evco/evco.hpp"

namespace doctest {
template <>
struct StringMaker<std::error_code> {
  static String convert(const std::error_code& ec) {
    return (std::string(ec.category().name()) + ": " + ec.message()).c_str();
  }
};
}  // namespace doctest

namespace evco::test {

/// The error of a failed result, or a default error_code for a success (so CHECKs print it).
template <class R>
std::error_code error_of(const R& r) {
  return r ? std::error_code{} : r.error();
}

inline std::size_t open_fds() {
  std::size_t n = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (readdir(d) != nullptr)
      ++n;
    closedir(d);
  }
  return n;
}

struct tcp_pair {
  stream client;
  stream server;
};

/// Runs `body(lp)` to completion on a loop of its own: the body of most test cases.
template <class F>
void run_on_loop(F body) {
  loop lp;
  lp.run(body(lp));
}

/// A connected loopback pair (127.0.0.1, port 0).
inline task<result<tcp_pair>> make_pair(loop& lp) {
  EVCO_TRY(auto l, listener::bind(lp, endpoint::v4_loopback()));
  EVCO_TRY(auto ep, l.local_endpoint());
  EVCO_TRY(auto c, co_await connect(lp, ep));
  EVCO_TRY(auto s, co_await l.accept());
  co_return tcp_pair{std::move(c), std::move(s)};
}

/// A connected pair, or a failed test.
inline task<tcp_pair> connected_pair(loop& lp) {
  auto r = co_await test::make_pair(lp);
  REQUIRE_MESSAGE(r.has_value(), error_of(r));
  co_return std::move(r).value();
}

/// A bound socket that does not listen: connecting to it is refused, and nobody else can take
/// the port meanwhile.
struct bound_port {
  int fd = -1;
  endpoint ep;
  /// Binds `at` (port 0 picks one); false where that address is unavailable (no IPv6).
  bool bind(const endpoint& at = endpoint::v4_loopback()) {
    fd = ::socket(at.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int one = 1;
    if (at.is_v6()) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (fd < 0 || ::bind(fd, at.data(), at.size()) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
      return false;
    }
    ep = endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len).value();
    return true;
  }
  ~bound_port() {
    if (fd >= 0) ::close(fd);
  }
};

/// A listener with a one-slot backlog that never accepts, filled until the kernel drops SYNs:
/// connects to it hang until their budget runs out.
struct full_backlog {
  listener l;
  std::vector<stream> queued;
  endpoint ep;
  static task<result<void>> fill(loop& lp, full_backlog* self,
                                 endpoint at = endpoint::v4_loopback()) {
    listen_options lo;
    lo.backlog = 0;
    lo.v6_only = true;
    EVCO_TRY(self->l, listener::bind(lp, at, lo));
    EVCO_TRY(self->ep, self->l.local_endpoint());
    for (int i = 0; i < 64; ++i) {
      connect_options o;
      o.timeout = std::chrono::milliseconds(50);
      auto c = co_await evco::connect(lp, self->ep, o);
      if (!c) {
        if (c.error() == errc::connect_timed_out) co_return success();
        co_return c.error();
      }
      self->queued.push_back(std::move(c).value());
    }
    co_return std::make_error_code(std::errc::resource_unavailable_try_again);
  }
};

/// A one-shot flag a test coroutine can await; set() resumes the waiter.
struct signal {
  bool is_set = false;
  std::coroutine_handle<> waiting;
  void set() {
    is_set = true;
    if (auto h = std::exchange(waiting, {})) h.resume();
  }
  bool await_ready() const noexcept { return is_set; }
  void await_suspend(std::coroutine_handle<> h) noexcept { waiting = h; }
  void await_resume() const noexcept {}
};

/// Cancels an op from a spawned task, which starts from the loop once the op parked, and
/// records whether the op had resumed by the time request_stop() returned. It must not have:
/// cancellation resumes from the loop, never inline.
struct stop_probe {
  std::stop_source src;
  bool op_resumed = false;
  bool resumed_inside_request_stop = true;

  void stop_from_loop(loop& lp) {
    lp.spawn(stop(this), [](std::exception_ptr) { FAIL("stop_probe"); });
  }

 private:
  static task<void> stop(stop_probe* p) {
    p->src.request_stop();
    p->resumed_inside_request_stop = p->op_resumed;
    co_return;
  }
};

/// Keeps the thread busy for `d` without yielding to the loop: the rest of a long callback,
/// which leaves libevent's cached time (the loop turn's start) `d` behind.
inline void busy_for(duration d) {
  const auto until = clock::now() + d;
  while (clock::now() < until) {
  }
}

/// The calling thread's CPU time: a wait that costs next to none of it is no busy loop.
inline duration thread_cpu() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
}

/// Fills the fd table up to a lowered soft limit; restores both on destruction.
struct fd_exhaustion {
  rlimit saved{};
  std::vector<int> fillers;
  fd_exhaustion() {
    REQUIRE(getrlimit(RLIMIT_NOFILE, &saved) == 0);
    const rlimit low{evco::test::open_fds() + 16, saved.rlim_max};
    REQUIRE(setrlimit(RLIMIT_NOFILE, &low) == 0);
    for (int fd; (fd = dup(0)) >= 0;)
      fillers.push_back(fd);
    REQUIRE(errno == EMFILE);
  }
  ~fd_exhaustion() {
    for (int fd : fillers)
      ::close(fd);
    setrlimit(RLIMIT_NOFILE, &saved);
  }
};

/// Captures what the process writes to stderr (fd 2) while it lives; text() reads it back.
struct stderr_capture {
  std::FILE* file = std::tmpfile();
  int saved = ::dup(2);
  stderr_capture() {
    REQUIRE(file != nullptr);
    std::fflush(stderr);
    ::dup2(::fileno(file), 2);
  }
  std::string text() {
    std::fflush(stderr);
    std::string out;
    std::rewind(file);
    for (int c; (c = std::fgetc(file)) != EOF;)
      out += static_cast<char>(c);
    return out;
  }
  ~stderr_capture() {
    std::fflush(stderr);
    ::dup2(saved, 2);
    ::close(saved);
    std::fclose(file);
  }
};

inline std::string pattern(std::size_t n, unsigned seed = 1) {
  std::string s(n, '\0');
  std::uint32_t x = seed * 2654435761u + 1;
  for (auto& c : s) {
    x = x * 1103515245u + 12345u;
    c = static_cast<char>(x >> 24);
  }
  return s;
}

}  // namespace evco::test
