// Fuzz target: stream::read_line in each end-of-line style over a pair, the payload written in
// random chunks, checked against a reference that sees the whole payload at once. The lines,
// the limits hit and what is left at eof must not depend on how the bytes were chunked.
//
// Input: [flags] [style] [max: 2 bytes] [read limit] [chunk count] [chunk sizes...]
// [payload...]. Flags bit 0 maps payload bytes onto "ab\r\n\0" (terminators and their parts
// frequent), bit 1 ends the stream with close() instead of shutdown(), bit 2 keeps appending
// lines to the same string.

#include <algorithm>
#include <string>

#include "harness.hpp"

namespace {

using evco::eol;
using evco::fuzz::event;
using evco::fuzz::violation;

struct input {
  eol style = eol::crlf;
  std::size_t max = 1;
  std::size_t read_limit = 0;
  std::vector<std::size_t> chunks;
  std::string payload;
  bool close_at_end = false;
  bool append = false;
};

input decode(const std::uint8_t* data, std::size_t size) {
  evco::fuzz::byte_reader r{data, size};
  input in;
  const std::uint8_t flags = r.byte();
  const bool small = flags & 1;
  in.close_at_end = flags & 2;
  in.append = flags & 4;
  in.style = static_cast<eol>(r.byte() % 5);
  in.max = (static_cast<std::size_t>(r.byte()) << 8 | r.byte()) % 600;
  in.read_limit = r.byte() % 4 == 0 ? 0 : r.byte() % 64 + 1;
  in.chunks = evco::fuzz::read_chunks(r);
  static constexpr char alphabet[] = {'a', 'b', '\r', '\n', '\0'};
  const std::size_t len = std::min<std::size_t>(r.n, 4096);
  for (std::size_t i = 0; i < len; ++i) {
    const std::uint8_t b = r.byte();
    in.payload += small ? alphabet[b % 5] : static_cast<char>(b);
  }
  return in;
}

bool cr_or_lf(char c) {
  return c == '\r' || c == '\n';
}

// Where the first line of `rest` ends: its length and its terminator's, or npos.
struct line_end {
  std::size_t length = std::string_view::npos;
  std::size_t terminator = 0;
};

line_end find_end(std::string_view rest, eol style) {
  switch (style) {
    case eol::any: {
      const std::size_t at = rest.find_first_of("\r\n");
      if (at == std::string_view::npos) return {};
      const std::size_t run_end = rest.find_first_not_of("\r\n", at);
      return {at, (run_end == std::string_view::npos ? rest.size() : run_end) - at};
    }
    case eol::crlf: {
      const std::size_t at = rest.find('\n');
      if (at == std::string_view::npos) return {};
      if (at > 0 && rest[at - 1] == '\r') return {at - 1, 2};
      return {at, 1};
    }
    case eol::crlf_strict: {
      const std::size_t at = rest.find("\r\n");
      if (at == std::string_view::npos) return {};
      return {at, 2};
    }
    case eol::lf:
    case eol::nul: {
      const std::size_t at = rest.find(style == eol::lf ? '\n' : '\0');
      if (at == std::string_view::npos) return {};
      return {at, 1};
    }
  }
  return {};
}

// What the reader must see: the lines in order, each limit hit (after which the reader skips
// `max` + 1 bytes), and the bytes left without a terminator at eof.
std::vector<event> reference(const input& in) {
  std::vector<event> out;
  std::string_view rest = in.payload;
  for (;;) {
    // eol::any: the CRs and LFs at the start are the last terminator's; every read drops them.
    if (in.style == eol::any) {
      while (!rest.empty() && cr_or_lf(rest.front()))
        rest.remove_prefix(1);
    }
    const line_end e = find_end(rest, in.style);
    if (e.length != std::string_view::npos) {
      if (e.length > in.max) {
        out.push_back({event::limit, {}});
        rest.remove_prefix(in.max + 1);
        continue;
      }
      out.push_back({event::frame, std::string(rest.substr(0, e.length))});
      rest.remove_prefix(e.length + e.terminator);
      continue;
    }
    // A CR at the end may start a CR LF: it is no line byte yet.
    const bool partial = (in.style == eol::crlf || in.style == eol::crlf_strict) && !rest.empty() &&
                         rest.back() == '\r';
    if (rest.size() - (partial ? 1 : 0) > in.max) {
      out.push_back({event::limit, {}});
      rest.remove_prefix(in.max + 1);
      continue;
    }
    out.push_back({event::end, std::string(rest)});
    return out;
  }
}

evco::task<void> read_lines(evco::stream& s, const input& in) {
  co_await evco::fuzz::check_reads(s, in, reference(in), in.max + 1,
                                   [](evco::stream& st, std::string& out, const input& i) {
                                     return st.read_line(out, i.style, i.max);
                                   });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  evco::fuzz::target_name = "read_line";
  const input in = decode(data, size);
  evco::loop lp;
  evco::fuzz::run_bounded(lp, evco::fuzz::write_and_read(lp, in, read_lines));
  return 0;
}
