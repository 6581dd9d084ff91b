#pragma once
// An HTTP/1.1 request-head parser over bytes (RFC 9112), for examples/http_server.cpp and for a
// fuzz target: no I/O, no allocation, no evco. It parses in place: every string_view it hands
// back points into the caller's buffer, so the bytes of a request are never copied by it.
//
//   http::request_parser parser;            // one per connection, reset() between requests
//   http::request req;
//   switch (parser.parse(bytes, req)) {      // bytes: from the start of the request
//     case http::outcome::incomplete: ...    // read more, call again with the longer view
//     case http::outcome::complete: ...      // the head is req.head_size bytes; the body follows
//     default: ...                           // an error: its status code, then close
//   }

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace http {

/// What parse() found. The errors are the status codes to answer with (and then close).
enum class outcome : std::uint16_t {
  incomplete = 0,  ///< no complete head yet: call again with more bytes
  complete = 1,    ///< a head, of request::head_size bytes
  bad_request = 400,
  payload_too_large = 413,      ///< Content-Length above limits::max_body
  header_too_large = 431,       ///< the head is longer than limits::max_head, or too many headers
  not_implemented = 501,        ///< a Transfer-Encoding (chunked bodies are not supported)
  version_not_supported = 505,  ///< HTTP/x.y other than 1.0 and 1.1
};

constexpr bool is_error(outcome o) noexcept {
  return o != outcome::incomplete && o != outcome::complete;
}

struct header {
  std::string_view name;   ///< as sent (compare with iequals)
  std::string_view value;  ///< without the whitespace around it
};

struct limits {
  std::size_t max_head = 8192;  ///< request line + headers + the blank line, in bytes
  std::uint64_t max_body = 1 << 20;
};

/// The parsed head: views into the bytes given to parse(), valid while they are.
struct request {
  static constexpr std::size_t max_headers = 64;  // more: header_too_large

  std::string_view method;
  std::string_view target;
  unsigned version_minor = 1;  ///< HTTP/1.0 or HTTP/1.1
  std::array<header, max_headers> headers;
  std::size_t header_count = 0;
  std::uint64_t content_length = 0;  ///< 0 without a Content-Length
  bool keep_alive = true;  ///< HTTP/1.1 unless "Connection: close"; 1.0 only with "keep-alive"
  bool expect_continue = false;  ///< "Expect: 100-continue"
  std::size_t head_size = 0;  ///< bytes of the head, the blank line (and leading empty lines) too
};

/// ASCII case-insensitive equality (header names and Connection tokens).
constexpr bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

namespace detail {

// tchar of RFC 9110 section 5.6.2: what method names and header names are made of.
constexpr bool is_tchar(unsigned char c) noexcept {
  if (c >= '0' && c <= '9') return true;
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}

// Field values: visible ASCII, obs-text, space and tab; never a control (a bare CR, a NUL).
constexpr bool is_field_char(unsigned char c) noexcept {
  return c == '\t' || (c >= 0x20 && c != 0x7f);
}

constexpr bool is_ows(char c) noexcept {
  return c == ' ' || c == '\t';
}

constexpr bool is_token(std::string_view s) noexcept {
  if (s.empty()) return false;
  for (const char c : s) {
    if (!is_tchar(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

constexpr std::string_view trim_ows(std::string_view s) noexcept {
  while (!s.empty() && is_ows(s.front()))
    s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back()))
    s.remove_suffix(1);
  return s;
}

// Takes one line off the front of `rest` (it ends with LF, or CRLF: RFC 9112 section 2.2 lets
// a recipient accept a bare LF), without its terminator. The head's end is known to be in
// `rest`, so there is always a LF to find.
inline std::string_view take_line(std::string_view& rest) noexcept {
  const std::size_t lf = rest.find('\n');
  std::string_view line = rest.substr(0, lf);
  rest.remove_prefix(lf + 1);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

// "HTTP/1.1": 1.1 and 1.0 are served, another HTTP/d.d is a version we do not support, and
// anything else is malformed.
inline outcome parse_version(std::string_view v, unsigned& minor) noexcept {
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  if (v.size() != 8 || v.substr(0, 5) != "HTTP/" || !digit(v[5]) || v[6] != '.' || !digit(v[7]))
    return outcome::bad_request;
  if (v[5] != '1' || (v[7] != '0' && v[7] != '1')) return outcome::version_not_supported;
  minor = static_cast<unsigned>(v[7] - '0');
  return outcome::complete;
}

// method SP request-target SP HTTP-version, single spaces (RFC 9112 section 3).
inline outcome parse_request_line(std::string_view line, request& out) noexcept {
  const std::size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos) return outcome::bad_request;
  out.method = line.substr(0, sp1);
  line.remove_prefix(sp1 + 1);
  const std::size_t sp2 = line.find(' ');
  if (sp2 == std::string_view::npos) return outcome::bad_request;
  out.target = line.substr(0, sp2);
  if (!is_token(out.method) || out.target.empty()) return outcome::bad_request;
  for (const char c : out.target) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f) return outcome::bad_request;
  }
  return parse_version(line.substr(sp2 + 1), out.version_minor);
}

// 1*DIGIT, without sign, space or overflow.
inline bool parse_length(std::string_view v, std::uint64_t& out) noexcept {
  if (v.empty()) return false;
  std::uint64_t n = 0;
  for (const char c : v) {
    if (c < '0' || c > '9') return false;
    const auto d = static_cast<std::uint64_t>(c - '0');
    if (n > (UINT64_MAX - d) / 10) return false;
    n = n * 10 + d;
  }
  out = n;
  return true;
}

// Connection: a comma-separated list of tokens, of which "close" and "keep-alive" matter.
inline void parse_connection(std::string_view v, bool& close, bool& keep_alive) noexcept {
  while (!v.empty()) {
    const std::size_t comma = v.find(',');
    const std::string_view token = trim_ows(v.substr(0, comma));
    if (iequals(token, "close")) close = true;
    if (iequals(token, "keep-alive")) keep_alive = true;
    if (comma == std::string_view::npos) break;
    v.remove_prefix(comma + 1);
  }
}

// What the headers say about the body and the connection, gathered as they are parsed.
struct framing {
  bool has_length = false;
  bool has_transfer_encoding = false;
  bool close = false;
  bool keep_alive = false;
  std::size_t hosts = 0;
};

inline outcome note_header(const header& h, request& out, framing& f) noexcept {
  if (iequals(h.name, "content-length")) {
    std::uint64_t n = 0;
    if (!parse_length(h.value, n)) return outcome::bad_request;
    // Repeats are allowed only when they agree (RFC 9112 section 6.3): anything else is the
    // stuff of request smuggling.
    if (f.has_length && n != out.content_length) return outcome::bad_request;
    f.has_length = true;
    out.content_length = n;
  } else if (iequals(h.name, "transfer-encoding")) {
    f.has_transfer_encoding = true;
  } else if (iequals(h.name, "connection")) {
    parse_connection(h.value, f.close, f.keep_alive);
  } else if (iequals(h.name, "host")) {
    ++f.hosts;
  } else if (iequals(h.name, "expect")) {
    if (!iequals(h.value, "100-continue")) return outcome::bad_request;  // RFC 9110: 417 MAY
    out.expect_continue = true;
  }
  return outcome::complete;
}

// name ":" OWS value OWS; no whitespace before the colon, no obs-fold (RFC 9112 section 5).
inline outcome parse_header_line(std::string_view line, header& h) noexcept {
  const std::size_t colon = line.find(':');
  if (colon == std::string_view::npos) return outcome::bad_request;
  h.name = line.substr(0, colon);
  if (!is_token(h.name)) return outcome::bad_request;
  h.value = trim_ows(line.substr(colon + 1));
  for (const char c : h.value) {
    if (!is_field_char(static_cast<unsigned char>(c))) return outcome::bad_request;
  }
  return outcome::complete;
}

// The head's lines, its end known to be within `head`.
inline outcome parse_head(std::string_view head, request& out, const limits& lim) noexcept {
  std::string_view rest = head;
  if (const outcome o = parse_request_line(take_line(rest), out); o != outcome::complete) return o;
  framing f;
  out.header_count = 0;
  out.content_length = 0;
  out.expect_continue = false;
  for (std::string_view line = take_line(rest); !line.empty(); line = take_line(rest)) {
    if (out.header_count == request::max_headers) return outcome::header_too_large;
    header& h = out.headers[out.header_count];
    if (const outcome o = parse_header_line(line, h); o != outcome::complete) return o;
    ++out.header_count;
    if (const outcome o = note_header(h, out, f); o != outcome::complete) return o;
  }
  // HTTP/1.1 requires exactly one Host (RFC 9112 section 3.2).
  if (f.hosts > 1 || (out.version_minor == 1 && f.hosts == 0)) return outcome::bad_request;
  if (f.has_transfer_encoding) return outcome::not_implemented;
  if (out.content_length > lim.max_body) return outcome::payload_too_large;
  out.keep_alive = out.version_minor == 1 ? !f.close : f.keep_alive && !f.close;
  return outcome::complete;
}

}  // namespace detail

/// Finds and parses one request head at the start of a buffer that grows between calls.
/// It remembers how far it has looked for the end of the head, so a head that arrives a byte
/// at a time costs linear time; reset() before the next request (whose bytes then start where
/// this head and its body end).
class request_parser {
 public:
  explicit request_parser(limits l = {}) noexcept : limits_(l) {}

  /// `bytes` start at the request's first byte (the same start each call; they may have grown).
  /// On outcome::complete `out` holds the head, of out.head_size bytes; on an error it holds
  /// whatever had been parsed.
  outcome parse(std::string_view bytes, request& out) noexcept {
    // Empty lines before a request are ignored (RFC 9112 section 2.2).
    while (start_ < bytes.size() && start_ < limits_.max_head &&
           (bytes[start_] == '\n' ||
            (bytes[start_] == '\r' && start_ + 1 < bytes.size() && bytes[start_ + 1] == '\n'))) {
      start_ += bytes[start_] == '\n' ? 1 : 2;
      scanned_ = line_start_ = start_;
    }
    // Line by line: the head ends at the first empty one.
    const std::size_t window = bytes.size() < limits_.max_head ? bytes.size() : limits_.max_head;
    for (;;) {
      const void* lf = scanned_ < window
                           ? std::memchr(bytes.data() + scanned_, '\n', window - scanned_)
                           : nullptr;
      if (lf == nullptr) {
        scanned_ = window;
        return window == limits_.max_head ? outcome::header_too_large : outcome::incomplete;
      }
      const auto at = static_cast<std::size_t>(static_cast<const char*>(lf) - bytes.data());
      const std::size_t line_start = line_start_;
      line_start_ = scanned_ = at + 1;
      const std::size_t length = at - line_start;
      if (line_start > start_ && (length == 0 || (length == 1 && bytes[line_start] == '\r'))) {
        out.head_size = at + 1;
        return detail::parse_head(bytes.substr(start_, at + 1 - start_), out, limits_);
      }
    }
  }

  /// Ready for the next request.
  void reset() noexcept { start_ = scanned_ = line_start_ = 0; }

 private:
  limits limits_;
  std::size_t start_ = 0;       // past the empty lines before the request line
  std::size_t scanned_ = 0;     // searched for LF up to here
  std::size_t line_start_ = 0;  // where the line being searched began
};

}  // namespace http
