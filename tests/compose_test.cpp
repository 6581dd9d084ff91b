// when_any, when_all, with_timeout and the stop token they hand down.
#include "evco/when_all.hpp"
#include "evco/when_any.hpp"

#include <doctest/doctest.h>

#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;
using evco::errc;
using evco::loop;
using evco::result;
using evco::task;
using evco::test::error_of;

// Each TEST_CASE sits right below the coroutine it runs.
TEST_SUITE_BEGIN("compose");

namespace {

// Records how a child ended, so a test can check that every child ended exactly once.
struct outcome_log {
  int started = 0;
  int ok = 0;
  int cancelled = 0;
  int other = 0;
  void note(const result<void>& r) {
    if (r) {
      ++ok;
    } else if (r.error() == errc::cancelled) {
      ++cancelled;
    } else {
      ++other;
    }
  }
  int total() const { return ok + cancelled + other; }
};

// `turns` zero sleeps in a row: each resumes once the loop has polled again, so children of
// different lengths race within a few loop turns.
task<result<void>> zero_sleeps(loop& lp, int turns, outcome_log* log) {
  ++log->started;
  result<void> r = evco::success();
  for (int i = 0; i < turns && r; ++i)
    r = co_await evco::sleep_for(lp, 0ms);
  log->note(r);
  co_return r;
}

task<result<void>> sleep_forever(loop& lp, outcome_log* log) {
  auto r = co_await evco::sleep_for(lp, evco::duration::max());
  log->note(r);
  co_return r;
}

task<int> value_now(int v) {
  co_return v;
}

task<void> throws_now() {
  throw std::runtime_error("child");
  co_return;
}

task<void> throws_after(loop& lp, evco::duration d) {
  (void)co_await evco::sleep_for(lp, d);
  throw std::runtime_error("late");
}

// ---- when_any --------------------------------------------------------------------------------

task<void> read_wins_over_sleep(loop& lp) {
  auto p = co_await evco::test::connected_pair(lp);
  REQUIRE(co_await p.client.write("hello"));
  char buf[16];
  auto r = co_await evco::when_any(p.server.read_some(std::span(buf)), evco::sleep_for(lp, 10s));
  REQUIRE(r.index() == 0);
  REQUIRE(std::get<0>(r).value() == 5);
  CHECK(std::string(buf, 5) == "hello");
  // The read completed without suspending, so the sleep never started: nothing is parked.
  CHECK(lp.parked().empty());
}
TEST_CASE("when_any: a read with its bytes there wins, and the sleep never starts") {
  evco::test::run_on_loop(read_wins_over_sleep);
}

task<void> sleep_wins_over_read(loop& lp) {
  auto p = co_await evco::test::connected_pair(lp);
  char buf[16];
  const auto before = evco::clock::now();
  auto r = co_await evco::when_any(p.server.read_some(std::span(buf)), evco::sleep_for(lp, 20ms));
  CHECK(r.index() == 1);
  CHECK(std::get<1>(r));
  CHECK(evco::clock::now() - before >= 20ms);  // never early
  CHECK(lp.parked().empty());                  // the read was cancelled and awaited
  // The stream is unharmed: the next read gets the next bytes.
  REQUIRE(co_await p.client.write("after"));
  auto n = co_await p.server.read_some(std::span(buf));
  REQUIRE(n);
  CHECK(std::string(buf, n.value()) == "after");
}
TEST_CASE("when_any: a sleep that wins cancels the read, which leaves the stream as it was") {
  evco::test::run_on_loop(sleep_wins_over_read);
}

task<bool> mark_started(bool* started) {
  *started = true;
  co_return true;
}
task<void> later_args_not_started(loop&) {
  bool started = false;
  auto r = co_await evco::when_any(value_now(7), mark_started(&started));
  REQUIRE(r.index() == 0);
  CHECK(std::get<0>(r) == 7);
  CHECK_FALSE(started);
}
TEST_CASE("when_any: arguments after one that completes at once never start") {
  evco::test::run_on_loop(later_args_not_started);
}

// The writer sends numbered bytes with a pause between bursts; the reader reads with a race
// against a timer that is due about as often as the bytes come. Whatever wins, every byte
// arrives once and in order: a read that lost took none.
task<void> write_bursts(loop& lp, evco::stream* s, int bursts) {
  unsigned char next = 0;
  for (int i = 0; i < bursts; ++i) {
    unsigned char chunk[7];
    for (auto& c : chunk)
      c = next++;
    REQUIRE(co_await s->write(std::as_bytes(std::span(chunk))));
    if (i % 3 == 0) REQUIRE(co_await evco::sleep_for(lp, 0ms));
    if (i % 5 == 0) REQUIRE(co_await evco::sleep_for(lp, 0ms));
  }
  REQUIRE(co_await s->shutdown());
}
task<void> no_lost_bytes(loop& lp) {
  auto p = co_await evco::test::connected_pair(lp);
  constexpr int bursts = 3000;
  lp.spawn(write_bursts(lp, &p.client, bursts), [](std::exception_ptr) { FAIL("writer"); });
  unsigned char expect = 0;
  std::size_t total = 0;
  int timer_wins = 0;
  for (int guard = 0; guard < 1000000; ++guard) {
    unsigned char buf[5];
    auto r = co_await evco::when_any(p.server.read_some(std::as_writable_bytes(std::span(buf))),
                                     evco::sleep_for(lp, 0ms));
    if (r.index() == 1) {
      ++timer_wins;
      continue;
    }
    auto& n = std::get<0>(r);
    if (!n && n.error() == errc::eof) break;
    REQUIRE_MESSAGE(n, error_of(n));
    for (std::size_t i = 0; i < n.value(); ++i)
      REQUIRE(buf[i] == expect++);
    total += n.value();
  }
  CHECK(total == bursts * 7u);
  CHECK(timer_wins > 0);
}
TEST_CASE("when_any: no byte lost when reads race a timer") {
  evco::test::run_on_loop(no_lost_bytes);
}

task<void> races_have_one_outcome(loop& lp) {
  outcome_log log;
  int wins[2] = {0, 0};
  constexpr int rounds = 10000;
  for (int i = 0; i < rounds; ++i) {
    auto r = co_await evco::when_any(zero_sleeps(lp, i % 3, &log), zero_sleeps(lp, i % 4, &log));
    ++wins[r.index()];
    REQUIRE(std::visit([](const auto& v) { return v.has_value(); }, r));
  }
  // Each round: one winner; every child that started ended once, cancelled or (due in the
  // same turn) completed; one that ends at once leaves the next unstarted.
  CHECK(wins[0] + wins[1] == rounds);
  CHECK(wins[1] > 0);
  CHECK(log.total() == log.started);
  CHECK(log.cancelled > 0);
  CHECK(log.other == 0);
  CHECK(lp.parked().empty());
}
TEST_CASE("when_any: 10,000 races of completion against cancellation, one outcome each") {
  evco::test::run_on_loop(races_have_one_outcome);
}

task<void> exception_of_winner(loop& lp) {
  outcome_log log;
  CHECK_THROWS_AS(co_await evco::when_any(sleep_forever(lp, &log), throws_after(lp, 1ms)),
                  std::runtime_error);
  CHECK(log.cancelled == 1);  // the other was cancelled and awaited first
}
TEST_CASE("when_any: an exception ends the race, and is rethrown once the others ended") {
  evco::test::run_on_loop(exception_of_winner);
}

task<void> exception_of_loser(loop& lp) {
  bool threw = false;
  try {
    (void)co_await evco::when_any(evco::sleep_for(lp, 1ms), throws_after(lp, 1h));
  } catch (const std::runtime_error&) {
    threw = true;
  }
  // The loser's sleep was cancelled, and its body went on to throw: not dropped.
  CHECK(threw);
}
TEST_CASE("when_any: a loser's exception is not dropped") {
  evco::test::run_on_loop(exception_of_loser);
}

// ---- the stop token handed down --------------------------------------------------------------

task<result<std::size_t>> nested_read(evco::stream* s, bool* saw_stop) {
  char buf[8];
  auto r = co_await s->read_some(std::span(buf));  // inherits the token of when_any's child
  auto token = co_await evco::this_stop_token();
  *saw_stop = token.stop_requested();
  co_return r;
}
task<void> stop_reaches_nested_tasks(loop& lp) {
  auto p = co_await evco::test::connected_pair(lp);
  bool saw_stop = false;
  auto r = co_await evco::when_any(nested_read(&p.server, &saw_stop), evco::sleep_for(lp, 1ms));
  CHECK(r.index() == 1);
  CHECK(saw_stop);
  // The read inside the nested task ended with cancelled (no busy: it is no longer parked).
  REQUIRE(co_await p.client.write("x"));
  char buf[4];
  auto n = co_await p.server.read_some(std::span(buf));
  REQUIRE(n);
  CHECK(n.value() == 1);
}
TEST_CASE("when_any: the stop reaches ops inside nested tasks, and this_stop_token sees it") {
  evco::test::run_on_loop(stop_reaches_nested_tasks);
}

task<result<std::size_t>> read_with_own_token(evco::stream* s, std::stop_token own) {
  char buf[8];
  co_return co_await s->read_some(std::span(buf), own);
}
task<void> own_and_inherited_tokens(loop& lp) {
  auto p = co_await evco::test::connected_pair(lp);
  // The inherited one stops it:
  std::stop_source own;
  auto r = co_await evco::when_any(read_with_own_token(&p.server, own.get_token()),
                                   evco::sleep_for(lp, 1ms));
  CHECK(r.index() == 1);
  // Its own one stops it:
  std::stop_source own2;
  own2.request_stop();
  auto r2 = co_await evco::when_any(read_with_own_token(&p.server, own2.get_token()),
                                    evco::sleep_for(lp, 10s));
  REQUIRE(r2.index() == 0);
  CHECK(error_of(std::get<0>(r2)) == errc::cancelled);
}
TEST_CASE("an op with a token of its own watches the inherited one too") {
  evco::test::run_on_loop(own_and_inherited_tokens);
}

task<result<void>> reuse_lvalue_op(evco::test::tcp_pair* p, std::stop_source* own) {
  char buf[8];
  auto rd = p->server.read_some(std::span(buf), own->get_token());
  EVCO_TRYV(co_await p->client.write("a"));
  auto first = co_await rd;  // merges the inherited token for this co_await only
  REQUIRE(first);
  own->request_stop();
  auto second = co_await rd;  // still watches its own token, which is now requested
  CHECK(error_of(second) == errc::cancelled);
  co_return evco::success();
}
task<void> lvalue_op_keeps_its_token(loop& lp) {
  auto p = co_await evco::test::connected_pair(lp);
  std::stop_source own;
  auto r = co_await evco::with_timeout(lp, reuse_lvalue_op(&p, &own), 5s);
  CHECK(r);
}
TEST_CASE("an op awaited again keeps its own token, whatever an earlier co_await inherited") {
  evco::test::run_on_loop(lvalue_op_keeps_its_token);
}

task<void> outside_the_algorithms(loop&) {
  auto token = co_await evco::this_stop_token();
  CHECK_FALSE(token.stop_possible());
}
TEST_CASE("this_stop_token outside the algorithms is empty") {
  evco::test::run_on_loop(outside_the_algorithms);
}

task<void> outer_cancel_reaches_inner(loop& lp) {
  outcome_log log;
  auto r = co_await evco::with_timeout(
      lp, evco::when_any(sleep_forever(lp, &log), sleep_forever(lp, &log)), 5ms);
  CHECK(error_of(r) == errc::timed_out);
  CHECK(log.cancelled == 2);
}
TEST_CASE("cancelling a when_any (here by with_timeout) cancels all its children") {
  evco::test::run_on_loop(outer_cancel_reaches_inner);
}

// ---- with_timeout ----------------------------------------------------------------------------

task<void> with_timeout_outcomes(loop& lp) {
  auto v = co_await evco::with_timeout(lp, value_now(3), 1s);
  REQUIRE(v);
  CHECK(v.value() == 3);

  outcome_log log;
  const auto before = evco::clock::now();
  auto t = co_await evco::with_timeout(lp, sleep_forever(lp, &log), 10ms);
  CHECK(error_of(t) == errc::timed_out);
  CHECK(evco::clock::now() - before >= 10ms);
  CHECK(log.cancelled == 1);  // cancelled and awaited before with_timeout returned

  auto p = co_await evco::test::connected_pair(lp);
  char buf[4];
  auto n = co_await evco::with_timeout(lp, p.server.read_some(std::span(buf)), 1ms);
  CHECK(error_of(n) == errc::timed_out);
}
TEST_CASE("with_timeout: the value, or timed_out with the task cancelled and awaited") {
  evco::test::run_on_loop(with_timeout_outcomes);
}

task<void> with_timeout_races(loop& lp) {
  outcome_log log;
  int timed_out = 0, done = 0;
  for (int i = 0; i < 10000; ++i) {
    auto r = co_await evco::with_timeout(lp, zero_sleeps(lp, i % 3, &log),
                                         std::chrono::nanoseconds(i % 2));
    if (r) {
      ++done;
    } else {
      REQUIRE(r.error() == errc::timed_out);
      ++timed_out;
    }
  }
  CHECK(done + timed_out == 10000);
  CHECK(done > 0);
  CHECK(timed_out > 0);
  CHECK(log.total() == 10000);  // every inner task ended, once
  CHECK(log.other == 0);
}
TEST_CASE("with_timeout: 10,000 races of the deadline against completion") {
  evco::test::run_on_loop(with_timeout_races);
}

// ---- when_all --------------------------------------------------------------------------------

task<void> void_task(int* n) {
  ++*n;
  co_return;
}
task<void> all_results(loop& lp) {
  int n = 0;
  auto [a, b, c] = co_await evco::when_all(value_now(1), void_task(&n), evco::sleep_for(lp, 1ms));
  CHECK(a == 1);
  CHECK(std::is_same_v<decltype(b), std::monostate>);
  CHECK(n == 1);
  CHECK(c);

  std::vector<task<int>> many;
  for (int i = 0; i < 100; ++i)
    many.push_back(value_now(i));
  auto values = co_await evco::when_all(std::move(many));
  REQUIRE(values.size() == 100);
  for (int i = 0; i < 100; ++i)
    CHECK(values[static_cast<std::size_t>(i)] == i);
  auto none = co_await evco::when_all(std::vector<task<int>>{});
  CHECK(none.empty());
}
TEST_CASE("when_all: every result, in order, for a pack and for a vector") {
  evco::test::run_on_loop(all_results);
}

task<void> all_with_exception(loop& lp) {
  outcome_log log;
  CHECK_THROWS_AS(co_await evco::when_all(sleep_forever(lp, &log), throws_now()),
                  std::runtime_error);
  CHECK(log.cancelled == 1);
}
TEST_CASE("when_all: an exception cancels the others, and is rethrown once they ended") {
  evco::test::run_on_loop(all_with_exception);
}

task<void> all_errors_are_values(loop& lp) {
  auto p = co_await evco::test::connected_pair(lp);
  char buf[4];
  auto [slept, read] =
      co_await evco::when_all(evco::sleep_for(lp, 2ms), p.server.read_some(std::span(buf), 1ms));
  CHECK(slept);  // the read's timeout did not stop the sleep
  CHECK(error_of(read) == errc::timed_out);
}
TEST_CASE("when_all: an error value stops nothing") {
  evco::test::run_on_loop(all_errors_are_values);
}

task<void> when_all_races(loop& lp) {
  outcome_log log;
  int timed_out = 0;
  for (int i = 0; i < 10000; ++i) {
    auto r = co_await evco::with_timeout(
        lp, evco::when_all(zero_sleeps(lp, i % 3, &log), zero_sleeps(lp, i % 4, &log)),
        std::chrono::nanoseconds(i % 2));
    if (!r) {
      REQUIRE(r.error() == errc::timed_out);
      ++timed_out;
    }
  }
  CHECK(log.started == 20000);
  CHECK(log.total() == 20000);
  CHECK(log.other == 0);
  CHECK(timed_out > 0);
  CHECK(timed_out < 10000);
}
TEST_CASE("when_all: 10,000 races of cancellation against completion, every child ends once") {
  evco::test::run_on_loop(when_all_races);
}

// ---- teardown --------------------------------------------------------------------------------

task<void> parked_forever(loop& lp, outcome_log* log) {
  (void)co_await evco::when_any(sleep_forever(lp, log), sleep_forever(lp, log));
}
TEST_CASE("a loop destroyed with a when_any parked frees everything") {
  outcome_log log;
  {
    loop lp;
    lp.spawn(parked_forever(lp, &log), [](std::exception_ptr) { FAIL("threw"); });
    lp.run(evco::sleep_for(lp, 1ms)).value();
    CHECK(lp.parked().size() == 2);
  }
  CHECK(log.total() == 0);  // destroyed, not resumed (LSan checks the frames went)
}

}  // namespace

TEST_SUITE_END();
