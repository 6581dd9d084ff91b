// The bufferevent transport (TLS, pairs, user bufferevents): every byte goes through the
// bufferevent's input and output buffers, and its callbacks wake the parked ops.

#include "internal.hpp"

namespace evco::detail {

namespace {

void on_read(bufferevent*, void* arg) {
  auto& s = *static_cast<stream_state*>(arg);
  if (stream_op* op = s.side[reading].op; op && type_of(op->kind).perform(s, *op)) {
    finish_now(s, *op);
  }
}

void on_write(bufferevent*, void* arg) {
  auto& s = *static_cast<stream_state*>(arg);
  if (stream_op* op = s.side[writing].op; op && type_of(op->kind).perform(s, *op)) {
    finish_now(s, *op);
  }
}

// Also the plain-socket transport's, for the errors of the writes the bufferevent does.
void on_event(bufferevent* bev, short what, void* arg) {
  const int err = EVUTIL_SOCKET_ERROR();  // first: anything below may overwrite it
  auto& s = *static_cast<stream_state*>(arg);
  std::error_code& read_error = s.side[reading].error;
  std::error_code& write_error = s.side[writing].error;
  if ((what & BEV_EVENT_EOF) && !read_error) read_error = errc::eof;
  if (what & BEV_EVENT_ERROR) {
    const std::error_code ec =
        s.tls ? s.tls->map_error(bev, err) : system_error(err != 0 ? err : EIO);
    if (what & BEV_EVENT_READING) {
      // A failed receive (ECONNRESET) kills the socket both ways.
      read_error = ec;
      if (!write_error) write_error = ec;
    } else if (!write_error) {
      write_error = ec;
    }
  }
  for (stream_op* op : {s.side[reading].op, s.side[writing].op}) {
    if (op && type_of(op->kind).perform(s, *op)) finish_later(s, *op);
  }
}

void reader_parked(stream_state&) noexcept {}  // the bufferevent reads all along

void limit_input(stream_state& s, std::size_t high) noexcept {
  bufferevent_setwatermark(s.bev, EV_READ, 0, high);
}

}  // namespace

const transport bufferevent_transport{false, reader_parked, limit_input};

stream attach(loop& lp, bufferevent* bev, const transport& io, const tls_hooks* tls) {
  stream st;
  st.s_ = new stream_state(lp, bev, io);
  st.s_->tls = tls;
  bufferevent_setcb(bev, on_read, on_write, on_event, st.s_);
  // A plain socket's reads are its own (socket_read), which keep to the read limit.
  if (!io.direct) io.limit_input(*st.s_, st.s_->read_high);
  bufferevent_setwatermark(bev, EV_WRITE, st.s_->write_low, 0);
  bufferevent_enable(bev, io.direct ? EV_WRITE : EV_READ | EV_WRITE);
  return st;
}

}  // namespace evco::detail
