#include "evco/endpoint.hpp"

#include <doctest/doctest.h>

#include "support.hpp"

using evco::endpoint;

TEST_SUITE("endpoint") {
  TEST_CASE("IPv4 and IPv6 endpoints parse and print back the same text") {
    auto a = endpoint::parse("127.0.0.1:8080");
    REQUIRE(a);
    CHECK(a.value().is_v4());
    CHECK(a.value().port() == 8080);
    CHECK(a.value().to_string() == "127.0.0.1:8080");
    auto b = endpoint::parse("[::1]:443");
    REQUIRE(b);
    CHECK(b.value().is_v6());
    CHECK(b.value().address() == "::1");
    CHECK(b.value().to_string() == "[::1]:443");
    auto c = endpoint::parse("::1", 80);
    REQUIRE(c);
    CHECK(c.value() == endpoint::v6_loopback(80));
  }

  TEST_CASE("malformed endpoints are rejected with invalid_argument") {
    for (const char* bad : {"", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "1.2.3:80", "::1:80",
                            "[::1]", "host:80", "127.0.0.1:8x"}) {
      CAPTURE(bad);
      auto r = endpoint::parse(bad);
      REQUIRE(!r);
      CHECK(r.error() == std::errc::invalid_argument);
    }
  }

  TEST_CASE("endpoints compare by family, address and port") {
    CHECK(endpoint::v4_loopback(1) == endpoint::parse("127.0.0.1:1").value());
    CHECK(endpoint::v4_loopback(1) != endpoint::v4_loopback(2));
    CHECK(endpoint::v4_loopback(1) < endpoint::v4_loopback(2));
    CHECK(endpoint::v4_loopback(1) != endpoint::v6_loopback(1));
    auto e = endpoint::v4_loopback(5);
    e.set_port(6);
    CHECK(e.port() == 6);
  }
}
