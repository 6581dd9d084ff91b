// Close, and the graceful close that lingers in the background.

#include <sys/ioctl.h>

#include "internal.hpp"

namespace evco::detail {

namespace {

// How long a closed stream waits for the peer without progress before it gives up.
constexpr auto linger_timeout = std::chrono::seconds(5);

void linger_done(stream_state* s) noexcept {
  loop_access::release(*s->lp, *s->lingering);
  loop_access::disarm(*s->lp, *s->lingering);
  delete s;
}

void linger_check(stream_state* s) noexcept {
  if (s->write_shut && s->peer_eof) linger_done(s);
}

void linger_read(bufferevent* bev, void* arg) {
  evbuffer* in = bufferevent_get_input(bev);
  evbuffer_drain(in, evbuffer_get_length(in));
  (void)arg;
}

// Ends our direction once the output is flushed: close_notify first on TLS, then FIN.
void linger_shut(stream_state* s) noexcept {
  if (s->write_shut) return;
  if (s->tls && !s->tls->send_close_notify(s->bev)) {
    // The socket is full: retry once it is writable (bounded by the linger timeout).
    if (!s->socket_write) {
      s->socket_write.reset(event_new(
          s->lp->native_handle(), fd_of(*s), EV_WRITE,
          [](evutil_socket_t, short, void* a) {
            auto* st = static_cast<stream_state*>(a);
            linger_shut(st);
            linger_check(st);
          },
          s));
    }
    if (s->socket_write && event_add(s->socket_write.get(), nullptr) == 0) return;
  }
  (void)shut_socket(*s);
  s->write_shut = true;
}

void linger_write(bufferevent* bev, void* arg) {
  auto* s = static_cast<stream_state*>(arg);
  if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) linger_shut(s);
  linger_check(s);
}

void linger_event(bufferevent* bev, short what, void* arg) {
  auto* s = static_cast<stream_state*>(arg);
  if (what & BEV_EVENT_EOF) {
    s->peer_eof = true;
    bufferevent_disable(bev, EV_READ);
    linger_check(s);
    return;
  }
  linger_done(s);  // an error: give up on the peer
}

}  // namespace

void close_state(stream_state* s) noexcept {
  // A read gives back what it took; a write queues its rest, which goes out with the close.
  for (stream_op* op : {s->side[reading].op, s->side[writing].op}) {
    if (!op) continue;
    type_of(op->kind).interrupt(*s, *op, errc::closed);
    finish_later(*s, *op);
  }
  for (side_state& side : s->side)
    side.limits.reset();
  s->socket_write.reset();
  s->retry.reset();
  s->socket_read.reset();  // a linger reads through the bufferevent again
  if (!s->bev && s->fd < 0) {
    delete s;
    return;
  }
  s->io->close(s);
}

namespace {
// A plain socket closes here, not when libevent finalises the bufferevent a loop turn later:
// bytes the peer sent in between would be unread at that close, which then sends RST rather
// than FIN. (A bufferevent owns the fd once buffers() made it, so it is taken back first.)
void close_at_once(stream_state* s) noexcept {
  int fd = std::exchange(s->fd, -1);  // plain sockets, limited or not
  if (fd >= 0 && s->bev && bufferevent_setfd(s->bev, -1) != 0) fd = -1;
  delete s;
  if (fd >= 0) ::close(fd);
}
}  // namespace

std::error_code shut_socket(stream_state& s) noexcept {
  if (::shutdown(fd_of(s), SHUT_WR) != 0) return system_error(errno);
  return {};
}

void linger_close(stream_state* s) noexcept {
  const int fd = fd_of(*s);
  int unread = 0;
  // After the peer's end every byte before it was read already: no need to ask the kernel.
  if (fd >= 0 && s->side[reading].error != errc::eof && ioctl(fd, FIONREAD, &unread) != 0)
    unread = 0;
  const bool queued = output_length(*s) > 0;
  // Bytes of ours the kernel still holds (unacknowledged) linger too: were the peer to send
  // anything after a close, the kernel would answer it with RST and drop them.
  int in_kernel = 0;
  if (fd >= 0 && s->fd >= 0 && ioctl(fd, TIOCOUTQ, &in_kernel) != 0) in_kernel = 0;
  // Closing with unread bytes in the kernel makes it send RST, which can destroy data the
  // peer has not read yet; so does closing before the output is flushed. Only the common
  // case, nothing pending either way, closes at once.
  // TLS sends close_notify first; only a socket too full to take it makes that linger.
  if (fd < 0 || s->side[writing].error ||
      (!queued && in_kernel == 0 && unread == 0 &&
       (!s->tls || s->tls->send_close_notify(s->bev)))) {
    close_at_once(s);
    return;
  }
  if (!buffers(*s)) {  // no memory to linger with: close at once
    close_at_once(s);
    return;
  }
  try {
    s->lingering = std::make_unique<stream_state::linger_state>();
  } catch (const std::bad_alloc&) {
    delete s;  // no memory to linger with: close at once
    return;
  }
  stream_state::linger_state& l = *s->lingering;
  l.state = s;
  l.destroy = [](owned* o) noexcept {
    linger_done(static_cast<stream_state::linger_state*>(o)->state);
  };
  l.queued = output_length(*s);
  l.fire = [](timer_node& n) noexcept {
    auto& t = static_cast<stream_state::linger_state&>(n);
    // As long as the queued output keeps draining, the peer gets another linger_timeout.
    const std::size_t queued = output_length(*t.state);
    if (queued < t.queued) {
      t.queued = queued;
      loop_access::arm(*t.state->lp, t, saturating_add(clock::now(), linger_timeout));
      return;
    }
    linger_done(t.state);  // give up on the peer
  };
  try {
    loop_access::arm(*s->lp, l, saturating_add(clock::now(), linger_timeout));
  } catch (const std::bad_alloc&) {
    delete s;  // no room for the timer: close at once rather than without a bound
    return;
  }
  loop_access::adopt(*s->lp, l);
  bufferevent_setcb(s->bev, linger_read, linger_write, linger_event, s);
  bufferevent_setwatermark(s->bev, EV_READ, 0, 0);
  bufferevent_setwatermark(s->bev, EV_WRITE, 0, 0);
  if (s->side[reading].error) s->peer_eof = true;
  evbuffer_drain(input(*s), input_length(*s));
  bufferevent_enable(s->bev, s->peer_eof ? EV_WRITE : EV_READ | EV_WRITE);
  if (!queued) linger_shut(s);
}

stream_state::~stream_state() {
  // The events on the fd go before bufferevent_free closes it under them.
  socket_read.reset();
  socket_write.reset();
  retry.reset();
  release_rate(*this);  // before the bufferevent goes: its group and bucket let go of it
  if (bev) {
    bufferevent_free(bev);
  } else if (fd >= 0) {
    ::close(fd);  // a plain socket that never needed a bufferevent
  }
}

}  // namespace evco::detail
