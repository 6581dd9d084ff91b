#include "evco/signal.hpp"

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <mutex>
#include <new>

#include "evco/loop.hpp"
#include "libevent.hpp"
#include "signal_table.hpp"

namespace evco::detail {

static_assert(NSIG <= 65, "a signal_set holds signals 1 to 64");

namespace {

bool can_wait_for(int sig) noexcept {
  if (sig <= 0 || sig >= NSIG) return false;
  switch (sig) {
    case SIGKILL:
    case SIGSTOP:
    case SIGSEGV:
    case SIGBUS:
    case SIGFPE:
    case SIGILL:
      return false;
  }
  return sig < 32 || sig >= SIGRTMIN;  // glibc's own (32, 33) refuse a handler
}

// libevent tells one event_base about signals, the last one that added a signal event: so one
// loop at a time has a table, from the first wait until the loop goes.
std::mutex owner_mutex;
const loop* owner = nullptr;  // guarded by owner_mutex

void on_signal(evutil_socket_t sig, short, void* arg);

}  // namespace

struct signal_table {
  explicit signal_table(loop& l) noexcept : lp(&l) {}
  ~signal_table() {
    // Only a frame that outlived its loop is still here: it will never be resumed.
    while (queued_op* op = waiters.front()) {
      static_cast<signal_op*>(op)->woken_by = false;  // nothing left to count it in
      unpark(*op);
    }
    for (event_ptr& w : watches)
      w.reset();  // event_del restores the disposition the signal had before
    std::lock_guard lock(owner_mutex);
    owner = nullptr;
  }

  // Installs the watch for `sig` unless it is there already.
  std::error_code watch(int sig) noexcept {
    if (watches[sig]) return {};
    event_ptr ev(evsignal_new(lp->native_handle(), sig, &on_signal, this));
    if (!ev) return std::make_error_code(std::errc::not_enough_memory);
    errno = 0;
    if (event_add(ev.get(), nullptr) != 0) {
      return errno ? system_error(errno) : std::make_error_code(std::errc::not_enough_memory);
    }
    watches[sig] = std::move(ev);
    return {};
  }

  // Takes the earliest pending signal of `s`; 0 if none is.
  int take_pending(const signal_set& s) noexcept {
    int first = 0;
    for (int sig = 1; sig < NSIG; ++sig) {
      if (s.contains(sig) && pending[sig] && (!first || pending[sig] < pending[first])) {
        first = sig;
      }
    }
    if (first) pending[first] = 0;
    return first;
  }

  // A wait that `sig` woke has resumed (`took`: with it) or ended without resuming. Once all
  // of them have, a signal that none took is pending again, from when it arrived.
  void settle(int sig, bool took) noexcept {
    in_flight& f = flying[sig];
    f.taken = f.taken || took;
    if (--f.waits > 0) return;
    if (!f.taken && (!pending[sig] || f.arrival < pending[sig])) pending[sig] = f.arrival;
    f = {};
  }

  loop* lp;
  limits_pool pool{*lp};
  wait_queue waiters{pool};
  event_ptr watches[NSIG];
  // For each signal delivered while nobody waited for it: when it arrived (an order, from 1).
  std::uint64_t pending[NSIG] = {};
  std::uint64_t arrivals = 0;
  // For each signal that woke waits not resumed yet: how many, whether one of them took it,
  // and when it arrived. Deliveries while some are still woken join them (they coalesce).
  struct in_flight {
    std::uint32_t waits = 0;
    bool taken = false;
    std::uint64_t arrival = 0;
  };
  in_flight flying[NSIG];
};

void signal_table_free::operator()(signal_table* t) const noexcept {
  delete t;
}

result<signal_table_ptr> make_signal_table(loop& lp) {
  std::lock_guard lock(owner_mutex);
  if (owner && owner != &lp) return std::make_error_code(std::errc::device_or_resource_busy);
  signal_table_ptr t(new (std::nothrow) signal_table(lp));
  if (!t) return std::make_error_code(std::errc::not_enough_memory);
  owner = &lp;
  return t;
}

namespace {

// libevent runs this once per delivery (its ncalls), from the loop. It wakes every wait for
// the signal that is not woken already; each takes it, or not, when it resumes.
void on_signal(evutil_socket_t sig, short, void* arg) {
  auto& t = *static_cast<signal_table*>(arg);
  const int s = static_cast<int>(sig);
  bool delivered = false;
  for (queued_op* op = t.waiters.front(); op;) {
    queued_op* next = op->next_parked();
    auto& w = static_cast<signal_op&>(*op);
    if (!w.woken && w.signals.contains(s)) {
      signal_table::in_flight& f = t.flying[s];
      if (f.waits++ == 0) f.arrival = ++t.arrivals;
      w.signo = s;
      w.woken_by = true;
      wake(t.waiters, w);
      delivered = true;
    }
    op = next;
  }
  if (!delivered && !t.pending[s]) t.pending[s] = ++t.arrivals;
}

}  // namespace

signal_op::signal_op(loop& l, signal_set s, op_options o) noexcept
    : queued_op(l, std::move(o), wait_signal_type), signals(s) {
  bool ok = s.valid() && !s.empty();
  for (int sig = 1; ok && sig < NSIG; ++sig)
    ok = !s.contains(sig) || can_wait_for(sig);
  if (!ok) ec = std::make_error_code(std::errc::invalid_argument);
}

bool signal_op::await_ready() noexcept {
  if (ec) return true;
  if (stop.stop_requested()) {
    ec = errc::cancelled;
    return true;
  }
  auto table = loop_access::signals(*lp);
  if (!table) {
    ec = table.error();
    return true;
  }
  signal_table& t = *table.value();
  for (int sig = 1; sig < NSIG; ++sig) {
    if (!signals.contains(sig)) continue;
    if (std::error_code e = t.watch(sig)) {
      ec = e;
      return true;
    }
  }
  signo = t.take_pending(signals);
  return signo != 0;
}

bool signal_op::await_suspend(std::coroutine_handle<> h) noexcept {
  // await_ready made the table.
  return park(loop_access::signals(*lp).value()->waiters, *this, h);
}

// The commit point of a wait that a signal woke: its stop request, if it came meanwhile, wins.
result<int> signal_op::await_resume() noexcept {
  if (woken_by) {
    woken_by = false;
    bool took = false;
    if (parked()) {  // else its deadline or stop request completed it first: ec says which
      took = !stop.stop_requested();
      unpark(*this);
      if (!took) ec = errc::cancelled;
    }
    loop_access::signals(*lp).value()->settle(signo, took);
  }
  if (ec) return ec;
  return signo;
}

signal_op::~signal_op() {
  // Woken and destroyed before it resumed: it did not take the signal. (~queued_op unparks.)
  if (woken_by) loop_access::signals(*lp).value()->settle(signo, false);
}

}  // namespace evco::detail
