// loop_pool and run_on_threads: loops on threads of their own, SO_REUSEPORT, the first failure,
// stopping (a signal, code, a failure), post.
#include "evco/loop_pool.hpp"

#include <doctest/doctest.h>

#include <signal.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <csignal>
#include <future>
#include <latch>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "evco/listener.hpp"
#include "evco/task_group.hpp"
#include "evco/when_any.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using evco::errc;
using evco::listener;
using evco::loop;
using evco::loop_pool;
using evco::result;
using evco::run_options;
using evco::task;
using evco::test::error_of;

// Each TEST_CASE sits right below the coroutines it runs. Assertions stay on the test's own
// thread: the tasks record what they saw, and run() returning (every thread joined) publishes it.
TEST_SUITE_BEGIN("loop_pool");

namespace {

run_options no_signals() {
  run_options o;
  o.stop_signals = {};
  return o;
}

task<result<void>> fails_with(std::error_code ec) {
  co_return ec;
}

// What a task saw, for the test's thread to check once run() has returned.
struct seen {
  std::thread::id thread;
  const loop* lp = nullptr;
  std::error_code ended;  // how its wait (accept, sleep) ended
  bool stop_inherited = false;
  bool graceful = false;
};

// Waits for ever in a sleep that watches the task's stop token (inherited for fn(lp, index)),
// and `stop`.
task<result<void>> park(loop& lp, seen* me, std::latch* ready, std::stop_token stop = {}) {
  me->thread = std::this_thread::get_id();
  me->lp = &lp;
  if (ready) ready->count_down();
  auto r = co_await evco::sleep_for(lp, std::chrono::hours::max(), std::move(stop));
  me->ended = error_of(r);
  me->stop_inherited = (co_await evco::this_stop_token()).stop_requested();
  co_return r;
}

TEST_CASE("run_on_threads runs each task on a loop and a thread of its own") {
  const auto fds = evco::test::open_fds();
  std::array<seen, 3> s;
  std::vector<std::size_t> order;  // fn is called one loop at a time: no lock needed
  std::vector<std::thread::id> fn_threads;
  std::latch ready(3);
  std::thread stopper;
  loop_pool pool(3, no_signals());
  const auto r = pool.run([&](loop& lp, std::size_t i) {
    order.push_back(i);
    fn_threads.push_back(std::this_thread::get_id());
    if (i == 2)
      stopper = std::thread([&] {
        ready.wait();
        pool.request_stop();
      });
    return park(lp, &s[i], &ready);
  });
  stopper.join();
  CHECK(r.has_value());
  CHECK(order == std::vector<std::size_t>{0, 1, 2});
  std::set<std::thread::id> threads;
  std::set<const loop*> loops;
  for (std::size_t i = 0; i < s.size(); ++i) {
    CHECK(s[i].thread == fn_threads[i]);  // fn ran on its task's thread
    CHECK(s[i].thread != std::this_thread::get_id());
    CHECK(s[i].ended == errc::cancelled);
    CHECK(s[i].stop_inherited);
    threads.insert(s[i].thread);
    loops.insert(s[i].lp);
  }
  CHECK(threads.size() == 3);
  CHECK(loops.size() == 3);
  CHECK(evco::test::open_fds() == fds);
}

TEST_CASE("a pool of 0 loops has one per hardware thread, and at least one") {
  std::atomic<std::size_t> ran{0};
  const auto r = evco::run_on_threads(
      0,
      [&](loop&, std::size_t) -> task<void> {
        ++ran;
        co_return;
      },
      no_signals());
  CHECK(r.has_value());
  CHECK(ran == std::max(1u, std::thread::hardware_concurrency()));
  CHECK(loop_pool(0).size() == ran);
}

// Echoes until the stream ends.
task<void> echo(evco::stream s) {
  std::array<char, 512> buf;
  for (;;) {
    auto n = co_await s.read_some(buf);
    if (!n || !co_await s.write(std::string_view(buf.data(), n.value()))) co_return;
  }
}

struct server_loop {
  std::atomic<int> accepted{0};
  seen s;
};

// fn(lp, index, stop): accepts until `stop`, then gives its connections a grace period.
task<result<void>> echo_server(loop& lp, listener l, std::stop_token stop, server_loop* me) {
  evco::task_group conns(lp);
  for (;;) {
    auto s = co_await l.accept(stop);
    if (!s) {
      me->s.ended = s.error();
      break;
    }
    ++me->accepted;
    EVCO_TRYV(co_await conns.spawn(echo(std::move(s).value())));
  }
  l.close();
  EVCO_TRYV(co_await evco::with_timeout(lp, conns.join(), 5s));
  me->s.graceful = true;
  co_return evco::success();
}

template <std::size_t N>
bool every_loop_accepted(const std::array<server_loop, N>& loops) {
  return std::all_of(loops.begin(), loops.end(),
                     [](const server_loop& l) { return l.accepted > 0; });
}

// Connects, sends, reads the echo back, closes: until every loop has accepted a connection
// (the kernel spreads connections over SO_REUSEPORT listeners by a hash of their addresses).
template <std::size_t N>
task<result<int>> connect_until_every_loop_accepted(loop& lp, std::uint16_t port,
                                                    const std::array<server_loop, N>* loops) {
  const auto ep = evco::endpoint::parse("127.0.0.1", port).value();
  for (int k = 1; k <= 3000; ++k) {
    EVCO_TRY(auto s, co_await evco::connect(lp, ep));
    const std::string out = evco::test::pattern(64 + k % 200, static_cast<unsigned>(k));
    EVCO_TRYV(co_await s.write(out));
    std::string back(out.size(), '\0');
    EVCO_TRYV(co_await s.read_exactly(std::span(back), 10s));
    if (back != out) co_return std::make_error_code(std::errc::bad_message);
    if (every_loop_accepted(*loops)) co_return k;
  }
  co_return std::make_error_code(std::errc::timed_out);
}

TEST_CASE("loops with SO_REUSEPORT listeners on one port share its connections") {
  const auto fds = evco::test::open_fds();
  constexpr std::size_t n = 3;
  std::array<server_loop, n> loops;
  std::uint16_t port = 0;  // loop 0 picks it; fn is called for loops 0, 1, 2 in that order
  std::promise<std::uint16_t> bound;  // the port once every loop listens, 0 if one cannot
  bool told = false;
  std::stop_source stop;
  run_options o;
  o.stop = stop.get_token();
  result<int> connections = 0;
  std::thread client([&] {
    const std::uint16_t p = bound.get_future().get();
    if (p != 0) {
      loop lp;
      connections = lp.run(connect_until_every_loop_accepted(lp, p, &loops));
    }
    stop.request_stop();
  });
  const auto r = evco::run_on_threads(
      n,
      [&](loop& lp, std::size_t i, std::stop_token st) -> task<result<void>> {
        auto l = listener::bind(lp, evco::endpoint::parse("127.0.0.1", port).value(),
                                {.reuse_port = true});
        if (!l) {
          if (!std::exchange(told, true)) bound.set_value(0);
          return fails_with(l.error());
        }
        if (i == 0) port = l.value().local_endpoint().value().port();
        if (i == n - 1 && !std::exchange(told, true)) bound.set_value(port);
        return echo_server(lp, std::move(l).value(), std::move(st), &loops[i]);
      },
      o);
  client.join();
  CHECK_MESSAGE(r.has_value(), error_of(r));
  REQUIRE_MESSAGE(connections.has_value(), error_of(connections));
  MESSAGE("connections until every loop had one: ", connections.value());
  for (const server_loop& l : loops) {
    CHECK(l.accepted > 0);
    CHECK(l.s.ended == errc::cancelled);
    CHECK(l.s.graceful);
  }
  CHECK(evco::test::open_fds() == fds);
}

TEST_CASE("the first task to fail stops the others, and is what run returns") {
  const auto fds = evco::test::open_fds();
  std::array<seen, 3> s;
  std::latch parked(2);
  const auto r = evco::run_on_threads(
      3,
      [&](loop& lp, std::size_t i) -> task<result<void>> {
        if (i != 1) return park(lp, &s[i], &parked);
        return [](std::latch* others) -> task<result<void>> {
          others->wait();  // both others are in their sleep, or about to be
          co_return errc::limit_exceeded;
        }(&parked);
      },
      no_signals());
  CHECK(r.error() == errc::limit_exceeded);
  CHECK(s[0].ended == errc::cancelled);
  CHECK(s[2].ended == errc::cancelled);
  CHECK(evco::test::open_fds() == fds);
}

TEST_CASE("an exception escaping a task is rethrown on the calling thread") {
  std::array<seen, 2> s;
  std::latch parked(1);
  auto run = [&] {
    return evco::run_on_threads(
        2,
        [&](loop& lp, std::size_t i) -> task<result<void>> {
          if (i == 0) return park(lp, &s[0], &parked);
          return [](std::latch* other) -> task<result<void>> {
            other->wait();
            throw std::runtime_error("boom");
            co_return evco::success();
          }(&parked);
        },
        no_signals());
  };
  CHECK_THROWS_WITH_AS((void)run(), "boom", std::runtime_error);
  CHECK(s[0].ended == errc::cancelled);
}

TEST_CASE("a task<void> may be the task, and its exception is rethrown") {
  std::atomic<int> ran{0};
  auto run = [&] {
    return evco::run_on_threads(
        2,
        [&](loop&, std::size_t i) -> task<void> {
          ++ran;
          if (i == 1) throw std::logic_error("void task");
          co_return;
        },
        no_signals());
  };
  CHECK_THROWS_WITH_AS((void)run(), "void task", std::logic_error);
  CHECK(ran == 2);
}

TEST_CASE("an exception from fn is rethrown, and no task starts") {
  std::atomic<int> started{0};
  auto run = [&] {
    return evco::run_on_threads(
        3,
        [&](loop&, std::size_t i) -> task<result<void>> {
          if (i == 1) throw std::invalid_argument("fn");
          return [](std::atomic<int>* st) -> task<result<void>> {
            ++*st;
            co_return evco::success();
          }(&started);
        },
        no_signals());
  };
  CHECK_THROWS_WITH_AS((void)run(), "fn", std::invalid_argument);
  CHECK(started == 0);
}

TEST_CASE("a task ending with errc::cancelled without a stop request has failed") {
  const auto r = evco::run_on_threads(
      2, [](loop&, std::size_t) { return fails_with(errc::cancelled); }, no_signals());
  CHECK(r.error() == errc::cancelled);
}

TEST_CASE("a loop that cannot be made (EMFILE) is the failure, and no task starts") {
  const auto fds = evco::test::open_fds();
  std::size_t per_loop;
  {
    loop lp;
    per_loop = evco::test::open_fds() - fds;
  }
  std::atomic<int> called{0};
  auto fn = [&](loop&, std::size_t) -> task<result<void>> {
    ++called;
    return fails_with({});
  };
  result<void> r = evco::success();
  result<void> with_signals = evco::success();
  {
    evco::test::fd_exhaustion full;
    // Room for one loop (the constructor checks first that 4 descriptors are free): of two
    // threads making theirs at once, at least one cannot.
    for (std::size_t i = 0; i < std::max<std::size_t>(per_loop, 4) && !full.fillers.empty(); ++i) {
      ::close(full.fillers.back());
      full.fillers.pop_back();
    }
    r = evco::run_on_threads(2, fn, no_signals());
    // With signals to watch, the calling thread's loop comes first and takes the room.
    with_signals = evco::run_on_threads(2, fn);
  }
  MESSAGE("descriptors per loop: ", per_loop);
  CHECK(error_of(r) == std::errc::too_many_files_open);
  CHECK(error_of(with_signals) == std::errc::too_many_files_open);
  CHECK(called == 0);
  CHECK(evco::test::open_fds() == fds);
}

void expect_default_disposition(int sig, void (*expected)(int)) {
  struct sigaction now {};
  REQUIRE(sigaction(sig, nullptr, &now) == 0);
  CHECK(reinterpret_cast<void*>(now.sa_handler) == reinterpret_cast<void*>(expected));
}

TEST_CASE("a raised SIGTERM stops every loop gracefully, and SIGTERM's handler is restored") {
  const auto fds = evco::test::open_fds();
  struct sigaction before {};
  REQUIRE(sigaction(SIGTERM, nullptr, &before) == 0);
  constexpr std::size_t n = 2;
  std::array<server_loop, n> loops;
  std::latch listening(n);
  std::thread raiser([&] {
    listening.wait();
    std::raise(SIGTERM);
  });
  const auto r = evco::run_on_threads(n, [&](loop& lp, std::size_t i, std::stop_token st) {
    auto l = listener::bind(lp, evco::endpoint::v4_loopback());
    listening.count_down();
    return l ? echo_server(lp, std::move(l).value(), std::move(st), &loops[i])
             : fails_with(l.error());
  });
  raiser.join();
  CHECK_MESSAGE(r.has_value(), error_of(r));
  for (const server_loop& l : loops) {
    CHECK(l.s.ended == errc::cancelled);
    CHECK(l.s.graceful);
  }
  expect_default_disposition(SIGTERM, before.sa_handler);
  CHECK(evco::test::open_fds() == fds);
}

TEST_CASE("post runs a function on the thread of the loop it names, while that loop runs") {
  constexpr std::size_t n = 3;
  std::array<seen, n> s;
  std::array<std::thread::id, n> ran_on{};
  std::array<bool, n> handed{};
  std::latch ready(n), ran(n);
  loop_pool pool(n, no_signals());
  CHECK_FALSE(pool.post(0, [] {}));  // no loop yet
  std::thread poster([&] {
    ready.wait();
    for (std::size_t i = 0; i < n; ++i) {
      handed[i] = pool.post(i, [&, i] {
        ran_on[i] = std::this_thread::get_id();
        ran.count_down();
      });
    }
    ran.wait();
    pool.request_stop();
  });
  const auto r = pool.run([&](loop& lp, std::size_t i) { return park(lp, &s[i], &ready); });
  poster.join();
  CHECK(r.has_value());
  for (std::size_t i = 0; i < n; ++i) {
    CHECK(handed[i]);
    CHECK(ran_on[i] == s[i].thread);
  }
  CHECK_FALSE(pool.post(1, [] {}));  // its loop is gone
  CHECK_THROWS_AS((void)pool.post(n, [] {}), std::out_of_range);
  CHECK_THROWS_AS((void)pool.post(0, evco::detail::unique_function()), std::invalid_argument);
}

TEST_CASE("a stop requested before run is already requested when each task starts") {
  std::array<seen, 2> s;
  std::array<bool, 2> stopped_at_start{};
  loop_pool pool(2, no_signals());
  pool.request_stop();
  CHECK(pool.stop_requested());
  const auto r = pool.run([&](loop& lp, std::size_t i, std::stop_token st) -> task<result<void>> {
    stopped_at_start[i] = st.stop_requested();
    return park(lp, &s[i], nullptr, std::move(st));  // fn(lp, i, st): nothing inherits st
  });
  CHECK(r.has_value());
  CHECK(stopped_at_start == std::array<bool, 2>{true, true});
  CHECK_THROWS_AS((void)pool.run([](loop&, std::size_t) { return fails_with({}); }),
                  std::logic_error);
}

TEST_CASE("stop signals are checked: one that cannot be caught fails run, and no thread starts") {
  run_options o;
  o.stop_signals = {SIGKILL};
  std::atomic<int> called{0};
  const auto r = evco::run_on_threads(
      2,
      [&](loop&, std::size_t) {
        ++called;
        return fails_with({});
      },
      o);
  CHECK(r.error() == std::errc::invalid_argument);
  CHECK(called == 0);
}

task<result<void>> wait_usr1(loop& lp, std::error_code* got) {
  auto sig = co_await evco::wait_signal(lp, SIGUSR1, std::chrono::nanoseconds(-1));
  *got = error_of(sig);
  co_return evco::success();
}

TEST_CASE("while the pool watches stop signals, its loops cannot wait for signals") {
  std::array<std::error_code, 2> got;
  const auto r =
      evco::run_on_threads(2, [&](loop& lp, std::size_t i) { return wait_usr1(lp, &got[i]); });
  CHECK(r.has_value());
  CHECK(got[0] == std::errc::device_or_resource_busy);
  CHECK(got[1] == std::errc::device_or_resource_busy);
}

}  // namespace

TEST_SUITE_END();
