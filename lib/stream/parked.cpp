// What loop::parked() shows of a parked stream op.

#include "../parked.hpp"
#include "internal.hpp"

namespace evco::detail {

namespace {

// The stream's endpoints (none for a pair), and when the direction's timer fires: the op's
// deadline or the idle timeout, whichever is due first.
void describe(const parked_op& p, parked_op_info& out) {
  const auto& op = static_cast<const stream_op&>(p);
  const stream_state& s = *op.s;
  describe_socket(bufferevent_getfd(s.bev), out);
  const auto& timer = is_read(op.kind) ? s.read_timer : s.write_timer;
  if (op.armed && timer) describe_timer(*timer, out);
}

}  // namespace

const parked_op_type stream_op_types[6] = {
    {"read_some", describe}, {"read_exactly", describe}, {"read_until", describe},
    {"write", describe},     {"drain", describe},        {"shutdown", describe},
};
static_assert(static_cast<int>(op_kind::shutdown) == 5, "stream_op_types follows op_kind");

}  // namespace evco::detail
