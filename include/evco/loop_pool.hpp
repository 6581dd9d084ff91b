#pragma once
// loop_pool and run_on_threads: one loop per thread, a task on each, stopped together.

#include <concepts>
#include <csignal>
#include <cstddef>
#include <memory>
#include <stop_token>
#include <type_traits>
#include <utility>
#include <vector>

#include "evco/detail/waiter.hpp"
#include "evco/error.hpp"
#include "evco/task.hpp"

namespace evco {

class loop;
class loop_pool;

struct run_options {
  /// Signals that stop the pool, as loop_pool::request_stop() does; empty: none is watched.
  /// They are watched from the start of run() to its end, on a loop of the calling thread's
  /// own (libevent delivers signals to one event_base at a time: while they are, wait_signal on
  /// any other loop fails with std::errc::device_or_resource_busy), and their previous
  /// dispositions are restored when run() returns. A signal that arrives again while the pool
  /// stops is caught and ignored.
  std::vector<int> stop_signals = {SIGINT, SIGTERM};
  /// A stop request from code: requesting it (from any thread) stops the pool.
  std::stop_token stop;
};

namespace detail {

// What loop_pool::run needs of its `fn`, without its type (lib/loop_pool.cpp).
struct pool_task_maker {
  void* fn;
  task<result<void>> (*make)(void* fn, loop& lp, std::size_t index, std::stop_token stop);
  // The task takes the stop token as an argument (and runs without an inherited one).
  bool takes_token;
};

task<result<void>> as_result(task<void> t);

template <class T>
task<result<void>> as_pool_task(T t) {
  if constexpr (std::is_same_v<T, task<void>>) {
    return as_result(std::move(t));
  } else {
    return t;
  }
}

template <class T>
concept pool_task = std::same_as<T, task<result<void>>> || std::same_as<T, task<void>>;

template <class F>
concept pool_fn_with_token = std::invocable<F&, loop&, std::size_t, std::stop_token> &&
    pool_task<std::invoke_result_t<F&, loop&, std::size_t, std::stop_token>>;
template <class F>
concept pool_fn_without_token = std::invocable<F&, loop&, std::size_t> &&
    pool_task<std::invoke_result_t<F&, loop&, std::size_t>>;

template <class F>
task<result<void>> make_pool_task(void* fn, loop& lp, std::size_t index, std::stop_token stop) {
  F& f = *static_cast<F*>(fn);
  if constexpr (pool_fn_with_token<F>) {
    return as_pool_task(f(lp, index, std::move(stop)));
  } else {
    return as_pool_task(f(lp, index));
  }
}

}  // namespace detail

/// What `fn` may be for loop_pool::run and run_on_threads: called as `fn(lp, index)` or
/// `fn(lp, index, stop)`, it returns a `task<result<void>>` or a `task<void>`.
template <class F>
concept pool_fn = detail::pool_fn_with_token<F> || detail::pool_fn_without_token<F>;

/// `size()` threads, each with an `evco::loop` of its own and one task on it: DESIGN.md's model
/// for using every core (one loop per thread, each with its own `SO_REUSEPORT` listener, see
/// listen_options::reuse_port). run() makes the loops and their tasks, waits until every task
/// has ended, and reports the first failure; a stop (a signal of run_options::stop_signals,
/// run_options::stop, or request_stop()) asks every task to end.
///
/// **How a task learns of the stop.** Each loop has a std::stop_token of its own, requested on
/// that loop's thread (by a function posted to it), so it is safe to hand to anything on the
/// loop, a task_group's join included.
/// - `fn(lp, index)`: the task runs with it as its stop token (`co_await evco::this_stop_token()`),
///   which every evco op it awaits, in it and in the tasks it awaits, observes: at the stop
///   they end with errc::cancelled. No code is needed to stop, but no op in the task can wait
///   any more once it is requested, so there is no grace period.
/// - `fn(lp, index, stop)`: the task gets it as an argument and runs without one inherited; it
///   is trusted to end once `stop` is requested. That is the shape of a graceful stop: stop
///   accepting, give the connections some time, cancel those left:
///   ```cpp
///   for (;;) {
///     auto s = co_await l.accept(stop);                  // errc::cancelled at the stop
///     if (!s) break;
///     EVCO_TRYV(co_await conns.spawn(handle(std::move(s).value())));
///   }
///   co_await evco::with_timeout(lp, conns.join(), 5s);  // 5 s to end, then cancelled
///   ```
///   A task that never looks at `stop` keeps run() from returning.
///
/// **Failures.** The first task to fail (a `task<result<void>>` ending with an error, an
/// exception escaping a task or `fn`), the first loop that cannot be made (its constructor's
/// std::system_error, such as EMFILE, becomes its error value) and the first thread that
/// cannot be started (std::errc::resource_unavailable_try_again) stop the pool, and are what
/// run() reports once every thread has ended: the error, or the exception rethrown on the
/// calling thread. As in task_group, an exception is never dropped for an error value that came
/// first. After a stop request, a task that ends with an error equal to
/// std::errc::operation_canceled (errc::cancelled, errc::closed) ended as asked: no failure.
///
/// **Order.** The threads make their loops at once; then `fn` is called for each loop, in index
/// order, one call at a time, on that loop's thread (so `fn` need not be thread-safe, and loop 0
/// can bind a listener on port 0 that the others then bind too); then every task starts. If a
/// loop, a thread or a call of `fn` fails, no task starts. A stop requested before they start
/// is already requested when they do. Once its task has ended, a loop runs the functions
/// posted to it and is destroyed (with every frame still parked on it, as ~loop does) on its
/// thread; run() returns once every thread has ended. No thread outlives run().
///
/// run() may be called once. All members but run() may be called from any thread, at any time
/// (not from a signal handler); the pool must outlive run().
///
/// ```cpp
/// evco::loop_pool pool;                       // hardware_concurrency() loops
/// auto r = pool.run([&](evco::loop& lp, std::size_t i, std::stop_token stop) {
///   return serve(lp, i, std::move(stop));     // binds its own SO_REUSEPORT listener
/// });
/// ```
class loop_pool {
 public:
  /// A pool of `n` loops (0: std::thread::hardware_concurrency(), at least 1). Makes no thread
  /// yet: run() does.
  explicit loop_pool(std::size_t n = 0, run_options o = {});
  loop_pool(const loop_pool&) = delete;
  loop_pool& operator=(const loop_pool&) = delete;
  ~loop_pool();

  std::size_t size() const noexcept { return n_; }

  /// Runs `fn`'s task on each loop and waits until they have all ended (see the class): success,
  /// or the first failure. Throws std::logic_error when called a second time.
  template <pool_fn F>
  result<void> run(F fn) {
    return run_tasks(
        detail::pool_task_maker{&fn, &detail::make_pool_task<F>, detail::pool_fn_with_token<F>});
  }

  /// Runs `f` on loop `index`'s thread during a later turn of that loop (loop::post): true once
  /// it is handed over, which means it will run, before that loop is destroyed. False, and `f`
  /// destroyed unrun, when that loop is not running: before its thread made it, or once its
  /// task has ended (or, after a failure, would have started). `f` must not throw. Throws
  /// std::out_of_range for an `index` not below size(), std::invalid_argument for an empty `f`.
  bool post(std::size_t index, detail::unique_function f);

  /// Asks every task to stop (see the class): at once for the loops running, as they start for
  /// the others. Stays requested. Allocates nothing and takes no lock of the pool's.
  void request_stop() noexcept;
  bool stop_requested() const noexcept;

 private:
  struct shared;
  result<void> run_tasks(detail::pool_task_maker make);

  std::size_t n_;
  run_options options_;
  std::unique_ptr<shared> s_;
};

/// Makes a loop_pool of `n` loops (0: the hardware concurrency) with `o` and runs `fn` on it:
/// `evco::run_on_threads(0, [](evco::loop& lp, std::size_t) { return serve(lp); })`. For
/// post() and request_stop(), make the loop_pool yourself.
template <pool_fn F>
result<void> run_on_threads(std::size_t n, F fn, run_options o = {}) {
  loop_pool pool(n, std::move(o));
  return pool.run(std::move(fn));
}

}  // namespace evco
