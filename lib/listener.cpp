#include "evco/listener.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "op_limits.hpp"
#include "parked.hpp"
#include "stream/state.hpp"
#include "unix_socket.hpp"

namespace evco {
namespace detail {

// How long accept() rests after running out of file descriptors before it tries again.
constexpr auto fd_exhaustion_backoff = std::chrono::milliseconds(100);

namespace {
void on_limit(op_limits& l, errc why) noexcept;
void on_backoff(listener_state& s) noexcept;
}  // namespace

struct listener_state {
  listener_state(loop& l, int f) noexcept : lp(&l), fd(f) {}
  loop* lp;
  int fd;
  event_ptr readable;  // EV_READ | EV_PERSIST on the socket, added while an accept is parked
  // The parked accept's deadline and stop request.
  struct accept_limits : op_limits {
    explicit accept_limits(listener_state* st) noexcept : op_limits(*st->lp, &on_limit), s(st) {}
    listener_state* s;
  } limits{this};
  // On the loop's timer queue: the rest after running out of file descriptors.
  struct backoff_node : timer_node {
    explicit backoff_node(listener_state* st) noexcept : s(st) {
      fire = [](timer_node& n) noexcept { on_backoff(*static_cast<backoff_node&>(n).s); };
    }
    listener_state* s;
  } backoff{this};
  accept_op* pending = nullptr;
  // Try accept4() before waiting only while connections queue up faster than they are
  // accepted; a server that keeps up would otherwise pay a failing accept4 per connection.
  bool speculate = true;
  clock::time_point backoff_until{};
  unix_socket_file file;  // a Unix listener's socket file

  ~listener_state() {
    readable.reset();
    limits.disarm();
    loop_access::disarm(*lp, backoff);
    remove_socket_file(file);  // first: a client finding the path would connect to nothing
    ::close(fd);
  }
};

namespace {

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
  op.unlist();
  s.limits.disarm();
  loop_access::disarm(*s.lp, s.backoff);
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

// What loop::parked() shows: the listening endpoint, and the accept's deadline.
void describe(const parked_op& p, parked_op_info& out) {
  const listener_state& s = *static_cast<const accept_op&>(p).s;
  describe_socket(s.fd, out);  // a listening socket has no peer
  if (s.limits.active) describe_timer(s.limits, out);
}
constexpr parked_op_type accept_type{"accept", describe};

void on_backoff(listener_state& s) noexcept {
  accept_op* op = s.pending;
  if (!op) return;
  if (try_accept(s, *op)) return finish_now(s, *op);
  event_add(s.readable.get(), nullptr);
}

void on_limit(op_limits& l, errc why) noexcept {
  listener_state& s = *static_cast<listener_state::accept_limits&>(l).s;
  accept_op* op = s.pending;
  if (!op) return;
  op->ec = why;
  finish_now(s, *op);
}

}  // namespace

accept_op::~accept_op() {
  if (parked) {
    unpark(*s, *this);
  } else if (queued) {
    loop_access::unschedule(*lp, *this);
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

bool accept_op::await_suspend(std::coroutine_handle<> h) {
  handle = h;
  parked = true;
  loop_access::list_parked(*lp, *this, accept_type);
  s->pending = this;
  try {
    if (clock::now() < s->backoff_until) {
      loop_access::arm(*lp, s->backoff, s->backoff_until);
    } else {
      event_add(s->readable.get(), nullptr);
    }
  } catch (const std::bad_alloc&) {
    ec = std::make_error_code(std::errc::not_enough_memory);
  }
  if (!ec && !s->limits.arm(deadline_after(timeout), stop)) {
    ec = std::make_error_code(std::errc::not_enough_memory);
  }
  if (!ec) return true;
  unpark(*s, *this);
  return false;
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

namespace {

// The options that apply to `ep`'s kind of socket (a Unix socket has no TCP_NODELAY, and
// SO_REUSEADDR means nothing to it).
std::error_code set_options(int fd, const endpoint& ep, const listen_options& o) {
  struct option {
    bool wanted;
    int level, name, value;
  };
  const bool ip = !ep.is_unix();
  const option options[] = {
      {ip && o.reuse_address, SOL_SOCKET, SO_REUSEADDR, 1},
      {o.reuse_port, SOL_SOCKET, SO_REUSEPORT, 1},
      {ip && o.no_delay, IPPROTO_TCP, TCP_NODELAY, 1},
      {ep.is_v6(), IPPROTO_IPV6, IPV6_V6ONLY, o.v6_only ? 1 : 0},
  };
  for (const option& opt : options) {
    if (opt.wanted && setsockopt(fd, opt.level, opt.name, &opt.value, sizeof opt.value) != 0) {
      return detail::system_error(errno);
    }
  }
  return {};
}

}  // namespace

result<listener> listener::bind(loop& lp, const endpoint& ep, listen_options o) {
  if (o.backlog < 0) return std::make_error_code(std::errc::invalid_argument);
  const int fd = ::socket(ep.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return detail::system_error(errno);
  detail::unix_socket_file file;
  auto fail = [fd, &file](std::error_code ec) -> std::error_code {
    detail::remove_socket_file(file);
    ::close(fd);
    return ec;
  };
  if (auto ec = set_options(fd, ep, o)) return fail(ec);
  if (ep.is_unix()) {
    if (auto ec = detail::bind_unix(fd, ep, o.remove_stale_socket, file)) return fail(ec);
  } else if (::bind(fd, ep.data(), ep.size()) != 0) {
    return fail(detail::system_error(errno));
  }
  if (::listen(fd, o.backlog) != 0) return fail(detail::system_error(errno));

  auto* s = new detail::listener_state(lp, fd);
  s->file = std::move(file);
  event_base* base = lp.native_handle();
  s->readable.reset(event_new(base, fd, EV_READ | EV_PERSIST, detail::on_readable, s));
  listener l;
  l.s_ = s;
  if (!s->readable) {
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
    detail::loop_access::schedule(*op->lp, *op);
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
