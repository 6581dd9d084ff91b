#include "evco/dns.hpp"

#include <netinet/in.h>

#include <algorithm>
#include <coroutine>
#include <string>

#include <event2/dns.h>

#include "evco/loop.hpp"
#include "libevent.hpp"
#include "op_limits.hpp"
#include "parked.hpp"

namespace evco {
namespace {

class category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "dns"; }

  std::string message(int c) const override {
    switch (static_cast<dns_errc>(c)) {
      case dns_errc::no_such_host:
        return "no such host";
      case dns_errc::no_address:
        return "host has no address of the requested family";
      case dns_errc::server_failure:
        return "DNS server failure";
      case dns_errc::timed_out:
        return "DNS lookup timed out";
      case dns_errc::temporary_failure:
        return "temporary DNS failure, try again";
      case dns_errc::cancelled:
        return "DNS lookup cancelled";
      case dns_errc::failed:
        return "DNS lookup failed";
    }
    return "unknown dns error " + std::to_string(c);
  }

  std::error_condition default_error_condition(int c) const noexcept override {
    switch (static_cast<dns_errc>(c)) {
      case dns_errc::timed_out:
        return std::errc::timed_out;
      case dns_errc::cancelled:
        return std::errc::operation_canceled;
      case dns_errc::temporary_failure:
        return std::errc::resource_unavailable_try_again;
      default:
        break;
    }
    return {c, *this};
  }
};

// evdns_getaddrinfo reports getaddrinfo's codes; libevent folds every DNS rcode other than
// NXDOMAIN (and its own give-up timeout) into EAI_FAIL.
std::error_code from_eai(int rc) noexcept {
  if (rc == EVUTIL_EAI_NONAME) return dns_errc::no_such_host;
  if (rc == EVUTIL_EAI_NODATA || rc == EVUTIL_EAI_ADDRFAMILY) return dns_errc::no_address;
  if (rc == EVUTIL_EAI_FAIL) return dns_errc::server_failure;
  if (rc == EVUTIL_EAI_AGAIN) return dns_errc::temporary_failure;
  if (rc == EVUTIL_EAI_CANCEL) return dns_errc::cancelled;
  if (rc == EVUTIL_EAI_MEMORY) return std::make_error_code(std::errc::not_enough_memory);
  if (rc == EVUTIL_EAI_FAMILY) return std::make_error_code(std::errc::address_family_not_supported);
  return dns_errc::failed;
}

struct resolve_op;

// One evdns_getaddrinfo request. It lives on the heap until libevent's callback, which comes
// exactly once (with EVUTIL_EAI_CANCEL after a cancel), so nothing libevent holds can dangle.
// While an awaiter waits for it, the two point at each other, and either side may let go
// first: the awaiter when its budget expires, it is cancelled or its frame is destroyed; the
// loop when it is destroyed (through `destroy`, as the loop owns the lookup meanwhile). The
// callback then only frees the lookup. ~loop lets every such callback run before it frees the
// evdns_base (loop::dns_lookup_started/ended).
struct lookup : detail::owned {
  loop* lp = nullptr;
  resolve_op* op = nullptr;
  evdns_getaddrinfo_request* req = nullptr;

  void detach() noexcept;
  static void on_result(int rc, evutil_addrinfo* res, void* arg);
};

// Awaiter for one lookup; lives in resolve()'s frame. The result comes back through the loop's
// ready list, not from inside libevent's evdns callback; the budget (a timer on the loop's
// queue) and a stop request (an event of its own) resume the awaiting coroutine from the loop.
struct resolve_op : detail::waiter, detail::parked_op {
  resolve_op(loop& l, evdns_base* d, std::string h, std::uint16_t p, resolve_options o,
             std::stop_token st)
      : lp(l),
        dns(d),
        host(std::move(h)),
        port(p),
        family(o.family),
        budget(budget_for(o.timeout, l)),
        stop(std::move(st)) {}
  resolve_op(const resolve_op&) = delete;
  resolve_op& operator=(const resolve_op&) = delete;

  // Zero: the resolver's own limit, which also caps a longer one; negative: already expired.
  static duration budget_for(duration asked, const loop& l) noexcept {
    const duration most = detail::loop_access::dns_budget(l);
    if (asked < duration::zero()) return asked;
    return asked > duration::zero() ? std::min(asked, most) : most;
  }
  ~resolve_op() {
    detail::loop_access::unschedule(lp, *this);
    stop_waiting();
    if (pending) pending->detach();
  }

  bool await_ready() {
    if (stop.stop_requested()) {
      ec = errc::cancelled;
      return true;
    }
    auto* lk = new lookup;
    lk->lp = &lp;
    lk->op = this;
    lk->destroy = [](detail::owned* o) noexcept { static_cast<lookup*>(o)->detach(); };
    detail::loop_access::dns_lookup_started(lp, *lk);
    pending = lk;
    evutil_addrinfo hints{};
    hints.ai_family = family;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    evdns_getaddrinfo_request* req =
        evdns_getaddrinfo(dns, host.c_str(), nullptr, &hints, &lookup::on_result, lk);
    // Answered at once (from /etc/hosts, or an immediate failure): the callback already ran
    // and freed `lk`.
    if (!pending) return true;
    lk->req = req;
    return false;
  }

  bool await_suspend(std::coroutine_handle<> h) {
    handle = h;
    detail::loop_access::list_parked(lp, *this, parked_type);
    if (limits.arm(detail::deadline_after(budget), stop)) {
      suspended = true;
      return true;
    }
    stop_waiting();
    ec = std::make_error_code(std::errc::not_enough_memory);
    pending->detach();
    return false;
  }

  // Off the loop's registry and its limits: the lookup is answered, or given up.
  void stop_waiting() noexcept {
    limits.disarm();
    unlist();
  }

  // loop::parked(): the name looked up, and the lookup's budget.
  static void describe(const detail::parked_op& p, parked_op_info& out) {
    const auto& self = static_cast<const resolve_op&>(p);
    out.host = self.host + ':' + std::to_string(self.port);
    if (self.limits.active) detail::describe_timer(self.limits, out);
  }
  static constexpr detail::parked_op_type parked_type{"resolve", &describe};

  result<std::vector<endpoint>> await_resume() {
    if (ec) return ec;
    return std::move(addrs);
  }

  // From lookup::on_result, on the loop's thread (or inline from await_ready).
  void complete(int rc, evutil_addrinfo* res) noexcept {
    if (rc != 0) ec = from_eai(rc);
    for (auto* ai = res; ai && !ec; ai = ai->ai_next) {
      auto ep = endpoint::from_sockaddr(ai->ai_addr, static_cast<socklen_t>(ai->ai_addrlen));
      if (!ep) continue;
      ep.value().set_port(port);
      if (std::find(addrs.begin(), addrs.end(), ep.value()) == addrs.end())
        addrs.push_back(ep.value());
    }
    if (res) evutil_freeaddrinfo(res);
    if (!ec && addrs.empty()) ec = dns_errc::no_address;
    if (suspended) {
      stop_waiting();
      detail::loop_access::schedule(lp, *this);
    }
  }

  // The budget expired or a stop was requested: let go of the lookup and resume now.
  static void on_limit(detail::op_limits& l, errc why) noexcept {
    resolve_op& self = *static_cast<own_limits&>(l).op;
    if (!self.pending) return;  // completed meanwhile; the completion is already queued
    self.ec = why == errc::cancelled ? make_error_code(errc::cancelled)
                                     : make_error_code(dns_errc::timed_out);
    self.pending->detach();
    self.stop_waiting();
    self.handle.resume();
  }

  loop& lp;
  evdns_base* dns;
  std::string host;
  std::uint16_t port;
  int family;
  duration budget;
  std::stop_token stop;
  lookup* pending = nullptr;
  bool suspended = false;
  struct own_limits : detail::op_limits {  // the budget and a stop request
    explicit own_limits(resolve_op* o) noexcept : op_limits(o->lp, &on_limit), op(o) {}
    resolve_op* op;
  } limits{this};
  std::error_code ec;
  std::vector<endpoint> addrs;
};

void lookup::detach() noexcept {
  if (op) {
    op->pending = nullptr;
    op = nullptr;
  }
  detail::loop_access::release(*lp, *this);
  // libevent answers with EVUTIL_EAI_CANCEL through a deferred callback, which frees us. (It
  // also frees the queries' transaction ids at once: a late reply to one can reach a new query
  // that reuses the id, which libevent 2.1 then fails or finds empty.)
  evdns_getaddrinfo_cancel(req);
}

void lookup::on_result(int rc, evutil_addrinfo* res, void* arg) {
  auto* lk = static_cast<lookup*>(arg);
  if (resolve_op* op = lk->op) {
    detail::loop_access::release(*lk->lp, *lk);
    op->pending = nullptr;
    op->complete(rc, res);
  } else if (res) {
    evutil_freeaddrinfo(res);
  }
  detail::loop_access::dns_lookup_ended(*lk->lp);
  delete lk;
}

// What a DNS name can be (RFC 1035 section 2.3.4): at most 253 characters (a trailing dot
// aside), labels of 1 to 63, no NUL (which c_str() would cut the name at).
bool is_host_name(std::string_view name) noexcept {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  if (name.empty() || name.size() > 253 || name.find('\0') != std::string_view::npos) return false;
  std::size_t label = 0;
  for (const char c : name) {
    if (c != '.') {
      if (++label > 63) return false;
    } else if (std::exchange(label, 0) == 0) {
      return false;
    }
  }
  return label > 0;
}

}  // namespace

const std::error_category& dns_category() noexcept {
  static const category instance;
  return instance;
}

task<result<std::vector<endpoint>>> resolve(loop& lp, std::string host, std::uint16_t port,
                                            resolve_options o, std::stop_token stop) {
  co_await detail::internal_frame{};
  if (stop.stop_requested()) co_return errc::cancelled;
  if (o.family != AF_UNSPEC && o.family != AF_INET && o.family != AF_INET6) {
    co_return std::make_error_code(std::errc::invalid_argument);
  }
  if (auto ep = endpoint::parse(host, port)) {
    if (o.family != AF_UNSPEC && ep.value().family() != o.family) co_return dns_errc::no_address;
    co_return std::vector<endpoint>{ep.value()};
  }
  if (!is_host_name(host)) co_return std::make_error_code(std::errc::invalid_argument);
  EVCO_TRY(evdns_base * dns, detail::loop_access::dns(lp));
  // A named awaiter, not a temporary in the co_await expression (see op_options on g++ 12).
  resolve_op op(lp, dns, std::move(host), port, o, std::move(stop));
  co_return co_await op;
}

std::vector<endpoint> interleave_families(std::vector<endpoint> addrs) {
  std::vector<endpoint> v6, v4;
  for (auto& ep : addrs)
    (ep.is_v6() ? v6 : v4).push_back(ep);
  std::vector<endpoint> out;
  detail::alternate(v6, v4, out);
  return out;
}

void detail::alternate(const std::vector<endpoint>& first, const std::vector<endpoint>& second,
                       std::vector<endpoint>& out) {
  out.reserve(out.size() + first.size() + second.size());
  for (std::size_t i = 0; i < std::max(first.size(), second.size()); ++i) {
    if (i < first.size()) out.push_back(first[i]);
    if (i < second.size()) out.push_back(second[i]);
  }
}

}  // namespace evco
