#pragma once
// Private: the loop's timer queue. Every evco time limit is a timer_node on it (see
// include/evco/detail/waiter.hpp): a binary min-heap ordered by deadline, then by the order the
// timers were armed, and one libevent event, added for the earliest deadline. A node fires only
// once steady_clock has reached its deadline: libevent's own clock is a coarse one, cached at
// the start of each loop turn. Disarming leaves the event alone: if it fires for a timer that
// is gone, fire() only adds it again for the next one.

#include <cstdint>
#include <vector>

#include "evco/detail/waiter.hpp"
#include "evco/timer.hpp"
#include "libevent.hpp"

namespace evco::detail {

class timer_queue {
 public:
  // Makes the event on `base`; false when out of memory.
  bool start(event_base* base) noexcept;
  // No timer fires after this (the loop is going).
  void stop() noexcept;
  // Arms `n` for `deadline` (re-arming it if armed; time_point::max() only disarms). Throws
  // std::bad_alloc when the heap cannot grow or libevent cannot add its event.
  void add(timer_node& n, clock::time_point deadline);
  void remove(timer_node& n) noexcept;

 private:
  static bool earlier(const timer_node* a, const timer_node* b) noexcept {
    return a->deadline < b->deadline || (a->deadline == b->deadline && a->seq < b->seq);
  }
  void place(std::size_t i, timer_node* n) noexcept {
    heap[i] = n;
    n->slot = i;
  }
  void sift_up(std::size_t i) noexcept;
  void sift_down(std::size_t i) noexcept;
  bool wake_at(clock::time_point deadline) noexcept;
  void fire() noexcept;

  event_base* base = nullptr;
  std::vector<timer_node*> heap;
  std::uint64_t seq = 0;
  event_ptr event;  // freed before the base: the loop declares its base first
  clock::time_point event_at = clock::time_point::max();  // max: not added
  bool firing = false;                                    // fire() is running
};

}  // namespace evco::detail
