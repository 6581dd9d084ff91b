// The HTTP example's request parser (examples/http/request_parser.hpp), on its own: bytes in,
// views and outcomes out.

#include <doctest/doctest.h>

#include <string>
#include <string_view>

#include "http/request_parser.hpp"

using http::outcome;

namespace {

// Parses `bytes` whole with a fresh parser.
outcome parse(std::string_view bytes, http::request& req, http::limits lim = {}) {
  http::request_parser p(lim);
  return p.parse(bytes, req);
}

outcome parse(std::string_view bytes, http::limits lim = {}) {
  http::request req;
  return parse(bytes, req, lim);
}

// A GET with `headers` (each ending in CRLF) and a Host.
std::string get_with(std::string_view headers) {
  return "GET / HTTP/1.1\r\nHost: h\r\n" + std::string(headers) + "\r\n";
}

bool inside(std::string_view part, std::string_view whole) {
  return part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size();
}

}  // namespace

TEST_CASE("a request head is parsed in place") {
  const std::string bytes =
      "POST /echo?x=1 HTTP/1.1\r\nHost: example\r\nContent-Length: 5\r\nX-Pad:  a b \t\r\n\r\n"
      "hello";
  http::request req;
  REQUIRE(parse(bytes, req) == outcome::complete);
  CHECK(req.head_size == bytes.size() - 5);
  CHECK(req.method == "POST");
  CHECK(req.target == "/echo?x=1");
  CHECK(req.version_minor == 1);
  CHECK(req.content_length == 5);
  CHECK(req.keep_alive);
  CHECK_FALSE(req.expect_continue);
  REQUIRE(req.header_count == 3);
  CHECK(req.headers[0].name == "Host");
  CHECK(req.headers[0].value == "example");
  CHECK(req.headers[2].value == "a b");  // whitespace around the value is not part of it
  // Views into the caller's bytes, not copies.
  CHECK(inside(req.method, bytes));
  CHECK(inside(req.target, bytes));
  CHECK(inside(req.headers[1].name, bytes));
  CHECK(inside(req.headers[1].value, bytes));
}

TEST_CASE("every prefix of a head is incomplete, in one parser or a fresh one") {
  const std::string bytes = get_with("Connection: keep-alive\r\nX-A: b\r\n");
  http::request_parser growing;
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    CAPTURE(n);
    http::request req;
    CHECK(growing.parse(std::string_view(bytes).substr(0, n), req) == outcome::incomplete);
    CHECK(parse(std::string_view(bytes).substr(0, n)) == outcome::incomplete);
  }
  http::request req;
  REQUIRE(growing.parse(bytes, req) == outcome::complete);
  CHECK(req.head_size == bytes.size());
  CHECK(req.header_count == 3);
}

TEST_CASE("bare LF ends lines too, and empty lines before a request are skipped") {
  http::request req;
  const std::string lf = "\r\n\nGET /a HTTP/1.1\nHost: h\n\n";
  REQUIRE(parse(lf, req) == outcome::complete);
  CHECK(req.head_size == lf.size());
  CHECK(req.target == "/a");
  CHECK(req.headers[0].value == "h");

  // Empty lines split between calls.
  http::request_parser p;
  CHECK(p.parse("\r", req) == outcome::incomplete);
  CHECK(p.parse("\r\n", req) == outcome::incomplete);
  CHECK(p.parse("\r\nGET / HTTP/1.0\r\n\r", req) == outcome::incomplete);
  REQUIRE(p.parse("\r\nGET / HTTP/1.0\r\n\r\n", req) == outcome::complete);
  CHECK(req.head_size == 20);
  CHECK(req.method == "GET");
}

TEST_CASE("pipelined requests: each head ends where it ends, reset() starts the next") {
  const std::string one = get_with("");
  const std::string two = "GET /2 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
  const std::string bytes = one + two + "GET /3";
  http::request_parser p;
  http::request req;
  REQUIRE(p.parse(bytes, req) == outcome::complete);
  CHECK(req.head_size == one.size());
  p.reset();
  const std::string_view rest = std::string_view(bytes).substr(one.size());
  REQUIRE(p.parse(rest, req) == outcome::complete);
  CHECK(req.target == "/2");
  CHECK_FALSE(req.keep_alive);
  p.reset();
  CHECK(p.parse(rest.substr(two.size()), req) == outcome::incomplete);
}

TEST_CASE("Content-Length is digits only, agreed on, and bounded") {
  http::request req;
  CHECK(parse(get_with("Content-Length: 0\r\n"), req) == outcome::complete);
  CHECK(req.content_length == 0);
  CHECK(parse(get_with("Content-Length:  12 \r\n"), req) == outcome::complete);
  CHECK(req.content_length == 12);
  CHECK(parse(get_with("Content-Length: 7\r\ncontent-length: 7\r\n"), req) == outcome::complete);
  CHECK(req.content_length == 7);
  for (const char* bad : {"", "+5", "-1", "5,5", "5 5", "0x10", "1.0", "١"}) {
    CAPTURE(bad);
    CHECK(parse(get_with("Content-Length: " + std::string(bad) + "\r\n")) == outcome::bad_request);
  }
  CHECK(parse(get_with("Content-Length: 7\r\nContent-Length: 8\r\n")) == outcome::bad_request);
  CHECK(parse(get_with("Content-Length: 18446744073709551616\r\n")) == outcome::bad_request);
  CHECK(parse(get_with("Content-Length: 99999999999999999999999\r\n")) == outcome::bad_request);
  CHECK(parse(get_with("Content-Length: 18446744073709551615\r\n")) == outcome::payload_too_large);

  const http::limits lim{.max_head = 8192, .max_body = 100};
  CHECK(parse(get_with("Content-Length: 100\r\n"), lim) == outcome::complete);
  CHECK(parse(get_with("Content-Length: 101\r\n"), lim) == outcome::payload_too_large);
}

TEST_CASE("a Transfer-Encoding is not implemented") {
  CHECK(parse(get_with("Transfer-Encoding: chunked\r\n")) == outcome::not_implemented);
  CHECK(parse(get_with("Transfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n")) ==
        outcome::not_implemented);
  // A malformed head is malformed first.
  CHECK(parse(get_with("Transfer-Encoding: chunked\r\nContent-Length: x\r\n")) ==
        outcome::bad_request);
}

TEST_CASE("the head is capped at max_head bytes and 64 headers") {
  const http::limits lim{.max_head = 64, .max_body = 1 << 20};
  std::string exact = "GET / HTTP/1.1\r\nHost: h\r\nX: ";
  exact += std::string(64 - exact.size() - 4, 'a') + "\r\n\r\n";
  REQUIRE(exact.size() == 64);
  CHECK(parse(exact, lim) == outcome::complete);
  CHECK(parse(exact.substr(0, 63), lim) == outcome::incomplete);
  // Built by appending: g++ 12 at -O3 warns (-Wrestrict, a false positive: PR 105329) on
  // string::insert here.
  std::string over = exact.substr(0, exact.size() - 4);
  over += "a\r\n\r\n";
  CHECK(parse(over, lim) == outcome::header_too_large);
  CHECK(parse(over.substr(0, 64), lim) == outcome::header_too_large);  // known before the end
  CHECK(parse(std::string(64, '\r'), lim) == outcome::header_too_large);
  CHECK(parse(std::string(64, '\n'), lim) == outcome::header_too_large);

  std::string headers;
  for (std::size_t i = 1; i < http::request::max_headers; ++i)
    headers += "X-A: b\r\n";
  http::request req;
  CHECK(parse(get_with(headers), req) == outcome::complete);  // 64 with Host
  CHECK(req.header_count == http::request::max_headers);
  CHECK(parse(get_with(headers + "X-A: b\r\n")) == outcome::header_too_large);
}

TEST_CASE("versions and keep-alive") {
  http::request req;
  REQUIRE(parse("GET / HTTP/1.0\r\n\r\n", req) == outcome::complete);  // 1.0 needs no Host
  CHECK(req.version_minor == 0);
  CHECK_FALSE(req.keep_alive);
  REQUIRE(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", req) == outcome::complete);
  CHECK(req.keep_alive);
  REQUIRE(parse("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", req) ==
          outcome::complete);
  CHECK_FALSE(req.keep_alive);
  REQUIRE(parse(get_with("Connection: Upgrade,  CLOSE \r\n"), req) == outcome::complete);
  CHECK_FALSE(req.keep_alive);
  REQUIRE(parse(get_with("Connection: closed\r\n"), req) == outcome::complete);
  CHECK(req.keep_alive);

  CHECK(parse("GET / HTTP/2.0\r\nHost: h\r\n\r\n") == outcome::version_not_supported);
  CHECK(parse("GET / HTTP/1.2\r\nHost: h\r\n\r\n") == outcome::version_not_supported);
  CHECK(parse("GET / HTTP/0.9\r\nHost: h\r\n\r\n") == outcome::version_not_supported);
  for (const char* bad : {"http/1.1", "HTTP/1.1 ", "HTTP/11", "HTTP/1.10", "HTTP/a.1", ""}) {
    CAPTURE(bad);
    CHECK(parse("GET / " + std::string(bad) + "\r\nHost: h\r\n\r\n") == outcome::bad_request);
  }
}

TEST_CASE("malformed heads are bad requests") {
  for (const char* bad : {
           "GET / HTTP/1.1\r\n\r\n",                        // no Host
           "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",  // two
           "GET  / HTTP/1.1\r\nHost: h\r\n\r\n",            // two spaces
           " GET / HTTP/1.1\r\nHost: h\r\n\r\n",            // no method
           "GET /\r\nHost: h\r\n\r\n",                      // no version
           "G(T / HTTP/1.1\r\nHost: h\r\n\r\n",             // not a token
           "GET /a\x01 HTTP/1.1\r\nHost: h\r\n\r\n",        // control in the target
           "GET / HTTP/1.1\rHost: h\r\n\r\n",               // bare CR
           "GET / HTTP/1.1\r\nHost : h\r\n\r\n",            // space before the colon
           "GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n",  // obs-fold
           "GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n",
           "GET / HTTP/1.1\r\nHost: h\r\n: empty name\r\n\r\n",
           "GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n",  // CR in a value
           "GET / HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\n\r\n",
       }) {
    CAPTURE(bad);
    CHECK(parse(bad) == outcome::bad_request);
  }
  using namespace std::string_literals;
  CHECK(parse("GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n"s) == outcome::bad_request);
  CHECK(parse("GET / HTTP/1.1\r\nHost: h\r\nX: caf\xc3\xa9\r\n\r\n") == outcome::complete);
}

TEST_CASE("Expect: 100-continue is noted") {
  http::request req;
  REQUIRE(parse(get_with("Expect: 100-Continue\r\nContent-Length: 3\r\n"), req) ==
          outcome::complete);
  CHECK(req.expect_continue);
}

TEST_CASE("a parser reused after reset() forgets the last request") {
  http::request_parser p;
  http::request req;
  REQUIRE(p.parse(get_with("Content-Length: 4\r\nExpect: 100-continue\r\n"), req) ==
          outcome::complete);
  p.reset();
  REQUIRE(p.parse(get_with(""), req) == outcome::complete);
  CHECK(req.content_length == 0);
  CHECK_FALSE(req.expect_continue);
  CHECK(req.header_count == 1);
}
