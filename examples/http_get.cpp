// http_get ADDRESS PORT [PATH]: the seed's bufferevent HTTP client, written as a coroutine.
// Prints the response to stdout and how the exchange ended to stderr.

#include <cstdio>
#include <string>

#include <unistd.h>

#include <evco/evco.hpp>

#include "args.hpp"
#include "http_client.hpp"

namespace {

evco::task<int> fetch(evco::loop& lp, examples::http_request req) {
  std::fprintf(stderr, "[..] GET %s from %s\n", req.path.c_str(), req.server.to_string().c_str());
  bool mid_line = false;
  const auto out = co_await examples::http_get(lp, req, [&mid_line](std::string_view chunk) {
    std::fwrite(chunk.data(), 1, chunk.size(), stdout);
    mid_line = chunk.back() != '\n';
  });
  std::fflush(stdout);
  // On a terminal both streams share the screen: keep the verdict off the body's last line.
  if (mid_line && isatty(STDOUT_FILENO)) std::fputc('\n', stderr);
  std::fprintf(stderr, "%s\n", examples::describe(out, req).c_str());
  co_return out.ok() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3 || argc > 4) {
    std::fprintf(stderr, "usage: %s ADDRESS PORT [PATH]\n", argv[0]);
    return 2;
  }
  const auto server = examples::parse_endpoint(argv[1], argv[2]);
  if (!server) return 2;
  examples::http_request req;
  req.server = *server;
  if (argc == 4) req.path = argv[3];
  if (req.path.empty() || req.path.front() != '/') req.path.insert(0, "/");

  evco::loop lp;
  return lp.run(fetch(lp, req));
}
