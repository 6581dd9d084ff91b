// The stream behaviour every transport shares, written once and run over each of `transports`
// (a loopback TCP connection, a Unix domain socket, an in-process pair): a new transport is one
// more entry there.
// What only one transport does stays in its own suite (TCP's reset, the direct writes that
// copy nothing: stream_test.cpp), or below, at the end (a pair's missing endpoints).

#include "evco/pair.hpp"

#include <doctest/doctest.h>

#include <event2/bufferevent.h>

#include <unistd.h>

#include <array>
#include <atomic>
#include <string_view>
#include <utility>

#include "support.hpp"
#include "transports.hpp"

using namespace std::chrono_literals;
using evco::errc;
using evco::loop;
using evco::result;
using evco::stream;
using evco::success;
using evco::task;
using evco::test::error_of;
using evco::test::pattern;

TEST_SUITE_BEGIN("transport");

// Counted by the operator new in counting_new.cpp, linked into this suite.
extern std::atomic<std::size_t> allocations;
extern const bool counting_new_active;

namespace {

using namespace evco::test;  // the transports and their helpers (transports.hpp)

// ---- end of stream and half-close -----------------------------------------------------------

// The peer's end comes after every byte written before it, however long they had to wait for
// the reader (here, more than its read limit holds), and it stays.
task<void> eof_after_all_bytes(loop& lp, const transport& t) {
  auto [a, b] = co_await connected(lp, t);
  b.set_read_limit(16 << 10);
  const std::string sent = pattern(1 << 20, 1);
  lp.spawn(send_then_shutdown(&a, sent), fail_result);
  auto got = co_await read_to_eof(&b, 4096);
  REQUIRE_MESSAGE(got, error_of(got));
  CHECK(got.value().size() == sent.size());
  CHECK((got.value() == sent));
  std::string buf(4, '\0'), line;
  CHECK(error_of(co_await b.read_some(span_of(buf))) == errc::eof);
  CHECK(error_of(co_await b.read_exactly(span_of(buf))) == errc::eof);
  CHECK(error_of(co_await b.read_until(line, "\n", 100)) == errc::eof);
}

TEST_CASE("the peer's shutdown reads as eof after every byte it wrote, and stays") {
  over_each_transport(eof_after_all_bytes);
}

task<void> half_close(loop& lp, const transport& t) {
  auto [a, b] = co_await connected(lp, t);
  REQUIRE(co_await a.write("question"));
  REQUIRE(co_await a.shutdown());
  auto q = co_await read_to_eof(&b);
  REQUIRE_MESSAGE(q, error_of(q));
  CHECK(q.value() == "question");
  // The other direction is still open: the answer comes after the question's end.
  const std::string answer = pattern(300000, 2);
  lp.spawn(send_then_shutdown(&b, answer), fail_result);
  auto got = co_await read_to_eof(&a);
  REQUIRE_MESSAGE(got, error_of(got));
  CHECK((got.value() == answer));
  CHECK(error_of(co_await a.write("more")) == errc::closed);
  CHECK(error_of(co_await a.shutdown()) == errc::closed);
}

TEST_CASE("after a shutdown the other direction still carries bytes, then its own eof") {
  over_each_transport(half_close);
}

task<void> read_exactly_cut_short(loop& lp, const transport& t) {
  auto [a, b] = co_await connected(lp, t);
  REQUIRE(co_await a.write("12345"));
  REQUIRE(co_await a.shutdown());
  std::string buf(10, '\0');
  CHECK(error_of(co_await b.read_exactly(span_of(buf))) == errc::eof);
  auto rest = co_await read_to_eof(&b);
  REQUIRE_MESSAGE(rest, error_of(rest));
  CHECK(rest.value() == "12345");
}

TEST_CASE("read_exactly cut short by eof reports eof and the bytes stay readable") {
  over_each_transport(read_exactly_cut_short);
}

// ---- close ----------------------------------------------------------------------------------

task<void> read_once(stream* s, result<std::size_t>* out, evco::test::signal* done) {
  std::string buf(16, '\0');
  *out = co_await s->read_some(span_of(buf));
  done->set();
}

task<void> close_while_reading(loop& lp, const transport& t) {
  auto [a, b] = co_await connected(lp, t);
  result<std::size_t> got = 0u;
  evco::test::signal done;
  lp.spawn(read_once(&b, &got, &done), fail_task);
  co_await lp.yield();  // the reader starts and parks
  REQUIRE_FALSE(done.is_set);
  b.close();
  CHECK_FALSE(done.is_set);  // resumed from the loop, not inside close()
  co_await done;
  CHECK(error_of(got) == errc::closed);
  std::string buf(4, '\0');
  CHECK(error_of(co_await a.read_some(span_of(buf), 10s)) == errc::eof);
}

TEST_CASE("close() resumes a parked read with closed, from the loop, and the peer reads eof") {
  over_each_transport(close_while_reading);
}

// Closed with output still queued (the peer's read limit held it back) and input it never
// read: the peer still gets every queued byte, then eof.
task<void> peer_closes_with_bytes_queued(loop& lp, const transport& t) {
  auto [a, b] = co_await connected(lp, t);
  REQUIRE(co_await b.write("never read"));
  b.set_read_limit(16 << 10);
  a.set_write_watermarks(1 << 20, 8 << 20);
  const std::string sent = pattern(4 << 20, 3);
  // The deadline ends a write that had to wait: what it could not hand on yet is queued.
  REQUIRE(co_await a.write(sent, 50ms));
  a.close();
  auto got = co_await read_to_eof(&b);
  REQUIRE_MESSAGE(got, error_of(got));
  CHECK(got.value().size() == sent.size());
  CHECK((got.value() == sent));
}

TEST_CASE("a peer closed with output queued and input unread gives every byte, then eof") {
  over_each_transport(peer_closes_with_bytes_queued);
}

task<void> write_to_closed_peer(loop& lp, const transport& t) {
  auto [a, b] = co_await connected(lp, t);
  a.close();
  const std::string chunk(65536, 'z');
  std::error_code ec;
  for (int i = 0; i < 1000 && !ec; ++i) {
    if (auto w = co_await b.write(chunk); !w) {
      ec = w.error();
    } else if (auto d = co_await b.drain(10s); !d) {
      ec = d.error();
    }
  }
  CAPTURE(ec);
  CHECK((ec == std::errc::broken_pipe || ec == std::errc::connection_reset));
}

TEST_CASE("writing to a closed peer fails with EPIPE or ECONNRESET, as a value") {
  over_each_transport(write_to_closed_peer);
}

// ---- time limits ----------------------------------------------------------------------------

task<void> per_op_timeout(loop& lp, const transport& t) {
  auto [a, b] = co_await connected(lp, t);
  std::string buf(16, '\0');
  auto start = evco::clock::now();
  auto r = co_await b.read_some(span_of(buf), 50ms);
  CHECK(evco::clock::now() - start >= 50ms);
  CHECK(error_of(r) == std::errc::timed_out);
  // A read_exactly that times out keeps what it had taken for the next read.
  REQUIRE(co_await a.write("ab"));
  std::string four(4, '\0');
  start = evco::clock::now();
  CHECK(error_of(co_await b.read_exactly(span_of(four), 50ms)) == errc::timed_out);
  CHECK(evco::clock::now() - start >= 50ms);
  REQUIRE(co_await a.write("cd"));
  REQUIRE(co_await b.read_exactly(span_of(four), 10s));
  CHECK(four == "abcd");
}

TEST_CASE("a per-op timeout never fires early, and the stream reads on afterwards") {
  over_each_transport(per_op_timeout);
}

task<void> idle_timeout(loop& lp, const transport& t) {
  auto [a, b] = co_await connected(lp, t);
  b.set_timeouts(50ms, 0ms);
  std::string buf(16, '\0');
  const auto start = evco::clock::now();
  auto r = co_await b.read_some(span_of(buf));
  CHECK(evco::clock::now() - start >= 50ms);
  CHECK(error_of(r) == errc::timed_out);
  REQUIRE(co_await a.write("late"));
  b.set_timeouts(0ms, 0ms);
  auto n = co_await b.read_some(span_of(buf), 10s);
  REQUIRE_MESSAGE(n, error_of(n));
  CHECK(buf.substr(0, n.value()) == "late");
}

TEST_CASE("the idle read timeout never fires early, and the stream reads on afterwards") {
  over_each_transport(idle_timeout);
}

// ---- cancellation ---------------------------------------------------------------------------

task<void> cancel_read(loop& lp, const transport& t) {
  auto [a, b] = co_await connected(lp, t);
  evco::test::stop_probe probe;
  probe.stop_from_loop(lp);
  std::string buf(8, '\0');
  auto r = co_await b.read_some(span_of(buf), probe.src.get_token());
  probe.op_resumed = true;
  CHECK(error_of(r) == std::errc::operation_canceled);
  CHECK_FALSE(probe.resumed_inside_request_stop);
  // What arrives after the cancel is the next read's; a cancelled read_exactly gives back
  // what it had taken.
  REQUIRE(co_await a.write("aft"));
  evco::test::stop_probe second;
  second.stop_from_loop(lp);
  CHECK(error_of(co_await b.read_exactly(span_of(buf), second.src.get_token())) == errc::cancelled);
  REQUIRE(co_await a.write("er"));
  std::string five(5, '\0');
  REQUIRE(co_await b.read_exactly(span_of(five), 10s));
  CHECK(five == "after");
}

TEST_CASE("a stop request cancels a parked read from the loop, and no byte is lost") {
  over_each_transport(cancel_read);
}

task<void> send_then_stop(stream* s, std::stop_source* src, std::string msg) {
  REQUIRE(co_await s->write(msg));
  REQUIRE(co_await s->drain());
  src->request_stop();
}

// Data and cancellation land in the same loop turn: one outcome, and no byte lost.
task<void> cancel_races_data(loop& lp, const transport& t) {
  auto [a, b] = co_await connected(lp, t);
  std::string got;
  for (int i = 0; i < 100; ++i) {
    std::stop_source src;
    std::string msg = "m";
    msg += std::to_string(i);
    msg += ';';
    lp.spawn(send_then_stop(&a, &src, msg), fail_task);
    auto r = co_await b.read_until(got, ";", 64, src.get_token());
    if (!r) {
      REQUIRE(r.error() == errc::cancelled);
      REQUIRE(co_await b.read_until(got, ";", 64, 10s));
    }
    CHECK(got.ends_with(msg));
  }
}

TEST_CASE("cancellation racing with arriving data gives one outcome and loses no byte") {
  over_each_transport(cancel_races_data);
}

// ---- framing limits -------------------------------------------------------------------------

task<void> read_until_limit(loop& lp, const transport& t) {
  auto [a, b] = co_await connected(lp, t);
  std::string clean = pattern(5000, 7);
  for (auto& c : clean)
    c = c == '\n' ? 'n' : c;
  REQUIRE(co_await a.write(clean));
  std::string line;
  CHECK(error_of(co_await b.read_until(line, "\n", 1000)) == errc::limit_exceeded);
  CHECK(line.empty());
  std::string all(clean.size(), '\0');
  REQUIRE(co_await b.read_exactly(span_of(all), 10s));
  CHECK(all == clean);
}

TEST_CASE("read_until past max without the delimiter reports limit_exceeded and keeps the bytes") {
  over_each_transport(read_until_limit);
}

task<void> read_until_above_read_limit(loop& lp, const transport& t) {
  auto [a, b] = co_await connected(lp, t);
  b.set_read_limit(1024);  // the line is longer than the input buffer's limit
  std::string line_in(200000, 'a');
  line_in += '\n';
  lp.spawn(write_all(&a, line_in, 65536), fail_result);
  std::string line;
  auto r = co_await b.read_until(line, "\n", 300000, 10s);
  REQUIRE_MESSAGE(r, error_of(r));
  CHECK(line == line_in);
}

TEST_CASE("read_until may need more than the read limit when its max allows it") {
  over_each_transport(read_until_above_read_limit);
}

// Found by fuzz/stream_sequence: a read limit set while a read_until waits keeps to the op's own
// max as well, or the frame could never come in (a hang: the writer waits on a full buffer too).
task<result<void>> lower_limit_then_write(stream* reader, stream* writer, std::string data) {
  reader->set_read_limit(1024);  // spawned: runs once the read_until below has parked
  co_return co_await write_all(writer, std::move(data), 65536);
}

task<void> read_limit_lowered_under_read_until(loop& lp, const transport& t) {
  auto [a, b] = co_await connected(lp, t);
  std::string line_in(200000, 'a');
  line_in += '\n';
  lp.spawn(lower_limit_then_write(&b, &a, line_in), fail_result);
  std::string line;
  auto r = co_await b.read_until(line, "\n", 300000, 5s);
  REQUIRE_MESSAGE(r, error_of(r));
  CHECK(line == line_in);
}

TEST_CASE("a read limit set while read_until waits still lets its frame in") {
  over_each_transport(read_limit_lowered_under_read_until);
}

// ---- backpressure and bulk --------------------------------------------------------------------

task<void> read_n(stream* s, std::string* out, std::size_t n, evco::test::signal* done) {
  out->resize(n);
  REQUIRE(co_await s->read_exactly(span_of(*out)));
  done->set();
}

// A writer whose peer reads nothing waits once the peer's read limit and its own high watermark
// are reached (TCP: and the kernel's buffers), costing no CPU meanwhile; it goes on where it
// stopped once the peer reads.
task<void> backpressure(loop& lp, const transport& t) {
  auto [a, b] = co_await connected(lp, t);
  constexpr std::size_t low = 64 << 10, high = 256 << 10, chunk = 64 << 10, limit = 64 << 10;
  a.set_write_watermarks(low, high);
  b.set_read_limit(limit);
  const std::string data = pattern(32 << 20, 9);
  std::size_t sent = 0, max_buffered = 0;
  bool waited = false;
  while (sent < data.size() && !waited) {
    auto w = co_await a.write(std::string_view(data).substr(sent, chunk), 50ms);
    max_buffered = std::max(max_buffered, a.buffered_output());
    if (w) {
      sent += chunk;
    } else {
      REQUIRE(w.error() == errc::timed_out);
      waited = true;
    }
  }
  REQUIRE(waited);
  CHECK(max_buffered <= high + chunk);
  CHECK(b.buffered_input() <= limit + (64 << 10));  // TCP reads ahead in 64 KiB chunks
  // Stalled, the write idle timeout fires (never early), and the wait costs no CPU.
  a.set_timeouts(0ms, 50ms);
  const auto start = evco::clock::now();
  const auto cpu = evco::test::thread_cpu();
  CHECK(error_of(co_await a.write(std::string_view(data).substr(sent, chunk))) == errc::timed_out);
  const auto waited_for = evco::clock::now() - start;
  CHECK(waited_for >= 50ms);
  CHECK(evco::test::thread_cpu() - cpu < waited_for / 10);
  a.set_timeouts(0ms, 0ms);

  std::string received;
  evco::test::signal done;
  lp.spawn(read_n(&b, &received, data.size(), &done), fail_task);
  while (sent < data.size()) {
    REQUIRE(co_await a.write(std::string_view(data).substr(sent, chunk)));
    max_buffered = std::max(max_buffered, a.buffered_output());
    sent += chunk;
  }
  REQUIRE(co_await a.drain());
  CHECK(max_buffered <= high + chunk);
  co_await done;
  CHECK((received == data));
}

TEST_CASE("a writer to a peer that does not read waits, bounded, and resumes when it reads") {
  over_each_transport(backpressure);
}

// The bytes of a long transfer without holding it: block i of 64 KiB is pattern(block, seed + i).
constexpr std::size_t block_size = 64 << 10;

task<result<void>> send_blocks(stream* s, unsigned seed, std::size_t blocks) {
  for (std::size_t i = 0; i < blocks; ++i) {
    const std::string b = pattern(block_size, seed + static_cast<unsigned>(i));
    EVCO_TRYV(co_await s->write(b));
  }
  co_return co_await s->shutdown();
}

struct received_blocks {
  explicit received_blocks(unsigned s) : seed(s) {}
  unsigned seed;
  std::size_t bytes = 0;
  std::size_t mismatched = 0;  // bytes that differ from what was sent
  std::string expected;        // the block being received
  void check(std::string_view got) {
    while (!got.empty()) {
      const std::size_t at = bytes % block_size;
      if (at == 0) expected = pattern(block_size, seed + static_cast<unsigned>(bytes / block_size));
      const std::size_t n = std::min(got.size(), block_size - at);
      if (got.substr(0, n) != std::string_view(expected).substr(at, n)) mismatched += n;
      bytes += n;
      got.remove_prefix(n);
    }
  }
};

task<result<void>> receive_blocks(stream* s, received_blocks* r) {
  std::string buf(64 << 10, '\0');
  for (;;) {
    auto n = co_await s->read_some(span_of(buf), 10s);  // the deadline only guards a hang
    if (!n) {
      if (n.error() == errc::eof) co_return success();
      co_return n.error();
    }
    r->check({buf.data(), n.value()});
  }
}

task<void> receive_into(stream* s, received_blocks* r, result<void>* out,
                        evco::test::signal* done) {
  *out = co_await receive_blocks(s, r);
  done->set();
}

task<void> bulk_both_ways(loop& lp, const transport& t) {
  auto [a, b] = co_await connected(lp, t);
  constexpr std::size_t blocks = (64 << 20) / block_size;
  lp.spawn(send_blocks(&a, 1000, blocks), fail_result);
  lp.spawn(send_blocks(&b, 5000, blocks), fail_result);
  received_blocks at_a(5000), at_b(1000);
  result<void> a_done = errc::busy;
  evco::test::signal a_finished;
  lp.spawn(receive_into(&a, &at_a, &a_done, &a_finished), fail_task);
  auto b_done = co_await receive_blocks(&b, &at_b);
  co_await a_finished;
  REQUIRE_MESSAGE(b_done, error_of(b_done));
  REQUIRE_MESSAGE(a_done, error_of(a_done));
  CHECK(at_b.bytes == blocks * block_size);
  CHECK(at_a.bytes == blocks * block_size);
  CHECK(at_b.mismatched == 0);
  CHECK(at_a.mismatched == 0);
}

TEST_CASE("64 MiB each way arrive intact") {
  over_each_transport(bulk_both_ways);
}

// ---- fairness -------------------------------------------------------------------------------

task<void> count_until(stream* s, std::size_t total, std::size_t* got, evco::test::signal* done) {
  std::string buf(64 << 10, '\0');
  while (*got < total) {
    auto n = co_await s->read_some(span_of(buf));
    REQUIRE_MESSAGE(n, error_of(n));
    *got += n.value();
  }
  done->set();
}

// Every write completes at once, yet the reader on the same loop reads before the writer is
// through: the fairness budget lets the loop poll in between. (Spawned from a coroutine the
// loop resumed, the reader starts only once the loop has polled.)
task<void> busy_writer_lets_receiver_run(loop& lp, const transport& t) {
  auto [a, b] = co_await connected(lp, t);
  constexpr std::size_t chunk = 64 << 10, total = 1 << 20;
  const std::string data = pattern(chunk, 14);
  std::size_t got = 0;
  evco::test::signal done;
  co_await lp.yield();
  lp.spawn(count_until(&b, total, &got, &done), fail_task);
  for (std::size_t sent = 0; sent < total; sent += chunk)
    REQUIRE(co_await a.write(data));
  const std::size_t received_meanwhile = got;
  co_await done;
  CHECK(received_meanwhile > 0);
  CHECK(got == total);
}

TEST_CASE("a writer whose writes never wait still lets its receiver run") {
  over_each_transport(busy_writer_lets_receiver_run);
}

// ---- the loop destroyed while ops wait --------------------------------------------------------

struct parked_counts {
  int started = 0;
  int resumed = 0;  // must stay 0: destroying the loop destroys parked frames, never resumes them
};

task<void> read_forever(stream* s, parked_counts* c) {
  std::string buf(16, '\0');
  ++c->started;
  (void)co_await s->read_some(span_of(buf));
  ++c->resumed;
}

// The peer reads nothing: the writes fill what there is to fill, then one waits.
task<void> write_forever(stream* s, parked_counts* c) {
  const std::string chunk = pattern(256 << 10, 11);
  ++c->started;
  while (co_await s->write(chunk)) {
  }
  ++c->resumed;
}

task<void> own_streams(loop& lp, const transport* t, parked_counts* c) {
  auto [a, b] = co_await connected(lp, *t);
  a.set_read_limit(64 << 10);
  REQUIRE(co_await b.write("unread"));
  lp.spawn(read_forever(&b, c), fail_task);
  lp.spawn(write_forever(&b, c), fail_task);
  ++c->started;
  (void)co_await evco::sleep_for(lp, 1h);
  ++c->resumed;
}

task<void> park_then_end(loop& lp, const transport& t) {
  static parked_counts counts;  // read after the loop is gone
  counts = {};
  lp.spawn(own_streams(lp, &t, &counts), fail_task);
  for (int i = 0; i < 1000 && counts.started < 3; ++i)
    co_await lp.yield();
  REQUIRE(counts.started == 3);
  for (int i = 0; i < 10; ++i)  // the writer fills the buffers and parks
    co_await lp.yield();
  CHECK(counts.resumed == 0);
}

TEST_CASE("destroying the loop with reads and writes parked frees everything") {
  // LeakSanitizer (the ASan build) checks that every stream, frame and bufferevent is freed.
  over_each_transport(park_then_end);
}

// ---- steady state allocates nothing ----------------------------------------------------------

task<void> steady_state_allocations(loop& lp, const transport& t) {
  if (!counting_new_active) co_return;  // ThreadSanitizer: see counting_new.cpp
  auto [a, b] = co_await connected(lp, t);
  std::string msg(64, 'p'), buf(64, '\0');
  for (int i = 0; i < 10; ++i) {  // warm up
    REQUIRE(co_await a.write(msg));
    REQUIRE(co_await b.read_exactly(span_of(buf)));
  }
  const std::size_t before = allocations.load();
  for (int i = 0; i < 1000; ++i) {
    REQUIRE(co_await a.write(msg));
    REQUIRE(co_await b.read_some(span_of(buf)));
    REQUIRE(co_await b.write(msg));
    REQUIRE(co_await a.read_exactly(span_of(buf)));
  }
  CHECK(allocations.load() - before == 0);
}

TEST_CASE("steady-state reads and writes allocate nothing") {
  over_each_transport(steady_state_allocations);
}

// ---- what only a pair does ------------------------------------------------------------------

TEST_CASE("a pair has no endpoints, and no TLS") {
  loop lp;
  auto p = evco::make_pair(lp);
  REQUIRE(p);
  auto& [a, b] = p.value();
  CHECK(error_of(a.local_endpoint()) == std::errc::not_a_socket);
  CHECK(error_of(b.remote_endpoint()) == std::errc::not_a_socket);
  auto ctx = evco::tls_context::client();
  REQUIRE_MESSAGE(ctx, error_of(ctx));
  struct probe {
    static task<void> run(stream* a, stream* b, const evco::tls_context* ctx) {
      auto tls = co_await evco::tls_client(std::move(*a), *ctx, "example.com");
      CHECK(error_of(tls) == std::errc::not_a_socket);
      std::string buf(4, '\0');  // the stream TLS refused was closed as a pair closes
      CHECK(error_of(co_await b->read_some(span_of(buf), 10s)) == errc::eof);
    }
  };
  lp.run(probe::run(&a, &b, &ctx.value()));
}

// Each write queues the peer's read callback and the writer's own write callback, to run from
// the loop; closing the ends before they run must leave them nothing freed to reach (ASan).
task<void> close_with_callbacks_queued(loop& lp) {
  for (int order = 0; order < 2; ++order) {
    auto p = evco::make_pair(lp);
    REQUIRE(p);
    auto& [a, b] = p.value();
    REQUIRE(co_await a.write("to b"));
    REQUIRE(co_await b.write("to a"));
    (order == 0 ? a : b).close();  // the other end's callbacks are queued now, and this one's
    (order == 0 ? b : a).close();
    for (int i = 0; i < 3; ++i)
      co_await lp.yield();
  }
}

TEST_CASE("closing a pair's ends with their callbacks still queued reaches no freed memory") {
  evco::test::run_on_loop(close_with_callbacks_queued);
}

// Found by fuzz/stream_sequence: a closed end hands its peer everything it still had queued,
// however little room the peer's read limit has left. (libevent's flush moves only what fits
// under the limit while the peer's input is below it; the rest went with the closed end.)
task<void> close_with_more_queued_than_the_peer_has_room_for(loop& lp) {
  auto p = evco::make_pair(lp);
  REQUIRE(p);
  auto& [a, b] = p.value();
  b.set_read_limit(300);
  const std::string sent = pattern(64 << 10, 9);
  REQUIRE(co_await a.write(sent));  // queued: b's input takes 300 bytes of it
  co_await lp.yield();              // b, with no reader, stops reading at its limit
  std::string first(16, '\0');
  REQUIRE(co_await b.read_exactly(span_of(first)));  // b's input is below its limit again
  a.close();
  auto rest = co_await read_to_eof(&b);
  REQUIRE_MESSAGE(rest, error_of(rest));
  CHECK(rest.value().size() == sent.size() - first.size());
  CHECK((first + rest.value() == sent));
}

TEST_CASE("a closed pair end hands its peer all it queued, whatever room the peer's input has") {
  evco::test::run_on_loop(close_with_more_queued_than_the_peer_has_room_for);
}

// A bufferevent_pair the user made keeps to the pair's rules: a closed end gives its peer eof.
task<void> user_pair(loop& lp) {
  bufferevent* raw[2];
  REQUIRE(bufferevent_pair_new(lp.native_handle(), 0, raw) == 0);
  stream a = stream::from_bufferevent(lp, raw[0]);
  stream b = stream::from_bufferevent(lp, raw[1]);
  REQUIRE(co_await a.write("bye"));
  a.close();
  auto got = co_await read_to_eof(&b);
  REQUIRE_MESSAGE(got, error_of(got));
  CHECK(got.value() == "bye");
}

TEST_CASE("a stream made from a user's bufferevent_pair closes as a pair does") {
  evco::test::run_on_loop(user_pair);
}

}  // namespace

TEST_SUITE_END();
