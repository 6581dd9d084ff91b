#include "unix_socket.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "libevent.hpp"

namespace evco::detail {

namespace {

// A socket file at `ep` that refuses connections has no listener: its server died without
// removing it. A live listener accepts (or, with its backlog full, says EAGAIN).
bool is_stale(const endpoint& ep) noexcept {
  struct stat st {};
  if (::lstat(ep.path().c_str(), &st) != 0) return errno == ENOENT;  // gone meanwhile
  if (!S_ISSOCK(st.st_mode)) return false;
  const int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (probe < 0) return false;
  const bool refused = ::connect(probe, ep.data(), ep.size()) != 0 && errno == ECONNREFUSED;
  ::close(probe);
  return refused;
}

std::error_code record(const endpoint& ep, unix_socket_file& made) {
  const std::string path = ep.path();
  if (path.empty() || path.front() == '@') return {};  // abstract: no file
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return system_error(errno);
  made = {path, st.st_dev, st.st_ino};
  return {};
}

}  // namespace

std::error_code bind_unix(int fd, const endpoint& ep, bool remove_stale, unix_socket_file& made) {
  if (::bind(fd, ep.data(), ep.size()) == 0) return record(ep, made);
  const int e = errno;
  const bool abstract = ep.path().front() == '@';
  if (e != EADDRINUSE || !remove_stale || abstract || !is_stale(ep)) return system_error(e);
  if (::unlink(ep.path().c_str()) != 0 && errno != ENOENT) return system_error(errno);
  if (::bind(fd, ep.data(), ep.size()) != 0) return system_error(errno);
  return record(ep, made);
}

void remove_socket_file(const unix_socket_file& f) noexcept {
  if (f.path.empty()) return;
  struct stat st {};
  if (::lstat(f.path.c_str(), &st) == 0 && st.st_dev == f.dev && st.st_ino == f.ino) {
    ::unlink(f.path.c_str());
  }
}

result<credentials> peer_credentials_of(int fd) {
  if (fd < 0) return std::make_error_code(std::errc::not_a_socket);
  int domain = 0;
  socklen_t len = sizeof domain;
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0) return system_error(errno);
  if (domain != AF_UNIX) return std::make_error_code(std::errc::address_family_not_supported);
  ucred cred{};
  len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return system_error(errno);
  return credentials{cred.pid, cred.uid, cred.gid};
}

}  // namespace evco::detail
