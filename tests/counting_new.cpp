// Replaces the global operator new for one suite, counting calls. In a TU of its own so that
// g++ does not see malloc/free through inlining (its -Wmismatched-new-delete misfires then).

#include <atomic>
#include <cstdlib>
#include <new>

std::atomic<std::size_t> allocations{0};

// clang's ThreadSanitizer runtime defines operator new itself, statically; the TSan build
// only runs the threaded suites, so it goes without the count.
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define EVCO_NO_COUNTING_NEW
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define EVCO_NO_COUNTING_NEW
#endif

#ifdef EVCO_NO_COUNTING_NEW
extern const bool counting_new_active = false;
#else
extern const bool counting_new_active = true;

void* operator new(std::size_t n) {
  allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
  return operator new(n);
}
// The nothrow forms too: they allocate, and left to the runtime (ASan's) their memory would
// come back through the free() below.
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(n ? n : 1);
}
void* operator new[](std::size_t n, const std::nothrow_t& t) noexcept {
  return operator new(n, t);
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  std::free(p);
}
#endif
