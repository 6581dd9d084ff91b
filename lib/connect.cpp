#include "evco/connect.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "event_op.hpp"
#include "stream_state.hpp"

namespace evco {
namespace {

std::error_code last_error() noexcept {
  return {errno, std::system_category()};
}

struct socket_guard {
  int fd;
  ~socket_guard() {
    if (fd >= 0) ::close(fd);
  }
  int release() noexcept { return std::exchange(fd, -1); }
};

// Waits until a non-blocking connect on `fd` finished; reads its outcome from SO_ERROR.
struct connect_wait : detail::event_op {
  loop& lp;
  int fd;
  duration timeout;

  connect_wait(loop& l, int f, duration t, std::stop_token st)
      : event_op(std::move(st)), lp(l), fd(f), timeout(t) {}

  bool await_ready() noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) {
    handle = h;
    ev.reset(event_new(lp.native_handle(), fd, EV_WRITE, &on_event, this));
    if (!ev) throw std::bad_alloc();
    const timeval tv = detail::to_timeval(timeout);
    event_add(ev.get(), timeout.count() > 0 ? &tv : nullptr);
    watch_stop();
  }
  result<void> await_resume() const noexcept {
    if (ec) return ec;
    return success();
  }

  static void on_event(evutil_socket_t, short what, void* arg) {
    auto& self = *static_cast<connect_wait*>(arg);
    if (self.cancelled()) return self.finish(errc::cancelled);
    if (what & EV_TIMEOUT) return self.finish(errc::connect_timed_out);
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(self.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    self.finish(err != 0 ? std::error_code(err, std::system_category()) : std::error_code{});
  }
};

}  // namespace

task<result<stream>> connect(loop& lp, endpoint ep, connect_options o, std::stop_token stop) {
  if (stop.stop_requested()) co_return errc::cancelled;
  socket_guard sock{::socket(ep.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)};
  if (sock.fd < 0) co_return last_error();
  if (o.no_delay) {
    const int one = 1;
    setsockopt(sock.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  if (::connect(sock.fd, ep.data(), ep.size()) != 0) {
    if (errno != EINPROGRESS) co_return last_error();
    EVCO_TRYV(co_await connect_wait{lp, sock.fd, o.timeout, std::move(stop)});
  }
  co_return detail::make_socket_stream(lp, sock.release());
}

}  // namespace evco
