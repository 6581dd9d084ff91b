#pragma once
// log: where libevent's messages go. A library prints nothing unasked.

#include <functional>
#include <string_view>

namespace evco {

enum class log_level { debug, info, warning, error };

/// Receives libevent's messages (its resolver's among them: "Nameserver 127.0.0.1:53 has
/// failed", ...). Called on whichever thread libevent logs from; it must not throw or call
/// back into evco.
using log_handler = std::function<void(log_level, std::string_view message)>;

/// Sets the process-wide handler for libevent's messages and returns the previous one. With
/// none (the default) they are dropped: nothing reaches stderr. Thread-safe.
///
/// `evco::set_log_handler([](evco::log_level, std::string_view m) { std::fprintf(stderr,
/// "libevent: %.*s\n", int(m.size()), m.data()); });`
log_handler set_log_handler(log_handler h);

}  // namespace evco
