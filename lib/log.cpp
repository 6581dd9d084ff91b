#include "evco/log.hpp"

#include <cerrno>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

#include <event2/dns.h>
#include <event2/thread.h>

#include "libevent.hpp"

namespace evco {
namespace {

std::mutex handler_mutex;
std::shared_ptr<const log_handler> current;  // guarded by handler_mutex

// The last error libevent logged on this thread: a fatal error is logged just before libevent
// calls its fatal callback, which throws it.
thread_local std::string last_error;

void deliver(log_level level, const char* msg) noexcept {
  const int saved = errno;  // libevent reads errno after logging, for the fatal error
  if (level == log_level::error) {
    try {
      last_error = msg;
    } catch (...) {
    }
  }
  std::shared_ptr<const log_handler> h;
  {
    std::lock_guard lock(handler_mutex);
    h = current;
  }
  if (h && *h) {
    try {
      (*h)(level, msg);
    } catch (...) {  // a handler must not throw into libevent's C frames
    }
  }
  errno = saved;
}

void on_log(int severity, const char* msg) {
  const log_level level = severity == EVENT_LOG_DEBUG  ? log_level::debug
                          : severity == EVENT_LOG_MSG  ? log_level::info
                          : severity == EVENT_LOG_WARN ? log_level::warning
                                                       : log_level::error;
  deliver(level, msg);
}

void on_dns_log(int is_warning, const char* msg) {
  deliver(is_warning ? log_level::warning : log_level::info, msg);
}

// libevent calls this instead of exit() on an error it cannot return from. Its internal
// assertion failures (a bug) still abort. The others are resource failures (the one on evco's
// paths: no file descriptor for the signal pipe while an event_base is made, which the loop
// checks beforehand), and become an exception: libevent's frames have unwind tables on
// Debian, so it reaches evco's caller, which is better than the end of the process.
[[noreturn]] void on_fatal(int code) {
  constexpr int libevent_assert = static_cast<int>(0xdeaddead);  // EVENT_ERR_ABORT_
  if (code == libevent_assert) std::abort();
  const int e = errno != 0 ? errno : EIO;
  throw std::system_error(e, std::system_category(), "libevent: " + last_error);
}

}  // namespace

log_handler set_log_handler(log_handler h) {
  detail::install_libevent_hooks();
  auto next = h ? std::make_shared<const log_handler>(std::move(h)) : nullptr;
  std::shared_ptr<const log_handler> previous;
  {
    std::lock_guard lock(handler_mutex);
    previous = std::exchange(current, std::move(next));
  }
  return previous ? *previous : log_handler{};
}

namespace detail {

void install_libevent_hooks() {
  static const bool done = [] {
    if (evthread_use_pthreads() != 0)
      throw std::runtime_error("evco: evthread_use_pthreads failed");
    event_set_log_callback(on_log);
    evdns_set_log_fn(on_dns_log);
    event_set_fatal_callback(on_fatal);
    return true;
  }();
  (void)done;
}

}  // namespace detail
}  // namespace evco
