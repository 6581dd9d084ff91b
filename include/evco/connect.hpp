#pragma once
// connect: open a stream to an endpoint (TCP or Unix), or to a host name (resolve + Happy
// Eyeballs).

#include <chrono>
#include <cstdint>
#include <stop_token>
#include <string>
#include <type_traits>
#include <vector>

#include "evco/endpoint.hpp"
#include "evco/error.hpp"
#include "evco/stream.hpp"
#include "evco/task.hpp"
#include "evco/timer.hpp"

namespace evco {

class loop;
struct connect_report;
class tls_context;

struct connect_options {
  duration timeout{};    ///< TCP connect budget (errc::connect_timed_out); zero = the kernel's
  bool no_delay = true;  ///< TCP_NODELAY
  // Hostname connect only:
  duration resolve_timeout{};  ///< DNS budget (dns_errc::timed_out); zero = the resolver's
  duration total_timeout{};    ///< deadline for resolve and every attempt; zero = none
  /// RFC 8305 "Connection Attempt Delay": the next address is tried when the previous attempt
  /// has not connected after this long (or at once when it fails).
  duration happy_eyeballs_delay = std::chrono::milliseconds(250);
  /// RFC 8305 "Resolution Delay": AAAA and A are looked up apart; when the A answer comes
  /// first, connecting waits this long for the AAAA one before it starts over IPv4 (at most
  /// half of what is left of total_timeout, so that the address in hand is still tried).
  duration resolution_delay = std::chrono::milliseconds(50);
  /// When set, filled in with what happened (borrowed until the connect completes).
  connect_report* report = nullptr;
  /// When set, the connected stream does a TLS handshake (tls_client) with `host` as the
  /// server name, within handshake_timeout (errc::handshake_timed_out). Borrowed until the
  /// connect completes.
  const tls_context* tls = nullptr;
  duration handshake_timeout{};
};
// Keep it so: see op_options on g++ 12 and aggregate temporaries in co_await expressions.
static_assert(std::is_trivially_destructible_v<connect_options>);

/// Connects to `ep`: TCP, or a Unix domain socket (endpoint::unix_path), which connects at once
/// or fails. Errors: the connect errno (connection_refused, network_unreachable; for a Unix
/// path no_such_file_or_directory, permission_denied, and resource_unavailable_try_again
/// when the listener's backlog is full), errc::connect_timed_out, errc::cancelled (when
/// `stop` is requested first).
task<result<stream>> connect(loop& lp, endpoint ep, connect_options o = {},
                             std::stop_token stop = {});

enum class connect_phase { none, resolve, connect, handshake };

/// What a hostname connect did: which phase failed, what each lookup and each address did.
struct connect_report {
  struct attempt {
    endpoint address;
    std::error_code error;  ///< empty for the attempt that connected
  };
  /// One of the two lookups (AAAA and A are asked apart).
  struct lookup {
    enum class state { pending, answered, failed };
    int family = 0;                  ///< AF_INET6 (AAAA) or AF_INET (A)
    state outcome = state::pending;  ///< pending: still out when the connect ended
    std::size_t addresses = 0;       ///< how many it answered with
    std::error_code error;           ///< why it failed
    duration after{};                ///< when it answered or failed, from the connect's start
  };
  connect_phase failed = connect_phase::none;  ///< none when the connect succeeded
  std::error_code resolve_error;
  std::error_code handshake_error;
  std::vector<endpoint> addresses;  ///< resolved, in the order they were to be tried
  std::vector<attempt> attempts;    ///< in the order they started
  std::vector<lookup> lookups;      ///< AAAA, then A; none for a numeric host
  /// "resolve: dns: no such host", or "[::1]:80: connect timed out; 127.0.0.1:80: ...;
  /// AAAA: still out; A: 1 address after 3 ms".
  std::string to_string() const;
};

/// Resolves `host` (a numeric address skips DNS), then connects with Happy Eyeballs
/// (RFC 8305): AAAA and A are looked up apart and connecting starts with the first answer
/// (an A answer waits up to resolution_delay for the AAAA one); IPv6 and IPv4 addresses
/// alternate, IPv6 first, a new attempt starts every
/// happy_eyeballs_delay (or as soon as the previous one fails) while the earlier ones go on,
/// the first to connect wins and the others are cancelled. Errors: a resolve failure
/// (dns_category(), phase resolve), else the last attempt's error (errno, connect_timed_out);
/// errc::connect_timed_out when total_timeout expires while connecting; errc::cancelled.
task<result<stream>> connect(loop& lp, std::string host, std::uint16_t port, connect_options o = {},
                             std::stop_token stop = {});

}  // namespace evco
