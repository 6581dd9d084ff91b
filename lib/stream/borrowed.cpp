// write_borrowed: the caller's bytes queued by reference (evbuffer_add_reference) instead of
// copied, and the op done when libevent frees that reference.
//
// While the op waits, its bytes are the last of the stream's output: no other write can queue
// after them. libevent drains them from the front, so what it still refers to is the tail of
// `data`, and the tail of the output buffer; over a pair the reference may instead have moved
// whole into the partner's input buffer (be_pair_transfer moves chains), again as its tail.
// An op that ends early copies that tail into a buffer of libevent's own and puts it back in
// the same place (see detach), so the caller's memory is free before the op's frame can go.

#include "internal.hpp"

namespace evco::detail {

namespace {

write_borrowed_op& as_borrowed(stream_op& op) noexcept {
  return static_cast<write_borrowed_op&>(op);
}

// libevent freed the reference: the bytes were handed on, or taken back by detach().
void on_released(const void*, std::size_t, void* arg) {
  auto& b = *static_cast<write_borrowed_op*>(arg);
  b.referenced = false;
  b.released = true;
  if (b.running || b.state != op_state::parked) return;
  finish_later(*b.s, b);
}

// Replaces the `r` bytes still referenced, the tail of `buf`, with a copy. Without memory for
// the copy they are dropped instead (with whatever sat before them in `buf` when that cannot
// be set aside either): false, and the stream has lost bytes.
bool replace_tail(evbuffer* buf, int frozen_end, const std::byte* tail, std::size_t r) noexcept {
  using buffer_ptr = c_handle<evbuffer, &evbuffer_free>;
  const std::size_t front = evbuffer_get_length(buf) - r;
  const buffer_ptr copy(evbuffer_new());
  const buffer_ptr aside(front > 0 ? evbuffer_new() : nullptr);
  bool ok = copy && (front == 0 || aside) && evbuffer_add(copy.get(), tail, r) == 0;
  // A bufferevent freezes the start of its output and the end of its input.
  evbuffer_unfreeze(buf, frozen_end);
  // The front is whole chains (the reference starts a chain): moved, not copied.
  if (ok && front > 0)
    ok = evbuffer_remove_buffer(buf, aside.get(), front) == static_cast<int>(front);
  evbuffer_drain(buf, evbuffer_get_length(buf));  // frees the reference
  if (ok) ok = evbuffer_add_buffer(buf, aside ? aside.get() : copy.get()) == 0;
  if (ok && aside) ok = evbuffer_add_buffer(buf, copy.get()) == 0;
  evbuffer_freeze(buf, frozen_end);
  return ok;
}

// Takes the bytes libevent still refers to back (see the top of the file).
void detach(stream_state& s, write_borrowed_op& b) noexcept {
  evbuffer* buf = output(s);
  int frozen_end = 1;
  if (evbuffer_get_length(buf) == 0) {
    bufferevent* partner = bufferevent_pair_get_partner(s.bev);
    if (!partner) return;  // unreachable: a reference in neither buffer was freed already
    buf = bufferevent_get_input(partner);
    frozen_end = 0;
  }
  const std::size_t r = std::min(evbuffer_get_length(buf), b.size);
  b.running = true;
  const bool ok = replace_tail(buf, frozen_end, b.data + b.size - r, r);
  b.running = false;
  if (!ok && !s.side[writing].error) {
    s.side[writing].error = std::make_error_code(std::errc::not_enough_memory);
  }
}

bool direct_mode(stream_state& s, const write_borrowed_op& b) noexcept {
  return b.done > 0 || (s.io->direct && output_length(s) == 0);
}

bool perform_write_borrowed(stream_state& s, stream_op& op) noexcept {
  write_borrowed_op& b = as_borrowed(op);
  std::error_code& error = s.side[writing].error;
  if (b.released) {
    op.ec = error;
    return true;
  }
  if (b.referenced) {
    if (!error) return false;  // libevent is on it
    detach(s, b);              // the socket failed: nobody sends them now
    op.ec = error;
    return true;
  }
  // Nothing to gain over write(): a direct write copies nothing.
  if (direct_mode(s, b)) return write_type.perform(s, op);
  if (error || s.write_shut) return write_type.perform(s, op);  // its error
  if (s.write_high != 0 && output_length(s) > s.write_high) return false;
  if (op.size == 0) return true;
  if (!buffers(s)) {
    op.ec = std::make_error_code(std::errc::not_enough_memory);
    return true;
  }
  b.referenced = true;
  op.done = op.size;  // queued: what progress (and the fairness budget) count
  b.running = true;
  const int added = evbuffer_add_reference(output(s), op.data, op.size, on_released, &b);
  b.running = false;
  if (added != 0) {
    b.referenced = false;
    op.done = 0;
    op.ec = std::make_error_code(std::errc::not_enough_memory);
    return true;
  }
  return b.released;  // written (and freed) at once
}

void interrupt_write_borrowed(stream_state& s, stream_op& op, std::error_code ec) noexcept {
  write_borrowed_op& b = as_borrowed(op);
  if (b.referenced) {
    detach(s, b);
    op.ec = s.side[writing].error;  // otherwise the bytes are queued: success, as write()
  } else if (!b.released) {
    write_type.interrupt(s, op, ec);
  }
}

void write_borrowed_parked(stream_state& s, stream_op& op) {
  write_borrowed_op& b = as_borrowed(op);
  if (!b.referenced && !b.released && direct_mode(s, b)) write_type.parked(s, op);
}

}  // namespace

const op_type write_borrowed_type{{"write_borrowed", describe_stream_op},
                                  writing,
                                  perform_write_borrowed,
                                  interrupt_write_borrowed,
                                  write_borrowed_parked,
                                  nullptr};

}  // namespace evco::detail
