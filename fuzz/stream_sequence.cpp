// Fuzz target: two connected streams (an in-process pair, or a loopback TCP connection: the
// first input byte chooses) driven by random operations decoded from the input, in both
// directions at once: writes, the reads, shutdown, close, cancellation, tiny timeouts, when_any
// of a read and a timer, frames destroyed in the middle of their op, read limits and write
// watermarks. It checks the stream contracts (include/evco/stream.hpp) on the bytes:
// - every write that succeeded arrives exactly once, whole and in order, unless the reading
//   end was closed; a write that failed (cancelled, timed out, closed, busy) sent nothing;
// - a read never returns a byte that was not written, and one that failed delivered nothing
//   and lost nothing (the next read goes on with the sequence);
// - eof comes only after the writing end shut down or closed, and after every accepted byte;
// - nothing hangs: each input ends by shutting down, draining both directions and running the
//   loop until every op finished, under a watchdog that dumps the parked ops and aborts.
// A violation prints what was expected and aborts (libFuzzer then saves the input).

#include <array>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <span>
#include <stop_token>
#include <string>
#include <utility>
#include <vector>

#include <event2/bufferevent.h>
#include <sys/socket.h>

#include "evco/evco.hpp"
#include "evco/pair.hpp"

namespace {

using namespace std::chrono_literals;
using evco::errc;

// STREAM_SEQUENCE_TRACE=1 in the environment prints each op and each result: for reading a
// crash (see README.md).
const bool tracing = std::getenv("STREAM_SEQUENCE_TRACE") != nullptr;
#define TRACE(...)                       \
  do {                                   \
    if (tracing) {                       \
      std::fprintf(stderr, __VA_ARGS__); \
      std::fputc('\n', stderr);          \
    }                                    \
  } while (0)

[[noreturn]] void violation(const char* what, unsigned dir = 0, std::size_t a = 0,
                            std::size_t b = 0) {
  std::fprintf(stderr, "stream_sequence fuzz: invariant violated (direction %u): %s [%zu %zu]\n",
               dir, what, a, b);
  std::abort();
}

// ---- The jobs: eager coroutines the driver owns, so that it can destroy one mid-op. ----

struct job {
  struct promise_type {
    job get_return_object() {
      return job(std::coroutine_handle<promise_type>::from_promise(*this));
    }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_always final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { violation("exception escaped a job"); }
  };
  job() = default;
  explicit job(std::coroutine_handle<promise_type> h) noexcept : h_(h) {}
  job(job&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  job& operator=(job&& o) noexcept {
    reset();
    h_ = std::exchange(o.h_, {});
    return *this;
  }
  ~job() { reset(); }
  bool running() const noexcept { return h_ && !h_.done(); }
  // Destroys the frame, finished or not (and with it the op it awaits).
  void reset() noexcept {
    if (h_) std::exchange(h_, {}).destroy();
  }

 private:
  std::coroutine_handle<promise_type> h_;
};

// ---- The model of one direction: what was written, what the reader has seen. ----

// Byte `i` of the `w`th write of a direction. The first bytes of writes up to 251 apart differ,
// so a reader that finds a write missing (one whose fate is unknown) sees which came instead.
std::byte pattern(std::size_t w, std::size_t i) {
  return static_cast<std::byte>((w * 7 + i * 31 + i / 251) % 251);
}

enum class fate : unsigned char {
  pending,   // in flight: may or may not arrive (its frame destroyed: stays so)
  accepted,  // the write succeeded: it must arrive
  failed,    // the write failed with an error that says it sent nothing
  broken,    // failed on a broken connection (EPIPE, reset): unknown, as pending
  skipped,   // the reader went past it: it must never be accepted
};

struct write_rec {
  std::size_t len;
  fate f = fate::pending;
  bool seen = false;  // some of its bytes arrived
};

struct direction {
  explicit direction(unsigned i) noexcept : id(i) {}
  unsigned id;
  std::vector<write_rec> writes;
  // The reader's position: in writes[cur], `off` bytes in (off == 0: between writes).
  std::size_t cur = 0;
  std::size_t off = 0;
  bool writer_ended = false;  // shutdown started, or the writing end closed
  bool reader_closed = false;
  bool got_eof = false;
  std::size_t bytes_in = 0;

  std::size_t start_write(std::size_t len) {
    TRACE("  dir %u: write %zu of %zu bytes starts", id, writes.size(), len);
    writes.push_back({len});
    return writes.size() - 1;
  }

  // The first write that may come next, from `from`, whose first byte is `b`.
  std::size_t match(std::size_t from, std::byte b) {
    for (std::size_t j = from; j < writes.size(); ++j) {
      const write_rec& w = writes[j];
      if (w.f == fate::failed || w.f == fate::skipped) continue;
      if (pattern(j, 0) == b) return j;
      if (w.f == fate::accepted) violation("an accepted write is missing", id, j, bytes_in);
    }
    violation("a byte that was never written", id, std::to_integer<std::size_t>(b), bytes_in);
  }

  void received(std::span<const std::byte> bytes) {
    TRACE("  dir %u: read %zu bytes", id, bytes.size());
    if (bytes.empty()) return;  // a zero-size read completes with 0 whatever the state
    if (got_eof) violation("bytes after eof", id);
    for (std::byte b : bytes) {
      if (off == 0) {
        const std::size_t j = match(cur, b);
        for (std::size_t k = cur; k < j; ++k) {
          if (writes[k].f == fate::pending || writes[k].f == fate::broken) {
            writes[k].f = fate::skipped;
          }
        }
        cur = j;
        writes[cur].seen = true;
      } else if (pattern(cur, off) != b) {
        violation("a byte out of order, lost or repeated", id, cur, off);
      }
      ++bytes_in;
      if (++off == writes[cur].len) {
        ++cur;
        off = 0;
      }
    }
  }

  // A write reported how it ended.
  void write_done(std::size_t w, const evco::result<void>& r) {
    TRACE("  dir %u: write %zu: %s", id, w, r ? "ok" : r.error().message().c_str());
    write_rec& rec = writes[w];
    if (r) {
      if (rec.f == fate::skipped && !reader_closed) {
        violation("a write succeeded after the reader went past it", id, w, bytes_in);
      }
      if (rec.f == fate::pending) rec.f = fate::accepted;
      return;
    }
    const std::error_code ec = r.error();
    const bool sent_nothing = ec == errc::cancelled || ec == errc::timed_out ||
                              ec == errc::closed || ec == errc::busy ||
                              ec == std::errc::not_enough_memory;
    if (sent_nothing && rec.seen && !reader_closed) {
      violation("a write that failed had sent bytes", id, w, ec.value());
    }
    if (rec.f == fate::pending) rec.f = sent_nothing ? fate::failed : fate::broken;
  }

  // read_some ended with eof: the writer ended, and every accepted byte came before it.
  void eof() {
    if (reader_closed) return;
    if (!writer_ended) violation("eof before the writer ended", id, bytes_in);
    if (off != 0) violation("eof in the middle of a write", id, cur, off);
    for (std::size_t j = cur; j < writes.size(); ++j) {
      if (writes[j].f == fate::accepted) violation("eof before an accepted write", id, j);
      if (writes[j].f == fate::pending || writes[j].f == fate::broken) {
        writes[j].f = fate::skipped;
      }
    }
    got_eof = true;
  }

  // A read failed, having delivered nothing. Its eof means the writer ended; read_some's means
  // also that every byte before the end was read, while read_exactly and read_until leave
  // the bytes they could not complete with buffered for the next read.
  void read_failed(std::error_code ec, bool read_some) {
    TRACE("  dir %u: read failed: %s", id, ec.message().c_str());
    if (ec != errc::eof || reader_closed) return;
    if (read_some) return eof();
    if (!writer_ended) violation("eof before the writer ended", id, bytes_in);
  }
};

// ---- The ops, decoded from the input. ----

struct bytes_in {
  const std::uint8_t* p;
  std::size_t n;
  std::uint8_t u8() {
    if (n == 0) return 0;
    --n;
    return *p++;
  }
  std::size_t size() {
    const std::uint8_t b = u8();
    // Mostly small, some up to 64 KiB: those reach the watermarks, and the kernel's limits
    // with the small socket buffers (see body()).
    if (b < 192) return b;
    return (static_cast<std::size_t>(b - 192) << 10) + u8() * 4u;
  }
};

constexpr std::size_t max_ops = 48;
constexpr int max_sleeps = 6;  // sleeps of 1 ms: the timers' time is real

struct end_state {
  evco::stream s;
  job reader;
  // Every write-side op started (write, drain, shutdown), the latest last: a second one may
  // well not be busy (the first completed, but its frame is not resumed yet), and the bytes
  // of writes go out in the order they started, which is the model's order.
  std::vector<job> writers;
  std::optional<std::stop_source> read_stop, write_stop;
  // The read op the reader job awaits. Only a parked one may have its frame destroyed: one
  // that completed and waits on the loop's ready list to resume its frame holds bytes it
  // took from the stream, which the frame's end throws away with it (what the application
  // does to bytes it read and drops), and the model could not know how many.
  const evco::detail::stream_op* read_op = nullptr;
};

struct context {
  evco::loop& lp;
  std::array<end_state, 2> ends;
  // dirs[i]: the bytes end i writes and end 1-i reads.
  std::array<direction, 2> dirs{direction(0), direction(1)};
};

// How an op limits itself: none, an expired deadline (a poll), 100 us, 1 ms or 2 ms, each with
// or without a stop token.
evco::op_options options(std::uint8_t b, std::optional<std::stop_source>& src) {
  src.emplace();
  static constexpr evco::duration timeouts[] = {evco::duration::zero(), evco::duration(-1),
                                                std::chrono::microseconds(100), 1ms, 2ms};
  const evco::duration t = timeouts[b % 5];
  if (b & 0x80) return evco::op_options(t, src->get_token());
  if (t == evco::duration::zero()) return {};
  return evco::op_options(t);
}

job do_write(context& c, int e, std::size_t len, evco::op_options o) {
  direction& d = c.dirs[e];
  if (len == 0) {
    // A write of nothing moves nothing; whatever it reports, it must not disturb the model.
    (void)co_await c.ends[e].s.write(std::span<const std::byte>{}, std::move(o));
    co_return;
  }
  const std::size_t w = d.start_write(len);
  std::vector<std::byte> data(len);
  for (std::size_t i = 0; i < len; ++i)
    data[i] = pattern(w, i);
  auto r = co_await c.ends[e].s.write(std::span<const std::byte>(data), std::move(o));
  d.write_done(w, r);
}

// read_some into a span, read_some into a string, read_exactly, read_until: the bytes read
// go to the reading direction's model, an error to its eof check.
job do_read(context& c, int e, int kind, std::size_t n, std::byte delim, evco::op_options o) {
  direction& d = c.dirs[1 - e];
  evco::stream& s = c.ends[e].s;
  TRACE("  end %d: read kind %d of %zu, timeout %lld ns, stop %d", e, kind, n,
        static_cast<long long>(o.timeout.count()), o.stop.stop_possible());
  switch (kind) {
    case 0: {
      std::vector<std::byte> buf(n);
      auto op = s.read_some(std::span<std::byte>(buf), std::move(o));
      c.ends[e].read_op = &op;
      auto r = co_await op;
      c.ends[e].read_op = nullptr;
      if (!r) co_return d.read_failed(r.error(), true);
      if (r.value() > n || (r.value() == 0 && n != 0)) violation("read_some's count", d.id);
      d.received(std::span<const std::byte>(buf).first(r.value()));
      co_return;
    }
    case 1: {
      // Appends to what the string holds: that must stay as it was.
      std::string str = "prefix";
      auto op = s.read_some(str, n, std::move(o));
      c.ends[e].read_op = &op;
      auto r = co_await op;
      c.ends[e].read_op = nullptr;
      if (str.compare(0, 6, "prefix") != 0) violation("read_some(string) changed its prefix");
      if (!r) {
        if (str.size() != 6) violation("a failed read_some(string) appended bytes", d.id);
        co_return d.read_failed(r.error(), true);
      }
      if (r.value() != str.size() - 6 || r.value() > n) violation("read_some(string)'s count");
      d.received(std::as_bytes(std::span<const char>(str)).subspan(6));
      co_return;
    }
    case 2: {
      std::vector<std::byte> buf(n);
      auto op = s.read_exactly(std::span<std::byte>(buf), std::move(o));
      c.ends[e].read_op = &op;
      auto r = co_await op;
      c.ends[e].read_op = nullptr;
      if (!r) co_return d.read_failed(r.error(), false);
      d.received(buf);
      co_return;
    }
    default: {
      std::string line;
      const char dc = static_cast<char>(delim);
      auto op = s.read_until(line, std::string_view(&dc, 1), n, std::move(o));
      c.ends[e].read_op = &op;
      auto r = co_await op;
      c.ends[e].read_op = nullptr;
      if (!r) {
        if (!line.empty()) violation("a failed read_until appended bytes", d.id);
        co_return d.read_failed(r.error(), false);
      }
      if (r.value() != line.size() || line.empty() || line.back() != dc || line.size() > n) {
        violation("read_until's frame", d.id);
      }
      d.received(std::as_bytes(std::span<const char>(line)));
      co_return;
    }
  }
}

// The read of do_read_or_timer, which hands its bytes to the model the moment it has them:
// when_any resumes its awaiter only once the timer, asked to stop, has ended too, and the
// frame may be destroyed in between.
evco::task<void> read_and_record(direction& d, end_state& end, std::span<std::byte> buf) {
  auto op = end.s.read_some(buf);
  end.read_op = &op;
  auto r = co_await op;
  end.read_op = nullptr;
  if (!r) co_return d.read_failed(r.error(), true);
  d.received(buf.first(r.value()));
}

// A read racing a timer: when the timer wins, the read was cancelled and delivered nothing.
job do_read_or_timer(context& c, int e, std::size_t n, evco::duration t) {
  TRACE("  end %d: read_some of %zu or a timer of %lld ns", e, n,
        static_cast<long long>(t.count()));
  std::vector<std::byte> buf(n);
  (void)co_await evco::when_any(read_and_record(c.dirs[1 - e], c.ends[e], buf),
                                evco::sleep_for(c.lp, t));
}

job do_shutdown(context& c, int e, evco::op_options o) {
  c.dirs[e].writer_ended = true;  // before: the peer may read eof before this resumes
  (void)co_await c.ends[e].s.shutdown(std::move(o));
}

job do_drain(context& c, int e, evco::op_options o) {
  (void)co_await c.ends[e].s.drain(std::move(o));
}

void close_end(context& c, int e) {
  c.dirs[e].writer_ended = true;
  c.dirs[1 - e].reader_closed = true;
  c.ends[e].s.close();
}

evco::task<void> wait_for(evco::loop& lp, const job& j) {
  while (j.running())
    co_await lp.yield();
}

// The end of every input: each writer finishes its write and shuts down; each reader reads to
// eof, which must come after every accepted byte.
job finish_writer(context& c, int e) {
  for (const job& j : c.ends[e].writers)
    co_await wait_for(c.lp, j);
  if (!c.ends[e].s.is_open()) co_return;
  c.dirs[e].writer_ended = true;
  (void)co_await c.ends[e].s.shutdown();
}

job drain_reader(context& c, int e) {
  co_await wait_for(c.lp, c.ends[e].reader);
  direction& d = c.dirs[1 - e];
  if (!c.ends[e].s.is_open() || d.got_eof) co_return;
  c.ends[e].s.set_read_limit(0);  // a read limit of a few bytes would take a turn per few bytes
  std::vector<std::byte> buf(64 << 10);
  for (;;) {
    auto r = co_await c.ends[e].s.read_some(std::span<std::byte>(buf));
    if (!r) {
      if (r.error() != errc::eof) {
        std::fprintf(stderr, "final read: %s\n", r.error().message().c_str());
        violation("the final read failed, not with eof", d.id);
      }
      d.eof();
      co_return;
    }
    d.received(std::span<const std::byte>(buf).first(r.value()));
  }
}

evco::task<void> drive(context& c, bytes_in in) {
  int sleeps = 0;
  for (std::size_t i = 0; i < max_ops && in.n > 0; ++i) {
    const std::uint8_t op = in.u8();
    const int e = op & 1;
    TRACE("op %zu: end %d kind %d", i, e, (op >> 1) % 14);
    end_state& end = c.ends[e];
    switch ((op >> 1) % 14) {
      case 0:
      case 1: {
        const std::size_t len = in.size();
        end.writers.push_back(do_write(c, e, len, options(in.u8(), end.write_stop)));
        break;
      }
      case 2:
      case 3: {
        const int kind = in.u8() % 4;
        const std::size_t n = in.size();
        const auto delim = static_cast<std::byte>(in.u8());
        const std::uint8_t limits = in.u8();
        // One read at a time: a second one need not be busy (the first completed, its frame
        // not resumed yet), and then the model could not tell which read got which bytes.
        if (!end.reader.running()) {
          end.reader = do_read(c, e, kind, n, delim, options(limits, end.read_stop));
        }
        break;
      }
      case 4:
        end.writers.push_back(do_shutdown(c, e, options(in.u8(), end.write_stop)));
        break;
      case 5:
        close_end(c, e);
        break;
      case 6:  // cancel the end's pending read or write
        if (auto& src = in.u8() & 1 ? end.read_stop : end.write_stop; src) src->request_stop();
        break;
      case 7:  // destroy the frame of the end's pending read or latest write
        if (in.u8() & 1) {
          if (!end.read_op || end.read_op->state != evco::detail::op_state::idle) {
            end.reader.reset();
            end.read_op = nullptr;
          }
        } else if (!end.writers.empty()) {
          end.writers.back().reset();
        }
        break;
      case 8: {
        // None, or at least 256 bytes: a pair moves at most the limit per loop turn, and a
        // 256 KiB read_exactly at a limit of 2 bytes takes seconds. (The read_until target
        // has the tiny limits.)
        const std::size_t limit = in.size();
        end.s.set_read_limit(limit == 0 ? 0 : 256 + limit);
        break;
      }
      case 9: {
        const std::size_t low = in.size();
        end.s.set_write_watermarks(low, in.size());
        break;
      }
      case 10: {
        const std::size_t n = in.size();
        const evco::duration t = std::chrono::microseconds(in.u8() * 8);
        if (!end.reader.running()) end.reader = do_read_or_timer(c, e, n, t);
        break;
      }
      case 11:
        end.writers.push_back(do_drain(c, e, options(in.u8(), end.write_stop)));
        break;
      case 12:
        if (sleeps < max_sleeps) {
          ++sleeps;
          (void)co_await evco::sleep_for(c.lp, 1ms);
        }
        break;
      default:
        break;
    }
    // Lets the loop move bytes between ops, a few turns at most.
    for (int k = in.u8() % 3; k > 0; --k)
      co_await c.lp.yield();
  }
  std::array<job, 4> last{finish_writer(c, 0), finish_writer(c, 1), drain_reader(c, 0),
                          drain_reader(c, 1)};
  for (const job& j : last)
    co_await wait_for(c.lp, j);
  // Both directions ended: eof was read wherever the reading end is open.
  for (const direction& d : c.dirs) {
    if (!d.reader_closed && !d.got_eof) violation("no eof at the end", d.id);
  }
}

evco::task<evco::result<std::pair<evco::stream, evco::stream>>> tcp_pair(evco::loop& lp) {
  EVCO_TRY(auto l, evco::listener::bind(lp, evco::endpoint::v4_loopback()));
  EVCO_TRY(auto ep, l.local_endpoint());
  EVCO_TRY(auto a, co_await evco::connect(lp, ep));
  EVCO_TRY(auto b, co_await l.accept());
  co_return std::pair{std::move(a), std::move(b)};
}

// Small kernel buffers, so that direct writes are taken in part and then wait after a
// couple of large writes. (A receive buffer below loopback's 64 KiB MSS stalls the sender
// on TCP's persist timer, 200 ms a time.)
void shrink_socket_buffers(const evco::stream& s) {
  const int fd = bufferevent_getfd(s.native_handle());
  const int send = 4096, receive = 65536;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &send, sizeof send);
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive, sizeof receive);
}

// The first byte: bit 0 a TCP connection rather than a pair, bit 1 with small socket buffers.
evco::task<void> body(evco::loop& lp, bytes_in in) {
  const std::uint8_t mode = in.u8();
  const bool tcp = mode & 1;
  auto ends = tcp ? co_await tcp_pair(lp) : evco::make_pair(lp);
  if (!ends) {
    std::fprintf(stderr, "stream_sequence fuzz: no %s pair: %s\n", tcp ? "TCP" : "in-process",
                 ends.error().message().c_str());
    std::abort();
  }
  context c{lp, {}};
  c.ends[0].s = std::move(ends.value().first);
  c.ends[1].s = std::move(ends.value().second);
  if (tcp && (mode & 2)) {
    for (const end_state& e : c.ends)
      shrink_socket_buffers(e.s);
  }
  co_await drive(c, in);
}

// A hang is a bug: a watchdog of its own (when_any would wait for a hung body to end) dumps
// what is parked, then aborts.
evco::task<void> watchdog(evco::loop& lp, std::stop_token done) {
  if (co_await evco::sleep_for(lp, 5s, std::move(done))) {
    lp.dump(stderr);
    violation("hang: not done after 5 s");
  }
}

void run_bounded(evco::loop& lp, evco::task<void> t) {
  std::stop_source done;
  lp.spawn(watchdog(lp, done.get_token()), [](std::exception_ptr) { std::abort(); });
  lp.run(std::move(t));
  done.request_stop();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  evco::loop lp;
  run_bounded(lp, body(lp, bytes_in{data, size}));
  return 0;
}
