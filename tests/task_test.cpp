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

// ---- awaitables of every shape pass through task's await_transform unchanged ----------------

namespace {

// Records the object that await_suspend and await_resume ran on: the one co_awaited, never a
// copy (g++ 12 copies an awaiter that await_transform returns by reference).
struct self_aware {
  const self_aware* suspended_on = nullptr;
  const self_aware* resumed_on = nullptr;
  bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<>) noexcept {
    suspended_on = this;
    return false;  // go on at once
  }
  const self_aware* await_resume() noexcept {
    resumed_on = this;
    return this;
  }
};

// Neither copyable nor movable, as evco's own ops are.
struct pinned {
  explicit pinned(int v) : value(v) {}
  pinned(const pinned&) = delete;
  pinned& operator=(const pinned&) = delete;
  bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<>) noexcept { return false; }
  int await_resume() const noexcept { return value; }
  int value;
};

struct ref_awaiter {
  int* target;
  bool await_ready() const noexcept { return true; }
  void await_suspend(std::coroutine_handle<>) noexcept {}
  int& await_resume() const noexcept { return *target; }
};

// operator co_await as a member, by value category, and as a free function found by ADL.
struct member_co_await {
  int value;
  ref_awaiter operator co_await() & { return {&value}; }
  pinned operator co_await() && { return pinned(value + 1); }
};
struct free_co_await {
  int value;
};
pinned operator co_await(const free_co_await& f) {
  return pinned(f.value * 10);
}

task<std::string> move_only_result() {
  co_return std::string("moved");
}

task<void> awaits_every_shape() {
  self_aware lvalue;
  const self_aware* resumed = co_await lvalue;
  CHECK(lvalue.suspended_on == &lvalue);
  CHECK(lvalue.resumed_on == &lvalue);
  CHECK(resumed == &lvalue);

  const self_aware* temporary = co_await self_aware{};
  CHECK(temporary != nullptr);

  const int pinned_value = co_await pinned(7);
  CHECK(pinned_value == 7);

  int x = 1;
  int& r = co_await ref_awaiter{&x};
  CHECK(&r == &x);

  member_co_await m{5};
  int& mr = co_await m;  // the lvalue overload
  CHECK(&mr == &m.value);
  const int from_rvalue = co_await member_co_await{5};  // the rvalue one
  CHECK(from_rvalue == 6);
  const int from_free = co_await free_co_await{3};
  CHECK(from_free == 30);
  const free_co_await cf{4};
  const int from_const = co_await cf;
  CHECK(from_const == 40);

  auto t = move_only_result();
  std::string named = co_await std::move(t);
  CHECK(named == "moved");
  std::string unnamed = co_await move_only_result();
  CHECK(unnamed == "moved");
  co_await std::suspend_never{};
}

}  // namespace

TEST_CASE("a task awaits lvalue, temporary, pinned and operator co_await awaitables unchanged") {
  evco::loop lp;
  lp.run(awaits_every_shape());
}

TEST_SUITE_END();
