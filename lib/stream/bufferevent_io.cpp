// The bufferevent transport (TLS, pairs, user bufferevents): every byte goes through the
// bufferevent's input and output buffers, and its callbacks wake the parked ops.

#include "internal.hpp"

namespace evco::detail {

void bufferevent_pause_reading(stream_state& s) noexcept {
  if (s.read_paused) return;
  bufferevent_disable(s.bev, EV_READ);
  s.read_paused = true;
}

namespace {

// The op parked on `d` that a data callback may complete. One parked over the fairness budget
// waits for its retry after the next poll: deferred callbacks run in the same pass as what
// queued them (a pair's write triggers its own write callback), and completing the op there
// would skip the poll the budget is for.
stream_op* waiting_op(stream_state& s, direction d) noexcept {
  stream_op* op = s.side[d].op;
  return op && op->state != op_state::yielding ? op : nullptr;
}

// With nobody reading, the input stops at the read limit: reading is paused there, and resumed
// once a reader parks. libevent's own suspension at the high watermark is not enough: since
// 2.1.11 (bufferevent_inbuf_wm_check, libevent issue #891) a read callback that leaves the
// input at the high watermark is run again at once, for as long as EV_READ stays enabled: a
// busy loop.
void on_read(bufferevent*, void* arg) {
  auto& s = *static_cast<stream_state*>(arg);
  if (stream_op* op = waiting_op(s, reading)) {
    if (type_of(op->kind).perform(s, *op)) finish_now(s, *op);
    return;
  }
  if (s.read_high != 0 && input_length(s) >= s.read_high) bufferevent_pause_reading(s);
}

void on_write(bufferevent*, void* arg) {
  auto& s = *static_cast<stream_state*>(arg);
  if (stream_op* op = waiting_op(s, writing); op && type_of(op->kind).perform(s, *op)) {
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
  // The end of the writing direction: the peer takes no more bytes (a pair's partner that was
  // closed, see pair.cpp), as writing to a closed socket is EPIPE.
  if ((what & BEV_EVENT_EOF) && (what & BEV_EVENT_WRITING) && !write_error) {
    write_error = system_error(EPIPE);
  }
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

}  // namespace

void bufferevent_resume_reading(stream_state& s) noexcept {
  if (!s.read_paused || s.side[reading].error || s.input_viewed) return;
  bufferevent_enable(s.bev, EV_READ);
  s.read_paused = false;
}

void bufferevent_limit_input(stream_state& s, std::size_t high) noexcept {
  bufferevent_setwatermark(s.bev, EV_READ, 0, high);
  if (high == 0 || input_length(s) < high) bufferevent_resume_reading(s);
}

const transport bufferevent_transport{false,
                                      bufferevent_resume_reading,
                                      bufferevent_limit_input,
                                      bufferevent_pause_reading,
                                      shut_socket,
                                      linger_close};

namespace {
void hook_up(stream_state& s) noexcept {
  bufferevent_setcb(s.bev, on_read, on_write, on_event, &s);
  // A plain socket's reads are its own (socket_read), which keep to the read limit.
  if (!s.io->direct) s.io->limit_input(s, s.read_high);
  bufferevent_setwatermark(s.bev, EV_WRITE, s.write_low, 0);
  bufferevent_enable(s.bev, s.io->direct ? EV_WRITE : EV_READ | EV_WRITE);
}
}  // namespace

stream attach(loop& lp, bufferevent* bev, const transport& io, const tls_hooks* tls) {
  stream st;
  st.s_ = new stream_state(lp, bev, io);
  st.s_->tls = tls;
  if (bev) hook_up(*st.s_);
  return st;
}

bool buffers(stream_state& s) noexcept {
  if (s.bev) return true;
  // The bufferevent owns the socket from here on (closes it when freed); s.fd stays its copy.
  s.bev = bufferevent_socket_new(s.lp->native_handle(), s.fd,
                                 BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
  if (!s.bev) return false;
  // libevent's default is 16 KiB per writev; a deep output buffer then costs one loop turn
  // per 16 KiB.
  bufferevent_set_max_single_write(s.bev, max_single_write);
  hook_up(s);
  return true;
}

}  // namespace evco::detail
