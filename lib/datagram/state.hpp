#pragma once
// Private: what a datagram socket owns, shared by the files of lib/datagram/. protocol.cpp
// parks and finishes the ops (written once for all), io.cpp says how each makes progress (the
// syscalls), socket.cpp makes, connects and closes the socket.

#include <optional>

#include "../libevent.hpp"
#include "../op_limits.hpp"
#include "evco/datagram.hpp"
#include "evco/loop.hpp"

namespace evco::detail {

struct datagram_state;

// A socket's two directions, each with at most one parked op.
enum datagram_direction : unsigned char { receiving, sending };

inline datagram_direction direction_of(datagram_kind k) noexcept {
  return k < datagram_kind::send_to ? receiving : sending;
}

// Ops of a socket that complete without waiting, in a row, before the next one lets the loop
// poll (the fairness budget: see datagram_op::await_ready).
constexpr unsigned inline_budget = 64;

// Datagrams one receive_batch or send_batch moves at most: its headers sit on the stack.
constexpr std::size_t batch_max = 64;

struct datagram_side {
  // The parked op's deadline and stop request.
  struct side_limits : op_limits {
    side_limits(datagram_state& st, datagram_direction d) noexcept;
    datagram_state* s;
    datagram_direction dir;
  };
  datagram_side(datagram_state& st, datagram_direction d) noexcept : limits(st, d) {}

  datagram_op* op = nullptr;  // the parked op
  side_limits limits;
  // EV_READ or EV_WRITE | EV_PERSIST on the socket. The readable one stays added after a
  // receive (the next is usually awaited at once: that saves an epoll_ctl pair per datagram)
  // until it fires with nobody waiting; the writable one only while a send waits (a UDP
  // socket is nearly always writable).
  event_ptr ready;
  bool watching = false;  // `ready` is added
};

struct datagram_state {
  datagram_state(loop& l, int f) noexcept : lp(&l), fd(f) {}
  datagram_state(const datagram_state&) = delete;
  datagram_state& operator=(const datagram_state&) = delete;
  ~datagram_state();

  loop* lp;
  int fd;
  datagram_side side[2]{{*this, receiving}, {*this, sending}};  // indexed by direction
  // Tries the ops that parked for the fairness budget again after the next poll.
  event_ptr retry;
  // Ops that completed without waiting since an op of this socket last waited.
  unsigned inline_done = 0;
  // Try a receive before waiting: only while datagrams queue up faster than they are
  // received, like the listener's accept; a receiver that keeps up would otherwise pay a
  // recvmsg that finds nothing for every datagram.
  bool speculate = true;
  std::optional<received> truncated;  // datagram::last_truncated()
};

// io.cpp: makes what progress `op` can now, without waiting; true once it is done
// (successfully, or with its `ec` set), false when the socket would block.
bool perform(datagram_state& s, datagram_op& op) noexcept;

// protocol.cpp
void make_events(datagram_state& s);  // throws std::bad_alloc
void unpark(datagram_state& s, datagram_op& op) noexcept;

}  // namespace evco::detail
