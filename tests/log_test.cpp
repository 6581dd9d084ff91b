#include "evco/log.hpp"

#include <doctest/doctest.h>

#include <event2/util.h>

#include <string>
#include <vector>

#include "evco/loop.hpp"
#include "support.hpp"

namespace {

// libevent warns when it cannot make a bad descriptor non-blocking: an easy message to ask for.
void provoke_libevent_warning() {
  evutil_make_socket_nonblocking(-1);
}

}  // namespace

TEST_SUITE("log") {
  TEST_CASE("libevent's messages never reach stderr unless a handler asks for them") {
    evco::loop lp;  // evco's hooks are in place once a loop exists
    evco::test::stderr_capture err;
    provoke_libevent_warning();
    CHECK(err.text().empty());
  }

  TEST_CASE("a log handler receives libevent's messages with their level, and can be replaced") {
    evco::loop lp;
    std::vector<std::string> got;
    evco::log_level level = evco::log_level::debug;
    auto previous = evco::set_log_handler([&](evco::log_level l, std::string_view m) {
      level = l;
      got.emplace_back(m);
    });
    CHECK_FALSE(previous);  // none by default
    provoke_libevent_warning();
    REQUIRE(got.size() == 1);
    CHECK(got[0].find("fcntl") != std::string::npos);
    CHECK(level == evco::log_level::warning);

    auto mine = evco::set_log_handler({});
    CHECK(static_cast<bool>(mine));
    evco::test::stderr_capture err;
    provoke_libevent_warning();
    CHECK(got.size() == 1);  // dropped once the handler is gone
    CHECK(err.text().empty());
  }
}
