#include "evco/channel.hpp"

#include <doctest/doctest.h>
#include <event2/event.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "evco/loop.hpp"
#include "evco/timer.hpp"
#include "evco/when_any.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using evco::channel;
using evco::errc;
using evco::loop;
using evco::result;
using evco::task;
using evco::test::error_of;

// Each TEST_CASE sits right below the coroutine it runs.
TEST_SUITE_BEGIN("channel");

// Counted by the operator new in counting_new.cpp, linked into this suite.
extern std::atomic<std::size_t> allocations;
extern const bool counting_new_active;

namespace {

// ---- helpers shared by several tests --------------------------------------------------------

using item = std::unique_ptr<int>;  // moved-from is null: a lost or doubled item shows

void spawn(loop& lp, task<void> t) {
  lp.spawn(std::move(t), [](std::exception_ptr) { FAIL("spawned task threw"); });
}

// Sends `n` items numbered from `first`, recording how many were sent.
task<void> send_n(channel<int>* ch, int first, int n, int* sent) {
  for (int i = first; i < first + n; ++i) {
    REQUIRE(co_await ch->send(int(i)));
    ++*sent;
  }
}

// Receives 1000 items into `out`.
task<void> receive_all(channel<int>* ch, std::vector<int>* out, evco::test::signal* done) {
  while (out->size() < 1000) {
    auto r = co_await ch->receive();
    REQUIRE(r);
    out->push_back(r.value());
  }
  done->set();
}

// One op, started from a spawned task: its outcome, once it has one.
template <class R>
struct outcome {
  std::optional<R> r;
  bool done() const { return r.has_value(); }
};

task<void> receive_into(channel<item>* ch, outcome<result<item>>* out, evco::op_options o = {}) {
  out->r = co_await ch->receive(std::move(o));
}

task<void> send_from(channel<item>* ch, item* it, outcome<result<void>>* out,
                     evco::op_options o = {}) {
  out->r = co_await ch->send(std::move(*it), std::move(o));
}

// Yields until `pred` holds (at most 1000 times: a watchdog, not a wait for time).
template <class F>
task<void> yield_until(loop& lp, F pred) {
  for (int i = 0; i < 1000 && !pred(); ++i)
    co_await lp.yield();
  REQUIRE(pred());
}

// ---- order and backpressure -----------------------------------------------------------------

task<void> fifo(loop& lp, std::size_t capacity) {
  channel<int> ch(lp, capacity);
  std::vector<int> got;
  evco::test::signal done;
  int sent = 0;
  spawn(lp, receive_all(&ch, &got, &done));
  spawn(lp, send_n(&ch, 0, 1000, &sent));
  co_await done;
  co_await yield_until(lp, [&] { return sent == 1000; });  // the last send resumes from the loop
  REQUIRE(got.size() == 1000);
  for (int i = 0; i < 1000; ++i)
    CHECK(got[i] == i);
}

TEST_CASE("a channel delivers every item once, in the order sent") {
  for (std::size_t capacity : {0u, 1u, 3u, 64u, 2000u}) {
    CAPTURE(capacity);
    loop lp;
    lp.run(fifo(lp, capacity));
  }
}

task<void> backpressure(loop& lp) {
  channel<int> ch(lp, 2);
  int sent = 0;
  spawn(lp, send_n(&ch, 0, 5, &sent));
  co_await lp.yield();
  CHECK(sent == 2);  // the third send waits: the buffer is full
  CHECK(ch.size() == 2);
  auto first = co_await ch.receive();
  REQUIRE(first);
  CHECK(first.value() == 0);
  CHECK(ch.size() == 2);  // the waiting sender's item took the slot at once...
  CHECK(sent == 2);       // ... and the sender resumes from the loop
  co_await lp.yield();
  CHECK(sent == 3);
  for (int want = 1; want < 5; ++want) {
    auto r = co_await ch.receive();
    REQUIRE(r);
    CHECK(r.value() == want);
  }
  co_await yield_until(lp, [&] { return sent == 5; });
}

TEST_CASE("send waits while the channel is full, and a receive lets it go on") {
  evco::test::run_on_loop(backpressure);
}

task<void> waiting_senders_in_order(loop& lp) {
  channel<int> ch(lp, 1);
  int sent[4] = {};
  for (int i = 0; i < 4; ++i)
    spawn(lp, send_n(&ch, 10 * i, 1, &sent[i]));  // the first is buffered, three wait
  co_await lp.yield();
  for (int want : {0, 10, 20, 30}) {
    auto r = co_await ch.receive();
    REQUIRE(r);
    CHECK(r.value() == want);
  }
  co_await yield_until(lp, [&] { return sent[3] == 1; });
}

TEST_CASE("waiting senders' items follow the buffered ones, in the order they waited") {
  evco::test::run_on_loop(waiting_senders_in_order);
}

// ---- hand-over ------------------------------------------------------------------------------

task<void> hand_over(loop& lp) {
  channel<item> ch(lp, 0);
  item it = std::make_unique<int>(7);
  outcome<result<void>> sent;
  spawn(lp, send_from(&ch, &it, &sent));
  co_await lp.yield();
  CHECK_FALSE(sent.done());  // nobody took it yet
  CHECK(it != nullptr);
  CHECK(ch.size() == 0);
  auto r = co_await ch.receive();
  REQUIRE(r);
  CHECK(*r.value() == 7);
  CHECK(it == nullptr);
  CHECK_FALSE(sent.done());  // resumed from the loop, not inside receive()
  co_await yield_until(lp, [&] { return sent.done(); });
  CHECK(sent.r->has_value());
}

TEST_CASE("a hand-over send completes once a receiver has taken its item") {
  evco::test::run_on_loop(hand_over);
}

task<void> hand_to_waiting_receiver(loop& lp) {
  channel<item> ch(lp, 0);
  outcome<result<item>> got;
  spawn(lp, receive_into(&ch, &got));
  co_await lp.yield();
  REQUIRE_FALSE(got.done());
  item it = std::make_unique<int>(3);
  REQUIRE(co_await ch.send(std::move(it)));  // waits until the receiver has taken it
  CHECK(it == nullptr);
  REQUIRE(got.done());  // it resumed (from the loop) and took the item before the send completed
  REQUIRE(got.r->has_value());
  CHECK(*got.r->value() == 3);
}

TEST_CASE(
    "a hand-over send to a waiting receiver completes once that receiver has resumed with it") {
  evco::test::run_on_loop(hand_to_waiting_receiver);
}

task<void> copies(loop& lp) {
  channel<std::string> ch(lp, 1);
  const std::string kept = "kept";
  std::string mine = "mine";
  REQUIRE(co_await ch.send(kept));  // an lvalue is copied
  CHECK(kept == "kept");
  REQUIRE(ch.try_receive());
  REQUIRE(co_await ch.send(mine));
  CHECK(mine == "mine");
  CHECK(ch.try_receive().value() == "mine");
  REQUIRE(co_await ch.send(std::string(1000, 't')));  // a temporary
  CHECK(ch.try_receive().value() == std::string(1000, 't'));
}

TEST_CASE("send copies an lvalue and moves an rvalue") {
  evco::test::run_on_loop(copies);
}

task<void> receive_string_later(loop& lp, channel<std::string>* ch, std::string* out) {
  co_await lp.yield();
  auto r = co_await ch->receive();
  REQUIRE(r);
  *out = std::move(r).value();
}

// The temporary lives in the frame until the end of the co_await expression, across the wait.
task<void> temporary_across_wait(loop& lp) {
  channel<std::string> ch(lp, 0);
  std::string got;
  spawn(lp, receive_string_later(lp, &ch, &got));
  REQUIRE(co_await ch.send(std::string(1000, 'p')));  // waits for the receiver
  co_await yield_until(lp, [&] { return !got.empty(); });
  CHECK(got == std::string(1000, 'p'));
}

TEST_CASE("a temporary sent through a hand-over channel survives the wait") {
  evco::test::run_on_loop(temporary_across_wait);
}

// ---- close ----------------------------------------------------------------------------------

task<void> close_semantics(loop& lp) {
  channel<item> ch(lp, 2);
  REQUIRE(ch.try_send(std::make_unique<int>(1)));
  REQUIRE(ch.try_send(std::make_unique<int>(2)));
  item third = std::make_unique<int>(3), fourth = std::make_unique<int>(4);
  outcome<result<void>> s3, s4;
  spawn(lp, send_from(&ch, &third, &s3));
  spawn(lp, send_from(&ch, &fourth, &s4));
  co_await lp.yield();
  REQUIRE_FALSE(s3.done());
  ch.close();
  CHECK_FALSE(s3.done());  // from the loop
  co_await yield_until(lp, [&] { return s3.done() && s4.done(); });
  CHECK(s3.r->error() == errc::closed);
  CHECK(s4.r->error() == errc::closed);
  REQUIRE(third != nullptr);  // each failed send kept its item
  CHECK(*third == 3);
  REQUIRE(fourth != nullptr);
  CHECK(*fourth == 4);
  // Later sends fail at once, and keep theirs too.
  auto late = co_await ch.send(std::move(third));
  CHECK(late.error() == errc::closed);
  CHECK(third != nullptr);
  CHECK(ch.try_send(std::move(third)).error() == errc::closed);
  CHECK(third != nullptr);
  // Receivers drain what is buffered, then get closed.
  auto r1 = co_await ch.receive();
  auto r2 = co_await ch.receive();
  REQUIRE(r1);
  REQUIRE(r2);
  CHECK(*r1.value() == 1);
  CHECK(*r2.value() == 2);
  CHECK((co_await ch.receive()).error() == errc::closed);
  CHECK(ch.try_receive().error() == errc::closed);
  CHECK(ch.is_closed());
}

TEST_CASE("close fails the waiting senders, who keep their items; receivers drain, then closed") {
  evco::test::run_on_loop(close_semantics);
}

task<void> close_wakes_receivers(loop& lp) {
  channel<item> ch(lp, 4);
  outcome<result<item>> got[3];
  for (auto& g : got)
    spawn(lp, receive_into(&ch, &g));
  co_await lp.yield();
  ch.close();
  ch.close();  // idempotent
  co_await yield_until(lp, [&] { return got[0].done() && got[1].done() && got[2].done(); });
  for (auto& g : got)
    CHECK(g.r->error() == errc::closed);
}

TEST_CASE("close resumes every waiting receiver with closed") {
  evco::test::run_on_loop(close_wakes_receivers);
}

task<void> channel_destroyed(loop& lp) {
  auto ch = std::make_unique<channel<item>>(lp, 0);
  item it = std::make_unique<int>(5);
  outcome<result<void>> sent;
  outcome<result<item>> got;
  spawn(lp, send_from(ch.get(), &it, &sent));
  co_await lp.yield();
  auto other = std::make_unique<channel<item>>(lp, 0);
  spawn(lp, receive_into(other.get(), &got, {1h, std::stop_source().get_token()}));
  co_await lp.yield();
  ch.reset();
  other.reset();
  co_await yield_until(lp, [&] { return sent.done() && got.done(); });
  CHECK(sent.r->error() == errc::closed);
  REQUIRE(it != nullptr);
  CHECK(*it == 5);
  CHECK(got.r->error() == errc::closed);
}

TEST_CASE("destroying a channel resumes its waiting ops with closed") {
  evco::test::run_on_loop(channel_destroyed);
}

// ---- timeout and cancellation ---------------------------------------------------------------

task<void> timeouts(loop& lp) {
  channel<item> ch(lp, 1);
  auto start = evco::clock::now();
  auto r = co_await ch.receive(20ms);
  CHECK(r.error() == errc::timed_out);
  CHECK(r.error() == std::errc::timed_out);
  CHECK(evco::clock::now() - start >= 20ms);
  REQUIRE(ch.try_send(std::make_unique<int>(1)));
  item it = std::make_unique<int>(2);
  start = evco::clock::now();
  auto s = co_await ch.send(std::move(it), 20ms);
  CHECK(s.error() == errc::timed_out);
  CHECK(evco::clock::now() - start >= 20ms);
  REQUIRE(it != nullptr);
  CHECK(*it == 2);
  // A negative timeout is a poll: done if it can be done at once, else timed_out.
  CHECK((co_await ch.send(std::move(it), -1ns)).error() == errc::timed_out);
  CHECK(it != nullptr);
  auto polled = co_await ch.receive(-1ns);
  REQUIRE(polled);
  CHECK(*polled.value() == 1);
  CHECK((co_await ch.receive(-1ns)).error() == errc::timed_out);
}

TEST_CASE("send and receive time out with timed_out, and a timed-out send keeps its item") {
  evco::test::run_on_loop(timeouts);
}

task<result<item>> cancel_receive(loop& lp, channel<item>* ch, evco::test::stop_probe* p) {
  p->stop_from_loop(lp);
  auto r = co_await ch->receive(p->src.get_token());
  p->op_resumed = true;
  co_return r;
}

task<result<void>> cancel_send(loop& lp, channel<item>* ch, item* it, evco::test::stop_probe* p) {
  p->stop_from_loop(lp);
  auto r = co_await ch->send(std::move(*it), p->src.get_token());
  p->op_resumed = true;
  co_return r;
}

TEST_CASE("a stop request cancels a send or a receive, from the loop, and loses no item") {
  loop lp;
  channel<item> ch(lp, 0);
  {
    evco::test::stop_probe probe;
    auto r = lp.run(cancel_receive(lp, &ch, &probe));
    CHECK(r.error() == errc::cancelled);
    CHECK(r.error() == std::errc::operation_canceled);
    CHECK_FALSE(probe.resumed_inside_request_stop);
  }
  {
    evco::test::stop_probe probe;
    item it = std::make_unique<int>(9);
    auto r = lp.run(cancel_send(lp, &ch, &it, &probe));
    CHECK(r.error() == errc::cancelled);
    CHECK_FALSE(probe.resumed_inside_request_stop);
    REQUIRE(it != nullptr);
    CHECK(*it == 9);
  }
  CHECK(ch.try_receive().error() == std::errc::resource_unavailable_try_again);
}

task<void> stopped_before(loop& lp) {
  channel<item> ch(lp, 2);
  REQUIRE(ch.try_send(std::make_unique<int>(1)));
  std::stop_source src;
  src.request_stop();
  // A stop already requested wins over an item at hand or a free slot: nothing moves.
  CHECK((co_await ch.receive(src.get_token())).error() == errc::cancelled);
  item it = std::make_unique<int>(2);
  CHECK((co_await ch.send(std::move(it), src.get_token())).error() == errc::cancelled);
  CHECK(it != nullptr);
  CHECK(ch.size() == 1);
  co_await lp.yield();
}

TEST_CASE("an op whose stop was requested before it started is cancelled and moves nothing") {
  evco::test::run_on_loop(stopped_before);
}

// ---- races of completion against cancellation -----------------------------------------------

// One send and one receive on a fresh channel, each ended by a stop request (and some by a
// timeout) at varying points around the hand-over. Whatever wins, the item must end in exactly
// one place: with the receiver, still with the sender, or still buffered.
struct race {
  race(channel<item>* c, int n) : ch(c), it(std::make_unique<int>(n)) {}
  channel<item>* ch;
  item it;
  outcome<result<void>> sent;
  outcome<result<item>> got;
  std::stop_source send_stop, recv_stop;
  int finished = 0;
  evco::test::signal done;
  void finish() {
    if (++finished == 3) done.set();
  }
};

task<void> race_sender(loop& lp, race* r, int yields, evco::op_options o) {
  for (int i = 0; i < yields; ++i)
    co_await lp.yield();
  r->sent.r = co_await r->ch->send(std::move(r->it), std::move(o));
  r->finish();
}

task<void> race_receiver(loop& lp, race* r, int yields, evco::op_options o) {
  for (int i = 0; i < yields; ++i)
    co_await lp.yield();
  r->got.r = co_await r->ch->receive(std::move(o));
  r->finish();
}

task<void> race_stopper(loop& lp, race* r, int send_after, int recv_after) {
  for (int i = 0; i < std::max(send_after, recv_after); ++i) {
    if (i == send_after) r->send_stop.request_stop();
    if (i == recv_after) r->recv_stop.request_stop();
    co_await lp.yield();
  }
  r->send_stop.request_stop();
  r->recv_stop.request_stop();
  r->finish();
}

struct race_stats {
  int delivered = 0, kept = 0, buffered = 0, bad = 0;
};

// Where the item of round `n` ended; any inconsistency counts as bad.
void tally(race& r, int n, race_stats& stats) {
  const bool sent = r.sent.r->has_value();
  const bool received = r.got.r->has_value();
  auto left = r.ch->try_receive();
  const int places = (received && r.got.r->value() && *r.got.r->value() == n) +
                     (r.it && *r.it == n) + (left && left.value() && *left.value() == n);
  if (places != 1 || sent != (r.it == nullptr) || (received && !sent)) {
    ++stats.bad;
    return;
  }
  if (received) ++stats.delivered;
  if (r.it) ++stats.kept;
  if (left) ++stats.buffered;
}

task<void> race_round(loop& lp, int n, race_stats* stats) {
  std::uint32_t x = static_cast<std::uint32_t>(n) * 2654435761u + 1;
  auto rnd = [&x](int m) {
    x = x * 1103515245u + 12345u;
    return static_cast<int>((x >> 16) % static_cast<std::uint32_t>(m));
  };
  channel<item> ch(lp, static_cast<std::size_t>(rnd(2)));
  race r(&ch, n);
  const auto limit = [&](std::stop_source& s) -> evco::op_options {
    if (rnd(4) == 0) return {std::chrono::microseconds(rnd(50)), s.get_token()};
    return s.get_token();
  };
  spawn(lp, race_stopper(lp, &r, rnd(5), rnd(5)));
  spawn(lp, race_sender(lp, &r, rnd(4), limit(r.send_stop)));
  spawn(lp, race_receiver(lp, &r, rnd(4), limit(r.recv_stop)));
  co_await r.done;
  tally(r, n, *stats);
}

TEST_CASE("10,000 races of hand-over against cancellation each leave the item in one place") {
  loop lp;
  race_stats stats;
  for (int n = 0; n < 10000; ++n)
    lp.run(race_round(lp, n, &stats));
  CHECK(stats.bad == 0);
  CHECK(stats.delivered + stats.kept + stats.buffered == 10000);
  // Both ends of the race were reached.
  CHECK(stats.delivered > 0);
  CHECK(stats.kept > 0);
  MESSAGE("delivered " << stats.delivered << ", kept by the sender " << stats.kept
                       << ", left buffered " << stats.buffered);
}

// The same with the stop requests coming from another thread while the loop hands over.
task<void> thread_race_round(loop& lp, int n, race_stats* stats) {
  channel<item> ch(lp, static_cast<std::size_t>(n % 2));
  race r(&ch, n);
  r.finished = 1;  // no stopper task: the thread stops both
  std::thread stopper([&r, n] {
    for (int i = 0; i < n % 200; ++i)
      std::atomic_signal_fence(std::memory_order_seq_cst);  // a short, varying delay
    (n % 3 ? r.recv_stop : r.send_stop).request_stop();
    r.send_stop.request_stop();
    r.recv_stop.request_stop();
  });
  spawn(lp, race_sender(lp, &r, n % 3, r.send_stop.get_token()));
  spawn(lp, race_receiver(lp, &r, n % 4, r.recv_stop.get_token()));
  co_await r.done;
  stopper.join();
  tally(r, n, *stats);
}

TEST_CASE("stop requests from another thread racing hand-overs lose and double no item") {
  loop lp;
  race_stats stats;
  for (int n = 0; n < 2000; ++n)
    lp.run(thread_race_round(lp, n, &stats));
  CHECK(stats.bad == 0);
  CHECK(stats.delivered + stats.kept + stats.buffered == 2000);
}

// ---- a receive takes its item when it resumes -----------------------------------------------
//
// Between the send that wakes a waiting receive and that receive's resumption, other callbacks
// of the same loop pass run (a stop request, a timer). Whatever they do, the item is taken only
// by a receive that resumes with it; one that is cancelled or times out first leaves it.

task<void> stop_after_wake(loop& lp) {
  channel<item> ch(lp, 1);
  std::stop_source src;
  outcome<result<item>> got;
  spawn(lp, receive_into(&ch, &got, src.get_token()));
  co_await lp.yield();
  REQUIRE_FALSE(got.done());                       // it waits
  REQUIRE(ch.try_send(std::make_unique<int>(1)));  // wakes it
  src.request_stop();                              // in the same turn, before it has resumed
  CHECK_FALSE(got.done());
  co_await yield_until(lp, [&] { return got.done(); });
  CHECK(got.r->error() == errc::cancelled);
  CHECK(ch.size() == 1);  // the item stayed
  auto next = co_await ch.receive();
  REQUIRE(next);
  CHECK(*next.value() == 1);
  CHECK(ch.size() == 0);
}

TEST_CASE(
    "a receive stopped after a send woke it, before it resumed, is cancelled and the "
    "item stays for the next receive") {
  evco::test::run_on_loop(stop_after_wake);
}

task<void> stop_posted_after_wake(loop& lp) {
  channel<item> ch(lp, 1);
  std::stop_source src;
  outcome<result<item>> got;
  spawn(lp, receive_into(&ch, &got, src.get_token()));
  co_await lp.yield();
  REQUIRE_FALSE(got.done());
  REQUIRE(ch.try_send(std::make_unique<int>(2)));
  // Posted callbacks run before the coroutines made ready, in the loop's next pass.
  lp.post([&src] { src.request_stop(); });
  co_await yield_until(lp, [&] { return got.done(); });
  CHECK(got.r->error() == errc::cancelled);
  auto next = ch.try_receive();
  REQUIRE(next);
  CHECK(*next.value() == 2);
}

TEST_CASE(
    "a stop request posted to the loop after a send woke a receive cancels it, and the "
    "item stays") {
  evco::test::run_on_loop(stop_posted_after_wake);
}

task<void> cancelled_passes_on(loop& lp) {
  channel<item> ch(lp, 2);
  std::stop_source src;
  outcome<result<item>> first, second;
  spawn(lp, receive_into(&ch, &first, src.get_token()));
  spawn(lp, receive_into(&ch, &second, {1h, std::stop_source().get_token()}));
  co_await lp.yield();
  REQUIRE(ch.try_send(std::make_unique<int>(3)));  // wakes the first only
  src.request_stop();
  co_await yield_until(lp, [&] { return first.done() && second.done(); });
  CHECK(first.r->error() == errc::cancelled);
  REQUIRE(second.r->has_value());  // the wake-up went on to the next waiting receive
  CHECK(*second.r->value() == 3);
  CHECK(ch.size() == 0);
}

TEST_CASE(
    "a woken receive that is cancelled before it resumes hands its wake-up to the next "
    "waiting receive") {
  evco::test::run_on_loop(cancelled_passes_on);
}

// A raw libevent timer that sends from its callback: due before the receive's deadline, so in
// the loop pass that runs both, libevent runs it first and the deadline fires in between.
struct timed_send {
  channel<item>* ch;
  bool sent = false;
  static void fire(evutil_socket_t, short, void* arg) {
    auto& self = *static_cast<timed_send*>(arg);
    self.sent = static_cast<bool>(self.ch->try_send(std::make_unique<int>(4)));
  }
};

task<void> receive_then_set(channel<item>* ch, outcome<result<item>>* out, evco::op_options o,
                            evco::test::signal* done) {
  out->r = co_await ch->receive(std::move(o));
  done->set();
}

task<void> timeout_after_wake(loop& lp) {
  channel<item> ch(lp, 1);
  outcome<result<item>> got;
  evco::test::signal done;
  const auto start = evco::clock::now();
  spawn(lp, receive_then_set(&ch, &got, 100ms, &done));
  co_await lp.yield();
  REQUIRE_FALSE(got.done());
  timed_send sender{&ch};
  event* ev = evtimer_new(lp.native_handle(), &timed_send::fire, &sender);
  REQUIRE(ev != nullptr);
  const timeval now{0, 0};
  REQUIRE(evtimer_add(ev, &now) == 0);
  REQUIRE(evco::clock::now() - start < 100ms);  // armed well before the receive's deadline
  // Hold the loop until both are due: they then run in one pass, in deadline order, and the
  // receive resumes only after both. (Waiting through lp.yield() would add a third timer, the
  // loop's own after-poll wake-up, which may run first and resume the receive early.)
  evco::test::busy_for(100ms - (evco::clock::now() - start) + 10ms);
  co_await done;
  event_free(ev);
  CHECK(sender.sent);
  CHECK(got.r->error() == errc::timed_out);
  CHECK(evco::clock::now() - start >= 100ms);
  auto next = ch.try_receive();  // the item it was woken for stayed
  REQUIRE(next);
  CHECK(*next.value() == 4);
}

TEST_CASE(
    "a receive whose deadline passes after a send woke it, before it resumed, times out "
    "and the item stays") {
  evco::test::run_on_loop(timeout_after_wake);
}

task<void> hand_over_sender_keeps(loop& lp) {
  channel<item> ch(lp, 0);
  std::stop_source recv_stop, send_stop;
  outcome<result<item>> got;
  outcome<result<void>> sent;
  item it = std::make_unique<int>(5);
  spawn(lp, receive_into(&ch, &got, recv_stop.get_token()));
  co_await lp.yield();
  spawn(lp, send_from(&ch, &it, &sent, send_stop.get_token()));  // waits, and wakes the receive
  co_await lp.yield();  // the send has waited; the receive has not resumed yet
  REQUIRE_FALSE(got.done());
  REQUIRE_FALSE(sent.done());
  recv_stop.request_stop();
  co_await yield_until(lp, [&] { return got.done(); });
  CHECK(got.r->error() == errc::cancelled);
  CHECK_FALSE(sent.done());  // the send still waits for a receiver, with its item
  REQUIRE(it != nullptr);
  send_stop.request_stop();
  co_await yield_until(lp, [&] { return sent.done(); });
  CHECK(sent.r->error() == errc::cancelled);
  REQUIRE(it != nullptr);  // it kept its item
  CHECK(*it == 5);
  CHECK(ch.try_receive().error() == std::errc::resource_unavailable_try_again);
}

TEST_CASE(
    "on a hand-over channel, a waiting send keeps its item when the receive it woke is "
    "cancelled before resuming") {
  evco::test::run_on_loop(hand_over_sender_keeps);
}

task<void> hand_over_next_receiver(loop& lp) {
  channel<item> ch(lp, 0);
  std::stop_source recv_stop;
  outcome<result<item>> got;
  outcome<result<void>> sent;
  item it = std::make_unique<int>(6);
  spawn(lp, receive_into(&ch, &got, recv_stop.get_token()));
  co_await lp.yield();
  spawn(lp, send_from(&ch, &it, &sent));
  co_await lp.yield();
  REQUIRE_FALSE(got.done());
  recv_stop.request_stop();
  co_await yield_until(lp, [&] { return got.done(); });
  CHECK(got.r->error() == errc::cancelled);
  CHECK_FALSE(sent.done());
  auto r = co_await ch.receive();  // the next receive takes it from the send
  REQUIRE(r);
  CHECK(*r.value() == 6);
  CHECK(it == nullptr);
  co_await yield_until(lp, [&] { return sent.done(); });
  CHECK(sent.r->has_value());
}

TEST_CASE(
    "on a hand-over channel, the item of a send whose woken receive was cancelled goes "
    "to the next receive, and the send succeeds then") {
  evco::test::run_on_loop(hand_over_next_receiver);
}

task<void> hand_over_try_send(loop& lp) {
  channel<item> ch(lp, 0);
  std::stop_source recv_stop;
  outcome<result<item>> got;
  spawn(lp, receive_into(&ch, &got, recv_stop.get_token()));
  co_await lp.yield();
  REQUIRE(ch.try_send(std::make_unique<int>(7)));  // into the channel, for the waiting receive
  CHECK(ch.size() == 1);
  item other = std::make_unique<int>(8);
  CHECK(ch.try_send(std::move(other)).error() == std::errc::resource_unavailable_try_again);
  CHECK(other != nullptr);
  recv_stop.request_stop();
  co_await yield_until(lp, [&] { return got.done(); });
  CHECK(got.r->error() == errc::cancelled);
  CHECK(ch.size() == 1);  // still in the channel
  auto r = ch.try_receive();
  REQUIRE(r);
  CHECK(*r.value() == 7);
  CHECK(ch.size() == 0);
}

TEST_CASE(
    "on a hand-over channel, an item from try_send stays in the channel when the receive "
    "it woke is cancelled before resuming") {
  evco::test::run_on_loop(hand_over_try_send);
}

task<void> woken_frame_destroyed(loop& lp) {
  channel<item> ch(lp, 1);
  outcome<result<item>> next;
  {
    auto recv = [](channel<item>* c) -> task<result<item>> {
      co_return co_await c->receive({1h, std::stop_source().get_token()});
    }(&ch);
    auto h = recv.handle();
    REQUIRE(h.promise().start(h, std::noop_coroutine()));  // parked
    spawn(lp, receive_into(&ch, &next));
    co_await lp.yield();                              // the second receive waits behind it
    REQUIRE(ch.try_send(std::make_unique<int>(12)));  // wakes the first
  }                                                   // destroyed while woken, before it resumed
  CHECK(ch.size() == 1);
  co_await yield_until(lp, [&] { return next.done(); });
  REQUIRE(next.r->has_value());  // the wake-up went to the next receive
  CHECK(*next.r->value() == 12);
}

TEST_CASE(
    "a woken receive whose frame is destroyed before it resumes takes no item, and the "
    "next waiting receive gets it") {
  evco::test::run_on_loop(woken_frame_destroyed);
}

task<void> stolen_then_waits(loop& lp) {
  channel<item> ch(lp, 1);
  outcome<result<item>> first, second;
  spawn(lp, receive_into(&ch, &first, 1h));
  spawn(lp, receive_into(&ch, &second));
  co_await lp.yield();
  REQUIRE(ch.try_send(std::make_unique<int>(9)));  // wakes the first receive...
  auto stolen = ch.try_receive();                  // ... and this takes the item before it
  REQUIRE(stolen);
  CHECK(*stolen.value() == 9);
  for (int i = 0; i < 3; ++i)
    co_await lp.yield();
  CHECK_FALSE(first.done());  // it waits on, still with its deadline
  const auto waiting = lp.parked();
  REQUIRE(waiting.size() == 2);
  CHECK(waiting[0].what == "receive");
  REQUIRE(waiting[0].time_left);
  CHECK(*waiting[0].time_left > 59min);
  REQUIRE(ch.try_send(std::make_unique<int>(10)));  // goes to the first in line
  REQUIRE(ch.try_send(std::make_unique<int>(11)).error() ==
          std::errc::resource_unavailable_try_again);  // full until it resumes
  co_await yield_until(lp, [&] { return first.done(); });
  REQUIRE(ch.try_send(std::make_unique<int>(11)));
  co_await yield_until(lp, [&] { return second.done(); });
  REQUIRE(first.r->has_value());
  CHECK(*first.r->value() == 10);
  REQUIRE(second.r->has_value());
  CHECK(*second.r->value() == 11);
}

TEST_CASE(
    "a woken receive whose item another receive took first waits on, first in line, "
    "with its deadline") {
  evco::test::run_on_loop(stolen_then_waits);
}

// The race the commit point is for: when_any(receive, sleep) whose sleep completes after a send
// woke the receive, in the same loop pass, before the receive resumed. The sleep wins, the
// receive is cancelled through its inherited token, and the item stays in the channel.
task<void> race_receive(loop& lp, channel<item>* ch, evco::duration d,
                        std::variant<result<item>, result<void>>* out, evco::test::signal* done) {
  *out = co_await evco::when_any(ch->receive(), evco::sleep_for(lp, d));
  done->set();
}

task<void> when_any_sleep_wins_in_gap(loop& lp) {
  channel<item> ch(lp, 1);
  std::variant<result<item>, result<void>> r{std::in_place_index<1>, errc::eof};
  evco::test::signal done;
  const auto start = evco::clock::now();
  spawn(lp, race_receive(lp, &ch, 50ms, &r, &done));
  co_await lp.yield();  // the receive waits, the sleep is armed
  // A libevent timer due after the sleep: in the pass that runs both, the sleep completes
  // first, then this wakes the receive, and both resume in that order.
  timed_send sender{&ch};
  event* ev = evtimer_new(lp.native_handle(), &timed_send::fire, &sender);
  REQUIRE(ev != nullptr);
  const timeval later{0, 80000};
  REQUIRE(evtimer_add(ev, &later) == 0);
  REQUIRE(evco::clock::now() - start < 50ms);
  evco::test::busy_for(80ms - (evco::clock::now() - start) + 20ms);  // both due now
  co_await done;
  event_free(ev);
  CHECK(sender.sent);
  REQUIRE(r.index() == 1);  // the sleep won
  CHECK(std::get<1>(r).has_value());
  CHECK(lp.parked().empty());  // the receive was cancelled and awaited
  auto next = ch.try_receive();
  REQUIRE(next);  // and the item it had been woken for is still in the channel
  CHECK(*next.value() == 4);
}

TEST_CASE(
    "when_any(receive, sleep): a sleep that wins after a send woke the receive leaves the "
    "item in the channel") {
  evco::test::run_on_loop(when_any_sleep_wins_in_gap);
}

// The same race, 10,000 times, with a sleep due in the next loop pass and the item sent in
// varying ways: from a libevent timer due in that same pass (so after the sleep completed and
// before the receive resumed), from this coroutine, or before the race starts. Whichever wins,
// the item is received by the race or by the try_receive after it, exactly once.
struct int_timed_send {
  channel<int>* ch;
  int n = 0;
  bool sent = false;
  static void fire(evutil_socket_t, short, void* arg) {
    auto& self = *static_cast<int_timed_send*>(arg);
    self.sent = static_cast<bool>(self.ch->try_send(int(self.n)));
  }
};

using race_result = std::optional<std::variant<result<int>, result<void>>>;

task<void> race_once(loop& lp, channel<int>* ch, race_result* out) {
  *out = co_await evco::when_any(ch->receive(), evco::sleep_for(lp, 0s));
}

task<void> when_any_races(loop& lp, int* received, int* left, int* bad) {
  channel<int> ch(lp, 1);
  int_timed_send sender{&ch};
  event* ev = evtimer_new(lp.native_handle(), &int_timed_send::fire, &sender);
  REQUIRE(ev != nullptr);
  std::uint32_t x = 7;
  auto rnd = [&x](int m) {
    x = x * 1103515245u + 12345u;
    return static_cast<int>((x >> 16) % static_cast<std::uint32_t>(m));
  };
  for (int n = 0; n < 10000; ++n) {
    const int how = rnd(3);
    sender.n = n;
    sender.sent = false;
    if (how == 2 && !ch.try_send(int(n))) ++*bad;  // there before the race
    race_result r;
    spawn(lp, race_once(lp, &ch, &r));
    co_await lp.yield();  // the race has started: its receive waits, unless the item was there
    if (how == 0) {
      const timeval now{0, 0};
      REQUIRE(evtimer_add(ev, &now) == 0);
    } else if (how == 1 && !ch.try_send(int(n))) {
      ++*bad;
    }
    for (int i = 0; i < 1000 && !r; ++i)
      co_await lp.yield();
    REQUIRE(r);
    if (how == 0 && !sender.sent) ++*bad;
    const bool got = r->index() == 0 && std::get<0>(*r) && std::get<0>(*r).value() == n;
    auto rest = ch.try_receive();
    const bool stayed = rest && rest.value() == n;
    if (got == stayed) ++*bad;  // both or neither: doubled or lost
    *received += got;
    *left += stayed;
  }
  event_free(ev);
}

TEST_CASE(
    "10,000 when_any(receive, sleep) races against a send each deliver the item exactly "
    "once") {
  loop lp;
  int received = 0, left = 0, bad = 0;
  lp.run(when_any_races(lp, &received, &left, &bad));
  CHECK(bad == 0);
  CHECK(received + left == 10000);
  MESSAGE("received by the race " << received << ", left in the channel " << left);
}

// Items flowing to three receivers whose receives are cancelled at random points, many of them
// right after the send that woke them; some receives also have tiny deadlines. A receive that
// returns an item although its stop was requested before it resumed is one that when_any would
// have cancelled and whose result it would have dropped: there must be none. Every item must
// reach exactly one receiver, and each receiver must see its items in the order sent.
struct flow {
  static constexpr int items = 10000;
  static constexpr int receivers = 3;
  explicit flow(channel<int>* c) : ch(c) {}
  channel<int>* ch;
  std::vector<int> seen = std::vector<int>(items, 0);
  std::stop_source stops[receivers];
  int received = 0, cancelled = 0, timed_out = 0, out_of_order = 0, bad = 0, ended = 0;
  int after_stop = 0;  // items that a when_any would have dropped
  std::uint32_t x = 12345;
  int rnd(int m) {
    x = x * 1103515245u + 12345u;
    return static_cast<int>((x >> 16) % static_cast<std::uint32_t>(m));
  }
  void stop_one() { stops[rnd(receivers)].request_stop(); }
};

task<void> flow_receiver(flow* f, int k) {
  int last = -1;
  for (;;) {
    f->stops[k] = std::stop_source();
    evco::op_options o(f->stops[k].get_token());
    if (f->rnd(8) == 0) o = evco::op_options(std::chrono::microseconds(f->rnd(30)), o.stop);
    auto r = co_await f->ch->receive(std::move(o));
    if (r && f->stops[k].stop_requested()) {  // nothing ran since it resumed
      ++f->after_stop;
      continue;
    }
    if (r) {
      const int v = r.value();
      if (v < 0 || v >= flow::items) {
        ++f->bad;
        continue;
      }
      ++f->seen[static_cast<std::size_t>(v)];
      ++f->received;
      if (v <= last) ++f->out_of_order;
      last = v;
    } else if (r.error() == errc::cancelled) {
      ++f->cancelled;
    } else if (r.error() == errc::timed_out) {
      ++f->timed_out;
    } else if (r.error() == errc::closed) {
      break;
    } else {
      ++f->bad;
    }
  }
  ++f->ended;
}

task<void> flow_sender(loop& lp, flow* f) {
  for (int i = 0; i < flow::items; ++i) {
    if (f->rnd(2) == 0) {
      if (!f->ch->try_send(int(i))) REQUIRE(co_await f->ch->send(int(i)));
    } else {
      REQUIRE(co_await f->ch->send(int(i)));
    }
    switch (f->rnd(4)) {
      case 0:  // in the gap: the receive just woken has not resumed yet
        f->stop_one();
        break;
      case 1:
        co_await lp.yield();
        f->stop_one();
        break;
      case 2:
        co_await lp.yield();
        break;
      default:
        break;
    }
  }
  f->ch->close();
}

task<void> flow_round(loop& lp, std::size_t capacity) {
  channel<int> ch(lp, capacity);
  flow f(&ch);
  for (int k = 0; k < flow::receivers; ++k)
    spawn(lp, flow_receiver(&f, k));
  spawn(lp, flow_sender(lp, &f));
  // A watchdog in loop passes, not in time: the flow needs a few per item.
  for (int i = 0; i < 100 * flow::items && f.ended < flow::receivers; ++i)
    co_await lp.yield();
  REQUIRE(f.ended == flow::receivers);
  CHECK(f.bad == 0);
  CHECK(f.after_stop == 0);
  CHECK(f.out_of_order == 0);
  CHECK(f.received == flow::items);
  int once = 0;
  for (int n : f.seen)
    once += n == 1;
  CHECK(once == flow::items);
  CHECK(f.cancelled > 0);
  MESSAGE("capacity " << capacity << ": " << f.cancelled << " receives cancelled, " << f.timed_out
                      << " timed out");
}

TEST_CASE(
    "10,000 items to receives cancelled at random, many right after being woken, each "
    "reach exactly one receiver in order") {
  for (std::size_t capacity : {0u, 1u, 3u}) {
    CAPTURE(capacity);
    loop lp;
    lp.run(flow_round(lp, capacity));
  }
}

// ---- try_send and try_receive ---------------------------------------------------------------

task<void> try_ops(loop& lp) {
  channel<item> ch(lp, 1);
  CHECK(ch.try_receive().error() == std::errc::resource_unavailable_try_again);
  REQUIRE(ch.try_send(std::make_unique<int>(1)));
  item it = std::make_unique<int>(2);
  CHECK(ch.try_send(std::move(it)).error() == std::errc::resource_unavailable_try_again);
  CHECK(it != nullptr);  // not moved from: the channel was full
  auto r = ch.try_receive();
  REQUIRE(r);
  CHECK(*r.value() == 1);

  // Hand-over: only to or from a waiting op.
  channel<item> h(lp, 0);
  CHECK(h.try_send(std::move(it)).error() == std::errc::resource_unavailable_try_again);
  CHECK(it != nullptr);
  outcome<result<item>> got;
  spawn(lp, receive_into(&h, &got));
  co_await lp.yield();
  REQUIRE(h.try_send(std::move(it)));
  CHECK(it == nullptr);
  co_await yield_until(lp, [&] { return got.done(); });
  CHECK(*got.r->value() == 2);

  item back = std::make_unique<int>(3);
  outcome<result<void>> sent;
  spawn(lp, send_from(&h, &back, &sent));
  co_await lp.yield();
  auto taken = h.try_receive();
  REQUIRE(taken);
  CHECK(*taken.value() == 3);
  co_await yield_until(lp, [&] { return sent.done(); });
  CHECK(sent.r->has_value());
}

TEST_CASE("try_send and try_receive never wait, and a failed try_send keeps its item") {
  evco::test::run_on_loop(try_ops);
}

// ---- frames and loops destroyed while ops wait ----------------------------------------------

task<void> destroyed_frames(loop& lp) {
  channel<item> ch(lp, 0);
  item it = std::make_unique<int>(4);
  {
    auto recv = [](channel<item>* c) -> task<result<item>> {
      co_return co_await c->receive({1h, std::stop_source().get_token()});
    }(&ch);
    auto h = recv.handle();
    REQUIRE(h.promise().start(h, std::noop_coroutine()));  // parked
  }                                                        // destroyed while parked
  CHECK(ch.try_send(std::move(it)).error() == std::errc::resource_unavailable_try_again);
  {
    auto send = [](channel<item>* c, item* i) -> task<result<void>> {
      co_return co_await c->send(std::move(*i));
    }(&ch, &it);
    auto h = send.handle();
    REQUIRE(h.promise().start(h, std::noop_coroutine()));
  }
  CHECK(ch.try_receive().error() == std::errc::resource_unavailable_try_again);
  REQUIRE(it != nullptr);  // the destroyed send never handed it over
  CHECK(*it == 4);
  co_await lp.yield();
}

TEST_CASE("destroying a frame parked in send or receive unlists it") {
  evco::test::run_on_loop(destroyed_frames);
}

int parkers_started = 0, parkers_resumed = 0;

task<void> park_receive(channel<std::string>* ch, evco::op_options o) {
  ++parkers_started;
  (void)co_await ch->receive(std::move(o));
  ++parkers_resumed;
}

task<void> park_send(channel<std::string>* ch, evco::op_options o) {
  ++parkers_started;
  std::string s(200, 's');  // on the heap: a leak would show
  (void)co_await ch->send(std::move(s), std::move(o));
  ++parkers_resumed;
}

// Owns a channel in its frame and spawns the ops that wait on it: destroyed after them.
task<void> hub(loop& lp, std::stop_token st) {
  channel<std::string> full(lp, 1), empty(lp, 0);
  REQUIRE(full.try_send(std::string(300, 'b')));
  for (int i = 0; i < 3; ++i) {
    spawn(lp, park_send(&full, {}));
    spawn(lp, park_send(&full, {1h, st}));
    spawn(lp, park_receive(&empty, {}));
    spawn(lp, park_receive(&empty, st));
  }
  auto r = co_await empty.receive(1h);
  (void)r;
}

// Spawned before the channels exist, so destroyed after the frame that owns them: by then
// the channels have resumed them with closed, and they sit on the ready list.
struct owned_channels {
  channel<std::string>* full = nullptr;
  channel<std::string>* empty = nullptr;
};

task<void> late_parker(loop& lp, owned_channels* slot, int i, std::stop_token st) {
  while (!slot->full)
    co_await lp.yield();
  if (i % 2) {
    co_await park_send(slot->full, {1h, st});
  } else {
    co_await park_receive(slot->empty, {1h, st});
  }
}

task<void> owner_last(loop& lp, owned_channels* slot) {
  channel<std::string> full(lp, 1), empty(lp, 0);
  REQUIRE(full.try_send(std::string(100, 'o')));
  slot->full = &full;
  slot->empty = &empty;
  auto r = co_await evco::sleep_for(lp, 1h);
  (void)r;
}

TEST_CASE("destroying the loop with sends and receives parked frees everything") {
  std::stop_source src;
  owned_channels slot;
  {
    loop lp;
    spawn(lp, hub(lp, src.get_token()));
    for (int i = 0; i < 4; ++i)
      spawn(lp, late_parker(lp, &slot, i, src.get_token()));
    spawn(lp, owner_last(lp, &slot));
    lp.run([](loop& l) -> task<void> {
      for (int i = 0; i < 5; ++i)
        co_await l.yield();
    }(lp));
    CHECK(parkers_started == 16);
  }
  CHECK(parkers_resumed == 0);
  // LeakSanitizer (the ASan build) checks that every item, frame and limit was freed.
}

// ---- steady state allocates nothing ---------------------------------------------------------

// Sends back every item it receives, until the channel closes.
task<void> echo_items(channel<int>* in, channel<int>* out, evco::op_options o) {
  for (;;) {
    auto r = co_await in->receive(o);
    if (!r) break;
    if (!co_await out->send(std::move(r).value(), o)) break;
  }
}

task<void> round_trips(loop& lp, std::size_t capacity, bool limits, std::size_t* counted) {
  std::stop_source src;
  const evco::op_options o = limits ? evco::op_options(1h, src.get_token()) : evco::op_options();
  channel<int> there(lp, capacity), back(lp, capacity);
  spawn(lp, echo_items(&there, &back, o));
  std::size_t before = 0;
  for (int i = 0; i < 1020; ++i) {
    if (i == 20) before = allocations.load();  // after the warm-up: timer heap, limits pool
    REQUIRE(co_await there.send(int(i), o));
    auto r = co_await back.receive(o);
    REQUIRE(r);
    CHECK(r.value() == i);
  }
  *counted = allocations.load() - before;
  there.close();
  co_await lp.yield();
}

TEST_CASE("a steady-state send and receive round trip allocates nothing") {
  if (!counting_new_active) {
    MESSAGE("operator new cannot be replaced in this build (ThreadSanitizer): not counted");
    return;
  }
  for (std::size_t capacity : {0u, 4u}) {
    for (bool limits : {false, true}) {
      CAPTURE(capacity);
      CAPTURE(limits);
      loop lp;
      std::size_t n = 1;
      lp.run(round_trips(lp, capacity, limits, &n));
      CHECK(n == 0);
    }
  }
}

}  // namespace

TEST_SUITE_END();
