// Input without copies: peek (a view of the input buffer), consume, and skip (discarding
// bytes as they arrive).

#include "internal.hpp"

namespace evco::detail {

namespace {

// The view: the input buffer's first chunk, made to hold at least `n` bytes. Until consume()
// or the next read op nothing may be appended to the input buffer (libevent may move the last
// chunk's bytes to grow it), so reading ahead pauses.
void show_input(stream_state& s, stream_op& op, std::size_t n) noexcept {
  evbuffer* in = input(s);
  evbuffer_iovec first{};
  if (evbuffer_peek(in, -1, nullptr, &first, 1) > 0 && first.iov_len < n) {
    evbuffer_pullup(in, static_cast<ev_ssize_t>(n));
    evbuffer_peek(in, -1, nullptr, &first, 1);
  }
  op.data = static_cast<std::byte*>(first.iov_base);
  op.done = first.iov_len;
  if (op.done == 0) return;  // a view of nothing needs nothing held still
  s.input_viewed = true;
  s.io->pause_reading(s);
}

bool perform_peek(stream_state& s, stream_op& op) noexcept {
  if (!buffers(s)) {  // the view is of the input buffer
    op.ec = std::make_error_code(std::errc::not_enough_memory);
    return true;
  }
  std::size_t buffered = input_length(s);
  while (buffered < op.size && socket_may_hold_more(s, buffered)) {
    const std::size_t got = fill_input(s);
    if (got == 0) break;
    buffered += got;
  }
  if (buffered < op.size) return read_ended(s, op);
  show_input(s, op, op.size);
  return true;
}

// What is buffered goes first; then (plain sockets) the socket is read into a scratch buffer
// on the stack, at most one fairness budget per call so that a fast sender cannot keep the
// loop here.
bool perform_skip(stream_state& s, stream_op& op) noexcept {
  const std::size_t buffered = std::min(input_length(s), op.size - op.done);
  if (buffered > 0) evbuffer_drain(input(s), buffered);
  op.done += buffered;
  std::size_t read = 0;
  while (op.done < op.size && read < inline_budget && socket_may_hold_more(s, 0)) {
    std::byte scratch[16 << 10];
    const std::size_t got = read_direct(s, scratch, std::min(sizeof scratch, op.size - op.done));
    if (got == 0) break;
    op.done += got;
    read += got;
  }
  return op.done == op.size || read_ended(s, op);
}

}  // namespace

const op_type peek_type{
    {"peek", describe_stream_op}, reading, perform_peek, fail, grow_input, restore_input};
const op_type skip_type{
    {"skip", describe_stream_op}, reading, perform_skip, fail, nullptr, nullptr};

}  // namespace evco::detail

namespace evco {

void stream::consume(std::size_t n) noexcept {
  if (!s_ || s_->side[detail::reading].op) return;
  if (s_->bev) evbuffer_drain(detail::input(*s_), n);
  if (!std::exchange(s_->input_viewed, false)) return;
  s_->io->limit_input(*s_, s_->read_high);  // reading ahead again, up to the limit
}

}  // namespace evco
