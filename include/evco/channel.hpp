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

// A channel without its items (lib/channel.cpp): who waits, and whether it is closed.
struct channel_core {
  explicit channel_core(loop& l) noexcept : pool(l) {}
  channel_core(const channel_core&) = delete;
  channel_core& operator=(const channel_core&) = delete;
  ~channel_core() { close(); }

  // Resumes every parked send and receive with errc::closed.
  void close() noexcept;

  limits_pool pool;  // declared first: the queues' ops give their limits back to it
  wait_queue senders{pool};
  wait_queue receivers{pool};
  bool closed = false;
};

template <class T>
struct [[nodiscard]] send_op : queued_op {
  send_op(channel<T>* c, T* it, op_options o) noexcept
      : queued_op(*c->core_.pool.lp, std::move(o), send_type), ch(c), item(it) {}
  bool await_ready() noexcept { return ch->start_send(*this); }
  bool await_suspend(std::coroutine_handle<> h) noexcept {
    return park(ch->core_.senders, *this, h);
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
  result<T> await_resume() noexcept {
    if (ec) return failure(ec);
    return result<T>(boost::outcome_v2::in_place_type<T>, std::move(*item));
  }

  channel<T>* ch;
  std::optional<T> item;  // handed over by a sender, or taken from the buffer
};

}  // namespace detail

/// A bounded first-in first-out queue of `T` between coroutines on one loop: `send` waits
/// while it is full, `receive` while it is empty. A capacity of 0 makes each send a hand-over:
/// it completes once a receiver has taken its item. All of its members must be called on the
/// loop's thread, and it must be destroyed before the loop (it is neither copied nor moved:
/// parked ops point at it).
///
/// An item is never lost nor duplicated: each one either reaches exactly one receiver or is
/// still with its sender. A send that fails (errc::closed, errc::timed_out, errc::cancelled)
/// has not touched the item it was given: `ch.send(std::move(m))` moves from `m` only when it
/// succeeds (std::move only casts), so after a failure `m` still holds it. `send(m)` of an
/// lvalue sends a copy, made when send() is called. A send or receive completed by another
/// op is resumed from the loop, never inline inside that op. Steady state allocates nothing:
/// the buffer is allocated once, here, and waiting ops are listed in place (with a timeout or
/// a stop token too, once as many such ops have waited at once before).
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
  /// Throws std::bad_alloc when the buffer cannot be allocated.
  channel(loop& lp, std::size_t capacity)
      : items_(capacity ? std::allocator<T>().allocate(capacity) : nullptr),
        capacity_(capacity),
        core_(lp) {}
  channel(const channel&) = delete;
  channel& operator=(const channel&) = delete;
  /// Closes the channel (see close()) and destroys the items still buffered.
  ~channel() {
    core_.close();
    for (; count_ > 0; --count_, head_ = next(head_))
      std::destroy_at(items_ + head_);
    if (items_) std::allocator<T>().deallocate(items_, capacity_);
  }

  /// Completes once `item` is handed to a receiver or buffered, and only then moves from it.
  /// errc::closed when the channel is closed before that (at once if it already is),
  /// errc::timed_out or errc::cancelled after `o`'s timeout or stop request: `item` is then
  /// untouched. `item` is borrowed until the op completes (like a stream op's buffer).
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
  /// errc::cancelled after `o`'s timeout or stop request: no item was taken. An item handed to
  /// a receive whose frame is destroyed before it resumes is destroyed with the frame.
  detail::receive_op<T> receive(op_options o = {}) noexcept { return {this, std::move(o)}; }

  /// Hands `item` to a waiting receiver or buffers it, without waiting: std::errc::
  /// resource_unavailable_try_again when neither can be done now, errc::closed after close().
  /// Moves from `item` only on success.
  result<void> try_send(T&& item) noexcept {
    if (core_.closed) return failure(make_error_code(errc::closed));
    if (!offer(item))
      return failure(std::make_error_code(std::errc::resource_unavailable_try_again));
    return success();
  }
  result<void> try_send(const T& item) requires std::copy_constructible<T> {
    T copy(item);
    return try_send(std::move(copy));
  }

  /// Takes the oldest item without waiting: std::errc::resource_unavailable_try_again when
  /// there is none, errc::closed when the channel is closed and nothing is buffered.
  result<T> try_receive() noexcept {
    std::optional<T> out;
    if (take(out)) return result<T>(boost::outcome_v2::in_place_type<T>, std::move(*out));
    if (core_.closed) return failure(make_error_code(errc::closed));
    return failure(std::make_error_code(std::errc::resource_unavailable_try_again));
  }

  /// Ends the channel: every waiting send fails with errc::closed (keeping its item), and so
  /// does every later one; receivers get what is buffered, then errc::closed. Idempotent.
  void close() noexcept { core_.close(); }

  bool is_closed() const noexcept { return core_.closed; }
  /// The items buffered now (always 0 for a hand-over channel).
  std::size_t size() const noexcept { return count_; }
  std::size_t capacity() const noexcept { return capacity_; }

 private:
  friend struct detail::send_op<T>;
  friend struct detail::send_copy_op<T>;
  friend struct detail::receive_op<T>;

  std::size_t next(std::size_t i) const noexcept { return i + 1 == capacity_ ? 0 : i + 1; }
  void push(T&& item) noexcept {
    std::size_t tail = head_ + count_;
    if (tail >= capacity_) tail -= capacity_;
    std::construct_at(items_ + tail, std::move(item));
    ++count_;
  }

  // Hands `item` to the first waiting receiver (there is one only while nothing is buffered)
  // or buffers it; false when the buffer is full.
  bool offer(T& item) noexcept {
    if (detail::queued_op* r = core_.receivers.front()) {
      auto& op = static_cast<detail::receive_op<T>&>(*r);
      op.item.emplace(std::move(item));
      detail::complete(op);
      return true;
    }
    if (count_ == capacity_) return false;
    push(std::move(item));
    return true;
  }

  // Takes the oldest item into `out`: the buffer's first, whose slot then goes to the first
  // waiting sender (senders wait only while it is full), or a waiting sender's.
  bool take(std::optional<T>& out) noexcept {
    if (count_ > 0) {
      out.emplace(std::move(items_[head_]));
      std::destroy_at(items_ + head_);
      head_ = next(head_);
      --count_;
      if (detail::queued_op* s = core_.senders.front()) {
        auto& op = static_cast<detail::send_op<T>&>(*s);
        push(std::move(*op.item));
        detail::complete(op);
      }
      return true;
    }
    if (detail::queued_op* s = core_.senders.front()) {
      auto& op = static_cast<detail::send_op<T>&>(*s);
      out.emplace(std::move(*op.item));
      detail::complete(op);
      return true;
    }
    return false;
  }

  // await_ready: true when the op is done, its outcome set, without waiting. A stop already
  // requested wins over an item at hand, so a cancelled op never moves one.
  bool start_send(detail::send_op<T>& op) noexcept {
    if (op.stop.stop_requested()) {
      op.ec = errc::cancelled;
      return true;
    }
    if (core_.closed) {
      op.ec = errc::closed;
      return true;
    }
    return offer(*op.item);
  }
  bool start_receive(detail::receive_op<T>& op) noexcept {
    if (op.stop.stop_requested()) {
      op.ec = errc::cancelled;
      return true;
    }
    if (take(op.item)) return true;
    if (core_.closed) {
      op.ec = errc::closed;
      return true;
    }
    return false;
  }

  T* items_;  // a ring of capacity_ slots, count_ of them in use from head_
  std::size_t capacity_;
  std::size_t head_ = 0;
  std::size_t count_ = 0;
  detail::channel_core core_;
};

}  // namespace evco
