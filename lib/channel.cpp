#include "evco/channel.hpp"

namespace evco::detail {

void channel_core::rebalance() noexcept {
  const std::size_t have = count + senders.size;
  while (receivers.woken > have) {
    if (closed) {
      complete(*receivers.last_woken, errc::closed);  // scheduled already: it resumes with it
    } else {
      unwake_last(receivers);
    }
  }
  while (receivers.woken < have && receivers.woken < receivers.size)
    wake(receivers, *receivers.first_unwoken());
}

void channel_core::close() noexcept {
  closed = true;
  complete_all(senders, errc::closed);
  rebalance();  // the woken receivers that a failed sender's item backed get closed too
  while (queued_op* op = receivers.first_unwoken())
    complete(*op, errc::closed);
}

void channel_core::shut() noexcept {
  close();
  complete_all(receivers, errc::closed);
}

}  // namespace evco::detail
