#pragma once
// dns: asynchronous name resolution through the loop's resolver (libevent's evdns).

#include <cstdint>
#include <stop_token>
#include <string>
#include <system_error>
#include <type_traits>
#include <vector>

#include <sys/socket.h>

#include "evco/endpoint.hpp"
#include "evco/error.hpp"
#include "evco/task.hpp"
#include "evco/timer.hpp"

namespace evco {

class loop;

/// Failures of the resolve phase, in their own category (name() = "dns"). timed_out compares
/// equal to std::errc::timed_out and cancelled to std::errc::operation_canceled.
enum class dns_errc {
  no_such_host = 1,   ///< the name does not exist (NXDOMAIN)
  no_address,         ///< the name exists but has no address of the requested family
  server_failure,     ///< the nameserver failed or refused, or the reply was unusable
  timed_out,          ///< no answer within the lookup's budget
  temporary_failure,  ///< try again later (EAI_AGAIN)
  cancelled,          ///< the resolver dropped the lookup (it was cancelled or shut down)
  failed,             ///< any other resolver failure
};

const std::error_category& dns_category() noexcept;

inline std::error_code make_error_code(dns_errc e) noexcept {
  return {static_cast<int>(e), dns_category()};
}

struct resolve_options {
  /// Budget for the lookup, zero = the resolver's own limit (loop_options::dns_timeout *
  /// dns_attempts), which also caps a longer one; a negative one has already expired.
  duration timeout{};
  int family = AF_UNSPEC;  ///< AF_INET, AF_INET6, or AF_UNSPEC for both (A and AAAA)
};
static_assert(std::is_trivially_destructible_v<resolve_options>);  // see op_options

/// Completes with the addresses of `host` (each with `port`), in the resolver's order and
/// without duplicates. A numeric address resolves without a query, a name in /etc/hosts
/// from the file. Errors: dns_errc (no_such_host, timed_out, ...), errc::cancelled when
/// `stop` is requested first; std::errc::invalid_argument, before any query, for a name DNS
/// cannot hold (empty, over 253 characters, an empty or over-63-character label, a NUL) or a
/// family other than AF_UNSPEC, AF_INET and AF_INET6. Resumed from the loop; destroying the
/// awaiting frame, or the loop, cancels the lookup.
task<result<std::vector<endpoint>>> resolve(loop& lp, std::string host, std::uint16_t port,
                                            resolve_options o = {}, std::stop_token stop = {});

/// Orders addresses for Happy Eyeballs (RFC 8305, section 4): IPv6 first, then the families
/// alternate; each family keeps its own order.
std::vector<endpoint> interleave_families(std::vector<endpoint> addrs);

namespace detail {
// Appends `first[0], second[0], first[1], ...` to `out` (the rest of the longer one last).
void alternate(const std::vector<endpoint>& first, const std::vector<endpoint>& second,
               std::vector<endpoint>& out);
}  // namespace detail

}  // namespace evco

template <>
struct std::is_error_code_enum<evco::dns_errc> : std::true_type {};
