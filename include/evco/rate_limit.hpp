#pragma once
// rate_limit: token-bucket limits on a stream's bytes per second (see stream::set_rate_limit and
// rate_group).

#include <cstddef>

namespace evco {

/// Bytes per second each way, and how far above that a direction may burst after an idle
/// spell. A zero rate leaves that direction unlimited; all zero is no limit at all.
///
/// Over any `t` seconds a limited direction moves at most `burst` + `rate`·t bytes (counted as
/// they reach the kernel: under TLS, the encrypted bytes). The bucket refills in ticks of
/// 10 ms (longer for rates below 10 kB/s, so that each tick brings at least 100 bytes, up to
/// 1 s), and `burst` is raised to at least three ticks' worth (30 ms of `rate`, at 10 kB/s and
/// more). Under TLS a direction may run up to one TLS record (16 KiB) ahead of its bucket,
/// which the following refills pay back: libevent hands OpenSSL whole records and buffer
/// chunks.
struct rate_limit {
  std::size_t read_rate = 0;
  std::size_t read_burst = 0;
  std::size_t write_rate = 0;
  std::size_t write_burst = 0;
};

}  // namespace evco
