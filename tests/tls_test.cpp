#include "evco/tls.hpp"

#include <doctest/doctest.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>

#include "pki.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using evco::endpoint;
using evco::errc;
using evco::listener;
using evco::loop;
using evco::result;
using evco::stream;
using evco::task;
using evco::tls_context;
using evco::test::certs;
using evco::test::error_of;
using evco::test::pattern;

// Each TEST_CASE sits right below the coroutine it runs.
TEST_SUITE_BEGIN("tls");

namespace {

tls_context server_ctx(const std::string& which, evco::tls_server_options o = {}) {
  auto c = tls_context::server(certs().cert(which), certs().key(which), o);
  REQUIRE_MESSAGE(c, error_of(c));
  return std::move(c).value();
}

tls_context client_ctx() {
  evco::tls_client_options o;
  o.ca_file = certs().ca;
  auto c = tls_context::client(o);
  REQUIRE_MESSAGE(c, error_of(c));
  return std::move(c).value();
}

// ---- running both ends of a handshake ----------------------------------------------------

struct server_end {
  std::optional<result<stream>> s;
  evco::test::signal done;
};

task<void> accept_tls(listener* l, const tls_context* ctx, server_end* out) {
  auto tcp = co_await l->accept();
  if (!tcp) {
    out->s.emplace(tcp.error());
  } else {
    out->s.emplace(co_await evco::tls_server(std::move(tcp).value(), *ctx, 10s));
  }
  out->done.set();
}

task<result<stream>> dial_tls(loop& lp, endpoint ep, const tls_context* ctx, std::string name) {
  EVCO_TRY(auto tcp, co_await evco::connect(lp, ep));
  co_return co_await evco::tls_client(std::move(tcp), *ctx, std::move(name), 10s);
}

struct outcome {
  result<stream> client;
  result<stream> server;
};

task<outcome> handshake_both(loop& lp, const tls_context* server, const tls_context* client,
                             std::string name) {
  auto l = listener::bind(lp, endpoint::v4_loopback());
  REQUIRE(l);
  auto ep = l.value().local_endpoint();
  REQUIRE(ep);
  server_end srv;
  lp.spawn(accept_tls(&l.value(), server, &srv), [](std::exception_ptr) { FAIL("server"); });
  auto c = co_await dial_tls(lp, ep.value(), client, std::move(name));
  co_await srv.done;
  co_return outcome{std::move(c), std::move(*srv.s)};
}

struct tls_pair {
  stream client;
  stream server;
};

task<tls_pair> connected(loop& lp, const tls_context* server, const tls_context* client,
                         std::string name = "localhost") {
  auto o = co_await handshake_both(lp, server, client, std::move(name));
  REQUIRE_MESSAGE(o.client, error_of(o.client));
  REQUIRE_MESSAGE(o.server, error_of(o.server));
  co_return tls_pair{std::move(o.client).value(), std::move(o.server).value()};
}

std::span<char> span_of(std::string& s) {
  return {s.data(), s.size()};
}

task<result<std::string>> read_to_eof(stream* s) {
  std::string all, buf(65536, '\0');
  for (;;) {
    auto r = co_await s->read_some(span_of(buf));
    if (!r) {
      if (r.error() == errc::eof) co_return all;
      co_return r.error();
    }
    all.append(buf.data(), r.value());
  }
}

// Both directions carry data, then each side's close reaches the other as a clean eof.
task<void> echo_and_close(tls_pair p) {
  REQUIRE(co_await p.client.write("ping"));
  std::string got(4, '\0');
  REQUIRE(co_await p.server.read_exactly(span_of(got)));
  CHECK(got == "ping");
  REQUIRE(co_await p.server.write("pong"));
  REQUIRE(co_await p.client.read_exactly(span_of(got)));
  CHECK(got == "pong");

  p.server.close();
  auto end = co_await p.client.read_some(span_of(got));
  REQUIRE_FALSE(end);
  CHECK(end.error() == errc::eof);
}

// ---- handshake, data and close --------------------------------------------------------------

task<void> good_handshake(loop& lp) {
  const auto server = server_ctx("good");
  const auto client = client_ctx();
  auto p = co_await connected(lp, &server, &client);
  CHECK(evco::tls_protocol(p.client) == "TLSv1.3");
  CHECK(evco::tls_protocol(p.server) == "TLSv1.3");
  CHECK(p.client.native_handle() != nullptr);
  CHECK(p.client.remote_endpoint().has_value());  // the socket is still reachable
  co_await echo_and_close(std::move(p));
}

TEST_CASE("a verified handshake carries data both ways and a clean close reads as eof") {
  evco::test::run_on_loop(good_handshake);
}

// shutdown() on TLS sends close_notify before the FIN: the peer reads eof, not a truncation.
task<void> half_close(loop& lp) {
  const auto server = server_ctx("good");
  const auto client = client_ctx();
  auto p = co_await connected(lp, &server, &client);
  REQUIRE(co_await p.client.write("last words"));
  REQUIRE(co_await p.client.shutdown());
  auto got = co_await read_to_eof(&p.server);
  REQUIRE_MESSAGE(got, evco::test::error_of(got));
  CHECK(got.value() == "last words");
}

TEST_CASE("shutdown on a TLS stream sends close_notify: the peer reads eof, not truncation") {
  evco::test::run_on_loop(half_close);
}

task<void> large_write_then_close(loop& lp) {
  const auto server = server_ctx("good");
  const auto client = client_ctx();
  auto p = co_await connected(lp, &server, &client);
  const std::string data = pattern(4 << 20, 11);
  REQUIRE(co_await p.server.write(data));
  p.server.close();  // no drain: close flushes, then sends close_notify
  auto got = co_await read_to_eof(&p.client);
  REQUIRE_MESSAGE(got, error_of(got));
  CHECK(got.value().size() == data.size());
  CHECK((got.value() == data));
}

TEST_CASE("close after a 4 MiB write delivers every byte, then close_notify reads as eof") {
  evco::test::run_on_loop(large_write_then_close);
}

// shutdown() waits for its close_notify to go out rather than report success without it.
task<void> shutdown_on_a_full_socket(loop& lp) {
  const auto server = server_ctx("good");
  const auto client = client_ctx();
  auto p = co_await connected(lp, &server, &client);
  bufferevent_disable(p.server.native_handle(), EV_READ);  // the server reads nothing now
  // Fill the client's socket (with bytes the server will never decrypt).
  const int fd = bufferevent_getfd(p.client.native_handle());
  const std::string junk(64 << 10, 'x');
  int sends = 0;
  while (sends < 100000 && ::send(fd, junk.data(), junk.size(), MSG_DONTWAIT | MSG_NOSIGNAL) > 0)
    ++sends;
  REQUIRE(errno == EAGAIN);
  auto r = co_await p.client.shutdown(50ms);
  REQUIRE_FALSE(r);
  CHECK(r.error() == errc::timed_out);
}

TEST_CASE("shutdown on a TLS stream whose socket is full waits to send close_notify") {
  evco::test::run_on_loop(shutdown_on_a_full_socket);
}

task<void> truncation(loop& lp) {
  const auto server = server_ctx("good");
  const auto client = client_ctx();
  auto p = co_await connected(lp, &server, &client);
  REQUIRE(co_await p.server.write("last words"));
  REQUIRE(co_await p.server.drain());
  // The server's TCP ends without close_notify, as an attacker cutting the stream would do.
  REQUIRE(::shutdown(bufferevent_getfd(p.server.native_handle()), SHUT_WR) == 0);

  std::string got(10, '\0');
  REQUIRE(co_await p.client.read_exactly(span_of(got)));  // the bytes before the cut arrive
  CHECK(got == "last words");
  auto end = co_await p.client.read_some(span_of(got));
  REQUIRE_FALSE(end);
  CHECK(end.error() != errc::eof);
  CHECK(end.error() == evco::tls_errc::truncated);
  CHECK(end.error().message().find("close_notify") != std::string::npos);
  auto again = co_await p.client.read_some(span_of(got));  // sticky
  REQUIRE_FALSE(again);
  CHECK(again.error() == evco::tls_errc::truncated);
}

TEST_CASE("a peer ending TCP without close_notify is a truncation error, not eof") {
  evco::test::run_on_loop(truncation);
}

// ---- verification ---------------------------------------------------------------------------

task<std::error_code> rejected(loop& lp, const std::string& cert, std::string name) {
  const auto server = server_ctx(cert);
  const auto client = client_ctx();
  auto o = co_await handshake_both(lp, &server, &client, std::move(name));
  CHECK_FALSE(o.client);
  CHECK_FALSE(o.server);  // the client's alert (or its close) fails the server side too
  co_return error_of(o.client);
}

TEST_CASE("a self-signed certificate is rejected with a readable tls error") {
  const std::size_t fds = evco::test::open_fds();
  {
    loop lp;
    const auto ec = lp.run(rejected(lp, "self", "localhost"));
    CHECK(ec.category() == evco::tls_category());
    CHECK(ec.message().find("certificate verify failed") != std::string::npos);
    CHECK(ec.message().find("self") != std::string::npos);
    MESSAGE(ec);
  }
  CHECK(evco::test::open_fds() == fds);  // both failed ends closed their sockets
}

TEST_CASE("a certificate for another host name is rejected") {
  loop lp;
  const auto ec = lp.run(rejected(lp, "wrong", "localhost"));
  CHECK(ec.category() == evco::tls_category());
  CHECK(ec.message().find("hostname mismatch") != std::string::npos);
  MESSAGE(ec);
}

TEST_CASE("an expired certificate is rejected") {
  loop lp;
  const auto ec = lp.run(rejected(lp, "expired", "localhost"));
  CHECK(ec.category() == evco::tls_category());
  CHECK(ec.message().find("expired") != std::string::npos);
  MESSAGE(ec);
}

task<void> insecure_accepts_anything(loop& lp) {
  const auto server = server_ctx("self");
  evco::tls_client_options o;
  o.insecure_skip_verify = true;
  auto client = tls_context::client(o);
  REQUIRE(client);
  auto p = co_await connected(lp, &server, &client.value(), "any.name.at.all");
  co_await echo_and_close(std::move(p));
}

TEST_CASE("insecure_skip_verify accepts a self-signed certificate for any name") {
  evco::test::run_on_loop(insecure_accepts_anything);
}

task<void> old_protocol(loop& lp) {
  evco::tls_server_options so;
  so.min_version = evco::tls_version::unspecified;
  so.max_version = evco::tls_version::v1_1;
  const auto server = server_ctx("good", so);
  // OpenSSL 3 allows TLS 1.1 only at security level 0: make the server really speak it.
  SSL_CTX_set_security_level(server.native_handle(), 0);

  const auto client = client_ctx();  // minimum TLS 1.2 by default
  auto o = co_await handshake_both(lp, &server, &client, "localhost");
  REQUIRE_FALSE(o.client);
  CHECK(o.client.error().category() == evco::tls_category());
  MESSAGE("TLS 1.1 server: ", o.client.error());

  // The same server does work for a client that allows TLS 1.1: the refusal above was the
  // client's minimum, not a broken server.
  evco::tls_client_options co;
  co.ca_file = certs().ca;
  co.min_version = evco::tls_version::v1_1;
  auto lenient = tls_context::client(co);
  REQUIRE(lenient);
  SSL_CTX_set_security_level(lenient.value().native_handle(), 0);
  auto p = co_await connected(lp, &server, &lenient.value());
  CHECK(evco::tls_protocol(p.client) == "TLSv1.1");
}

TEST_CASE("a server limited to TLS 1.1 fails against the default minimum of TLS 1.2") {
  evco::test::run_on_loop(old_protocol);
}

// connect(host, port, {.tls}) resolves, races the addresses, then does the handshake with
// the host as server name; a failed verification is reported as the handshake phase.
task<void> hostname_connect_with_tls(loop& lp) {
  const auto server = server_ctx("good");
  const auto client = client_ctx();
  const auto self_signed = server_ctx("self");
  for (const tls_context* srv_ctx : {&server, &self_signed}) {
    auto l = listener::bind(lp, endpoint::v4_loopback());
    REQUIRE(l);
    server_end srv;
    lp.spawn(accept_tls(&l.value(), srv_ctx, &srv), [](std::exception_ptr) { FAIL("server"); });
    evco::connect_report report;
    evco::connect_options o;
    o.tls = &client;
    o.handshake_timeout = 10s;
    o.report = &report;
    auto c = co_await evco::connect(lp, "127.0.0.1", l.value().local_endpoint().value().port(), o);
    co_await srv.done;
    if (srv_ctx == &server) {
      REQUIRE_MESSAGE(c, error_of(c));
      CHECK(evco::tls_protocol(c.value()) == "TLSv1.3");
      CHECK(report.failed == evco::connect_phase::none);
    } else {
      REQUIRE_FALSE(c);
      CHECK(c.error().category() == evco::tls_category());
      CHECK(report.failed == evco::connect_phase::handshake);
      CHECK(report.to_string().starts_with("handshake: tls: certificate verify failed"));
    }
  }
}

TEST_CASE("a hostname connect with tls options verifies the peer and reports the handshake phase") {
  evco::test::run_on_loop(hostname_connect_with_tls);
}

// ---- server names ---------------------------------------------------------------------------

task<void> sni_seen(loop& lp) {
  const auto server = server_ctx("good");
  const auto client = client_ctx();
  {
    auto p = co_await connected(lp, &server, &client, "localhost");
    CHECK(evco::tls_server_name(p.server) == "localhost");
    CHECK(evco::tls_server_name(p.client) == "localhost");
    SSL* ssl = bufferevent_openssl_get_ssl(p.server.native_handle());
    REQUIRE(ssl != nullptr);
    CHECK(std::string(SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name)) == "localhost");
  }
  {
    // An address is verified against the certificate's IP SAN, and is never sent as SNI.
    auto p = co_await connected(lp, &server, &client, "127.0.0.1");
    CHECK(evco::tls_server_name(p.server).empty());
    co_await echo_and_close(std::move(p));
  }
}

TEST_CASE("the server sees the client's SNI; an IP address is verified and sends none") {
  evco::test::run_on_loop(sni_seen);
}

// A name with a NUL in it is not cut short at the NUL: the certificate is for "localhost", and
// "localhost\0.evil.example" must not be accepted as if it were that name.
task<void> server_name_with_nul(loop& lp) {
  const auto server = server_ctx("good");
  const auto client = client_ctx();
  const std::string name("localhost\0.evil.example", 23);
  auto o = co_await handshake_both(lp, &server, &client, name);
  REQUIRE_FALSE(o.client);
  CHECK(o.client.error() == std::errc::invalid_argument);
  CHECK_FALSE(o.server);  // the client never started the handshake
}

TEST_CASE("a server name with a NUL in it is rejected, not verified up to the NUL") {
  evco::test::run_on_loop(server_name_with_nul);
}

task<void> bad_arguments(loop& lp) {
  const auto client = client_ctx();
  auto l = listener::bind(lp, endpoint::v4_loopback());
  REQUIRE(l);
  auto tcp = co_await evco::connect(lp, l.value().local_endpoint().value());
  REQUIRE(tcp);
  // Verification on and no name to verify: refused rather than silently unchecked.
  auto r = co_await evco::tls_client(std::move(tcp).value(), client, "", 1s);
  REQUIRE_FALSE(r);
  CHECK(r.error() == std::errc::invalid_argument);

  auto closed = co_await evco::tls_client(stream{}, client, "localhost", 1s);
  REQUIRE_FALSE(closed);
  CHECK(closed.error() == errc::closed);
}

TEST_CASE("a verifying client needs a server name; a closed stream is closed") {
  evco::test::run_on_loop(bad_arguments);
}

// ---- handshake budgets and cancellation -----------------------------------------------------

// The listener never accepts: the kernel completes TCP, and nobody answers the ClientHello.
task<void> silent_server(loop& lp, evco::duration budget, std::stop_source* stop,
                         std::error_code* out, evco::duration busy = {},
                         evco::duration* took = nullptr) {
  auto l = listener::bind(lp, endpoint::v4_loopback());
  REQUIRE(l);
  auto tcp = co_await evco::connect(lp, l.value().local_endpoint().value());
  REQUIRE(tcp);
  const auto client = client_ctx();
  if (stop) {
    struct later {
      static task<void> run(std::stop_source* s) {
        s->request_stop();
        co_return;
      }
    };
    // Starts from the loop, once tls_client below is parked in its handshake.
    lp.spawn(later::run(stop), [](std::exception_ptr) { FAIL("stop"); });
  }
  // Not inline in the co_await: g++ 12 mishandles a conditional's temporaries in there.
  std::stop_token token = stop ? stop->get_token() : std::stop_token{};
  evco::test::busy_for(busy);  // the loop's cached time falls behind
  const auto start = evco::clock::now();
  auto r = co_await evco::tls_client(std::move(tcp).value(), client, "localhost", budget,
                                     std::move(token));
  if (took) *took = evco::clock::now() - start;
  *out = error_of(r);
}

TEST_CASE("a server that never answers fails the handshake with handshake_timed_out") {
  loop lp;
  std::error_code ec;
  lp.run(silent_server(lp, 50ms, nullptr, &ec));
  CHECK(ec == errc::handshake_timed_out);
  CHECK(ec == std::errc::timed_out);
  CHECK(ec.message().find("handshake") != std::string::npos);
}

TEST_CASE("a handshake budget armed after long work inside a callback never ends early") {
  loop lp;
  std::error_code ec;
  evco::duration took{};
  lp.run(silent_server(lp, 50ms, nullptr, &ec, 100ms, &took));
  CHECK(ec == errc::handshake_timed_out);
  CHECK(took >= 50ms);
}

TEST_CASE("a stop request cancels a stalled handshake") {
  loop lp;
  std::stop_source stop;
  std::error_code ec;
  lp.run(silent_server(lp, {}, &stop, &ec));
  CHECK(ec == errc::cancelled);
  CHECK(ec == std::errc::operation_canceled);
}

// ---- the TCP stream under a TLS stream ------------------------------------------------------

task<void> stop_after(loop& lp, std::stop_source* src, evco::duration d) {
  (void)co_await evco::sleep_for(lp, d);
  src->request_stop();
}

// The idle timeouts set on the TCP stream hold for the TLS stream that replaces it. (tls.cpp
// carries the read limit and the write watermarks over too; only the timeouts are checked.)
task<void> settings_survive_the_handshake(loop& lp) {
  const auto server = server_ctx("good");
  const auto client = client_ctx();
  auto l = listener::bind(lp, endpoint::v4_loopback());
  REQUIRE(l);
  auto ep = l.value().local_endpoint();
  REQUIRE(ep);
  server_end srv;
  lp.spawn(accept_tls(&l.value(), &server, &srv), [](std::exception_ptr) { FAIL("server"); });
  auto tcp = co_await evco::connect(lp, ep.value());
  REQUIRE_MESSAGE(tcp, error_of(tcp));
  tcp.value().set_timeouts(100ms, evco::duration{});
  auto c = co_await evco::tls_client(std::move(tcp).value(), client, "localhost", 10s);
  REQUIRE_MESSAGE(c, error_of(c));
  co_await srv.done;
  REQUIRE(srv.s->has_value());
  // The server sends nothing. Should the idle timeout be lost, the backstop cancels instead.
  std::stop_source backstop;
  lp.spawn(stop_after(lp, &backstop, 10s), [](std::exception_ptr) { FAIL("backstop"); });
  std::string buf(16, '\0');
  auto r = co_await c.value().read_some(span_of(buf), backstop.get_token());
  REQUIRE_FALSE(r);
  CHECK(r.error() == errc::timed_out);
}

TEST_CASE("a TLS stream keeps the idle timeouts set on its TCP stream") {
  evco::test::run_on_loop(settings_survive_the_handshake);
}

// A TLS stream whose input holds its read limit, with nobody reading, stops reading there and
// waits without costing CPU; the bytes are all read later. (libevent 2.1.11+ runs such a
// bufferevent's read callback again and again for as long as it stays at the limit: see
// on_read in lib/stream/bufferevent_io.cpp.)
task<void> read_limit_without_reader(loop& lp) {
  const auto server = server_ctx("good");
  const auto client = client_ctx();
  auto p = co_await connected(lp, &server, &client);
  p.server.set_read_limit(16 << 10);
  const std::string sent = pattern(256 << 10, 21);
  REQUIRE(co_await p.client.write(sent));
  REQUIRE(co_await p.client.shutdown());
  for (int i = 0; i < 1000 && p.server.buffered_input() < (16u << 10); ++i)
    co_await lp.yield();
  REQUIRE(p.server.buffered_input() >= (16u << 10));
  const auto start = evco::clock::now();
  const auto cpu = evco::test::thread_cpu();
  REQUIRE(co_await evco::sleep_for(lp, 100ms));
  // Waiting costs next to nothing; a busy loop gets a good share of a core even on a loaded
  // machine.
  CHECK(evco::test::thread_cpu() - cpu < (evco::clock::now() - start) / 10);
  auto got = co_await read_to_eof(&p.server);
  REQUIRE_MESSAGE(got, error_of(got));
  CHECK((got.value() == sent));
}

TEST_CASE("a TLS stream at its read limit with nobody reading waits without a busy loop") {
  evco::test::run_on_loop(read_limit_without_reader);
}

// The accepted stream already read the ClientHello before it was handed to tls_server.
task<void> client_hello_already_buffered(loop& lp) {
  const auto server = server_ctx("good");
  const auto client = client_ctx();
  auto l = listener::bind(lp, endpoint::v4_loopback());
  REQUIRE(l);
  struct client_side {
    static task<void> run(loop& lp, endpoint ep, const tls_context* ctx,
                          std::optional<result<stream>>* out, evco::test::signal* done) {
      out->emplace(co_await dial_tls(lp, ep, ctx, "localhost"));
      done->set();
    }
  };
  std::optional<result<stream>> c;
  evco::test::signal client_done;
  lp.spawn(client_side::run(lp, l.value().local_endpoint().value(), &client, &c, &client_done),
           [](std::exception_ptr) { FAIL("client"); });
  auto tcp = co_await l.value().accept();
  REQUIRE(tcp);
  // Wait until at least a record header is buffered, without consuming it: a delimiter that
  // never comes and a maximum of 5 bytes make read_until stop with limit_exceeded.
  std::string none;
  auto peek = co_await tcp.value().read_until(none, "never in a ClientHello", 5);
  REQUIRE_FALSE(peek);
  REQUIRE(peek.error() == errc::limit_exceeded);
  CHECK(tcp.value().buffered_input() >= 5);

  auto s = co_await evco::tls_server(std::move(tcp).value(), server, 10s);
  REQUIRE_MESSAGE(s, error_of(s));
  co_await client_done;
  REQUIRE(c);
  REQUIRE_MESSAGE(*c, error_of(*c));
  tls_pair p{std::move(*c).value(), std::move(s).value()};  // not in the co_await: see op_options
  co_await echo_and_close(std::move(p));
}

TEST_CASE("a ClientHello the plain stream already buffered is not lost") {
  evco::test::run_on_loop(client_hello_already_buffered);
}

// ---- contexts -------------------------------------------------------------------------------

TEST_CASE("contexts report unreadable files as errors") {
  evco::tls_client_options o;
  o.ca_file = (certs().dir / "missing.pem").string();
  auto c = tls_context::client(o);
  REQUIRE_FALSE(c);
  MESSAGE(c.error());
  auto s = tls_context::server(certs().cert("missing"), certs().key("good"));
  REQUIRE_FALSE(s);
  MESSAGE(s.error());
  // A key that is not the certificate's.
  auto m = tls_context::server(certs().cert("good"), certs().key("self"));
  REQUIRE_FALSE(m);
  CHECK(m.error().category() == evco::tls_category());
  MESSAGE(m.error());
}

TEST_CASE("a missing or empty file name is reported as no such file") {
  evco::tls_client_options o;
  o.ca_file = (certs().dir / "missing.pem").string();
  auto c = tls_context::client(o);
  REQUIRE_FALSE(c);
  CHECK(c.error() == std::errc::no_such_file_or_directory);
  auto none = tls_context::server("", "");
  REQUIRE_FALSE(none);
  CHECK(none.error() == std::errc::no_such_file_or_directory);
  auto no_key = tls_context::server(certs().cert("good"), (certs().dir / "missing.key").string());
  REQUIRE_FALSE(no_key);
  CHECK(no_key.error() == std::errc::no_such_file_or_directory);
}

TEST_CASE("a file name with a NUL in it is rejected, not opened up to the NUL") {
  const std::string junk("\0junk", 5);
  evco::tls_client_options o;
  o.ca_file = certs().ca + junk;
  auto c = tls_context::client(o);
  REQUIRE_FALSE(c);
  CHECK(c.error() == std::errc::invalid_argument);
  auto cert = tls_context::server(certs().cert("good") + junk, certs().key("good"));
  REQUIRE_FALSE(cert);
  CHECK(cert.error() == std::errc::invalid_argument);
  auto key = tls_context::server(certs().cert("good"), certs().key("good") + junk);
  REQUIRE_FALSE(key);
  CHECK(key.error() == std::errc::invalid_argument);
}

TEST_CASE("a version range that cannot work is rejected when the context is made") {
  evco::tls_client_options o;
  o.ca_file = certs().ca;
  o.min_version = evco::tls_version::v1_3;
  o.max_version = evco::tls_version::v1_2;
  auto inverted = tls_context::client(o);
  REQUIRE_FALSE(inverted);
  CHECK(inverted.error() == std::errc::invalid_argument);
  for (const int v : {12345, -1, 0x0305, 0x0300}) {
    CAPTURE(v);
    o.min_version = static_cast<evco::tls_version>(v);
    o.max_version = evco::tls_version::unspecified;
    auto bad_min = tls_context::client(o);
    REQUIRE_FALSE(bad_min);
    CHECK(bad_min.error() == std::errc::invalid_argument);
    o.min_version = evco::tls_version::v1_2;
    o.max_version = static_cast<evco::tls_version>(v);
    auto bad_max = tls_context::client(o);
    REQUIRE_FALSE(bad_max);
    CHECK(bad_max.error() == std::errc::invalid_argument);
  }
  evco::tls_server_options so;
  so.min_version = evco::tls_version::v1_3;
  so.max_version = evco::tls_version::v1_2;
  auto server = tls_context::server(certs().cert("good"), certs().key("good"), so);
  REQUIRE_FALSE(server);
  CHECK(server.error() == std::errc::invalid_argument);
  // Equal bounds and open ends are fine.
  o.min_version = o.max_version = evco::tls_version::v1_3;
  CHECK(tls_context::client(o));
  so.min_version = evco::tls_version::unspecified;
  CHECK(tls_context::server(certs().cert("good"), certs().key("good"), so));
}

// ---- errors ---------------------------------------------------------------------------------

TEST_CASE("tls errors have their own category and readable messages") {
  const std::error_code t = evco::tls_errc::truncated;
  CHECK(std::string(t.category().name()) == "tls");
  CHECK(t != errc::eof);
  CHECK(t.message().find("truncated") != std::string::npos);
  CHECK(std::error_code(errc::handshake_timed_out) == std::errc::timed_out);
}

}  // namespace

TEST_SUITE_END();
