#pragma once
// stream: a byte stream over one libevent bufferevent (TCP, TLS, or a pair: see pair.hpp).

#include <array>
#include <chrono>
#include <cstddef>
#include <optional>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>

#include <sys/types.h>

#include "evco/detail/parked_op.hpp"
#include "evco/detail/waiter.hpp"
#include "evco/endpoint.hpp"
#include "evco/error.hpp"
#include "evco/op_options.hpp"
#include "evco/rate_limit.hpp"
#include "evco/timer.hpp"

struct bufferevent;

namespace evco {

class loop;
class stream;

/// Who is at the other end of a Unix domain socket (SO_PEERCRED): the process that connected
/// (or, on the connecting side, the one that called listen), as it was at that moment.
struct credentials {
  pid_t pid;
  uid_t uid;
  gid_t gid;
};

/// How read_line() finds the end of a line (libevent's evbuffer_eol_style). The terminator is
/// never part of the line.
enum class eol : unsigned char {
  /// Any run of CR and LF ends a line. A run is one terminator however it arrives (a CR in one
  /// packet and its LF in the next included), so this style never gives an empty line.
  any,
  crlf,         ///< LF, or CR LF (HTTP's and SMTP's tolerant reading)
  crlf_strict,  ///< CR LF only; a bare CR or LF is part of the line
  lf,           ///< LF only (a CR before it stays in the line)
  nul,          ///< a NUL byte
};

/// The length header in front of each frame of read_frame() and write_frame(): an unsigned
/// 16- or 32-bit integer, big- or little-endian, or a varint (LEB128, as protobuf's delimited
/// messages: 7 bits per byte, low bits first, up to 10 bytes). It counts the payload only.
enum class frame_header : unsigned char { u16_be, u16_le, u32_be, u32_le, varint };

/// A framing: the header, and the largest payload read_frame() accepts (and write_frame()
/// sends).
struct frame_format {
  frame_header header = frame_header::u32_be;
  std::size_t max = 1 << 20;
};

namespace detail {

struct stream_state;
struct stream_settings;
result<stream> make_socket_stream(loop& lp, int fd);  // friend: marks it a plain socket
// friend: tls.cpp takes the socket out of a plain stream
bufferevent* release_bufferevent(stream& st, loop*& lp, stream_settings& kept) noexcept;
// friend: the bufferevent a stream has, without making one (null for a plain socket that has
// needed none, and has no TLS either): tls.cpp's queries
bufferevent* bufferevent_if_any(const stream& st) noexcept;
struct tls_hooks;
struct transport;
// friend: the constructor
stream attach(loop& lp, bufferevent* bev, const transport& io, const tls_hooks* tls = nullptr);

// Which op an awaiter is: lib/stream/ keeps, for each, how it makes progress and how it is
// interrupted.
enum class op_kind : unsigned char {
  read_some,         // into a span
  read_some_string,  // appended to a string
  read_exactly,
  read_until,
  write,
  drain,
  shutdown,
  read_line,
  read_frame,
  write_frame,
  peek,
  skip,
  send_file,
  write_borrowed,
};

// Where an op is: not waiting (tried at once, or done), parked on its stream, or parked over
// the fairness budget without having been tried (the retry after the next poll tries it).
enum class op_state : unsigned char { idle, parked, yielding };

// The one awaiter behind every stream op (the protocol is lib/stream/protocol.cpp). It lives in
// the awaiting coroutine's frame, so a steady-state read or write allocates nothing; the
// stream keeps a pointer to it while it is parked, and its destructor takes it back out if the
// frame dies first. It is kept small (one sits in the frame for every co_await on a stream):
// a deadline's timer and a stop token's callback live in the stream, one per direction. While
// parked it is on its loop's registry.
struct stream_op : waiter, parked_op {
  stream_op(stream_state* st, op_kind k, std::byte* p, std::size_t n, op_options o) noexcept
      : s(st), kind(k), data(p), size(n), timeout(o.timeout), stop(std::move(o.stop)) {}
  // Movable until it is awaited, so that when_any and when_all can take it in.
  stream_op(stream_op&& o) noexcept
      : s(o.s),
        kind(o.kind),
        data(o.data),
        size(o.size),
        timeout(o.timeout),
        stop(std::move(o.stop)) {}
  stream_op& operator=(const stream_op&) = delete;
  ~stream_op();

  bool await_ready();
  bool await_suspend(std::coroutine_handle<> h);

  stream_state* s;
  loop* lp = nullptr;  // set while parked or queued
  op_kind kind;
  op_state state = op_state::idle;
  std::byte* data;
  std::size_t size;
  std::size_t done = 0;  // bytes moved so far
  duration timeout;
  std::stop_token stop;
  std::error_code ec;
};

// read_until, and read_some into a string: the op plus where the bytes go.
struct string_op : stream_op {
  string_op(stream_state* st, op_kind k, std::string* out, std::string_view d, std::size_t m,
            op_options o) noexcept
      : stream_op(st, k, nullptr, 0, std::move(o)), line(out), delim(d), max(m) {}
  std::string* line;
  std::string_view delim;
  std::size_t max;
  // One or the other, by op: each op keeps one size.
  union {
    std::size_t scanned = 0;  ///< read_until: bytes already searched for the delimiter
    /// read_some: the string's size before the read (the room for the bytes, data and size
    /// above, is made past it only once they are there)
    std::size_t base;
  };
};

struct [[nodiscard]] read_some_op : stream_op {
  using stream_op::stream_op;
  result<std::size_t> await_resume() const noexcept {
    if (ec) return ec;
    return done;
  }
};
struct [[nodiscard]] read_some_string_op : string_op {
  using string_op::string_op;
  result<std::size_t> await_resume() noexcept {
    if (data) line->resize(base + done);  // what was made room for and not filled
    if (ec) return ec;
    return done;
  }
};
struct [[nodiscard]] read_until_op : string_op {
  using string_op::string_op;
  result<std::size_t> await_resume() const noexcept {
    if (ec) return ec;
    return done;
  }
};
// read_exactly, write, drain and shutdown report only success or an error.
struct [[nodiscard]] void_op : stream_op {
  using stream_op::stream_op;
  result<void> await_resume() const noexcept {
    if (ec) return ec;
    return success();
  }
};
using read_exactly_op = void_op;
using write_op = void_op;
using drain_op = void_op;
using shutdown_op = void_op;
using skip_op = void_op;

struct [[nodiscard]] read_line_op : stream_op {
  read_line_op(stream_state* st, std::string* out, eol e, std::size_t m, op_options o) noexcept
      : stream_op(st, op_kind::read_line, nullptr, 0, std::move(o)), line(out), max(m), style(e) {}
  result<std::size_t> await_resume() const noexcept {
    if (ec) return ec;
    return done;
  }
  std::string* line;
  std::size_t max;
  std::size_t scanned = 0;  // bytes already searched for the terminator
  eol style;
};

// The length header of a frame, as bytes: what write_frame sends before the payload, and what
// read_frame took out of the input (given back if the read stops early).
struct frame_prefix {
  std::array<std::byte, 10> bytes;
  unsigned char size = 0;
};

// read_frame: the header first (from the input buffer), then the payload straight into the
// string, as read_exactly does (data, size and done describe the payload).
struct [[nodiscard]] read_frame_op : stream_op {
  read_frame_op(stream_state* st, std::string* out, frame_format f, op_options o) noexcept
      : stream_op(st, op_kind::read_frame, nullptr, 0, std::move(o)), frame(out), format(f) {}
  result<std::size_t> await_resume() const noexcept {
    if (ec) return ec;
    return size;
  }
  std::string* frame;
  frame_format format;
  std::size_t base = 0;  // the string's size before the frame
  frame_prefix header;   // size 0 until the header is complete
};

// write_frame: the header, then the payload (data and size); done counts both.
struct [[nodiscard]] write_frame_op : void_op {
  write_frame_op(stream_state* st, std::span<const std::byte> payload, frame_format f,
                 op_options o) noexcept;
  frame_prefix header;
  bool too_large;  // for the format: fails with limit_exceeded, having sent nothing
};

struct [[nodiscard]] peek_op : stream_op {
  using stream_op::stream_op;
  result<std::span<const std::byte>> await_resume() const noexcept {
    if (ec) return ec;
    return std::span<const std::byte>(data, done);
  }
};

// write_borrowed: while `referenced`, libevent's buffers point into the caller's bytes (see
// lib/stream/borrowed.cpp); `released` once they no longer do.
struct [[nodiscard]] write_borrowed_op : void_op {
  using void_op::void_op;
  bool referenced = false;
  bool released = false;
  bool running = false;  // inside its own perform or interrupt: a release only marks it
};

// send_file: the op's size and done count the file's bytes, from `offset` on.
struct [[nodiscard]] send_file_op : void_op {
  send_file_op(stream_state* st, int f, off_t off, std::size_t n, op_options o) noexcept
      : void_op(st, op_kind::send_file, nullptr, n, std::move(o)), fd(f), offset(off) {}
  int fd;
  off_t offset;
};

}  // namespace detail

/// A connected byte stream. Move-only; destroying it closes it (see close()). At most one
/// read and one write may be pending at a time (a second gets errc::busy). All ops must be
/// started on the loop's thread. A buffer passed to an op is borrowed until the op completes
/// or its frame is destroyed (a destroyed read_exactly gives back what it took, a destroyed
/// write queues its unsent rest: both from that buffer).
///
/// An op that can complete at once does so without suspending, except that once a direction
/// has moved 128 KiB that way in a row, its next op resumes only after the loop has polled
/// again: a stream that is always ready cannot starve the others (or its own peer on the
/// same loop).
class stream {
 public:
  stream() noexcept = default;
  stream(stream&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  stream& operator=(stream&& o) noexcept;
  ~stream() { close(); }

  /// Takes ownership of a bufferevent (of any kind: socket, TLS, pair) built on `lp`'s base.
  /// Throws std::invalid_argument for a null one.
  static stream from_bufferevent(loop& lp, bufferevent* bev);
  /// Takes ownership of a connected stream socket (made non-blocking here). An fd that is not
  /// open (EBADF), not a socket (ENOTSOCK), or not a connected stream socket
  /// (invalid_argument) is left to the caller.
  static result<stream> from_socket(loop& lp, int fd);

  bool is_open() const noexcept { return s_ != nullptr; }

  /// Completes with >= 1 byte once any is available; errc::eof once the peer ended the
  /// stream and everything before the end was read. An empty `buf` completes at once with 0,
  /// whatever the state of the stream (Asio's rule): only a zero-size read returns 0.
  detail::read_some_op read_some(std::span<std::byte> buf, op_options o = {}) {
    return {s_, detail::op_kind::read_some, buf.data(), buf.size(), std::move(o)};
  }
  detail::read_some_op read_some(std::span<char> buf, op_options o = {}) {
    return read_some(std::as_writable_bytes(buf), std::move(o));
  }

  /// Appends what is available, at least one byte and at most `max`, to `out` (Asio's
  /// dynamic_buffer); a `max` of 0 completes at once with 0. `out` only grows once bytes are there,
  /// so a reader waiting on an idle connection holds no buffer; a string reused for the next read
  /// keeps its capacity.
  detail::read_some_string_op read_some(std::string& out, std::size_t max, op_options o = {}) {
    return {s_, detail::op_kind::read_some_string, &out, {}, max, std::move(o)};
  }

  /// Completes when `buf` is full. If the stream ends, times out or is cancelled first, the
  /// error is reported and the bytes received so far stay readable by the next read.
  detail::read_exactly_op read_exactly(std::span<std::byte> buf, op_options o = {}) {
    return {s_, detail::op_kind::read_exactly, buf.data(), buf.size(), std::move(o)};
  }
  detail::read_exactly_op read_exactly(std::span<char> buf, op_options o = {}) {
    return read_exactly(std::as_writable_bytes(buf), std::move(o));
  }

  /// Appends everything up to and including the first `delim` to `out` and returns how many
  /// bytes that was. errc::limit_exceeded when `max` bytes arrived without a complete
  /// delimiter within them; errc::eof when the stream ends first. Either way nothing is lost:
  /// the bytes stay buffered for the next read.
  detail::read_until_op read_until(std::string& out, std::string_view delim, std::size_t max,
                                   op_options o = {}) {
    return {s_, detail::op_kind::read_until, &out, delim, max, std::move(o)};
  }

  /// Appends the next line, without its terminator, to `out` and returns its length. A line
  /// comes out the same however its bytes arrive (split over any number of packets, or many
  /// lines in one). errc::limit_exceeded once more than `max` bytes of a line arrived without
  /// its terminator; errc::eof when the stream ends before one (an unterminated last line is
  /// not a line). Either way nothing is lost: the bytes stay buffered for the next read.
  detail::read_line_op read_line(std::string& out, eol style = eol::crlf,
                                 std::size_t max = 64 << 10, op_options o = {}) {
    return {s_, &out, style, max, std::move(o)};
  }

  /// Appends the payload of the next length-prefixed frame to `out` and returns its size (0 for
  /// an empty frame). A header announcing more than `format.max` fails with
  /// errc::limit_exceeded and consumes nothing; errc::eof when the stream ends inside a frame.
  /// Whatever stops it early (those, a timeout, a cancellation) leaves the header and every
  /// byte of the frame readable by the next read. On a plain socket the payload goes from the
  /// kernel straight into `out`, which grows to the announced size when the header is read.
  detail::read_frame_op read_frame(std::string& out, frame_format format = {}, op_options o = {}) {
    return {s_, &out, format, std::move(o)};
  }

  /// Writes `payload` behind its length header, as write() does (one syscall for both on a
  /// plain socket with nothing queued). errc::limit_exceeded, with nothing sent, for a payload
  /// larger than `format.max` or than the header can count (65535 for u16).
  detail::write_frame_op write_frame(std::span<const std::byte> payload, frame_format format = {},
                                     op_options o = {}) {
    return {s_, payload, format, std::move(o)};
  }
  detail::write_frame_op write_frame(std::string_view payload, frame_format format = {},
                                     op_options o = {}) {
    return write_frame(std::as_bytes(std::span(payload)), format, std::move(o));
  }

  /// Waits until at least `n` bytes are buffered and returns a view of the buffered input from
  /// its start, of at least `n` bytes (all that sit together in memory: often more). Nothing
  /// is consumed. The view stays valid until consume() or the next read-side op; meanwhile the
  /// stream reads nothing ahead. errc::eof when the stream ends with fewer than `n` bytes (they
  /// stay buffered). The input may grow past the read limit to `n` while the peek waits, so `n`
  /// is the caller's bound on memory. An `n` of 0 completes at once with whatever is buffered,
  /// possibly nothing. Bytes are moved only when the first `n` straddle two of libevent's
  /// buffer chunks (they are made contiguous).
  detail::peek_op peek(std::size_t n = 1, op_options o = {}) {
    return {s_, detail::op_kind::peek, nullptr, n, std::move(o)};
  }

  /// Drops the first `n` buffered input bytes (all of them when fewer are buffered): after a
  /// peek(), the bytes the caller has dealt with. Never waits; does nothing while a read op is
  /// pending (there is one reader at a time).
  void consume(std::size_t n) noexcept;

  /// Discards the next `n` bytes of the stream as they arrive, without a buffer of the
  /// caller's (an HTTP body nobody wants). errc::eof when the stream ends first. Discarded
  /// bytes are gone: a skip that fails or is cancelled has discarded some of them.
  detail::skip_op skip(std::size_t n, op_options o = {}) {
    return {s_, detail::op_kind::skip, nullptr, n, std::move(o)};
  }

  /// Completes once all of `data` is handed on, and never tears it. On a TCP stream with
  /// nothing queued (the normal case) the bytes go to the kernel straight from `data`, without
  /// a copy, and the write completes when the kernel has taken the last of them. Otherwise
  /// (TLS, pairs, or output still queued) they are copied into the output buffer, which waits
  /// while it holds more than the high watermark (until it drains to the low one). Errors of
  /// earlier writes (EPIPE, ECONNRESET, ...) are reported here or by drain().
  /// A write that times out, is cancelled or is closed before any byte left has sent
  /// nothing and fails; once the kernel took part of it, such an interruption queues the rest
  /// instead (as if it had never had to wait) and the write succeeds.
  detail::write_op write(std::span<const std::byte> data, op_options o = {}) {
    return {s_, detail::op_kind::write, const_cast<std::byte*>(data.data()), data.size(),
            std::move(o)};
  }
  detail::write_op write(std::string_view data, op_options o = {}) {
    return write(std::as_bytes(std::span(data)), std::move(o));
  }

  /// Writes `data` without copying it where write() would (TLS, pairs, a rate limit, or output
  /// still queued): the output buffer refers to `data` itself (evbuffer_add_reference), and
  /// the op completes once libevent no longer needs it: every byte handed to the kernel (under
  /// TLS: encrypted), or over a pair read by the other end (so do not await it in the task that
  /// would read it). It first waits at the high watermark, as write() does; where write()
  /// copies nothing anyway (TCP with nothing queued) it is write(). `data` must stay as it is
  /// until the op completes.
  /// An op that ends early once its bytes are queued (a timeout, a stop request, close(), the
  /// end of its frame, a failed socket) copies what libevent still refers to into the stream's
  /// own memory, in place, and succeeds (or reports the socket's error): nothing is torn, and
  /// `data` is free as soon as the op has returned or its frame is gone. One that ends while
  /// still waiting at the watermark fails and sends nothing, like write().
  detail::write_borrowed_op write_borrowed(std::span<const std::byte> data, op_options o = {}) {
    return {s_, detail::op_kind::write_borrowed, const_cast<std::byte*>(data.data()), data.size(),
            std::move(o)};
  }
  detail::write_borrowed_op write_borrowed(std::string_view data, op_options o = {}) {
    return write_borrowed(std::as_bytes(std::span(data)), std::move(o));
  }

  /// Sends `length` bytes of the file `fd` from `offset` on, and completes once all of them
  /// are handed on (the last to the kernel, or queued under the high watermark, as write()).
  /// On a TCP or Unix stream with nothing queued the kernel copies them from the file itself
  /// (sendfile(2): no copy through user space); under TLS, on pairs, or with a rate limit
  /// they are read (pread(2)) into the output buffer a watermark at a time, so memory stays
  /// bounded whatever `length` is. `fd` is borrowed, like a buffer: it must stay open until
  /// the op completes, is not closed, and its file offset is not moved.
  /// Errors: EBADF for an fd that is not open, std::errc::invalid_argument for one that is not
  /// a regular file (or a negative offset), errc::eof when the file ends before
  /// `offset + length` (found at once, nothing is sent; or while sending, when it shrank), a
  /// read error of the file, or the stream's write errors. A send_file that fails, times out
  /// or is cancelled part way leaves what it already sent in the stream (the peer sees a short
  /// file): close the stream then.
  detail::send_file_op send_file(int fd, off_t offset, std::size_t length, op_options o = {}) {
    return {s_, fd, offset, length, std::move(o)};
  }

  /// Completes when the output buffer is empty (everything handed to the kernel).
  detail::drain_op drain(op_options o = {}) {
    return {s_, detail::op_kind::drain, nullptr, 0, std::move(o)};
  }

  /// Half-close: flushes the output, then sends FIN. Reading goes on until the peer's eof;
  /// writes afterwards fail with errc::closed.
  detail::shutdown_op shutdown(op_options o = {}) {
    return {s_, detail::op_kind::shutdown, nullptr, 0, std::move(o)};
  }

  /// Resumes pending ops with errc::closed (from the loop). Queued output is still sent in
  /// the background, followed by FIN; unread input is drained before the socket closes, so
  /// the peer sees a clean end rather than RST. The loop owns that tail end (bounded by a
  /// linger timeout) and ends it at the latest when the loop is destroyed. A write still
  /// waiting with part of its bytes sent has the rest copied out of its buffer here, and
  /// succeeds: so that buffer, like any op's, must outlive the op.
  void close() noexcept;

  /// Idle timeouts: a read or write op fails with errc::timed_out when no byte moves in that
  /// direction for this long (it fires between `read` and twice that after the last byte:
  /// progress restarts it lazily). Zero = none. Applies to an op already parked, from now.
  /// A write the kernel already took part of is never torn: on the write timeout it queues
  /// its rest and succeeds (see write()); a stall of those queued bytes then fails the next
  /// write, drain or shutdown.
  void set_timeouts(duration read, duration write);
  /// The input buffer stops reading from the socket at `high` bytes (zero = unlimited).
  void set_read_limit(std::size_t high);
  /// write() waits while more than `high` bytes are queued, until they drain to `low`
  /// (`low` above `high` is taken as `high`; a `high` of zero means no limit).
  void set_write_watermarks(std::size_t low, std::size_t high);
  /// Limits the bytes per second each way (libevent's token buckets; see rate_limit), from
  /// now; `set_rate_limit({})` removes the limit. Ops waiting for tokens wait like any others
  /// (their timeouts, stop tokens and close() still end them) and cost no CPU meanwhile. On a
  /// plain TCP stream the limit turns off the direct reads and writes: bytes go through the
  /// input and output buffers, as they do under TLS, until the limit (and any rate_group) is
  /// gone. Nothing is lost or reordered by setting or removing it mid-stream.
  /// The TLS stream that tls_client()/tls_server() make of a limited TCP stream keeps its
  /// limit (not its rate_group: add it again). errc::closed for a closed stream;
  /// operation_not_supported for an in-process pair (libevent's pairs have no token buckets);
  /// not_enough_memory.
  result<void> set_rate_limit(const rate_limit& limit);

  std::size_t buffered_input() const noexcept;
  std::size_t buffered_output() const noexcept;
  /// The socket's address and its peer's; std::errc::not_a_socket for a stream without a
  /// socket (a pair: see make_pair), errc::closed for a closed one.
  result<endpoint> local_endpoint() const;
  result<endpoint> remote_endpoint() const;
  /// The peer's process and user over a Unix domain socket. Fails with
  /// address_family_not_supported over TCP, not_a_socket for a stream without a socket (a
  /// pair), errc::closed for a closed stream.
  result<credentials> peer_credentials() const;
  /// The stream's bufferevent. A plain TCP or Unix stream reads and writes its socket itself
  /// and makes its bufferevent only when it first needs a buffer (so that an idle connection
  /// costs none); asking for it here makes it. Null for a closed stream, or when it cannot be
  /// made (out of memory).
  bufferevent* native_handle() const noexcept;

 private:
  friend result<stream> detail::make_socket_stream(loop&, int);
  friend bufferevent* detail::release_bufferevent(stream&, loop*&,
                                                  detail::stream_settings&) noexcept;
  friend bufferevent* detail::bufferevent_if_any(const stream&) noexcept;
  friend stream detail::attach(loop&, bufferevent*, const detail::transport&,
                               const detail::tls_hooks*);
  friend class rate_group;
  detail::stream_state* s_ = nullptr;
};

}  // namespace evco
