#pragma once
// connect: open a TCP stream to an endpoint.

#include <stop_token>
#include <type_traits>

#include "evco/endpoint.hpp"
#include "evco/error.hpp"
#include "evco/stream.hpp"
#include "evco/task.hpp"
#include "evco/timer.hpp"

namespace evco {

class loop;

struct connect_options {
  duration timeout{};    ///< TCP connect budget (errc::connect_timed_out); zero = the kernel's
  bool no_delay = true;  ///< TCP_NODELAY
};
// Keep it so: see op_options on g++ 12 and aggregate temporaries in co_await expressions.
static_assert(std::is_trivially_destructible_v<connect_options>);

/// Connects to `ep`. Errors: the connect errno (connection_refused, network_unreachable, ...),
/// errc::connect_timed_out, errc::cancelled (when `stop` is requested first).
task<result<stream>> connect(loop& lp, endpoint ep, connect_options o = {},
                             std::stop_token stop = {});

}  // namespace evco
