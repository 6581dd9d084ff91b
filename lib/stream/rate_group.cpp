// rate_group: one token bucket shared by several streams (libevent's
// bufferevent_rate_limit_group). The group keeps its members in a list, so that whichever of it
// and its streams goes first takes the others out (libevent asserts that a group it frees has
// no members left).

#include "evco/rate_group.hpp"

#include "rate.hpp"

namespace evco::detail {

void join_group(rate_group_state& g, rate_state& r) noexcept {
  r.group = &g;
  r.prev = nullptr;
  r.next = g.members;
  if (g.members) g.members->prev = &r;
  g.members = &r;
  ++g.count;
}

namespace {
void drop_member(rate_state& r) noexcept {
  rate_group_state& g = *r.group;
  (r.prev ? r.prev->next : g.members) = r.next;
  if (r.next) r.next->prev = r.prev;
  r.prev = r.next = nullptr;
  r.group = nullptr;
  --g.count;
}
}  // namespace

void leave_group(rate_state& r) noexcept {
  bufferevent_remove_from_rate_limit_group(r.owner->bev);
  drop_member(r);
}

}  // namespace evco::detail

namespace evco {

rate_group::rate_group(loop& lp, const rate_limit& limit)
    : g_(std::make_unique<detail::rate_group_state>()) {
  g_->lp = &lp;
  g_->tick_ms = detail::tick_ms(limit);
  const detail::bucket_cfg_ptr cfg = detail::make_bucket_cfg(limit);  // copied by libevent
  if (!cfg) throw std::bad_alloc();
  event_base_update_cache_time(lp.native_handle());  // see stream::set_rate_limit
  g_->group.reset(bufferevent_rate_limit_group_new(lp.native_handle(), cfg.get()));
  if (!g_->group) throw std::bad_alloc();
}

rate_group::rate_group(rate_group&&) noexcept = default;

rate_group& rate_group::operator=(rate_group&& o) noexcept {
  if (this != &o) {
    rate_group gone(std::move(*this));
    g_ = std::move(o.g_);
  }
  return *this;
}

rate_group::~rate_group() {
  if (!g_) return;
  while (detail::rate_state* r = g_->members) {
    detail::stream_state& s = *r->owner;
    detail::leave_group(*r);
    detail::rate_changed(s);
  }
}

result<void> rate_group::add(stream& st) {
  detail::stream_state* s = st.s_;
  if (!s) return errc::closed;
  if (s->io == &detail::pair_transport) {
    return std::make_error_code(std::errc::operation_not_supported);
  }
  if (s->lp != g_->lp) return std::make_error_code(std::errc::invalid_argument);
  if (!detail::buffers(*s)) return std::make_error_code(std::errc::not_enough_memory);
  detail::rate_state* r = detail::rate_of(*s);
  if (r && r->group == g_.get()) return success();
  if (!r || bufferevent_add_to_rate_limit_group(s->bev, g_->group.get()) != 0) {
    detail::rate_changed(*s);
    return std::make_error_code(std::errc::not_enough_memory);
  }
  if (r->group) detail::drop_member(*r);  // libevent took it out of its other group already
  detail::join_group(*g_, *r);
  detail::update_transport(*s);
  return success();
}

void rate_group::remove(stream& st) noexcept {
  detail::stream_state* s = st.s_;
  if (!s || !s->rate || s->rate->group != g_.get()) return;
  detail::leave_group(*s->rate);
  detail::rate_changed(*s);
}

std::size_t rate_group::size() const noexcept {
  return g_ ? g_->count : 0;
}

}  // namespace evco
