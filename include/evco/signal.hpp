#pragma once
// wait_signal: awaiting POSIX signals on a loop.

#include <concepts>
#include <coroutine>
#include <cstdint>
#include <span>

#include "evco/detail/wait_queue.hpp"
#include "evco/error.hpp"
#include "evco/op_options.hpp"

namespace evco {

class loop;

/// The signals a wait_signal takes: `{SIGINT, SIGTERM}`, a single `SIGHUP`, or a span of
/// numbers. A value (one bit per signal: Linux numbers them 1 to 64), so the list it was made
/// from may go at once. A number outside 1 to 64 makes the set invalid.
///
/// Not an initializer_list on purpose: g++ 11 and 12 reject a braced list in a co_await
/// expression when it becomes an initializer_list ("array used as initializer"), and
/// `co_await wait_signal(lp, {SIGINT, SIGTERM})` is the way this is meant to be written.
class signal_set {
 public:
  template <std::convertible_to<int>... Signals>
  signal_set(Signals... signals) noexcept {
    (add(static_cast<int>(signals)), ...);
  }
  explicit signal_set(std::span<const int> signals) noexcept {
    for (int s : signals)
      add(s);
  }

  bool empty() const noexcept { return mask_ == 0; }
  bool contains(int sig) const noexcept { return sig >= 1 && sig <= 64 && (mask_ & bit(sig)); }
  /// Every number given was within 1 to 64.
  bool valid() const noexcept { return valid_; }
  std::uint64_t mask() const noexcept { return mask_; }

 private:
  static constexpr std::uint64_t bit(int sig) noexcept { return std::uint64_t{1} << (sig - 1); }
  void add(int sig) noexcept {
    if (sig < 1 || sig > 64) {
      valid_ = false;
    } else {
      mask_ |= bit(sig);
    }
  }
  std::uint64_t mask_ = 0;
  bool valid_ = true;
};

namespace detail {

struct [[nodiscard]] signal_op : queued_op {
  signal_op(loop& l, signal_set s, op_options o) noexcept;
  ~signal_op();

  bool await_ready() noexcept;
  bool await_suspend(std::coroutine_handle<> h) noexcept;
  result<int> await_resume() noexcept;

  signal_set signals;
  int signo = 0;          // the signal that completed the wait, or woke it
  bool woken_by = false;  // woken by signo and not resumed yet: counted in lib/signal.cpp
};

}  // namespace detail

/// Completes with the number of the first of `signals` delivered to the process, resumed from
/// the loop (never inline, not from the signal handler). Every wait parked on a signal when it
/// arrives completes with it, once each.
///
/// A wait takes its signal when it resumes. One whose stop is requested, or whose deadline
/// passes, after a signal woke it but before it resumed completes with errc::cancelled or
/// errc::timed_out instead; if none of the waits that signal woke took it, it stays pending
/// (below) as if nobody had waited for it. So a wait_signal that loses a race and is cancelled
/// (a `when_any` loser) does not swallow the signal.
///
/// A signal delivered while no wait on `lp` includes it is not lost: it stays pending, and the
/// next wait that includes it completes at once with it, without suspending (the earliest one
/// when several of its signals are pending). Like the kernel's own pending set for standard
/// signals, and Asio's signal_set, it keeps at most one per signal: deliveries that pile up
/// while nobody waits coalesce into one.
///
/// The first wait for a signal installs libevent's handler for it (sigaction, through
/// evsignal_new on `lp.native_handle()`), and the loop keeps it, so that deliveries between two
/// waits are kept as above: from then on the signal never takes its default action (a SIGINT no
/// longer ends the process), until the loop is destroyed and the previous disposition is
/// restored. libevent delivers signals to one event_base at a time, so only one loop in the
/// process may wait for signals: from the first wait until its destruction it owns them, and a
/// wait on any other loop fails with std::errc::device_or_resource_busy. (A libevent signal
/// event of your own on another base would take them away unnoticed: use wait_signal instead.)
///
/// std::errc::invalid_argument, at once, for an empty set or a number that is not a signal,
/// one that cannot be caught (SIGKILL, SIGSTOP), one that glibc keeps for itself (32, 33) or
/// a fault (SIGSEGV, SIGBUS, SIGFPE, SIGILL: a handler that returns runs the faulting
/// instruction again). errc::timed_out and errc::cancelled after `o`'s timeout or stop
/// request. Must be awaited on the loop's thread.
///
/// ```cpp
/// auto sig = co_await evco::wait_signal(lp, {SIGINT, SIGTERM});
/// ```
inline detail::signal_op wait_signal(loop& lp, signal_set signals, op_options o = {}) noexcept {
  return {lp, signals, std::move(o)};
}

}  // namespace evco
