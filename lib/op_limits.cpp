#include "op_limits.hpp"

namespace evco::detail {

bool op_limits::arm(clock::time_point deadline, const std::stop_token& stop) noexcept {
  try {
    if (stop.stop_possible() && !wake) {
      wake.reset(event_new(lp->native_handle(), -1, 0, &on_wake, this));
      if (!wake) return false;
    }
    loop_access::arm(*lp, *this, deadline);
    active = true;
    // Runs at once if a stop was already requested: the wake-up then comes from the loop.
    if (stop.stop_possible()) on_stop.emplace(stop, cancel_fn{wake.get(), nullptr});
  } catch (const std::bad_alloc&) {
    disarm();
    return false;
  }
  return true;
}

void op_limits::release() noexcept {
  active = false;
  on_stop.reset();  // first: blocks while the stop callback runs on another thread
  if (wake) event_del(wake.get());
  loop_access::disarm(*lp, *this);
}

void op_limits::on_wake(evutil_socket_t, short, void* arg) {
  auto& self = *static_cast<op_limits*>(arg);
  self.ended(self, errc::cancelled);
}

}  // namespace evco::detail
