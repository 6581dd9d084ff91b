#pragma once
// Private: what a stream owns, shared by lib/stream/, listener.cpp, connect.cpp and tls.cpp.

#include <array>
#include <cstdint>
#include <memory>
#include <system_error>

#include "../libevent.hpp"
#include "../op_limits.hpp"
#include "evco/loop.hpp"
#include "evco/stream.hpp"

namespace evco::detail {

struct stream_state;
struct tls_hooks;
struct rate_state;

// A stream's two directions, each with at most one parked op.
enum direction : unsigned char { reading, writing };

// How a stream's bytes reach its peer, chosen once when the stream is made (see
// socket_io.cpp, bufferevent_io.cpp and pair.cpp).
struct transport {
  // Plain sockets: reads and writes may recv()/send() straight between the socket and the
  // caller's buffer. Otherwise (TLS, pairs, a user's bufferevent) every byte goes through the
  // bufferevent's input and output buffers.
  bool direct;
  // A reader parked: make sure the socket is being read.
  void (*reader_parked)(stream_state& s) noexcept;
  // Read ahead into the input buffer up to `high` bytes (zero: no limit).
  void (*limit_input)(stream_state& s, std::size_t high) noexcept;
  // Stop reading ahead: a peek's view of the input is out, and appending to the input buffer
  // may move the bytes it shows (until consume() or the next read op: see input_viewed).
  void (*pause_reading)(stream_state& s) noexcept;
  // Ends the write direction, the output being empty: a socket's FIN, a pair partner's eof.
  std::error_code (*shut_writing)(stream_state& s) noexcept;
  // Ends a closed stream whose ops are already interrupted, and frees `s`: at once, or after
  // lingering in the background until the peer has what was queued (close.cpp).
  void (*close)(stream_state* s) noexcept;
};

extern const transport socket_transport;       // socket_io.cpp
extern const transport bufferevent_transport;  // bufferevent_io.cpp: TLS, user bufferevents
extern const transport pair_transport;         // pair.cpp: bufferevent_pair

// One direction's limits: the idle timeout, and its parked op's deadline and stop request
// (made on first use: by a limited op, or by set_timeouts). One timer on the loop's queue, due
// at the earlier of the deadline and the idle timeout.
struct side_limits : op_limits {
  side_limits(stream_state& st, direction d) noexcept;
  stream_state* s;
  direction dir;
  duration idle{};  // zero: none; else an op parked this long without progress fails
  clock::time_point op_deadline = clock::time_point::max();
  // What the op had moved (see progress_of in protocol.cpp) when its idle timer last started:
  // a timer that finds more has seen progress and starts again.
  std::int64_t progress = 0;
};

struct side_state {
  stream_op* op = nullptr;  // the parked op
  // Sticky: once the peer ended the stream or the socket failed, every later op sees it.
  std::error_code error;
  std::unique_ptr<side_limits> limits;
  // Bytes moved by ops that completed without suspending, since the direction last waited
  // (the fairness budget: see stream_op::await_ready).
  std::uint32_t inline_moved = 0;
};

struct stream_state {
  stream_state(loop& l, bufferevent* b, const transport& t) noexcept : lp(&l), bev(b), io(&t) {}
  ~stream_state();

  loop* lp;
  bufferevent* bev;  // null for a plain socket that has needed no buffer yet (see buffers())
  const transport* io;
  const tls_hooks* tls = nullptr;  // null for streams other than TLS
  std::array<side_state, 2> side;  // indexed by direction
  std::size_t read_high = 1 << 20;
  std::size_t write_low = 256 << 10;
  std::size_t write_high = 1 << 20;
  // Token buckets: the stream's own limit and its rate_group (rate_limit.cpp); null: none.
  rate_state* rate = nullptr;
  // Plain sockets read through this event of their own instead of libevent's bufferevent
  // reads (which ioctl(FIONREAD) before every readv and cap each at 4096 bytes); the
  // bufferevent, made once a buffer is needed (see buffers()), keeps the input and output
  // buffers and writes what was queued.
  event_ptr socket_read;
  // A write that finds the output buffer empty sends straight from the caller's buffer and,
  // when the kernel takes only part, waits on this event (made on first use) to send the rest
  // from there too: no copy into the output buffer (see perform_write). TLS waits on it too,
  // to retry a close_notify.
  event_ptr socket_write;
  // Tries the ops that parked for the fairness budget again after the next poll (made on
  // first use; see stream_op::await_ready).
  event_ptr retry;
  // Graceful close in the background (see stream::close): owned by the loop meanwhile, and
  // bounded by a timer. Made only when a close has to linger.
  struct linger_state : owned, timer_node {
    stream_state* state = nullptr;
    std::size_t queued = 0;  // output still queued when the timer was last armed
  };
  std::unique_ptr<linger_state> lingering;
  // Plain sockets: the socket, read and written directly (bufferevent_getfd takes the
  // bufferevent's lock on every call). The stream closes it, or its bufferevent once made.
  int fd = -1;
  // The socket probably holds more: a direct read filled its buffer, and none has found the
  // socket empty since. Only then is a read tried without waiting.
  bool more_pending = false;
  // Inside the socket's read callback: it said there are bytes (or an end) to read.
  bool readable = false;
  // Not reading ahead (plain sockets: socket_read removed; otherwise EV_READ disabled): at the
  // read limit with no reader parked, or (plain sockets) at the end.
  bool read_paused = false;
  // A peek's view of the input buffer is out: reading ahead stays paused until consume() or
  // a read op that waits (one that completes at once reads nothing ahead either).
  bool input_viewed = false;
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
  rate_limit rate{};  // the stream's own (a rate_group's membership is not carried over)
  void apply_to(stream& st) const;
};

// Takes the bufferevent out of `st`, which becomes empty, with its callbacks cleared, the
// loop it belongs to in `lp` and its settings in `kept`; null (and `st` untouched) when `st`
// is closed or has an op pending. For tls.cpp, which rebuilds the socket as a TLS
// bufferevent.
bufferevent* release_bufferevent(stream& st, loop*& lp, stream_settings& kept) noexcept;

}  // namespace evco::detail
