#include "evco/detail/forwarding_awaiter.hpp"

#include <memory>
#include <stop_token>
#include <utility>

namespace evco::detail {

struct merged_stop {
  struct forward {
    std::stop_source* to;
    void operator()() const noexcept { to->request_stop(); }
  };
  merged_stop(const std::stop_token& a, const std::stop_token& b)
      : on_a(a, forward{&source}), on_b(b, forward{&source}) {}
  std::stop_source source;
  std::stop_callback<forward> on_a, on_b;
};

void merged_stop_deleter::operator()(merged_stop* m) const noexcept {
  delete m;
}

void inherit_stop(std::stop_token& stop, inherited_stop& st, const std::stop_token& inherited) {
  if (stop == inherited) return;
  if (stop.stop_possible()) {
    st.merged.reset(new merged_stop(stop, inherited));
    st.own = std::exchange(stop, st.merged->source.get_token());
  } else {
    st.own = std::exchange(stop, inherited);
  }
  st.changed = true;
}

}  // namespace evco::detail
