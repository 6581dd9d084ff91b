#include "evco/stream.hpp"

#include <sys/socket.h>

#include "../unix_socket.hpp"
#include "internal.hpp"

namespace evco {

stream& stream::operator=(stream&& o) noexcept {
  if (this != &o) {
    close();
    s_ = std::exchange(o.s_, nullptr);
  }
  return *this;
}

stream stream::from_bufferevent(loop& lp, bufferevent* bev) {
  if (!bev) throw std::invalid_argument("evco::stream::from_bufferevent: null bufferevent");
  // The time limits are evco's own: libevent's would disable a direction nobody re-enables.
  bufferevent_set_timeouts(bev, nullptr, nullptr);
  const bool pair = bufferevent_pair_get_partner(bev) != nullptr;
  return detail::attach(lp, bev, pair ? detail::pair_transport : detail::bufferevent_transport);
}

result<stream> stream::from_socket(loop& lp, int fd) {
  int type = 0, listening = 0;
  socklen_t len = sizeof type;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) return detail::system_error(errno);
  len = sizeof listening;
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0) {
    return detail::system_error(errno);
  }
  if (type != SOCK_STREAM || listening) return std::make_error_code(std::errc::invalid_argument);
  if (evutil_make_socket_nonblocking(fd) != 0) return detail::system_error(errno);
  return detail::make_socket_stream(lp, fd);
}

void stream::close() noexcept {
  if (s_) detail::close_state(std::exchange(s_, nullptr));
}

void stream::set_timeouts(duration read, duration write) {
  if (!s_) return;
  const duration idle[] = {std::max(read, duration::zero()), std::max(write, duration::zero())};
  for (const detail::direction d : {detail::reading, detail::writing}) {
    detail::side_state& side = s_->side[d];
    if (!side.limits && idle[d] == duration::zero()) continue;
    if (!side.limits) side.limits = std::make_unique<detail::side_limits>(*s_, d);
    side.limits->idle = idle[d];
    // An op parked now runs on the new timeouts, from now.
    if (!side.op) continue;
    const bool limited = side.limits && side.limits->active;
    detail::arm_limits(*s_, d, limited ? side.limits->op_deadline : clock::time_point::max());
  }
}

void stream::set_read_limit(std::size_t high) {
  if (!s_) return;
  s_->read_high = high;
  // A read waiting now for a whole line or frame keeps the room it needs until it completes
  // (see grow_input; its unparked puts this limit back).
  if (const detail::stream_op* op = s_->side[detail::reading].op; high != 0 && op) {
    high = std::max(high, detail::input_needed(*op));
  }
  s_->io->limit_input(*s_, high);
}

void stream::set_write_watermarks(std::size_t low, std::size_t high) {
  if (!s_) return;
  s_->write_low = std::min(low, high);
  s_->write_high = high;
  if (s_->bev) bufferevent_setwatermark(s_->bev, EV_WRITE, s_->write_low, 0);
}

std::size_t stream::buffered_input() const noexcept {
  return s_ ? detail::input_length(*s_) : 0;
}

std::size_t stream::buffered_output() const noexcept {
  return s_ ? detail::output_length(*s_) : 0;
}

namespace {
result<endpoint> socket_name(detail::stream_state* s, bool peer) {
  if (!s) return errc::closed;
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  const int fd = detail::fd_of(*s);
  if (fd < 0) return std::make_error_code(std::errc::not_a_socket);  // a pair, say
  auto* sa = reinterpret_cast<sockaddr*>(&ss);
  if ((peer ? getpeername(fd, sa, &len) : getsockname(fd, sa, &len)) != 0) {
    return std::error_code(errno, std::system_category());
  }
  return endpoint::from_sockaddr(sa, len);
}
}  // namespace

result<endpoint> stream::local_endpoint() const {
  return socket_name(s_, false);
}
result<endpoint> stream::remote_endpoint() const {
  return socket_name(s_, true);
}
result<credentials> stream::peer_credentials() const {
  if (!s_) return errc::closed;
  return detail::peer_credentials_of(detail::fd_of(*s_));
}
bufferevent* stream::native_handle() const noexcept {
  return s_ && detail::buffers(*s_) ? s_->bev : nullptr;
}

namespace detail {

void stream_settings::apply_to(stream& st) const {
  st.set_read_limit(read_high);
  st.set_write_watermarks(write_low, write_high);
  st.set_timeouts(read_idle, write_idle);
  if (rate.read_rate != 0 || rate.write_rate != 0) (void)st.set_rate_limit(rate);
}

namespace {
duration idle_of(const side_state& side) noexcept {
  return side.limits ? side.limits->idle : duration::zero();
}
}  // namespace

bufferevent* bufferevent_if_any(const stream& st) noexcept {
  return st.s_ ? st.s_->bev : nullptr;
}

bufferevent* release_bufferevent(stream& st, loop*& lp, stream_settings& kept) noexcept {
  stream_state* s = st.s_;
  if (!s || s->side[reading].op || s->side[writing].op || !buffers(*s)) return nullptr;
  st.s_ = nullptr;
  lp = s->lp;
  kept = {s->read_high, s->write_low, s->write_high, idle_of(s->side[reading]),
          idle_of(s->side[writing])};
  kept.rate = rate_limit_of(*s);
  release_rate(*s);
  bufferevent* bev = std::exchange(s->bev, nullptr);
  s->fd = -1;  // the bufferevent has it
  bufferevent_disable(bev, EV_READ | EV_WRITE);
  bufferevent_setcb(bev, nullptr, nullptr, nullptr, nullptr);
  delete s;  // its own events go; the bufferevent stays
  return bev;
}

}  // namespace detail

}  // namespace evco
