#pragma once
// Private: what the files of lib/stream/ share. A stream's state is in state.hpp. Its ops are
// the awaiters of include/evco/stream.hpp: protocol.cpp parks and finishes them (written once
// for all), read.cpp and write.cpp say how each makes progress and how it is interrupted, and
// socket_io.cpp (plain sockets) or bufferevent_io.cpp (TLS, pairs, user bufferevents) wake
// them. close.cpp ends a stream.

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>

#include "state.hpp"

namespace evco::detail {

// What one kind of op does, beyond what every op does (protocol.cpp).
struct op_type {
  parked_op_type listed_as;  // its name and what loop::parked() shows of it (parked.cpp)
  direction dir;
  // Makes what progress it can now, without waiting; true once the op is done (successfully,
  // or with `ec` set). Called when the op starts, and again from the loop whenever its
  // direction may have moved.
  bool (*perform)(stream_state& s, stream_op& op) noexcept;
  // A deadline, stop request, close or the end of its frame ended the op while parked: sets
  // its `ec` (when the op can still succeed, leaves it clear) and gives back what it took.
  void (*interrupt)(stream_state& s, stream_op& op, std::error_code ec) noexcept;
  // What the op waits on beyond its direction's callbacks (may be null). parked() may throw
  // std::bad_alloc.
  void (*parked)(stream_state& s, stream_op& op);
  void (*unparked)(stream_state& s, stream_op& op) noexcept;
};

// read.cpp
extern const op_type read_some_type, read_some_string_type, read_exactly_type, read_until_type;
// write.cpp
extern const op_type write_type, drain_type, shutdown_type;
// line.cpp, frame.cpp, peek.cpp: framing and input without copies
extern const op_type read_line_type, read_frame_type, write_frame_type, peek_type, skip_type;
// send_file.cpp
extern const op_type send_file_type;
// borrowed.cpp
extern const op_type write_borrowed_type;

inline const op_type& type_of(op_kind k) noexcept {
  static constexpr const op_type* types[] = {
      &read_some_type,    &read_some_string_type,
      &read_exactly_type, &read_until_type,
      &write_type,        &drain_type,
      &shutdown_type,     &read_line_type,
      &read_frame_type,   &write_frame_type,
      &peek_type,         &skip_type,
      &send_file_type,    &write_borrowed_type,
  };
  return *types[static_cast<unsigned char>(k)];
}

inline string_op& as_string(stream_op& op) noexcept {
  return static_cast<string_op&>(op);
}

// A plain socket's bufferevent, with its input and output buffers, is made only when the
// stream first needs a buffer (reading ahead, a framed read or a peek, a write queued, a rate
// limit, native_handle()): reads and writes that go straight between the socket and the
// caller's buffer need none, and an idle connection then costs no bufferevent. Every other
// transport has one from the start. False when out of memory.
bool buffers(stream_state& s) noexcept;  // bufferevent_io.cpp

// The input and output buffers: only where the stream has them (see buffers()).
inline evbuffer* input(stream_state& s) noexcept {
  return bufferevent_get_input(s.bev);
}
inline evbuffer* output(stream_state& s) noexcept {
  return bufferevent_get_output(s.bev);
}
// What they hold: nothing, for a stream that has none yet.
inline std::size_t input_length(stream_state& s) noexcept {
  return s.bev ? evbuffer_get_length(input(s)) : 0;
}
inline std::size_t output_length(stream_state& s) noexcept {
  return s.bev ? evbuffer_get_length(output(s)) : 0;
}
// The socket (plain sockets keep it; TLS streams ask their bufferevent); -1 for a pair.
inline int fd_of(const stream_state& s) noexcept {
  return s.fd >= 0 ? s.fd : bufferevent_getfd(s.bev);
}

// libevent 2.1 reads at most this much per readv (EVBUFFER_MAX_READ), once per loop turn.
constexpr std::size_t libevent_read_cap = 4096;

constexpr std::size_t max_single_write = 256 << 10;

constexpr std::size_t inline_budget = 128 << 10;

// The default interrupt: the op fails with `ec`.
void fail(stream_state& s, stream_op& op, std::error_code ec) noexcept;

// read.cpp: reading from the input buffer or straight from the socket
void note_read_end(stream_state& s, int err) noexcept;
std::size_t read_direct(stream_state& s, std::byte* p, std::size_t n) noexcept;
// read_direct, but a small read also reads ahead into the (empty) input buffer, up to the
// read limit: one syscall says whether more was waiting.
std::size_t read_direct_ahead(stream_state& s, std::byte* p, std::size_t n) noexcept;
// Whether a read should recv() now rather than wait: on a plain socket that has not ended,
// when the socket just said it is readable, when the last direct read filled its buffer, or
// when the input buffer held as much as one of libevent's capped reads brings.
inline bool socket_may_hold_more(const stream_state& s, std::size_t buffered) noexcept {
  return s.io->direct && !s.side[reading].error &&
         (s.readable || s.more_pending || buffered >= libevent_read_cap);
}

// Moves up to `n` bytes into `p`: what the input buffer holds, then what the socket may
// hold. `buffered` is the input buffer's length.
inline std::size_t take(stream_state& s, std::byte* p, std::size_t n,
                        std::size_t buffered) noexcept {
  std::size_t got = 0;
  if (buffered > 0 && n > 0) {
    const int r = evbuffer_remove(input(s), p, std::min(buffered, n));
    got = r > 0 ? static_cast<std::size_t>(r) : 0;
  }
  if (got < n && socket_may_hold_more(s, buffered)) got += read_direct_ahead(s, p + got, n - got);
  return got;
}

// Nothing (more) to read now: true, with the op interrupted by the error, once the stream has
// ended or failed.
bool read_ended(stream_state& s, stream_op& op) noexcept;
// The most input an op may need buffered at once (read_until's and read_line's maximum, a
// peek's n, a frame's header); 0 for the ops that take bytes as they come.
std::size_t input_needed(const stream_op& op) noexcept;
// What the input is read ahead to now: the read limit, or more while such an op waits (zero: no
// limit).
std::size_t input_limit(const stream_state& s) noexcept;
// The parked and unparked hooks of those ops: while one waits, the input may grow past the
// read limit to what it needs (set_read_limit keeps that room too), and the limit is put back
// when it stops waiting.
void grow_input(stream_state& s, stream_op& op);
void restore_input(stream_state& s, stream_op& op) noexcept;

// protocol.cpp: the awaiter protocol (try now, park, deadline, stop, fairness, finish)
void unpark(stream_state& s, stream_op& op) noexcept;
void finish_now(stream_state& s, stream_op& op) noexcept;
void finish_later(stream_state& s, stream_op& op) noexcept;
// Arms the limits of the op parked on `d`: `op_deadline`, its stop request, and the
// direction's idle timeout from now. Throws std::bad_alloc when out of memory.
void arm_limits(stream_state& s, direction d, clock::time_point op_deadline);

// socket_io.cpp: plain sockets, read and written through events of their own
// Reads what the socket holds into the input buffer (one chunk); the bytes read.
std::size_t fill_input(stream_state& s) noexcept;
// Makes the parked writer wait for the socket to be writable (socket_write); false when out
// of memory.
bool wait_writable(stream_state& s) noexcept;

// bufferevent_io.cpp: reading for the transports over a bufferevent's own reads (TLS, pairs)
// Reading resumes (a reader parked, or the read limit rose) unless the stream has ended.
void bufferevent_resume_reading(stream_state& s) noexcept;
void bufferevent_pause_reading(stream_state& s) noexcept;
void bufferevent_limit_input(stream_state& s, std::size_t high) noexcept;

// close.cpp: close, and the graceful close that lingers in the background
void close_state(stream_state* s) noexcept;
// The socket transports' shut_writing (shutdown(SHUT_WR): the FIN) and close (drains unread
// input and sends the queued output, then FIN, before the socket closes: no RST).
std::error_code shut_socket(stream_state& s) noexcept;
void linger_close(stream_state* s) noexcept;

// rate_limit.cpp: token buckets (a stream's own and its rate_group's). Takes the stream out of
// both, while its bufferevent is still there.
void release_rate(stream_state& s) noexcept;
// The limit set_rate_limit() last set (all zero: none).
rate_limit rate_limit_of(const stream_state& s) noexcept;
// evbuffer_add() to the output, in small chains under a TLS rate limit (see rate_limit.cpp).
int queue_output(stream_state& s, const std::byte* p, std::size_t n) noexcept;

// parked.cpp: what loop::parked() shows of a parked stream op
void describe_stream_op(const parked_op& op, parked_op_info& out);

}  // namespace evco::detail
