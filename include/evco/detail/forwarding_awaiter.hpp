#pragma once
// What evco::task's await_transform hands a co_await: the awaitable's own awaiter, called
// through; not part of the API.

#include <concepts>
#include <coroutine>
#include <memory>
#include <stop_token>
#include <type_traits>
#include <utility>

namespace evco::detail {

// The awaiter a co_await of `a` uses: what its operator co_await (member, else free) returns,
// else `a` itself.
template <class A>
decltype(auto) awaiter_of(A&& a) {
  if constexpr (requires { static_cast<A&&>(a).operator co_await(); }) {
    return static_cast<A&&>(a).operator co_await();
  } else if constexpr (requires { operator co_await(static_cast<A&&>(a)); }) {
    return operator co_await(static_cast<A&&>(a));
  } else {
    return static_cast<A&&>(a);
  }
}

template <class T>
T& as_lvalue(T&& x) noexcept {
  return x;
}

// An evco op that watches a stop token of its own: `stop`, set from its op_options.
template <class T>
concept observes_stop = requires(T& op) {
  { op.stop } -> std::same_as<std::stop_token&>;
};

// One token that is requested as soon as either of two is: for an op that has a token of its
// own and is awaited inside a task that carries one too (the rare case; it allocates).
// Defined in lib/, as is inherit_stop, which makes one: inline, every translation unit that
// awaits an op compiled std::stop_source and std::stop_callback's code (bench/README.md,
// "Build cost").
struct merged_stop;
struct merged_stop_deleter {
  void operator()(merged_stop* m) const noexcept;
};

// What a co_await changed in an op's own token, to put back when it ends: an op that is an
// lvalue of the caller's may be awaited again, elsewhere, with its own token only.
struct inherited_stop {
  std::stop_token own;
  std::unique_ptr<merged_stop, merged_stop_deleter> merged;
  bool changed = false;
};
struct no_inherited_stop {};

// Makes `stop`, an op's own token, one that is requested as soon as it or `inherited` is, and
// notes in `st` what to put back. Throws std::bad_alloc when both can be requested and their
// merge cannot be allocated, as a task's frame that cannot be would.
void inherit_stop(std::stop_token& stop, inherited_stop& st, const std::stop_token& inherited);

// What task_promise_base::await_transform hands the co_await: the awaitable's own awaiter,
// called through. Returned by value because g++ (11.3, 12.2) copies an awaiter that
// await_transform returns by reference, where the standard awaits the object referred to (as
// QCoro found, qcoro/qcoro#57): that would break every awaiter that registers its own address,
// and evco's ops are not even copyable. A prvalue it leaves in place. An awaiter that operator
// co_await makes lives in here; any other stays where it is, as an lvalue, for the
// full-expression.
//
// It is also where cancellation flows down: `inherited` is the stop token of the task whose
// co_await this is (when_any, with_timeout and task_group give their children one, and nested
// tasks inherit it), and an evco op awaited here watches it as well as its own.
template <class A>
class [[nodiscard]] forwarding_awaiter {
  using inner = decltype(awaiter_of(std::declval<A>()));
  static constexpr bool by_reference = std::is_reference_v<inner>;
  using stored = std::conditional_t<by_reference, std::remove_reference_t<inner>*, inner>;
  static constexpr bool stoppable = observes_stop<std::remove_reference_t<inner>>;

 public:
  forwarding_awaiter(A&& a, const std::stop_token* inherited) : aw_(make(static_cast<A&&>(a))) {
    if constexpr (stoppable) {
      if (inherited && inherited->stop_possible()) inherit_stop(get().stop, inherited_, *inherited);
    }
  }
  forwarding_awaiter(const forwarding_awaiter&) = delete;
  forwarding_awaiter& operator=(const forwarding_awaiter&) = delete;
  ~forwarding_awaiter() {
    if constexpr (stoppable) {
      if (inherited_.changed) get().stop = std::move(inherited_.own);
    }
  }

  decltype(auto) await_ready() { return get().await_ready(); }
  template <class P>
  decltype(auto) await_suspend(std::coroutine_handle<P> h) {
    return get().await_suspend(h);
  }
  decltype(auto) await_resume() { return get().await_resume(); }

 private:
  static stored make(A&& a) {
    if constexpr (by_reference) {
      return &as_lvalue(awaiter_of(static_cast<A&&>(a)));
    } else {
      return awaiter_of(static_cast<A&&>(a));
    }
  }
  auto& get() noexcept {
    if constexpr (by_reference) {
      return *aw_;
    } else {
      return aw_;
    }
  }
  stored aw_;
  [[no_unique_address]] std::conditional_t<stoppable, inherited_stop, no_inherited_stop> inherited_;
};

}  // namespace evco::detail
