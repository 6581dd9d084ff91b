// The bufferevent callbacks (TLS, pairs, queued output).

#include "internal.hpp"

namespace evco::detail {

namespace {

void on_read(bufferevent*, void* arg) {
  auto& s = *static_cast<stream_state*>(arg);
  if (stream_op* op = s.reader; op && try_read(s, *op)) finish_now(s, *op);
}

void on_write(bufferevent*, void* arg) {
  auto& s = *static_cast<stream_state*>(arg);
  if (stream_op* op = s.writer; op && try_write(s, *op)) finish_now(s, *op);
}

void on_event(bufferevent* bev, short what, void* arg) {
  const int err = EVUTIL_SOCKET_ERROR();  // first: anything below may overwrite it
  auto& s = *static_cast<stream_state*>(arg);
  if ((what & BEV_EVENT_EOF) && !s.read_error) s.read_error = errc::eof;
  if (what & BEV_EVENT_ERROR) {
    const std::error_code ec =
        s.map_error ? s.map_error(bev, err) : system_error(err != 0 ? err : EIO);
    if (what & BEV_EVENT_READING) {
      // A failed receive (ECONNRESET) kills the socket both ways.
      s.read_error = ec;
      if (!s.write_error) s.write_error = ec;
    } else if (!s.write_error) {
      s.write_error = ec;
    }
  }
  if (stream_op* op = s.reader; op && try_read(s, *op)) finish_later(s, *op);
  if (stream_op* op = s.writer; op && try_write(s, *op)) finish_later(s, *op);
}

}  // namespace

stream attach(loop& lp, bufferevent* bev, bool bufferevent_reads, const tls_hooks* tls) {
  stream st;
  st.s_ = new stream_state(lp, bev);
  if (tls) {
    st.s_->map_error = tls->map_error;
    st.s_->send_close_notify = tls->send_close_notify;
  }
  bufferevent_setcb(bev, on_read, on_write, on_event, st.s_);
  // A plain socket's reads are evco's own (socket_read), which keep to the read limit.
  if (bufferevent_reads) bufferevent_setwatermark(bev, EV_READ, 0, st.s_->read_high);
  bufferevent_setwatermark(bev, EV_WRITE, st.s_->write_low, 0);
  bufferevent_enable(bev, bufferevent_reads ? EV_READ | EV_WRITE : EV_WRITE);
  return st;
}

}  // namespace evco::detail
