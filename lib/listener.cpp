#include "evco/listener.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "stream_state.hpp"

namespace evco {
namespace detail {

// How long accept() rests after running out of file descriptors before it tries again.
constexpr auto fd_exhaustion_backoff = std::chrono::milliseconds(100);

struct listener_state {
  loop* lp;
  int fd;
  event_ptr readable;  // EV_READ | EV_PERSIST on the socket, added while an accept is parked
  event_ptr timer;     // the parked accept's deadline and stop-token wake-up
  event_ptr backoff;   // fd-exhaustion rest
  accept_op* pending = nullptr;
  // Try accept4() before waiting only while connections queue up faster than they are
  // accepted; a server that keeps up would otherwise pay a failing accept4 per connection.
  bool speculate = true;
  clock::time_point backoff_until{};

  ~listener_state() {
    readable.reset();
    timer.reset();
    backoff.reset();
    ::close(fd);
  }
};

namespace {

std::error_code system_error(int e) noexcept {
  return {e, std::system_category()};
}

bool try_accept(listener_state& s, accept_op& op) noexcept {
  for (;;) {
    const int fd = ::accept4(s.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {  // TCP_NODELAY comes from the listening socket (Linux inherits it)
      op.fd = fd;
      return true;
    }
    const int e = errno;
    switch (e) {
      case EINTR:
      case ECONNABORTED:
        continue;  // that connection is gone; the next may be there
      case EAGAIN:
        return false;
      case EMFILE:
      case ENFILE:
      case ENOBUFS:
      case ENOMEM:
        // The pending connection stays queued and the socket stays readable: waiting for
        // readability again would spin. Rest instead.
        s.backoff_until = clock::now() + fd_exhaustion_backoff;
        event_del(s.readable.get());
        [[fallthrough]];
      default:
        op.ec = system_error(e);
        return true;
    }
  }
}

// The readable event stays registered: a server usually awaits the next accept at once, and
// keeping it saves an epoll_ctl pair per connection. on_readable drops it if nobody waits.
void unpark(listener_state& s, accept_op& op) noexcept {
  s.pending = nullptr;
  op.parked = false;
  op.on_stop.reset();  // first: blocks while a stop callback runs on another thread
  event_del(s.backoff.get());
  event_del(s.timer.get());
}

void finish_now(listener_state& s, accept_op& op) noexcept {
  unpark(s, op);
  op.handle.resume();
}

void on_readable(evutil_socket_t, short, void* arg) {
  auto& s = *static_cast<listener_state*>(arg);
  accept_op* op = s.pending;
  if (!op) {
    event_del(s.readable.get());  // level-triggered: nobody to accept for, stop watching
    s.speculate = true;           // connections queue up faster than they are accepted
    return;
  }
  if (try_accept(s, *op)) finish_now(s, *op);
}

void on_backoff(evutil_socket_t, short, void* arg) {
  auto& s = *static_cast<listener_state*>(arg);
  accept_op* op = s.pending;
  if (!op) return;
  if (try_accept(s, *op)) return finish_now(s, *op);
  event_add(s.readable.get(), nullptr);
}

void on_timer(evutil_socket_t, short, void* arg) {
  auto& s = *static_cast<listener_state*>(arg);
  accept_op* op = s.pending;
  if (!op) return;
  op->ec = op->stop_requested.load(std::memory_order_acquire) ? make_error_code(errc::cancelled)
                                                              : make_error_code(errc::timed_out);
  finish_now(s, *op);
}

}  // namespace

accept_op::~accept_op() {
  if (parked) {
    unpark(*s, *this);
  } else if (queued) {
    lp->unschedule(*this);
  }
  if (fd >= 0) ::close(fd);
}

bool accept_op::await_ready() {
  if (stop.stop_requested()) {
    ec = errc::cancelled;
    return true;
  }
  if (!s) {
    ec = errc::closed;
    return true;
  }
  lp = s->lp;
  if (s->pending) {
    ec = errc::busy;
    return true;
  }
  if (clock::now() < s->backoff_until || !s->speculate) return false;
  if (try_accept(*s, *this)) return true;
  s->speculate = false;  // nothing was queued: wait for readiness from now on
  return false;
}

void accept_op::await_suspend(std::coroutine_handle<> h) {
  handle = h;
  parked = true;
  s->pending = this;
  const auto now = clock::now();
  if (now < s->backoff_until) {
    const timeval tv = to_timeval(s->backoff_until - now);
    event_add(s->backoff.get(), &tv);
  } else {
    event_add(s->readable.get(), nullptr);
  }
  if (timeout.count() > 0) {
    const timeval tv = to_timeval(timeout);
    event_add(s->timer.get(), &tv);
  }
  if (stop.stop_possible()) on_stop.emplace(stop, cancel_fn{s->timer.get(), &stop_requested});
}

result<stream> accept_op::await_resume() {
  if (ec) return ec;
  return make_socket_stream(*lp, std::exchange(fd, -1));
}

}  // namespace detail

listener& listener::operator=(listener&& o) noexcept {
  if (this != &o) {
    close();
    s_ = std::exchange(o.s_, nullptr);
  }
  return *this;
}

result<listener> listener::bind(loop& lp, const endpoint& ep, listen_options o) {
  const int fd = ::socket(ep.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return detail::system_error(errno);
  auto fail = [fd]() -> std::error_code {
    const int e = errno;
    ::close(fd);
    return detail::system_error(e);
  };
  const int one = 1;
  if (o.reuse_address && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) {
    return fail();
  }
  if (o.reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
    return fail();
  }
  if (o.no_delay && setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) {
    return fail();
  }
  if (ep.is_v6()) {
    const int v6only = o.v6_only ? 1 : 0;
    if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only) != 0) return fail();
  }
  if (::bind(fd, ep.data(), ep.size()) != 0 || ::listen(fd, o.backlog) != 0) return fail();

  auto* s = new detail::listener_state{&lp, fd, {}, {}, {}};
  event_base* base = lp.native_handle();
  s->readable.reset(event_new(base, fd, EV_READ | EV_PERSIST, detail::on_readable, s));
  s->timer.reset(event_new(base, -1, 0, detail::on_timer, s));
  s->backoff.reset(event_new(base, -1, 0, detail::on_backoff, s));
  listener l;
  l.s_ = s;
  if (!s->readable || !s->timer || !s->backoff) {
    return std::make_error_code(std::errc::not_enough_memory);
  }
  return l;
}

void listener::close() noexcept {
  detail::listener_state* s = std::exchange(s_, nullptr);
  if (!s) return;
  if (detail::accept_op* op = s->pending) {
    op->ec = errc::closed;
    detail::unpark(*s, *op);
    op->lp->schedule(*op);
  }
  delete s;
}

result<endpoint> listener::local_endpoint() const {
  if (!s_) return errc::closed;
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getsockname(s_->fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    return detail::system_error(errno);
  }
  return endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

int listener::native_handle() const noexcept {
  return s_ ? s_->fd : -1;
}

}  // namespace evco
