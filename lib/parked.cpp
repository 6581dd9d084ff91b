// The registry of parked ops: loop::parked() and loop::dump().

#include "parked.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <string>
#include <version>
#if __cpp_lib_source_location >= 201907L
#include <source_location>
#endif

namespace evco::detail {

namespace {

result<endpoint> socket_name(int fd, bool peer) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  auto* sa = reinterpret_cast<sockaddr*>(&ss);
  if ((peer ? getpeername(fd, sa, &len) : getsockname(fd, sa, &len)) != 0) {
    return std::error_code(errno, std::system_category());
  }
  return endpoint::from_sockaddr(sa, len);
}

// Where the bracket that s[close] (a ')' or '>') closes opens, or npos.
std::size_t opening(std::string_view s, std::size_t close) {
  int depth = 0;
  for (std::size_t i = close + 1; i-- > 0;) {
    const char c = s[i];
    if (c == ')' || c == '>') {
      ++depth;
    } else if (c == '(' || c == '<') {
      if (--depth == 0) return i;
    }
  }
  return std::string_view::npos;
}

void erase_all(std::string& s, std::string_view what) {
  for (std::size_t at; (at = s.find(what)) != std::string::npos;)
    s.erase(at, what.size());
}

std::string seconds(duration d) {
  const double s = std::chrono::duration<double>(d).count();
  char text[32];
  if (s < 1 && s > -1) {
    std::snprintf(text, sizeof text, "%.1f ms", s * 1e3);
  } else {
    std::snprintf(text, sizeof text, "%.2f s", s);
  }
  return text;
}

std::string_view base_name(std::string_view path) {
  const auto slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

// Data flows towards the local end of a read: "local <- remote".
std::string_view arrow(std::string_view what) {
  if (what.starts_with("read") || what.starts_with("receive")) return " <- ";
  if (what == "handshake") return " <-> ";
  return " -> ";
}

// Where `p` is suspended, from either encoding of task_promise_base::await_site().
parked_op_info::frame frame_of(const task_promise_base& p) {
  parked_op_info::frame f;
  const char* function = "";
  if (p.await_line() != 0) {
    f.file = static_cast<const char*>(p.await_site());
    function = p.await_function();
    f.line = p.await_line();
  } else if (p.await_site()) {
#if __cpp_lib_source_location >= 201907L
    const auto where = std::bit_cast<std::source_location>(p.await_site());
    f.file = where.file_name();
    function = where.function_name();
    f.line = where.line();
#else
    // What __builtin_source_location() points to: std::source_location::__impl, whose layout
    // the builtin prescribes (g++ 11+, clang 15+).
    struct impl {
      const char* file;
      const char* function;
      unsigned line;
      unsigned column;
    };
    const auto* where = static_cast<const impl*>(p.await_site());
    f.file = where->file;
    function = where->function;
    f.line = where->line;
#endif
  }
  f.function = function_name(function ? function : "");
  return f;
}

std::string_view origin_name(parked_op_info::origin o) {
  switch (o) {
    case parked_op_info::origin::run:
      return "(loop::run)";
    case parked_op_info::origin::spawned:
      return "(spawned)";
    case parked_op_info::origin::other:
      break;
  }
  return "(not an evco::task)";
}

}  // namespace

// g++ 12.2 names a coroutine's body after its actor function, whose one parameter is the
// frame, named after the coroutine's own signature: "void ns::f(ns::f(int)::_ZN2ns1fEi.Frame*)".
// That signature is the readable name; a plain pretty name ("R ns::f(int) const") loses its
// return type; clang 14's __builtin_FUNCTION ("f") stays as it is. Anonymous namespaces go.
std::string function_name(std::string_view raw) {
  std::string_view f = raw;
  if (const auto z = f.rfind("::_Z"); z != std::string_view::npos && f.ends_with(".Frame*)")) {
    int depth = 0;
    for (std::size_t i = z; i-- > 0;) {
      const char c = f[i];
      if (c == ')' || c == '>') {
        ++depth;
      } else if ((c == '(' || c == '<') && depth-- == 0) {
        f = f.substr(i + 1, z - i - 1);
        break;
      }
    }
  } else if (const auto close = f.rfind(')'); close != std::string_view::npos) {
    if (const auto with = f.find(" [with "); with != std::string_view::npos && with > close)
      f = f.substr(0, with);
    const std::size_t open = opening(f, close);
    if (open != std::string_view::npos) {
      // The last space outside brackets before the parameters ends the return type.
      int depth = 0;
      for (std::size_t i = open; i-- > 0;) {
        const char c = f[i];
        if (c == ')' || c == '>') {
          ++depth;
        } else if (c == '(' || c == '<') {
          --depth;
        } else if (c == ' ' && depth == 0) {
          f = f.substr(i + 1);
          break;
        }
      }
    }
  }
  std::string name(f);
  erase_all(name, "{anonymous}::");
  erase_all(name, "(anonymous namespace)::");
  return name;
}

void describe_socket(int fd, parked_op_info& out) {
  if (fd < 0) return;
  if (auto ep = socket_name(fd, false)) out.local = ep.value();
  if (auto ep = socket_name(fd, true)) out.remote = ep.value();
}

void describe_timer(const timer_node& t, parked_op_info& out) {
  if (t.armed() && t.deadline != clock::time_point::max())
    out.time_left = t.deadline - clock::now();
}

std::vector<parked_op_info> describe_parked(const parked_op& head) {
  std::vector<parked_op_info> ops;
  const auto now = coarse_now();
  for (const parked_op* op = head.next_parked; op != &head; op = op->next_parked) {
    parked_op_info& info = ops.emplace_back();
    info.what = op->type->name;
    info.waited = std::max(now - op->since, duration::zero());
    op->type->describe(*op, info);
    for (const task_promise_base* p = op->awaiting; p; p = p->parent()) {
      if (!p->internal()) info.chain.push_back(frame_of(*p));
      info.started_by = p->origin();
    }
  }
  return ops;
}

void print_parked(const std::vector<parked_op_info>& ops, std::FILE* out) {
  std::fprintf(out, "evco: %zu parked %s\n", ops.size(), ops.size() == 1 ? "op" : "ops");
  for (const parked_op_info& op : ops) {
    std::string line(op.what);
    if (op.local) line += ' ' + op.local->to_string();
    if (op.remote) line += (op.local ? std::string(arrow(op.what)) : " ") + op.remote->to_string();
    if (!op.host.empty()) line += ' ' + op.host;
    line += "  waited " + seconds(op.waited);
    line += op.time_left ? "  " + seconds(*op.time_left) + " left" : "  no deadline";
    line += "  in ";
    for (const parked_op_info::frame& f : op.chain) {
      line += f.function + ' ';
      line += base_name(f.file);
      line += ':' + std::to_string(f.line) + " <- ";
    }
    line += origin_name(op.started_by);
    std::fprintf(out, "%s\n", line.c_str());
  }
  std::fflush(out);
}

}  // namespace evco::detail
