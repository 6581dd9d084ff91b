#pragma once
// Where evco's coroutine frames come from; not part of the API.

#include <cstddef>

namespace evco::detail {

// Coroutine frames (evco::task, and the children of when_any, when_all and task_group) are
// allocated here: a per-thread cache of freed frames by size class, so that the short-lived
// frames of a race or a spawned child cost no malloc in the steady state (Asio's recycling
// allocator does the same). Bounded (a few dozen frames per class, larger frames go straight
// to operator new); emptied when the thread exits. Builds under AddressSanitizer bypass it, so
// that a frame used after it was freed is still reported. Throws std::bad_alloc like
// operator new.
void* frame_allocate(std::size_t size);
void frame_deallocate(void* p, std::size_t size) noexcept;

// For a promise type: `struct promise_type : frame_allocated { ... }`.
struct frame_allocated {
  static void* operator new(std::size_t size) { return frame_allocate(size); }
  static void operator delete(void* p, std::size_t size) noexcept { frame_deallocate(p, size); }
};

}  // namespace evco::detail
