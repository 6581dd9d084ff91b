// Length-prefixed frames: the header's encodings, and read_frame (write_frame is a write with
// the header in front: write.cpp).

#include <limits>

#include "internal.hpp"

namespace evco::detail {

namespace {

constexpr std::size_t varint_max_size = 10;  // 64 bits, 7 per byte

std::size_t fixed_size(frame_header h) noexcept {
  return h == frame_header::u16_be || h == frame_header::u16_le ? 2 : 4;
}

bool big_endian(frame_header h) noexcept {
  return h == frame_header::u16_be || h == frame_header::u32_be;
}

// The largest payload a header can announce.
std::uint64_t capacity(frame_header h) noexcept {
  switch (h) {
    case frame_header::u16_be:
    case frame_header::u16_le:
      return 0xffff;
    case frame_header::u32_be:
    case frame_header::u32_le:
      return 0xffffffff;
    case frame_header::varint:
      break;
  }
  return std::numeric_limits<std::uint64_t>::max();
}

frame_prefix encode(frame_header h, std::uint64_t n) noexcept {
  frame_prefix p{};
  if (h == frame_header::varint) {
    do {
      const auto low = static_cast<unsigned char>(n & 0x7f);
      n >>= 7;
      p.bytes[p.size++] = std::byte(n != 0 ? low | 0x80 : low);
    } while (n != 0);
    return p;
  }
  p.size = static_cast<unsigned char>(fixed_size(h));
  for (std::size_t i = 0; i < p.size; ++i) {
    const std::size_t shift = 8 * (big_endian(h) ? p.size - 1 - i : i);
    p.bytes[i] = std::byte(static_cast<unsigned char>(n >> shift));
  }
  return p;
}

// What the front of the input says: the header's size (0 while it is incomplete) and the
// payload length it announces, or that it announces more than `max` (known as soon as the
// bytes so far say so: a varint only grows).
struct decoded {
  std::size_t size = 0;
  std::uint64_t length = 0;
  bool too_large = false;
};

decoded decode_varint(const unsigned char* b, std::size_t have, std::uint64_t max) noexcept {
  decoded d;
  for (std::size_t i = 0; i < have; ++i) {
    const std::uint64_t bits = b[i] & 0x7f;
    // The tenth byte holds the 64th bit only; anything more does not fit in 64 bits.
    if (i == varint_max_size - 1 && bits > 1) return {0, 0, true};
    d.length |= bits << (7 * i);
    if (d.length > max) return {0, 0, true};
    if ((b[i] & 0x80) == 0) {
      d.size = i + 1;
      return d;
    }
  }
  d.too_large = have == varint_max_size;  // ten bytes, each saying more follows
  return d;
}

decoded decode(evbuffer* in, frame_header h, std::uint64_t max) noexcept {
  unsigned char b[varint_max_size];
  const ev_ssize_t got = evbuffer_copyout(in, b, sizeof b);
  const std::size_t have = got > 0 ? static_cast<std::size_t>(got) : 0;
  if (h == frame_header::varint) return decode_varint(b, have, max);
  const std::size_t size = fixed_size(h);
  if (have < size) return {};
  decoded d{size, 0, false};
  for (std::size_t i = 0; i < size; ++i) {
    d.length |= std::uint64_t{b[i]} << (8 * (big_endian(h) ? size - 1 - i : i));
  }
  d.too_large = d.length > max;
  return d;
}

// Reads the header and makes the payload's room in the string; true once both are done. False
// while the header is incomplete, or (with `ec` set, nothing consumed) when it announces too
// much or the room cannot be made.
bool read_header(stream_state& s, read_frame_op& op) noexcept {
  evbuffer* in = input(s);
  const std::uint64_t max = std::min<std::uint64_t>(op.format.max, capacity(op.format.header));
  decoded d = decode(in, op.format.header, max);
  if (d.size == 0 && !d.too_large && socket_may_hold_more(s, evbuffer_get_length(in)) &&
      fill_input(s) > 0) {
    d = decode(in, op.format.header, max);
  }
  if (d.too_large) {
    op.ec = errc::limit_exceeded;
    return false;
  }
  if (d.size == 0) return false;
  try {
    op.base = op.frame->size();
    op.frame->resize(op.base + d.length);
  } catch (const std::exception&) {
    op.ec = std::make_error_code(std::errc::not_enough_memory);
    return false;
  }
  op.header.size = static_cast<unsigned char>(d.size);
  evbuffer_remove(in, op.header.bytes.data(), d.size);
  op.data = reinterpret_cast<std::byte*>(op.frame->data()) + op.base;
  op.size = d.length;
  return true;
}

// The header first, then the payload as read_exactly reads: from the input buffer, then
// straight from the socket.
bool perform_read_frame(stream_state& s, stream_op& o) noexcept {
  auto& op = static_cast<read_frame_op&>(o);
  if (!buffers(s)) {  // the header is read through the input buffer
    op.ec = std::make_error_code(std::errc::not_enough_memory);
    return true;
  }
  if (op.header.size == 0 && !read_header(s, op)) return op.ec || read_ended(s, op);
  op.done += take(s, op.data + op.done, op.size - op.done, input_length(s));
  return op.done == op.size || read_ended(s, op);
}

// A frame read that stops early puts back the header and what it took of the payload, and
// leaves the string as it was.
void interrupt_read_frame(stream_state& s, stream_op& o, std::error_code ec) noexcept {
  auto& op = static_cast<read_frame_op&>(o);
  if (op.header.size > 0) {
    evbuffer* in = input(s);
    if (op.done > 0) evbuffer_prepend(in, op.data, op.done);
    evbuffer_prepend(in, op.header.bytes.data(), op.header.size);
    op.frame->resize(op.base);
    op.header.size = 0;
    op.data = nullptr;
    op.size = op.done = 0;
  }
  op.ec = ec;
}

}  // namespace

write_frame_op::write_frame_op(stream_state* st, std::span<const std::byte> payload, frame_format f,
                               op_options o) noexcept
    : void_op(st, op_kind::write_frame, const_cast<std::byte*>(payload.data()), payload.size(),
              std::move(o)),
      header{},
      too_large(payload.size() > f.max || payload.size() > capacity(f.header)) {
  if (!too_large) header = encode(f.header, payload.size());
}

const op_type read_frame_type{{"read_frame", describe_stream_op},
                              reading,
                              perform_read_frame,
                              interrupt_read_frame,
                              grow_input,
                              restore_input};

}  // namespace evco::detail
