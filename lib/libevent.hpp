#pragma once
// Private: RAII for libevent handles and the time conversions the implementation shares.

#include <chrono>
#include <memory>
#include <system_error>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

namespace evco::detail {

template <auto Free>
struct c_deleter {
  void operator()(auto* p) const noexcept { Free(p); }
};
template <class T, auto Free>
using c_handle = std::unique_ptr<T, c_deleter<Free>>;

using base_ptr = c_handle<event_base, &event_base_free>;
using event_ptr = c_handle<event, &event_free>;

inline std::error_code system_error(int e) noexcept {
  return {e, std::system_category()};
}

// Once per process: libevent's threading, and its log and fatal-error hooks (see log.cpp).
void install_libevent_hooks();

inline timeval to_timeval(std::chrono::steady_clock::duration d) noexcept {
  using namespace std::chrono;
  if (d < steady_clock::duration::zero()) d = steady_clock::duration::zero();
  const auto us = ceil<microseconds>(d).count();  // rounded up: a timer never fires early
  return timeval{static_cast<time_t>(us / 1000000), static_cast<suseconds_t>(us % 1000000)};
}

}  // namespace evco::detail
