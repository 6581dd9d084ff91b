// stream::send_file: a file made at test time (in a temporary directory, removed afterwards)
// sent over TCP (sendfile), TLS and pairs (pread into the output buffer), checked on the peer
// by SHA-256; files that shrink while being sent, bad fds, ranges past the end.

#include <doctest/doctest.h>

#include <fcntl.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <optional>

#include "pki.hpp"
#include "support.hpp"
#include "tls_ends.hpp"

using namespace std::chrono_literals;
using evco::errc;
using evco::loop;
using evco::result;
using evco::stream;
using evco::task;
using evco::test::error_of;
using evco::test::pattern;

TEST_SUITE_BEGIN("send_file");

namespace {

struct ends {
  stream a;
  stream b;
};

task<ends> tcp(loop& lp) {
  auto p = co_await evco::test::connected_pair(lp);
  co_return ends{std::move(p.client), std::move(p.server)};
}

task<ends> in_process(loop& lp) {
  auto p = evco::make_pair(lp);
  REQUIRE(p);
  co_return ends{std::move(p.value().first), std::move(p.value().second)};
}

task<ends> tls(loop& lp) {
  auto e = co_await evco::test::tls_ends(lp);
  REQUIRE_MESSAGE(e, error_of(e));
  co_return ends{std::move(e.value().first), std::move(e.value().second)};
}

// TCP with a rate limit takes the pread path too, as TLS and pairs do.
task<ends> tcp_limited(loop& lp) {
  auto e = co_await tcp(lp);
  REQUIRE(e.a.set_rate_limit({.write_rate = std::size_t{1} << 40}));
  co_return e;
}

struct transport {
  const char* name;
  task<ends> (*connect)(loop& lp);
};
constexpr transport transports[] = {
    {"tcp", tcp}, {"tls", tls}, {"pair", in_process}, {"tcp-rate-limited", tcp_limited}};

using body_fn = task<void> (*)(loop&, const transport&);

void over_each_transport(body_fn body) {
  for (const transport& t : transports) {
    SUBCASE(t.name) {
      (void)evco::test::certs();  // made once, before the fds are counted
      const std::size_t fds = evco::test::open_fds();
      {
        loop lp;
        lp.run(body(lp, t));
      }
      CHECK(evco::test::open_fds() == fds);
    }
  }
}

void fail_task(std::exception_ptr) {
  FAIL("a spawned task failed");
}

std::span<char> span_of(std::string& s) {
  return {s.data(), s.size()};
}

// A file of `blocks` MiB of pattern() in a temporary directory of its own; both go with it.
struct temp_file {
  std::filesystem::path dir;
  std::filesystem::path path;
  int fd = -1;
  std::string sha256;  // of the whole content
  std::size_t size = 0;

  explicit temp_file(std::size_t bytes) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "evco-send-file-XXXXXX").string();
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    dir = tmpl;
    path = dir / "data";
    fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    REQUIRE(fd >= 0);
    const std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> md(EVP_MD_CTX_new(),
                                                                     &EVP_MD_CTX_free);
    REQUIRE(EVP_DigestInit_ex(md.get(), EVP_sha256(), nullptr) == 1);
    for (std::size_t at = 0, i = 0; at < bytes; ++i) {
      const std::string block =
          pattern(std::min<std::size_t>(1 << 20, bytes - at), static_cast<unsigned>(i + 1));
      REQUIRE(::write(fd, block.data(), block.size()) == static_cast<ssize_t>(block.size()));
      REQUIRE(EVP_DigestUpdate(md.get(), block.data(), block.size()) == 1);
      at += block.size();
    }
    size = bytes;
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    REQUIRE(EVP_DigestFinal_ex(md.get(), out, &n) == 1);
    sha256.assign(reinterpret_cast<char*>(out), n);
  }
  std::string read(std::size_t offset, std::size_t n) const {
    std::string s(n, '\0');
    REQUIRE(::pread(fd, s.data(), n, static_cast<off_t>(offset)) == static_cast<ssize_t>(n));
    return s;
  }
  ~temp_file() {
    if (fd >= 0) ::close(fd);
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

struct received {
  std::size_t bytes = 0;
  std::string sha256;
  std::string head;  // the first bytes, up to `keep`
  std::error_code end;
};

// Reads `s` until it ends, hashing everything; keeps the first `keep` bytes.
task<received> hash_to_end(stream* s, std::size_t keep = 0) {
  received out;
  const std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> md(EVP_MD_CTX_new(),
                                                                   &EVP_MD_CTX_free);
  REQUIRE(EVP_DigestInit_ex(md.get(), EVP_sha256(), nullptr) == 1);
  std::string buf(256 << 10, '\0');
  for (;;) {
    auto r = co_await s->read_some(span_of(buf), 20s);  // the deadline only guards a hang
    if (!r) {
      out.end = r.error();
      break;
    }
    REQUIRE(EVP_DigestUpdate(md.get(), buf.data(), r.value()) == 1);
    if (out.head.size() < keep) {
      out.head.append(buf.data(), std::min(r.value(), keep - out.head.size()));
    }
    out.bytes += r.value();
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  REQUIRE(EVP_DigestFinal_ex(md.get(), digest, &n) == 1);
  out.sha256.assign(reinterpret_cast<char*>(digest), n);
  co_return out;
}

// Made once (64 MiB take a while), before the first case counts its fds.
const temp_file& big_file() {
  static const temp_file file(64 << 20);
  return file;
}

struct send_result {
  std::optional<result<void>> r;
};

task<void> send_then_close(stream* s, int fd, off_t offset, std::size_t n, send_result* out) {
  out->r.emplace(co_await s->send_file(fd, offset, n, 30s));
  s->close();
}

}  // namespace

// ---- whole files ---------------------------------------------------------------------------

task<void> sends_64_mib(loop& lp, const transport& t) {
  const temp_file& file = big_file();
  auto e = co_await t.connect(lp);
  REQUIRE(co_await e.a.write("head:"));  // queued or sent before: the file comes after it
  std::string head(5, '\0');
  send_result sent;
  lp.spawn(send_then_close(&e.a, file.fd, 0, file.size, &sent), fail_task);
  REQUIRE(co_await e.b.read_exactly(span_of(head), 20s));
  CHECK(head == "head:");
  const received got = co_await hash_to_end(&e.b);
  REQUIRE(sent.r);
  CHECK_MESSAGE(*sent.r, error_of(*sent.r));
  CHECK(got.end == errc::eof);
  CHECK(got.bytes == file.size);
  CHECK((got.sha256 == file.sha256));
  CHECK(::lseek(file.fd, 0, SEEK_CUR) == static_cast<off_t>(file.size));  // the offset stays
}

TEST_CASE("send_file delivers a 64 MiB file intact, after what was written before it") {
  (void)big_file();
  over_each_transport(sends_64_mib);
}

task<void> sends_a_range(loop& lp, const transport& t) {
  const temp_file file(100'000);
  auto e = co_await t.connect(lp);
  REQUIRE(co_await e.a.send_file(file.fd, 1234, 50'000, 10s));
  REQUIRE(co_await e.a.send_file(file.fd, 0, 0, 10s));  // nothing to send: done at once
  REQUIRE(co_await e.a.write("|end"));
  std::string got(50'004, '\0');
  REQUIRE(co_await e.b.read_exactly(span_of(got), 10s));
  CHECK((got == file.read(1234, 50'000) + "|end"));
}

TEST_CASE("send_file sends exactly the range asked for") {
  over_each_transport(sends_a_range);
}

// ---- files that end early, bad fds ---------------------------------------------------------

task<void> truncated_while_sending(loop& lp, const transport& t) {
  const temp_file file(32 << 20);
  const std::string original = file.read(0, file.size);
  auto e = co_await t.connect(lp);
  send_result sent;
  lp.spawn(send_then_close(&e.a, file.fd, 0, file.size, &sent), fail_task);
  // Once the first MiB has arrived the send is under way (32 MiB do not fit in the socket
  // buffers): the file shrinks to 2 MiB under it.
  std::string first(1 << 20, '\0');
  REQUIRE(co_await e.b.read_exactly(span_of(first), 20s));
  REQUIRE(::ftruncate(file.fd, 2 << 20) == 0);
  const received rest = co_await hash_to_end(&e.b, file.size);
  // An error value, not a hang (the read's 20 s deadline would say so) nor a success.
  REQUIRE(sent.r);
  REQUIRE_FALSE(*sent.r);
  CHECK(sent.r->error() == errc::eof);
  const std::size_t total = first.size() + rest.bytes;
  CHECK(total < file.size);
  // What arrived is the file as it was, cut short.
  CHECK((first + rest.head == original.substr(0, total)));
}

TEST_CASE("a file truncated while it is being sent fails send_file with errc::eof") {
  over_each_transport(truncated_while_sending);
}

task<void> past_the_end(loop& lp, const transport& t) {
  const temp_file file(1000);
  auto e = co_await t.connect(lp);
  auto r = co_await e.a.send_file(file.fd, 0, 1001, 10s);
  REQUIRE_FALSE(r);
  CHECK(r.error() == errc::eof);
  r = co_await e.a.send_file(file.fd, 2000, 1, 10s);
  REQUIRE_FALSE(r);
  CHECK(r.error() == errc::eof);
  r = co_await e.a.send_file(file.fd, -1, 1, 10s);
  REQUIRE_FALSE(r);
  CHECK(r.error() == std::errc::invalid_argument);
  // Nothing was sent: the stream goes on untorn.
  REQUIRE(co_await e.a.send_file(file.fd, 990, 10, 10s));
  std::string got(10, '\0');
  REQUIRE(co_await e.b.read_exactly(span_of(got), 10s));
  CHECK((got == file.read(990, 10)));
}

TEST_CASE("a range past the end of the file fails with errc::eof and sends nothing") {
  over_each_transport(past_the_end);
}

task<void> bad_fds(loop& lp, const transport& t) {
  auto e = co_await t.connect(lp);
  auto r = co_await e.a.send_file(-1, 0, 10, 10s);
  REQUIRE_FALSE(r);
  CHECK(r.error() == std::errc::bad_file_descriptor);
  const int closed = ::dup(0);
  ::close(closed);
  r = co_await e.a.send_file(closed, 0, 10, 10s);
  REQUIRE_FALSE(r);
  CHECK(r.error() == std::errc::bad_file_descriptor);
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  r = co_await e.a.send_file(fds[0], 0, 10, 10s);
  ::close(fds[0]);
  ::close(fds[1]);
  REQUIRE_FALSE(r);
  CHECK(r.error() == std::errc::invalid_argument);
  stream gone;
  CHECK((co_await gone.send_file(0, 0, 1)).error() == errc::closed);
}

TEST_CASE("send_file of a bad fd fails with EBADF, of a pipe with invalid_argument") {
  over_each_transport(bad_fds);
}

// ---- interrupted -----------------------------------------------------------------------------

task<void> close_later(stream* s) {
  s->close();
  co_return;
}

task<void> interrupted(loop& lp, const transport& t) {
  const temp_file file(32 << 20);
  auto e = co_await t.connect(lp);  // nobody reads e.b: the send fills everything and waits
  const auto start = evco::clock::now();
  auto r = co_await e.a.send_file(file.fd, 0, file.size, 200ms);
  REQUIRE_FALSE(r);
  CHECK(r.error() == errc::timed_out);
  CHECK(evco::clock::now() - start >= 200ms);

  auto f = co_await t.connect(lp);
  evco::test::stop_probe probe;
  probe.stop_from_loop(lp);
  r = co_await f.a.send_file(file.fd, 0, file.size, probe.src.get_token());
  probe.op_resumed = true;
  REQUIRE_FALSE(r);
  CHECK(r.error() == errc::cancelled);
  CHECK_FALSE(probe.resumed_inside_request_stop);

  auto g = co_await t.connect(lp);
  lp.spawn(close_later(&g.a), fail_task);
  r = co_await g.a.send_file(file.fd, 0, file.size, 20s);
  REQUIRE_FALSE(r);
  CHECK(r.error() == errc::closed);
}

TEST_CASE("a waiting send_file times out, is cancelled, and is ended by close") {
  over_each_transport(interrupted);
}
