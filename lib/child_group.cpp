#include "evco/detail/child.hpp"

namespace evco::detail {

bool child_group::start(std::coroutine_handle<> awaiting, child_promise_base* const* children,
                        std::size_t n) {
  awaiting_ = awaiting;
  stop_ = std::stop_source();
  if (awaiting_task) {
    const std::stop_token* outer = awaiting_task->inherited_stop();
    if (outer && outer->stop_possible()) link_.emplace(*outer, forward_stop{&stop_});
  }
  starting_ = true;
  for (std::size_t i = 0; i < n; ++i) {
    if (first_ends_all_ && first_ != none) break;
    children[i]->begin(*this, i, stop_.get_token(), awaiting_task);
    ++running_;
    children[i]->handle().resume();
  }
  starting_ = false;
  return running_ > 0;
}

std::coroutine_handle<> child_group::ended(std::size_t index, bool failed) noexcept {
  --running_;
  if (first_ == none) first_ = index;
  if (failed && first_failed_ == none) first_failed_ = index;
  if (first_ends_all_ || failed) stop_.request_stop();
  if (running_ == 0 && !starting_) return awaiting_;
  return std::noop_coroutine();
}

}  // namespace evco::detail
