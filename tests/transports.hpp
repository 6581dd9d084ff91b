#pragma once
// The transports a stream runs over, for the suites whose cases hold for every one of them
// (transport_test.cpp, framing_test.cpp): a loopback TCP connection, a Unix domain socket, an
// in-process pair. A new transport is one more entry in `transports`.

#include "evco/pair.hpp"

#include <doctest/doctest.h>

#include <unistd.h>

#include <array>
#include <atomic>
#include <span>
#include <string>
#include <utility>

#include "support.hpp"

namespace evco::test {

using namespace std::chrono_literals;

using ends = std::pair<stream, stream>;

// One way to make two connected streams.
struct transport {
  const char* name;
  task<result<ends>> (*connect)(loop& lp);
};

inline task<result<ends>> tcp(loop& lp) {
  EVCO_TRY(auto p, co_await evco::test::make_pair(lp));  // tests/support.hpp's TCP pair
  co_return ends{std::move(p.client), std::move(p.server)};
}

// Over an abstract name: no socket file to clean up after.
inline task<result<ends>> unix_socket(loop& lp) {
  static std::atomic<int> n{0};
  EVCO_TRY(const auto ep,
           evco::endpoint::unix_path("@evco-transport-" + std::to_string(::getpid()) + "-" +
                                     std::to_string(n++)));
  EVCO_TRY(auto l, evco::listener::bind(lp, ep));
  EVCO_TRY(auto c, co_await evco::connect(lp, ep));
  EVCO_TRY(auto s, co_await l.accept());
  co_return ends{std::move(c), std::move(s)};
}

inline task<result<ends>> in_process(loop& lp) {
  co_return evco::make_pair(lp);
}

// No reset case here: a pair has no RST (stream_test.cpp keeps TCP's).
inline constexpr std::array transports{
    transport{"tcp", tcp},
    transport{"unix", unix_socket},
    transport{"pair", in_process},
};

// The two ends, or a failed test.
inline task<ends> connected(loop& lp, const transport& t) {
  auto r = co_await t.connect(lp);
  REQUIRE_MESSAGE(r.has_value(), error_of(r));
  co_return std::move(r).value();
}

using body_fn = task<void> (*)(loop&, const transport&);

// Runs `body` over each transport (of `list`: all of them unless a suite adds its own), each in
// a subcase of its own on a loop of its own. Once the loop is gone (with every frame, stream
// and linger it still had), so are their fds.
inline void over_each_transport(body_fn body, std::span<const transport> list = transports) {
  for (const transport& t : list) {
    SUBCASE(t.name) {
      const std::size_t fds = evco::test::open_fds();
      {
        loop lp;
        lp.run(body(lp, t));
      }
      CHECK(evco::test::open_fds() == fds);
    }
  }
}

inline void fail_task(std::exception_ptr) {
  FAIL("a spawned task failed");
}

inline void fail_result(std::error_code ec) {
  FAIL(ec);
}

inline std::span<char> span_of(std::string& s) {
  return {s.data(), s.size()};
}

// Reads until eof; everything read, or the error that ended it otherwise.
inline task<result<std::string>> read_to_eof(stream* s, std::size_t chunk = 65536) {
  std::string all, buf(chunk, '\0');
  for (;;) {
    auto r = co_await s->read_some(span_of(buf), 10s);  // the deadline only guards a hang
    if (!r) {
      if (r.error() == errc::eof) co_return all;
      co_return r.error();
    }
    all.append(buf.data(), r.value());
  }
}

inline task<result<void>> write_all(stream* s, std::string data, std::size_t chunk) {
  for (std::size_t off = 0; off < data.size(); off += chunk)
    EVCO_TRYV(co_await s->write(std::string_view(data).substr(off, chunk)));
  co_return success();
}

inline task<result<void>> send_then_shutdown(stream* s, std::string data) {
  EVCO_TRYV(co_await write_all(s, std::move(data), 65536));
  co_return co_await s->shutdown();
}

}  // namespace evco::test
