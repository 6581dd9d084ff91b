#pragma once
// The coroutines when_all and when_any run their awaitables in, and what they report to; not
// part of the API.

#include <array>
#include <coroutine>
#include <cstddef>
#include <exception>
#include <memory>
#include <optional>
#include <stop_token>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>

#include "evco/task.hpp"

namespace evco::detail {

// What awaiting `A` yields, with void as std::monostate so that it can sit in a tuple or a
// variant.
template <class A>
using await_result_t = decltype(std::declval<forwarding_awaiter<A>&>().await_resume());
template <class T>
using stored_t = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

// Awaiting a task<T>, or an evco op, as the child of an algorithm: the task itself, or the op
// moved into a coroutine of its own.
template <class A>
concept awaitable_child =
    std::move_constructible<std::remove_cvref_t<A>> && !std::is_lvalue_reference_v<A>;

class child_promise_base;

// The children of one algorithm, started together and awaited together. Children run in
// coroutines of their own (child<R>), each carrying this group's stop token: the token every
// evco op inside them watches. The group resumes its awaiting coroutine once the last child
// has ended; `first_ends_all` (when_any) asks the others to stop as soon as one ends, and any
// child ending with an exception does the same.
class child_group : public composite {
 public:
  static constexpr std::size_t none = static_cast<std::size_t>(-1);

  explicit child_group(bool first_ends_all) noexcept : first_ends_all_(first_ends_all) {}
  // Movable until it is awaited (children point at it once started), so that an algorithm
  // can be the argument of another.
  child_group(child_group&& o) noexcept : composite(), first_ends_all_(o.first_ends_all_) {}
  child_group& operator=(child_group&&) = delete;

  // Which child ended first, and which first ended with an exception (none until one has).
  std::size_t first() const noexcept { return first_; }
  std::size_t first_failed() const noexcept { return first_failed_; }

 protected:
  // Starts every child (when_any: until one ends at once; those after it never start). False
  // when all have ended by then, so that the awaiting coroutine goes on without suspending.
  bool start(std::coroutine_handle<> awaiting, child_promise_base* const* children, std::size_t n);

 private:
  friend class child_promise_base;
  struct forward_stop {
    std::stop_source* to;
    void operator()() const noexcept { to->request_stop(); }
  };
  // From a child's final suspend: what runs next (the awaiting coroutine after the last one).
  std::coroutine_handle<> ended(std::size_t index, bool failed) noexcept;

  std::stop_source stop_{std::nostopstate};  // made when awaited
  // The awaiting task's own token, forwarded to stop_ (from any thread).
  std::optional<std::stop_callback<forward_stop>> link_;
  std::coroutine_handle<> awaiting_;
  std::size_t running_ = 0;
  std::size_t first_ = none;
  std::size_t first_failed_ = none;
  bool starting_ = false;
  bool first_ends_all_;
};

class child_promise_base : public task_promise_base {
 public:
  child_promise_base() noexcept { set_inherited_stop(&token_); }
  std::suspend_always initial_suspend() noexcept { return {}; }
  struct final_awaiter {
    bool await_ready() noexcept { return false; }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) noexcept {
      child_promise_base& p = h.promise();
      return p.group_->ended(p.index_, p.exception_ != nullptr);
    }
    void await_resume() noexcept {}
  };
  final_awaiter final_suspend() noexcept { return {}; }
  void unhandled_exception() noexcept { exception_ = std::current_exception(); }

  bool started() const noexcept { return group_ != nullptr; }
  bool failed() const noexcept { return exception_ != nullptr; }
  const std::exception_ptr& exception() const noexcept { return exception_; }
  std::coroutine_handle<> handle() const noexcept { return self_; }

 protected:
  std::coroutine_handle<> self_;

 private:
  friend class child_group;
  void begin(child_group& g, std::size_t index, std::stop_token t,
             const task_promise_base* parent) noexcept {
    group_ = &g;
    index_ = index;
    token_ = std::move(t);
    set_parent(parent);
  }
  std::stop_token token_;
  child_group* group_ = nullptr;
  std::size_t index_ = 0;
  std::exception_ptr exception_;
};

template <class R>
class child_promise final : public child_promise_base {
 public:
  class [[nodiscard]] handle_type {
   public:
    using promise_type = child_promise;
    explicit handle_type(std::coroutine_handle<child_promise> h) noexcept : h_(h) {}
    handle_type(handle_type&& o) noexcept : h_(std::exchange(o.h_, {})) {}
    handle_type& operator=(handle_type&&) = delete;
    ~handle_type() {
      if (h_) h_.destroy();
    }
    child_promise& promise() const noexcept { return h_.promise(); }

   private:
    std::coroutine_handle<child_promise> h_;
  };

  child_promise() noexcept { self_ = std::coroutine_handle<child_promise>::from_promise(*this); }
  handle_type get_return_object() noexcept {
    return handle_type(std::coroutine_handle<child_promise>::from_promise(*this));
  }
  template <class U>
  void return_value(U&& v) {
    value_.emplace(std::forward<U>(v));
  }
  // The child's value; rethrows its exception.
  R take() {
    if (exception()) std::rethrow_exception(exception());
    return std::move(*value_);
  }

 private:
  std::optional<R> value_;
};

template <class R>
using child = typename child_promise<R>::handle_type;

// Internal, like run_in_group: loop::parked() shows the co_await on the algorithm instead, as
// each op's name, or the task the algorithm was given, already says what it waits for.
template <class R, class A>
child<R> run_child(A a) {
  co_await internal_frame{};
  if constexpr (std::is_same_v<R, std::monostate> && std::is_void_v<await_result_t<A>>) {
    co_await std::move(a);
    co_return std::monostate{};
  } else {
    co_return co_await std::move(a);
  }
}

// The child for one argument of an algorithm: the awaitable moved into its coroutine.
template <class A>
auto make_child(A&& a) {
  using T = std::remove_cvref_t<A>;
  using R = stored_t<await_result_t<T>>;
  return run_child<R, T>(std::forward<A>(a));
}

// A fixed set of children, one per argument of when_any or when_all, each moved in when the
// algorithm is called.
template <class... R>
class child_tuple : public child_group {
 public:
  template <class... A>
  explicit child_tuple(bool first_ends_all, A&&... a)
      : child_group(first_ends_all), children_(make_child(std::forward<A>(a))...) {}

  bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<> h) {
    const auto ps = promises();
    return start(h, ps.data(), ps.size());
  }

 protected:
  std::array<child_promise_base*, sizeof...(R)> promises() noexcept {
    return std::apply(
        [](auto&... c) { return std::array<child_promise_base*, sizeof...(R)>{&c.promise()...}; },
        children_);
  }
  std::tuple<child<R>...> children_;
};

}  // namespace evco::detail
