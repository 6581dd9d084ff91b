#pragma once
// Private: what the files of lib/stream/ share. A stream's state is in state.hpp; its ops are
// the awaiters of include/evco/stream.hpp, made progress on by read.cpp and write.cpp, parked
// and finished by protocol.cpp, and woken by socket_io.cpp (plain sockets) or
// bufferevent_io.cpp (TLS, pairs, queued output); close.cpp ends a stream.

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>

#include "state.hpp"

namespace evco::detail {

inline bool is_read(op_kind k) noexcept {
  switch (k) {
    case op_kind::read_some:
    case op_kind::read_exactly:
    case op_kind::read_until:
      return true;
    case op_kind::write:
    case op_kind::drain:
    case op_kind::shutdown:
      break;
  }
  return false;
}

inline string_op& as_string(stream_op& op) noexcept {
  return static_cast<string_op&>(op);
}

inline evbuffer* input(stream_state& s) noexcept {
  return bufferevent_get_input(s.bev);
}

inline evbuffer* output(stream_state& s) noexcept {
  return bufferevent_get_output(s.bev);
}

// libevent 2.1 reads at most this much per readv (EVBUFFER_MAX_READ), once per loop turn.
constexpr std::size_t libevent_read_cap = 4096;

constexpr std::size_t max_single_write = 256 << 10;

constexpr std::size_t inline_budget = 128 << 10;

// read.cpp: reading from the input buffer or straight from the socket
void fail_read(stream_state& s, stream_op& op, std::error_code ec) noexcept;
void note_read_end(stream_state& s, int err) noexcept;
std::size_t read_direct(stream_state& s, std::byte* p, std::size_t n) noexcept;
bool make_room(stream_state& s, stream_op& op) noexcept;
void drop_room(stream_op& op) noexcept;
bool try_read(stream_state& s, stream_op& op) noexcept;

// write.cpp: writing straight to the socket or into the output buffer
void interrupt_write(stream_state& s, stream_op& op, std::error_code ec) noexcept;
bool wait_writable(stream_state& s) noexcept;
bool try_write(stream_state& s, stream_op& op) noexcept;

// protocol.cpp: the awaiter protocol (try now, park, deadline, stop, fairness, finish)
void unpark(stream_state& s, stream_op& op) noexcept;
void finish_now(stream_state& s, stream_op& op) noexcept;
void finish_later(stream_state& s, stream_op& op) noexcept;
void arm_timer(stream_state& s, stream_op& op, stream_state::op_timer& t, clock::time_point now);

// socket_io.cpp: plain sockets, read and written through events of their own
void on_socket_writable(evutil_socket_t, short what, void* arg);
void resume_reading(stream_state& s) noexcept;

// close.cpp: close, and the graceful close that lingers in the background
void close_state(stream_state* s) noexcept;

// parked.cpp: what loop::parked() shows of a parked op, indexed by its op_kind
extern const parked_op_type stream_op_types[6];

}  // namespace evco::detail
