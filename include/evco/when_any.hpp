#pragma once
// when_any and with_timeout: the first of several awaitables to complete, the others cancelled
// and awaited.

#include <array>
#include <coroutine>
#include <cstddef>
#include <tuple>
#include <utility>
#include <variant>

#include "evco/detail/child.hpp"
#include "evco/error.hpp"
#include "evco/task.hpp"
#include "evco/timer.hpp"

namespace evco {

namespace detail {

template <class... R>
class [[nodiscard]] when_any_awaitable : public child_tuple<R...> {
  using base = child_tuple<R...>;

 public:
  template <class... A>
  explicit when_any_awaitable(A&&... a) : base(true, std::forward<A>(a)...) {}

  std::variant<R...> await_resume() {
    // The winner's exception, else the first a loser ended with (one is rethrown, any other
    // dropped).
    const auto ps = this->promises();
    if (ps[this->first()]->failed()) std::rethrow_exception(ps[this->first()]->exception());
    if (this->first_failed() != child_group::none) {
      std::rethrow_exception(ps[this->first_failed()]->exception());
    }
    return take<0>(this->first());
  }

 private:
  template <std::size_t I>
  std::variant<R...> take(std::size_t winner) {
    if constexpr (I + 1 < sizeof...(R)) {
      if (winner != I) return take<I + 1>(winner);
    }
    return std::variant<R...>(std::in_place_index<I>,
                              std::get<I>(this->children_).promise().take());
  }
};

// with_timeout's result: the task's own result<U>, else its value in a result.
template <class T>
struct timeout_result {
  using type = result<T>;
};
template <>
struct timeout_result<std::monostate> {
  using type = result<void>;
};
template <class U>
struct timeout_result<result<U>> {
  using type = result<U>;
};

template <class R>
class [[nodiscard]] with_timeout_awaitable : public when_any_awaitable<R, result<void>> {
  using base = when_any_awaitable<R, result<void>>;

 public:
  using value_type = typename timeout_result<R>::type;
  using base::base;
  value_type await_resume() {
    auto v = base::await_resume();
    if (v.index() == 1) {
      const result<void>& slept = std::get<1>(v);
      if (!slept) return slept.error();  // cancelled from outside, before the deadline
      return make_error_code(errc::timed_out);
    }
    if constexpr (std::is_same_v<R, std::monostate>) {
      return success();
    } else {
      return std::get<0>(std::move(v));
    }
  }
};

}  // namespace detail

/// Awaits every argument at once (tasks, or evco ops such as `s.read_some(buf)`, moved in) and
/// completes once one has: a `std::variant` whose `index()` says which, holding its value
/// (`std::monostate` for void). The others are asked to stop through the stop token each runs
/// with, and awaited, before when_any completes: none keeps running behind it. An evco op asked
/// to stop before it completed delivers nothing and loses nothing (a read's bytes stay in the
/// stream, a channel's item with its sender); a task asked to stop ends where its ops fail
/// with errc::cancelled.
///
/// The arguments start in order, each until it first suspends; once one completes without
/// suspending, those after it never start (a read with its bytes already there arms no
/// timer). Cancelling the awaiting task (its own token) cancels them all; the first to end then
/// is the result, usually errc::cancelled. An exception escaping one of them is rethrown once
/// all have ended: the winner's, else the first a loser ended with (one, if several). The
/// awaitable owns the arguments from the call on; a when_any never awaited destroys them
/// unstarted. (task_group's spawn() is not movable, so it cannot be an argument.)
///
/// ```cpp
/// auto r = co_await evco::when_any(s.read_some(buf), evco::sleep_for(lp, 10s));
/// if (r.index() == 0) { result<std::size_t> n = std::get<0>(r); ... }
/// ```
template <class... A>
requires(sizeof...(A) > 0 && (detail::awaitable_child<A> && ...)) auto when_any(A&&... a) {
  return detail::when_any_awaitable<detail::stored_t<detail::await_result_t<std::decay_t<A>>>...>(
      std::forward<A>(a)...);
}

/// `t` (a task, or an evco op) with a deadline: its result, or errc::timed_out when `d` has
/// passed first, `t` having been asked to stop and awaited (so it ended, and lost nothing, as
/// for when_any). `d` is measured from when `t` first suspends (the timer starts then; it never
/// starts when `t` completes at once). The result is `t`'s own `result<U>`, or its value in a
/// `result<T>` (`result<void>` for void). `t`'s own failures pass through unchanged.
template <class A, class Rep, class Period>
requires detail::awaitable_child<A>
auto with_timeout(loop& lp, A&& t, std::chrono::duration<Rep, Period> d) {
  using R = detail::stored_t<detail::await_result_t<std::decay_t<A>>>;
  return detail::with_timeout_awaitable<R>(std::forward<A>(t), sleep_for(lp, d));
}

}  // namespace evco
