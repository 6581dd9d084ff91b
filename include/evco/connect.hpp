#pragma once
// connect: open a TCP stream to an endpoint.

#include <stop_token>

#include "evco/endpoint.hpp"
#include "evco/error.hpp"
#include "evco/stream.hpp"
#include "evco/task.hpp"
#include "evco/timer.hpp"

namespace evco {

class loop;

struct connect_options {
  duration timeout{};      ///< TCP connect budget (errc::connect_timed_out); zero = the kernel's
  std::stop_token stop{};  ///< request_stop() ends the attempt with errc::cancelled
  bool no_delay = true;    ///< TCP_NODELAY
};

/// Connects to `ep`. Errors: the connect errno (connection_refused, network_unreachable, ...),
/// errc::connect_timed_out, errc::cancelled.
task<result<stream>> connect(loop& lp, endpoint ep, connect_options o = {});

}  // namespace evco
