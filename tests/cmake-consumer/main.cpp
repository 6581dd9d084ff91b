// Echoes one line over loopback through the public headers only.
#include <evco/evco.hpp>

#include <cstdio>
#include <string>

namespace {

evco::task<evco::result<std::string>> round_trip(evco::loop& lp) {
  EVCO_TRY(auto l, evco::listener::bind(lp, evco::endpoint::v4_loopback()));
  EVCO_TRY(auto ep, l.local_endpoint());
  EVCO_TRY(auto c, co_await evco::connect(lp, ep));
  EVCO_TRY(auto s, co_await l.accept());
  EVCO_TRYV(co_await c.write("hello\n"));
  std::string line;
  EVCO_TRYV(co_await s.read_until(line, "\n", 64));
  co_return line;
}

}  // namespace

int main() {
  evco::loop lp;
  auto r = lp.run(round_trip(lp));
  if (!r || r.value() != "hello\n") {
    std::fprintf(stderr, "cmake-consumer: %s\n", r ? "wrong echo" : r.error().message().c_str());
    return 1;
  }
  std::puts("cmake-consumer: ok");
  return 0;
}
