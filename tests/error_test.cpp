#include "evco/error.hpp"

#include <doctest/doctest.h>

#include "evco/loop.hpp"
#include "support.hpp"

using evco::errc;

TEST_SUITE("error") {
  TEST_CASE("evco errors have their own category and readable messages") {
    const std::error_code ec = errc::eof;
    CHECK(std::string(ec.category().name()) == "evco");
    CHECK(ec.message() == "end of stream");
    CHECK(std::error_code(errc::limit_exceeded).message() == "size limit exceeded");
    CHECK(std::error_code(static_cast<errc>(999)).message().find("999") != std::string::npos);
  }

  TEST_CASE("every timeout and cancellation compares equal to the standard conditions") {
    CHECK(std::error_code(errc::timed_out) == std::errc::timed_out);
    CHECK(std::error_code(errc::connect_timed_out) == std::errc::timed_out);
    CHECK(std::error_code(errc::cancelled) == std::errc::operation_canceled);
    CHECK(std::error_code(errc::closed) == std::errc::operation_canceled);
    CHECK(std::error_code(errc::eof) != std::errc::timed_out);
    CHECK(std::error_code(errc::timed_out) != std::errc::operation_canceled);
  }

  TEST_CASE(
      "each malformed-endpoint code compares equal to invalid_argument and says what is wrong") {
    for (const errc e : {errc::endpoint_no_port, errc::endpoint_bad_port,
                         errc::endpoint_not_numeric, errc::endpoint_ipv6_unbracketed}) {
      const std::error_code ec = e;
      CAPTURE(ec);
      CHECK(ec == std::errc::invalid_argument);
      CHECK(ec != std::errc::timed_out);
      CHECK(ec.category() == evco::evco_category());
      const std::string m = ec.message();
      CHECK(m != std::make_error_code(std::errc::invalid_argument).message());
      CHECK(m.find("unknown") == std::string::npos);
      CHECK(m.find('\n') == std::string::npos);
    }
    CHECK(std::error_code(errc::endpoint_no_port).message().find("port") != std::string::npos);
    CHECK(std::error_code(errc::endpoint_bad_port).message().find("65535") != std::string::npos);
    CHECK(std::error_code(errc::endpoint_not_numeric).message().find("numeric") !=
          std::string::npos);
    CHECK(std::error_code(errc::endpoint_ipv6_unbracketed).message().find("[::1]:80") !=
          std::string::npos);
    // The values are ABI: added after handshake_timed_out (8), the old ones keep theirs.
    CHECK(static_cast<int>(errc::handshake_timed_out) == 8);
    CHECK(static_cast<int>(errc::endpoint_no_port) == 9);
    CHECK(static_cast<int>(errc::endpoint_ipv6_unbracketed) == 12);
  }

  TEST_CASE("the transport codes compare equal to the standard conditions of their errno") {
    const std::error_code too_long = errc::endpoint_path_too_long;
    CHECK(too_long == std::errc::filename_too_long);
    CHECK(too_long != std::errc::invalid_argument);
    CHECK(too_long.message().find("107") != std::string::npos);
    const std::error_code truncated = errc::message_truncated;
    CHECK(truncated == std::errc::message_size);
    CHECK(truncated != errc::limit_exceeded);
    CHECK(truncated.message().find("datagram") != std::string::npos);
    CHECK(static_cast<int>(errc::endpoint_path_too_long) == 13);
    CHECK(static_cast<int>(errc::message_truncated) == 14);
  }

  TEST_CASE("OS errors stay in the system category") {
    const std::error_code ec(ECONNREFUSED, std::system_category());
    CHECK(ec == std::errc::connection_refused);
    CHECK(ec != errc::eof);
  }

  TEST_CASE("EVCO_TRY passes values on and co_returns the first failure") {
    evco::loop lp;
    int reached = 0;
    auto ok = [](int v) -> evco::result<int> { return v; };
    auto bad = []() -> evco::result<int> { return errc::limit_exceeded; };
    auto body = [&](bool fail) -> evco::task<evco::result<int>> {
      EVCO_TRY(auto a, ok(20));
      ++reached;
      EVCO_TRY(auto b, fail ? bad() : ok(22));
      ++reached;
      EVCO_TRYV(evco::result<void>(evco::success()));
      co_return a + b;
    };
    auto r = lp.run(body(false));
    REQUIRE(r);
    CHECK(r.value() == 42);
    CHECK(reached == 2);
    auto f = lp.run(body(true));
    REQUIRE(!f);
    CHECK(f.error() == errc::limit_exceeded);
    CHECK(reached == 3);
  }
}
