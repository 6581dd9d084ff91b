// Unix domain sockets: listener::bind and connect on a path or an abstract name, the socket
// file's life (stale files, removal on close), bad paths, and the peer's credentials.

#include <doctest/doctest.h>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "evco/connect.hpp"
#include "evco/listener.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using evco::endpoint;
using evco::errc;
using evco::listen_options;
using evco::listener;
using evco::loop;
using evco::result;
using evco::stream;
using evco::task;
using evco::test::error_of;

TEST_SUITE_BEGIN("unix");

namespace {

// A directory of its own under /tmp for a case's socket files (sun_path is short: no deeper).
struct temp_dir {
  std::string path;
  temp_dir() {
    char name[] = "/tmp/evco-unix-XXXXXX";
    REQUIRE(::mkdtemp(name) != nullptr);
    path = name;
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  endpoint at(const std::string& name) const {
    return endpoint::unix_path(path + "/" + name).value();
  }
  bool exists(const std::string& name) const {
    struct stat st {};
    return ::lstat((path + "/" + name).c_str(), &st) == 0;
  }
};

// An abstract name no other test run uses.
endpoint abstract_name() {
  static std::atomic<int> n{0};
  return endpoint::unix_path("@evco-test-" + std::to_string(::getpid()) + "-" + std::to_string(n++))
      .value();
}

// A socket file with nobody listening: a server that died without removing it.
void leave_stale_socket(const endpoint& ep) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  REQUIRE(::bind(fd, ep.data(), ep.size()) == 0);
  ::close(fd);
}

// Connects to `ep`, accepts on `l`, and checks that bytes go both ways.
task<result<evco::test::tcp_pair>> talk(loop& lp, listener& l, const endpoint& ep) {
  EVCO_TRY(auto c, co_await evco::connect(lp, ep));
  EVCO_TRY(auto s, co_await l.accept());
  EVCO_TRYV(co_await c.write("ping"));
  std::string in(4, '\0');
  EVCO_TRYV(co_await s.read_exactly(std::span<char>(in)));
  CHECK(in == "ping");
  EVCO_TRYV(co_await s.write("pong"));
  EVCO_TRYV(co_await c.read_exactly(std::span<char>(in)));
  CHECK(in == "pong");
  co_return evco::test::tcp_pair{std::move(c), std::move(s)};
}

}  // namespace

TEST_CASE("a listener on a Unix path accepts streams, and removes its socket file on close") {
  const std::size_t fds = evco::test::open_fds();
  temp_dir dir;
  const endpoint ep = dir.at("s.sock");
  evco::test::run_on_loop([&](loop& lp) -> task<void> {
    auto l = listener::bind(lp, ep);
    REQUIRE_MESSAGE(l, error_of(l));
    CHECK(dir.exists("s.sock"));
    CHECK(l.value().local_endpoint().value() == ep);
    auto p = co_await talk(lp, l.value(), ep);
    REQUIRE_MESSAGE(p, error_of(p));
    stream& client = p.value().client;
    stream& server = p.value().server;
    CHECK(client.remote_endpoint().value() == ep);
    CHECK(server.local_endpoint().value() == ep);
    // The client never bound: its address is unnamed.
    CHECK(server.remote_endpoint().value().path().empty());
    CHECK(server.remote_endpoint().value().is_unix());
    l.value().close();
    CHECK(!dir.exists("s.sock"));
    // The accepted stream lives on without its listener.
    REQUIRE(co_await client.write("x"));
    std::string in(1, '\0');
    REQUIRE(co_await server.read_exactly(std::span<char>(in)));
    CHECK(in == "x");
  });
  CHECK(evco::test::open_fds() == fds);
}

TEST_CASE("peer credentials name this process on both ends, and fail clearly elsewhere") {
  temp_dir dir;
  evco::test::run_on_loop([&](loop& lp) -> task<void> {
    auto l = listener::bind(lp, dir.at("s"));
    REQUIRE(l);
    auto p = co_await talk(lp, l.value(), dir.at("s"));
    REQUIRE(p);
    for (stream* s : {&p.value().client, &p.value().server}) {
      auto cred = s->peer_credentials();
      REQUIRE_MESSAGE(cred, error_of(cred));
      CHECK(cred.value().pid == ::getpid());
      CHECK(cred.value().uid == ::geteuid());
      CHECK(cred.value().gid == ::getegid());
    }
    auto tcp = co_await evco::test::connected_pair(lp);
    auto over_tcp = tcp.client.peer_credentials();
    REQUIRE(!over_tcp);
    CHECK(over_tcp.error() == std::errc::address_family_not_supported);
    stream closed;
    CHECK(error_of(closed.peer_credentials()) == errc::closed);
  });
}

TEST_CASE("an abstract name makes no file, is taken while bound, and is free after close") {
  const endpoint ep = abstract_name();
  evco::test::run_on_loop([&](loop& lp) -> task<void> {
    auto l = listener::bind(lp, ep);
    REQUIRE_MESSAGE(l, error_of(l));
    CHECK(l.value().local_endpoint().value() == ep);
    CHECK(l.value().local_endpoint().value().to_string() == ep.to_string());
    CHECK(!std::filesystem::exists(ep.path()));
    auto p = co_await talk(lp, l.value(), ep);
    REQUIRE_MESSAGE(p, error_of(p));
    CHECK(p.value().client.remote_endpoint().value() == ep);
    // remove_stale_socket never applies to an abstract name: there is no file to judge.
    listen_options o;
    o.remove_stale_socket = true;
    auto again = listener::bind(lp, ep, o);
    REQUIRE(!again);
    CHECK(again.error() == std::errc::address_in_use);
    l.value().close();
    auto after = listener::bind(lp, ep);
    CHECK_MESSAGE(after, error_of(after));
  });
}

TEST_CASE("bind and connect report a missing directory, and connect a path nobody listens on") {
  temp_dir dir;
  evco::test::run_on_loop([&](loop& lp) -> task<void> {
    const endpoint missing = endpoint::unix_path(dir.path + "/no/such/dir/s").value();
    auto l = listener::bind(lp, missing);
    REQUIRE(!l);
    CHECK(l.error() == std::errc::no_such_file_or_directory);
    auto c = co_await evco::connect(lp, missing);
    REQUIRE(!c);
    CHECK(c.error() == std::errc::no_such_file_or_directory);
    leave_stale_socket(dir.at("stale"));
    auto refused = co_await evco::connect(lp, dir.at("stale"));
    REQUIRE(!refused);
    CHECK(refused.error() == std::errc::connection_refused);
  });
}

TEST_CASE("a stale socket file blocks bind unless remove_stale_socket removes it") {
  temp_dir dir;
  const endpoint ep = dir.at("s");
  leave_stale_socket(ep);
  evco::test::run_on_loop([&](loop& lp) -> task<void> {
    auto plain = listener::bind(lp, ep);
    REQUIRE(!plain);
    CHECK(plain.error() == std::errc::address_in_use);
    CHECK(dir.exists("s"));
    listen_options o;
    o.remove_stale_socket = true;
    auto l = listener::bind(lp, ep, o);
    REQUIRE_MESSAGE(l, error_of(l));
    auto p = co_await talk(lp, l.value(), ep);
    CHECK_MESSAGE(p, error_of(p));
  });
  CHECK(!dir.exists("s"));
}

TEST_CASE("remove_stale_socket never removes a live listener's socket or a file of another kind") {
  temp_dir dir;
  const endpoint ep = dir.at("s");
  listen_options o;
  o.remove_stale_socket = true;
  evco::test::run_on_loop([&](loop& lp) -> task<void> {
    auto live = listener::bind(lp, ep);
    REQUIRE(live);
    auto second = listener::bind(lp, ep, o);
    REQUIRE(!second);
    CHECK(second.error() == std::errc::address_in_use);
    // The probe that found it alive is a connection that ends at once; then the first
    // listener goes on with its file and its clients.
    auto probe = co_await live.value().accept();
    REQUIRE(probe);
    char byte;
    CHECK(error_of(co_await probe.value().read_some(std::span<char>(&byte, 1))) == errc::eof);
    auto p = co_await talk(lp, live.value(), ep);
    CHECK_MESSAGE(p, error_of(p));

    { std::ofstream(dir.path + "/file") << "keep me"; }
    auto over_file = listener::bind(lp, dir.at("file"), o);
    REQUIRE(!over_file);
    CHECK(over_file.error() == std::errc::address_in_use);
    std::string kept;
    std::ifstream(dir.path + "/file") >> kept;
    CHECK(kept == "keep");
  });
}

TEST_CASE("a listener's close leaves alone a socket file another server put in its place") {
  temp_dir dir;
  const endpoint ep = dir.at("s");
  evco::test::run_on_loop([&](loop& lp) -> task<void> {
    auto first = listener::bind(lp, ep);
    REQUIRE(first);
    REQUIRE(::unlink(ep.path().c_str()) == 0);
    auto second = listener::bind(lp, ep);
    REQUIRE(second);
    first.value().close();
    CHECK(dir.exists("s"));
    auto p = co_await talk(lp, second.value(), ep);
    CHECK_MESSAGE(p, error_of(p));
    co_return;
  });
  CHECK(!dir.exists("s"));  // removed by the second, which made it
}

TEST_CASE("a full Unix backlog fails the connect at once instead of hanging") {
  temp_dir dir;
  evco::test::run_on_loop([&](loop& lp) -> task<void> {
    listen_options o;
    o.backlog = 0;
    auto l = listener::bind(lp, dir.at("s"), o);
    REQUIRE(l);
    std::vector<stream> queued;
    std::error_code ec;
    for (int i = 0; i < 64 && !ec; ++i) {
      auto c = co_await evco::connect(lp, dir.at("s"));
      if (c) {
        queued.push_back(std::move(c).value());
      } else {
        ec = c.error();
      }
    }
    CHECK(ec == std::errc::resource_unavailable_try_again);
    CHECK(!queued.empty());
    // The queued ones are still served.
    auto s = co_await l.value().accept();
    CHECK_MESSAGE(s, error_of(s));
  });
}

TEST_CASE("from_socket takes one end of a socketpair") {
  int fds[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
  evco::test::run_on_loop([&](loop& lp) -> task<void> {
    auto a = stream::from_socket(lp, fds[0]);
    auto b = stream::from_socket(lp, fds[1]);
    REQUIRE(a);
    REQUIRE(b);
    REQUIRE(co_await a.value().write("over a socketpair"));
    REQUIRE(co_await a.value().shutdown());
    std::string got;
    for (;;) {
      auto n = co_await b.value().read_some(got, 64);
      if (!n) {
        CHECK(n.error() == errc::eof);
        break;
      }
    }
    CHECK(got == "over a socketpair");
    CHECK(b.value().peer_credentials().value().pid == ::getpid());
  });
}

// Root passes every permission check, so the case drops to nobody in a child process.
TEST_CASE("bind and connect report permission_denied") {
  temp_dir dir;
  // A listening socket whose file nobody may write (connecting needs write permission), in a
  // directory nobody may create files in.
  loop lp;
  auto l = listener::bind(lp, dir.at("s"));
  REQUIRE(l);
  REQUIRE(::chmod(dir.at("s").path().c_str(), 0) == 0);
  REQUIRE(::chmod(dir.path.c_str(), 0555) == 0);
  std::fflush(nullptr);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    if (::geteuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0)) _exit(2);
    loop child_loop;
    auto bound = listener::bind(child_loop, dir.at("mine"));
    const bool bind_denied = !bound && bound.error() == std::errc::permission_denied;
    auto c = child_loop.run(evco::connect(child_loop, dir.at("s")));
    const bool connect_denied = !c && c.error() == std::errc::permission_denied;
    _exit(bind_denied && connect_denied ? 0 : 1);
  }
  int status = 0;
  const pid_t waited = ::waitpid(child, &status, 0);
  ::chmod(dir.path.c_str(), 0700);  // so that the listener and temp_dir can remove their files
  REQUIRE(waited == child);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}
