#include "evco/dns.hpp"

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/dns_struct.h>
#include <event2/event.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;
using evco::connect_options;
using evco::connect_phase;
using evco::connect_report;
using evco::dns_errc;
using evco::endpoint;
using evco::errc;
using evco::listener;
using evco::loop;
using evco::result;
using evco::stream;
using evco::task;
using evco::test::error_of;

// Each TEST_CASE sits right below the coroutine it runs.
TEST_SUITE_BEGIN("dns");

namespace {

// A one-shot flag a test coroutine can await. set() resumes the waiter from the loop's ready
// list, never inside the libevent callback that called set().
struct loop_signal : evco::detail::waiter {
  explicit loop_signal(loop& l) : lp(l) {}
  loop_signal(const loop_signal&) = delete;
  ~loop_signal() { evco::detail::loop_access::unschedule(lp, *this); }
  void set() {
    is_set = true;
    if (std::exchange(parked, false)) evco::detail::loop_access::schedule(lp, *this);
  }
  bool await_ready() const noexcept { return is_set; }
  void await_suspend(std::coroutine_handle<> h) noexcept {
    handle = h;
    parked = true;
  }
  void await_resume() const noexcept {}
  loop& lp;
  bool is_set = false;
  bool parked = false;
};

int udp_on_loopback(endpoint* bound) {
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  const auto any = endpoint::v4_loopback();
  REQUIRE(::bind(fd, any.data(), any.size()) == 0);
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  REQUIRE(getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0);
  *bound = endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len).value();
  return fd;
}

in_addr v4(const char* text) {
  in_addr a{};
  REQUIRE(inet_pton(AF_INET, text, &a) == 1);
  return a;
}
in6_addr v6(const char* text) {
  in6_addr a{};
  REQUIRE(inet_pton(AF_INET6, text, &a) == 1);
  return a;
}

// An in-process DNS server on 127.0.0.1 (libevent's evdns server, on the loop's own base).
// Unknown names get NXDOMAIN. In hold mode requests wait until release().
struct dns_server {
  struct records {
    std::vector<in_addr> a;
    std::vector<in6_addr> aaaa;
  };

  explicit dns_server(loop& l) : lp(l), got_query(l) {
    fd = udp_on_loopback(&ep);
    port = evdns_add_server_port_with_base(lp.native_handle(), fd, 0, &on_request, this);
    REQUIRE(port != nullptr);
  }
  ~dns_server() {
    for (auto* r : held)
      evdns_server_request_drop(r);
    evdns_close_server_port(port);  // closes fd
  }

  void use(loop& l) { REQUIRE(l.set_nameservers(std::span(&ep, 1))); }

  void release() {
    hold = false;
    for (auto* r : std::exchange(held, {}))
      answer(r);
  }

  static void on_request(evdns_server_request* req, void* arg) {
    auto& self = *static_cast<dns_server*>(arg);
    ++self.queries;
    self.got_query.set();
    if (self.hold) {
      self.held.push_back(req);
      return;
    }
    self.answer(req);
  }

  void answer(evdns_server_request* req) {
    int err = DNS_ERR_NONE;
    for (int i = 0; i < req->nquestions; ++i) {
      const evdns_server_question* q = req->questions[i];
      std::string name = q->name;
      std::transform(name.begin(), name.end(), name.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      if (ignored.count(name)) {
        evdns_server_request_drop(req);
        return;
      }
      if (q->type == EVDNS_TYPE_AAAA && no_aaaa_answer.count(name)) {
        evdns_server_request_drop(req);
        return;
      }
      if (const auto f = failing.find(name); f != failing.end()) {
        err = f->second;
        continue;
      }
      const auto it = names.find(name);
      if (it == names.end()) {
        err = DNS_ERR_NOTEXIST;
        continue;
      }
      // Reply with the name as asked: libevent randomises its case and checks it comes back.
      const auto& rec = it->second;
      if (q->type == EVDNS_TYPE_A && !rec.a.empty())
        evdns_server_request_add_a_reply(req, q->name, static_cast<int>(rec.a.size()), rec.a.data(),
                                         60);
      if (q->type == EVDNS_TYPE_AAAA && !rec.aaaa.empty())
        evdns_server_request_add_aaaa_reply(req, q->name, static_cast<int>(rec.aaaa.size()),
                                            rec.aaaa.data(), 60);
    }
    evdns_server_request_respond(req, err);
  }

  loop& lp;
  int fd = -1;
  endpoint ep;
  evdns_server_port* port = nullptr;
  std::map<std::string, records> names;
  std::set<std::string> ignored;         // queries for these are dropped, never answered
  std::map<std::string, int> failing;    // queries for these get this error code (RCODE)
  std::set<std::string> no_aaaa_answer;  // AAAA queries for these are dropped
  bool hold = false;
  std::vector<evdns_server_request*> held;
  int queries = 0;
  loop_signal got_query;
};

// A UDP socket on 127.0.0.1 that reads queries and never answers.
struct silent_server {
  explicit silent_server(loop& l) : got_query(l) {
    fd = udp_on_loopback(&ep);
    ev = event_new(
        l.native_handle(), fd, EV_READ | EV_PERSIST,
        [](evutil_socket_t s, short, void* arg) {
          auto& self = *static_cast<silent_server*>(arg);
          char buf[512];
          while (::recv(s, buf, sizeof buf, 0) > 0)
            ++self.queries;
          self.got_query.set();
        },
        this);
    event_add(ev, nullptr);
  }
  ~silent_server() {
    event_free(ev);
    ::close(fd);
  }
  void use(loop& l) { REQUIRE(l.set_nameservers(std::span(&ep, 1))); }

  int fd = -1;
  endpoint ep;
  event* ev = nullptr;
  int queries = 0;
  loop_signal got_query;
};

using evco::test::bound_port;
using evco::test::full_backlog;

// ---- resolving a name -----------------------------------------------------------------------

task<void> resolves_both_families(loop& lp) {
  dns_server server(lp);
  server.names["dual.test"] = {{v4("127.0.0.1"), v4("127.0.0.2")}, {v6("::1")}};
  server.use(lp);
  auto r = co_await evco::resolve(lp, "dual.test", 8080);
  REQUIRE_MESSAGE(r, error_of(r));
  auto addrs = r.value();
  CHECK(server.queries >= 2);  // A and AAAA
  std::sort(addrs.begin(), addrs.end());
  const std::vector<endpoint> expected{endpoint::parse("127.0.0.1:8080").value(),
                                       endpoint::parse("127.0.0.2:8080").value(),
                                       endpoint::parse("[::1]:8080").value()};
  auto sorted = expected;
  std::sort(sorted.begin(), sorted.end());
  CHECK(addrs == sorted);

  // Happy Eyeballs order: IPv6 first, then alternating.
  const auto ordered = evco::interleave_families(r.value());
  REQUIRE(ordered.size() == 3);
  CHECK(ordered[0].is_v6());
  CHECK(ordered[1] == expected[0]);
  CHECK(ordered[2] == expected[1]);

  evco::resolve_options only_v4;
  only_v4.family = AF_INET;
  auto r4 = co_await evco::resolve(lp, "DUAL.test", 1, only_v4);
  REQUIRE_MESSAGE(r4, error_of(r4));
  CHECK(r4.value().size() == 2);
  CHECK(std::all_of(r4.value().begin(), r4.value().end(), [](auto& e) { return e.is_v4(); }));
}

TEST_CASE("a name with A and AAAA records resolves to both families, IPv6 first for connects") {
  evco::test::run_on_loop(resolves_both_families);
}

// ---- lookups that fail ----------------------------------------------------------------------

// resolve() and a hostname connect both fail with `expected`, in the resolve phase.
task<connect_report> fails_to_resolve(loop& lp, std::string name, dns_errc expected) {
  auto r = co_await evco::resolve(lp, name, 80);
  REQUIRE_FALSE(r);
  CHECK(r.error() == expected);
  CHECK(std::string(r.error().category().name()) == "dns");

  connect_report report;
  connect_options o;
  o.report = &report;
  auto c = co_await evco::connect(lp, name, 80, o);
  REQUIRE_FALSE(c);
  CHECK(c.error() == expected);
  CHECK(report.failed == connect_phase::resolve);
  co_return report;
}

task<void> no_such_host(loop& lp) {
  dns_server server(lp);
  server.use(lp);
  const auto report = co_await fails_to_resolve(lp, "nowhere.test", dns_errc::no_such_host);
  CHECK(make_error_code(dns_errc::no_such_host).message() == "no such host");
  CHECK(report.attempts.empty());
  CHECK(report.to_string() == "resolve: dns: no such host");
}

TEST_CASE("a name that does not exist fails in the resolve phase with 'no such host'") {
  evco::test::run_on_loop(no_such_host);
}

// A nameserver that answers SERVFAIL or REFUSED: a server failure (without waiting for a
// timeout, though that is not asserted here).
task<void> failing_nameserver(loop& lp, int rcode) {
  dns_server server(lp);
  server.failing["broken.test"] = rcode;
  server.use(lp);
  (void)co_await fails_to_resolve(lp, "broken.test", dns_errc::server_failure);
}

TEST_CASE("a nameserver answering SERVFAIL or REFUSED fails the lookup with server_failure") {
  loop lp({.dns_timeout = 2s, .dns_attempts = 1});
  SUBCASE("SERVFAIL") {
    lp.run(failing_nameserver(lp, DNS_ERR_SERVERFAILED));
  }
  SUBCASE("REFUSED") {
    lp.run(failing_nameserver(lp, DNS_ERR_REFUSED));
  }
}

TEST_CASE("a failing nameserver prints nothing to stderr; a log handler hears about it") {
  std::string printed;
  std::vector<std::string> heard;
  {
    evco::test::stderr_capture err;
    loop lp({.dns_timeout = 2s, .dns_attempts = 1});
    lp.run(failing_nameserver(lp, DNS_ERR_SERVERFAILED));
    printed = err.text();
  }
  CHECK(printed.empty());
  {
    loop lp({.dns_timeout = 2s, .dns_attempts = 1});
    evco::set_log_handler([&](evco::log_level, std::string_view m) { heard.emplace_back(m); });
    lp.run(failing_nameserver(lp, DNS_ERR_SERVERFAILED));
    evco::set_log_handler({});
  }
  CHECK(std::any_of(heard.begin(), heard.end(), [](const std::string& m) {
    return m.find("has failed") != std::string::npos;
  }));
}

// Names DNS cannot hold fail before any query is sent.
task<void> malformed_names(loop& lp) {
  silent_server server(lp);
  server.use(lp);
  const std::string label64(64, 'a');
  const std::string long_name = std::string(63, 'a') + "." + std::string(63, 'b') + "." +
                                std::string(63, 'c') + "." + std::string(63, 'd');  // 255
  for (const std::string& bad :
       {std::string(), std::string("a..b"), std::string(".a"), label64 + ".test", long_name,
        std::string("localhost\0.evil", 15)}) {
    CAPTURE(bad);
    auto r = co_await evco::resolve(lp, bad, 80);
    CHECK(error_of(r) == std::errc::invalid_argument);
    auto c = co_await evco::connect(lp, bad, 80);
    CHECK(error_of(c) == std::errc::invalid_argument);
  }
  evco::resolve_options o;
  o.family = AF_UNIX;
  CHECK(error_of(co_await evco::resolve(lp, "example.test", 80, o)) == std::errc::invalid_argument);
  CHECK(error_of(co_await evco::resolve(lp, "127.0.0.1", 80, o)) == std::errc::invalid_argument);
  CHECK(server.queries == 0);
}

TEST_CASE("a name DNS cannot hold, or a bad family, fails with invalid_argument unasked") {
  evco::test::run_on_loop(malformed_names);
}

// ---- resolver settings ----------------------------------------------------------------------

TEST_CASE("set_nameservers rejects port 0 and unspecified addresses, and takes a duplicate") {
  loop lp;
  const endpoint good = endpoint::parse("127.0.0.1:53").value();
  const endpoint twice[] = {good, good};
  CHECK(lp.set_nameservers(twice));
  for (const char* bad : {"127.0.0.1:0", "0.0.0.0:53", "[::]:53"}) {
    CAPTURE(bad);
    const endpoint one = endpoint::parse(bad).value();
    CHECK(error_of(lp.set_nameservers(std::span(&one, 1))) == std::errc::invalid_argument);
  }
}

TEST_CASE("resolver options out of range are kept in range, not overflowed") {
  loop lp({.dns_timeout = evco::duration::max(), .dns_attempts = INT_MAX});
  silent_server server(lp);
  server.use(lp);
  evco::resolve_options o;
  o.timeout = 50ms;
  const auto start = evco::clock::now();
  auto r = lp.run(evco::resolve(lp, "quiet.test", 80, o));
  CHECK(error_of(r) == dns_errc::timed_out);
  CHECK(evco::clock::now() - start >= 50ms);  // its own budget, not an overflowed one
}

// ---- nameservers that never answer ----------------------------------------------------------

task<void> silent_nameserver(loop& lp) {
  silent_server server(lp);
  server.use(lp);
  evco::resolve_options ro;
  ro.timeout = 100ms;
  auto r = co_await evco::resolve(lp, "silent.test", 80, ro);
  REQUIRE_FALSE(r);
  CHECK(r.error() == dns_errc::timed_out);
  CHECK(r.error() == std::errc::timed_out);
  CHECK(server.queries >= 1);

  connect_report report;
  connect_options o;
  o.resolve_timeout = 50ms;
  o.report = &report;
  auto c = co_await evco::connect(lp, "silent.test", 80, o);
  REQUIRE_FALSE(c);
  CHECK(c.error() == std::errc::timed_out);
  CHECK(report.failed == connect_phase::resolve);
  CHECK(report.resolve_error == dns_errc::timed_out);

  // The total budget bounds the resolve phase too.
  connect_options total;
  total.total_timeout = 50ms;
  auto t = co_await evco::connect(lp, "silent.test", 80, total);
  REQUIRE_FALSE(t);
  CHECK(t.error() == dns_errc::timed_out);
}

TEST_CASE("a nameserver that never answers makes the lookup time out in the resolve phase") {
  evco::test::run_on_loop(silent_nameserver);
}

// Without a budget of its own, a lookup is bounded by the resolver's limit, and the silence
// is still reported as a timeout rather than as libevent's catch-all server failure.
task<void> silent_nameserver_default_budget(loop& lp) {
  silent_server server(lp);
  server.use(lp);
  auto r = co_await evco::resolve(lp, "silent.test", 80);
  REQUIRE_FALSE(r);
  CHECK(r.error() == dns_errc::timed_out);
  CHECK(server.queries >= 2);  // sent again after dns_timeout
}

TEST_CASE("without a budget of its own a lookup times out after the resolver's attempts") {
  loop lp({.dns_timeout = 30ms, .dns_attempts = 2});
  lp.run(silent_nameserver_default_budget(lp));
}

// ---- many lookups, and lookups the loop outlives --------------------------------------------

struct many_counts {
  int done = 0, ok = 0, cancelled = 0, wrong = 0;
};

task<void> one_lookup(loop& lp, std::stop_token stop, bool will_cancel, many_counts* counts,
                      loop_signal* all, int total) {
  // The cancelled ones ask for a name the server never answers: libevent frees a cancelled
  // query's transaction id at once, so a late reply to it could reach a new query that reuses
  // the id, and libevent 2.1 fails that query (wrong name) or finds no address in it (wrong
  // type): a lookup would lose one family. Real servers answer late too; that is libevent's.
  auto r =
      co_await evco::resolve(lp, will_cancel ? "gone.test" : "many.test", 443, {}, std::move(stop));
  if (will_cancel && !r && r.error() == errc::cancelled) {
    ++counts->cancelled;
  } else if (!will_cancel && r && r.value().size() == 2) {
    ++counts->ok;
  } else {
    ++counts->wrong;
    std::string got;
    if (r)
      for (auto& ep : r.value())
        got += ep.to_string() + " ";
    MESSAGE("unexpected outcome: ", error_of(r), " ", got);
  }
  if (++counts->done == total) all->set();
}

task<void> many_lookups(loop& lp, many_counts* counts) {
  constexpr int n = 1000;
  dns_server server(lp);
  server.names["many.test"] = {{v4("127.0.0.1")}, {v6("::1")}};
  server.ignored.insert("gone.test");
  server.hold = true;
  server.use(lp);
  std::vector<std::stop_source> sources(n);
  loop_signal all(lp);
  for (int i = 0; i < n; ++i) {
    lp.spawn(one_lookup(lp, sources[i].get_token(), i % 2 == 1, counts, &all, n),
             [](std::exception_ptr) { FAIL("lookup threw"); });
  }
  co_await server.got_query;  // lookups are in flight (the rest queue behind max-inflight)
  for (int i = 1; i < n; i += 2)
    sources[i].request_stop();
  server.release();
  co_await all;
}

TEST_CASE("1,000 lookups with half cancelled all complete; the cancelled ones say so") {
  many_counts counts;
  {
    loop lp;
    lp.run(many_lookups(lp, &counts));
  }
  CHECK(counts.done == 1000);
  CHECK(counts.ok == 500);
  CHECK(counts.cancelled == 500);
  CHECK(counts.wrong == 0);
}

task<void> loop_destroyed_with_lookups(loop& lp, silent_server* server) {
  for (int i = 0; i < 100; ++i) {
    lp.spawn(
        [](loop& l, int i) -> task<void> {
          auto r = co_await evco::resolve(l, "pending" + std::to_string(i) + ".test", 80);
          FAIL("a lookup completed: ", error_of(r));
        }(lp, i),
        [](std::exception_ptr) {});
  }
  co_await server->got_query;
}

TEST_CASE("destroying the loop with lookups pending cancels them without a leak") {
  const auto before = evco::test::open_fds();
  {
    loop lp;
    auto server = std::make_unique<silent_server>(lp);
    server->use(lp);
    lp.run(loop_destroyed_with_lookups(lp, server.get()));
    server.reset();
  }
  CHECK(evco::test::open_fds() == before);
}

// ---- names DNS is never asked about ---------------------------------------------------------

bool hosts_has_localhost() {
  std::ifstream in("/etc/hosts");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line.substr(0, line.find('#')));
    std::string addr, name;
    if (!(words >> addr) || addr != "127.0.0.1") continue;
    while (words >> name)
      if (name == "localhost") return true;
  }
  return false;
}

task<void> localhost_from_hosts(loop& lp) {
  dns_server server(lp);
  server.use(lp);
  auto r = co_await evco::resolve(lp, "localhost", 80);
  REQUIRE_MESSAGE(r, error_of(r));
  CHECK(std::find(r.value().begin(), r.value().end(), endpoint::parse("127.0.0.1:80").value()) !=
        r.value().end());
  CHECK(server.queries == 0);
}

TEST_CASE("localhost resolves from /etc/hosts without a query") {
  if (!hosts_has_localhost()) {
    MESSAGE("/etc/hosts has no 127.0.0.1 localhost line; skipped");
    return;
  }
  loop lp;
  lp.run(localhost_from_hosts(lp));
}

task<void> numeric_hosts(loop& lp) {
  dns_server server(lp);
  server.use(lp);
  for (const char* host : {"127.0.0.1", "::1", "[::1]"}) {
    auto r = co_await evco::resolve(lp, host, 80);
    REQUIRE_MESSAGE(r, error_of(r));
    REQUIRE(r.value().size() == 1);
    CHECK(r.value()[0].port() == 80);
  }
  evco::resolve_options only_v6;
  only_v6.family = AF_INET6;
  auto wrong = co_await evco::resolve(lp, "127.0.0.1", 80, only_v6);
  CHECK(error_of(wrong) == dns_errc::no_address);

  auto l = listener::bind(lp, endpoint::v4_loopback());
  REQUIRE(l);
  const auto port = l.value().local_endpoint().value().port();
  auto c = co_await evco::connect(lp, "127.0.0.1", port);
  REQUIRE_MESSAGE(c, error_of(c));
  CHECK(c.value().remote_endpoint().value() == endpoint::v4_loopback(port));
  CHECK(server.queries == 0);
}

TEST_CASE("numeric host strings skip DNS for resolve and connect") {
  evco::test::run_on_loop(numeric_hosts);
}

// ---- A and AAAA answers in a hostname connect -----------------------------------------------

// `name` has 127.0.0.1 and ::1, but its AAAA queries are never answered.
void lose_aaaa(loop& lp, dns_server& server, const std::string& name) {
  server.names[name] = {{v4("127.0.0.1")}, {v6("::1")}};
  server.no_aaaa_answer.insert(name);
  server.use(lp);
}

// RFC 8305 section 3: the A answer starts connecting after the resolution delay, without
// waiting for an AAAA answer that never comes (libevent's getaddrinfo would wait 3 s for it).
task<void> a_answer_does_not_wait_for_aaaa(loop& lp) {
  auto l = listener::bind(lp, endpoint::v4_loopback());
  REQUIRE(l);
  const std::uint16_t port = l.value().local_endpoint().value().port();
  dns_server server(lp);
  lose_aaaa(lp, server, "slow6.test");
  connect_report report;
  connect_options o;
  o.resolution_delay = 20ms;
  o.total_timeout = 2s;
  o.report = &report;
  auto c = co_await evco::connect(lp, "slow6.test", port, o);
  REQUIRE_MESSAGE(c, error_of(c));
  CHECK(c.value().remote_endpoint().value().is_v4());
  CHECK(report.failed == connect_phase::none);
  REQUIRE(report.attempts.size() == 1);
  CHECK(report.attempts[0].address == endpoint::parse("127.0.0.1", port).value());
}

TEST_CASE("an A answer starts connecting without waiting for an AAAA answer that never comes") {
  loop lp({.dns_timeout = 10s, .dns_attempts = 1});
  lp.run(a_answer_does_not_wait_for_aaaa(lp));
}

// The IPv4 attempt fails while the AAAA answer is still out: the connect reports that
// failure, whether the total budget or the lookup's own ends the wait for the AAAA answer.
task<void> refused_while_aaaa_is_out(loop& lp, bool total_budget) {
  bound_port refused;
  REQUIRE(refused.bind(endpoint::v4_loopback()));
  dns_server server(lp);
  lose_aaaa(lp, server, "half.test");
  connect_report report;
  connect_options o;
  o.resolution_delay = 10ms;
  if (total_budget) o.total_timeout = 300ms;
  o.report = &report;
  auto c = co_await evco::connect(lp, "half.test", refused.ep.port(), o);
  REQUIRE_FALSE(c);
  CHECK(c.error() == std::errc::connection_refused);
  CHECK(report.failed == connect_phase::connect);
  REQUIRE(report.attempts.size() == 1);
  CHECK(report.attempts[0].error == std::errc::connection_refused);
  // The report says what each lookup did.
  REQUIRE(report.lookups.size() == 2);
  const auto& aaaa = report.lookups[0];
  const auto& a = report.lookups[1];
  CHECK(aaaa.family == AF_INET6);
  CHECK(a.family == AF_INET);
  CHECK(a.outcome == connect_report::lookup::state::answered);
  CHECK(a.addresses == 1);
  CHECK(a.after >= 0ms);
  if (total_budget) {
    CHECK(aaaa.outcome == connect_report::lookup::state::pending);
    CHECK(report.to_string().find("AAAA: still out") != std::string::npos);
  } else {
    CHECK(aaaa.outcome == connect_report::lookup::state::failed);
    CHECK(aaaa.error == dns_errc::timed_out);
    CHECK(aaaa.after >= 200ms);  // the lookup's budget, never early
  }
  CHECK(report.to_string().find("A: 1 address after") != std::string::npos);
}

TEST_CASE("an IPv4 attempt refused while the AAAA answer is out reports the refusal") {
  SUBCASE("the total budget ends the wait") {
    loop lp({.dns_timeout = 10s, .dns_attempts = 1});
    lp.run(refused_while_aaaa_is_out(lp, true));
  }
  SUBCASE("the lookup's own budget ends the wait") {
    loop lp({.dns_timeout = 200ms, .dns_attempts = 1});
    lp.run(refused_while_aaaa_is_out(lp, false));
  }
}

// A total budget shorter than the resolution delay: the A answer's address is still tried
// (the delay takes at most half of what is left) instead of the budget running out first.
task<void> short_total_budget_tries_the_address(loop& lp) {
  auto l = listener::bind(lp, endpoint::v4_loopback());
  REQUIRE(l);
  const std::uint16_t port = l.value().local_endpoint().value().port();
  dns_server server(lp);
  lose_aaaa(lp, server, "short.test");
  connect_report report;
  connect_options o;
  o.resolution_delay = 500ms;
  o.total_timeout = 300ms;
  o.report = &report;
  auto c = co_await evco::connect(lp, "short.test", port, o);
  REQUIRE_MESSAGE(c, report.to_string());
  CHECK(c.value().remote_endpoint().value().is_v4());
}

TEST_CASE("a total budget shorter than the resolution delay still tries the address it has") {
  loop lp({.dns_timeout = 10s, .dns_attempts = 1});
  lp.run(short_total_budget_tries_the_address(lp));
}

// ---- Happy Eyeballs -------------------------------------------------------------------------

bool ipv6_loopback_available() {
  const int fd = ::socket(AF_INET6, SOCK_STREAM, 0);
  if (fd < 0) return false;
  const auto ep = endpoint::v6_loopback();
  const bool ok = ::bind(fd, ep.data(), ep.size()) == 0;
  ::close(fd);
  return ok;
}

// The same port on two addresses: a hanging one (full backlog) and a real listener.
struct hang_and_listen {
  full_backlog hang;
  listener live;
  std::uint16_t port = 0;

  static task<bool> make(loop& lp, hang_and_listen* self, endpoint hang_at, endpoint live_at) {
    for (int tries = 0; tries < 20; ++tries) {
      self->hang = {};
      auto filled = co_await full_backlog::fill(lp, &self->hang, hang_at);
      REQUIRE_MESSAGE(filled, error_of(filled));
      self->port = self->hang.l.local_endpoint().value().port();
      live_at.set_port(self->port);
      auto l = listener::bind(lp, live_at, {.v6_only = true});
      if (l) {
        self->live = std::move(l).value();
        co_return true;
      }
    }
    co_return false;
  }
};

// Happy Eyeballs over `hang_at` (tried first) and `live_at`, the same port on both.
task<void> happy_eyeballs(loop& lp, endpoint hang_at, endpoint live_at, const char* name,
                          bool hang_first) {
  dns_server server(lp);
  auto& rec = server.names[name];
  for (const endpoint& ep : {hang_at, live_at}) {
    if (ep.is_v4()) rec.a.push_back(reinterpret_cast<const sockaddr_in*>(ep.data())->sin_addr);
    if (ep.is_v6()) rec.aaaa.push_back(reinterpret_cast<const sockaddr_in6*>(ep.data())->sin6_addr);
  }
  server.use(lp);
  hang_and_listen net;
  REQUIRE(co_await hang_and_listen::make(lp, &net, hang_at, live_at));
  live_at.set_port(net.port);
  hang_at.set_port(net.port);

  connect_report report;
  connect_options o;
  o.happy_eyeballs_delay = 50ms;
  o.total_timeout = 20s;
  o.report = &report;
  auto c = co_await evco::connect(lp, name, net.port, o);
  REQUIRE_MESSAGE(c, error_of(c));
  CHECK(c.value().remote_endpoint().value() == live_at);
  CHECK(report.failed == connect_phase::none);
  REQUIRE(report.addresses.size() == 2);
  CHECK(report.addresses[0] == (hang_first ? hang_at : live_at));
  REQUIRE(!report.attempts.empty());
  if (hang_first) {
    REQUIRE(report.attempts.size() == 2);
    CHECK(report.attempts[0].address == hang_at);
    CHECK(report.attempts[0].error == errc::cancelled);
    CHECK(report.attempts[1].address == live_at);
    CHECK_FALSE(report.attempts[1].error);
  } else {
    CHECK(report.attempts[0].address == live_at);
    CHECK_FALSE(report.attempts[0].error);
  }
  auto accepted = co_await net.live.accept();
  REQUIRE_MESSAGE(accepted, error_of(accepted));
  CHECK(accepted.value().remote_endpoint().value() == c.value().local_endpoint().value());
}

TEST_CASE("Happy Eyeballs connects over IPv4 when the IPv6 address hangs") {
  if (!ipv6_loopback_available()) {
    MESSAGE("no IPv6 loopback; skipped");
    return;
  }
  loop lp;
  lp.run(happy_eyeballs(lp, endpoint::v6_loopback(), endpoint::v4_loopback(), "he6.test", true));
}

TEST_CASE("Happy Eyeballs connects over IPv6 when the IPv4 address hangs") {
  if (!ipv6_loopback_available()) {
    MESSAGE("no IPv6 loopback; skipped");
    return;
  }
  loop lp;
  lp.run(happy_eyeballs(lp, endpoint::v4_loopback(), endpoint::v6_loopback(), "he4.test", false));
}

TEST_CASE("Happy Eyeballs moves past a hanging IPv4 address to the next one after the delay") {
  loop lp;
  lp.run(happy_eyeballs(lp, endpoint::v4_loopback(), endpoint::parse("127.0.0.2", 0).value(),
                        "two-a.test", true));
}

task<void> next_at_once_on_failure(loop& lp) {
  // 127.0.0.2:P refuses (nothing there), 127.0.0.1:P listens.
  auto l = listener::bind(lp, endpoint::v4_loopback());
  REQUIRE(l);
  const auto port = l.value().local_endpoint().value().port();
  dns_server server(lp);
  server.names["fallback.test"] = {{v4("127.0.0.2"), v4("127.0.0.1")}, {}};
  server.use(lp);
  connect_report report;
  connect_options o;
  o.happy_eyeballs_delay = 1h;  // were the delay awaited, the total budget would expire first
  o.total_timeout = 20s;
  o.report = &report;
  auto c = co_await evco::connect(lp, "fallback.test", port, o);
  REQUIRE_MESSAGE(c, error_of(c) << " " << report.to_string());
  CHECK(c.value().remote_endpoint().value() == endpoint::v4_loopback(port));
  REQUIRE(report.attempts.size() == 2);
  CHECK(report.attempts[0].error == std::errc::connection_refused);
  CHECK_FALSE(report.attempts[1].error);
}

TEST_CASE("an attempt that fails starts the next address at once, without the delay") {
  evco::test::run_on_loop(next_at_once_on_failure);
}

task<void> every_address_fails(loop& lp) {
  bound_port reserved;  // holds the port on 127.0.0.1 so that it stays free on .2 and .3
  REQUIRE(reserved.bind(endpoint::v4_loopback()));
  const auto port = reserved.ep.port();
  dns_server server(lp);
  server.names["refused.test"] = {{v4("127.0.0.2"), v4("127.0.0.3")}, {}};
  server.use(lp);
  connect_report report;
  connect_options o;
  o.report = &report;
  auto c = co_await evco::connect(lp, "refused.test", port, o);
  REQUIRE_FALSE(c);
  CHECK(c.error() == std::errc::connection_refused);
  CHECK(report.failed == connect_phase::connect);
  REQUIRE(report.attempts.size() == 2);
  CHECK(report.attempts[0].error == std::errc::connection_refused);
  CHECK(report.attempts[1].error == std::errc::connection_refused);
  const auto text = report.to_string();
  CHECK(text.find("127.0.0.2:" + std::to_string(port) + ": ") != std::string::npos);
  CHECK(text.find("127.0.0.3:" + std::to_string(port) + ": ") != std::string::npos);
}

TEST_CASE("when every address is refused, the connect is refused and the report lists each") {
  evco::test::run_on_loop(every_address_fails);
}

// ---- budgets, cancellation and destruction of a hostname connect ----------------------------

task<void> total_budget_while_connecting(loop& lp) {
  full_backlog hang;
  REQUIRE(co_await full_backlog::fill(lp, &hang, endpoint::v4_loopback()));
  const auto port = hang.l.local_endpoint().value().port();
  dns_server server(lp);
  server.names["hang.test"] = {{v4("127.0.0.1")}, {}};
  server.use(lp);
  connect_report report;
  connect_options o;
  o.total_timeout = 200ms;
  o.report = &report;
  auto c = co_await evco::connect(lp, "hang.test", port, o);
  REQUIRE_FALSE(c);
  CHECK(c.error() == errc::connect_timed_out);
  CHECK(c.error() == std::errc::timed_out);
  CHECK(report.failed == connect_phase::connect);
  REQUIRE(report.attempts.size() == 1);
  CHECK(report.attempts[0].error == std::errc::timed_out);

  // A stop request ends it the same way, with cancelled.
  std::stop_source src;
  lp.spawn(
      [](std::stop_source* s) -> task<void> {
        s->request_stop();
        co_return;
      }(&src),
      [](std::exception_ptr) {});
  auto s = co_await evco::connect(lp, "hang.test", port, {}, src.get_token());
  REQUIRE_FALSE(s);
  CHECK(s.error() == errc::cancelled);
}

TEST_CASE("the total budget and a stop request end a hostname connect whose address hangs") {
  evco::test::run_on_loop(total_budget_while_connecting);
}

// The connect's frame is destroyed mid-race while the loop keeps running: its attempts are
// cancelled and finish on their own, touching only the state they share with it.
task<void> frame_destroyed_mid_race(loop& lp) {
  full_backlog hang;
  REQUIRE(co_await full_backlog::fill(lp, &hang, endpoint::v4_loopback()));
  const auto port = hang.l.local_endpoint().value().port();
  dns_server server(lp);
  server.names["hang.test"] = {{v4("127.0.0.1")}, {}};
  server.use(lp);
  const auto fds = evco::test::open_fds();
  auto t = evco::connect(lp, "hang.test", port);
  auto h = t.handle();
  REQUIRE(h.promise().start(h, std::noop_coroutine()));  // runs until its first suspension
  co_await server.got_query;
  // Not synchronisation: whether or not the attempt has started, teardown must be clean.
  REQUIRE(co_await evco::sleep_for(lp, 50ms));
  t = {};  // destroys the suspended frame
  // The attempt, cancelled, finishes on its own while the loop runs, and closes its socket.
  REQUIRE(co_await evco::sleep_for(lp, 50ms));
  CHECK(evco::test::open_fds() == fds);
}

TEST_CASE("destroying a hostname connect mid-race cancels its attempts and leaks no fd") {
  evco::test::run_on_loop(frame_destroyed_mid_race);
}

}  // namespace

TEST_SUITE_END();
