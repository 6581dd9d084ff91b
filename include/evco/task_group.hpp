#pragma once
// task_group: children started from a scope that cannot forget them.

#include <coroutine>
#include <cstddef>
#include <exception>
#include <optional>
#include <stop_token>
#include <system_error>

#include "evco/detail/parked_op.hpp"
#include "evco/detail/wait_queue.hpp"
#include "evco/detail/waiter.hpp"
#include "evco/error.hpp"
#include "evco/op_options.hpp"
#include "evco/task.hpp"

namespace evco {

class loop;
class task_group;

namespace detail {

// The coroutine a group runs a child task in (lib/task_group.cpp): it carries the group's stop
// token, reports how the task ended, and frees itself. The loop owns it too, so that ~loop
// destroys one that never ends.
class group_child_promise;
struct group_child {
  using promise_type = group_child_promise;
  std::coroutine_handle<group_child_promise> h;
};
group_child run_in_group(task<void> t);
group_child run_in_group(task<result<void>> t);
// Destroys a child that was never started.
struct group_child_ptr {
  explicit group_child_ptr(group_child c) noexcept : h(c.h) {}
  group_child_ptr(group_child_ptr&& o) noexcept : h(std::exchange(o.h, {})) {}
  group_child_ptr& operator=(group_child_ptr&&) = delete;
  ~group_child_ptr();
  std::coroutine_handle<group_child_promise> h;
};

// co_await g.spawn(t): starts `t` at once when the group has room, else parks (a queued_op:
// with a timeout and a stop token, and on loop::parked()) until a child ends.
struct [[nodiscard]] spawn_op : queued_op {
  spawn_op(task_group& g, group_child c, op_options o) noexcept;
  spawn_op(spawn_op&&) = delete;
  ~spawn_op();
  bool await_ready() noexcept;
  bool await_suspend(std::coroutine_handle<> h) noexcept;
  result<void> await_resume() noexcept;

  task_group* group;  // null once the group is gone
  group_child_ptr child;
  // A child that ended gave this op its slot: listed on the group until it resumes.
  bool granted = false;
  spawn_op* next_granted = nullptr;
  spawn_op* prev_granted = nullptr;
};

// co_await g.join(): parks until the group has no child left. Asked to stop (the token of the
// task awaiting it, which evco's algorithms request on the loop's thread), it asks the group's
// children to stop, and still waits for them.
struct [[nodiscard]] join_op : waiter, parked_op {
  explicit join_op(task_group& g) noexcept;
  // Movable until it is awaited, so that when_any and with_timeout can take it in.
  join_op(join_op&& o) noexcept;
  ~join_op();
  bool await_ready() const noexcept;
  void await_suspend(std::coroutine_handle<> h);
  result<void> await_resume();

  struct forward_stop {
    task_group* to;
    void operator()() const noexcept;
  };
  task_group* group;  // null once the group is gone
  loop* lp;
  join_op* next_join = nullptr;
  join_op* prev_join = nullptr;
  bool waiting = false;
  std::stop_token stop;  // the awaiting task's, merged in by co_await
  std::optional<std::stop_callback<forward_stop>> on_stop;
};

}  // namespace detail

/// A scope for concurrent children: `co_await g.spawn(t)` starts task `t` as a child (inline,
/// until it first suspends), `co_await g.join()` waits until every child has ended. Children
/// run with the group's stop token (co_await evco::this_stop_token() in them, and every evco op
/// inside them watches it):
/// - the first child to fail (a `task<result<void>>` ending with an error, or any child ending
///   with an exception) asks every other child to stop, and is what join() reports once all
///   have ended: the error, or the exception rethrown;
/// - request_stop() asks them all to stop; so does a join() whose own awaiting task is asked
///   to stop (`with_timeout(lp, g.join(), 5s)` gives the children 5 s, then cancels them and
///   waits for them to end).
/// Once stopped, a group stays stopped: spawn() fails with errc::cancelled without running
/// its task.
///
/// With `max_in_flight` above 0, spawn() waits while that many children are running (FIFO,
/// with the op_options' timeout and stop token; a spawn that fails never runs its task).
///
/// Children cannot outlive the group: destroying a group whose children are still running
/// (it was not joined, or the frame holding it was destroyed) destroys their frames there and
/// then, each suspended where it waits, as destroying any suspended evco frame does: its ops
/// are withdrawn and its streams closed (in the background, by the loop), and what it would
/// have reported is dropped. So a child may use whatever its scope declared before the group.
/// Parked spawn() and join() ops then fail with errc::cancelled. A group must not be destroyed
/// from inside one of its own children. All members must be called on the loop's thread;
/// `loop::spawn` stays for fire-and-forget with a sink.
///
/// ```cpp
/// evco::task_group conns(lp);
/// for (;;) {
///   EVCO_TRY(evco::stream s, co_await l.accept());
///   EVCO_TRYV(co_await conns.spawn(handle(std::move(s))));
/// }
/// ```
class task_group {
 public:
  explicit task_group(loop& lp, std::size_t max_in_flight = 0);
  task_group(const task_group&) = delete;
  task_group& operator=(const task_group&) = delete;
  ~task_group();

  /// Starts `t` as a child once there is room; errc::cancelled (and `t` destroyed unrun) when
  /// the group is stopped, errc::timed_out or errc::cancelled from `o`.
  detail::spawn_op spawn(task<void> t, op_options o = {});
  detail::spawn_op spawn(task<result<void>> t, op_options o = {});

  /// Completes once no child is left (at once if none is): the first failure, or success.
  detail::join_op join() noexcept { return detail::join_op(*this); }

  /// Asks every child to stop; spawns waiting for room, and every later one, fail with
  /// errc::cancelled.
  void request_stop() noexcept;
  bool stop_requested() const noexcept { return stop_.stop_requested(); }
  std::stop_token get_token() const noexcept { return stop_.get_token(); }

  /// Children running, counting those a waiting spawn() was given room for.
  std::size_t size() const noexcept { return running_; }
  std::size_t max_in_flight() const noexcept { return max_; }

 private:
  friend class detail::group_child_promise;
  friend struct detail::spawn_op;
  friend struct detail::join_op;

  // Room for one more child now, and no spawn waiting for it before this one.
  bool has_room() const noexcept { return (max_ == 0 || running_ < max_) && waiting_.empty(); }
  // Runs `c` until it first suspends; `counted` when its slot is already in running_.
  void start(detail::group_child_ptr& c, bool counted = false) noexcept;
  // From a child's promise as it goes: `ended` when it ran to its end (not destroyed by ~loop).
  void child_gone(detail::group_child_promise& c, bool ended) noexcept;
  // A slot is free: to the first spawn waiting, else perhaps the end of the joins' wait.
  void release_slot() noexcept;
  void ungrant(detail::spawn_op& op) noexcept;
  void fail(std::error_code ec, std::exception_ptr e) noexcept;

  loop* lp_;
  std::size_t max_;
  std::size_t running_ = 0;
  std::stop_source stop_;
  detail::group_child_promise* children_ = nullptr;  // those running, a list
  detail::join_op* joins_ = nullptr;                 // those parked
  detail::spawn_op* granted_ = nullptr;              // spawns given a slot, not yet resumed
  std::error_code failure_;
  std::exception_ptr exception_;
  detail::limits_pool pool_;
  detail::wait_queue waiting_{pool_};  // spawns waiting for room
};

}  // namespace evco
