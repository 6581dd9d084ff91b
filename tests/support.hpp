#pragma once
// Shared test helpers: readable error codes, loopback pairs, fd counting.

#include <doctest/doctest.h>

#include <dirent.h>

#include <cstddef>
#include <string>
#include <system_error>

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
  auto r = co_await make_pair(lp);
  REQUIRE_MESSAGE(r.has_value(), error_of(r));
  co_return std::move(r).value();
}

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
