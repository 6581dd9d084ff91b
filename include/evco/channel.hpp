#pragma once
// channel<T>: a bounded queue of items between coroutines on one loop.

#include <concepts>
#include <coroutine>
#include <cstddef>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include "evco/detail/wait_queue.hpp"
#include "evco/error.hpp"
#include "evco/op_options.hpp"

namespace evco {

class loop;
template <class T>
class channel;

namespace detail {

// A channel without its items (lib/channel.cpp): who waits, how many items are buffered, and
// whether it is closed.
//
// A receive that parks is woken, not handed an item: the item stays in the channel (buffered,
// or with its sender on a hand-over channel) and the receive takes it when it resumes, unless
// a stop request or its deadline came first, in which case the item is there for the next one.
// So the channel keeps as many receivers woken as it has items for them (buffered ones plus
// those of waiting senders), and no more: whenever an item goes elsewhere (try_receive, a
// receive that found it at once, a waiting sender cancelled or timed out), the last woken
// receiver waits again, first in line.
struct channel_core : queue_owner {
  explicit channel_core(loop& l) noexcept : queue_owner{&on_left}, pool(l) {}
  channel_core(const channel_core&) = delete;
  channel_core& operator=(const channel_core&) = delete;
  ~channel_core() { shut(); }

  // Resumes every parked send with errc::closed, and every parked receive that no buffered
  // item is left for; the woken ones take theirs.
  void close() noexcept;
  // close(), then the woken receives too (errc::closed): the channel goes.
  void shut() noexcept;
  // Wakes receivers for the items there are, or takes back the wake-ups no item backs now.
  // Inline for the common cases: nothing to do, or one more receiver to wake.
  void settle() noexcept {
    const std::size_t have = count + senders.size;
    const std::size_t want = have < receivers.size ? have : receivers.size;
    if (receivers.woken == want) return;
    if (want == receivers.woken + 1) {
      wake(receivers, *receivers.first_unwoken());
    } else {
      rebalance();
    }
  }
  void rebalance() noexcept;
  static void on_left(queue_owner& self) noexcept { static_cast<channel_core&>(self).settle(); }

  limits_pool pool;  // declared first: the queues' ops give their limits back to it
  wait_queue senders{pool, this};
  wait_queue receivers{pool, this};
  std::size_t count = 0;  // items buffered
  bool closed = false;
};

template <class T>
struct [[nodiscard]] send_op : queued_op {
  send_op(channel<T>* c, T* it, op_options o) noexcept
      : queued_op(*c->core_.pool.lp, std::move(o), send_type), ch(c), item(it) {}
  bool await_ready() noexcept { return ch->start_send(*this); }
  bool await_suspend(std::coroutine_handle<> h) noexcept {
    if (!park(ch->core_.senders, *this, h)) return false;
    ch->core_.settle();  // its item is one more for a receiver to take
    return true;
  }
  result<void> await_resume() const noexcept {
    if (ec) return failure(ec);
    return success();
  }

  channel<T>* ch;
  T* item;  // the sender's; moved from only when the send succeeds
};

// send(const T&): the copy is made when the op is, and lives in it.
template <class T>
struct [[nodiscard]] send_copy_op : send_op<T> {
  send_copy_op(channel<T>* c, const T& v, op_options o)
      : send_op<T>(c, nullptr, std::move(o)), copy(v) {
    this->item = &copy;
  }
  send_copy_op(send_copy_op&& o) noexcept : send_op<T>(std::move(o)), copy(std::move(o.copy)) {
    this->item = &copy;
  }
  T copy;
};

template <class T>
struct [[nodiscard]] receive_op : queued_op {
  receive_op(channel<T>* c, op_options o) noexcept
      : queued_op(*c->core_.pool.lp, std::move(o), receive_type), ch(c) {}
  bool await_ready() noexcept { return ch->start_receive(*this); }
  bool await_suspend(std::coroutine_handle<> h) noexcept {
    return park(ch->core_.receivers, *this, h);
  }
  // The commit point: an item is taken here or not at all.
  result<T> await_resume() noexcept {
    if (parked()) {  // woken, still parked until now: its stop request wins over the item
      const bool cancelled = stop.stop_requested();
      unpark(*this);
      if (cancelled) {
        ch->core_.settle();  // the item it was woken for goes to the next receiver
        return failure(make_error_code(errc::cancelled));
      }
    } else if (ec) {
      return failure(ec);
    }
    return result<T>(boost::outcome_v2::in_place_type<T>, ch->take());
  }

  channel<T>* ch;
};

}  // namespace detail

/// A bounded first-in first-out queue of `T` between coroutines on one loop: `send` waits
/// while it is full, `receive` while it is empty. A capacity of 0 makes each send a hand-over:
/// it completes once a receiver has taken its item. All of its members must be called on the
/// loop's thread, and it must be destroyed before the loop (it is neither copied nor moved:
/// parked ops point at it).
///
/// An item is never lost nor duplicated: each one either reaches exactly one receiver or is
/// still in the channel or with its sender. A send that fails (errc::closed, errc::timed_out,
/// errc::cancelled) has not touched the item it was given: `ch.send(std::move(m))` moves from
/// `m` only when it succeeds (std::move only casts), so after a failure `m` still holds it.
/// `send(m)` of an lvalue sends a copy, made when send() is called.
///
/// A receive takes its item when it resumes, not before: a receive that waited is woken by
/// the send that brought an item, resumed from the loop (never inline inside that send), and
/// takes the oldest item then. If its stop is requested or its deadline passes before it has
/// resumed, it completes with errc::cancelled or errc::timed_out and the item stays for the
/// next receive; if another receive or try_receive took it first, it waits on, first in line.
/// A receive that completes successfully has therefore taken its item at the moment its
/// coroutine goes on, never while it sat on the loop's ready list. A send completed by a
/// receive is resumed from the loop too; its item is then in the channel or with a receiver.
///
/// Steady state allocates nothing: the buffer is allocated once, here, and waiting ops are
/// listed in place (with a timeout or a stop token too, once as many such ops have waited at
/// once before).
///
/// ```cpp
/// evco::channel<std::string> ch(lp, 64);
/// EVCO_TRYV(co_await ch.send(std::move(line)));  // on failure, line still holds it
/// EVCO_TRY(std::string next, co_await ch.receive());
/// ```
template <class T>
class channel {
  static_assert(std::is_nothrow_move_constructible_v<T> && std::is_nothrow_destructible_v<T>,
                "a channel moves items while it hands them over, where nothing may throw");

 public:
  /// Makes a channel on `lp` that buffers up to `capacity` items (0: hand-over only).
  /// Throws std::bad_alloc when the buffer cannot be allocated (a hand-over channel has a
  /// one-item one, for try_send).
  channel(loop& lp, std::size_t capacity)
      : items_(std::allocator<T>().allocate(capacity ? capacity : 1)),
        capacity_(capacity),
        core_(lp) {}
  channel(const channel&) = delete;
  channel& operator=(const channel&) = delete;
  /// Closes the channel (see close()), resumes the receives it had woken with errc::closed,
  /// and destroys the items still in it.
  ~channel() {
    core_.shut();
    for (; core_.count > 0; --core_.count, head_ = next(head_))
      std::destroy_at(items_ + head_);
    std::allocator<T>().deallocate(items_, capacity_ ? capacity_ : 1);
  }

  /// Completes once `item` is buffered or, on a hand-over channel, taken by a receiver, and
  /// only then moves from it. errc::closed when the channel is closed before that (at once if
  /// it already is), errc::timed_out or errc::cancelled after `o`'s timeout or stop request:
  /// `item` is then untouched. `item` is borrowed until the op completes (like a stream op's
  /// buffer).
  detail::send_op<T> send(T&& item, op_options o = {}) noexcept {
    return {this, &item, std::move(o)};
  }
  /// The same with a copy of `item`, made now.
  detail::send_copy_op<T> send(const T& item,
                               op_options o = {}) requires std::copy_constructible<T> {
    return {this, item, std::move(o)};
  }

  /// Completes with the oldest item: buffered ones first, then those of waiting senders.
  /// errc::closed once the channel is closed and nothing is buffered. errc::timed_out or
  /// errc::cancelled after `o`'s timeout or stop request, when that comes before the receive
  /// has resumed (see above): no item was taken. An item is taken only by a receive that
  /// resumes, so one whose frame is destroyed while it waits or is woken takes none.
  detail::receive_op<T> receive(op_options o = {}) noexcept { return {this, std::move(o)}; }

  /// Buffers `item`, without waiting: std::errc::resource_unavailable_try_again when the
  /// buffer is full, errc::closed after close(). Moves from `item` only on success. On a
  /// hand-over channel it succeeds only while a receive waits (and no send waits, nor an item
  /// of an earlier try_send): the item then waits in the channel, as its one buffered item,
  /// for that receive to resume and take it.
  result<void> try_send(T&& item) noexcept {
    if (core_.closed) return failure(make_error_code(errc::closed));
    if (!(core_.count < capacity_ || hand_over_slot_free())) {
      return failure(std::make_error_code(std::errc::resource_unavailable_try_again));
    }
    push(std::move(item));
    core_.settle();
    return success();
  }
  result<void> try_send(const T& item) requires std::copy_constructible<T> {
    T copy(item);
    return try_send(std::move(copy));
  }

  /// Takes the oldest item without waiting: std::errc::resource_unavailable_try_again when
  /// there is none, errc::closed when the channel is closed and nothing is buffered. It may
  /// take an item that a woken receive was about to: that receive then waits on.
  result<T> try_receive() noexcept {
    if (available()) return result<T>(boost::outcome_v2::in_place_type<T>, take());
    if (core_.closed) return failure(make_error_code(errc::closed));
    return failure(std::make_error_code(std::errc::resource_unavailable_try_again));
  }

  /// Ends the channel: every waiting send fails with errc::closed (keeping its item), and so
  /// does every later one; receivers get what is buffered, then errc::closed. Idempotent.
  void close() noexcept { core_.close(); }

  bool is_closed() const noexcept { return core_.closed; }
  /// The items buffered now, those that woken receives are about to take included (on a
  /// hand-over channel, 1 while an item from try_send waits for its receive, else 0).
  std::size_t size() const noexcept { return core_.count; }
  std::size_t capacity() const noexcept { return capacity_; }

 private:
  friend struct detail::send_op<T>;
  friend struct detail::send_copy_op<T>;
  friend struct detail::receive_op<T>;

  std::size_t next(std::size_t i) const noexcept { return i + 1 >= capacity_ ? 0 : i + 1; }
  void push(T&& item) noexcept {
    std::size_t tail = head_ + core_.count;
    if (tail >= capacity_) tail -= capacity_;
    std::construct_at(items_ + tail, std::move(item));
    ++core_.count;
  }
  // Items a receive could take now: buffered ones and waiting senders'.
  bool available() const noexcept { return core_.count > 0 || !core_.senders.empty(); }
  // try_send on a hand-over channel: the one slot is free, a receive waits unwoken, and no
  // send waits (its item, older, goes first).
  bool hand_over_slot_free() const noexcept {
    return capacity_ == 0 && core_.count == 0 && core_.senders.empty() &&
           core_.receivers.woken < core_.receivers.size;
  }

  // Takes the oldest item; there must be one (available()). A buffered one's slot goes to the
  // first waiting sender (senders wait on a buffered channel only while it is full), which
  // completes: its item is in the channel now. On a hand-over channel a waiting sender's item
  // is taken from it, and that send completes.
  T take() noexcept {
    if (core_.count > 0) {
      T out(std::move(items_[head_]));
      std::destroy_at(items_ + head_);
      head_ = next(head_);
      --core_.count;
      if (capacity_ > 0) {
        if (detail::queued_op* s = core_.senders.front()) {
          auto& op = static_cast<detail::send_op<T>&>(*s);
          push(std::move(*op.item));
          detail::complete(op);
        }
      }
      core_.settle();
      return out;
    }
    auto& op = static_cast<detail::send_op<T>&>(*core_.senders.front());
    T out(std::move(*op.item));
    detail::complete(op);
    core_.settle();
    return out;
  }

  // await_ready: true when the op is done, its outcome set (or, for a receive, its item there
  // to take in await_resume), without waiting. A stop already requested wins over an item at
  // hand, so a cancelled op never moves one.
  bool start_send(detail::send_op<T>& op) noexcept {
    if (op.stop.stop_requested()) {
      op.ec = errc::cancelled;
      return true;
    }
    if (core_.closed) {
      op.ec = errc::closed;
      return true;
    }
    if (core_.count >= capacity_) return false;  // full, or a hand-over: wait for a receiver
    push(std::move(*op.item));
    core_.settle();
    return true;
  }
  bool start_receive(detail::receive_op<T>& op) noexcept {
    if (op.stop.stop_requested()) {
      op.ec = errc::cancelled;
      return true;
    }
    if (available()) return true;
    if (core_.closed) {
      op.ec = errc::closed;
      return true;
    }
    return false;
  }

  T* items_;  // a ring of capacity_ slots (1 on a hand-over channel), count of them used from head_
  std::size_t capacity_;
  std::size_t head_ = 0;
  detail::channel_core core_;
};

}  // namespace evco
