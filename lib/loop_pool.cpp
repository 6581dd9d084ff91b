#include "evco/loop_pool.hpp"

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <thread>

#include "evco/loop.hpp"
#include "evco/signal.hpp"
#include "evco/task_group.hpp"
#include "evco/timer.hpp"
#include "evco/when_any.hpp"

namespace evco {

namespace detail {
task<result<void>> as_result(task<void> t) {
  co_await std::move(t);
  co_return success();
}
}  // namespace detail

namespace {

constexpr clock::time_point never = clock::time_point::max();

struct stop_group {
  task_group* g;
  void operator()() const noexcept { g->request_stop(); }
};

// The task of a `fn(lp, index)`: `t` runs with `stop` as its inherited token, as a
// task_group's child (whose token the group requests, here at `stop`'s request).
task<result<void>> with_inherited_stop(loop& lp, std::stop_token stop, task<result<void>> t) {
  task_group g(lp);
  EVCO_TRYV(co_await g.spawn(std::move(t)));  // cannot wait: no limit, not stopped yet
  std::stop_callback on_stop(std::move(stop), stop_group{&g});
  co_return co_await g.join();
}

// Spawned on each loop: hands the pool's stop request to that loop's own token, on its thread.
// The sleep ends through the loop's thread-safe stop path, which allocates nothing and takes
// no lock of the pool's, so request_stop() can be noexcept and called from anywhere.
task<void> relay_stop(loop& lp, std::stop_token pool, std::stop_source* to) {
  (void)co_await sleep_until(lp, never, std::move(pool));
  to->request_stop();
}

// Run on a loop whose slot is closed: the loop runs the functions posted to it before it
// resumes a yield.
task<void> run_posted(loop& lp) {
  co_await lp.yield();
}

// Installs the watches for `set` now, as a first wait does (a wait that has already expired
// returns right after): its errors (invalid_argument, device_or_resource_busy) come back
// here, and from now on a signal of `set` is kept pending instead of taking its default action.
task<result<int>> watch_signals(loop& ctl, signal_set set) {
  co_return co_await wait_signal(ctl, set, op_options(duration(-1)));
}

task<result<int>> first_signal(loop& ctl, signal_set set) {
  co_return co_await wait_signal(ctl, set);
}

}  // namespace

struct loop_pool::shared {
  struct slot {
    loop* lp = nullptr;     // guarded by m: set while the loop takes posts
    std::stop_source stop;  // the token its task sees, requested on lp's thread only
  };

  explicit shared(std::size_t count) : slots(std::make_unique<slot[]>(count)), n(count) {}

  // Thread `index`: its loop, its turn to call fn, its task, its end.
  void worker(std::size_t index, detail::pool_task_maker make) noexcept;
  // Its task, once every loop has one; then records how it ended.
  void run_task(loop& lp, slot& s, task<result<void>> t, bool takes_token) noexcept;
  // Records a failure (the first error; the first exception, which an error never hides) and
  // stops the pool. During setup (before every fn was called), no task starts.
  void fail(std::error_code ec, std::exception_ptr e = {}) noexcept;
  // An error a task ended with that is no failure: the cancellation it was asked for.
  bool as_asked(std::error_code ec) const noexcept {
    return stop.stop_requested() && ec == std::errc::operation_canceled;
  }
  // A thread has ended (or will never start): the last one tells the control loop.
  void ended(std::size_t threads) noexcept;

  // The calling thread's loop while the threads run: stops the pool at the first signal of
  // `set`, then waits until every thread has ended (catching further signals meanwhile).
  static task<void> control(loop& ctl, signal_set set, shared& self);

  std::stop_source stop;       // the pool's
  std::stop_source all_ended;  // requested by the last thread to end
  std::unique_ptr<slot[]> slots;
  const std::size_t n;

  std::mutex m;
  std::condition_variable turns;
  bool ran = false;           // guarded by m, as is everything below
  std::size_t made = 0;       // loops made
  std::size_t turn = 0;       // the index whose fn is called next, once all are made
  bool setup_failed = false;  // no task starts: each thread goes on to its end
  std::size_t running = 0;    // threads started and not ended
  std::error_code failure;
  std::exception_ptr exception;
};

void loop_pool::shared::fail(std::error_code ec, std::exception_ptr e) noexcept {
  {
    std::lock_guard lock(m);
    if (!failure && !exception) failure = ec;
    if (!exception) exception = std::move(e);
    if (turn < n && !setup_failed) {
      setup_failed = true;
      turns.notify_all();
    }
  }
  stop.request_stop();
}

void loop_pool::shared::ended(std::size_t threads) noexcept {
  bool last;
  {
    std::lock_guard lock(m);
    running -= threads;
    last = running == 0;
  }
  if (last) all_ended.request_stop();
}

void loop_pool::shared::worker(std::size_t index, detail::pool_task_maker make) noexcept {
  slot& s = slots[index];
  std::optional<loop> lp;
  try {
    lp.emplace();
  } catch (const std::system_error& e) {
    fail(e.code());  // EMFILE, ENFILE, ENOMEM: a value, as every expected failure is
  } catch (...) {
    fail({}, std::current_exception());
  }
  bool go;
  {
    std::unique_lock lock(m);
    s.lp = lp ? &*lp : nullptr;
    if (lp && ++made == n) turns.notify_all();
    turns.wait(lock, [&] { return (made == n && turn == index) || setup_failed; });
    go = !setup_failed;
  }
  // fn is called one index at a time, without the lock, so that it may post or stop.
  std::optional<task<result<void>>> t;
  if (go) {
    if (stop.stop_requested()) s.stop.request_stop();  // as fn sees it
    try {
      t.emplace(make.make(make.fn, *lp, index, s.stop.get_token()));
    } catch (...) {
      fail({}, std::current_exception());
    }
  }
  {
    std::unique_lock lock(m);
    if (turn == index) ++turn;
    turns.notify_all();
    turns.wait(lock, [&] { return turn == n || setup_failed; });
    go = !setup_failed;
  }
  if (go) run_task(*lp, s, std::move(*t), make.takes_token);
  t.reset();  // a task that never started goes before its loop
  {
    std::lock_guard lock(m);
    s.lp = nullptr;
  }
  if (lp) {
    try {
      lp->run(run_posted(*lp));
    } catch (...) {
      fail({}, std::current_exception());
    }
    lp.reset();
  }
  ended(1);
}

void loop_pool::shared::run_task(loop& lp, slot& s, task<result<void>> t,
                                 bool takes_token) noexcept {
  try {
    // A stop requested before the relay runs (it starts from the loop) is already requested.
    lp.spawn(relay_stop(lp, stop.get_token(), &s.stop),
             [this](std::exception_ptr e) { fail({}, std::move(e)); });
    if (stop.stop_requested()) s.stop.request_stop();
    const result<void> r = takes_token
                               ? lp.run(std::move(t))
                               : lp.run(with_inherited_stop(lp, s.stop.get_token(), std::move(t)));
    if (!r && !as_asked(r.error())) fail(r.error());
  } catch (...) {
    fail({}, std::current_exception());
  }
}

task<void> loop_pool::shared::control(loop& ctl, signal_set set, shared& self) {
  auto first = co_await when_any(first_signal(ctl, set),
                                 sleep_until(ctl, never, self.all_ended.get_token()));
  if (first.index() == 0) {
    if (const auto& sig = std::get<0>(first); sig) {
      self.stop.request_stop();
    } else {
      self.fail(sig.error());
    }
    (void)co_await sleep_until(ctl, never, self.all_ended.get_token());
  }
}

loop_pool::loop_pool(std::size_t n, run_options o)
    : n_(n != 0 ? n : std::max(1u, std::thread::hardware_concurrency())),
      options_(std::move(o)),
      s_(std::make_unique<shared>(n_)) {}

loop_pool::~loop_pool() = default;

bool loop_pool::stop_requested() const noexcept {
  return s_->stop.stop_requested();
}

void loop_pool::request_stop() noexcept {
  s_->stop.request_stop();
}

bool loop_pool::post(std::size_t index, detail::unique_function f) {
  if (index >= n_) throw std::out_of_range("evco::loop_pool::post: no such loop");
  if (!f) throw std::invalid_argument("evco::loop_pool::post: empty function");
  std::lock_guard lock(s_->m);
  loop* lp = s_->slots[index].lp;
  if (!lp) return false;
  lp->post(std::move(f));
  return true;
}

namespace {
struct stop_pool {
  loop_pool* pool;
  void operator()() const noexcept { pool->request_stop(); }
};
}  // namespace

result<void> loop_pool::run_tasks(detail::pool_task_maker make) {
  shared& s = *s_;
  {
    std::lock_guard lock(s.m);
    if (s.ran) throw std::logic_error("evco::loop_pool::run: called twice");
    s.ran = true;
  }
  // Declared before the threads: destroyed after they are joined, which restores the signals.
  std::optional<loop> ctl;
  const signal_set set{std::span<const int>(options_.stop_signals)};
  if (!options_.stop_signals.empty()) {
    try {
      ctl.emplace();
    } catch (const std::system_error& e) {
      return e.code();
    }
    const result<int> watched = ctl->run(watch_signals(*ctl, set));
    if (!watched && watched.error() != errc::timed_out) return watched.error();
    if (watched) request_stop();  // one was delivered already
  }
  std::optional<std::stop_callback<stop_pool>> on_stop;
  if (options_.stop.stop_possible()) on_stop.emplace(options_.stop, stop_pool{this});

  std::vector<std::thread> threads;
  threads.reserve(n_);
  {
    std::lock_guard lock(s.m);
    s.running = n_;
  }
  // Joins every thread started, on every path out of here.
  struct joiner {
    std::vector<std::thread>& threads;
    ~joiner() {
      for (std::thread& t : threads)
        if (t.joinable()) t.join();
    }
  } join_all{threads};
  for (std::size_t i = 0; i < n_; ++i) {
    try {
      threads.emplace_back([&s, i, make] { s.worker(i, make); });
    } catch (const std::system_error& e) {
      s.fail(e.code());
      s.ended(n_ - i);
      break;
    }
  }
  if (ctl) {
    try {
      ctl->run(shared::control(*ctl, set, s));
    } catch (...) {
      s.fail({}, std::current_exception());
    }
  }
  for (std::thread& t : threads)
    t.join();

  std::lock_guard lock(s.m);
  if (s.exception) std::rethrow_exception(s.exception);
  if (s.failure) return s.failure;
  return success();
}

}  // namespace evco
