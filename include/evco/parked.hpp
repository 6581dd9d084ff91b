#pragma once
// parked: what every coroutine parked on a loop waits for (loop::parked(), loop::dump()).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "evco/endpoint.hpp"
#include "evco/task.hpp"
#include "evco/timer.hpp"

namespace evco {

/// One operation parked on a loop, as loop::parked() found it.
struct parked_op_info {
  /// A task in the chain: the co_await it is suspended at.
  struct frame {
    /// The enclosing function as the compiler names it: g++ gives its scope and parameters
    /// ("ns::handle(evco::stream)"), clang 14 only its name ("handle").
    std::string function;
    std::string_view file;  ///< as the compiler was given it (static storage)
    std::uint_least32_t line = 0;
  };
  /// What the outermost task of the chain was started by.
  using origin = detail::task_origin;

  /// "read_some", "read_exactly", "read_until", "write", "drain", "shutdown", "accept",
  /// "connect", "handshake", "sleep", "resolve", "send", "receive" (a channel's ends or a
  /// connected datagram socket's), "receive_from", "send_to", "receive_batch", "send_batch"
  /// or "wait_signal" (static storage).
  std::string_view what;
  /// The socket's endpoints where it has them: for accept the listening one (local); for
  /// connect the local one and the target (remote); for a datagram op the bound one (local)
  /// and the connected peer or a send_to's destination (remote).
  std::optional<endpoint> local;
  std::optional<endpoint> remote;
  /// resolve and a connect to a host name: what is looked up, "example.com:443".
  std::string host;
  duration waited{};
  /// Until the op times out (its deadline, or an idle timeout), if it can; negative when that
  /// is already due and the loop has not run the timer yet.
  std::optional<duration> time_left;
  /// The tasks awaiting the op, innermost first. evco's own coroutines (sleep_for, connect,
  /// resolve, the TLS handshake) are left out: `what` says what they wait for.
  std::vector<frame> chain;
  /// `other` when the chain ends at a coroutine that is not an evco::task, or when no task
  /// awaits the op at all (then `chain` is empty).
  origin started_by = origin::other;
};

}  // namespace evco
