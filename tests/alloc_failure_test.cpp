// libevent's allocations fail one at a time, at every point of a connect / accept / echo /
// close cycle and of a loop's construction, and OpenSSL's at points spread over a TLS cycle
// (contexts, handshake, echo): each failure is an error value (or std::system_error from the
// loop's constructor), never an exit, a crash, a hang or a leak.

#include <doctest/doctest.h>

#include <event2/event.h>
#include <openssl/crypto.h>

#include <array>
#include <atomic>
#include <cstdlib>
#include <new>
#include <string>
#include <system_error>

#include "pki.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using evco::loop;
using evco::task;

// Each TEST_CASE sits right below the coroutine it runs.
TEST_SUITE_BEGIN("alloc_failure");

namespace {

// ---- allocators that fail on request --------------------------------------------------------

// Counts libevent's allocations down; the one that reaches zero fails (only that one).
std::atomic<long> countdown{-1};

bool fail_now() noexcept {
  long n = countdown.load(std::memory_order_relaxed);
  while (n > 0 && !countdown.compare_exchange_weak(n, n - 1, std::memory_order_relaxed)) {
  }
  return n == 1;
}

void* fallible_malloc(std::size_t n) {
  return fail_now() ? nullptr : std::malloc(n);
}
void* fallible_realloc(void* p, std::size_t n) {
  return fail_now() ? nullptr : std::realloc(p, n);
}

// OpenSSL's allocations, counted down apart from libevent's.
std::atomic<long> ssl_countdown{-1};
std::atomic<long> ssl_allocations{0};

bool ssl_fail_now() noexcept {
  ssl_allocations.fetch_add(1, std::memory_order_relaxed);
  long n = ssl_countdown.load(std::memory_order_relaxed);
  while (n > 0 && !ssl_countdown.compare_exchange_weak(n, n - 1, std::memory_order_relaxed)) {
  }
  return n == 1;
}
void* ssl_malloc(std::size_t n, const char*, int) {
  return ssl_fail_now() ? nullptr : std::malloc(n);
}
void* ssl_realloc(void* p, std::size_t n, const char*, int) {
  return ssl_fail_now() ? nullptr : std::realloc(p, n);
}
void ssl_free(void* p, const char*, int) {
  std::free(p);
}

// Before main: libevent and OpenSSL take their allocators only before their first allocation.
const bool installed = [] {
  event_set_mem_functions(fallible_malloc, fallible_realloc, std::free);
  return CRYPTO_set_mem_functions(ssl_malloc, ssl_realloc, ssl_free) == 1;
}();

// Fails the k-th libevent allocation from now on; true once k was never reached.
struct injection {
  explicit injection(long k) { countdown.store(k, std::memory_order_relaxed); }
  bool unused() const { return countdown.load(std::memory_order_relaxed) > 0; }
  ~injection() { countdown.store(-1, std::memory_order_relaxed); }
};

// ---- a loop's construction ------------------------------------------------------------------

TEST_CASE("a libevent allocation failing while a loop is made throws system_error") {
  REQUIRE(installed);
  { loop warm_up; }  // libevent's one-time allocations (threading) are done
  int failures = 0;
  for (long k = 1; k < 200; ++k) {
    CAPTURE(k);
    injection inject(k);
    try {
      loop lp;
      if (inject.unused()) break;  // every allocation of a loop was tried
    } catch (const std::system_error& e) {
      ++failures;
      CHECK(e.code() == std::errc::not_enough_memory);
    }
  }
  CHECK(failures > 0);
}

// ---- a connect/accept/echo cycle ------------------------------------------------------------

struct outcome {
  bool completed = false;  // the echo went through
  std::error_code error;   // or why not
};

task<void> echo_cycle(loop& lp, outcome* out) {
  auto fail = [out](std::error_code ec) { out->error = ec; };
  auto l = evco::listener::bind(lp, evco::endpoint::v4_loopback());
  if (!l) co_return fail(l.error());
  auto ep = l.value().local_endpoint();
  if (!ep) co_return fail(ep.error());
  auto c = co_await evco::connect(lp, ep.value(), {.timeout = 2s});
  if (!c) co_return fail(c.error());
  auto s = co_await l.value().accept(2s);
  if (!s) co_return fail(s.error());
  // Two messages at once: the first read reads the second ahead into the input buffer.
  if (auto w = co_await c.value().write("pingpong", 2s); !w) co_return fail(w.error());
  for (const std::string_view expected : {"ping", "pong"}) {
    std::string buf(4, '\0');
    if (auto r = co_await s.value().read_exactly(std::span<char>(buf), 2s); !r) {
      co_return fail(r.error());
    }
    if (buf != expected) co_return fail(std::make_error_code(std::errc::protocol_error));
  }
  out->completed = true;
}

TEST_CASE("a libevent allocation failing anywhere in a connect/accept/echo cycle is a value") {
  REQUIRE(installed);
  int failed = 0;
  long k = 1;
  for (; k < 400; ++k) {
    CAPTURE(k);
    loop lp;
    outcome out;
    bool unused = false;
    {
      injection inject(k);
      try {
        lp.run(echo_cycle(lp, &out));
      } catch (const std::bad_alloc&) {
        out.error = std::make_error_code(std::errc::not_enough_memory);
      }
      unused = inject.unused();
    }
    if (unused) {
      CHECK(out.completed);
      break;
    }
    // A cycle that hit the failure either got through (the failure was somewhere it could
    // be retried or did not matter) or says why not; a timeout would mean a lost wake-up.
    if (!out.completed) {
      ++failed;
      CHECK_MESSAGE(out.error != std::errc::timed_out, out.error);
      CHECK(out.error);
    }
  }
  MESSAGE("failed one by one the " << k - 1 << " allocations of a cycle; " << failed
                                   << " cycles ended in an error");
  CHECK(k < 400);
  CHECK(failed > 0);
}

// ---- a datagram cycle -----------------------------------------------------------------------

// Two sockets; a receive that waits and times out, one that waits for a datagram, a batch.
task<void> datagram_cycle(loop& lp, outcome* out) {
  auto fail = [out](std::error_code ec) { out->error = ec; };
  auto a = evco::datagram::bind(lp, evco::endpoint::v4_loopback());
  if (!a) co_return fail(a.error());
  auto b = evco::datagram::bind(lp, evco::endpoint::v4_loopback());
  if (!b) co_return fail(b.error());
  auto to = b.value().local_endpoint();
  if (!to) co_return fail(to.error());
  std::array<std::byte, 8> buf;
  // Parks (nothing is there), and its deadline is the expected end.
  if (auto r = co_await b.value().receive_from(buf, 10ms);
      r || r.error() != evco::errc::timed_out) {
    co_return fail(r ? std::make_error_code(std::errc::protocol_error) : r.error());
  }
  if (auto s = co_await a.value().send_to("ping", to.value()); !s) co_return fail(s.error());
  // After a wait, a receive waits for readiness first: the datagram is there by then.
  auto r = co_await b.value().receive_from(buf, 2s);
  if (!r) co_return fail(r.error());
  if (r.value().size != 4) co_return fail(std::make_error_code(std::errc::protocol_error));
  if (auto s = co_await a.value().send_to("pong", to.value()); !s) co_return fail(s.error());
  evco::datagram_slot slot(buf);
  auto n = co_await b.value().receive_batch(std::span(&slot, 1), 2s);
  if (!n) co_return fail(n.error());
  out->completed = n.value() == 1 && slot.size == 4;
}

TEST_CASE("a libevent allocation failing anywhere in a datagram cycle is a value") {
  REQUIRE(installed);
  int failed = 0;
  long k = 1;
  for (; k < 200; ++k) {
    CAPTURE(k);
    loop lp;
    outcome out;
    bool unused = false;
    {
      injection inject(k);
      try {
        lp.run(datagram_cycle(lp, &out));
      } catch (const std::bad_alloc&) {
        out.error = std::make_error_code(std::errc::not_enough_memory);
      }
      unused = inject.unused();
    }
    if (unused) {
      CHECK(out.completed);
      break;
    }
    if (!out.completed) {
      ++failed;
      CHECK_MESSAGE(out.error == std::errc::not_enough_memory, out.error);
    }
  }
  MESSAGE("failed one by one the " << k - 1 << " allocations of a cycle; " << failed
                                   << " cycles ended in an error");
  CHECK(k < 200);
  CHECK(failed > 0);
}

// ---- a TLS cycle ----------------------------------------------------------------------------

struct tls_outcome {
  bool completed = false;
  std::error_code error;
};

task<void> tls_server_side(evco::listener* l, tls_outcome* out, evco::test::signal* done) {
  auto fail = [&](std::error_code ec) {
    out->error = ec;
    done->set();
  };
  auto s = co_await l->accept(2s);
  if (!s) co_return fail(s.error());
  auto ctx =
      evco::tls_context::server(evco::test::certs().cert("good"), evco::test::certs().key("good"));
  if (!ctx) co_return fail(ctx.error());
  auto t = co_await evco::tls_server(std::move(s).value(), ctx.value(), 500ms);
  if (!t) co_return fail(t.error());
  std::string buf(4, '\0');
  if (auto r = co_await t.value().read_exactly(std::span<char>(buf), 1s); !r) {
    co_return fail(r.error());
  }
  out->completed = buf == "ping";
  done->set();
}

task<void> tls_client_side(loop& lp, evco::endpoint ep, tls_outcome* out) {
  auto fail = [out](std::error_code ec) { out->error = ec; };
  auto c = co_await evco::connect(lp, ep, {.timeout = 2s});
  if (!c) co_return fail(c.error());
  evco::tls_client_options o;
  o.ca_file = evco::test::certs().ca;
  auto ctx = evco::tls_context::client(o);
  if (!ctx) co_return fail(ctx.error());
  auto t = co_await evco::tls_client(std::move(c).value(), ctx.value(), "localhost", 500ms);
  if (!t) co_return fail(t.error());
  if (auto w = co_await t.value().write("ping", 1s); !w) co_return fail(w.error());
  if (auto d = co_await t.value().drain(1s); !d) co_return fail(d.error());
  out->completed = true;
}

// Both ends of a TLS connection on one loop: contexts, handshakes, one message.
task<void> tls_cycle(loop& lp, tls_outcome* client, tls_outcome* server) {
  auto l = evco::listener::bind(lp, evco::endpoint::v4_loopback());
  REQUIRE(l);  // libevent's allocations do not fail here
  evco::test::signal server_done;
  lp.spawn(tls_server_side(&l.value(), server, &server_done),
           [](std::exception_ptr) { FAIL("server"); });
  co_await tls_client_side(lp, l.value().local_endpoint().value(), client);
  co_await server_done;
}

TEST_CASE("an OpenSSL allocation failing in a TLS cycle is an error value on either end") {
  REQUIRE(installed);
  (void)evco::test::certs();  // made before anything fails
  std::error_code server_error;
  {
    loop lp;
    tls_outcome client, server;
    ssl_allocations = 0;
    lp.run(tls_cycle(lp, &client, &server));
    REQUIRE(client.completed);
    REQUIRE(server.completed);
  }
  const long total = ssl_allocations.load();
  const long stride = std::max<long>(1, total / 150);
  int failed = 0;
  for (long k = 1; k <= total; k += stride) {
    CAPTURE(k);
    loop lp;
    tls_outcome client, server;
    ssl_countdown = k;
    lp.run(tls_cycle(lp, &client, &server));
    ssl_countdown = -1;
    if (!client.completed || !server.completed) {
      ++failed;
      // The end that failed says why; nothing crashed, exited or hung past its budget.
      CHECK((client.error || server.error));
    }
  }
  MESSAGE("failed " << (total + stride - 1) / stride << " of the " << total
                    << " OpenSSL allocations of a TLS cycle; " << failed
                    << " cycles ended in an error");
  CHECK(failed > 0);
}

}  // namespace

TEST_SUITE_END();
