#pragma once
// Private: what a stream owns, shared by lib/stream/, listener.cpp, connect.cpp and tls.cpp.

#include <cstdint>
#include <system_error>

#include "../libevent.hpp"
#include "evco/loop.hpp"
#include "evco/stream.hpp"

namespace evco::detail {

struct stream_state {
  stream_state(loop& l, bufferevent* b) noexcept : lp(&l), bev(b) {}
  ~stream_state();

  loop* lp;
  bufferevent* bev;
  stream_op* reader = nullptr;
  stream_op* writer = nullptr;
  // Sticky: once the peer ended the stream or the socket failed, every later op sees it.
  std::error_code read_error;
  std::error_code write_error;
  // Per direction, made on first use: the parked op's time limits, one timer on the loop's
  // queue due at the earlier of its deadline and its idle timeout, and its stop-token wake-up.
  struct op_timer : timer_node {
    op_timer(stream_state* st, bool r) noexcept;
    stream_state* s;
    bool reading;
    clock::time_point op_deadline = clock::time_point::max();
    // What the op had moved (see progress_of in stream.cpp) when its idle timer last started:
    // a timer that finds more has seen progress and starts again.
    std::int64_t progress = 0;
    event_ptr stop_wake;  // made once a stop token needs it
    std::optional<std::stop_callback<cancel_fn>> on_stop;
  };
  std::unique_ptr<op_timer> read_timer;
  std::unique_ptr<op_timer> write_timer;
  std::size_t read_high = 1 << 20;
  std::size_t write_low = 256 << 10;
  std::size_t write_high = 1 << 20;
  // Plain sockets read through this event of their own instead of libevent's bufferevent
  // reads (which ioctl(FIONREAD) before every readv and cap each at 4096 bytes); the
  // bufferevent keeps the input and output buffers and does the writing.
  event_ptr socket_read;
  // Plain sockets: a write that finds the output buffer empty sends straight from the
  // caller's buffer and, when the kernel takes only part, waits on this event (made on first
  // use) to send the rest from there too: no copy into the output buffer (see try_write).
  event_ptr socket_write;
  // Tries the ops that parked for the fairness budget again after the next poll (made on
  // first use; see stream_op::await_ready).
  event_ptr retry;
  // The idle timeouts (zero: none): an op parked this long without progress times out.
  duration read_idle{};
  duration write_idle{};
  // Bytes moved by ops that completed without suspending, since the direction last waited
  // (see stream_op::await_ready).
  std::uint32_t inline_read = 0;
  std::uint32_t inline_write = 0;
  // TLS (from tls.cpp, through attach; null for other streams).
  std::error_code (*map_error)(bufferevent* bev, int socket_errno) noexcept = nullptr;
  bool (*send_close_notify)(bufferevent* bev) noexcept = nullptr;
  // Graceful close in the background (see stream::close): owned by the loop meanwhile, and
  // bounded by a timer. Made only when a close has to linger.
  struct linger_state : owned, timer_node {
    stream_state* state = nullptr;
    std::size_t queued = 0;  // output still queued when the timer was last armed
  };
  std::unique_ptr<linger_state> lingering;
  // A plain socket bufferevent: write() may send() directly while nothing is queued, and
  // reads may recv() straight into the caller's buffer (see read_direct in stream.cpp).
  bool plain_socket = false;
  // The socket probably holds more: a direct read filled its buffer, and none has found the
  // socket empty since. Only then is a read tried without waiting.
  bool more_pending = false;
  bool read_paused = false;   // socket_read removed: at the read limit, or at the end
  bool write_direct = false;  // the parked writer waits on socket_write
  bool write_shut = false;
  bool peer_eof = false;
};

// Wraps a connected, non-blocking socket; closes `fd` on failure.
result<stream> make_socket_stream(loop& lp, int fd);

// What a TLS stream does its own way: the error behind BEV_EVENT_ERROR, which sits in
// OpenSSL's queue rather than errno, and the close_notify a close sends before its FIN (true
// once sent or hopeless, false while the socket is full: retry when writable).
struct tls_hooks {
  std::error_code (*map_error)(bufferevent* bev, int socket_errno) noexcept;
  bool (*send_close_notify)(bufferevent* bev) noexcept;
};

// What the application set on a stream, carried over to the TLS stream that replaces it.
struct stream_settings {
  std::size_t read_high = 0;
  std::size_t write_low = 0;
  std::size_t write_high = 0;
  duration read_idle{};
  duration write_idle{};
  void apply_to(stream& st) const;
};

// Takes the bufferevent out of `st`, which becomes empty, with its callbacks cleared, the
// loop it belongs to in `lp` and its settings in `kept`; null (and `st` untouched) when `st`
// is closed or has an op pending. For tls.cpp, which rebuilds the socket as a TLS
// bufferevent.
bufferevent* release_bufferevent(stream& st, loop*& lp, stream_settings& kept) noexcept;

}  // namespace evco::detail
