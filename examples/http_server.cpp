// http_server ADDRESS PORT [THREADS]: a small HTTP/1.1 server, fast enough to stand beside
// nginx (bench/http_vs_nginx.py). Port 0 picks a free port; "listening on ADDRESS:PORT" goes to
// stdout once every loop listens.
//
//   GET / (or HEAD /)   200 "Hello, world!"
//   POST /echo          200 with the request's body as its own (streamed, not buffered)
//   anything else       404, or 405 for another method on those two paths
//
// Keep-alive (HTTP/1.1 by default, HTTP/1.0 with "Connection: keep-alive") and pipelining:
// requests that arrive together are answered in order, with one write. Bodies are framed by
// Content-Length only: a Transfer-Encoding gets 501; a head over 8 KiB (or with more than 64
// headers) 431; a body over 1 MiB 413; a malformed request 400; each of those closes the
// connection after its response.
//
// THREADS (default 1; 0: one per core) loops run on threads of their own (evco::loop_pool),
// each accepting on its own SO_REUSEPORT listener bound to the same port.
//
// SIGINT or SIGTERM stops it gracefully: no new connection is accepted, idle keep-alive
// connections close, a request in flight gets its response (saying "Connection: close" unless
// its head went out before the stop) and then the connection closes, and whatever is still
// open after the grace period is cancelled; the exit status is then 0.
//
// Environment: HTTP_SERVER_IDLE_MS (default 60000): a connection on which no byte moves for
// that long is closed; HTTP_SERVER_GRACE_MS (default 5000): the grace period of the stop.

#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>

#include <evco/evco.hpp>

#include "args.hpp"
#include "http/request_parser.hpp"

namespace {

using std::chrono::milliseconds;

struct config {
  http::limits limits;
  milliseconds idle{60000};
  milliseconds grace{5000};
};

// Read into the connection's buffer: a head (at most limits.max_head) always fits in it with
// room to spare, so moving a partial head to the front makes room at least min_room wide.
constexpr std::size_t buffer_size = 16 * 1024;
constexpr std::size_t min_room = 4096;

constexpr std::string_view hello = "Hello, world!";

// A deadline already past: the op completes only if it can at once.
constexpr auto poll = std::chrono::milliseconds(-1);

// The Date header's value (RFC 9110 section 5.6.7), formatted once a second per thread.
std::string_view http_date() {
  thread_local std::time_t formatted_at = -1;
  thread_local char text[40];
  thread_local std::size_t length = 0;
  const std::time_t now = std::time(nullptr);
  if (now != formatted_at) {
    std::tm tm{};
    gmtime_r(&now, &tm);
    length = std::strftime(text, sizeof text, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    formatted_at = now;
  }
  return {text, length};
}

std::string_view reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 413:
      return "Content Too Large";
    case 431:
      return "Request Header Fields Too Large";
    case 501:
      return "Not Implemented";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

// Appends a response head to `out`; the body (content_length bytes) is the caller's to add.
void append_head(std::string& out, int status, std::uint64_t content_length, bool keep_alive,
                 std::string_view content_type = "text/plain") {
  char number[24];
  out.append("HTTP/1.1 ");
  out.append(number, std::to_chars(number, number + sizeof number, status).ptr);
  out.append(" ");
  out.append(reason(status));
  out.append("\r\nServer: evco\r\nDate: ");
  out.append(http_date());
  out.append("\r\nContent-Type: ");
  out.append(content_type);
  out.append("\r\nContent-Length: ");
  out.append(number, std::to_chars(number, number + sizeof number, content_length).ptr);
  out.append(keep_alive ? "\r\nConnection: keep-alive\r\n\r\n" : "\r\nConnection: close\r\n\r\n");
}

// Where a request goes, decided from its head alone (its views die when the buffer is reused).
enum class route { hello, echo, not_found, not_allowed };

route route_of(const http::request& r) {
  if (r.target == "/")
    return r.method == "GET" || r.method == "HEAD" ? route::hello : route::not_allowed;
  if (r.target == "/echo") return r.method == "POST" ? route::echo : route::not_allowed;
  return route::not_found;
}

// The response to a request whose body, if any, has been read (and discarded) already.
void append_response(std::string& out, route to, bool head_only, bool keep_alive) {
  switch (to) {
    case route::hello:
      append_head(out, 200, hello.size(), keep_alive);
      if (!head_only) out.append(hello);
      return;
    case route::echo:  // an empty body, echoed
      append_head(out, 200, 0, keep_alive, "application/octet-stream");
      return;
    case route::not_found:
      append_head(out, 404, 10, keep_alive);
      if (!head_only) out.append("Not Found\n");
      return;
    case route::not_allowed:
      append_head(out, 405, 19, keep_alive);
      if (!head_only) out.append("Method Not Allowed\n");
      return;
  }
}

// An error the parser found: the response says why, and the connection ends after it.
void append_error(std::string& out, http::outcome o) {
  const int status = static_cast<int>(o);
  const std::string_view body = reason(status);
  append_head(out, status, body.size() + 1, false);
  out.append(body);
  out.append("\n");
}

// What answer_buffered() left to do.
enum class next {
  read,   // every complete request is answered: read more
  body,   // a request's body goes on past the buffer: stream_body()
  close,  // flush the responses and close
};

// One connection: its bytes land in `buf_` once (recv() straight into it), the parser reads
// them there, and the responses to all the requests of one read go out in one write.
class connection {
 public:
  connection(evco::stream s, const config& cfg, std::stop_token stop)
      : s_(std::move(s)), stop_(std::move(stop)), parser_(cfg.limits) {
    buf_.resize(buffer_size);
    s_.set_timeouts(cfg.idle, cfg.idle);
  }

  evco::task<void> run() {
    for (;;) {
      const next n = answer_buffered();
      if (n == next::body && co_await stream_body()) continue;
      if (n != next::read) break;
      if (!co_await flush() || !co_await fill(begin_ == end_)) co_return;
    }
    (void)co_await flush();
  }

 private:
  std::string_view pending() const noexcept { return {buf_.data() + begin_, end_ - begin_}; }

  // Whether this response may leave the connection open: not once the server is stopping.
  bool keep_alive() const noexcept { return req_.keep_alive && !stop_.stop_requested(); }

  // Answers, into out_, every request that is in the buffer whole.
  next answer_buffered() {
    for (;;) {
      const http::outcome o = parser_.parse(pending(), req_);
      if (o == http::outcome::incomplete) return next::read;
      if (http::is_error(o)) {
        append_error(out_, o);
        return next::close;
      }
      parser_.reset();
      begin_ += req_.head_size;
      if (req_.content_length > end_ - begin_) return next::body;
      begin_ += req_.content_length;
      const bool keep = keep_alive();
      const route to = route_of(req_);
      if (to == route::echo) {
        append_head(out_, 200, req_.content_length, keep, "application/octet-stream");
        out_.append(buf_.data() + begin_ - req_.content_length, req_.content_length);
      } else {
        append_response(out_, to, req_.method == "HEAD", keep);
      }
      if (!keep) return next::close;
    }
  }

  // A body longer than what is buffered: echoed or discarded as it arrives, through the same
  // buffer (whatever follows it stays there, for the next request). False: close.
  evco::task<bool> stream_body() {
    const route to = route_of(req_);
    const bool keep = keep_alive();
    const bool head_only = req_.method == "HEAD";
    std::uint64_t left = req_.content_length;
    if (req_.expect_continue && begin_ == end_) out_.append("HTTP/1.1 100 Continue\r\n\r\n");
    if (to == route::echo) append_head(out_, 200, left, keep, "application/octet-stream");
    for (;;) {
      const std::size_t take =
          static_cast<std::size_t>(std::min<std::uint64_t>(left, end_ - begin_));
      if (to == route::echo) out_.append(buf_.data() + begin_, take);
      begin_ += take;
      left -= take;
      if (left == 0) break;
      if (!co_await flush() || !co_await fill(false)) co_return false;
    }
    if (to != route::echo) append_response(out_, to, head_only, keep);
    co_return keep && !stop_.stop_requested();
  }

  // Sends the responses gathered so far, in one write.
  evco::task<bool> flush() {
    if (out_.empty()) co_return true;
    const bool sent = static_cast<bool>(co_await s_.write(out_));
    out_.clear();
    co_return sent;
  }

  // Reads what is there into the free end of the buffer. Waiting for a new request (`idle`),
  // the read ends at the server's stop; in the middle of one, only at its idle timeout (or the
  // end of the grace period, when the task group cancels it).
  evco::task<bool> fill(bool idle) {
    make_room();
    const std::span<char> room(buf_.data() + end_, buf_.size() - end_);
    // A named local: g++ 12 destroys a temporary holding a stop_token twice when it is built
    // in the co_await's full-expression (see op_options.hpp).
    evco::op_options limits;
    if (idle) limits.stop = stop_;
    auto n = co_await s_.read_some(room, std::move(limits));
    if (!n && idle && n.error() == evco::errc::cancelled) {
      // Stopping: a request that reached us before the stop is still answered.
      n = co_await s_.read_some(room, poll);
    }
    if (!n) co_return false;  // eof, reset, idle timeout, stop: nothing to answer
    end_ += n.value();
    co_return true;
  }

  // Moves the unparsed rest to the front, when the room behind it runs short; when it is
  // empty (the usual case) that costs nothing.
  void make_room() noexcept {
    if (begin_ == end_) {
      begin_ = end_ = 0;
    } else if (buf_.size() - end_ < min_room) {
      std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
    }
  }

  evco::stream s_;
  std::stop_token stop_;
  std::string buf_;  // bytes [begin_, end_) are read and not yet answered
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
  std::string out_;  // responses not yet written
  http::request_parser parser_;
  http::request req_;
};

evco::task<void> serve(evco::stream s, const config& cfg, std::stop_token stop) {
  connection c(std::move(s), cfg, std::move(stop));
  co_await c.run();
}

bool out_of_resources(std::error_code ec) {
  return ec == std::errc::too_many_files_open || ec == std::errc::too_many_files_open_in_system ||
         ec == std::errc::no_buffer_space || ec == std::errc::not_enough_memory;
}

// One loop: accept until the stop, then stop accepting and give the connections the grace
// period to end (idle ones end at once), cancel those left, and wait for them.
evco::task<evco::result<void>> serve_loop(evco::loop& lp, evco::listener l, const config& cfg,
                                          std::stop_token stop) {
  evco::task_group conns(lp);
  evco::result<void> r = evco::success();
  for (;;) {
    auto accepted = co_await l.accept(stop);
    if (!accepted) {
      if (accepted.error() == evco::errc::cancelled) break;
      // Out of descriptors passes as clients leave; accept rests before it tries again.
      if (out_of_resources(accepted.error())) continue;
      std::fprintf(stderr, "[ERR] accept: %s\n", accepted.error().message().c_str());
      r = accepted.error();
      break;
    }
    if (auto spawned = co_await conns.spawn(serve(std::move(accepted).value(), cfg, stop));
        !spawned) {
      r = spawned.error();
      break;
    }
  }
  l.close();
  if (auto joined = co_await evco::with_timeout(lp, conns.join(), cfg.grace);
      !joined && joined.error() == evco::errc::timed_out) {
    std::fprintf(stderr, "[*] grace period over: remaining connections cancelled\n");
  }
  co_return r;
}

evco::task<evco::result<void>> failed(std::error_code ec) {
  co_return ec;
}

// A non-negative count from the command line or the environment, or false.
bool parse_count(const char* text, long& out) {
  char* end = nullptr;
  out = std::strtol(text, &end, 10);
  return *text != '\0' && *end == '\0' && out >= 0;
}

bool milliseconds_from_env(const char* name, milliseconds& out) {
  const char* text = std::getenv(name);
  if (text == nullptr) return true;
  long ms = 0;
  if (!parse_count(text, ms)) {
    std::fprintf(stderr, "[ERR] bad %s '%s': expected milliseconds >= 0\n", name, text);
    return false;
  }
  out = milliseconds(ms);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3 || argc > 4) {
    std::fprintf(stderr, "usage: %s ADDRESS PORT [THREADS]\n", argv[0]);
    return 2;
  }
  auto ep = examples::parse_endpoint(argv[1], argv[2]);
  if (!ep) return 2;
  long threads = 1;
  if (argc == 4 && !parse_count(argv[3], threads)) {
    std::fprintf(stderr, "[ERR] bad THREADS '%s': expected a count >= 0\n", argv[3]);
    return 2;
  }
  config cfg;
  if (!milliseconds_from_env("HTTP_SERVER_IDLE_MS", cfg.idle) ||
      !milliseconds_from_env("HTTP_SERVER_GRACE_MS", cfg.grace))
    return 2;

  // SIGINT and SIGTERM stop the pool (run_options' default): each loop's `stop` is requested.
  evco::loop_pool pool(static_cast<std::size_t>(threads));
  // fn is called for loop 0, 1, ... in turn: loop 0 binds (port 0 picks one), the others then
  // bind the same port, each with a listener of its own.
  auto r = pool.run(
      [&](evco::loop& lp, std::size_t i, std::stop_token stop) -> evco::task<evco::result<void>> {
        auto bound = evco::listener::bind(lp, *ep, {.reuse_port = pool.size() > 1});
        if (!bound) {
          std::fprintf(stderr, "[ERR] bind %s: %s\n", ep->to_string().c_str(),
                       bound.error().message().c_str());
          return failed(bound.error());
        }
        const auto local = bound.value().local_endpoint();
        if (!local) {
          std::fprintf(stderr, "[ERR] getsockname: %s\n", local.error().message().c_str());
          return failed(local.error());
        }
        ep = local.value();
        if (i + 1 == pool.size()) {
          // stdout, flushed: a script that started us on port 0 reads the port from here.
          std::printf("listening on %s\n", ep->to_string().c_str());
          std::fflush(stdout);
        }
        return serve_loop(lp, std::move(bound).value(), cfg, std::move(stop));
      });
  if (!r) {
    std::fprintf(stderr, "[ERR] stopped by a failure: %s\n", r.error().message().c_str());
    return 1;
  }
  return 0;
}
