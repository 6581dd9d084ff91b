#pragma once
// rate_group: one token bucket shared by many streams (libevent's bufferevent_rate_limit_group).

#include <memory>

#include "evco/error.hpp"
#include "evco/rate_limit.hpp"

namespace evco {

class loop;
class stream;

namespace detail {
struct rate_group_state;
}

/// Streams that share one budget: together they move at most what `limit` allows (see
/// rate_limit), each at most its share when all are busy (libevent divides the bucket among
/// the members, in random order each tick). A member keeps its own set_rate_limit() too: the
/// stricter of the two applies. Move-only.
///
/// Destroying the group first lets its streams go on without it; destroying (or closing) a
/// stream first takes it out of the group. The group must be destroyed before its loop.
///
/// ```
/// evco::rate_group uploads(lp, {.write_rate = 10'000'000});
/// uploads.add(a); uploads.add(b);  // a and b share 10 MB/s
/// ```
class rate_group {
 public:
  /// A group on `lp` with the shared `limit`. Throws std::bad_alloc when out of memory.
  rate_group(loop& lp, const rate_limit& limit);
  rate_group(rate_group&&) noexcept;
  rate_group& operator=(rate_group&&) noexcept;
  ~rate_group();

  /// Makes `st` share the group's budget, from now (leaving any other group it was in).
  /// errc::closed for a closed stream, operation_not_supported for an in-process pair
  /// (make_pair: libevent's pairs have no token buckets), invalid_argument for a stream of
  /// another loop, not_enough_memory.
  result<void> add(stream& st);
  /// Takes `st` out of the group; nothing when it is not in it.
  void remove(stream& st) noexcept;
  /// How many streams are in the group.
  std::size_t size() const noexcept;

 private:
  std::unique_ptr<detail::rate_group_state> g_;
};

}  // namespace evco
