#pragma once
// The node every parked evco op carries on its loop's registry (loop::parked()); not part of
// the API.

#include <time.h>

#include <chrono>

namespace evco {

struct parked_op_info;

namespace detail {

class task_promise_base;
struct parked_op;

// One kind of op, as loop::parked() shows it: a static object per kind, so that the op itself
// holds a pointer rather than a name.
struct parked_op_type {
  const char* name;  // parked_op_info::what
  // Fills in the endpoints, host and time left; runs on the loop's thread while `op` is parked.
  void (*describe)(const parked_op& op, parked_op_info& out);
};

// An awaiter's entry on its loop's list of parked ops: intrusive, so that parking allocates
// nothing. The list is circular around a node the loop owns, so that leaving it needs no loop
// and no branch on the ends; a node that is not on it has next_parked == nullptr. Every path
// that ends the wait (completion, timeout, cancellation, the frame's destruction) unlists it.
struct parked_op {
  parked_op() noexcept {}
  explicit parked_op(const parked_op_type* t) noexcept : type(t) {}
  parked_op(const parked_op&) = delete;
  parked_op& operator=(const parked_op&) = delete;

  bool listed() const noexcept { return next_parked != nullptr; }
  void unlist() noexcept {
    if (!next_parked) return;
    prev_parked->next_parked = next_parked;
    next_parked->prev_parked = prev_parked;
    next_parked = nullptr;
  }

  // prev_parked, type and since are set when the op is listed, and read only while it is: an
  // op that never parks (the common case) pays for no more stores than it needs.
  parked_op* prev_parked;
  parked_op* next_parked = nullptr;
  const parked_op_type* type;
  // When it was listed (coarse_now(): a finer clock would cost more than the dump it serves).
  std::chrono::steady_clock::time_point since;
  // The evco::task whose co_await this op is (set by its await_transform), or null.
  const task_promise_base* awaiting = nullptr;
};

// CLOCK_MONOTONIC_COARSE: steady_clock's epoch (CLOCK_MONOTONIC) at the precision of a kernel
// tick, read without the TSC. Every op that parks reads it once.
inline std::chrono::steady_clock::time_point coarse_now() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return std::chrono::steady_clock::time_point(std::chrono::seconds(ts.tv_sec) +
                                               std::chrono::nanoseconds(ts.tv_nsec));
}

}  // namespace detail
}  // namespace evco
