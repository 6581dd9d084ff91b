#include "evco/task_group.hpp"

#include "evco/loop.hpp"
#include "parked.hpp"

namespace evco {
namespace detail {

namespace {
void describe_nothing(const parked_op&, parked_op_info&) {}
constexpr parked_op_type join_type{"join", &describe_nothing};
}  // namespace

// A child's frame: on its group's list while running, and owned by the loop throughout.
class group_child_promise : public task_promise_base {
 public:
  group_child_promise() noexcept { set_inherited_stop(&token); }
  ~group_child_promise() {
    if (group) group->child_gone(*this, ended);
    if (lp) loop_access::release(*lp, node);
  }

  group_child get_return_object() noexcept {
    return {std::coroutine_handle<group_child_promise>::from_promise(*this)};
  }
  std::suspend_always initial_suspend() noexcept { return {}; }
  // The frame goes as soon as it ends; the group takes its outcome in the destructor.
  std::suspend_never final_suspend() noexcept { return {}; }
  void return_value(std::error_code e) noexcept {
    ec = e;
    ended = true;
  }
  void unhandled_exception() noexcept {
    exception = std::current_exception();
    ended = true;
  }

  // From the group, as it starts the child.
  void begin(task_group& g) noexcept {
    group = &g;
    lp = g.lp_;
    token = g.stop_.get_token();
    set_origin(task_origin::spawned);
    node.destroy = [](owned* o) noexcept {
      std::coroutine_handle<group_child_promise>::from_promise(*static_cast<frame_node*>(o)->p)
          .destroy();
    };
    node.p = this;
    loop_access::adopt(*lp, node);
    next = g.children_;
    if (next) next->prev = this;
    g.children_ = this;
  }

  struct frame_node : owned {
    group_child_promise* p = nullptr;
  };
  task_group* group = nullptr;  // null before the start and once the group is gone
  loop* lp = nullptr;
  group_child_promise* prev = nullptr;
  group_child_promise* next = nullptr;
  frame_node node;
  std::stop_token token;
  std::error_code ec;
  std::exception_ptr exception;
  bool ended = false;
};

group_child run_in_group(task<void> t) {
  co_await internal_frame{};
  co_await std::move(t);
  co_return std::error_code{};
}

group_child run_in_group(task<result<void>> t) {
  co_await internal_frame{};
  auto r = co_await std::move(t);
  co_return r ? std::error_code{} : r.error();
}

group_child_ptr::~group_child_ptr() {
  if (h) h.destroy();
}

spawn_op::spawn_op(task_group& g, group_child c, op_options o) noexcept
    : queued_op(*g.lp_, std::move(o), spawn_type), group(&g), child(c) {}

spawn_op::~spawn_op() {
  // A slot given to this op and never used goes to the next spawn waiting.
  if (granted) {
    group->ungrant(*this);
    group->release_slot();
  }
}

bool spawn_op::await_ready() noexcept {
  if (stop.stop_requested() || group->stop_requested()) {
    ec = errc::cancelled;
    return true;
  }
  if (!group->has_room()) return false;
  group->start(child);
  return true;
}

bool spawn_op::await_suspend(std::coroutine_handle<> h) noexcept {
  return park(group->waiting_, *this, h);
}

result<void> spawn_op::await_resume() noexcept {
  if (granted) {
    group->ungrant(*this);
    if (group->stop_requested()) {
      group->release_slot();
      ec = errc::cancelled;
    } else {
      group->start(child, true);
    }
  }
  if (ec) return ec;
  return success();
}

join_op::join_op(task_group& g) noexcept : parked_op(&join_type), group(&g), lp(g.lp_) {}
join_op::join_op(join_op&& o) noexcept
    : parked_op(&join_type), group(o.group), lp(o.lp), stop(std::move(o.stop)) {}

join_op::~join_op() {
  on_stop.reset();
  if (waiting) {
    (prev_join ? prev_join->next_join : group->joins_) = next_join;
    if (next_join) next_join->prev_join = prev_join;
    unlist();
  } else if (queued) {
    loop_access::unschedule(*lp, *this);
  }
}

bool join_op::await_ready() const noexcept {
  return group->running_ == 0;
}

void join_op::await_suspend(std::coroutine_handle<> h) {
  handle = h;
  waiting = true;
  next_join = group->joins_;
  if (next_join) next_join->prev_join = this;
  group->joins_ = this;
  loop_access::list_parked(*lp, *this, join_type);
  if (stop.stop_possible()) on_stop.emplace(stop, forward_stop{group});
}

void join_op::forward_stop::operator()() const noexcept {
  to->request_stop();
}

result<void> join_op::await_resume() {
  on_stop.reset();
  if (!group) return errc::cancelled;
  if (group->exception_) std::rethrow_exception(group->exception_);
  if (group->failure_) return group->failure_;
  return success();
}

}  // namespace detail

task_group::task_group(loop& lp, std::size_t max_in_flight)
    : lp_(&lp), max_(max_in_flight), pool_(lp) {}

task_group::~task_group() {
  stop_.request_stop();
  // The children still running go with the group (their destructors unlink them).
  while (detail::group_child_promise* c = children_)
    std::coroutine_handle<detail::group_child_promise>::from_promise(*c).destroy();
  while (detail::join_op* j = joins_) {
    joins_ = j->next_join;
    j->waiting = false;
    j->on_stop.reset();  // it would stop this group, which is going
    j->unlist();
    j->group = nullptr;
    detail::loop_access::schedule(*lp_, *j);
  }
  while (detail::spawn_op* op = granted_) {
    ungrant(*op);
    op->ec = errc::cancelled;
    op->group = nullptr;
  }
  while (detail::queued_op* op = waiting_.front()) {
    static_cast<detail::spawn_op*>(op)->group = nullptr;
    detail::complete(*op, errc::cancelled);
  }
}

detail::spawn_op task_group::spawn(task<void> t, op_options o) {
  return {*this, detail::run_in_group(std::move(t)), std::move(o)};
}
detail::spawn_op task_group::spawn(task<result<void>> t, op_options o) {
  return {*this, detail::run_in_group(std::move(t)), std::move(o)};
}

void task_group::request_stop() noexcept {
  stop_.request_stop();
  detail::complete_all(waiting_, errc::cancelled);
}

void task_group::start(detail::group_child_ptr& c, bool counted) noexcept {
  auto h = std::exchange(c.h, {});
  if (!counted) ++running_;
  h.promise().begin(*this);
  h.resume();
}

// The first failure is what join reports; an exception (a bug) still replaces an error value
// that came first, so that it is never dropped for a mere error.
void task_group::fail(std::error_code ec, std::exception_ptr e) noexcept {
  const bool first = !failure_ && !exception_;
  if (first) failure_ = ec;
  if (!exception_) exception_ = std::move(e);
  if (first) request_stop();
}

void task_group::child_gone(detail::group_child_promise& c, bool ended) noexcept {
  (c.prev ? c.prev->next : children_) = c.next;
  if (c.next) c.next->prev = c.prev;
  c.group = nullptr;
  if (!ended) {  // destroyed by ~loop: nothing to report, nobody to wake
    --running_;
    return;
  }
  if (c.exception || c.ec) fail(c.ec, c.exception);
  release_slot();
}

void task_group::release_slot() noexcept {
  // The slot goes to the first spawn waiting, which starts its child when it resumes.
  if (detail::queued_op* q = waiting_.front()) {
    auto& op = static_cast<detail::spawn_op&>(*q);
    op.granted = true;
    op.next_granted = granted_;
    if (granted_) granted_->prev_granted = &op;
    granted_ = &op;
    detail::complete(op);
    return;
  }
  if (--running_ > 0) return;
  while (detail::join_op* j = joins_) {
    joins_ = j->next_join;
    j->waiting = false;
    j->on_stop.reset();  // done waiting: a stop from now on is not this group's
    j->unlist();
    detail::loop_access::schedule(*lp_, *j);
  }
}

void task_group::ungrant(detail::spawn_op& op) noexcept {
  (op.prev_granted ? op.prev_granted->next_granted : granted_) = op.next_granted;
  if (op.next_granted) op.next_granted->prev_granted = op.prev_granted;
  op.next_granted = op.prev_granted = nullptr;
  op.granted = false;
}

}  // namespace evco
