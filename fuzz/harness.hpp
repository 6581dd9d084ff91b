#pragma once
// What the stream fuzz targets share: reading their input a byte at a time, writing a payload
// in chunks from one end of a pair, and running a body on a loop with a watchdog.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include "evco/evco.hpp"
#include "evco/pair.hpp"

namespace evco::fuzz {

using namespace std::chrono_literals;

// Set by each target to its name, for the messages below.
inline const char* target_name = "fuzz";

[[noreturn]] inline void violation(const char* what) {
  std::fprintf(stderr, "%s fuzz: invariant violated: %s\n", target_name, what);
  std::abort();
}

// The input, a byte at a time; zeros once it runs out.
struct byte_reader {
  const std::uint8_t* p;
  std::size_t n;
  std::uint8_t byte() {
    if (n == 0) return 0;
    --n;
    return *p++;
  }
};

// Chunk sizes, 1 to 200 bytes, `count` of them (from the input).
inline std::vector<std::size_t> read_chunks(byte_reader& r) {
  std::vector<std::size_t> chunks(r.byte() % 16 + 1);
  for (std::size_t& c : chunks)
    c = r.byte() % 200 + 1;
  return chunks;
}

// Writes `payload` in chunks of the sizes given in turn, letting the reader see each before the
// next, then ends the stream (shutdown, or close).
inline task<void> write_chunks(loop& lp, stream& s, std::string_view payload,
                               const std::vector<std::size_t>& chunks, bool close_at_end) {
  for (std::size_t i = 0; !payload.empty(); ++i) {
    const std::size_t n = std::min(payload.size(), chunks[i % chunks.size()]);
    if (!co_await s.write(payload.substr(0, n))) violation("write failed");
    payload.remove_prefix(n);
    co_await lp.yield();
  }
  if (close_at_end) {
    s.close();
  } else if (!co_await s.shutdown()) {
    violation("shutdown failed");
  }
}

// After a framed read's eof: the bytes no frame took are still there, then eof again.
inline task<void> expect_rest(stream& s, const std::string& expected) {
  std::string rest;
  for (;;) {
    auto n = co_await s.read_some(rest, 4096);
    if (!n) {
      if (n.error() != errc::eof) violation("expected eof after the rest");
      break;
    }
  }
  if (rest != expected) violation("the bytes left at eof differ");
}

// What a framed reader must see, in order, from a reference that saw the whole payload at
// once: a frame (or line), a limit hit, the bytes left at eof.
struct event {
  enum kind { frame, limit, end } k;
  std::string bytes;  // the frame, or what is left at the end
};

// Reads `expected` in turn with `read(s, out, in)`, a framed read appending to `out`, and
// checks each: the frame; or a failure that left `out` alone, limit_exceeded (then the reader
// skips `skip_after_limit` bytes) or eof (then the rest is still there).
template <class Input, class Read>
task<void> check_reads(stream& s, const Input& in, const std::vector<event>& expected,
                       std::size_t skip_after_limit, Read read) {
  std::string out;
  for (const event& e : expected) {
    if (!in.append) out.clear();
    const std::string before = out;
    const result<std::size_t> r = co_await read(s, out, in);
    if (e.k == event::frame) {
      if (!r) violation("the read failed where the reference has a frame");
      if (r.value() != e.bytes.size() || out != before + e.bytes) violation("wrong frame");
      continue;
    }
    if (r) violation("the read returned a frame the reference does not have");
    if (out != before) violation("a failed read changed its string");
    if (e.k == event::limit) {
      if (r.error() != errc::limit_exceeded) violation("expected limit_exceeded");
      if (!co_await s.skip(skip_after_limit)) violation("skip failed");
      continue;
    }
    if (r.error() != errc::eof) violation("expected eof");
    co_await expect_rest(s, e.bytes);
  }
}

// The framed readers' body: a pair, the reader's read limit, then `in.payload` written in
// `in.chunks` while `read(reader, in)` reads.
template <class Input, class Reader>
task<void> write_and_read(loop& lp, const Input& in, Reader read) {
  auto ends = make_pair(lp);
  if (!ends) violation("make_pair failed");
  auto& [writer, reader] = ends.value();
  if (in.read_limit != 0) reader.set_read_limit(in.read_limit);
  co_await when_all(write_chunks(lp, writer, in.payload, in.chunks, in.close_at_end),
                    read(reader, in));
}

// A hang is a bug: a watchdog of its own (when_any would wait for a hung body to end) dumps
// what is parked, then aborts.
inline task<void> watchdog(loop& lp, std::stop_token done) {
  if (co_await sleep_for(lp, 5s, std::move(done))) {
    lp.dump(stderr);
    violation("hang: not done after 5 s");
  }
}

inline void run_bounded(loop& lp, task<void> t) {
  std::stop_source done;
  lp.spawn(watchdog(lp, done.get_token()), [](std::exception_ptr) { std::abort(); });
  lp.run(std::move(t));
  done.request_stop();
}

}  // namespace evco::fuzz
