#pragma once
// loop: one event_base, driven on one thread; runs, spawns and resumes coroutines.

#include <coroutine>
#include <cstdio>
#include <exception>
#include <functional>
#include <memory>
#include <span>
#include <system_error>
#include <vector>

#include "evco/detail/parked_op.hpp"
#include "evco/detail/waiter.hpp"
#include "evco/endpoint.hpp"
#include "evco/error.hpp"
#include "evco/parked.hpp"
#include "evco/task.hpp"
#include "evco/timer.hpp"

struct event_base;
struct evdns_base;

namespace evco {

class loop;

namespace detail {
struct signal_table;
struct op_limits;

// evco's own way into a loop, for lib/ and the inline awaiters; not part of the API.
struct loop_access {
  // Resume `w` from the loop during the current or next turn.
  static void schedule(loop& lp, waiter& w) noexcept;
  // Resume `w` from the loop once it has polled its sockets again.
  static void schedule_after_poll(loop& lp, waiter& w) noexcept;
  // Take `w` off the ready list if it is queued.
  static void unschedule(loop& lp, waiter& w) noexcept;
  // Things the loop owns until they finish (spawned frames, streams closing in the
  // background); ~loop destroys those still there.
  static void adopt(loop& lp, owned& o) noexcept;
  static void release(loop& lp, owned& o) noexcept;
  // Puts `t` on the timer queue for `deadline` (re-arming it if it was armed); a deadline of
  // time_point::max() never comes, so it only disarms. Throws std::bad_alloc when the queue
  // cannot grow.
  static void arm(loop& lp, timer_node& t, clock::time_point deadline);
  static void disarm(loop& lp, timer_node& t) noexcept;
  // A stop request reached `l` (from any thread): the loop calls its `ended` with
  // errc::cancelled during a later turn, unless unstopped() took it back first (on the loop's
  // thread, once its stop callback can no longer run).
  static void stopped(loop& lp, op_limits& l) noexcept;
  static void unstopped(loop& lp, op_limits& l) noexcept;
  // The loop's evdns_base, created on first use (never the blocking resolver).
  static result<evdns_base*> dns(loop& lp);
  // How long the resolver itself keeps trying (dns_timeout * dns_attempts).
  static duration dns_budget(const loop& lp) noexcept;
  // A DNS lookup whose libevent callback is still to come. The loop owns `o` until the lookup
  // lets go of it (its destroy cancels the lookup); ~loop waits for the callbacks of every
  // lookup started (dns_lookup_ended) before it frees the evdns_base.
  static void dns_lookup_started(loop& lp, owned& o) noexcept;
  static void dns_lookup_ended(loop& lp) noexcept;
  // The loop's signal watches (lib/signal.cpp), made on first use; ~loop frees them after
  // every frame, before the base. std::errc::device_or_resource_busy while another loop has
  // them (libevent delivers signals to one base at a time).
  static result<signal_table*> signals(loop& lp);
  // Lists `op`, a `type`, on the loop's registry of parked ops (loop::parked()) from now until
  // op.unlist(). Not while it is listed already. Inline: every op that parks passes here.
  static void list_parked(loop& lp, parked_op& op, const parked_op_type& type) noexcept;
};

// co_await lp.yield(): back on the ready list, behind everything already there.
struct [[nodiscard]] yield_awaiter : waiter {
  explicit yield_awaiter(loop& l) noexcept : lp(&l) {}
  yield_awaiter(const yield_awaiter&) = delete;
  yield_awaiter& operator=(const yield_awaiter&) = delete;
  ~yield_awaiter();
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) noexcept;
  void await_resume() const noexcept {}
  loop* lp;
};
}  // namespace detail

struct loop_options {
  /// Set SIGPIPE to SIG_IGN when it is still SIG_DFL, so that writing to a closed peer is an
  /// EPIPE value rather than the death of the process (libevent writes with writev, which has
  /// no MSG_NOSIGNAL). A handler the application installed itself is left alone.
  bool ignore_sigpipe = true;
  /// DNS: how long the resolver waits for a reply before it sends the query again, and how
  /// many times it sends it. A lookup still unanswered after dns_timeout * dns_attempts fails
  /// with dns_errc::timed_out. Kept within 1 ms to 1 h, and 1 to 254 attempts.
  duration dns_timeout = std::chrono::seconds(2);
  int dns_attempts = 2;
};

/// One loop per thread, one thread per loop. Every coroutine parked on evco is resumed from
/// the loop that owns the operation; post() is the only member that other threads may call.
class loop {
 public:
  /// Makes the loop's event_base. Throws std::system_error when it cannot: EMFILE or ENFILE
  /// when no file descriptor is free, ENOMEM when out of memory (libevent's own fatal-error
  /// exit is never reached: the descriptors it needs are checked first).
  loop() : loop(loop_options{}) {}
  explicit loop(loop_options opts);
  /// Destroys every spawned frame still parked here (and so every frame they await), then
  /// every stream still closing in the background; no callback runs afterwards.
  ~loop();
  loop(const loop&) = delete;
  loop& operator=(const loop&) = delete;

  /// Drives the loop until `t` finishes; returns its value or rethrows its exception.
  /// Spawned tasks keep running while it does, and stay parked when it returns.
  template <class T>
  T run(task<T> t);

  /// Starts `t` detached (from the loop, not inline). An exception escaping it goes to
  /// `on_exception`; there is no overload without a sink, so failures are never dropped.
  void spawn(task<void> t, std::function<void(std::exception_ptr)> on_exception);
  /// Starts `t` detached; a failed result goes to `on_error`. An exception escaping `t` is a
  /// bug: it is printed and std::terminate is called, as for an exception leaving a thread.
  void spawn(task<result<void>> t, std::function<void(std::error_code)> on_error);

  /// Runs `f` on the loop's thread during a later loop turn. Thread-safe; wakes the loop.
  /// `f` must not throw (it runs inside libevent's callback): an exception terminates.
  /// Throws std::invalid_argument for an empty `f`.
  void post(detail::unique_function f);

  /// Suspends the caller and resumes it from this loop once the sockets were polled again
  /// and every coroutine already ready ran: a fairness point for long loops that never
  /// wait (Asio's `co_await post(use_awaitable)`). Must be awaited on the loop's thread.
  detail::yield_awaiter yield() noexcept { return detail::yield_awaiter(*this); }

  event_base* native_handle() const noexcept { return base_; }

  /// Lists every operation parked on this loop (stream ops, accept, connect, handshake, sleep,
  /// resolve): what it is, its endpoints, how long it has waited, the time left to its
  /// deadline, and the chain of tasks awaiting it. For debugging a hang; call it on the loop's
  /// thread. Parking costs no allocation: this walks an intrusive list.
  std::vector<parked_op_info> parked() const;
  /// Writes parked() to `out`, one line per op after a line with their count:
  /// `read_some 127.0.0.1:4000 <- 127.0.0.1:53122  waited 2.31 s  no deadline  in
  /// handle(evco::stream) echo_server.cpp:40 <- (spawned)`.
  void dump(std::FILE* out) const;

  /// Sends this loop's DNS queries to `servers` instead of the nameservers of
  /// /etc/resolv.conf (which are used when this is never called). Names in /etc/hosts still
  /// resolve without a query. Fails with std::errc::invalid_argument, changing nothing, for
  /// an empty list or a server with port 0 or the unspecified address.
  result<void> set_nameservers(std::span<const endpoint> servers);

 private:
  friend struct detail::loop_access;
  struct impl;
  // Marks the loop as running for the whole of run(), task start included, so that a nested
  // run() (a coroutine calling run() on its own loop) throws instead of re-entering libevent.
  struct running_guard {
    explicit running_guard(loop& lp);
    ~running_guard();
    loop& lp;
  };
  void run_until_done(std::coroutine_handle<> done);
  static std::coroutine_handle<> make_done_signal(loop& lp);

  event_base* base_;           // cached from impl_ for native_handle()
  detail::parked_op* parked_;  // cached from impl_: the head of its registry of parked ops
  std::unique_ptr<impl> impl_;
};

inline void detail::loop_access::list_parked(loop& lp, parked_op& op,
                                             const parked_op_type& type) noexcept {
  parked_op& head = *lp.parked_;
  op.since = coarse_now();
  op.type = &type;
  op.next_parked = &head;
  op.prev_parked = head.prev_parked;
  head.prev_parked->next_parked = &op;
  head.prev_parked = &op;
}

inline detail::yield_awaiter::~yield_awaiter() {
  loop_access::unschedule(*lp, *this);
}
inline void detail::yield_awaiter::await_suspend(std::coroutine_handle<> h) noexcept {
  handle = h;
  loop_access::schedule_after_poll(*lp, *this);
}

template <class T>
T loop::run(task<T> t) {
  auto h = t.handle();
  if (!h) throw std::invalid_argument("evco::loop::run: empty task");
  running_guard running(*this);
  h.promise().set_origin(detail::task_origin::run);
  if (!h.done()) {
    struct signal {
      std::coroutine_handle<> h;
      ~signal() { h.destroy(); }
    } done{make_done_signal(*this)};
    if (h.promise().start(h, done.h)) run_until_done(done.h);
  }
  return h.promise().take();
}

}  // namespace evco
