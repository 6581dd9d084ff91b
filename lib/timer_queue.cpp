#include "timer_queue.hpp"

#include <new>

namespace evco::detail {

bool timer_queue::start(event_base* b) noexcept {
  base = b;
  event.reset(event_new(
      b, -1, 0, [](evutil_socket_t, short, void* arg) { static_cast<timer_queue*>(arg)->fire(); },
      this));
  return static_cast<bool>(event);
}

void timer_queue::stop() noexcept {
  if (event) event_del(event.get());
}

void timer_queue::sift_up(std::size_t i) noexcept {
  timer_node* n = heap[i];
  while (i > 0) {
    const std::size_t parent = (i - 1) / 2;
    if (!earlier(n, heap[parent])) break;
    place(i, heap[parent]);
    i = parent;
  }
  place(i, n);
}

void timer_queue::sift_down(std::size_t i) noexcept {
  timer_node* n = heap[i];
  const std::size_t size = heap.size();
  for (;;) {
    std::size_t child = 2 * i + 1;
    if (child >= size) break;
    if (child + 1 < size && earlier(heap[child + 1], heap[child])) ++child;
    if (!earlier(heap[child], n)) break;
    place(i, heap[child]);
    i = child;
  }
  place(i, n);
}

void timer_queue::add(timer_node& n, clock::time_point deadline) {
  remove(n);
  if (deadline == clock::time_point::max()) return;  // never
  heap.push_back(&n);                                // first: it may throw
  n.deadline = deadline;
  n.seq = seq++;  // equal deadlines fire in the order they were armed
  n.slot = heap.size() - 1;
  sift_up(n.slot);
  // While fire() runs it adds the event itself once done, so that a timer re-armed from
  // a fire callback only takes room the heap just gave back, and cannot fail.
  if (n.slot == 0 && !firing && !wake_at(deadline)) {
    remove(n);
    throw std::bad_alloc();
  }
}

void timer_queue::remove(timer_node& n) noexcept {
  if (!n.armed()) return;
  const std::size_t i = n.slot;
  n.slot = timer_node::unarmed;
  timer_node* last = heap.back();
  heap.pop_back();
  if (last == &n) return;
  place(i, last);
  sift_up(i);
  sift_down(last->slot);
}

// False when libevent could not add the event (out of memory).
bool timer_queue::wake_at(clock::time_point deadline) noexcept {
  if (deadline >= event_at) return true;
  // libevent adds a relative timeout to its cached time, the start of the loop turn, which
  // may be long past by now: refresh it first. Its clock is also a coarse one, so the event
  // may still fire a little early; fire checks steady_clock and waits on.
  event_base_update_cache_time(base);
  const timeval tv = detail::to_timeval(deadline - clock::now());
  if (event_add(event.get(), &tv) != 0) return false;
  event_at = deadline;
  return true;
}

// Runs the timers that are due by steady_clock, earliest deadline first (equal ones in the
// order armed); those armed meanwhile wait for the next pass.
void timer_queue::fire() noexcept {
  event_at = clock::time_point::max();
  const auto now = clock::now();
  const std::uint64_t limit = seq;
  firing = true;
  while (!heap.empty()) {
    timer_node* n = heap.front();
    if (n->deadline > now || n->seq >= limit) break;
    remove(*n);
    n->fire(*n);
  }
  firing = false;
  // Out of memory for libevent's timer heap (the fire callbacks may have taken the room this
  // event left): run again at once rather than lose the timers.
  if (!heap.empty() && !wake_at(heap.front()->deadline)) {
    event_active(event.get(), EV_TIMEOUT, 0);
  }
}

}  // namespace evco::detail
