// Framing and input without copies: read_line in every end-of-line style, length-prefixed
// frames, peek / consume / skip. Every reader runs over each transport (transports.hpp) and
// over chunkings from one byte to the whole input at once: what comes out must not depend on
// how the bytes arrived.

#include <doctest/doctest.h>

#include <array>
#include <atomic>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "support.hpp"
#include "tls_ends.hpp"
#include "transports.hpp"

using evco::eol;
using evco::errc;
using evco::frame_format;
using evco::frame_header;
using evco::loop;
using evco::result;
using evco::stream;
using evco::success;
using evco::task;
using evco::test::certs;
using evco::test::error_of;
using evco::test::pattern;

TEST_SUITE_BEGIN("framing");

// Counted by the operator new in counting_new.cpp, linked into this suite.
extern std::atomic<std::size_t> allocations;
extern const bool counting_new_active;

namespace {

using namespace evco::test;  // the transports and their helpers (transports.hpp)
using namespace std::literals;

// TLS as a fourth transport: its bytes go through OpenSSL's records and the bufferevent's
// buffers, which a peek's view must survive too.
task<result<ends>> tls(loop& lp) {
  co_return co_await evco::test::tls_ends(lp);
}

constexpr std::array with_tls{transports[0], transports[1], transports[2], transport{"tls", tls}};

void over_each(body_fn body) {
  over_each_transport(body, with_tls);
}

// Chunk sizes the input is written in, 0 meaning all of it at once. Each write is followed
// by a turn of the loop, so that the reader mostly sees the chunks one by one.
constexpr std::array<std::size_t, 7> chunkings{1, 2, 3, 5, 7, 64, 0};

task<result<void>> write_chunks(loop* lp, stream* s, std::string data, std::size_t chunk) {
  if (chunk == 0) chunk = data.size() + 1;
  for (std::size_t off = 0; off < data.size(); off += chunk) {
    EVCO_TRYV(co_await s->write(std::string_view(data).substr(off, chunk)));
    co_await lp->yield();
  }
  co_return co_await s->shutdown();
}

// A writer of its own, which the case waits for before its streams go.
struct sender {
  evco::test::signal done;
  result<void> r = success();

  sender(loop& lp, stream& s, std::string data, std::size_t chunk) {
    lp.spawn(run(&lp, &s, std::move(data), chunk, this), fail_task);
  }
  static task<void> run(loop* lp, stream* s, std::string data, std::size_t chunk, sender* self) {
    self->r = co_await write_chunks(lp, s, std::move(data), chunk);
    self->done.set();
  }
  // Whether every byte went, and the shutdown after them.
  task<bool> finished() {
    co_await done;
    co_return r.has_value();
  }
};

std::string_view as_text(std::span<const std::byte> v) {
  return {reinterpret_cast<const char*>(v.data()), v.size()};
}

// Letters only: no byte of it ends a line.
std::string letters(std::size_t n, unsigned seed) {
  std::string s(n, 'a');
  for (std::size_t i = 0; i < n; ++i)
    s[i] = static_cast<char>('a' + (i * 7 + seed) % 26);
  return s;
}

std::string text(std::string_view s) {
  return std::string(s);
}

// ---- read_line --------------------------------------------------------------------------------

// CRs and LFs in every combination, a NUL inside a line, and an unterminated end (nul style).
const std::string lines_input = text("one\r\ntwo\nthree\r\rfour\r\n\r\nfive\0six\n\nseven\r\n"sv);

struct style_case {
  eol style;
  std::vector<std::string> lines;
  std::string rest;  // unterminated, still readable after the eof
};

const std::vector<style_case> style_cases{
    {eol::crlf, {"one", "two", "three\r\rfour", "", text("five\0six"sv), "", "seven"}, ""},
    {eol::crlf_strict, {"one", "two\nthree\r\rfour", "", text("five\0six\n\nseven"sv)}, ""},
    {eol::lf, {"one\r", "two", "three\r\rfour\r", "\r", text("five\0six"sv), "", "seven\r"}, ""},
    {eol::nul, {"one\r\ntwo\nthree\r\rfour\r\n\r\nfive"}, "six\n\nseven\r\n"},
    {eol::any, {"one", "two", "three", "four", text("five\0six"sv), "seven"}, ""},
};

task<void> lines_in_every_style(loop& lp, const transport& t) {
  for (const style_case& c : style_cases) {
    for (const std::size_t chunk : chunkings) {
      CAPTURE(static_cast<int>(c.style));
      CAPTURE(chunk);
      auto [a, b] = co_await connected(lp, t);
      sender snd(lp, a, lines_input, chunk);
      std::vector<std::string> got;
      std::error_code end;
      for (;;) {
        std::string line = "kept:";  // read_line appends
        auto r = co_await b.read_line(line, c.style, 100, 10s);
        if (!r) {
          end = r.error();
          break;
        }
        CHECK(r.value() + 5 == line.size());
        got.push_back(line.substr(5));
      }
      CHECK(end == errc::eof);
      CHECK(got == c.lines);
      auto rest = co_await read_to_eof(&b);
      REQUIRE(rest);
      CHECK(rest.value() == c.rest);
      CHECK(co_await snd.finished());
    }
  }
}

TEST_CASE("read_line splits the same lines in every style, however the bytes arrive") {
  over_each(lines_in_every_style);
}

// A line longer than `max` fails once more than `max` bytes of it are there, and nothing is
// lost; a line of exactly `max` bytes is fine, a CR LF split after it included.
task<void> line_limits(loop& lp, const transport& t) {
  for (const std::size_t chunk : chunkings) {
    CAPTURE(chunk);
    auto [a, b] = co_await connected(lp, t);
    const std::string long_line = letters(150, 3);
    sender snd(lp, a, "12345\r\n" + long_line + "\nnext\n", chunk);
    std::string line;
    auto r = co_await b.read_line(line, eol::crlf, 5);
    REQUIRE_MESSAGE(r, error_of(r));
    CHECK(line == "12345");
    line.clear();
    CHECK(error_of(co_await b.read_line(line, eol::crlf, 100)) == errc::limit_exceeded);
    CHECK(line.empty());
    CHECK(b.buffered_input() > 100);
    // The bytes are all still there: a larger limit reads the line.
    REQUIRE(co_await b.read_line(line, eol::lf, 150));
    CHECK(line == long_line);
    line.clear();
    REQUIRE(co_await b.read_line(line, eol::lf, 4));
    CHECK(line == "next");
    CHECK(co_await snd.finished());
  }
}

TEST_CASE("read_line: limit_exceeded keeps the bytes; a line of exactly max is read") {
  over_each(line_limits);
}

task<void> line_cut_by_eof(loop& lp, const transport& t) {
  auto [a, b] = co_await connected(lp, t);
  REQUIRE(co_await a.write("done\npartial\r"));
  REQUIRE(co_await a.shutdown());
  std::string line;
  REQUIRE(co_await b.read_line(line));
  CHECK(line == "done");
  line.clear();
  CHECK(error_of(co_await b.read_line(line)) == errc::eof);
  CHECK(line.empty());
  auto rest = co_await read_to_eof(&b);
  REQUIRE(rest);
  CHECK(rest.value() == "partial\r");
}

TEST_CASE("read_line: the stream ending inside a line is eof, and the line stays readable") {
  over_each(line_cut_by_eof);
}

// Many lines in one write: each read takes one, and the rest stays for the next.
task<void> many_lines_in_one_packet(loop& lp, const transport& t) {
  auto [a, b] = co_await connected(lp, t);
  std::string all;
  for (int i = 0; i < 1000; ++i)
    all += std::to_string(i) + "\r\n";
  REQUIRE(co_await a.write(all));
  for (int i = 0; i < 1000; ++i) {
    std::string line;
    auto r = co_await b.read_line(line, eol::crlf, 10);
    REQUIRE_MESSAGE(r, error_of(r));
    REQUIRE(line == std::to_string(i));
  }
  CHECK(b.buffered_input() == 0);
}

TEST_CASE("read_line: a thousand lines in one write come out one by one") {
  over_each(many_lines_in_one_packet);
}

// A line may be longer than the read limit: the input grows to the line's maximum while the
// read waits (the pair's and TLS's libevent watermark included).
task<void> line_past_read_limit(loop& lp, const transport& t) {
  auto [a, b] = co_await connected(lp, t);
  b.set_read_limit(1024);
  const std::string long_line = letters(100000, 4);
  sender snd(lp, a, long_line + "\n", 4096);
  std::string line;
  auto r = co_await b.read_line(line, eol::lf, 200000, 10s);
  REQUIRE_MESSAGE(r, error_of(r));
  CHECK((line == long_line));
  CHECK(co_await snd.finished());
}

TEST_CASE("read_line: a line longer than the read limit is read") {
  over_each(line_past_read_limit);
}

TEST_CASE("read_line of eol::any drops a run of CRs and LFs longer than the read limit") {
  over_each([](loop& lp, const transport& t) -> task<void> {
    auto [a, b] = co_await connected(lp, t);
    b.set_read_limit(1024);
    sender snd(lp, a, "first" + std::string(100000, '\n') + "second\r", 8192);
    std::string line;
    REQUIRE(co_await b.read_line(line, eol::any, 10, 10s));
    CHECK(line == "first");
    line.clear();
    REQUIRE(co_await b.read_line(line, eol::any, 10, 10s));
    CHECK(line == "second");
    CHECK(co_await snd.finished());
  });
}

// A read limit lowered while a line or a peek waits keeps the room the op needs (as for
// read_until: transport_test.cpp), or its bytes could never all come in.
task<void> limit_lowered_while_waiting(loop& lp, const transport& t) {
  auto [a, b] = co_await connected(lp, t);
  const std::string long_line = letters(200000, 6);
  lp.spawn(
      [](stream* reader, stream* writer, std::string data) -> task<result<void>> {
        reader->set_read_limit(1024);  // spawned: runs once the read below has parked
        co_return co_await write_all(writer, std::move(data), 65536);
      }(&b, &a, long_line + "\n" + long_line),
      fail_result);
  std::string line;
  auto r = co_await b.read_line(line, eol::lf, 300000, 10s);
  REQUIRE_MESSAGE(r, error_of(r));
  CHECK((line == long_line));
  lp.spawn(
      [](stream* reader) -> task<result<void>> {
        reader->set_read_limit(512);
        co_return success();
      }(&b),
      fail_result);
  auto v = co_await b.peek(long_line.size(), 10s);
  REQUIRE_MESSAGE(v, error_of(v));
  CHECK((as_text(v.value()).substr(0, long_line.size()) == long_line));
}

TEST_CASE("a read limit lowered while read_line or peek waits still lets their bytes in") {
  over_each(limit_lowered_while_waiting);
}

// ---- frames -----------------------------------------------------------------------------------

constexpr std::array headers{frame_header::u16_be, frame_header::u16_le, frame_header::u32_be,
                             frame_header::u32_le, frame_header::varint};

// The bytes write_frame sends, as the other end sees them.
TEST_CASE("write_frame: each header's encoding") {
  struct encoding {
    frame_header header;
    std::size_t payload;
    std::string bytes;
  };
  const std::vector<encoding> cases{
      {frame_header::u16_be, 258, text("\x01\x02"sv)},
      {frame_header::u16_le, 258, text("\x02\x01"sv)},
      {frame_header::u32_be, 258, text("\0\0\x01\x02"sv)},
      {frame_header::u32_le, 258, text("\x02\x01\0\0"sv)},
      {frame_header::varint, 0, text("\0"sv)},
      {frame_header::varint, 127, text("\x7f"sv)},
      {frame_header::varint, 300, text("\xac\x02"sv)},
      {frame_header::varint, 70000, text("\xf0\xa2\x04"sv)},
  };
  run_on_loop([&](loop& lp) -> task<void> {
    for (const encoding& e : cases) {
      CAPTURE(e.payload);
      auto [a, b] = co_await connected(lp, transports[2]);
      const std::string payload = pattern(e.payload, 5);
      REQUIRE(co_await a.write_frame(payload, {.header = e.header, .max = 1 << 20}));
      REQUIRE(co_await a.shutdown());
      auto got = co_await read_to_eof(&b);
      REQUIRE(got);
      CHECK(got.value().substr(0, e.bytes.size()) == e.bytes);
      CHECK((got.value().substr(e.bytes.size()) == payload));
    }
  });
}

// Frame sizes around each encoding's boundaries.
constexpr std::array<std::size_t, 9> frame_sizes{0, 1, 2, 127, 128, 255, 256, 1000, 16387};

// What write_frame makes of `frame_sizes` in `header`, as bytes.
task<std::string> framed(loop& lp, frame_header header) {
  auto [a, b] = co_await connected(lp, transports[2]);
  lp.spawn(
      [](stream* s, frame_header h) -> task<result<void>> {
        for (std::size_t i = 0; i < frame_sizes.size(); ++i)
          EVCO_TRYV(co_await s->write_frame(pattern(frame_sizes[i], unsigned(i)), {h}));
        co_return co_await s->shutdown();
      }(&a, header),
      fail_result);
  auto all = co_await read_to_eof(&b);
  REQUIRE(all);
  co_return std::move(all).value();
}

task<void> frames_in_every_header(loop& lp, const transport& t) {
  for (const frame_header h : headers) {
    const std::string bytes = co_await framed(lp, h);
    for (const std::size_t chunk : chunkings) {
      CAPTURE(static_cast<int>(h));
      CAPTURE(chunk);
      auto [a, b] = co_await connected(lp, t);
      sender snd(lp, a, bytes, chunk == 1 ? 4093 : chunk);
      for (std::size_t i = 0; i < frame_sizes.size(); ++i) {
        std::string frame = "kept";
        auto r = co_await b.read_frame(frame, {h, 1 << 20}, 10s);
        REQUIRE_MESSAGE(r, error_of(r));
        CHECK(r.value() == frame_sizes[i]);
        CHECK(frame.substr(0, 4) == "kept");
        CHECK((frame.substr(4) == pattern(frame_sizes[i], unsigned(i))));
      }
      std::string frame;
      CHECK(error_of(co_await b.read_frame(frame, {h})) == errc::eof);
      CHECK(co_await snd.finished());
    }
  }
}

TEST_CASE("read_frame reads what write_frame wrote, in each header, however it arrives") {
  over_each(frames_in_every_header);
}

// Small frames byte by byte: a header split anywhere.
task<void> frames_byte_by_byte(loop& lp, const transport& t) {
  for (const frame_header h : headers) {
    CAPTURE(static_cast<int>(h));
    auto [a, b] = co_await connected(lp, t);
    std::string bytes;
    {
      auto [w, r] = co_await connected(lp, transports[2]);
      REQUIRE(co_await w.write_frame("x", {h}));
      REQUIRE(co_await w.write_frame(pattern(200, 1), {h}));
      REQUIRE(co_await w.write_frame("", {h}));
      REQUIRE(co_await w.shutdown());
      auto all = co_await read_to_eof(&r);
      REQUIRE(all);
      bytes = std::move(all).value();
    }
    sender snd(lp, a, bytes, 1);
    std::string f1, f2, f3;
    REQUIRE(co_await b.read_frame(f1, {h}));
    REQUIRE(co_await b.read_frame(f2, {h}));
    REQUIRE(co_await b.read_frame(f3, {h}));
    CHECK(f1 == "x");
    CHECK((f2 == pattern(200, 1)));
    CHECK(f3.empty());
    CHECK(co_await snd.finished());
  }
}

TEST_CASE("read_frame: frames and headers arriving a byte at a time") {
  over_each(frames_byte_by_byte);
}

// Found by fuzz/read_frame: under a read limit smaller than the header, the input still
// grows to a whole header (it did not on a pair or TLS, whose libevent watermark held it).
task<void> header_above_read_limit(loop& lp, const transport& t) {
  for (const frame_header h : headers) {
    CAPTURE(static_cast<int>(h));
    auto [a, b] = co_await connected(lp, t);
    b.set_read_limit(1);
    REQUIRE(co_await a.write_frame(pattern(300, 2), {h}));
    std::string frame;
    auto r = co_await b.read_frame(frame, {h}, 10s);
    REQUIRE_MESSAGE(r, error_of(r));
    CHECK((frame == pattern(300, 2)));
  }
}

TEST_CASE("read_frame: a read limit below the header's size still lets the header in") {
  over_each(header_above_read_limit);
}

// A header announcing more than the maximum consumes nothing: the header is still there to
// read (here: as a frame of a larger maximum).
task<void> frame_too_large(loop& lp, const transport& t) {
  auto [a, b] = co_await connected(lp, t);
  REQUIRE(co_await a.write_frame(pattern(101, 1), {frame_header::varint}));
  std::string frame;
  CHECK(error_of(co_await b.read_frame(frame, {frame_header::varint, 100})) ==
        errc::limit_exceeded);
  CHECK(frame.empty());
  REQUIRE(co_await b.read_frame(frame, {frame_header::varint, 101}));
  CHECK((frame == pattern(101, 1)));
  // Known too large from the first bytes of a varint, before its end has come.
  REQUIRE(co_await a.write("\xff\xff"));
  CHECK(error_of(co_await b.read_frame(frame, {frame_header::varint, 1000})) ==
        errc::limit_exceeded);
  CHECK(b.buffered_input() == 2);
}

TEST_CASE("read_frame: a header announcing more than max is limit_exceeded, nothing consumed") {
  over_each(frame_too_large);
}

TEST_CASE("read_frame: a varint of more than 64 bits is limit_exceeded") {
  run_on_loop([](loop& lp) -> task<void> {
    auto [a, b] = co_await connected(lp, transports[2]);
    REQUIRE(co_await a.write(std::string(10, '\x80') + "\x01"));
    std::string frame;
    CHECK(error_of(co_await b.read_frame(frame, {frame_header::varint, SIZE_MAX})) ==
          errc::limit_exceeded);
    CHECK(b.buffered_input() == 11);
  });
}

// The stream ending, a timeout or a cancellation inside a frame leaves the header and every
// byte of the frame readable, and the string as it was.
task<void> frame_cut_short(loop& lp, const transport& t) {
  auto [a, b] = co_await connected(lp, t);
  const std::string payload = pattern(3000, 7);
  const std::string header = text("\0\0\x0b\xb8"sv);  // 3000, u32_be
  REQUIRE(co_await a.write(header + payload.substr(0, 1000)));
  std::string frame = "before";
  CHECK(error_of(co_await b.read_frame(frame, {}, 20ms)) == errc::timed_out);
  CHECK(frame == "before");
  std::stop_source stop;
  lp.spawn(
      [](loop* l, std::stop_source* s) -> task<void> {
        co_await l->yield();
        s->request_stop();
      }(&lp, &stop),
      fail_task);
  CHECK(error_of(co_await b.read_frame(frame, {}, stop.get_token())) == errc::cancelled);
  CHECK(frame == "before");
  REQUIRE(co_await a.write(payload.substr(1000, 1000)));
  REQUIRE(co_await a.shutdown());
  CHECK(error_of(co_await b.read_frame(frame)) == errc::eof);
  CHECK(frame == "before");
  auto rest = co_await read_to_eof(&b);
  REQUIRE(rest);
  CHECK((rest.value() == header + payload.substr(0, 2000)));
}

TEST_CASE("read_frame: eof, a timeout or a cancellation inside a frame loses nothing") {
  over_each(frame_cut_short);
}

task<void> frame_write_limits(loop& lp, const transport& t) {
  auto [a, b] = co_await connected(lp, t);
  const std::string big = pattern(70000, 8);
  CHECK(error_of(co_await a.write_frame(big, {frame_header::u16_be, 1 << 20})) ==
        errc::limit_exceeded);
  CHECK(error_of(co_await a.write_frame(big, {frame_header::u32_be, 69999})) ==
        errc::limit_exceeded);
  CHECK(a.buffered_output() == 0);
  REQUIRE(co_await a.write_frame(big, {frame_header::u32_le, 70000}));
  std::string frame;
  REQUIRE(co_await b.read_frame(frame, {frame_header::u32_le, 70000}));
  CHECK((frame == big));
}

TEST_CASE("write_frame: a payload too large for the header or max is sent not at all") {
  over_each(frame_write_limits);
}

// A frame larger than the socket takes at once: the write waits, and a timeout once the kernel
// took part of it queues the rest (write()'s rule), so the frame arrives whole.
task<void> large_frame_interrupted(loop& lp, const transport& t) {
  auto [a, b] = co_await connected(lp, t);
  const std::string big = pattern(8 << 20, 9);
  auto w = co_await a.write_frame(big, {frame_header::u32_be, 8 << 20}, 20ms);
  REQUIRE_MESSAGE(w, error_of(w));
  std::string frame;
  auto r = co_await b.read_frame(frame, {frame_header::u32_be, 8 << 20}, 10s);
  REQUIRE_MESSAGE(r, error_of(r));
  CHECK((frame == big));
}

TEST_CASE("write_frame: interrupted after the kernel took part, the frame still arrives whole") {
  over_each(large_frame_interrupted);
}

// ---- peek, consume, skip ----------------------------------------------------------------------

task<void> peek_and_consume(loop& lp, const transport& t) {
  auto [a, b] = co_await connected(lp, t);
  REQUIRE(co_await a.write("hello world"));
  auto v = co_await b.peek(5);
  REQUIRE_MESSAGE(v, error_of(v));
  CHECK(as_text(v.value()).substr(0, 5) == "hello");
  b.consume(6);
  auto w = co_await b.peek(5);
  REQUIRE(w);
  CHECK(as_text(w.value()).substr(0, 5) == "world");
  b.consume(5);
  CHECK(b.buffered_input() == 0);
  // peek(0) never waits, whatever is (not) there.
  auto none = co_await b.peek(0);
  REQUIRE(none);
  CHECK(none.value().empty());
  REQUIRE(co_await a.write("abc"));
  REQUIRE(co_await a.shutdown());
  CHECK(error_of(co_await b.peek(4)) == errc::eof);
  auto last = co_await b.peek(3);
  REQUIRE(last);
  CHECK(as_text(last.value()) == "abc");
  b.consume(1000);  // more than there is: all of it
  CHECK(b.buffered_input() == 0);
  CHECK(error_of(co_await b.peek(1)) == errc::eof);
}

TEST_CASE("peek shows buffered bytes without taking them; consume drops them") {
  over_each(peek_and_consume);
}

// The first n bytes are contiguous however they arrived, and past the read limit.
task<void> peek_across_chunks(loop& lp, const transport& t) {
  auto [a, b] = co_await connected(lp, t);
  b.set_read_limit(1024);
  const std::string data = pattern(100000, 11);
  sender snd(lp, a, data, 1000);
  auto v = co_await b.peek(50000, 10s);
  REQUIRE_MESSAGE(v, error_of(v));
  REQUIRE(v.value().size() >= 50000);
  CHECK((as_text(v.value()) == std::string_view(data).substr(0, v.value().size())));
  // Read on from there: every byte once, in order.
  auto all = co_await read_to_eof(&b, 4096);
  REQUIRE(all);
  CHECK((all.value() == data));
  CHECK(co_await snd.finished());
}

TEST_CASE("peek(n) gives n contiguous bytes however they arrived, past the read limit") {
  over_each(peek_across_chunks);
}

// While the caller holds a view, bytes arriving are not read ahead into the buffer it shows
// (ASan would see a view into freed or moved memory); they are there for the next read.
task<void> view_stays_valid(loop& lp, const transport& t) {
  auto [a, b] = co_await connected(lp, t);
  REQUIRE(co_await a.write("hello"));
  auto v = co_await b.peek(5);
  REQUIRE(v);
  const std::string more = pattern(300000, 12);
  sender snd(lp, a, more, 3000);
  // Let the loop run many turns while the bytes arrive.
  for (int i = 0; i < 200; ++i)
    co_await lp.yield();
  CHECK(as_text(v.value()).substr(0, 5) == "hello");
  b.consume(5);
  auto rest = co_await read_to_eof(&b);
  REQUIRE(rest);
  CHECK((rest.value() == more));
  CHECK(co_await snd.finished());
}

TEST_CASE("a peek's view stays valid while more bytes arrive, until consume") {
  over_each(view_stays_valid);
}

task<void> skip_bytes(loop& lp, const transport& t) {
  auto [a, b] = co_await connected(lp, t);
  const std::string body = pattern(1 << 20, 13);
  sender snd(lp, a, "head" + body + "tail", 65536);
  std::string head(4, '\0');
  REQUIRE(co_await b.read_exactly(span_of(head)));
  CHECK(head == "head");
  auto s = co_await b.skip(body.size(), 10s);
  REQUIRE_MESSAGE(s, error_of(s));
  auto tail = co_await read_to_eof(&b);
  REQUIRE(tail);
  CHECK(tail.value() == "tail");
  CHECK(error_of(co_await b.skip(1)) == errc::eof);
  auto zero = co_await b.skip(0);
  CHECK(zero);
  CHECK(co_await snd.finished());
}

TEST_CASE("skip discards exactly n bytes as they arrive") {
  over_each(skip_bytes);
}

task<void> skip_cut_short(loop& lp, const transport& t) {
  auto [a, b] = co_await connected(lp, t);
  REQUIRE(co_await a.write(pattern(50, 1)));
  REQUIRE(co_await a.shutdown());
  CHECK(error_of(co_await b.skip(100)) == errc::eof);
  CHECK(b.buffered_input() == 0);
}

TEST_CASE("skip: the stream ending first is eof") {
  over_each(skip_cut_short);
}

// Each reading op is a read like any other: one at a time, and none after close.
TEST_CASE("framing ops are busy while another read is pending, closed once closed") {
  run_on_loop([](loop& lp) -> task<void> {
    auto [a, b] = co_await connected(lp, transports[0]);
    std::string buf(4, '\0');
    evco::test::signal done;
    result<std::size_t> first = 0;
    lp.spawn(
        [](stream* s, std::string* into, result<std::size_t>* out,
           evco::test::signal* d) -> task<void> {
          *out = co_await s->read_line(*into);
          d->set();
        }(&b, &buf, &first, &done),
        fail_task);
    co_await lp.yield();
    std::string other;
    CHECK(error_of(co_await b.read_frame(other)) == errc::busy);
    CHECK(error_of(co_await b.peek(1)) == errc::busy);
    CHECK(error_of(co_await b.skip(1)) == errc::busy);
    b.close();
    co_await done;
    CHECK(error_of(first) == errc::closed);
    CHECK(error_of(co_await b.read_line(other)) == errc::closed);
    CHECK(error_of(co_await b.write_frame("x")) == errc::closed);
  });
}

// Framed round trips into reused strings, and peeks, allocate nothing once warm (TLS's
// records are OpenSSL's business, so the socket transports and the pair only).
task<void> steady_state_allocations(loop& lp, const transport& t) {
  if (!counting_new_active) co_return;  // ThreadSanitizer: see counting_new.cpp
  auto [a, b] = co_await connected(lp, t);
  const std::string msg = letters(100, 1);
  std::string line, frame;
  line.reserve(200);
  frame.reserve(200);
  const std::string msg_line = msg + "\r\n";
  std::size_t before = 0;
  for (int i = 0; i < 1010; ++i) {
    if (i == 10) before = allocations.load();  // after a warm-up
    REQUIRE(co_await a.write_frame(msg, {frame_header::varint}));
    frame.clear();
    REQUIRE(co_await b.read_frame(frame, {frame_header::varint}));
    REQUIRE(co_await b.write(msg_line));
    line.clear();
    REQUIRE(co_await a.read_line(line));
    REQUIRE(co_await a.write(msg));
    auto v = co_await b.peek(msg.size());
    REQUIRE(v);
    b.consume(msg.size());
  }
  CHECK(allocations.load() - before == 0);
  CHECK(line == msg);
  CHECK(frame == msg);
}

TEST_CASE("steady-state framed reads and writes and peeks allocate nothing") {
  over_each_transport(steady_state_allocations);
}

}  // namespace

TEST_SUITE_END();
