// Fuzz target: examples/http/request_parser.hpp, the HTTP example's request-head parser. The
// input is parsed whole, and again as it would arrive over a connection: growing prefixes cut
// at the chunk sizes the input's first bytes give. Both must agree (the first outcome other
// than `incomplete` is the whole input's, with the same head), and every view the parser hands
// back must lie inside the head it reports.
//
// Input: [chunk count] [chunk sizes...] [request bytes...]

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "http/request_parser.hpp"

namespace {

[[noreturn]] void violation(const char* what) {
  std::fprintf(stderr, "http_request fuzz: invariant violated: %s\n", what);
  std::abort();
}

bool inside(std::string_view part, std::string_view whole) {
  return part.empty() ||
         (part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size());
}

void check_views(const http::request& req, std::string_view head) {
  if (!inside(req.method, head) || !inside(req.target, head)) violation("a view outside the head");
  if (req.header_count > http::request::max_headers) violation("too many headers");
  for (std::size_t i = 0; i < req.header_count; ++i) {
    if (!inside(req.headers[i].name, head) || !inside(req.headers[i].value, head)) {
      violation("a header outside the head");
    }
  }
}

bool same(const http::request& a, const http::request& b) {
  if (a.method != b.method || a.target != b.target || a.version_minor != b.version_minor ||
      a.header_count != b.header_count || a.content_length != b.content_length ||
      a.keep_alive != b.keep_alive || a.expect_continue != b.expect_continue ||
      a.head_size != b.head_size) {
    return false;
  }
  for (std::size_t i = 0; i < a.header_count; ++i) {
    if (a.headers[i].name != b.headers[i].name || a.headers[i].value != b.headers[i].value) {
      return false;
    }
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  std::vector<std::size_t> chunks(data[0] % 8 + 1);
  std::size_t at = 1;
  for (std::size_t& c : chunks)
    c = at < size ? data[at++] % 64 + 1 : 1;
  const std::string_view bytes(reinterpret_cast<const char*>(data + at), size - at);

  const http::limits limits{.max_head = 1024, .max_body = 1 << 20};
  http::request_parser whole_parser(limits);
  http::request whole;
  const http::outcome expected = whole_parser.parse(bytes, whole);
  if (expected == http::outcome::complete) {
    if (whole.head_size == 0 || whole.head_size > bytes.size()) violation("head_size out of range");
    if (whole.head_size > limits.max_head) violation("a complete head over max_head");
    check_views(whole, bytes.substr(0, whole.head_size));
  }

  http::request_parser parser(limits);
  http::request req;
  std::size_t have = 0;
  for (std::size_t i = 0;; ++i) {
    have = std::min(bytes.size(), have + chunks[i % chunks.size()]);
    const http::outcome o = parser.parse(bytes.substr(0, have), req);
    if (o == http::outcome::incomplete) {
      if (have == bytes.size()) {
        if (expected != http::outcome::incomplete) violation("incomplete on the whole input");
        break;
      }
      continue;
    }
    if (o != expected) violation("prefixes and the whole input disagree");
    if (o == http::outcome::complete && !same(req, whole)) violation("different heads");
    break;
  }
  return 0;
}
