#include "evco/loop.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <csignal>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "evco/timer.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using evco::loop;
using evco::task;

// Each TEST_CASE sits right below the coroutine it runs.
TEST_SUITE_BEGIN("loop");

namespace {

// ---- helpers shared by several tests --------------------------------------------------------

task<int> answer() {
  co_return 42;
}

task<void> set_flag(bool* flag) {
  *flag = true;
  co_return;
}

task<void> fail_with_exception() {
  throw std::logic_error("spawned failure");
  co_return;
}

struct counted {
  int* alive;
  explicit counted(int* a) : alive(a) { ++*alive; }
  counted(const counted& o) : alive(o.alive) { ++*alive; }
  ~counted() { --*alive; }
};

task<void> sleep_long(loop& lp, counted c) {
  (void)co_await evco::sleep_for(lp, 1h);
  (void)c;
}

// One trip through the loop (a zero-length sleep): what was spawned before it gets to run.
task<void> yield_once(loop& lp) {
  (void)co_await evco::sleep_for(lp, 0ms);
}

// ---- bad arguments and construction ---------------------------------------------------------

TEST_CASE("empty tasks and functions are refused with invalid_argument, not a crash") {
  loop lp;
  CHECK_THROWS_AS(lp.spawn(task<void>{}, [](std::exception_ptr) {}), std::invalid_argument);
  CHECK_THROWS_AS(lp.spawn(task<evco::result<void>>{}, [](std::error_code) {}),
                  std::invalid_argument);
  CHECK_THROWS_AS(lp.post(evco::detail::unique_function{}), std::invalid_argument);
  struct awaits_empty {
    static task<void> run() { co_await task<void>{}; }
  };
  CHECK_THROWS_AS(lp.run(awaits_empty::run()), std::invalid_argument);
}

TEST_CASE("a loop made with no file descriptor free throws system_error, not exit") {
  std::error_code ec;
  {
    evco::test::fd_exhaustion full;
    try {
      loop lp;
      FAIL("the loop was made");
    } catch (const std::system_error& e) {
      ec = e.code();
    }
  }
  CHECK(ec == std::errc::too_many_files_open);
  loop lp;  // with descriptors back, it works
  CHECK(lp.native_handle() != nullptr);
}

// ---- run ------------------------------------------------------------------------------------

TEST_CASE("run returns the task's value or rethrows its exception") {
  loop lp;
  CHECK(lp.run(answer()) == 42);
  CHECK_THROWS_AS(lp.run(fail_with_exception()), std::logic_error);
}

TEST_CASE("run called from a coroutine on the same loop throws instead of re-entering") {
  loop lp;
  struct nested {
    static task<int> run(loop* l) { co_return l->run(answer()); }
  };
  CHECK_THROWS_AS(lp.run(nested::run(&lp)), std::logic_error);
}

// ---- spawn ----------------------------------------------------------------------------------

template <class L>
concept can_spawn_without_sink = requires(L& l, task<void> t) {
  l.spawn(std::move(t));
};
static_assert(!can_spawn_without_sink<loop>, "a spawn must name where its failures go");

TEST_CASE("spawn starts the task from the loop, not inline") {
  loop lp;
  bool ran = false;
  lp.spawn(set_flag(&ran), [](std::exception_ptr) { FAIL("no failure expected"); });
  CHECK_FALSE(ran);
  lp.run(yield_once(lp));
  CHECK(ran);
}

task<evco::result<void>> fail_with_error() {
  co_return evco::errc::limit_exceeded;
}

TEST_CASE("a spawned task's exception or error reaches its sink") {
  loop lp;
  std::string what;
  std::error_code ec;
  lp.spawn(fail_with_exception(), [&](std::exception_ptr e) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      what = x.what();
    }
  });
  lp.spawn(fail_with_error(), [&](std::error_code e) { ec = e; });
  lp.run(yield_once(lp));
  CHECK(what == "spawned failure");
  CHECK(ec == evco::errc::limit_exceeded);
}

task<evco::result<void>> succeed() {
  co_return evco::success();
}

task<evco::result<void>> fail_after_sleep(loop& lp, counted c) {
  (void)co_await evco::sleep_for(lp, 0ms);
  (void)c;
  co_return evco::errc::closed;
}

task<void> throw_after_sleep(loop& lp, counted c) {
  (void)co_await evco::sleep_for(lp, 0ms);
  (void)c;
  throw std::logic_error("after a sleep");
}

TEST_CASE("a sink is called once for a failure, never for a success, and goes with the task") {
  loop lp;
  int alive = 0, failing_alive = 0;
  int exceptions = 0, errors = 0, successes = 0;
  bool ran = false;
  auto held = std::make_shared<int>(0);  // the sinks hold it: it counts the sinks alive
  lp.spawn(set_flag(&ran), [held, &successes](std::exception_ptr) { ++successes; });
  lp.spawn(succeed(), [held, &successes](std::error_code) { ++successes; });
  lp.spawn(throw_after_sleep(lp, counted(&alive)),
           [held, &exceptions](std::exception_ptr) { ++exceptions; });
  lp.spawn(fail_after_sleep(lp, counted(&failing_alive)),
           [held, &errors, &failing_alive](std::error_code e) {
             CHECK(e == evco::errc::closed);
             CHECK(failing_alive == 1);  // the sink runs before the frame goes, as it always did
             ++errors;
           });
  CHECK(held.use_count() == 5);
  lp.run(yield_once(lp));
  lp.run(yield_once(lp));
  CHECK(ran);
  CHECK(successes == 0);
  CHECK(exceptions == 1);
  CHECK(errors == 1);
  CHECK(alive + failing_alive == 0);  // every frame ended and went, the loop still alive
  CHECK(held.use_count() == 1);       // and so did every sink
}

// ThreadSanitizer does not support fork() in a process that has run threads: a child may die
// its way rather than of SIGABRT. The TSan build, which runs this suite for its threads, leaves
// the cases that fork to the other builds.
#if defined(__SANITIZE_THREAD__)
#define EVCO_TEST_NO_FORK
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define EVCO_TEST_NO_FORK
#endif
#endif
#ifdef EVCO_TEST_NO_FORK
constexpr bool can_fork = false;
#else
constexpr bool can_fork = true;
#endif

// Runs `body` in a child process: whether it died of SIGABRT (std::terminate), and what it
// wrote to stderr.
template <class F>
std::pair<bool, std::string> run_aborts(F body) {
  evco::test::stderr_capture err;
  std::fflush(nullptr);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    const rlimit no_core{0, 0};
    ::setrlimit(RLIMIT_CORE, &no_core);
    body();
    _exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  return {WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, err.text()};
}

task<evco::result<void>> throw_from_result_task() {
  throw std::logic_error("not an error value");
  co_return evco::success();
}

TEST_CASE("an exception escaping a spawned task<result<void>> terminates, and is printed") {
  if (!can_fork) {
    MESSAGE("ThreadSanitizer: no fork, not run");
    return;
  }
  auto [aborted, text] = run_aborts([] {
    loop lp;
    lp.spawn(throw_from_result_task(), [](std::error_code) { _exit(1); });
    lp.run(yield_once(lp));
  });
  CHECK(aborted);
  CHECK(text.find("evco: exception escaped a spawned task: not an error value") !=
        std::string::npos);
}

TEST_CASE("a sink that throws terminates, and its exception is printed") {
  if (!can_fork) {
    MESSAGE("ThreadSanitizer: no fork, not run");
    return;
  }
  SUBCASE("an exception sink") {
    auto [aborted, text] = run_aborts([] {
      loop lp;
      lp.spawn(fail_with_exception(), [](std::exception_ptr) { throw std::runtime_error("sink"); });
      lp.run(yield_once(lp));
    });
    CHECK(aborted);
    CHECK(text.find("evco: exception escaped a spawned task: sink") != std::string::npos);
  }
  SUBCASE("an error sink, of a task that failed after it parked") {
    auto [aborted, text] = run_aborts([] {
      loop lp;
      int alive = 0;
      lp.spawn(fail_after_sleep(lp, counted(&alive)),
               [](std::error_code) { throw std::runtime_error("error sink"); });
      lp.run(yield_once(lp));
      lp.run(yield_once(lp));
    });
    CHECK(aborted);
    CHECK(text.find("evco: exception escaped a spawned task: error sink") != std::string::npos);
  }
}

// ---- destroying a loop ----------------------------------------------------------------------

TEST_CASE("destroying a loop destroys every spawned frame still parked on it") {
  int alive = 0;
  {
    loop lp;
    for (int i = 0; i < 10; ++i) {
      lp.spawn(sleep_long(lp, counted(&alive)), [](std::exception_ptr) {});
    }
    lp.run(yield_once(lp));
    CHECK(alive == 10);
  }
  CHECK(alive == 0);
}

TEST_CASE("a spawned frame that was never started is destroyed with the loop") {
  int alive = 0;
  {
    loop lp;
    lp.spawn(sleep_long(lp, counted(&alive)), [](std::exception_ptr) {});
    CHECK(alive == 1);
  }
  CHECK(alive == 0);
}

task<void> yield_forever(loop& lp, counted c) {
  for (int i = 0; i < 1000000; ++i)
    co_await lp.yield();
  (void)c;
}

TEST_CASE("destroying a loop destroys a frame parked in yield") {
  int alive = 0;
  {
    loop lp;
    lp.spawn(yield_forever(lp, counted(&alive)), [](std::exception_ptr) {});
    lp.run(yield_once(lp));
    CHECK(alive == 1);
  }
  CHECK(alive == 0);
}

// ---- yield, and I/O among coroutines that never block ---------------------------------------

task<void> yield_after_ready(loop& lp, bool* a, bool* b) {
  lp.spawn(set_flag(a), [](std::exception_ptr) { FAIL("a"); });
  lp.spawn(set_flag(b), [](std::exception_ptr) { FAIL("b"); });
  CHECK_FALSE(*a);
  co_await lp.yield();
}

TEST_CASE("yield resumes the caller after the coroutines already ready") {
  loop lp;
  bool a = false, b = false;
  lp.run(yield_after_ready(lp, &a, &b));
  CHECK(a);
  CHECK(b);
}

// Yields until `flag` is set, at most `limit` times; counts the yields.
task<void> yield_until(loop& lp, const bool* flag, int limit, int* yields) {
  while (!*flag && *yields < limit) {
    ++*yields;
    co_await lp.yield();
  }
}

// Posts itself again until `flag` is set, at most `limit` times.
struct post_chain {
  loop* lp;
  const bool* flag;
  int limit;
  int posts = 0;
  void next() {
    if (*flag || posts >= limit) return;
    ++posts;
    lp->post([this] { next(); });
  }
};

task<void> read_one_byte(evco::stream* s, bool* got) {
  char c = 0;
  auto r = co_await s->read_some(std::span(&c, 1));
  REQUIRE_MESSAGE(r, evco::test::error_of(r));
  *got = c == 'x';
}

// A byte waits in the socket while the loop is kept busy by coroutines that never block.
task<void> io_while_busy(loop& lp, bool by_posts) {
  auto p = co_await evco::test::connected_pair(lp);
  REQUIRE(co_await p.client.write("x"));
  bool got = false;
  lp.spawn(read_one_byte(&p.server, &got), [](std::exception_ptr) { FAIL("reader"); });
  constexpr int limit = 100000;
  if (by_posts) {
    post_chain chain{&lp, &got, limit};
    chain.next();
    while (!got && chain.posts < limit)
      co_await lp.yield();
    CHECK(chain.posts < limit);
  } else {
    int yields = 0;
    co_await yield_until(lp, &got, limit, &yields);
    CHECK(yields < limit);
  }
  CHECK(got);
}

TEST_CASE("coroutines that never block do not starve a socket waiting to be read") {
  loop lp;
  SUBCASE("one that keeps yielding") {
    lp.run(io_while_busy(lp, false));
  }
  SUBCASE("a callable that keeps posting itself") {
    lp.run(io_while_busy(lp, true));
  }
}

// ---- other threads --------------------------------------------------------------------------

task<void> stop_from_thread(std::stop_source* src, std::thread* th) {
  *th = std::thread([src] { src->request_stop(); });
  co_return;
}

// The stop callback runs on another thread while the read is parked on the loop's.
task<void> cancel_stream_read_from_thread(loop& lp) {
  auto p = co_await evco::test::connected_pair(lp);
  for (int round = 0; round < 20; ++round) {
    std::stop_source src;
    std::thread th;
    lp.spawn(stop_from_thread(&src, &th), [](std::exception_ptr) { FAIL("stopper"); });
    char c = 0;
    auto r = co_await p.server.read_some(std::span(&c, 1), src.get_token());
    th.join();
    REQUIRE_FALSE(r);
    CHECK(r.error() == evco::errc::cancelled);
  }
  REQUIRE(co_await p.client.write("x"));
  char c = 0;
  auto r = co_await p.server.read_some(std::span(&c, 1));
  REQUIRE_MESSAGE(r, evco::test::error_of(r));
  CHECK(c == 'x');
}

TEST_CASE("a stop requested from another thread cancels a parked stream read") {
  evco::test::run_on_loop(cancel_stream_read_from_thread);
}

// Resumed by a callable that another thread posts.
struct resumed_by_thread {
  loop& lp;
  std::thread* th;
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) {
    *th = std::thread([this, h] { lp.post([h] { h.resume(); }); });
  }
  void await_resume() const noexcept {}
};

task<std::thread::id> hop(loop& lp, std::thread* th) {
  co_await resumed_by_thread{lp, th};
  co_return std::this_thread::get_id();
}

TEST_CASE("post from another thread wakes the loop and runs on the loop's thread") {
  loop lp;
  std::thread th;
  const auto id = lp.run(hop(lp, &th));
  th.join();
  CHECK(id == std::this_thread::get_id());
}

// Counts posted ticks on the loop thread; the waiting coroutine resumes at the target.
struct counter {
  int target;
  int count = 0;
  std::coroutine_handle<> waiting;
  void tick() {
    if (++count == target && waiting) waiting.resume();
  }
  bool await_ready() const noexcept { return count >= target; }
  void await_suspend(std::coroutine_handle<> h) noexcept { waiting = h; }
  void await_resume() const noexcept {}
  static task<void> wait(counter* c) { co_await *c; }
};

TEST_CASE("posts from several threads all run, none lost") {
  loop lp;
  constexpr int per_thread = 2000;
  counter c{2 * per_thread, 0, {}};
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&] {
      while (!go.load())
        std::this_thread::yield();
      for (int i = 0; i < per_thread; ++i)
        lp.post([&c] { c.tick(); });
    });
  }
  go = true;
  lp.run(counter::wait(&c));
  for (auto& t : threads)
    t.join();
  CHECK(c.count == 2 * per_thread);
}

}  // namespace

TEST_SUITE_END();
