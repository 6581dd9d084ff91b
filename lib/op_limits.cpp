#include "op_limits.hpp"

namespace evco::detail {

bool op_limits::arm(clock::time_point deadline, const std::stop_token& stop) noexcept {
  try {
    loop_access::arm(*lp, *this, deadline);
    active = true;
    // Runs at once if a stop was already requested: the loop then ends the op, later.
    if (stop.stop_possible()) on_stop.emplace(stop, on_stop_fn{this});
  } catch (const std::bad_alloc&) {
    disarm();
    return false;
  }
  return true;
}

void op_limits::release() noexcept {
  active = false;
  on_stop.reset();  // first: blocks while the stop callback runs on another thread
  loop_access::unstopped(*lp, *this);
  loop_access::disarm(*lp, *this);
}

}  // namespace evco::detail
