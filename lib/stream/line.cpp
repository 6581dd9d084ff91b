// read_line: a line of text in one of libevent's end-of-line styles, searched for in the input
// buffer (which a plain socket fills by one chunk when it may hold more), past what earlier
// tries searched already.

#include "internal.hpp"

namespace evco::detail {

namespace {

evbuffer_eol_style libevent_style(eol e) noexcept {
  switch (e) {
    case eol::any:
      return EVBUFFER_EOL_ANY;
    case eol::crlf:
      return EVBUFFER_EOL_CRLF;
    case eol::crlf_strict:
      return EVBUFFER_EOL_CRLF_STRICT;
    case eol::lf:
      return EVBUFFER_EOL_LF;
    case eol::nul:
      break;
  }
  return EVBUFFER_EOL_NUL;
}

bool is_cr_or_lf(unsigned char c) noexcept {
  return c == '\r' || c == '\n';
}

// How many CRs and LFs the input starts with.
std::size_t leading_terminator(evbuffer* in) noexcept {
  std::size_t n = 0;
  for (;;) {
    unsigned char next[256];
    evbuffer_ptr pos;
    if (evbuffer_ptr_set(in, &pos, n, EVBUFFER_PTR_SET) != 0) break;
    const ev_ssize_t got = evbuffer_copyout_from(in, &pos, next, sizeof next);
    if (got <= 0) break;
    std::size_t i = 0;
    while (i < static_cast<std::size_t>(got) && is_cr_or_lf(next[i]))
      ++i;
    n += i;
    if (i < static_cast<std::size_t>(got)) break;
  }
  return n;
}

// eol::any: CRs and LFs at the start of the input are the rest of the last line's terminator
// (its CR came in one packet, its LF in the next). They are dropped, however many there are:
// they are no line's bytes, and kept they could hold the input at its limit. Draining may let
// more in at once (a pair's partner refills the input below its limit): drop until none lead.
void drop_leading_terminator(evbuffer* in, std::size_t& scanned) noexcept {
  while (std::size_t n = leading_terminator(in)) {
    evbuffer_drain(in, n);
    scanned = scanned > n ? scanned - n : 0;
  }
}

// With CR LF terminators, a CR at the end of the input may be the start of one: a later
// search starts there again, and the CR does not count towards the line's length yet.
bool ends_in_cr(evbuffer* in, std::size_t len, eol style) noexcept {
  if (style != eol::crlf && style != eol::crlf_strict) return false;
  if (len == 0) return false;
  char last = 0;
  evbuffer_ptr pos;
  evbuffer_ptr_set(in, &pos, len - 1, EVBUFFER_PTR_SET);
  return evbuffer_copyout_from(in, &pos, &last, 1) == 1 && last == '\r';
}

// The line is the first `n` bytes, then `eol_len` bytes of terminator.
bool take_line(evbuffer* in, read_line_op& op, std::size_t n, std::size_t eol_len) noexcept {
  if (n > op.max) {
    op.ec = errc::limit_exceeded;
    return true;
  }
  const std::size_t old = op.line->size();
  try {
    op.line->resize(old + n);
  } catch (const std::exception&) {
    op.ec = std::make_error_code(std::errc::not_enough_memory);
    return true;
  }
  evbuffer_remove(in, op.line->data() + old, n);
  evbuffer_drain(in, eol_len);
  op.done = n;
  return true;
}

// True once the op is done (or out of memory), or the limit reached.
bool find_line(stream_state& s, read_line_op& op) noexcept {
  evbuffer* in = input(s);
  if (op.style == eol::any) drop_leading_terminator(in, op.scanned);
  const std::size_t len = evbuffer_get_length(in);
  const bool partial_cr = ends_in_cr(in, len, op.style);
  if (len > op.scanned) {
    evbuffer_ptr from;
    evbuffer_ptr_set(in, &from, op.scanned, EVBUFFER_PTR_SET);
    std::size_t eol_len = 0;
    const evbuffer_ptr found = evbuffer_search_eol(in, &from, &eol_len, libevent_style(op.style));
    if (found.pos >= 0) return take_line(in, op, static_cast<std::size_t>(found.pos), eol_len);
    op.scanned = len - (partial_cr ? 1 : 0);
  }
  if (len - (partial_cr ? 1 : 0) > op.max) {
    op.ec = errc::limit_exceeded;
    return true;
  }
  return false;
}

bool perform_read_line(stream_state& s, stream_op& o) noexcept {
  auto& op = static_cast<read_line_op&>(o);
  if (!buffers(s)) {  // lines are searched for in the input buffer
    op.ec = std::make_error_code(std::errc::not_enough_memory);
    return true;
  }
  if (find_line(s, op)) return true;
  if (socket_may_hold_more(s, input_length(s)) && fill_input(s) > 0 && find_line(s, op)) {
    return true;
  }
  return read_ended(s, op);
}

}  // namespace

const op_type read_line_type{
    {"read_line", describe_stream_op}, reading, perform_read_line, fail, grow_input, restore_input};

}  // namespace evco::detail
