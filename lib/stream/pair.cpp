// The pair transport: two streams in one process over a bufferevent_pair. Its reads and writes
// are the bufferevent transport's; what differs is how an end stops (see pair.hpp).

#include "evco/pair.hpp"

#include "internal.hpp"

namespace evco::detail {

namespace {

// bufferevent_flush(BEV_FINISHED) of EV_WRITE hands the partner all our output (past its read
// limit) and runs its event callback with BEV_EVENT_EOF | BEV_EVENT_READING: the pair's FIN.
// The partner gone (closed already), there is nobody to end the stream for.
std::error_code shut_pair_writing(stream_state& s) noexcept {
  if (bufferevent_flush(s.bev, EV_WRITE, BEV_FINISHED) != 0) return system_error(EPIPE);
  return {};
}

// Freeing one end alone tells the other nothing (libevent issue #93: it would wait for ever),
// so both directions are finished first: the partner gets what we queued, then eof, and its
// writes fail from then on (BEV_EVENT_WRITING: see on_event); what it had queued for us comes
// over and goes with us. The partner's callbacks are deferred (libevent forces
// BEV_OPT_DEFER_CALLBACKS on a pair), so they run from the loop, after our bufferevent is gone:
// they touch only the partner.
//
// A flush moves everything only into a partner's input at its read limit or above: below it,
// only what fits under the limit (be_pair_transfer), and the rest would go with us. So the
// first flush fills the partner's input to its limit, the second hands over the rest.
void close_pair(stream_state* s) noexcept {
  bufferevent_flush(s->bev, EV_WRITE, BEV_FLUSH);
  bufferevent_flush(s->bev, EV_READ | EV_WRITE, BEV_FINISHED);
  delete s;
}

using bev_ptr = c_handle<bufferevent, &bufferevent_free>;

}  // namespace

const transport pair_transport{false,
                               bufferevent_resume_reading,
                               bufferevent_limit_input,
                               bufferevent_pause_reading,
                               shut_pair_writing,
                               close_pair};

}  // namespace evco::detail

namespace evco {

result<std::pair<stream, stream>> make_pair(loop& lp) {
  bufferevent* ends[2];
  if (bufferevent_pair_new(lp.native_handle(), BEV_OPT_DEFER_CALLBACKS, ends) != 0) {
    return std::make_error_code(std::errc::not_enough_memory);
  }
  detail::bev_ptr first(ends[0]), second(ends[1]);
  stream a = detail::attach(lp, first.get(), detail::pair_transport);
  first.release();
  stream b = detail::attach(lp, second.get(), detail::pair_transport);
  second.release();
  return std::pair{std::move(a), std::move(b)};
}

}  // namespace evco
