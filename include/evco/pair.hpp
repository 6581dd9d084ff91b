#pragma once
// make_pair: two connected streams in one process, with no socket between them.

#include <utility>

#include "evco/error.hpp"
#include "evco/stream.hpp"

namespace evco {

class loop;

/// Makes two connected streams on `lp` (over a libevent bufferevent_pair): what one writes, the
/// other reads. Fails only with std::errc::not_enough_memory. For unit tests of protocols: the
/// code under test gets an ordinary evco::stream, and the test talks to it through the other.
///
/// ```cpp
/// EVCO_TRY(auto ends, evco::make_pair(lp));
/// auto& [client, server] = ends;
/// lp.spawn(serve(std::move(server)), on_error);  // the protocol under test
/// EVCO_TRYV(co_await client.write("PING\r\n"));
/// ```
///
/// The two ends behave as the two ends of a TCP connection do: reads, writes, the read limit
/// and write watermarks (a writer whose peer does not read waits once the peer's input holds
/// its read limit and its own output its high watermark), drain, shutdown (the peer reads
/// eof after every byte written before it), close, idle timeouts, per-op deadlines,
/// cancellation and the fairness budget. Where a pair cannot do what TCP does:
/// - There are no endpoints: local_endpoint() and remote_endpoint() fail with
///   std::errc::not_a_socket, and TLS (which needs a socket) fails the same way.
/// - There is no kernel in between: drain() completes once the peer's input buffer has taken
///   the output, and no connection_reset is ever reported.
/// - close() lingers for nothing: the peer gets everything still queued at once (past its read
///   limit, so at most the write high watermark and one write more), then eof; what the peer
///   had queued toward the closed end is dropped, and its later writes, drains and shutdowns
///   fail with EPIPE (std::errc::broken_pipe), as they would toward a closed socket.
/// - Both ends belong to `lp` and are used on its thread only.
result<std::pair<stream, stream>> make_pair(loop& lp);

}  // namespace evco
