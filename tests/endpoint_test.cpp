#include "evco/endpoint.hpp"

#include <doctest/doctest.h>

#include <sys/un.h>

#include <cstddef>
#include <cstring>
#include <string>
#include <string_view>

#include "support.hpp"

using evco::endpoint;
using evco::errc;
using namespace std::string_view_literals;

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

  TEST_CASE("each kind of malformed endpoint gets its own code and a message that names it") {
    struct bad_case {
      std::string_view text;
      errc code;
      const char* says;  // what the message mentions
    };
    for (const bad_case& c : {
             bad_case{"127.0.0.1", errc::endpoint_no_port, "no port"},
             bad_case{"127.0.0.1:", errc::endpoint_no_port, "no port"},
             bad_case{"", errc::endpoint_no_port, "no port"},
             bad_case{"[::1]", errc::endpoint_no_port, "no port"},
             bad_case{"[::1]:", errc::endpoint_no_port, "no port"},
             bad_case{"[::1]80", errc::endpoint_no_port, "no port"},
             bad_case{"1.2.3.4:99999", errc::endpoint_bad_port, "0 to 65535"},
             bad_case{"127.0.0.1:65536", errc::endpoint_bad_port, "0 to 65535"},
             bad_case{"127.0.0.1:8x", errc::endpoint_bad_port, "not a number"},
             bad_case{"127.0.0.1:-1", errc::endpoint_bad_port, "not a number"},
             bad_case{"127.0.0.1:+80", errc::endpoint_bad_port, "not a number"},
             bad_case{"127.0.0.1:http", errc::endpoint_bad_port, "not a number"},
             bad_case{"127.0.0.1: 80", errc::endpoint_bad_port, "not a number"},
             bad_case{"[::1]:99999999999999999999999", errc::endpoint_bad_port, "0 to 65535"},
             bad_case{"localhost:80", errc::endpoint_not_numeric, "connect(lp, host, port)"},
             bad_case{"localhost", errc::endpoint_not_numeric, "numeric"},
             bad_case{"example.com:http", errc::endpoint_not_numeric, "numeric"},
             bad_case{"1.2.3:80", errc::endpoint_not_numeric, "numeric"},
             bad_case{"256.1.1.1:80", errc::endpoint_not_numeric, "numeric"},
             bad_case{"[]:80", errc::endpoint_not_numeric, "numeric"},
             bad_case{"[localhost]:80", errc::endpoint_not_numeric, "numeric"},
             bad_case{"a:b:80", errc::endpoint_not_numeric, "numeric"},
             bad_case{"::1:80", errc::endpoint_ipv6_unbracketed, "[::1]:80"},
             bad_case{"::1", errc::endpoint_ipv6_unbracketed, "brackets"},
             bad_case{"2001:db8::1:443", errc::endpoint_ipv6_unbracketed, "brackets"},
             bad_case{"[::1:80", errc::endpoint_ipv6_unbracketed, "brackets"},
         }) {
      CAPTURE(c.text);
      auto r = endpoint::parse(c.text);
      REQUIRE(!r);
      CHECK(r.error() == c.code);
      CHECK(r.error() == std::errc::invalid_argument);
      CHECK(r.error().message().find(c.says) != std::string::npos);
    }
  }

  TEST_CASE("ports 0 and 65535 are in range") {
    CHECK(endpoint::parse("0.0.0.0:0").value().port() == 0);
    CHECK(endpoint::parse("[::]:65535").value().port() == 65535);
    CHECK(endpoint::parse("127.0.0.1:0080").value().port() == 80);
  }

  TEST_CASE("parse(address, port) reports anything but a bare numeric address as not numeric") {
    for (std::string_view bad : {"localhost"sv, ""sv, "1.2.3.4:80"sv, "[::1]:80"sv, "::1%lo"sv}) {
      CAPTURE(bad);
      auto r = endpoint::parse(bad, 80);
      REQUIRE(!r);
      CHECK(r.error() == errc::endpoint_not_numeric);
      CHECK(r.error() == std::errc::invalid_argument);
      CHECK(r.error().message().find("numeric") != std::string::npos);
    }
    CHECK(endpoint::parse("[::1]", 80).value() == endpoint::v6_loopback(80));
  }

  TEST_CASE("an embedded NUL ends no address early: the whole text must be the address") {
    // inet_pton stops at a NUL, so the part before it used to be accepted on its own.
    for (std::string_view bad :
         {"127.0.0.1\0junk:80"sv, "127.0.0.1\0:80"sv, "[::1\0]:80"sv, "127.0.0.1:80\0"sv, "\0"sv}) {
      CAPTURE(bad.size());
      auto r = endpoint::parse(bad);
      REQUIRE(!r);
      CHECK(r.error() == std::errc::invalid_argument);
    }
    auto a = endpoint::parse("127.0.0.1\0junk"sv, 80);
    REQUIRE(!a);
    CHECK(a.error() == errc::endpoint_not_numeric);
    auto b = endpoint::parse("::1\0"sv, 80);
    REQUIRE(!b);
    CHECK(b.error() == errc::endpoint_not_numeric);
  }

  TEST_CASE("huge endpoint strings fail without reading past them") {
    const std::string digits(1 << 20, '1');
    const std::string colons(1 << 20, ':');
    const std::string digits_port = "127.0.0.1:" + digits;
    const std::string long_host = digits + ":80";
    CHECK(endpoint::parse(digits).error() == errc::endpoint_not_numeric);
    CHECK(endpoint::parse(colons).error() == errc::endpoint_not_numeric);
    CHECK(endpoint::parse(long_host).error() == errc::endpoint_not_numeric);
    CHECK(endpoint::parse(digits_port).error() == errc::endpoint_bad_port);
    CHECK(endpoint::parse("[" + digits + "]:80").error() == errc::endpoint_not_numeric);
    CHECK(endpoint::parse(digits, 80).error() == errc::endpoint_not_numeric);
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

  TEST_CASE("from_sockaddr rejects a length too short for the family and other families") {
    const endpoint v4 = endpoint::v4_loopback(80);
    const endpoint v6 = endpoint::v6_loopback(443);
    auto short_v4 = endpoint::from_sockaddr(v4.data(), sizeof(sockaddr_in) - 1);
    REQUIRE(!short_v4);
    CHECK(short_v4.error() == std::errc::invalid_argument);
    auto short_v6 = endpoint::from_sockaddr(v6.data(), sizeof(sockaddr_in6) - 1);
    REQUIRE(!short_v6);
    CHECK(short_v6.error() == std::errc::invalid_argument);
    sockaddr_storage other{};
    other.ss_family = AF_NETLINK;
    auto netlink = endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&other), sizeof other);
    REQUIRE(!netlink);
    CHECK(netlink.error() == std::errc::address_family_not_supported);
    // A Unix address may be as short as its family (unnamed), never longer than sockaddr_un.
    other.ss_family = AF_UNIX;
    auto too_long =
        endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&other), sizeof(sockaddr_un) + 1);
    REQUIRE(!too_long);
    CHECK(too_long.error() == std::errc::invalid_argument);
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
    // The address counts, before the port.
    CHECK(endpoint::parse("127.0.0.1:1").value() != endpoint::parse("127.0.0.2:1").value());
    CHECK(endpoint::parse("127.0.0.1:9").value() < endpoint::parse("127.0.0.2:1").value());
    CHECK(endpoint::parse("[::1]:1").value() != endpoint::parse("[::2]:1").value());
    CHECK(endpoint::parse("[::1]:9").value() < endpoint::parse("[::2]:1").value());
    CHECK(endpoint::parse("[::1]:1").value() < endpoint::parse("[::1]:2").value());
    CHECK(endpoint::parse("127.0.0.1:256").value() > endpoint::parse("127.0.0.1:1").value());
    auto e = endpoint::v4_loopback(5);
    e.set_port(6);
    CHECK(e.port() == 6);
  }

  TEST_CASE("Unix paths and abstract names print back as parse() takes them") {
    for (const char* text : {"unix:/run/app.sock", "unix:relative.sock", "unix:@app"}) {
      CAPTURE(text);
      auto e = endpoint::parse(text);
      REQUIRE_MESSAGE(e, evco::test::error_of(e));
      CHECK(e.value().is_unix());
      CHECK(!e.value().is_v4());
      CHECK(e.value().family() == AF_UNIX);
      CHECK(e.value().to_string() == text);
      CHECK(e.value().path() == std::string_view(text).substr(5));
      CHECK(e.value().address() == e.value().path());
      CHECK(e.value().port() == 0);
    }
    // parse(address, port) takes them too, so that ADDRESS PORT programs serve either.
    auto e = endpoint::parse("unix:/tmp/x", 80);
    REQUIRE(e);
    CHECK(e.value() == endpoint::unix_path("/tmp/x").value());
    e.value().set_port(9);  // nothing to set
    CHECK(e.value().port() == 0);
    CHECK(e.value().to_string() == "unix:/tmp/x");
    CHECK(endpoint::v4_loopback(80).path().empty());
  }

  TEST_CASE("a Unix path's size counts its terminator; an abstract name's does not") {
    constexpr auto base = offsetof(sockaddr_un, sun_path);
    const endpoint path = endpoint::unix_path("/a/b").value();
    CHECK(path.size() == base + 5);
    const auto& sun = reinterpret_cast<const sockaddr_un&>(*path.data());
    CHECK(std::string_view(sun.sun_path) == "/a/b");
    const endpoint abstract = endpoint::unix_path("@ab").value();
    CHECK(abstract.size() == base + 3);
    const auto& asun = reinterpret_cast<const sockaddr_un&>(*abstract.data());
    CHECK(asun.sun_path[0] == '\0');
    CHECK(std::string_view(asun.sun_path + 1, 2) == "ab");
  }

  TEST_CASE("Unix paths past sun_path, empty ones and NULs inside are rejected") {
    const std::string longest(107, 'a');
    CHECK(endpoint::unix_path(longest).value().path() == longest);
    CHECK(endpoint::unix_path("@" + longest).value().path() == "@" + longest);
    for (const std::string& bad : {longest + "a", "@" + longest + "a", std::string(4096, '/')}) {
      auto e = endpoint::unix_path(bad);
      REQUIRE(!e);
      CHECK(e.error() == errc::endpoint_path_too_long);
      CHECK(e.error() == std::errc::filename_too_long);
    }
    for (const std::string_view bad : {std::string_view(""), std::string_view("@"),
                                       std::string_view("/a\0b", 4), std::string_view("unix:")}) {
      CAPTURE(bad);
      auto e = bad.starts_with("unix:") ? endpoint::parse(bad) : endpoint::unix_path(bad);
      REQUIRE(!e);
      CHECK(e.error() == std::errc::invalid_argument);
    }
  }

  TEST_CASE("from_sockaddr reads Unix addresses: unnamed, paths with or without their NUL") {
    constexpr auto base = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path));
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    const auto* sa = reinterpret_cast<const sockaddr*>(&un);
    auto unnamed = endpoint::from_sockaddr(sa, base);
    REQUIRE(unnamed);
    CHECK(unnamed.value().is_unix());
    CHECK(unnamed.value().path().empty());
    CHECK(unnamed.value().to_string() == "unix:");
    std::memcpy(un.sun_path, "/x/y", 4);
    const endpoint with_nul = endpoint::from_sockaddr(sa, base + 5).value();
    const endpoint without = endpoint::from_sockaddr(sa, base + 4).value();
    const endpoint whole = endpoint::from_sockaddr(sa, sizeof un).value();
    CHECK(with_nul.path() == "/x/y");
    CHECK(without == with_nul);
    CHECK(whole == with_nul);
    CHECK(whole.size() == base + 5);
    CHECK(with_nul == endpoint::unix_path("/x/y").value());
  }

  TEST_CASE("Unix endpoints compare by their bytes, apart from IP ones") {
    const endpoint a = endpoint::unix_path("/a").value();
    const endpoint b = endpoint::unix_path("/b").value();
    const endpoint abstract_a = endpoint::unix_path("@a").value();
    CHECK(a == endpoint::unix_path("/a").value());
    CHECK(a != b);
    CHECK(a < b);
    CHECK(abstract_a != a);
    CHECK(abstract_a < a);  // an abstract name starts with NUL
    CHECK(endpoint::unix_path("/a").value() < endpoint::unix_path("/ab").value());
    CHECK(a != endpoint::v4_loopback(0));
    CHECK(a < endpoint::v4_loopback(0));  // by family first: AF_UNIX (1) before AF_INET (2)
  }
}
