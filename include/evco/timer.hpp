#pragma once
// Timers on the loop's timer queue.

#include <chrono>
#include <stop_token>

#include "evco/error.hpp"
#include "evco/task.hpp"

namespace evco {

class loop;

using clock = std::chrono::steady_clock;
using duration = clock::duration;

namespace detail {

/// `t + d`, saturated at the clock's range (time_point::max() is "never").
constexpr clock::time_point saturating_add(clock::time_point t, duration d) noexcept {
  if (d > duration::zero() && t > clock::time_point::max() - d) return clock::time_point::max();
  if (d < duration::zero() && t < clock::time_point::min() - d) return clock::time_point::min();
  return t + d;
}

/// `d` as a `duration`, rounded up (a limit never comes early), saturated at its range.
template <class Rep, class Period>
constexpr duration saturating_ceil(std::chrono::duration<Rep, Period> d) noexcept {
  // Compared as long double, which holds every such bound; 1e-3 of margin for the rounding.
  using wide = std::chrono::duration<long double, duration::period>;
  const long double n = std::chrono::duration_cast<wide>(d).count();
  constexpr long double top = static_cast<long double>(duration::max().count()) * 0.999;
  if (n >= top) return duration::max();
  if (n <= -top) return duration::min();
  const duration up = std::chrono::ceil<duration>(d);
  // Less than a nanosecond below zero is still below zero (zero would mean "none").
  return n < 0 && up == duration::zero() ? duration(-1) : up;
}

/// The deadline of a limit of `d` armed now: time_point::max() (none) for zero, now for a
/// negative one (already expired), else now + d.
inline clock::time_point deadline_after(duration d) noexcept {
  if (d == duration::zero()) return clock::time_point::max();
  if (d < duration::zero()) return clock::now();
  return saturating_add(clock::now(), d);
}

}  // namespace detail

/// Completes once `d` has passed on steady_clock, measured from this call: never earlier
/// (resumed from the loop, never inline), and timers due at the same time complete in the
/// order they were started. A `d` below zero completes at once, without suspending; zero
/// resumes from the loop once it has polled again; `duration::max()` never completes (only
/// `stop` ends it). errc::cancelled if `stop` is requested first.
task<result<void>> sleep_for(loop& lp, duration d, std::stop_token stop = {});

/// The same for any duration type, saturated rather than overflowing:
/// `sleep_for(lp, std::chrono::hours::max())` waits for ever.
template <class Rep, class Period>
task<result<void>> sleep_for(loop& lp, std::chrono::duration<Rep, Period> d,
                             std::stop_token stop = {}) {
  return sleep_for(lp, detail::saturating_ceil(d), std::move(stop));
}

/// Completes once steady_clock reaches `deadline` (at once, without suspending, if it is
/// already past; never for time_point::max()); errc::cancelled if `stop` is requested first.
task<result<void>> sleep_until(loop& lp, clock::time_point deadline, std::stop_token stop = {});

}  // namespace evco
