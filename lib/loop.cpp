#include "evco/loop.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/dns.h>

#include "libevent.hpp"
#include "op_limits.hpp"
#include "parked.hpp"
#include "signal_table.hpp"
#include "timer_queue.hpp"

namespace evco {

namespace {
struct dns_deleter {
  // Without failing requests: ~loop has let every lookup's callback run by then, and a failed
  // request's callback would be queued on the base only to be dropped (and leaked) there.
  void operator()(evdns_base* d) const noexcept { evdns_base_free(d, 0); }
};
}  // namespace

struct loop::impl {
  impl() noexcept { parked_ops.prev_parked = parked_ops.next_parked = &parked_ops; }
  detail::base_ptr base;  // declared first: destroyed last, every event below needs it
  // Destroyed after the body of ~loop, so after every frame that may wait on it.
  detail::signal_table_ptr signals;
  std::unique_ptr<evdns_base, dns_deleter> dns;  // created on first use; freed by ~loop
  std::size_t dns_lookups = 0;                   // lookups whose callback is still to come
  duration dns_timeout{};
  int dns_attempts = 0;
  // Coroutines to resume: `ready` from the wake event in the current loop pass, `later` from
  // wake_after_poll, a zero timer, which libevent fires only after it polled the sockets.
  struct wait_list {
    detail::waiter* head = nullptr;
    detail::waiter* tail = nullptr;
  };
  wait_list ready, later;
  detail::event_ptr wake;
  detail::event_ptr wake_after_poll;
  // Limits whose stop token was requested (from any thread), for the loop to end: a list under
  // its own lock, and one event that the first to join it activates.
  std::mutex stopped_mutex;
  detail::op_limits* stopped_head = nullptr;  // oldest request first
  detail::op_limits* stopped_tail = nullptr;
  detail::event_ptr stop_event;
  // A stop requested on the loop's own thread while run_ready runs (by a coroutine or a
  // posted function it ran) joins the same list, without the event: run_ready ends it before
  // it returns, still in the same pass (written and read by the loop's thread only).
  bool stopped_here = false;
  // The thread running run_ready (none otherwise). Read by stopped() on any thread: only the
  // loop's own thread can find its id there, so relaxed loads are enough.
  std::atomic<std::thread::id> drainer{};
  void end_stopped() noexcept;
  detail::owned* owned_head = nullptr;
  std::mutex posted_mutex;
  std::vector<detail::unique_function> posted;  // guarded by posted_mutex
  // `posted` is not empty: set by post() under posted_mutex, cleared by run_ready as it takes
  // them, so that run_ready locks only when something was posted.
  std::atomic<bool> has_posted{false};
  // run_ready is running (written by the loop's thread only): whatever it makes ready or
  // posts waits for the next poll. Both are seq_cst: post() stores has_posted, then reads
  // this; run_ready stores this, then reads has_posted; so either a post() sees that the
  // drain is over and wakes the loop, or run_ready sees the post and polls again.
  std::atomic<bool> draining{false};

  void push(wait_list& l, detail::waiter& w) noexcept {
    w.queued = true;
    w.after_poll = &l == &later;
    w.next = nullptr;
    w.prev = l.tail;
    (l.tail ? l.tail->next : l.head) = &w;
    l.tail = &w;
    if (w.prev) return;
    if (w.after_poll) {
      static constexpr timeval now{0, 0};
      event_add(wake_after_poll.get(), &now);
    } else if (!draining) {
      event_active(wake.get(), EV_TIMEOUT, 0);
    }
  }
  void run_ready(loop& self) noexcept;
  std::error_code make_resolver(int flags);
  bool running = false;

  detail::timer_queue timers;
  // The registry of parked ops (loop::parked()): a circular list around this node, oldest first.
  detail::parked_op parked_ops;
};

namespace {

// libevent's event_base_new exits the process when it cannot make its signal pipe (its
// evsig_init_ treats that as fatal; libevent 2.1.12): so check first that the descriptors it
// needs (epoll, the signal pipe, the eventfd that wakes the base) are there.
std::error_code check_free_fds() noexcept {
  int fds[4];
  int n = 0;
  std::error_code ec;
  for (; n < 4; ++n) {
    fds[n] = ::eventfd(0, EFD_CLOEXEC);
    if (fds[n] < 0) {
      ec = {errno, std::system_category()};
      break;
    }
  }
  while (n > 0)
    ::close(fds[--n]);
  return ec;
}

[[noreturn]] void fail(std::error_code ec, const char* what) {
  throw std::system_error(ec, what);
}

using exception_sink = std::function<void(std::exception_ptr)>;
using error_sink = std::function<void(std::error_code)>;

}  // namespace

// What loop::spawn attaches to a spawned task, in place of a coroutine frame around it (which
// cost 192 bytes): its start from the ready list, the loop's ownership of its frame (~loop
// destroys the frame with this node), and its sink (in spawned_with).
struct detail::spawned : owned {
  loop* lp = nullptr;
  waiter start;  // start.handle: the task's frame
};

namespace {

template <class Sink>
struct spawned_with final : detail::spawned, detail::frame_allocated {
  spawned_with(loop& l, std::coroutine_handle<> frame, Sink&& s) noexcept : sink(std::move(s)) {
    lp = &l;
    start.handle = frame;
    destroy = [](detail::owned* o) noexcept { static_cast<spawned_with*>(o)->end(); };
  }
  // Takes the frame off the loop, and destroys it and this node.
  void end() noexcept {
    detail::loop_access::unschedule(*lp, start);
    detail::loop_access::release(*lp, *this);
    start.handle.destroy();
    delete this;
  }
  Sink sink;
};

// The loop owns `t`'s frame from here on, and starts it from the ready list.
template <class T, class Sink>
void start_spawned(loop& lp, std::coroutine_handle<detail::task_promise<T>> t, Sink&& sink) {
  auto* s = new spawned_with<Sink>(lp, t, std::move(sink));
  detail::loop_access::adopt(lp, *s);
  t.promise().detach(*s);
  detail::loop_access::schedule(lp, s->start);
}

// The continuation of loop::run's task: marks it finished and stops the base.
struct done_signal {
  struct promise_type {
    done_signal get_return_object() noexcept {
      return {std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    std::suspend_always initial_suspend() noexcept { return {}; }
    std::suspend_always final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }
  };
  std::coroutine_handle<promise_type> h;
};

done_signal make_signal(event_base* base) {
  event_base_loopbreak(base);
  co_return;
}

}  // namespace

loop::loop(loop_options opts) : base_(nullptr), parked_(nullptr), impl_(std::make_unique<impl>()) {
  parked_ = &impl_->parked_ops;
  detail::install_libevent_hooks();
  if (opts.ignore_sigpipe) {
    struct sigaction old {};
    if (sigaction(SIGPIPE, nullptr, &old) == 0 && old.sa_handler == SIG_DFL) {
      std::signal(SIGPIPE, SIG_IGN);
    }
  }
  // libevent refuses a resolver timeout under a millisecond and sends a query at most 255
  // times (evco asks for one more than dns_attempts; see configure_dns); an hour per try is
  // more than any resolver needs, and keeps dns_timeout * dns_attempts in range.
  impl_->dns_timeout =
      std::clamp<duration>(opts.dns_timeout, std::chrono::milliseconds(1), std::chrono::hours(1));
  impl_->dns_attempts = std::clamp(opts.dns_attempts, 1, 254);
  if (const std::error_code ec = check_free_fds()) fail(ec, "evco::loop: no file descriptor");
  const auto no_memory = std::make_error_code(std::errc::not_enough_memory);
  // The changelist merges the changes a loop turn makes to one fd into one epoll_ctl
  // (a connect's write watch replaced by the stream's read watch, a close right after an
  // accept). Its documented hazard is fds shared through dup(), which evco never makes.
  event_config* cfg = event_config_new();
  if (!cfg) fail(no_memory, "evco::loop: event_config_new");
  event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
  errno = 0;
  impl_->base.reset(event_base_new_with_config(cfg));
  const int e = errno;
  event_config_free(cfg);
  if (!impl_->base) {
    fail(e == EMFILE || e == ENFILE ? std::error_code(e, std::system_category()) : no_memory,
         "evco::loop: event_base_new");
  }
  base_ = impl_->base.get();
  impl_->wake.reset(event_new(
      base_, -1, 0,
      [](evutil_socket_t, short, void* arg) {
        auto& self = *static_cast<loop*>(arg);
        self.impl_->run_ready(self);
      },
      this));
  impl_->wake_after_poll.reset(event_new(
      base_, -1, 0,
      [](evutil_socket_t, short, void* arg) {
        auto& self = *static_cast<loop*>(arg);
        auto& im = *self.impl_;
        // Behind whatever became ready since (normally nothing: the wake ran first).
        if (im.later.head) {
          for (auto* w = im.later.head; w; w = w->next)
            w->after_poll = false;
          im.later.head->prev = im.ready.tail;
          (im.ready.tail ? im.ready.tail->next : im.ready.head) = im.later.head;
          im.ready.tail = im.later.tail;
          im.later = {};
        }
        im.run_ready(self);
      },
      this));
  impl_->stop_event.reset(event_new(
      base_, -1, 0,
      [](evutil_socket_t, short, void* arg) { static_cast<impl*>(arg)->end_stopped(); },
      impl_.get()));
  if (!impl_->wake || !impl_->wake_after_poll || !impl_->stop_event ||
      !impl_->timers.start(base_)) {
    fail(no_memory, "evco::loop: event_new");
  }
}

// Runs what was posted and what is ready now. What those resumptions schedule or post waits
// until the loop has polled its sockets once more: libevent runs an event activated from its
// own callback again in the same pass, without polling, so a coroutine that kept
// rescheduling itself would otherwise starve all I/O.
void loop::impl::run_ready(loop& self) noexcept {
  std::vector<detail::unique_function> fs;
  draining = true;
  drainer.store(std::this_thread::get_id(), std::memory_order_relaxed);
  if (has_posted) {
    std::lock_guard lock(posted_mutex);
    fs.swap(posted);
    has_posted = false;
  }
  for (auto& f : fs)
    f();
  while (detail::waiter* w = ready.head) {  // nothing joins `ready` while draining
    detail::loop_access::unschedule(self, *w);
    w->handle.resume();
  }
  // Stops those resumptions requested; what the ops they end make ready waits for the poll.
  while (stopped_here) {
    stopped_here = false;
    end_stopped();
  }
  drainer.store(std::thread::id(), std::memory_order_relaxed);
  draining = false;
  if (has_posted && !later.head) {
    static constexpr timeval now{0, 0};
    event_add(wake_after_poll.get(), &now);
  }
}

// One at a time, oldest first: `ended` may unstop others, or stop more. Once the list is
// empty, a request that comes after (from `ended` or from another thread) finds it so and
// activates the event again: no need to lock once more only to find it empty.
void loop::impl::end_stopped() noexcept {
  for (bool more = true; more;) {
    detail::op_limits* l;
    {
      std::lock_guard lock(stopped_mutex);
      l = stopped_head;
      if (!l) return;
      stopped_head = l->next_stopped;
      (stopped_head ? stopped_head->prev_stopped : stopped_tail) = nullptr;
      l->stop_queued = false;
      more = stopped_head != nullptr;
    }
    l->ended(*l, errc::cancelled);
  }
}

loop::~loop() {
  // Destroying an owned frame may close streams, which the loop then adopts: repeat until
  // nothing is left. Frames go first, while the base and its events are all still alive.
  while (detail::owned* o = impl_->owned_head)
    o->destroy(o);
  // A bufferevent freed while one of its deferred callbacks was still queued is only
  // finalised when that callback runs; event_base_free() drops queued callbacks without
  // running them (libevent 2.1.12), which would leak the bufferevent. So let the queued
  // callbacks run once: bufferevent_free() already unhooked ours, and with the wake event
  // removed no coroutine is resumed here.
  event_del(impl_->wake.get());
  event_del(impl_->wake_after_poll.get());
  event_del(impl_->stop_event.get());
  impl_->timers.stop();
  event_base_loop(base_, EVLOOP_NONBLOCK);
  // Destroying the frames above cancelled every DNS lookup still pending. libevent reports a
  // cancellation through a deferred callback that also frees the request, so those callbacks
  // must run before evdns_base_free(), which would not run them (and event_base_free() would
  // drop them, leaking each request). One pass runs them all; a few more cost nothing.
  for (int i = 0; impl_->dns_lookups > 0 && i < 8; ++i)
    event_base_loop(base_, EVLOOP_NONBLOCK);
  impl_->dns.reset();
  // Ops still listed sit in frames the loop does not own (which must not outlive it): their
  // unlist() must not reach into the list head that goes with the loop.
  detail::parked_op& head = impl_->parked_ops;
  for (detail::parked_op* op = head.next_parked; op != &head;)
    op = std::exchange(op->next_parked, nullptr);
  head.prev_parked = head.next_parked = &head;
}

namespace {

// Resolver settings (see make_resolver). A lookup's own deadline (dns_budget())
// must expire before libevent gives up, because evdns_getaddrinfo reports libevent's own
// timeout as the same EAI_FAIL as a server failure: so libevent sends one more query.
bool configure_dns(evdns_base* d, duration timeout, int attempts) {
  using namespace std::chrono;
  char secs[32];
  std::snprintf(secs, sizeof secs, "%.3f", duration_cast<microseconds>(timeout).count() / 1e6);
  const std::string tries = std::to_string(attempts + 1);
  return evdns_base_set_option(d, "timeout:", secs) == 0 &&
         evdns_base_set_option(d, "attempts:", tries.c_str()) == 0;
}

}  // namespace

// Creates the loop's evdns_base with `flags`, its timeout and attempts set.
std::error_code loop::impl::make_resolver(int flags) {
  dns.reset(evdns_base_new(base.get(), flags | EVDNS_BASE_DISABLE_WHEN_INACTIVE));
  if (!dns) return std::make_error_code(std::errc::not_enough_memory);
  if (!configure_dns(dns.get(), dns_timeout, dns_attempts)) {
    dns.reset();
    return std::make_error_code(std::errc::invalid_argument);
  }
  return {};
}

result<evdns_base*> detail::loop_access::dns(loop& lp) {
  auto& im = *lp.impl_;
  // Nameservers and search domains from /etc/resolv.conf; libevent loads /etc/hosts with them.
  if (!im.dns) {
    if (auto ec = im.make_resolver(EVDNS_BASE_INITIALIZE_NAMESERVERS)) return ec;
  }
  return im.dns.get();
}

result<void> loop::set_nameservers(std::span<const endpoint> servers) {
  if (servers.empty()) return std::make_error_code(std::errc::invalid_argument);
  // Checked before anything changes: a port and an address to send to.
  for (const endpoint& ep : servers) {
    const endpoint any = ep.is_v6() ? endpoint::parse("::", ep.port()).value()
                                    : endpoint::parse("0.0.0.0", ep.port()).value();
    if (ep.port() == 0 || ep == any) return std::make_error_code(std::errc::invalid_argument);
  }
  auto& im = *impl_;
  const bool existed = static_cast<bool>(im.dns);
  if (existed) {
    evdns_base_clear_nameservers_and_suspend(im.dns.get());
  } else {
    if (auto ec = im.make_resolver(0)) return ec;
    // Without a hosts file, libevent's minimal entries still resolve "localhost" locally.
    if (evdns_base_load_hosts(im.dns.get(), "/etc/hosts") != 0)
      evdns_base_load_hosts(im.dns.get(), nullptr);
  }
  bool ok = true;
  for (const endpoint& ep : servers) {
    // 3: already added (listed twice), which is no failure.
    const int rc = evdns_base_nameserver_sockaddr_add(im.dns.get(), ep.data(), ep.size(), 0);
    if (rc != 0 && rc != 3) ok = false;
  }
  if (existed) evdns_base_resume(im.dns.get());
  if (!ok) return std::make_error_code(std::errc::invalid_argument);
  return success();
}

namespace detail {

duration loop_access::dns_budget(const loop& lp) noexcept {
  return lp.impl_->dns_timeout * lp.impl_->dns_attempts;
}

void loop_access::dns_lookup_started(loop& lp, owned& o) noexcept {
  adopt(lp, o);
  ++lp.impl_->dns_lookups;
}

void loop_access::dns_lookup_ended(loop& lp) noexcept {
  --lp.impl_->dns_lookups;
}

result<signal_table*> loop_access::signals(loop& lp) {
  auto& im = *lp.impl_;
  if (!im.signals) {
    auto made = make_signal_table(lp);
    if (!made) return made.error();
    im.signals = std::move(made).value();
  }
  return im.signals.get();
}

void loop_access::arm(loop& lp, timer_node& t, clock::time_point deadline) {
  lp.impl_->timers.add(t, deadline);
}

void loop_access::stopped(loop& lp, op_limits& l) noexcept {
  auto& im = *lp.impl_;
  bool first;
  {
    std::lock_guard lock(im.stopped_mutex);
    if (l.stop_queued) return;
    l.stop_queued = true;
    l.next_stopped = nullptr;
    l.prev_stopped = im.stopped_tail;
    first = im.stopped_head == nullptr;
    (im.stopped_tail ? im.stopped_tail->next_stopped : im.stopped_head) = &l;
    im.stopped_tail = &l;
  }
  if (!first) return;
  if (im.drainer.load(std::memory_order_relaxed) == std::this_thread::get_id()) {
    im.stopped_here = true;  // run_ready ends it (see impl::stopped_here)
  } else {
    event_active(im.stop_event.get(), EV_TIMEOUT, 0);
  }
}

void loop_access::unstopped(loop& lp, op_limits& l) noexcept {
  auto& im = *lp.impl_;
  // Read without the lock: the stop callback (which alone sets it) has finished or never runs.
  if (!l.stop_queued) return;
  std::lock_guard lock(im.stopped_mutex);
  (l.prev_stopped ? l.prev_stopped->next_stopped : im.stopped_head) = l.next_stopped;
  (l.next_stopped ? l.next_stopped->prev_stopped : im.stopped_tail) = l.prev_stopped;
  l.stop_queued = false;
}

void loop_access::disarm(loop& lp, timer_node& t) noexcept {
  lp.impl_->timers.remove(t);
}

}  // namespace detail

std::vector<parked_op_info> loop::parked() const {
  return detail::describe_parked(impl_->parked_ops);
}

void loop::dump(std::FILE* out) const {
  detail::print_parked(parked(), out);
}

void loop::spawn(task<void> t, std::function<void(std::exception_ptr)> on_exception) {
  if (!t.valid()) throw std::invalid_argument("evco::loop::spawn: empty task");
  if (!on_exception) throw std::invalid_argument("evco::loop::spawn: empty error sink");
  start_spawned(*this, t.h_, std::move(on_exception));
  t.h_ = {};
}

void loop::spawn(task<result<void>> t, std::function<void(std::error_code)> on_error) {
  if (!t.valid()) throw std::invalid_argument("evco::loop::spawn: empty task");
  if (!on_error) throw std::invalid_argument("evco::loop::spawn: empty error sink");
  start_spawned(*this, t.h_, std::move(on_error));
  t.h_ = {};
}

// The sink runs before the frame goes, as it did in the coroutine that once wrapped the task.
// An exception escaping a task<result<void>>, or thrown by a sink, is a bug.
void detail::end_spawned(spawned& s, std::exception_ptr* exception, void* value) noexcept {
  try {
    if (value) {
      auto& n = static_cast<spawned_with<error_sink>&>(s);
      if (exception) std::rethrow_exception(*exception);
      if (auto& r = *static_cast<result<void>*>(value); !r) n.sink(r.error());
      n.end();
    } else {
      auto& n = static_cast<spawned_with<exception_sink>&>(s);
      if (exception) n.sink(*exception);
      n.end();
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "evco: exception escaped a spawned task: %s\n", e.what());
    std::terminate();
  } catch (...) {
    std::fprintf(stderr, "evco: exception escaped a spawned task\n");
    std::terminate();
  }
}

void loop::post(detail::unique_function f) {
  if (!f) throw std::invalid_argument("evco::loop::post: empty function");
  bool first;
  {
    std::lock_guard lock(impl_->posted_mutex);
    const bool was_empty = impl_->posted.empty();
    impl_->posted.push_back(std::move(f));
    impl_->has_posted = true;  // before draining is read: see impl::draining
    first = was_empty && !impl_->draining;
  }
  if (first) event_active(impl_->wake.get(), EV_TIMEOUT, 0);
}

namespace detail {

void loop_access::schedule(loop& lp, waiter& w) noexcept {
  auto& im = *lp.impl_;
  if (!w.queued) im.push(im.draining ? im.later : im.ready, w);
}

void loop_access::schedule_after_poll(loop& lp, waiter& w) noexcept {
  if (!w.queued) lp.impl_->push(lp.impl_->later, w);
}

void loop_access::unschedule(loop& lp, waiter& w) noexcept {
  if (!w.queued) return;
  w.queued = false;
  loop::impl::wait_list& l = w.after_poll ? lp.impl_->later : lp.impl_->ready;
  (w.prev ? w.prev->next : l.head) = w.next;
  (w.next ? w.next->prev : l.tail) = w.prev;
  w.prev = w.next = nullptr;
}

void loop_access::adopt(loop& lp, owned& o) noexcept {
  auto& head = lp.impl_->owned_head;
  o.prev = nullptr;
  o.next = head;
  if (o.next) o.next->prev = &o;
  head = &o;
}

void loop_access::release(loop& lp, owned& o) noexcept {
  (o.prev ? o.prev->next : lp.impl_->owned_head) = o.next;
  if (o.next) o.next->prev = o.prev;
  o.prev = o.next = nullptr;
}

}  // namespace detail

std::coroutine_handle<> loop::make_done_signal(loop& lp) {
  return make_signal(lp.base_).h;
}

loop::running_guard::running_guard(loop& l) : lp(l) {
  if (lp.impl_->running) throw std::logic_error("evco::loop::run: already running (nested run)");
  lp.impl_->running = true;
}

loop::running_guard::~running_guard() {
  lp.impl_->running = false;
}

void loop::run_until_done(std::coroutine_handle<> done) {
  while (!done.done()) {
    if (event_base_loop(base_, EVLOOP_NO_EXIT_ON_EMPTY) < 0) {
      throw std::runtime_error("evco: event_base_loop failed");
    }
  }
}

}  // namespace evco
