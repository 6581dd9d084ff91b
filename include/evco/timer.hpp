#pragma once
// Timers on the loop's event_base.

#include <chrono>
#include <stop_token>

#include "evco/error.hpp"
#include "evco/task.hpp"

namespace evco {

class loop;

using clock = std::chrono::steady_clock;
using duration = clock::duration;

/// Completes after `d` (resumed from the loop, never inline); errc::cancelled if `stop` is
/// requested first.
task<result<void>> sleep_for(loop& lp, duration d, std::stop_token stop = {});

/// Completes at `deadline`; errc::cancelled if `stop` is requested first.
task<result<void>> sleep_until(loop& lp, clock::time_point deadline, std::stop_token stop = {});

}  // namespace evco
