// evco-demo: a tour that needs nothing outside this process. One loop runs both ends of
// every exchange over 127.0.0.1: an HTTP GET against a tiny server, an echo round trip, a
// refused connect, and read timeouts reported as values. Exits 0 only if all went as expected.

#include <array>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <string_view>

#include <evco/evco.hpp>

#include "http_client.hpp"

namespace {

using namespace std::chrono_literals;

// Every wait in the demo is bounded, so a misbehaving build fails instead of hanging.
constexpr auto step_limit = 5s;
constexpr std::string_view hello_body = "hello from evco\n";

evco::op_options within(evco::duration d = step_limit) {
  evco::op_options o;
  o.timeout = d;
  return o;
}

// Shown as text: strings we print may end in newlines or hold CR LF.
std::string quoted(std::string_view s) {
  std::string q = "\"";
  for (char c : s) {
    if (c == '\n') {
      q += "\\n";
    } else if (c == '\r') {
      q += "\\r";
    } else {
      q += c;
    }
  }
  return q + "\"";
}

evco::task<evco::result<evco::stream>> connect_to(evco::loop& lp, std::uint16_t port) {
  evco::connect_options o;
  o.timeout = step_limit;
  co_return co_await evco::connect(lp, evco::endpoint::v4_loopback(port), o);
}

// A server's failures reach the loop's error sink; this one counts them for the verdict.
std::function<void(std::error_code)> count_failure(const char* who, int* failures) {
  return [who, failures](std::error_code ec) {
    std::printf("[%s] server failed: %s\n", who, ec.message().c_str());
    ++*failures;
  };
}

std::uint16_t port_of(const evco::listener& l) {
  const auto ep = l.local_endpoint();
  return ep ? ep.value().port() : 0;
}

// --- HTTP ------------------------------------------------------------------------------------

// Answers one request and closes; the close sends the response before the FIN, which is what
// tells the Connection: close client that the body is complete.
evco::task<evco::result<void>> tiny_http_server(evco::listener l) {
  EVCO_TRY(evco::stream s, co_await l.accept(within()));
  std::string request;
  EVCO_TRY(auto n, co_await s.read_until(request, "\r\n\r\n", 8 * 1024, within()));
  (void)n;
  std::string response;
  if (request.starts_with("GET /hello HTTP/1.1\r\n")) {
    response = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " +
               std::to_string(hello_body.size()) + "\r\nConnection: close\r\n\r\n" +
               std::string(hello_body);
  } else {
    response = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
  }
  EVCO_TRYV(co_await s.write(response, within()));
  co_return evco::success();
}

evco::task<bool> http_demo(evco::loop& lp, int* server_failures) {
  auto bound = evco::listener::bind(lp, evco::endpoint::v4_loopback());
  if (!bound) {
    std::printf("[http] bind: %s\n", bound.error().message().c_str());
    co_return false;
  }
  examples::http_request req;
  req.server = evco::endpoint::v4_loopback(port_of(bound.value()));
  req.path = "/hello";
  req.connect_timeout = step_limit;
  req.idle_timeout = step_limit;
  std::printf("[http] tiny server listening on %s\n", req.server.to_string().c_str());
  lp.spawn(tiny_http_server(std::move(bound).value()), count_failure("http", server_failures));

  std::string response;
  const auto out = co_await examples::http_get(
      lp, req, [&response](std::string_view chunk) { response.append(chunk); });
  const auto line_end = response.find("\r\n");
  const std::string status = response.substr(0, line_end);
  const auto head_end = response.find("\r\n\r\n");
  const std::string body = head_end == std::string::npos ? "" : response.substr(head_end + 4);
  std::printf("[http] GET %s -> %s, body %s\n", req.path.c_str(), quoted(status).c_str(),
              quoted(body).c_str());
  std::printf("[http] %s\n", examples::describe(out, req).c_str());
  co_return out.ok() && status == "HTTP/1.1 200 OK" && body == hello_body;
}

// --- echo ------------------------------------------------------------------------------------

evco::task<evco::result<void>> echo_once(evco::listener l) {
  EVCO_TRY(evco::stream s, co_await l.accept(within()));
  std::array<char, 4096> buf;
  for (;;) {
    auto n = co_await s.read_some(buf, within());
    if (!n) {
      if (n.error() == evco::errc::eof) co_return evco::success();
      co_return n.error();
    }
    EVCO_TRYV(co_await s.write(std::string_view(buf.data(), n.value()), within()));
  }
}

// After our half-close the peer should end the stream too: true if it did, in time.
evco::task<bool> sees_clean_end(evco::stream& s, const char* who) {
  if (auto r = co_await s.shutdown(within()); !r) {
    std::printf("[%s] shutdown: %s\n", who, r.error().message().c_str());
    co_return false;
  }
  std::array<char, 64> buf;
  auto n = co_await s.read_some(buf, within());
  if (n) {
    std::printf("[%s] unexpected bytes before the end\n", who);
    co_return false;
  }
  if (n.error() != evco::errc::eof) {
    std::printf("[%s] waiting for the end: %s\n", who, n.error().message().c_str());
    co_return false;
  }
  co_return true;
}

evco::task<bool> echo_demo(evco::loop& lp, int* server_failures) {
  auto bound = evco::listener::bind(lp, evco::endpoint::v4_loopback());
  if (!bound) {
    std::printf("[echo] bind: %s\n", bound.error().message().c_str());
    co_return false;
  }
  const std::uint16_t port = port_of(bound.value());
  lp.spawn(echo_once(std::move(bound).value()), count_failure("echo", server_failures));

  auto connected = co_await connect_to(lp, port);
  if (!connected) {
    std::printf("[echo] connect: %s\n", connected.error().message().c_str());
    co_return false;
  }
  evco::stream s = std::move(connected).value();
  const std::string sent = "ping\n";
  if (auto r = co_await s.write(sent, within()); !r) {
    std::printf("[echo] write: %s\n", r.error().message().c_str());
    co_return false;
  }
  std::string got;
  if (auto r = co_await s.read_until(got, "\n", 1024, within()); !r) {
    std::printf("[echo] read_until: %s\n", r.error().message().c_str());
    co_return false;
  }
  const bool ended = co_await sees_clean_end(s, "echo");
  std::printf("[echo] sent %s to 127.0.0.1:%u, got %s back%s\n", quoted(sent).c_str(),
              unsigned{port}, quoted(got).c_str(), ended ? "; server closed after our FIN" : "");
  co_return got == sent&& ended;
}

// --- refused connect -------------------------------------------------------------------------

evco::task<bool> refused_demo(evco::loop& lp) {
  // A port that was free a moment ago and has no listener now: nothing else is likely to
  // take it before we connect, unlike a fixed "surely unused" port.
  std::uint16_t port = 0;
  {
    auto bound = evco::listener::bind(lp, evco::endpoint::v4_loopback());
    if (!bound) {
      std::printf("[refused] bind: %s\n", bound.error().message().c_str());
      co_return false;
    }
    port = port_of(bound.value());
  }
  auto connected = co_await connect_to(lp, port);
  if (connected) {
    std::printf("[refused] connect to 127.0.0.1:%u unexpectedly succeeded\n", unsigned{port});
    co_return false;
  }
  const std::error_code ec = connected.error();
  std::printf("[refused] connect to 127.0.0.1:%u (listener closed) -> %s [%s:%d]\n", unsigned{port},
              ec.message().c_str(), ec.category().name(), ec.value());
  co_return ec == std::errc::connection_refused;
}

// --- timeouts --------------------------------------------------------------------------------

// Stays silent until asked, so the client's reads time out first; then answers and closes.
evco::task<evco::result<void>> slow_server(evco::listener l) {
  EVCO_TRY(evco::stream s, co_await l.accept(within()));
  std::string cue;
  EVCO_TRY(auto n, co_await s.read_until(cue, "\n", 64, within()));
  (void)n;
  EVCO_TRYV(co_await s.write(std::string_view("late reply\n"), within()));
  co_return evco::success();
}

void report_timeout(const char* how, const evco::result<std::size_t>& r) {
  if (r) {
    std::printf("[timeout] %s -> %zu bytes (expected a timeout)\n", how, r.value());
  } else {
    std::printf("[timeout] %s -> error value: %s (== std::errc::timed_out: %s)\n", how,
                r.error().message().c_str(), r.error() == std::errc::timed_out ? "yes" : "no");
  }
}

evco::task<bool> timeout_demo(evco::loop& lp, int* server_failures) {
  auto bound = evco::listener::bind(lp, evco::endpoint::v4_loopback());
  if (!bound) {
    std::printf("[timeout] bind: %s\n", bound.error().message().c_str());
    co_return false;
  }
  const std::uint16_t port = port_of(bound.value());
  lp.spawn(slow_server(std::move(bound).value()), count_failure("timeout", server_failures));

  auto connected = co_await connect_to(lp, port);
  if (!connected) {
    std::printf("[timeout] connect: %s\n", connected.error().message().c_str());
    co_return false;
  }
  evco::stream s = std::move(connected).value();
  std::array<char, 64> buf;

  // The two kinds of read timeout: a deadline on one op, and the stream's idle timeout.
  const auto deadline = co_await s.read_some(buf, within(200ms));
  report_timeout("read_some with a 200 ms deadline", deadline);
  s.set_timeouts(200ms, {});
  const auto idle = co_await s.read_some(buf);
  report_timeout("read_some under a 200 ms idle timeout", idle);
  s.set_timeouts({}, {});

  // A timed-out stream stays usable: ask for the reply and read it.
  std::string reply;
  if (auto w = co_await s.write(std::string_view("go\n"), within()); !w) {
    std::printf("[timeout] write after the timeouts: %s\n", w.error().message().c_str());
    co_return false;
  }
  if (auto r = co_await s.read_until(reply, "\n", 64, within()); !r) {
    std::printf("[timeout] read after the timeouts: %s\n", r.error().message().c_str());
    co_return false;
  }
  const bool ended = co_await sees_clean_end(s, "timeout");
  std::printf("[timeout] the stream is still usable afterwards: got %s\n", quoted(reply).c_str());
  co_return !deadline && deadline.error() == evco::errc::timed_out && !idle &&
      idle.error() == evco::errc::timed_out && reply == "late reply\n" && ended;
}

// ---------------------------------------------------------------------------------------------

evco::task<int> tour(evco::loop& lp) {
  int server_failures = 0;
  int failed = 0;
  const auto check = [&failed](const char* name, bool ok) {
    std::printf("%s %s\n", ok ? "  ok  " : "  FAIL", name);
    if (!ok) ++failed;
  };
  check("HTTP GET against the in-process server", co_await http_demo(lp, &server_failures));
  check("echo round trip", co_await echo_demo(lp, &server_failures));
  check("refused connect reported as a value", co_await refused_demo(lp));
  check("read timeouts reported as values", co_await timeout_demo(lp, &server_failures));
  if (server_failures > 0) check("servers finished without errors", false);
  if (failed == 0) {
    std::printf("all checks passed\n");
  } else {
    std::printf("%d check(s) failed\n", failed);
  }
  co_return failed == 0 ? 0 : 1;
}

}  // namespace

int main() {
  std::printf("evco demo: both ends of every exchange run on one loop over 127.0.0.1\n");
  evco::loop lp;
  const int rc = lp.run(tour(lp));
  std::fflush(stdout);
  return rc;
}
