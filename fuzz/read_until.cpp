// Fuzz target: stream::read_until over a pair, the payload written in random chunks, checked
// against a reference splitter that sees the whole payload at once. The frames, the limits hit
// and what is left at eof must not depend on how the bytes were chunked.
//
// Input: [flags] [delimiter length-1 and bytes] [max: 2 bytes] [read limit] [chunk count]
// [chunk sizes...] [payload...]. Flags bit 0 maps payload and delimiter bytes onto "ab\r\n"
// (so delimiters and their prefixes are frequent), bit 1 ends the stream with close() instead
// of shutdown(), bit 2 keeps appending frames to the same string (read_until appends).

#include <algorithm>
#include <string>

#include "harness.hpp"

namespace {

using evco::fuzz::event;
using evco::fuzz::violation;

struct input {
  std::string delim;
  std::size_t max = 1;
  std::size_t read_limit = 0;
  std::vector<std::size_t> chunks;
  std::string payload;
  bool close_at_end = false;
  bool append = false;
};

char mapped(std::uint8_t b, bool small_alphabet) {
  static constexpr char alphabet[] = {'a', 'b', '\r', '\n'};
  return small_alphabet ? alphabet[b % 4] : static_cast<char>(b);
}

input decode(const std::uint8_t* data, std::size_t size) {
  evco::fuzz::byte_reader r{data, size};
  input in;
  const std::uint8_t flags = r.byte();
  const bool small = flags & 1;
  in.close_at_end = flags & 2;
  in.append = flags & 4;
  const std::size_t dlen = r.byte() % 4 + 1;
  for (std::size_t i = 0; i < dlen; ++i)
    in.delim += mapped(r.byte(), small);
  // max >= 1: with a max of 0 every read_until fails with limit_exceeded, eof or not.
  in.max = (static_cast<std::size_t>(r.byte()) << 8 | r.byte()) % 600 + 1;
  in.read_limit = r.byte() % 4 == 0 ? 0 : r.byte() % 64 + 1;
  in.chunks = evco::fuzz::read_chunks(r);
  const std::size_t len = std::min<std::size_t>(r.n, 4096);
  for (std::size_t i = 0; i < len; ++i)
    in.payload += mapped(r.byte(), small);
  return in;
}

// What the reader must see, from the whole payload: the frames in order, each limit hit (after
// which the reader skips `max` bytes), and the bytes left without a delimiter at eof.
std::vector<event> reference(const input& in) {
  std::vector<event> out;
  std::string_view rest = in.payload;
  for (;;) {
    const std::size_t at = rest.find(in.delim);
    if (at != std::string_view::npos) {
      const std::size_t n = at + in.delim.size();
      if (n > in.max) {
        out.push_back({event::limit, {}});
        rest.remove_prefix(in.max);
        continue;
      }
      out.push_back({event::frame, std::string(rest.substr(0, n))});
      rest.remove_prefix(n);
      continue;
    }
    if (rest.size() >= in.max) {
      out.push_back({event::limit, {}});
      rest.remove_prefix(in.max);
      continue;
    }
    out.push_back({event::end, std::string(rest)});
    return out;
  }
}

evco::task<void> read_frames(evco::stream& s, const input& in) {
  co_await evco::fuzz::check_reads(s, in, reference(in), in.max,
                                   [](evco::stream& st, std::string& out, const input& i) {
                                     return st.read_until(out, i.delim, i.max);
                                   });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  evco::fuzz::target_name = "read_until";
  const input in = decode(data, size);
  evco::loop lp;
  evco::fuzz::run_bounded(lp, evco::fuzz::write_and_read(lp, in, read_frames));
  return 0;
}
