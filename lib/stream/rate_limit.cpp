// A stream's own token bucket (stream::set_rate_limit), and the change of transport that makes a
// plain socket honour it.
//
// libevent's buckets are consulted only by libevent's own reads and writes (bufferevent_sock.c,
// bufferevent_openssl.c): the direct recv()/send() of a plain socket (read.cpp, write.cpp)
// would bypass them. So while a plain socket has a limit (or a group) it becomes, for as long,
// a bufferevent stream like TLS: EV_READ on the bufferevent instead of socket_read, writes
// queued in the output buffer. libevent then does everything a bucket needs: it reads and
// writes at most what the bucket holds, suspends the direction when it is empty (no event
// armed, so no CPU while waiting), refills it from a timer, and shares a group's bucket among
// its members. The ops wait as they always do, with their timeouts and stop tokens. Bytes are
// neither lost nor reordered across the change: both ways take the input buffer first, and a
// write goes direct only while the output buffer is empty.

#include <event2/bufferevent_ssl.h>
#include <event2/bufferevent_struct.h>
#include <openssl/ssl.h>

#include <algorithm>

#include "rate.hpp"

namespace evco::detail {

namespace {

// Per tick: libevent 2.1.12 passes these to evbuffer_read() and SSL_read() as int.
constexpr std::size_t unlimited = std::size_t{1} << 30;

std::size_t slowest_rate(const rate_limit& l) noexcept {
  if (l.read_rate == 0) return l.write_rate;
  if (l.write_rate == 0) return l.read_rate;
  return std::min(l.read_rate, l.write_rate);
}

// floor(rate * ms / 1000), without overflow; at least 1 (libevent's minimum).
std::size_t per_tick(std::size_t rate, unsigned ms) noexcept {
  if (rate == 0) return unlimited;
  const std::size_t n = rate / 1000 * ms + rate % 1000 * ms / 1000;
  return std::clamp<std::size_t>(n, 1, unlimited);
}

// libevent's bucket holds at most `maximum` and gains `p` at each tick, the first of which may
// come at once: over any t, maximum + p + rate * t. So the bucket is `burst` less one tick.
// It holds at least two ticks: its refill timer runs a little late (a relative timeout armed
// when the bucket ran dry, then a loop turn), and the ticks it then finds passed must fit in
// (with room for one only, 18 % of the rate was lost at 10 MB/s).
std::size_t maximum(std::size_t rate, std::size_t burst, std::size_t p) noexcept {
  if (rate == 0) return unlimited;
  return std::clamp(std::max(burst, 3 * p) - p, 2 * p, unlimited);
}

// libevent 2.1.12's TLS bufferevent on a socket, its read bucket empty, stops in the middle of a
// record that OpenSSL has read whole: the rest waits in OpenSSL's buffer (SSL_pending), and a
// refill only re-arms the socket's read event (be_openssl_enable: start_reading), which never
// fires when the peer has nothing more to send. So while a reader waits on a limited TLS
// stream, this runs libevent's read callback again every tick, for as long as OpenSSL holds
// bytes (then it reads what the bucket allows).
void poke_tls_once(stream_state& s) noexcept {
  SSL* ssl = bufferevent_openssl_get_ssl(s.bev);
  if (ssl && SSL_pending(ssl) > 0 && !s.read_paused) event_active(&s.bev->ev_read, EV_READ, 1);
}

void poke_tls(evutil_socket_t, short, void* arg) {
  auto& s = *static_cast<stream_state*>(arg);
  if (!s.side[reading].op || !s.rate) return;
  poke_tls_once(s);
  const unsigned g = s.rate->group ? s.rate->group->tick_ms : 0, own = s.rate->tick_ms;
  const unsigned ms = own == 0 ? g : g == 0 ? own : std::min(own, g);
  const timeval tick{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>(ms % 1000) * 1000};
  event_add(s.rate->poke.get(), &tick);
}

void tls_reader_parked(stream_state& s) noexcept {
  bufferevent_resume_reading(s);
  if (!s.rate) return;
  if (!s.rate->poke) {
    s.rate->poke.reset(event_new(s.lp->native_handle(), -1, 0, poke_tls, &s));
    if (!s.rate->poke) return;  // out of memory: the socket's next bytes, if any, go on
  }
  if (!event_pending(s.rate->poke.get(), EV_TIMEOUT, nullptr)) poke_tls(-1, 0, &s);
}

const transport limited_tls_transport{
    false,       tls_reader_parked, bufferevent_limit_input, bufferevent_pause_reading,
    shut_socket, linger_close};

// Carries the read side over to the new transport `io`: not reading ahead, then resumed up to
// the input limit (and at once, for a reader that waits).
void switch_transport(stream_state& s, const transport& io) noexcept {
  s.read_paused = true;
  s.more_pending = false;
  s.io = &io;
  s.io->limit_input(s, input_limit(s));
  if (s.side[reading].op) s.io->reader_parked(s);
}

}  // namespace

// Ticks of 10 ms, or as long as it takes the slowest direction to earn 100 bytes (at most 1 s),
// so that rounding each tick's share down costs under 1 %.
unsigned tick_ms(const rate_limit& l) noexcept {
  const std::size_t slowest = slowest_rate(l);
  if (slowest == 0 || slowest >= 10'000) return 10;
  if (slowest < 100) return 1000;
  return static_cast<unsigned>((100'000 + slowest - 1) / slowest);
}

bucket_cfg_ptr make_bucket_cfg(const rate_limit& l) noexcept {
  const unsigned ms = tick_ms(l);
  const std::size_t r = per_tick(l.read_rate, ms), w = per_tick(l.write_rate, ms);
  const timeval tick = ms == 1000 ? timeval{1, 0} : timeval{0, static_cast<suseconds_t>(ms) * 1000};
  return bucket_cfg_ptr(ev_token_bucket_cfg_new(r, maximum(l.read_rate, l.read_burst, r), w,
                                                maximum(l.write_rate, l.write_burst, w), &tick));
}

rate_state* rate_of(stream_state& s) noexcept {
  if (!s.rate) s.rate = new (std::nothrow) rate_state(s);
  return s.rate;
}

void update_transport(stream_state& s) noexcept {
  if (s.socket_read) {  // a plain socket, open
    if (s.rate && s.io == &socket_transport) {
      if (!s.read_paused) event_del(s.socket_read.get());
      switch_transport(s, bufferevent_transport);
    } else if (!s.rate && s.io == &bufferevent_transport) {
      bufferevent_disable(s.bev, EV_READ);
      bufferevent_setwatermark(s.bev, EV_READ, 0, 0);
      switch_transport(s, socket_transport);
    }
  } else if (s.tls && !s.lingering) {
    s.io = s.rate ? &limited_tls_transport : &bufferevent_transport;
    if (s.rate && s.side[reading].op) s.io->reader_parked(s);
    // Unlimited again: what OpenSSL holds is read now, not when the peer next sends.
    if (!s.rate) poke_tls_once(s);
  }
}

void rate_changed(stream_state& s) noexcept {
  if (!s.rate || s.rate->cfg || s.rate->group) return;
  delete std::exchange(s.rate, nullptr);
  update_transport(s);
}

rate_limit rate_limit_of(const stream_state& s) noexcept {
  return s.rate && s.rate->cfg ? s.rate->requested : rate_limit{};
}

void release_rate(stream_state& s) noexcept {
  rate_state* r = s.rate;
  if (!r) return;
  if (r->cfg) bufferevent_set_rate_limit(s.bev, nullptr);
  if (r->group) leave_group(*r);
  delete std::exchange(s.rate, nullptr);
}

// libevent's TLS writes (bufferevent_openssl.c do_write) hand OpenSSL whole chains of the
// output buffer, however little the bucket holds: one chain of a large write would go out
// whole. Chains of a few KiB bound that overshoot, which the next refills pay back. They are
// built aside and moved in at once, so that running out of memory adds nothing.
int queue_output(stream_state& s, const std::byte* p, std::size_t n) noexcept {
  if (!buffers(s)) return -1;
  if (!s.rate || !s.tls) return evbuffer_add(output(s), p, n);
  constexpr std::size_t piece = 2048;
  const c_handle<evbuffer, &evbuffer_free> aside(evbuffer_new());
  if (!aside) return -1;
  for (std::size_t at = 0; at < n; at += piece) {
    if (evbuffer_add(aside.get(), p + at, std::min(piece, n - at)) != 0) return -1;
  }
  return evbuffer_add_buffer(output(s), aside.get());
}

}  // namespace evco::detail

namespace evco {

result<void> stream::set_rate_limit(const rate_limit& limit) {
  if (!s_) return errc::closed;
  if (s_->io == &detail::pair_transport) {
    return std::make_error_code(std::errc::operation_not_supported);
  }
  if (limit.read_rate == 0 && limit.write_rate == 0) {
    if (s_->rate && s_->rate->cfg) {
      bufferevent_set_rate_limit(s_->bev, nullptr);
      s_->rate->cfg.reset();
      detail::rate_changed(*s_);
    }
    return success();
  }
  // The token buckets are the bufferevent's.
  if (!detail::buffers(*s_)) return std::make_error_code(std::errc::not_enough_memory);
  detail::bucket_cfg_ptr cfg = detail::make_bucket_cfg(limit);
  detail::rate_state* r = cfg ? detail::rate_of(*s_) : nullptr;
  // The bucket starts at the current tick, by the loop's cached time: refreshed, so that its
  // first refill is not one tick early.
  event_base_update_cache_time(s_->lp->native_handle());
  if (!r || bufferevent_set_rate_limit(s_->bev, cfg.get()) != 0) {
    detail::rate_changed(*s_);
    return std::make_error_code(std::errc::not_enough_memory);
  }
  r->cfg = std::move(cfg);  // the old one goes only now that the bufferevent let go of it
  r->tick_ms = detail::tick_ms(limit);
  r->requested = limit;
  detail::update_transport(*s_);
  return success();
}

}  // namespace evco
