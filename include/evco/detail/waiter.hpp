#pragma once
// Building blocks the public awaiters need inline; not part of the API.

#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <type_traits>
#include <utility>

struct event;

namespace evco::detail {

// A coroutine waiting to be resumed from the loop's ready list. The list is intrusive, so
// scheduling allocates nothing, and an awaiter whose frame is destroyed while queued takes
// itself off the list (loop::unschedule) before its memory goes away.
struct waiter {
  std::coroutine_handle<> handle;
  waiter* prev = nullptr;
  waiter* next = nullptr;
  bool queued = false;
  bool after_poll = false;  // queued on the list that runs after the next poll
};

// A deadline on the loop's timer queue: a min-heap ordered by deadline, then by the order the
// timers were armed, driven by one libevent event. `fire` runs from the loop once
// steady_clock has reached `deadline` (never earlier: libevent's own clock is a coarse, cached
// one); it may arm or disarm any timer. Intrusive: arming allocates nothing once the heap
// has grown to the number of timers armed at once.
struct timer_node {
  static constexpr std::size_t unarmed = static_cast<std::size_t>(-1);
  std::chrono::steady_clock::time_point deadline{};
  std::uint64_t seq = 0;
  std::size_t slot = unarmed;  // index in the heap
  void (*fire)(timer_node&) noexcept = nullptr;
  bool armed() const noexcept { return slot != unarmed; }
};

// Something the loop owns until it finishes, and destroys with itself if it never does.
struct owned {
  owned* prev = nullptr;
  owned* next = nullptr;
  void (*destroy)(owned*) noexcept = nullptr;
};

// A move-only type-erased void() callable, for loop::post.
class unique_function {
 public:
  unique_function() noexcept = default;
  template <class F>
  requires(!std::is_same_v<std::remove_cvref_t<F>, unique_function> &&
           std::is_invocable_v<std::decay_t<F>&>) unique_function(F&& f)
      : p_(std::make_unique<model<std::decay_t<F>>>(std::forward<F>(f))) {}
  void operator()() { p_->call(); }
  explicit operator bool() const noexcept { return static_cast<bool>(p_); }

 private:
  struct concept_t {
    virtual ~concept_t() = default;
    virtual void call() = 0;
  };
  template <class F>
  struct model final : concept_t {
    explicit model(F&& f) : f_(std::move(f)) {}
    explicit model(const F& f) : f_(f) {}
    void call() override { f_(); }
    F f_;
  };
  std::unique_ptr<concept_t> p_;
};

}  // namespace evco::detail
