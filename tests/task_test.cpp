#include "evco/task.hpp"

#include <doctest/doctest.h>

#include <stdexcept>
#include <string>

#include "evco/loop.hpp"
#include "support.hpp"

using evco::task;

// Each TEST_CASE sits right below the coroutine it runs.
TEST_SUITE_BEGIN("task");

namespace {

// ---- awaiting -------------------------------------------------------------------------------

task<int> one() {
  co_return 1;
}

task<long> sum(int n) {
  long s = 0;
  for (int i = 0; i < n; ++i)
    s += co_await one();
  co_return s;
}

TEST_CASE("a million awaits of tasks that finish synchronously do not grow the stack") {
  evco::loop lp;
  CHECK(lp.run(sum(1'000'000)) == 1'000'000);
}

task<int> nested(int depth) {
  if (depth == 0) co_return 0;
  co_return 1 + co_await nested(depth - 1);
}

TEST_CASE("a chain of nested awaits returns every level's value") {
  evco::loop lp;
  CHECK(lp.run(nested(1000)) == 1000);
}

// ---- exceptions -----------------------------------------------------------------------------

struct throws_when_destroyed {
  ~throws_when_destroyed() noexcept(false) { throw std::runtime_error("destructor"); }
};

// The value is stored by co_return; then a local's destructor throws: the exception wins and
// the value is freed (LeakSanitizer would see it otherwise).
evco::task<std::string> value_then_throw() {
  throws_when_destroyed local;
  co_return std::string(200, 'x');
}

TEST_CASE("an exception thrown after co_return stored the value replaces it, leaking nothing") {
  evco::loop lp;
  CHECK_THROWS_AS(lp.run(value_then_throw()), std::runtime_error);
}

task<int> throws() {
  throw std::runtime_error("boom");
  co_return 0;
}

task<std::string> catches() {
  try {
    co_await throws();
  } catch (const std::runtime_error& e) {
    co_return e.what();
  }
  co_return "not thrown";
}

TEST_CASE("an exception thrown inside a task propagates to its awaiter") {
  evco::loop lp;
  CHECK(lp.run(catches()) == "boom");
  CHECK_THROWS_AS(lp.run(throws()), std::runtime_error);
}

// ---- frames and their lifetime --------------------------------------------------------------

struct counted {
  int* alive;
  explicit counted(int* a) : alive(a) { ++*alive; }
  counted(const counted& o) : alive(o.alive) { ++*alive; }
  ~counted() { --*alive; }
};

task<int> holds(counted c, bool* started) {
  *started = true;
  co_return *c.alive;
}

TEST_CASE("tasks are lazy: nothing runs until awaited") {
  int alive = 0;
  bool started = false;
  {
    auto t = holds(counted(&alive), &started);
    CHECK(alive == 1);
    CHECK_FALSE(started);
    evco::loop lp;
    CHECK(lp.run(std::move(t)) == 1);
    CHECK(started);
  }
  CHECK(alive == 0);
}

TEST_CASE("destroying an unstarted task frees its frame and parameters") {
  int alive = 0;
  bool started = false;
  {
    auto t = holds(counted(&alive), &started);
    CHECK(alive == 1);
  }
  CHECK(alive == 0);
  CHECK_FALSE(started);
}

// Parks forever: only destroying the frame ends it.
struct park_forever {
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<>) const noexcept {}
  void await_resume() const noexcept {}
};

task<void> parked_inner(counted c) {
  co_await park_forever{};
  (void)c;
}

task<void> parked_outer(counted c, int* alive) {
  auto inner = parked_inner(counted(alive));
  co_await std::move(inner);
  (void)c;
}

TEST_CASE("destroying a suspended task frees its frame and every frame it awaits") {
  int alive = 0;
  {
    auto t = parked_outer(counted(&alive), &alive);
    auto h = t.handle();
    CHECK(h.promise().start(h, std::noop_coroutine()));  // suspended, not finished
    CHECK(alive == 2);
  }
  CHECK(alive == 0);
}

task<void> nothing() {
  co_return;
}

TEST_CASE("task<void> completes and moved-from tasks are empty") {
  evco::loop lp;
  auto t = nothing();
  auto u = std::move(t);
  CHECK_FALSE(t.valid());
  CHECK(u.valid());
  lp.run(std::move(u));
  CHECK_THROWS_AS(lp.run(task<void>{}), std::invalid_argument);
}

}  // namespace

TEST_SUITE_END();
