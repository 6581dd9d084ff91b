#include "evco/channel.hpp"

namespace evco::detail {

void channel_core::close() noexcept {
  closed = true;
  complete_all(senders, errc::closed);
  complete_all(receivers, errc::closed);
}

}  // namespace evco::detail
