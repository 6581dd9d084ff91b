#pragma once
// datagram: a UDP socket whose receives and sends are awaitable.

#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <coroutine>
#include <cstddef>
#include <optional>
#include <span>
#include <stop_token>
#include <string_view>
#include <type_traits>
#include <utility>

#include "evco/detail/parked_op.hpp"
#include "evco/detail/waiter.hpp"
#include "evco/endpoint.hpp"
#include "evco/error.hpp"
#include "evco/op_options.hpp"
#include "evco/timer.hpp"

namespace evco {

class loop;

struct datagram_options {
  bool reuse_address = false;  ///< SO_REUSEADDR
  bool reuse_port = false;     ///< SO_REUSEPORT: one socket per loop/thread on the same port
  bool v6_only = false;        ///< IPV6_V6ONLY for an IPv6 socket (else it takes IPv4 too)
  /// SO_RCVBUF in bytes: how many datagrams the kernel queues before it drops (it caps the
  /// size at net.core.rmem_max). Zero keeps the system's default; negative: invalid_argument.
  int receive_buffer = 0;
  int send_buffer = 0;  ///< SO_SNDBUF in bytes, the same way (net.core.wmem_max)
};
static_assert(std::is_trivially_destructible_v<datagram_options>);  // see op_options

/// What a receive_from delivered: the datagram's size (zero is a valid, empty datagram) and
/// who sent it.
struct received {
  std::size_t size = 0;
  endpoint from;
};

/// One datagram of receive_batch(): `buffer` goes in, `size` and `from` come out.
struct datagram_slot {
  datagram_slot() noexcept = default;
  explicit datagram_slot(std::span<std::byte> b) noexcept : buffer(b) {}

  std::span<std::byte> buffer;
  /// The datagram's real size: larger than buffer.size() when it did not fit (only the
  /// first buffer.size() bytes are in `buffer` then).
  std::size_t size = 0;
  endpoint from;

  bool truncated() const noexcept { return size > buffer.size(); }
  /// The bytes received: the datagram, or the part of it that fit.
  std::span<std::byte> data() const noexcept { return buffer.first(std::min(size, buffer.size())); }
};

/// One datagram of send_batch().
struct outgoing_datagram {
  outgoing_datagram() noexcept = default;
  /// To `to`, or with a null `to` to the connected peer.
  outgoing_datagram(std::span<const std::byte> d, const endpoint* t = nullptr) noexcept
      : data(d), to(t) {}
  outgoing_datagram(std::string_view d, const endpoint* t = nullptr) noexcept
      : data(std::as_bytes(std::span(d))), to(t) {}

  std::span<const std::byte> data;
  const endpoint* to = nullptr;  ///< null: the connected peer
};

class datagram;

namespace detail {

struct datagram_state;

// Which op an awaiter is; lib/datagram/ keeps how each makes progress. The receiving ones
// come first (see direction_of).
enum class datagram_kind : unsigned char {
  receive_from,
  receive,
  receive_batch,
  send_to,
  send,
  send_batch,
};

// Where an op is: not waiting (tried at once, or done), parked on its socket's readiness, or
// parked over the fairness budget without having been tried (the retry after the next poll
// tries it).
enum class datagram_op_state : unsigned char { idle, parked, yielding };

// The one awaiter behind every datagram op (the protocol is lib/datagram/protocol.cpp). It
// lives in the awaiting coroutine's frame, so a steady-state receive or send allocates
// nothing; the socket keeps a pointer to it while it is parked, and its destructor takes it
// back out if the frame dies first. While parked it is on its loop's registry.
struct datagram_op : waiter, parked_op {
  datagram_op(datagram_state* st, datagram_kind k, void* p, std::size_t n, op_options o) noexcept
      : s(st), kind(k), data(p), size(n), timeout(o.timeout), stop(std::move(o.stop)) {}
  // send_to: the destination is copied in, so the op does not borrow it.
  datagram_op(datagram_state* st, const void* p, std::size_t n, const endpoint& to,
              op_options o) noexcept;
  // Movable until it is awaited, so that when_any and when_all can take it in.
  datagram_op(datagram_op&& o) noexcept
      : s(o.s),
        kind(o.kind),
        addr_len(o.addr_len),
        data(o.data),
        size(o.size),
        timeout(o.timeout),
        stop(std::move(o.stop)),
        addr(o.addr) {}
  datagram_op& operator=(const datagram_op&) = delete;
  ~datagram_op();

  bool await_ready();
  bool await_suspend(std::coroutine_handle<> h);

  datagram_state* s;
  loop* lp = nullptr;  // set while parked or queued
  datagram_kind kind;
  datagram_op_state state = datagram_op_state::idle;
  socklen_t addr_len = 0;
  void* data;            // the buffer, or the slots or datagrams of a batch
  std::size_t size;      // its bytes, or its slots or datagrams
  std::size_t done = 0;  // bytes received (the real size, see MSG_TRUNC), or datagrams
  duration timeout;
  std::stop_token stop;
  std::error_code ec;
  // send_to: the destination; receives: the sender. sockaddr_in6 holds either family.
  sockaddr_in6 addr{};
};

struct [[nodiscard]] datagram_receive_from_op : datagram_op {
  using datagram_op::datagram_op;
  result<received> await_resume() const;
};
// receive, and the batches: how many bytes, or how many datagrams.
struct [[nodiscard]] datagram_count_op : datagram_op {
  using datagram_op::datagram_op;
  result<std::size_t> await_resume() const noexcept {
    if (ec) return ec;
    return done;
  }
};
struct [[nodiscard]] datagram_send_op : datagram_op {
  using datagram_op::datagram_op;
  result<void> await_resume() const noexcept {
    if (ec) return ec;
    return success();
  }
};

}  // namespace detail

/// A UDP socket (IPv4 or IPv6). Move-only; destroying it closes it. At most one receive and
/// one send may be pending at a time (a second gets errc::busy). All ops must be started on
/// the loop's thread. A buffer passed to an op is borrowed until the op completes or its frame
/// is destroyed.
///
/// Datagrams are never silently cut: one larger than the buffer fails the receive with
/// errc::message_truncated, leaves the part that fit in the buffer, and last_truncated() says
/// its real size and sender; the socket goes on with the next datagram. On a connected socket
/// an ICMP error (port unreachable: std::errc::connection_refused) comes back from the next
/// receive or send, and the socket stays usable.
///
/// A receive that finds a datagram queued completes without suspending (so does a send that
/// the kernel takes at once), except that after 64 ops of one socket in a row have completed
/// that way, the next resumes only after the loop has polled again: a socket that always has
/// datagrams cannot starve the others. A receive tries the socket before it waits only while
/// datagrams queue up faster than they are received (the first receive, or one after datagrams
/// arrived with no receive waiting): a receive that keeps up waits for readiness at once,
/// without a recvmsg that would find the socket empty. receive_batch() takes up to 64 queued
/// datagrams with one recvmmsg.
class datagram {
 public:
  datagram() noexcept = default;
  datagram(datagram&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  datagram& operator=(datagram&& o) noexcept;
  ~datagram() { close(); }

  /// A socket bound to `ep`; port 0 picks a free port (read it back with local_endpoint()).
  /// address_family_not_supported for an endpoint that is not IPv4 or IPv6.
  static result<datagram> bind(loop& lp, const endpoint& ep, datagram_options o = {});
  /// An unbound socket of `family` (AF_INET or AF_INET6, else address_family_not_supported)
  /// for sending: the kernel binds it to a free port on its first send (or connect).
  static result<datagram> open(loop& lp, int family, datagram_options o = {});

  /// Connected mode: sends go to `peer` by default (send()), and only its datagrams are
  /// received. Immediate (UDP sends nothing to connect); it may be called again to change peer.
  result<void> connect(const endpoint& peer);

  /// Completes with the next datagram (its size, possibly zero, and sender), copied into
  /// `buf`; errc::message_truncated when it was larger than `buf` (see last_truncated()).
  /// A `buf` of size zero still takes a datagram: an empty one succeeds, any other is
  /// truncated.
  detail::datagram_receive_from_op receive_from(std::span<std::byte> buf, op_options o = {}) {
    return {s_, detail::datagram_kind::receive_from, buf.data(), buf.size(), std::move(o)};
  }
  detail::datagram_receive_from_op receive_from(std::span<char> buf, op_options o = {}) {
    return receive_from(std::as_writable_bytes(buf), std::move(o));
  }

  /// Completes once the kernel has taken `data` as one datagram to `to` (UDP does not say
  /// whether it arrived). A datagram too large for UDP fails with std::errc::message_size.
  detail::datagram_send_op send_to(std::span<const std::byte> data, const endpoint& to,
                                   op_options o = {}) {
    return {s_, data.data(), data.size(), to, std::move(o)};
  }
  detail::datagram_send_op send_to(std::string_view data, const endpoint& to, op_options o = {}) {
    return send_to(std::as_bytes(std::span(data)), to, std::move(o));
  }

  /// receive_from() without the sender: on a connected socket, the peer's next datagram; on
  /// another, anyone's. Completes with its size.
  detail::datagram_count_op receive(std::span<std::byte> buf, op_options o = {}) {
    return {s_, detail::datagram_kind::receive, buf.data(), buf.size(), std::move(o)};
  }
  detail::datagram_count_op receive(std::span<char> buf, op_options o = {}) {
    return receive(std::as_writable_bytes(buf), std::move(o));
  }

  /// send_to() the connected peer; std::errc::destination_address_required when not connected.
  detail::datagram_send_op send(std::span<const std::byte> data, op_options o = {}) {
    return {s_, detail::datagram_kind::send, const_cast<std::byte*>(data.data()), data.size(),
            std::move(o)};
  }
  detail::datagram_send_op send(std::string_view data, op_options o = {}) {
    return send(std::as_bytes(std::span(data)), std::move(o));
  }

  /// Receives up to 64 datagrams (at most `slots.size()`) with one recvmmsg, one per slot in
  /// order, and completes with how many slots it filled; it waits only while none is queued.
  /// A datagram larger than its slot's buffer is reported in that slot (truncated()), not
  /// as an error: the other slots' datagrams stand. No slots: completes at once with 0.
  detail::datagram_count_op receive_batch(std::span<datagram_slot> slots, op_options o = {}) {
    return {s_, detail::datagram_kind::receive_batch, slots.data(), slots.size(), std::move(o)};
  }

  /// Sends up to 64 datagrams (at most `batch.size()`) with one sendmmsg, in order, and
  /// completes with how many the kernel took (the first n); it waits only while it takes none.
  /// A failure of the first is the op's error; one of a later datagram is reported by the
  /// next send_batch() that starts with it. No datagrams: completes at once with 0.
  detail::datagram_count_op send_batch(std::span<const outgoing_datagram> batch,
                                       op_options o = {}) {
    return {s_, detail::datagram_kind::send_batch, const_cast<outgoing_datagram*>(batch.data()),
            batch.size(), std::move(o)};
  }

  /// The real size and sender of the datagram that the last receive reported as
  /// errc::message_truncated; nothing before any was (or once closed).
  std::optional<received> last_truncated() const noexcept;

  /// Resumes pending ops with errc::closed (from the loop) and closes the socket.
  void close() noexcept;

  bool is_open() const noexcept { return s_ != nullptr; }
  result<endpoint> local_endpoint() const;
  /// The connected peer; std::errc::not_connected before connect().
  result<endpoint> remote_endpoint() const;
  int native_handle() const noexcept;

 private:
  static result<datagram> make(loop& lp, int family, const datagram_options& o, const endpoint* at);
  detail::datagram_state* s_ = nullptr;
};

}  // namespace evco
