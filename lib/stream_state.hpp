#pragma once
// Private: what a stream owns, shared by stream.cpp, listener.cpp and connect.cpp.

#include <system_error>

#include "evco/loop.hpp"
#include "evco/stream.hpp"
#include "libevent.hpp"

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
  // Per-op deadlines and stop-token wake-ups, one per direction, made on first use.
  event_ptr read_timer;
  event_ptr write_timer;
  std::size_t read_high = 1 << 20;
  std::size_t write_low = 256 << 10;
  std::size_t write_high = 1 << 20;
  bool write_shut = false;
  // A plain socket bufferevent: write() may send() directly while nothing is queued, and
  // reads may recv() straight into the caller's buffer (see read_direct in stream.cpp).
  bool direct_write = false;
  // The socket probably holds more: the last direct read filled its buffer, or libevent's
  // last read hit its 4096-byte cap. Only then is a read tried without waiting.
  bool more_pending = false;
  // With an idle read timeout, bytes must go through libevent's reads, which re-arm it.
  bool read_idle_timeout = false;
  // Graceful close in the background (see stream::close).
  struct linger_node : owned {
    stream_state* state = nullptr;
  } lingering;
  bool peer_eof = false;
};

// Wraps a connected, non-blocking socket; closes `fd` on failure.
result<stream> make_socket_stream(loop& lp, int fd);

}  // namespace evco::detail
