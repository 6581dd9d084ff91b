// stream::write_borrowed: the caller's memory queued by reference, over the transports that
// would copy it (pairs, TLS, TCP with a rate limit) and TCP (where it is write()). The early
// ends each scribble over the buffer and free it as soon as the op is over: under ASan a
// reference libevent kept would be a use after free, and without ASan the peer would read the
// scribbles.

#include <doctest/doctest.h>

#include <cstring>
#include <memory>
#include <optional>

#include "pki.hpp"
#include "support.hpp"
#include "tls_ends.hpp"

using namespace std::chrono_literals;
using evco::errc;
using evco::loop;
using evco::result;
using evco::stream;
using evco::task;
using evco::test::error_of;
using evco::test::pattern;

TEST_SUITE_BEGIN("write_borrowed");

namespace {

struct ends {
  stream a;
  stream b;
};

task<ends> tcp(loop& lp) {
  auto p = co_await evco::test::connected_pair(lp);
  co_return ends{std::move(p.client), std::move(p.server)};
}

// A rate limit this high limits nothing, but takes TCP off its direct path.
task<ends> tcp_buffered(loop& lp) {
  auto e = co_await tcp(lp);
  REQUIRE(e.a.set_rate_limit({.write_rate = std::size_t{1} << 40}));
  co_return e;
}

task<ends> in_process(loop& lp) {
  auto p = evco::make_pair(lp);
  REQUIRE(p);
  co_return ends{std::move(p.value().first), std::move(p.value().second)};
}

task<ends> tls(loop& lp) {
  auto e = co_await evco::test::tls_ends(lp);
  REQUIRE_MESSAGE(e, error_of(e));
  co_return ends{std::move(e.value().first), std::move(e.value().second)};
}

struct transport {
  const char* name;
  task<ends> (*connect)(loop& lp);
};
constexpr transport transports[] = {
    {"pair", in_process}, {"tls", tls}, {"tcp-buffered", tcp_buffered}, {"tcp", tcp}};

using body_fn = task<void> (*)(loop&, const transport&);

void over_each_transport(body_fn body, std::string_view except = {}) {
  for (const transport& t : transports) {
    if (t.name == except) continue;
    SUBCASE(t.name) {
      (void)evco::test::certs();  // made once, before the fds are counted
      const std::size_t fds = evco::test::open_fds();
      {
        loop lp;
        lp.run(body(lp, t));
      }
      CHECK(evco::test::open_fds() == fds);
    }
  }
}

void fail_task(std::exception_ptr) {
  FAIL("a spawned task failed");
}

std::span<char> span_of(std::string& s) {
  return {s.data(), s.size()};
}

// The caller's memory: a heap block of its own, so that ASan sees any use after it is freed.
struct borrowed {
  std::size_t size;
  std::unique_ptr<char[]> bytes;
  explicit borrowed(const std::string& content)
      : size(content.size()), bytes(new char[content.size()]) {
    std::memcpy(bytes.get(), content.data(), size);
  }
  std::string_view view() const { return {bytes.get(), size}; }
  // What the caller may do once the op is over.
  void scribble_and_free() {
    std::memset(bytes.get(), 'X', size);
    bytes.reset();
  }
};

// More than the socket buffers, OpenSSL and a pair's read limit take from a peer that does not
// read: the op waits with most of it still referenced.
constexpr std::size_t big = 16 << 20;

// An eager coroutine that the test destroys by hand, to end a frame while its op waits.
struct raw {
  struct promise_type {
    raw get_return_object() { return {std::coroutine_handle<promise_type>::from_promise(*this)}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_always final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }
  };
  std::coroutine_handle<promise_type> h;
};

raw write_borrowed_raw(stream* s, std::string_view data, std::optional<result<void>>* out) {
  out->emplace(co_await s->write_borrowed(data));
}

}  // namespace

// ---- completing ----------------------------------------------------------------------------

task<void> write_then_mark(stream* s, std::string_view data, std::optional<result<void>>* out,
                           evco::test::signal* done) {
  out->emplace(co_await s->write_borrowed(data));
  done->set();
}

task<void> completes_when_released(loop& lp, const transport& t) {
  auto e = co_await t.connect(lp);
  const std::string content = pattern(big, 11);
  borrowed mem(content);
  std::optional<result<void>> r;
  evco::test::signal done;
  lp.spawn(write_then_mark(&e.a, mem.view(), &r, &done), fail_task);
  if (std::string_view(t.name) == "pair") {
    // Over a pair libevent holds the bytes until the other end has read them.
    for (int i = 0; i < 20; ++i)
      co_await lp.yield();
    CHECK_FALSE(r.has_value());
  }
  std::string got(content.size(), '\0');
  REQUIRE(co_await e.b.read_exactly(span_of(got), 20s));
  co_await done;
  REQUIRE_MESSAGE(*r, error_of(*r));
  mem.scribble_and_free();
  CHECK((got == content));
  // The stream goes on after it. (Not write_borrowed: over a pair it would wait for the read
  // below.)
  REQUIRE(co_await e.a.write("tail"));
  std::string tail(4, '\0');
  REQUIRE(co_await e.b.read_exactly(span_of(tail), 10s));
  CHECK(tail == "tail");
}

TEST_CASE("write_borrowed completes once libevent let go of the bytes, which arrive intact") {
  over_each_transport(completes_when_released);
}

// ---- ending early --------------------------------------------------------------------------

task<void> close_later(stream* s) {
  s->close();
  co_return;
}

task<void> write_and_close(stream* s, std::string_view data) {
  auto w = co_await s->write(data, 30s);
  REQUIRE_MESSAGE(w, error_of(w));
  s->close();  // the rest goes out in the background
}

enum class ending { timeout, stop, close, frame };

// The op ends while its bytes are queued and referenced; they arrive intact all the same.
task<void> ended_early(loop& lp, const transport& t, ending how) {
  auto e = co_await t.connect(lp);
  const std::string content = pattern(big, 12);
  borrowed mem(content);
  std::optional<result<void>> r;
  if (how == ending::timeout) {
    r.emplace(co_await e.a.write_borrowed(mem.view(), 100ms));
  } else if (how == ending::stop) {
    evco::test::stop_probe probe;
    probe.stop_from_loop(lp);
    r.emplace(co_await e.a.write_borrowed(mem.view(), probe.src.get_token()));
    probe.op_resumed = true;
    CHECK_FALSE(probe.resumed_inside_request_stop);
  } else if (how == ending::close) {
    lp.spawn(close_later(&e.a), fail_task);
    r.emplace(co_await e.a.write_borrowed(mem.view(), 20s));
  } else {
    raw w = write_borrowed_raw(&e.a, mem.view(), &r);
    REQUIRE_FALSE(r.has_value());  // waiting
    w.h.destroy();
    r.emplace(evco::success());
  }
  REQUIRE(r);
  CHECK_MESSAGE(*r, error_of(*r));  // once queued, the bytes are sent: a success
  mem.scribble_and_free();
  // The stream goes on (its output drains only once the peer reads: from another task).
  if (how != ending::close) lp.spawn(write_and_close(&e.a, "!"), fail_task);
  std::string got(content.size() + (how != ending::close), '\0');
  REQUIRE(co_await e.b.read_exactly(span_of(got), 30s));
  CHECK((got.substr(0, content.size()) == content));
}

task<void> ended_by_timeout(loop& lp, const transport& t) {
  co_await ended_early(lp, t, ending::timeout);
}
task<void> ended_by_stop(loop& lp, const transport& t) {
  co_await ended_early(lp, t, ending::stop);
}
task<void> ended_by_close(loop& lp, const transport& t) {
  co_await ended_early(lp, t, ending::close);
}
task<void> ended_by_frame(loop& lp, const transport& t) {
  co_await ended_early(lp, t, ending::frame);
}

TEST_CASE("a write_borrowed that times out copies what libevent still refers to") {
  over_each_transport(ended_by_timeout);
}
TEST_CASE("a write_borrowed that is cancelled copies what libevent still refers to") {
  over_each_transport(ended_by_stop);
}
TEST_CASE("close() during a write_borrowed copies what libevent still refers to") {
  over_each_transport(ended_by_close);
}
TEST_CASE("destroying a write_borrowed's frame copies what libevent still refers to") {
  over_each_transport(ended_by_frame);
}

// Still waiting at the watermark, it has queued nothing: it fails, and nothing of it is sent.
task<void> ended_before_queued(loop& lp, const transport& t) {
  auto e = co_await t.connect(lp);
  e.a.set_write_watermarks(0, 1);
  const std::string first = pattern(big, 13);
  // Queued at once, or (TCP) sent in part until the deadline queues the rest.
  REQUIRE(co_await e.a.write(first, 100ms));
  borrowed mem(pattern(1000, 14));
  auto r = co_await e.a.write_borrowed(mem.view(), 100ms);
  REQUIRE_FALSE(r);
  CHECK(r.error() == errc::timed_out);
  mem.scribble_and_free();
  lp.spawn(write_and_close(&e.a, "!"), fail_task);
  std::string got(first.size() + 1, '\0');
  REQUIRE(co_await e.b.read_exactly(span_of(got), 30s));
  CHECK((got == first + "!"));
}

TEST_CASE("a write_borrowed that times out at the watermark fails and sends nothing") {
  over_each_transport(ended_before_queued);
}

// The peer goes away while the bytes are referenced: the op ends with the error, and lets go.
task<void> peer_gone(loop& lp, const transport& t) {
  auto e = co_await t.connect(lp);
  borrowed mem(pattern(big, 15));
  std::optional<result<void>> r;
  evco::test::signal done;
  lp.spawn(write_then_mark(&e.a, mem.view(), &r, &done), fail_task);
  co_await lp.yield();
  e.b = stream();  // closed with unread bytes (TCP: RST)
  co_await done;
  REQUIRE(r);
  // It ended without its deadline: the bytes were taken, or the failure let go of them.
  CHECK((*r || r->error() != errc::timed_out));
  mem.scribble_and_free();
}

// Not over TLS: the closed peer's linger sends close_notify, upon which libevent 2.1.12 stops
// writing as well as reading (bufferevent_openssl.c conn_closed) while reporting only
// BEV_EVENT_EOF | BEV_EVENT_READING: any write waiting there, borrowed or not, waits for its
// deadline.
TEST_CASE("a write_borrowed whose peer goes away ends and lets go of the bytes") {
  over_each_transport(peer_gone, "tls");
}
