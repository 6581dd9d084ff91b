#pragma once
// when_all: several awaitables at once, every result.

#include <array>
#include <coroutine>
#include <cstddef>
#include <tuple>
#include <utility>
#include <vector>

#include "evco/detail/child.hpp"
#include "evco/task.hpp"

namespace evco {

namespace detail {

template <class... R>
class [[nodiscard]] when_all_awaitable : public child_tuple<R...> {
  using base = child_tuple<R...>;

 public:
  template <class... A>
  explicit when_all_awaitable(A&&... a) : base(false, std::forward<A>(a)...) {}

  std::tuple<R...> await_resume() {
    if (this->first_failed() != child_group::none) {
      std::rethrow_exception(this->promises()[this->first_failed()]->exception());
    }
    return std::apply([](auto&... c) { return std::tuple<R...>(c.promise().take()...); },
                      this->children_);
  }
};

template <class R>
class [[nodiscard]] when_all_range_awaitable : public child_group {
 public:
  template <class T>
  explicit when_all_range_awaitable(std::vector<task<T>> tasks) : child_group(false) {
    children_.reserve(tasks.size());
    for (auto& t : tasks)
      children_.push_back(make_child(std::move(t)));
  }

  bool await_ready() const noexcept { return children_.empty(); }
  bool await_suspend(std::coroutine_handle<> h) {
    std::vector<child_promise_base*> ps;
    ps.reserve(children_.size());
    for (auto& c : children_)
      ps.push_back(&c.promise());
    return start(h, ps.data(), ps.size());
  }
  std::vector<R> await_resume() {
    if (first_failed() != none)
      std::rethrow_exception(children_[first_failed()].promise().exception());
    std::vector<R> out;
    out.reserve(children_.size());
    for (auto& c : children_)
      out.push_back(c.promise().take());
    return out;
  }

 private:
  std::vector<child<R>> children_;
};

}  // namespace detail

/// Awaits every argument at once (tasks, or evco ops such as `s.read_some(buf)`, moved in) and
/// completes once all have, with a tuple of their values (`std::monostate` for void). An error
/// value is a value: it stops nothing. An exception escaping one asks the others to stop (their
/// stop token) and is rethrown once all have ended (the first, if several). Cancelling the
/// awaiting task cancels them all. The arguments start in order, each until it first suspends.
///
/// ```cpp
/// auto [a, b] = co_await evco::when_all(fetch(lp, "a"), fetch(lp, "b"));
/// ```
template <class... A>
requires(sizeof...(A) > 0 && (detail::awaitable_child<A> && ...)) auto when_all(A&&... a) {
  return detail::when_all_awaitable<detail::stored_t<detail::await_result_t<std::decay_t<A>>>...>(
      std::forward<A>(a)...);
}

/// The same for a vector of tasks: their values, in the vector's order (an empty vector
/// completes at once with none).
template <class T>
auto when_all(std::vector<task<T>> tasks) {
  return detail::when_all_range_awaitable<detail::stored_t<T>>(std::move(tasks));
}

}  // namespace evco
