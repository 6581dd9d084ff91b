#pragma once
// Private: what a Unix domain socket needs beyond what TCP does: the socket file a listener
// makes (stale ones, and removing its own), and the peer's credentials.

#include <sys/types.h>

#include <string>
#include <system_error>

#include "evco/endpoint.hpp"
#include "evco/stream.hpp"

namespace evco::detail {

// The socket file a listener made, removed when the listener closes if it is still that file
// (another server may have replaced it meanwhile).
struct unix_socket_file {
  std::string path;  // empty: nothing to remove (an abstract name, or not a Unix listener)
  dev_t dev = 0;
  ino_t ino = 0;
};

// Binds `fd` to the Unix endpoint `ep` and records in `made` the file it makes. When the path
// is taken and `remove_stale` is set, a socket file that nobody listens on is removed first
// (never a file of another kind, nor the socket of a live listener).
std::error_code bind_unix(int fd, const endpoint& ep, bool remove_stale, unix_socket_file& made);
void remove_socket_file(const unix_socket_file& f) noexcept;

// SO_PEERCRED of a connected Unix socket.
result<credentials> peer_credentials_of(int fd);

}  // namespace evco::detail
