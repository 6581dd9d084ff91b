// What loop::parked() shows of a parked stream op.

#include "../parked.hpp"
#include "internal.hpp"

namespace evco::detail {

// The stream's endpoints (none for a pair), and when its direction's limits fire: the op's
// deadline or the idle timeout, whichever is due first.
void describe_stream_op(const parked_op& p, parked_op_info& out) {
  const auto& op = static_cast<const stream_op&>(p);
  const stream_state& s = *op.s;
  describe_socket(fd_of(s), out);
  const auto& limits = s.side[type_of(op.kind).dir].limits;
  if (limits && limits->active) describe_timer(*limits, out);
}

}  // namespace evco::detail
