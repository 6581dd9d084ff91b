#include "evco/detail/frame_cache.hpp"

#include <cstdint>
#include <new>

namespace evco::detail {

namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool bypass = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool bypass = true;
#else
constexpr bool bypass = false;
#endif
#else
constexpr bool bypass = false;
#endif

// malloc's own granule: a frame rounded up to its class costs no more than malloc would give it
// (with 64-byte classes every live frame paid up to 63 bytes more: +127 bytes per idle echo
// connection in bench/'s idle_memory).
constexpr std::size_t granule = 16;
constexpr std::size_t classes = 64;  // frames up to 1 KiB
constexpr std::uint8_t kept_per_class = 32;

struct free_frame {
  free_frame* next;
};

// Trivially constructed and destroyed, so that reaching it costs no guard and no
// __tls_get_addr (initial-exec: the cache is small, so static TLS has room for it). A thread
// that caches a frame registers the cleanup below once, which empties it when the thread exits.
struct cache {
  free_frame* head[classes];
  std::uint8_t count[classes];
  bool registered;
  bool gone;  // the thread is exiting: frames freed from here on bypass the cache
};
thread_local cache frames __attribute__((tls_model("initial-exec")));

struct cleanup {
  cleanup() = default;
  cleanup(const cleanup&) = delete;
  cleanup& operator=(const cleanup&) = delete;
  ~cleanup() {
    frames.gone = true;
    for (std::size_t c = 0; c < classes; ++c) {
      while (free_frame* f = frames.head[c]) {
        frames.head[c] = f->next;
        ::operator delete(f);
      }
      frames.count[c] = 0;
    }
  }
};

[[gnu::noinline]] void register_cleanup() noexcept {
  frames.registered = true;
  static thread_local cleanup c;
  (void)c;
}

// The class of a frame of `size` bytes, or `classes` when it is not cached.
std::size_t class_of(std::size_t size) noexcept {
  return size == 0 ? 0 : (size - 1) / granule;
}

}  // namespace

void* frame_allocate(std::size_t size) {
  const std::size_t c = class_of(size);
  if (bypass || c >= classes) return ::operator new(size);
  if (free_frame* f = frames.head[c]) {
    frames.head[c] = f->next;
    --frames.count[c];
    return f;
  }
  return ::operator new((c + 1) * granule);
}

void frame_deallocate(void* p, std::size_t size) noexcept {
  const std::size_t c = class_of(size);
  if (bypass || c >= classes) return ::operator delete(p);
  if (frames.count[c] == kept_per_class || frames.gone) return ::operator delete(p);
  if (!frames.registered) register_cleanup();
  auto* f = static_cast<free_frame*>(p);
  f->next = frames.head[c];
  frames.head[c] = f;
  ++frames.count[c];
}

}  // namespace evco::detail
