#include "evco/endpoint.hpp"

#include <doctest/doctest.h>

#include <sys/un.h>

#include <cstddef>
#include <cstring>

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

  TEST_CASE("from_sockaddr rejects a null address or a zero length with invalid_argument") {
    auto null = endpoint::from_sockaddr(nullptr, 0);
    REQUIRE(!null);
    CHECK(null.error() == std::errc::invalid_argument);
    auto null_with_len = endpoint::from_sockaddr(nullptr, sizeof(sockaddr_in));
    REQUIRE(!null_with_len);
    CHECK(null_with_len.error() == std::errc::invalid_argument);
    const endpoint v4 = endpoint::v4_loopback(80);
    auto empty = endpoint::from_sockaddr(v4.data(), 0);
    REQUIRE(!empty);
    CHECK(empty.error() == std::errc::invalid_argument);
    auto one_byte = endpoint::from_sockaddr(v4.data(), 1);
    REQUIRE(!one_byte);
    CHECK(one_byte.error() == std::errc::invalid_argument);
  }

  TEST_CASE("from_sockaddr rejects a length too short for the family and non-IP families") {
    const endpoint v4 = endpoint::v4_loopback(80);
    const endpoint v6 = endpoint::v6_loopback(443);
    auto short_v4 = endpoint::from_sockaddr(v4.data(), sizeof(sockaddr_in) - 1);
    REQUIRE(!short_v4);
    CHECK(short_v4.error() == std::errc::invalid_argument);
    auto short_v6 = endpoint::from_sockaddr(v6.data(), sizeof(sockaddr_in6) - 1);
    REQUIRE(!short_v6);
    CHECK(short_v6.error() == std::errc::invalid_argument);
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    auto unix_sa = endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&un), sizeof un);
    REQUIRE(!unix_sa);
    CHECK(unix_sa.error() == std::errc::address_family_not_supported);
    // Exactly long enough, and longer (a sockaddr_storage), both work.
    CHECK(endpoint::from_sockaddr(v4.data(), sizeof(sockaddr_in)).value() == v4);
    CHECK(endpoint::from_sockaddr(v6.data(), sizeof(sockaddr_storage)).value() == v6);
  }

  TEST_CASE("from_sockaddr reads an address that is not aligned in its buffer") {
    const endpoint v6 = endpoint::v6_loopback(443);
    alignas(sockaddr_in6) unsigned char buf[sizeof(sockaddr_in6) + 1];
    std::memcpy(buf + 1, v6.data(), sizeof(sockaddr_in6));
    auto r =
        endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(buf + 1), sizeof(sockaddr_in6));
    REQUIRE(r);
    CHECK(r.value() == v6);
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
