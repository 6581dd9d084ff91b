#pragma once
// Both ends of a TLS connection over loopback, with certificates made at test time (pki.hpp):
// for the suites that run their cases over TLS among other transports.

#include <doctest/doctest.h>

#include <optional>
#include <utility>

#include "evco/tls.hpp"
#include "pki.hpp"
#include "support.hpp"

namespace evco::test {

using namespace std::chrono_literals;

// The server's context ("good": localhost, signed by the test CA) and a client's that trusts
// the test CA.
inline const tls_context& tls_server_ctx() {
  static const tls_context ctx = [] {
    auto c = tls_context::server(certs().cert("good"), certs().key("good"));
    REQUIRE_MESSAGE(c, error_of(c));
    return std::move(c).value();
  }();
  return ctx;
}

inline const tls_context& tls_client_ctx() {
  static const tls_context ctx = [] {
    tls_client_options o;
    o.ca_file = certs().ca;
    auto c = tls_context::client(o);
    REQUIRE_MESSAGE(c, error_of(c));
    return std::move(c).value();
  }();
  return ctx;
}

inline task<void> accept_tls(listener* l, std::optional<result<stream>>* out, signal* done) {
  auto s = co_await l->accept();
  if (s) {
    out->emplace(co_await tls_server(std::move(s).value(), tls_server_ctx(), 10s));
  } else {
    out->emplace(s.error());
  }
  done->set();
}

// The client's end and the server's, handshaken. `prepare` sees the client's TCP stream
// before its handshake (a rate limit the TLS stream keeps, say).
template <class Prepare>
task<result<std::pair<stream, stream>>> tls_ends(loop& lp, Prepare prepare) {
  EVCO_TRY(auto l, listener::bind(lp, endpoint::v4_loopback()));
  EVCO_TRY(const auto ep, l.local_endpoint());
  std::optional<result<stream>> server;
  signal accepted;
  lp.spawn(accept_tls(&l, &server, &accepted), [](std::exception_ptr) { FAIL("accept"); });
  EVCO_TRY(auto tcp, co_await connect(lp, ep));
  prepare(tcp);
  auto c = co_await tls_client(std::move(tcp), tls_client_ctx(), "localhost", 10s);
  co_await accepted;
  EVCO_TRY(auto client, std::move(c));
  EVCO_TRY(auto served, std::move(*server));
  co_return std::pair{std::move(client), std::move(served)};
}

inline task<result<std::pair<stream, stream>>> tls_ends(loop& lp) {
  return tls_ends(lp, [](stream&) {});
}

}  // namespace evco::test
