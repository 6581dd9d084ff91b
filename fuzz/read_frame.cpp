// Fuzz target: stream::read_frame in each header over a pair, the raw stream written in random
// chunks, checked against a reference decoder that sees it all at once. The frames, the
// headers found too large and what is left at eof must not depend on how the bytes arrived;
// an interrupted read (a timeout of 0) must give back everything it took.
//
// Input: [flags] [header] [max: 2 bytes] [read limit] [chunk count] [chunk sizes...]
// [stream...]. Flags bit 0 ends the stream with close() instead of shutdown(), bit 1 keeps
// appending frames to the same string, bit 2 tries each frame first with an expired deadline
// (which either completes at once or fails with timed_out having consumed nothing).

#include <algorithm>
#include <string>

#include "harness.hpp"

namespace {

using evco::frame_header;
using evco::fuzz::event;
using evco::fuzz::violation;

struct input {
  evco::frame_format format;
  std::size_t read_limit = 0;
  std::vector<std::size_t> chunks;
  std::string payload;
  bool close_at_end = false;
  bool append = false;
  bool poll_first = false;
};

input decode(const std::uint8_t* data, std::size_t size) {
  evco::fuzz::byte_reader r{data, size};
  input in;
  const std::uint8_t flags = r.byte();
  in.close_at_end = flags & 1;
  in.append = flags & 2;
  in.poll_first = flags & 4;
  in.format.header = static_cast<frame_header>(r.byte() % 5);
  in.format.max = (static_cast<std::size_t>(r.byte()) << 8 | r.byte()) % 3000;
  in.read_limit = r.byte() % 4 == 0 ? 0 : r.byte() % 64 + 1;
  in.chunks = evco::fuzz::read_chunks(r);
  const std::size_t len = std::min<std::size_t>(r.n, 8192);
  in.payload.assign(reinterpret_cast<const char*>(r.p), len);
  return in;
}

// The header at the front of `rest`, decoded the simple way: its size (0: incomplete), the
// length it announces, and whether that is more than `max` (for a varint, as soon as the bytes
// so far say so).
struct header {
  std::size_t size = 0;
  std::uint64_t length = 0;
  bool too_large = false;
};

header parse(std::string_view rest, frame_header h, std::uint64_t max) {
  const auto byte = [&](std::size_t i) { return static_cast<std::uint8_t>(rest[i]); };
  if (h == frame_header::varint) {
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < rest.size() && i < 10; ++i) {
      const std::uint64_t bits = byte(i) & 0x7f;
      if (i == 9 && bits > 1) return {0, 0, true};
      v |= bits << (7 * i);
      if (v > max) return {0, 0, true};
      if ((byte(i) & 0x80) == 0) return {i + 1, v, false};
    }
    return {0, 0, rest.size() >= 10};
  }
  const std::size_t n = h == frame_header::u16_be || h == frame_header::u16_le ? 2 : 4;
  if (rest.size() < n) return {};
  const bool big = h == frame_header::u16_be || h == frame_header::u32_be;
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < n; ++i)
    v = v << 8 | byte(big ? i : n - 1 - i);
  return {n, v, v > max};
}

// What the reader must see: frames, headers too large (after which the reader skips a byte),
// and the bytes left at eof.
std::vector<event> reference(const input& in) {
  const std::uint64_t cap =
      in.format.header == frame_header::u16_be || in.format.header == frame_header::u16_le
          ? 0xffff
          : 0xffffffffu;
  const std::uint64_t max = in.format.header == frame_header::varint
                                ? in.format.max
                                : std::min<std::uint64_t>(in.format.max, cap);
  std::vector<event> out;
  std::string_view rest = in.payload;
  for (;;) {
    const header h = parse(rest, in.format.header, max);
    if (h.too_large) {
      out.push_back({event::limit, {}});
      rest.remove_prefix(1);
      continue;
    }
    if (h.size == 0 || rest.size() - h.size < h.length) {
      out.push_back({event::end, std::string(rest)});
      return out;
    }
    out.push_back({event::frame, std::string(rest.substr(h.size, h.length))});
    rest.remove_prefix(h.size + h.length);
  }
}

// Optionally tried first with an expired deadline, which completes only if it can at once and
// otherwise takes nothing.
evco::task<evco::result<std::size_t>> read_one(evco::stream& s, std::string& frame,
                                               const input& in) {
  if (in.poll_first) {
    const std::string before = frame;
    auto r = co_await s.read_frame(frame, in.format, std::chrono::milliseconds(-1));
    if (r || r.error() != evco::errc::timed_out) co_return r;
    if (frame != before) violation("a timed-out read_frame changed its string");
  }
  co_return co_await s.read_frame(frame, in.format);
}

evco::task<void> read_frames(evco::stream& s, const input& in) {
  co_await evco::fuzz::check_reads(s, in, reference(in), 1, read_one);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  evco::fuzz::target_name = "read_frame";
  const input in = decode(data, size);
  evco::loop lp;
  evco::fuzz::run_bounded(lp, evco::fuzz::write_and_read(lp, in, read_frames));
  return 0;
}
