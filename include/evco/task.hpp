#pragma once
// task<T>: a lazy, move-only coroutine that starts when awaited.

#include <bit>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <memory>
#include <stdexcept>
#include <stop_token>
#include <type_traits>
#include <utility>
#include <version>
#if __cpp_lib_source_location >= 201907L
#include <source_location>
#endif

#include "evco/detail/forwarding_awaiter.hpp"
#include "evco/detail/frame_cache.hpp"
#include "evco/detail/parked_op.hpp"

namespace evco {

template <class T = void>
class task;
class loop;

namespace detail {

template <class T>
inline constexpr bool is_task = false;
template <class T>
inline constexpr bool is_task<task<T>> = true;

// What started a task that no evco::task awaits: where loop::parked()'s chain of tasks ends.
enum class task_origin : unsigned char {
  other,    // awaited by a coroutine of another type
  run,      // loop::run
  spawned,  // loop::spawn
};

// co_await detail::internal_frame{} first thing in evco's own coroutines (sleep_for, connect,
// resolve, the TLS handshake): loop::parked() leaves them out of the chain and shows the
// caller's co_await instead, as the op's name already says what they wait for.
struct internal_frame {};

// What co_await evco::this_stop_token() awaits.
struct this_stop_token_t {};

class task_promise_base;

// What loop::spawn attaches to a task it starts detached (lib/loop.cpp): the sink, and the
// loop's ownership of the frame.
struct spawned;
// A spawned task's final suspend: hands how it ended to its sink, then destroys the frame and
// `s`. `exception` is null when none escaped; `value` is a task<result<void>>'s result (null
// for a task<void>; not to be read when an exception escaped).
void end_spawned(spawned& s, std::exception_ptr* exception, void* value) noexcept;

// An awaitable that starts tasks of its own (when_all, when_any, task_group's join): the task
// awaiting it is noted here, so that its children inherit its stop token and show it as their
// parent in loop::parked().
struct composite {
  const task_promise_base* awaiting_task = nullptr;
};

// How a finished task hands control back to its awaiter.
//
// g++ 12 does not compile symmetric transfer as a tail call at -O0..-O1 or under ASan, so a
// loop of awaits of tasks that finish synchronously would grow the stack by one frame each
// time. The awaiter therefore starts the child inline from a bool await_suspend; if the child
// finishes before returning, its final suspend goes nowhere and await_suspend returns false,
// so the awaiter continues on its own stack. Only a child that really suspended transfers
// control back symmetrically when it finishes later, from the loop.
class task_promise_base : public frame_allocated {
 public:
  std::suspend_always initial_suspend() noexcept { return {}; }

  struct final_awaiter {
    bool await_ready() noexcept { return false; }
    template <class Promise>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<Promise> h) noexcept {
      task_promise_base& p = h.promise();
      if (p.starting_inline_) {
        p.finished_inline_ = true;
        return std::noop_coroutine();
      }
      if (p.origin_ == task_origin::spawned) {
        h.promise().end_spawned();  // destroys the frame
        return std::noop_coroutine();
      }
      return p.continuation_ ? p.continuation_ : std::noop_coroutine();
    }
    void await_resume() noexcept {}
  };
  final_awaiter final_suspend() noexcept { return {}; }

  // Starts the task on this stack; true if it suspended rather than finished.
  bool start(std::coroutine_handle<> self, std::coroutine_handle<> continuation) {
    continuation_ = continuation;
    starting_inline_ = true;
    finished_inline_ = false;
    self.resume();
    starting_inline_ = false;
    return !finished_inline_;
  }

  // For loop::parked(), on the loop's thread. Where the task is suspended, in one of two
  // encodings (the library reads both, whichever compiler built the task): with a line of 0,
  // `site` is a std::source_location (the pointer it holds); else it is the file name.
  const void* await_site() const noexcept { return site_; }
  const char* await_function() const noexcept { return site_function_; }
  std::uint_least32_t await_line() const noexcept { return site_line_; }
  const task_promise_base* parent() const noexcept { return parent_; }
  task_origin origin() const noexcept { return origin_; }
  bool internal() const noexcept { return internal_; }
  void set_origin(task_origin o) noexcept { origin_ = o; }
  // Detached mode, for loop::spawn (before the task starts, which the loop then does): no task
  // awaits it, and its final suspend hands its outcome to `s` and destroys the frame.
  void detach(spawned& s) noexcept {
    origin_ = task_origin::spawned;
    spawned_ = &s;
  }

  // Every co_await in a task goes through here, and on to the awaitable's own awaiter (no
  // copy, see forwarding_awaiter). It notes where the task is suspended, and which task awaits
  // an evco op or a child task: what loop::parked() walks, op -> task -> parent task. That is
  // a few stores on every co_await, so the location is one pointer where it can be.
#if __cpp_lib_source_location >= 201907L
  template <class A>
  forwarding_awaiter<A> await_transform(
      A&& a, std::source_location where = std::source_location::current()) {
    static_assert(sizeof where == sizeof site_);
    site_ = std::bit_cast<const void*>(where);
    note(a);
    return forwarding_awaiter<A>(static_cast<A&&>(a), stop_);
  }
#else
  // clang 14 with libstdc++ 12 has no std::source_location (it needs __builtin_source_location,
  // new in clang 15): the builtins it is made of, which name the function without its scope.
  template <class A>
  forwarding_awaiter<A> await_transform(A&& a, const char* file = __builtin_FILE(),
                                        const char* function = __builtin_FUNCTION(),
                                        std::uint_least32_t line = __builtin_LINE()) {
    site_ = file;
    site_function_ = function;
    site_line_ = line;
    note(a);
    return forwarding_awaiter<A>(static_cast<A&&>(a), stop_);
  }
#endif
  std::suspend_never await_transform(internal_frame) noexcept {
    internal_ = true;
    return {};
  }
  struct stop_token_awaiter {
    std::stop_token token;
    bool await_ready() const noexcept { return true; }
    void await_suspend(std::coroutine_handle<>) const noexcept {}
    std::stop_token await_resume() noexcept { return std::move(token); }
  };
  stop_token_awaiter await_transform(this_stop_token_t) noexcept {
    return {stop_ ? *stop_ : std::stop_token()};
  }

  // The stop token this task inherited (from the task awaiting it, or given by the algorithm
  // that started it), or null.
  const std::stop_token* inherited_stop() const noexcept {
    return stop_;
  }

 protected:
  spawned& spawned_node() const noexcept {
    return *spawned_;
  }
  // For the algorithms' own child coroutines: the token they carry, and whose child they are.
  void set_inherited_stop(const std::stop_token* s) noexcept {
    stop_ = s;
  }
  void set_parent(const task_promise_base* p) noexcept {
    parent_ = p;
  }

 private:
  template <class A>
  void note(A& a) noexcept {
    if constexpr (std::is_base_of_v<parked_op, A> && !std::is_const_v<A>) {
      static_cast<parked_op&>(a).awaiting = this;
    } else if constexpr (is_task<std::remove_cv_t<A>>) {
      if (a.valid()) {
        auto& child = static_cast<task_promise_base&>(a.handle().promise());
        child.parent_ = this;
        child.stop_ = stop_;
      }
    } else if constexpr (std::is_base_of_v<composite, A> && !std::is_const_v<A>) {
      static_cast<composite&>(a).awaiting_task = this;
    }
  }

  // Who awaits the task; in detached mode (spawned: nobody awaits it), what loop::spawn attached.
  union {
    std::coroutine_handle<> continuation_{};
    spawned* spawned_;
  };
  const void* site_ = nullptr;
  const char* site_function_ = nullptr;
  const task_promise_base* parent_ = nullptr;  // the task awaiting this one, if one is
  const std::stop_token* stop_ = nullptr;      // see inherited_stop()
  std::uint_least32_t site_line_ = 0;
  bool starting_inline_ = false;
  bool finished_inline_ = false;
  bool internal_ = false;
  task_origin origin_ = task_origin::other;
};

// The result lives in a union rather than a std::variant: g++ 12 warns (maybe-uninitialized,
// a false positive) inside variant::emplace for Boost 1.81's outcome types under ASan.
template <class T>
class task_promise final : public task_promise_base {
 public:
  task_promise() noexcept {}
  task_promise(const task_promise&) = delete;
  task_promise& operator=(const task_promise&) = delete;
  ~task_promise() {
    if (state_ == state::value) value_.~T();
    if (state_ == state::exception) exception_.~exception_ptr();
  }

  task<T> get_return_object() noexcept;
  void unhandled_exception() noexcept {
    // A local's destructor may throw after co_return stored the value.
    if (state_ == state::value) value_.~T();
    std::construct_at(&exception_, std::current_exception());
    state_ = state::exception;
  }
  template <class U = T>
  requires std::is_convertible_v<U&&, T>
  void return_value(U&& v) {
    std::construct_at(&value_, std::forward<U>(v));
    state_ = state::value;
  }
  T take() {
    if (state_ == state::exception) std::rethrow_exception(exception_);
    return std::move(value_);
  }
  void end_spawned() noexcept {
    detail::end_spawned(spawned_node(), state_ == state::exception ? &exception_ : nullptr,
                        &value_);
  }

 private:
  enum class state : unsigned char { empty, value, exception };
  union {
    T value_;
    std::exception_ptr exception_;
  };
  state state_ = state::empty;
};

template <>
class task_promise<void> final : public task_promise_base {
 public:
  task<void> get_return_object() noexcept;
  void unhandled_exception() noexcept { exception_ = std::current_exception(); }
  void return_void() noexcept {}
  void take() {
    if (exception_) std::rethrow_exception(exception_);
  }
  void end_spawned() noexcept {
    detail::end_spawned(spawned_node(), exception_ ? &exception_ : nullptr, nullptr);
  }

 private:
  std::exception_ptr exception_;
};

}  // namespace detail

/// A lazy coroutine: nothing runs until it is awaited (or handed to loop::run / loop::spawn).
/// Awaiting yields its value or rethrows its exception. Destroying a task that has not
/// finished destroys its frame, and with it every frame it is awaiting.
template <class T>
class [[nodiscard]] task {
 public:
  using promise_type = detail::task_promise<T>;
  using value_type = T;

  task() noexcept = default;
  task(task&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  task& operator=(task&& o) noexcept {
    if (this != &o) {
      if (h_) h_.destroy();
      h_ = std::exchange(o.h_, {});
    }
    return *this;
  }
  ~task() {
    if (h_) h_.destroy();
  }

  bool valid() const noexcept { return static_cast<bool>(h_); }

  struct awaiter {
    std::coroutine_handle<promise_type> h;
    bool await_ready() const {
      if (!h) throw std::invalid_argument("evco::task: awaiting an empty task");
      return h.done();
    }
    bool await_suspend(std::coroutine_handle<> awaiting) { return h.promise().start(h, awaiting); }
    T await_resume() { return h.promise().take(); }
  };
  awaiter operator co_await() && noexcept { return awaiter{h_}; }

  // For loop::run / loop::spawn: the raw handle (the task keeps ownership).
  std::coroutine_handle<promise_type> handle() const noexcept { return h_; }

 private:
  friend promise_type;
  friend class loop;  // loop::spawn takes the frame over
  explicit task(std::coroutine_handle<promise_type> h) noexcept : h_(h) {}
  std::coroutine_handle<promise_type> h_;
};

/// `co_await evco::this_stop_token()` in a task: the stop token it carries, which a task
/// started by when_any, when_all, with_timeout or a task_group gets from it and a task awaited
/// by another inherits (empty, never requested, in a task started otherwise). Every evco op awaited
/// in such a task watches it besides the token of its own op_options.
inline detail::this_stop_token_t this_stop_token() noexcept {
  return {};
}

namespace detail {
template <class T>
task<T> task_promise<T>::get_return_object() noexcept {
  return task<T>{std::coroutine_handle<task_promise<T>>::from_promise(*this)};
}
inline task<void> task_promise<void>::get_return_object() noexcept {
  return task<void>{std::coroutine_handle<task_promise<void>>::from_promise(*this)};
}
}  // namespace detail

}  // namespace evco
