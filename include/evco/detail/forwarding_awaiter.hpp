#pragma once
// What evco::task's await_transform hands a co_await: the awaitable's own awaiter, called
// through; not part of the API.

#include <coroutine>
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

// What task_promise_base::await_transform hands the co_await: the awaitable's own awaiter,
// called through. Returned by value because g++ (11.3, 12.2) copies an awaiter that
// await_transform returns by reference, where the standard awaits the object referred to (as
// QCoro found, qcoro/qcoro#57): that would break every awaiter that registers its own address,
// and evco's ops are not even copyable. A prvalue it leaves in place. An awaiter that operator
// co_await makes lives in here; any other stays where it is, as an lvalue, for the
// full-expression.
template <class A>
class [[nodiscard]] forwarding_awaiter {
  using inner = decltype(awaiter_of(std::declval<A>()));
  static constexpr bool by_reference = std::is_reference_v<inner>;
  using stored = std::conditional_t<by_reference, std::remove_reference_t<inner>*, inner>;

 public:
  explicit forwarding_awaiter(A&& a) : aw_(make(static_cast<A&&>(a))) {}
  forwarding_awaiter(const forwarding_awaiter&) = delete;
  forwarding_awaiter& operator=(const forwarding_awaiter&) = delete;

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
};

}  // namespace evco::detail
