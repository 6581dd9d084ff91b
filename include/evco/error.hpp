#pragma once
// Errors as values: result<T>, evco::errc and its category.

#include <system_error>
#include <type_traits>

#include <boost/outcome/std_result.hpp>
#include <boost/outcome/try.hpp>

namespace evco {

template <class T>
using result = boost::outcome_v2::std_result<T>;

using boost::outcome_v2::failure;
using boost::outcome_v2::success;

/// evco's own failure codes. Every timeout compares equal to std::errc::timed_out and every
/// cancellation to std::errc::operation_canceled, whichever phase produced it. The values are
/// ABI: new codes go at the end.
enum class errc {
  eof = 1,            ///< the peer ended the stream (or the stream ended inside a framed read)
  timed_out,          ///< an idle timeout or a per-op deadline expired
  cancelled,          ///< a std::stop_token asked the operation to stop
  closed,             ///< the stream or listener was closed while the operation was pending
  limit_exceeded,     ///< a framed read would need more than its maximum; the bytes stay buffered
  busy,               ///< another operation of the same direction is already pending
  connect_timed_out,  ///< the TCP connect phase ran over its budget
  /// the TLS handshake phase ran over its budget
  handshake_timed_out,
  // endpoint::parse() failures; each compares equal to std::errc::invalid_argument.
  endpoint_no_port,           ///< "1.2.3.4" or "1.2.3.4:" where an address and a port were due
  endpoint_bad_port,          ///< the port is not a number from 0 to 65535
  endpoint_not_numeric,       ///< not a numeric IPv4 or IPv6 address (a host name, say)
  endpoint_ipv6_unbracketed,  ///< an IPv6 address with a port needs brackets: "[::1]:80"
  /// a Unix socket path or abstract name longer than sockaddr_un can hold (107 bytes); compares
  /// equal to std::errc::filename_too_long
  endpoint_path_too_long,
  /// a datagram was larger than the buffer it was received into (its real size is reported
  /// beside the error); compares equal to std::errc::message_size
  message_truncated,
};

const std::error_category& evco_category() noexcept;

inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), evco_category()};
}

}  // namespace evco

template <>
struct std::is_error_code_enum<evco::errc> : std::true_type {};

// Boost.Outcome's BOOST_OUTCOME_CO_TRY changed its signature between Boost 1.74 and 1.80 (the
// variable's declaration moved into the first argument); these spell one form for both.
#define EVCO_DETAIL_CAT2(a, b) a##b
#define EVCO_DETAIL_CAT(a, b) EVCO_DETAIL_CAT2(a, b)
#define EVCO_DETAIL_TMP EVCO_DETAIL_CAT(evco_try_, __LINE__)

/// In a coroutine returning task<result<U>>: declares `decl` from a successful result, or
/// co_returns the failure. `EVCO_TRY(auto n, co_await s.read_some(buf));`
#define EVCO_TRY(decl, ...)                                                \
  auto&& EVCO_DETAIL_TMP = (__VA_ARGS__);                                  \
  if (!EVCO_DETAIL_TMP) co_return std::move(EVCO_DETAIL_TMP).as_failure(); \
  decl = std::move(EVCO_DETAIL_TMP).value()

/// The same for result<void>: `EVCO_TRYV(co_await s.write(data));`
#define EVCO_TRYV(...)                                  \
  do {                                                  \
    if (auto&& evco_try_r = (__VA_ARGS__); !evco_try_r) \
      co_return std::move(evco_try_r).as_failure();     \
  } while (false)
