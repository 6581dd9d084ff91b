// echo_client ADDRESS PORT [MESSAGE...]: sends each MESSAGE (or, without any, each line of
// stdin) as one line, prints the echo, and checks it came back unchanged.

#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <evco/evco.hpp>

#include "args.hpp"

namespace {

constexpr auto reply_timeout = std::chrono::seconds(5);

// `s` by reference: the caller awaits this at once, while its stream is alive.
evco::task<evco::result<void>> send_line(evco::stream& s, std::string line) {
  line += '\n';
  evco::op_options opts;
  opts.timeout = reply_timeout;
  EVCO_TRYV(co_await s.write(line, opts));
  // An echo is byte for byte, so the reply is exactly as long as the line: this also copes
  // with a MESSAGE that itself contains newlines.
  std::string echo(line.size(), '\0');
  EVCO_TRYV(co_await s.read_exactly(std::span<char>(echo), opts));
  std::fwrite(echo.data(), 1, echo.size(), stdout);
  std::fflush(stdout);
  if (echo != line) co_return std::make_error_code(std::errc::bad_message);
  co_return evco::success();
}

evco::task<int> run(evco::loop& lp, evco::endpoint server, std::vector<std::string> messages) {
  evco::connect_options copts;
  copts.timeout = std::chrono::seconds(10);
  auto connected = co_await evco::connect(lp, server, copts);
  if (!connected) {
    std::fprintf(stderr, "[ERR] connect %s: %s\n", server.to_string().c_str(),
                 connected.error().message().c_str());
    co_return 1;
  }
  evco::stream s = std::move(connected).value();
  std::fprintf(stderr, "[OK] connected to %s\n", server.to_string().c_str());

  const bool from_stdin = messages.empty();
  std::size_t next = 0;
  for (;;) {
    std::string line;
    if (from_stdin) {
      // A blocking read is fine here: this loop has nothing else to do while it waits.
      if (!std::getline(std::cin, line)) break;
    } else {
      if (next == messages.size()) break;
      line = messages[next++];
    }
    if (auto r = co_await send_line(s, std::move(line)); !r) {
      if (r.error() == evco::errc::eof) {
        std::fprintf(stderr, "[ERR] server closed the connection before echoing everything\n");
      } else {
        std::fprintf(stderr, "[ERR] echo: %s\n", r.error().message().c_str());
      }
      co_return 1;
    }
  }

  // Half-close, then wait for the server's end: the clean goodbye of an echo protocol.
  if (auto r = co_await s.shutdown(); !r) {
    std::fprintf(stderr, "[ERR] shutdown: %s\n", r.error().message().c_str());
    co_return 1;
  }
  char extra[1];
  evco::op_options opts;
  opts.timeout = reply_timeout;
  auto end = co_await s.read_some(std::span<char>(extra), opts);
  if (end) {
    std::fprintf(stderr, "[ERR] server sent more than it was sent\n");
    co_return 1;
  }
  if (end.error() != evco::errc::eof) {
    std::fprintf(stderr, "[ERR] waiting for the server to close: %s\n",
                 end.error().message().c_str());
    co_return 1;
  }
  std::fprintf(stderr, "[*] server closed the connection\n");
  co_return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s ADDRESS PORT [MESSAGE...]\n", argv[0]);
    return 2;
  }
  const auto server = examples::parse_endpoint(argv[1], argv[2]);
  if (!server) return 2;
  std::vector<std::string> messages(argv + 3, argv + argc);
  evco::loop lp;
  return lp.run(run(lp, *server, std::move(messages)));
}
