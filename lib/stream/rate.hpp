#pragma once
// Private: a stream's token buckets, its own (rate_limit.cpp) and its rate_group's
// (rate_group.cpp), over libevent's.

#include "evco/rate_limit.hpp"
#include "internal.hpp"

namespace evco::detail {

using bucket_cfg_ptr = c_handle<ev_token_bucket_cfg, &ev_token_bucket_cfg_free>;
using group_ptr = c_handle<bufferevent_rate_limit_group, &bufferevent_rate_limit_group_free>;

// libevent's configuration for `l` (a zero rate: unlimited that way); null when out of memory.
bucket_cfg_ptr make_bucket_cfg(const rate_limit& l) noexcept;
// The length of its ticks, in milliseconds.
unsigned tick_ms(const rate_limit& l) noexcept;

struct rate_group_state {
  loop* lp = nullptr;
  unsigned tick_ms = 0;
  group_ptr group;  // freed last, once no member is left in it (libevent asserts that)
  rate_state* members = nullptr;
  std::size_t count = 0;
};

// Made when a stream gets a limit or joins a group; gone once it has neither.
struct rate_state {
  explicit rate_state(stream_state& s) noexcept : owner(&s) {}
  stream_state* owner;
  // The stream's own limit: libevent keeps a pointer to it, so it goes only once the
  // bufferevent has been given another one, or none.
  bucket_cfg_ptr cfg;
  rate_limit requested{};  // what made `cfg`
  unsigned tick_ms = 0;    // the own limit's
  rate_group_state* group = nullptr;
  // TLS: while a reader waits, tries OpenSSL's buffer again every tick (see rate_limit.cpp).
  event_ptr poke;
  rate_state* prev = nullptr;  // the group's members
  rate_state* next = nullptr;
};

// The stream's rate state, made on first use; null when out of memory.
rate_state* rate_of(stream_state& s) noexcept;
// After a limit or group went: frees the rate state once it has neither, and then a plain
// socket goes back to its direct reads and writes.
void rate_changed(stream_state& s) noexcept;
// The transport for the stream's limits: a plain socket with any reads and writes through its
// bufferevent, where the buckets are; a limited TLS stream watches OpenSSL's buffer.
void update_transport(stream_state& s) noexcept;
void join_group(rate_group_state& g, rate_state& r) noexcept;
// Takes the stream out of its group, in libevent's and in ours.
void leave_group(rate_state& r) noexcept;

}  // namespace evco::detail
