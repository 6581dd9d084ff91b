// stream::set_rate_limit and rate_group: libevent's token buckets, honoured by every transport
// that has them (TCP, whose direct reads and writes step aside while limited, and TLS), over
// real loopback connections. Rates are only ever checked from above ("never faster than
// rate·t + burst": a limit is a contract), never as speeds.

#include "evco/rate_group.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <optional>

#include "pki.hpp"
#include "support.hpp"
#include "tls_ends.hpp"

using namespace std::chrono_literals;
using evco::errc;
using evco::loop;
using evco::rate_group;
using evco::rate_limit;
using evco::result;
using evco::stream;
using evco::task;
using evco::test::error_of;
using evco::test::pattern;

TEST_SUITE_BEGIN("rate_limit");

namespace {

struct ends {
  stream a;
  stream b;
};

task<ends> tcp(loop& lp) {
  auto p = co_await evco::test::connected_pair(lp);
  co_return ends{std::move(p.client), std::move(p.server)};
}

task<ends> tls(loop& lp, rate_limit client_limit = {}) {
  auto e = co_await evco::test::tls_ends(
      lp, [&](stream& tcp) { REQUIRE(tcp.set_rate_limit(client_limit)); });
  REQUIRE_MESSAGE(e, error_of(e));
  co_return ends{std::move(e.value().first), std::move(e.value().second)};
}

struct transport {
  const char* name;
  task<ends> (*connect)(loop& lp);
  // How far a direction may run ahead of its bucket (see rate_limit): under TLS a record, or a
  // chain of the output buffer.
  std::size_t ahead;
};
task<ends> tls_plain(loop& lp) {
  co_return co_await tls(lp);
}
constexpr std::size_t tls_ahead = 24 << 10;
constexpr transport transports[] = {{"tcp", tcp, 0}, {"tls", tls_plain, tls_ahead}};

using body_fn = task<void> (*)(loop&, const transport&);

void over_each_transport(body_fn body) {
  for (const transport& t : transports) {
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

std::span<char> span_of(std::string& s) {
  return {s.data(), s.size()};
}

// The most a limit lets through in `elapsed`: its burst (at least three 10 ms ticks of the rate,
// see rate_limit) and the rate over the time.
double allowance(std::size_t rate, std::size_t burst, evco::duration elapsed, std::size_t ahead) {
  const double tick = static_cast<double>(rate) / 100;
  return std::max(static_cast<double>(burst), 3 * tick) + static_cast<double>(ahead) +
         static_cast<double>(rate) * std::chrono::duration<double>(elapsed).count();
}

// Reads from `s` until eof, checking after every read that no more has arrived since `start`
// than `rate` and `burst` allow; everything read.
task<std::string> read_within(stream* s, std::size_t rate, std::size_t burst,
                              evco::clock::time_point start, std::size_t ahead) {
  std::string all, buf(64 << 10, '\0');
  for (;;) {
    auto r = co_await s->read_some(span_of(buf), 20s);  // the deadline only guards a hang
    if (!r) {
      REQUIRE(r.error() == errc::eof);
      co_return all;
    }
    all.append(buf.data(), r.value());
    const auto elapsed = evco::clock::now() - start;
    REQUIRE_MESSAGE(static_cast<double>(all.size()) <= allowance(rate, burst, elapsed, ahead),
                    all.size() << " bytes after " << elapsed.count() << " ns");
  }
}

task<void> write_all(stream* s, const std::string* data, std::size_t chunk) {
  for (std::size_t at = 0; at < data->size(); at += chunk) {
    auto w = co_await s->write(std::string_view(*data).substr(at, chunk));
    REQUIRE_MESSAGE(w, error_of(w));
  }
  auto sh = co_await s->shutdown();
  REQUIRE_MESSAGE(sh, error_of(sh));
}

void fail_task(std::exception_ptr) {
  FAIL("a spawned task failed");
}

constexpr std::size_t rate = 2'000'000;  // bytes per second
constexpr std::size_t burst = 64 << 10;

}  // namespace

// ---- the limit holds -----------------------------------------------------------------------

task<void> write_limit_holds(loop& lp, const transport& t) {
  auto e = co_await t.connect(lp);
  const auto start = evco::clock::now();
  REQUIRE(e.a.set_rate_limit({.write_rate = rate, .write_burst = burst}));
  const std::string sent = pattern(512 << 10, 3);
  lp.spawn(write_all(&e.a, &sent, 64 << 10), fail_task);
  const std::string got = co_await read_within(&e.b, rate, burst, start, t.ahead);
  CHECK((got == sent));
}

TEST_CASE("a write rate limit is never exceeded, and every byte arrives in order") {
  over_each_transport(write_limit_holds);
}

task<void> read_limit_holds(loop& lp, const transport& t) {
  auto e = co_await t.connect(lp);
  const auto start = evco::clock::now();
  REQUIRE(e.b.set_rate_limit({.read_rate = rate, .read_burst = burst}));
  const std::string sent = pattern(512 << 10, 4);
  lp.spawn(write_all(&e.a, &sent, 64 << 10), fail_task);
  const std::string got = co_await read_within(&e.b, rate, burst, start, t.ahead);
  CHECK((got == sent));
}

TEST_CASE("a read rate limit is never exceeded, and every byte arrives in order") {
  over_each_transport(read_limit_holds);
}

// The limit set on the TCP stream carries over to the TLS stream made of it.
task<void> tls_keeps_limit(loop& lp) {
  const auto start = evco::clock::now();
  auto e = co_await tls(lp, {.write_rate = rate, .write_burst = burst});
  const std::string sent = pattern(256 << 10, 5);
  lp.spawn(write_all(&e.a, &sent, 64 << 10), fail_task);
  const std::string got = co_await read_within(&e.b, rate, burst, start, tls_ahead);
  CHECK((got == sent));
}

TEST_CASE("a TLS stream keeps the rate limit of the TCP stream it was made of") {
  evco::test::run_on_loop(tls_keeps_limit);
}

// ---- waiting for tokens ----------------------------------------------------------------------

// 1000 bytes/s: a 4 KiB write queued behind the watermark waits seconds for its tokens.
task<ends> throttled(loop& lp, const transport& t, std::string* queued) {
  auto e = co_await t.connect(lp);
  REQUIRE(e.a.set_rate_limit({.write_rate = 1000}));
  e.a.set_write_watermarks(0, 1);
  *queued = pattern(4096, 5);
  REQUIRE(co_await e.a.write(*queued));  // accepted: the output was empty
  co_return e;
}

task<void> timeout_while_throttled(loop& lp, const transport& t) {
  std::string queued;
  auto e = co_await throttled(lp, t, &queued);
  const auto start = evco::clock::now();
  const auto cpu = evco::test::thread_cpu();
  auto w = co_await e.a.write("more", 300ms);
  const auto waited = evco::clock::now() - start;
  REQUIRE_FALSE(w);
  CHECK(w.error() == errc::timed_out);
  CHECK(waited >= 300ms);
  // No busy loop while the bucket is empty: libevent suspends the direction until its refill.
  CHECK(evco::test::thread_cpu() - cpu < waited / 10);
  // The stream is still usable: lifting the limit lets the rest through.
  REQUIRE(e.a.set_rate_limit({}));
  REQUIRE(co_await e.a.write("tail"));
  REQUIRE(co_await e.a.shutdown(10s));
  std::string got(queued.size() + 4, '\0');
  REQUIRE(co_await e.b.read_exactly(span_of(got), 10s));
  CHECK((got == queued + "tail"));
}

TEST_CASE("a write waiting for tokens times out, costs no CPU meanwhile, and the stream goes on") {
  over_each_transport(timeout_while_throttled);
}

task<void> cancel_while_throttled(loop& lp, const transport& t) {
  std::string queued;
  auto e = co_await throttled(lp, t, &queued);
  evco::test::stop_probe probe;
  probe.stop_from_loop(lp);
  auto w = co_await e.a.write("more", probe.src.get_token());
  probe.op_resumed = true;
  REQUIRE_FALSE(w);
  CHECK(w.error() == errc::cancelled);
  CHECK_FALSE(probe.resumed_inside_request_stop);
}

TEST_CASE("a write waiting for tokens is cancelled by its stop token") {
  over_each_transport(cancel_while_throttled);
}

task<void> close_later(stream* s) {
  s->close();
  co_return;
}

task<void> close_while_throttled(loop& lp, const transport& t) {
  std::string queued;
  auto e = co_await throttled(lp, t, &queued);
  lp.spawn(close_later(&e.a), fail_task);
  auto w = co_await e.a.write("more", 20s);
  REQUIRE_FALSE(w);
  CHECK(w.error() == errc::closed);
  // A reader waiting for read tokens is closed the same way.
  REQUIRE(e.b.set_rate_limit({.read_rate = 1000}));
  std::string buf(8192, '\0');
  lp.spawn(close_later(&e.b), fail_task);
  auto r = co_await e.b.read_exactly(span_of(buf), 20s);
  REQUIRE_FALSE(r);
  CHECK(r.error() == errc::closed);
}

TEST_CASE("closing a stream ends the ops waiting for its tokens with errc::closed") {
  over_each_transport(close_while_throttled);
}

task<void> read_timeout_keeps_bytes(loop& lp, const transport& t) {
  auto e = co_await t.connect(lp);
  REQUIRE(e.b.set_rate_limit({.read_rate = 1000}));
  const std::string sent = pattern(8192, 6);
  REQUIRE(co_await e.a.write(sent));
  std::string got(sent.size(), '\0');
  auto r = co_await e.b.read_exactly(span_of(got), 200ms);
  REQUIRE_FALSE(r);
  CHECK(r.error() == errc::timed_out);
  REQUIRE(e.b.set_rate_limit({}));
  REQUIRE(co_await e.b.read_exactly(span_of(got), 10s));
  CHECK((got == sent));
}

TEST_CASE("a read waiting for tokens times out and loses nothing") {
  over_each_transport(read_timeout_keeps_bytes);
}

// ---- set and removed mid-stream ----------------------------------------------------------------

task<void> toggling_writer(stream* s, const std::string* data) {
  constexpr std::size_t chunk = 16 << 10;
  for (std::size_t at = 0, n = 0; at < data->size(); at += chunk, ++n) {
    if (n % 4 == 0) {
      const bool on = n % 8 == 0;
      REQUIRE(s->set_rate_limit(on ? rate_limit{.write_rate = 4'000'000} : rate_limit{}));
    }
    auto w = co_await s->write(std::string_view(*data).substr(at, chunk));
    REQUIRE_MESSAGE(w, error_of(w));
  }
  REQUIRE(co_await s->shutdown(10s));
}

task<void> toggled_mid_stream(loop& lp, const transport& t) {
  auto e = co_await t.connect(lp);
  const std::string sent = pattern(1 << 20, 7);
  lp.spawn(toggling_writer(&e.a, &sent), fail_task);
  std::string got, buf(5000, '\0');
  for (int n = 0;; ++n) {
    if (n % 16 == 0) {
      const bool on = n % 32 == 0;
      REQUIRE(e.b.set_rate_limit(on ? rate_limit{.read_rate = 4'000'000} : rate_limit{}));
    }
    auto r = co_await e.b.read_some(span_of(buf), 20s);
    if (!r) {
      REQUIRE(r.error() == errc::eof);
      break;
    }
    got.append(buf.data(), r.value());
  }
  CHECK(got.size() == sent.size());
  CHECK((got == sent));
}

TEST_CASE("setting and removing limits mid-stream loses, duplicates and reorders nothing") {
  over_each_transport(toggled_mid_stream);
}

// ---- groups ------------------------------------------------------------------------------------

task<void> group_shares(loop& lp, const transport& t) {
  auto x = co_await t.connect(lp);
  auto y = co_await t.connect(lp);
  rate_group g(lp, {.write_rate = rate, .write_burst = burst});
  const auto start = evco::clock::now();
  REQUIRE(g.add(x.a));
  REQUIRE(g.add(y.a));
  REQUIRE(g.add(y.a));  // already in: nothing changes
  CHECK(g.size() == 2);
  const std::string one = pattern(256 << 10, 8), two = pattern(256 << 10, 9);
  lp.spawn(write_all(&x.a, &one, 32 << 10), fail_task);
  lp.spawn(write_all(&y.a, &two, 32 << 10), fail_task);
  // The two together stay within the one budget.
  std::string got[2], buf(32 << 10, '\0');
  bool ended[2] = {false, false};
  stream* readers[2] = {&x.b, &y.b};
  while (!ended[0] || !ended[1]) {
    for (int i = 0; i < 2; ++i) {
      if (ended[i]) continue;
      auto r = co_await readers[i]->read_some(span_of(buf), 20s);
      if (!r) {
        REQUIRE(r.error() == errc::eof);
        ended[i] = true;
        continue;
      }
      got[i].append(buf.data(), r.value());
      const double total = static_cast<double>(got[0].size() + got[1].size());
      REQUIRE(total <= allowance(rate, burst, evco::clock::now() - start, t.ahead));
    }
  }
  CHECK((got[0] == one));
  CHECK((got[1] == two));
  g.remove(x.a);
  CHECK(g.size() == 1);
}

TEST_CASE("a rate_group's streams share one budget") {
  over_each_transport(group_shares);
}

task<void> group_goes_first(loop& lp, const transport& t) {
  auto e = co_await t.connect(lp);
  std::optional<rate_group> g(std::in_place, lp, rate_limit{.write_rate = 1000});
  REQUIRE(g->add(e.a));
  e.a.set_write_watermarks(0, 1);
  const std::string sent = pattern(64 << 10, 10);
  REQUIRE(co_await e.a.write(sent));
  // Waiting for the group's tokens, the write goes on without it once it is gone.
  struct dropper {
    static task<void> run(std::optional<rate_group>* g) {
      g->reset();
      co_return;
    }
  };
  lp.spawn(dropper::run(&g), fail_task);
  REQUIRE(co_await e.a.write("end", 20s));
  REQUIRE(co_await e.a.shutdown(20s));
  std::string got(sent.size() + 3, '\0');
  REQUIRE(co_await e.b.read_exactly(span_of(got), 20s));
  CHECK((got == sent + "end"));

  // A stream closed (and lingering) in a group, and one moved between groups.
  rate_group g1(lp, {.read_rate = 1000, .write_rate = 1000});
  rate_group g2(lp, {.write_rate = 1000});
  auto f = co_await t.connect(lp);
  REQUIRE(g1.add(f.a));
  REQUIRE(g2.add(f.a));
  CHECK(g1.size() == 0);
  CHECK(g2.size() == 1);
  REQUIRE(co_await f.a.write(sent));  // queued: the close lingers to send it
  f.a.close();
  CHECK(g2.size() == 1);
  REQUIRE(g1.add(f.b));
}

TEST_CASE("a rate_group destroyed before its streams lets them go on without it") {
  over_each_transport(group_goes_first);
}

task<void> streams_go_first(loop& lp) {
  rate_group g(lp, {.write_rate = rate});
  {
    auto e = co_await tcp(lp);
    REQUIRE(g.add(e.a));
    REQUIRE(g.add(e.b));
    CHECK(g.size() == 2);
  }
  CHECK(g.size() == 0);
}

TEST_CASE("streams destroyed before their rate_group leave it") {
  evco::test::run_on_loop(streams_go_first);
}

// ---- what cannot be limited ------------------------------------------------------------------

task<void> unsupported(loop& lp) {
  auto p = evco::make_pair(lp);
  REQUIRE(p);
  auto r = p.value().first.set_rate_limit({.write_rate = 1000});
  REQUIRE_FALSE(r);
  CHECK(r.error() == std::errc::operation_not_supported);
  rate_group g(lp, {.write_rate = 1000});
  auto a = g.add(p.value().first);
  REQUIRE_FALSE(a);
  CHECK(a.error() == std::errc::operation_not_supported);
  stream closed;
  CHECK(closed.set_rate_limit({.write_rate = 1}).error() == errc::closed);
  CHECK(g.add(closed).error() == errc::closed);
  g.remove(closed);
  loop other;
  rate_group elsewhere(other, {.write_rate = 1000});
  auto e = co_await tcp(lp);
  CHECK(elsewhere.add(e.a).error() == std::errc::invalid_argument);
  co_return;
}

TEST_CASE("pairs, closed streams and streams of another loop cannot be limited") {
  evco::test::run_on_loop(unsupported);
}
