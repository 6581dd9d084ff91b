#pragma once
// op_options: the timeout and stop token every awaitable evco op accepts.

#include <chrono>
#include <stop_token>
#include <utility>

#include "evco/timer.hpp"

namespace evco {

/// Per-operation limits, accepted by every awaitable op:
/// `s.read_some(buf, 2s)`, `s.read_some(buf, token)` or `s.read_some(buf, {2s, token})`.
///
/// Not an aggregate on purpose: g++ 12 destroys a brace-initialised aggregate temporary
/// twice when it sits in a co_await full-expression (reproduced with 12.2 under ASan), and a
/// stop_token member turns that into a use-after-free. g++ 12 does the same to an op_options
/// chosen by a conditional expression inside the co_await (`co_await s.read_some(buf, idle ?
/// op_options(token) : op_options())`, reproduced with 12.2 at -O2): name it first
/// (`const op_options o = idle ? ... : ...; co_await s.read_some(buf, o);`).
struct op_options {
  op_options() noexcept = default;
  template <class Rep, class Period>
  op_options(std::chrono::duration<Rep, Period> t) noexcept : timeout(detail::saturating_ceil(t)) {}
  op_options(std::stop_token s) noexcept : stop(std::move(s)) {}
  template <class Rep, class Period>
  op_options(std::chrono::duration<Rep, Period> t, std::stop_token s) noexcept
      : timeout(detail::saturating_ceil(t)), stop(std::move(s)) {}

  /// Deadline for this op, from its start: errc::timed_out if it has not completed by then.
  /// Zero means none; a negative one has already expired, so the op completes only if it
  /// can at once (a poll). Longer than duration::max() saturates to it.
  duration timeout{};
  std::stop_token stop{};  ///< request_stop() completes the op with errc::cancelled
};

}  // namespace evco
