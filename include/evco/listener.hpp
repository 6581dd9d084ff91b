#pragma once
// listener: a bound, listening TCP or Unix domain socket whose accept() is awaitable.

#include <optional>
#include <stop_token>
#include <type_traits>

#include "evco/detail/parked_op.hpp"
#include "evco/detail/waiter.hpp"
#include "evco/endpoint.hpp"
#include "evco/error.hpp"
#include "evco/stream.hpp"

namespace evco {

class loop;

struct listen_options {
  int backlog = 1024;         ///< negative: invalid_argument
  bool reuse_address = true;  ///< SO_REUSEADDR: rebind while old connections sit in TIME_WAIT
  bool reuse_port = false;    ///< SO_REUSEPORT: one listener per loop/thread on the same port
  bool v6_only = false;       ///< IPV6_V6ONLY for an IPv6 endpoint
  bool no_delay = true;       ///< TCP_NODELAY on every accepted stream
  /// Unix path only: when the path is taken by a socket file that nobody listens on (its
  /// server died), remove it and bind. A live listener's socket, or a file that is not a
  /// socket, is never removed: binding fails with address_in_use as without the option. (The
  /// test is a connect: a live listener sees it as a connection that ends at once.)
  bool remove_stale_socket = false;
};
static_assert(std::is_trivially_destructible_v<listen_options>);  // see op_options

namespace detail {

struct listener_state;

struct [[nodiscard]] accept_op : waiter, parked_op {
  accept_op(listener_state* st, op_options o) noexcept
      : s(st), timeout(o.timeout), stop(std::move(o.stop)) {}
  // Movable until it is awaited, so that when_any and when_all can take it in.
  accept_op(accept_op&& o) noexcept : s(o.s), timeout(o.timeout), stop(std::move(o.stop)) {}
  accept_op& operator=(const accept_op&) = delete;
  ~accept_op();

  bool await_ready();
  bool await_suspend(std::coroutine_handle<> h);
  result<stream> await_resume();

  listener_state* s;
  loop* lp = nullptr;
  bool parked = false;
  int fd = -1;
  duration timeout;
  std::stop_token stop;
  std::error_code ec;
};

}  // namespace detail

class listener {
 public:
  listener() noexcept = default;
  listener(listener&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  listener& operator=(listener&& o) noexcept;
  ~listener() { close(); }

  /// Binds and listens; port 0 picks a free port (read it back with local_endpoint()).
  /// A Unix endpoint (endpoint::unix_path) makes its socket file, which close() removes again
  /// (if it is still the file this listener made). Errors are the OS's: address_in_use (the
  /// path or port is taken; see remove_stale_socket), no_such_file_or_directory (a missing
  /// directory), permission_denied.
  static result<listener> bind(loop& lp, const endpoint& ep, listen_options o = {});

  /// Completes with the next connection. When the process is out of file descriptors
  /// (EMFILE, ENFILE) it reports that errno once and the next accept() waits a short
  /// back-off before trying again, so a server loop that retries does not spin.
  detail::accept_op accept(op_options o = {}) { return {s_, std::move(o)}; }

  /// Resumes a pending accept with errc::closed and closes the socket (removing the socket
  /// file it made).
  void close() noexcept;

  bool is_open() const noexcept { return s_ != nullptr; }
  result<endpoint> local_endpoint() const;
  int native_handle() const noexcept;

 private:
  detail::listener_state* s_ = nullptr;
};

}  // namespace evco
