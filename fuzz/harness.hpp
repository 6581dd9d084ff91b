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
