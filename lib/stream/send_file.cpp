// send_file: a file's bytes into the stream. Straight from the file to the socket with
// sendfile(2) where the stream writes directly (a plain socket with nothing queued), and read
// with pread(2) into the output buffer, a watermark at a time, where bytes go through it (TLS,
// pairs, rate limits).
//
// Not libevent's evbuffer_add_file()/evbuffer_file_segment, whose 2.1.12 code does not fit:
// its sendfile path (buffer.c, evbuffer_write_sendfile) returns 0 both for EAGAIN and for a
// file that ended early, which bufferevent_writecb takes for BEV_EVENT_EOF and so kills the
// write side with a misleading error; without sendfile it materialises the whole segment in
// memory at once (mm_malloc of `length`, or an mmap that a truncated file turns into SIGBUS);
// evbuffer_add_file() closes the fd when done (EVBUF_FS_CLOSE_ON_FREE); and the error path of
// evbuffer_add_file_segment() drops a reference it never took. Doing the two syscalls here
// keeps the fd borrowed only while the op runs, memory bounded by the watermarks, and a
// shrunk file an error value of this op.

#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.hpp"

namespace evco::detail {

namespace {

send_file_op& as_file(stream_op& op) noexcept {
  return static_cast<send_file_op&>(op);
}

bool write_side_ended(stream_state& s, stream_op& op) noexcept {
  if (s.side[writing].error) {
    op.ec = s.side[writing].error;
  } else if (s.write_shut) {
    op.ec = errc::closed;
  } else {
    return false;
  }
  return true;
}

// Before the first byte: the file must be a regular one that holds the whole range.
bool check_file(send_file_op& op) noexcept {
  struct stat st {};
  if (op.offset < 0) {
    op.ec = std::make_error_code(std::errc::invalid_argument);
  } else if (::fstat(op.fd, &st) != 0) {
    op.ec = system_error(errno);
  } else if (!S_ISREG(st.st_mode)) {
    op.ec = std::make_error_code(std::errc::invalid_argument);
  } else if (static_cast<std::uintmax_t>(st.st_size) < static_cast<std::uintmax_t>(op.offset) ||
             static_cast<std::uintmax_t>(st.st_size - op.offset) < op.size) {
    op.ec = errc::eof;
  } else {
    return true;
  }
  return false;
}

off_t position(const send_file_op& op) noexcept {
  return op.offset + static_cast<off_t>(op.done);
}

// The socket takes what it can straight from the file; false once it is full. A failed
// socket fails the write side for good; a failed file (or one that shrank: sendfile returns
// 0) only this op.
bool send_direct(stream_state& s, send_file_op& op) noexcept {
  while (op.done < op.size) {
    off_t at = position(op);
    // Linux sends at most 0x7ffff000 bytes per call.
    const std::size_t n = std::min<std::size_t>(op.size - op.done, 1 << 30);
    const ssize_t r = ::sendfile(s.fd, op.fd, &at, n);
    if (r > 0) {
      op.done += static_cast<std::size_t>(r);
      continue;
    }
    if (r == 0) {
      op.ec = errc::eof;
      return true;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return false;
    const int err = errno;
    if (err == EPIPE || err == ECONNRESET || err == ENOTCONN) {
      s.side[writing].error = system_error(err);
    }
    op.ec = system_error(err);
    return true;
  }
  return true;
}

// Reads the file into the output buffer until it holds the high watermark (1 MiB without
// one); false when there is more to come. Under a TLS rate limit in small chains (see
// queue_output).
bool queue_file(stream_state& s, send_file_op& op) noexcept {
  if (!buffers(s)) {
    op.ec = std::make_error_code(std::errc::not_enough_memory);
    return true;
  }
  evbuffer* out = output(s);
  const std::size_t high = s.write_high != 0 ? s.write_high : std::size_t{1} << 20;
  const std::size_t piece = s.rate && s.tls ? 2048 : 64 << 10;
  while (op.done < op.size && evbuffer_get_length(out) < high) {
    evbuffer_iovec vec;
    const std::size_t n = std::min(op.size - op.done, piece);
    if (evbuffer_reserve_space(out, static_cast<ev_ssize_t>(n), &vec, 1) != 1) {
      op.ec = std::make_error_code(std::errc::not_enough_memory);
      return true;
    }
    const ssize_t r = ::pread(op.fd, vec.iov_base, std::min(n, vec.iov_len), position(op));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      op.ec = r == 0 ? make_error_code(errc::eof) : system_error(errno);
      return true;
    }
    vec.iov_len = static_cast<std::size_t>(r);
    evbuffer_commit_space(out, &vec, 1);
    op.done += static_cast<std::size_t>(r);
  }
  return op.done == op.size;
}

bool perform_send_file(stream_state& s, stream_op& op) noexcept {
  send_file_op& f = as_file(op);
  if (write_side_ended(s, op)) return true;
  if (f.done == 0 && !check_file(f)) return true;
  if (!s.io->direct) return queue_file(s, f);
  // Direct: the queued output goes first (the parked op waits for it to empty).
  if (output_length(s) != 0) return false;
  if (send_direct(s, f)) return true;
  if (op.state != op_state::idle && !wait_writable(s)) {
    op.ec = std::make_error_code(std::errc::not_enough_memory);
    return true;
  }
  return false;
}

// Direct: waits for the socket to be writable, or for the queued output to empty first.
void send_file_parked(stream_state& s, stream_op& op) {
  if (!s.io->direct || op.state == op_state::yielding) return;
  if (output_length(s) != 0) {
    bufferevent_setwatermark(s.bev, EV_WRITE, 0, 0);
  } else if (!wait_writable(s)) {
    throw std::bad_alloc();
  }
}

void send_file_unparked(stream_state& s, stream_op&) noexcept {
  if (s.bev) bufferevent_setwatermark(s.bev, EV_WRITE, s.write_low, 0);
}

}  // namespace

const op_type send_file_type{{"send_file", describe_stream_op},
                             writing,
                             perform_send_file,
                             fail,
                             send_file_parked,
                             send_file_unparked};

}  // namespace evco::detail
