// The workloads on raw libevent: plain bufferevent callbacks, one event_base, both ends on it.
// Written as a libevent user would: evconnlistener for accept, bufferevent_socket_connect,
// watermarks instead of polling, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS everywhere.

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>

#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "common.hpp"

namespace bench::libevent_impl {
namespace {

constexpr int bev_flags = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS;

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = htons(port);
  return sa;
}

// What every scenario's context starts with: the base, the listener, the first failure.
struct run_ctx {
  event_base* base = nullptr;
  evconnlistener* lst = nullptr;
  sockaddr_storage addr{};  // where the listener is: 127.0.0.1:port, or a Unix socket
  socklen_t addr_len = 0;
  std::string error;
  clock::time_point t0{}, t1{};

  void fail(std::string why) {
    if (error.empty()) error = std::move(why);
    event_base_loopbreak(base);
  }
  void close_listener() {
    if (lst) evconnlistener_free(std::exchange(lst, nullptr));
  }
  // A Unix socket has no TCP_NODELAY.
  void no_delay(int fd) const {
    if (addr.ss_family != AF_UNIX) set_nodelay(fd);
  }
};

// 127.0.0.1:0, or a fresh abstract Unix name; returns the address's length.
socklen_t listen_address(pingpong_params::transport via, sockaddr_storage& at) {
  if (via == pingpong_params::transport::unix_socket) {
    sockaddr_un un;
    const socklen_t len = unix_address(unix_name(), un);
    std::memcpy(&at, &un, sizeof un);
    return len;
  }
  const sockaddr_in in = loopback(0);
  std::memcpy(&at, &in, sizeof in);
  return sizeof in;
}

// Creates the base and a listener on 127.0.0.1:0 (or a Unix socket) that calls `cb` with `ctx`.
bool open(run_ctx& ctx, evconnlistener_cb cb,
          pingpong_params::transport via = pingpong_params::transport::tcp) {
  ctx.base = event_base_new();
  if (!ctx.base) return false;
  sockaddr_storage sa{};
  const socklen_t sa_len = listen_address(via, sa);
  ctx.lst = evconnlistener_new_bind(ctx.base, cb, &ctx, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                    4096, reinterpret_cast<sockaddr*>(&sa), sa_len);
  if (!ctx.lst) return false;
  ctx.addr_len = sizeof ctx.addr;
  return getsockname(evconnlistener_get_fd(ctx.lst), reinterpret_cast<sockaddr*>(&ctx.addr),
                     &ctx.addr_len) == 0;
}

void close(run_ctx& ctx) {
  ctx.close_listener();
  if (ctx.base) event_base_free(ctx.base);
}

bufferevent* connect_to(run_ctx& ctx, bufferevent_data_cb rd, bufferevent_data_cb wr,
                        bufferevent_event_cb ev, void* arg) {
  bufferevent* bev = bufferevent_socket_new(ctx.base, -1, bev_flags);
  if (!bev) return nullptr;
  bufferevent_setcb(bev, rd, wr, ev, arg);
  bufferevent_enable(bev, EV_READ | EV_WRITE);
  if (bufferevent_socket_connect(bev, reinterpret_cast<sockaddr*>(&ctx.addr), ctx.addr_len) != 0) {
    bufferevent_free(bev);
    return nullptr;
  }
  return bev;
}

// --- the echo server shared by pingpong and idle ------------------------------------------

struct echo_ctx : run_ctx {
  int accepted = 0;
  int servers_closed = 0;
  virtual void on_accepted() {}
  virtual ~echo_ctx() = default;
};

void echo_read(bufferevent* bev, void*) {
  bufferevent_write_buffer(bev, bufferevent_get_input(bev));
}

void echo_event(bufferevent* bev, short what, void* arg) {
  auto& ctx = *static_cast<echo_ctx*>(arg);
  if (what & BEV_EVENT_ERROR) ctx.fail("server: " + errno_text("socket error"));
  if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
    bufferevent_free(bev);
    ++ctx.servers_closed;
  }
}

void echo_accept(evconnlistener*, evutil_socket_t fd, sockaddr*, int, void* arg) {
  auto& ctx = *static_cast<echo_ctx*>(static_cast<run_ctx*>(arg));
  ctx.no_delay(fd);
  bufferevent* bev = bufferevent_socket_new(ctx.base, fd, bev_flags);
  if (!bev) return ctx.fail("server: bufferevent_socket_new");
  bufferevent_setcb(bev, echo_read, nullptr, echo_event, &ctx);
  bufferevent_enable(bev, EV_READ | EV_WRITE);
  ++ctx.accepted;
  ctx.on_accepted();
}

// idle_memory's frame-buffer style: each server connection holds a 1 KiB buffer of its own, which
// the input is read into and written back from (the evbuffers still take the bytes first).
struct echo_conn_1k {
  echo_ctx* ctx;
  unsigned char buf[echo_buf_size];
};

void echo_read_1k(bufferevent* bev, void* arg) {
  auto* c = static_cast<echo_conn_1k*>(arg);
  while (const std::size_t n = bufferevent_read(bev, c->buf, sizeof c->buf))
    bufferevent_write(bev, c->buf, n);
}

void echo_event_1k(bufferevent* bev, short what, void* arg) {
  auto* c = static_cast<echo_conn_1k*>(arg);
  echo_ctx& ctx = *c->ctx;
  if (what & BEV_EVENT_ERROR) ctx.fail("server: " + errno_text("socket error"));
  if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
    bufferevent_free(bev);
    delete c;
    ++ctx.servers_closed;
  }
}

void echo_accept_1k(evconnlistener*, evutil_socket_t fd, sockaddr*, int, void* arg) {
  auto& ctx = *static_cast<echo_ctx*>(static_cast<run_ctx*>(arg));
  ctx.no_delay(fd);
  bufferevent* bev = bufferevent_socket_new(ctx.base, fd, bev_flags);
  if (!bev) return ctx.fail("server: bufferevent_socket_new");
  bufferevent_setcb(bev, echo_read_1k, nullptr, echo_event_1k, new echo_conn_1k{&ctx, {}});
  bufferevent_enable(bev, EV_READ | EV_WRITE);
  ++ctx.accepted;
  ctx.on_accepted();
}

// --- pingpong ---------------------------------------------------------------------------------

struct pp_ctx;
struct pp_client {
  pp_ctx* ctx;
  bufferevent* bev;
  std::uint32_t id;
  int i;
  unsigned char out[msg_size];
};

struct pp_ctx final : echo_ctx {
  pingpong_params p{};
  bool steady = false;
  std::vector<pp_client> clients;
  int connected = 0;
  int finished = 0;
  heap_counters h0{}, h1{};

  void send(pp_client& c) {
    fill_message(c.out, c.id, static_cast<std::uint32_t>(c.i));
    bufferevent_write(c.bev, c.out, msg_size);
  }
  void maybe_start() {
    if (connected != p.conns || accepted != p.conns) return;
    t0 = clock::now();
    if (steady && p.warmup == 0) h0 = heap_now();
    for (auto& c : clients)
      send(c);
  }
  void on_accepted() override { maybe_start(); }
};

void pp_read(bufferevent* bev, void* arg) {
  auto& c = *static_cast<pp_client*>(arg);
  pp_ctx& ctx = *c.ctx;
  evbuffer* in = bufferevent_get_input(bev);
  unsigned char buf[msg_size];
  while (evbuffer_get_length(in) >= msg_size) {
    evbuffer_remove(in, buf, msg_size);
    if (std::memcmp(buf, c.out, msg_size) != 0) return ctx.fail("client: echo mismatch");
    ++c.i;
    if (c.i == ctx.p.warmup && ctx.steady) {
      ctx.h0 = heap_now();
      ctx.t0 = clock::now();
    }
    if (c.i == ctx.p.warmup + ctx.p.count) {
      if (evbuffer_get_length(in) != 0) return ctx.fail("client: extra bytes");
      bufferevent_free(bev);
      c.bev = nullptr;
      if (++ctx.finished == ctx.p.conns) {
        ctx.t1 = clock::now();
        ctx.h1 = heap_now();
        ctx.close_listener();
      }
      return;
    }
    ctx.send(c);
  }
}

void pp_event(bufferevent* bev, short what, void* arg) {
  auto& c = *static_cast<pp_client*>(arg);
  if (what & BEV_EVENT_CONNECTED) {
    c.ctx->no_delay(bufferevent_getfd(bev));
    ++c.ctx->connected;
    c.ctx->maybe_start();
    return;
  }
  c.ctx->fail("client: connection ended early");
}

// --- udp pingpong -----------------------------------------------------------------------------

// Raw event callbacks on the two sockets: the server sends each datagram back to its sender,
// the client (connected) checks the echo and sends the next.
struct udp_ctx {
  event_base* base = nullptr;
  pingpong_params p{};
  int i = 0;
  std::string error;
  clock::time_point t0{}, t1{};
  heap_counters h0{}, h1{};
  unsigned char out[msg_size] = {};
  unsigned char buf[echo_buf_size] = {};

  void fail(std::string why) {
    if (error.empty()) error = std::move(why);
    event_base_loopbreak(base);
  }
  bool send(int fd) {
    fill_message(out, 0, static_cast<std::uint32_t>(i));
    if (::send(fd, out, msg_size, 0) == static_cast<ssize_t>(msg_size)) return true;
    fail(errno_text("client send"));
    return false;
  }
};

void udp_server_read(evutil_socket_t fd, short, void* arg) {
  auto& ctx = *static_cast<udp_ctx*>(arg);
  sockaddr_storage from{};
  socklen_t len = sizeof from;
  const ssize_t n =
      recvfrom(fd, ctx.buf, sizeof ctx.buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
  if (n < 0) {
    if (errno != EAGAIN) ctx.fail(errno_text("server recvfrom"));
    return;
  }
  if (sendto(fd, ctx.buf, static_cast<std::size_t>(n), 0, reinterpret_cast<sockaddr*>(&from),
             len) != n) {
    ctx.fail(errno_text("server sendto"));
  }
}

void udp_client_read(evutil_socket_t fd, short, void* arg) {
  auto& ctx = *static_cast<udp_ctx*>(arg);
  unsigned char in[msg_size];
  const ssize_t n = recv(fd, in, sizeof in, 0);
  if (n < 0) {
    if (errno != EAGAIN) ctx.fail(errno_text("client recv"));
    return;
  }
  if (n != static_cast<ssize_t>(msg_size) || std::memcmp(in, ctx.out, msg_size) != 0) {
    return ctx.fail("client: echo mismatch");
  }
  ++ctx.i;
  if (ctx.i == ctx.p.warmup) {
    ctx.h0 = heap_now();
    ctx.t0 = clock::now();
  }
  if (ctx.i == ctx.p.warmup + ctx.p.count) {
    ctx.t1 = clock::now();
    ctx.h1 = heap_now();
    event_base_loopbreak(ctx.base);
    return;
  }
  ctx.send(fd);
}

// --- stream throughput ------------------------------------------------------------------------

struct tp_ctx final : run_ctx {
  std::uint64_t total = 0;
  std::uint64_t sent = 0;
  std::uint64_t chunk = 0;
  bool all_queued = false;
  std::uint64_t got = 0;
  bool receiver_done = false;
  checksum ck;
  std::vector<unsigned char> buf = std::vector<unsigned char>(chunk_size);
};

void tp_fill(bufferevent* bev, tp_ctx& ctx) {
  evbuffer* out = bufferevent_get_output(bev);
  const stream_source& src = source();
  while (ctx.sent < ctx.total && evbuffer_get_length(out) < write_high) {
    const auto n =
        static_cast<std::size_t>(std::min<std::uint64_t>(chunk_size, ctx.total - ctx.sent));
    bufferevent_write(bev, src.chunk(ctx.chunk++), n);
    ctx.sent += n;
  }
  if (ctx.sent == ctx.total && !ctx.all_queued) {
    ctx.all_queued = true;
    bufferevent_setwatermark(bev, EV_WRITE, 0, 0);  // the write callback once it is empty
  }
}

void tp_write(bufferevent* bev, void* arg) {
  auto& ctx = *static_cast<tp_ctx*>(arg);
  if (!ctx.all_queued) return tp_fill(bev, ctx);
  if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) bufferevent_free(bev);  // FIN
}

void tp_client_event(bufferevent* bev, short what, void* arg) {
  auto& ctx = *static_cast<tp_ctx*>(arg);
  if (what & BEV_EVENT_CONNECTED) {
    set_nodelay(bufferevent_getfd(bev));
    bufferevent_setwatermark(bev, EV_WRITE, write_low, 0);
    ctx.t0 = clock::now();
    tp_fill(bev, ctx);
    return;
  }
  ctx.fail("sender: " + errno_text("connection failed"));
}

void tp_read(bufferevent* bev, void* arg) {
  auto& ctx = *static_cast<tp_ctx*>(arg);
  evbuffer* in = bufferevent_get_input(bev);
  for (;;) {
    const int n = evbuffer_remove(in, ctx.buf.data(), chunk_size);
    if (n <= 0) break;
    const auto un = static_cast<std::uint64_t>(n);
    if (un > ctx.total - ctx.got) return ctx.fail("receiver: bytes beyond the end");
    ctx.ck.update(ctx.buf.data(), static_cast<std::size_t>(n));
    ctx.got += un;
  }
  if (ctx.got == ctx.total && ctx.t1 == clock::time_point{}) ctx.t1 = clock::now();
}

void tp_server_event(bufferevent* bev, short what, void* arg) {
  auto& ctx = *static_cast<tp_ctx*>(arg);
  if (what & BEV_EVENT_EOF) {
    if (ctx.got != ctx.total) {
      ctx.fail("receiver: eof after " + std::to_string(ctx.got) + " bytes");
    } else if (ctx.ck.value() != expected_checksum(ctx.total)) {
      ctx.fail("receiver: checksum mismatch");
    } else {
      ctx.receiver_done = true;
    }
  } else {
    ctx.fail("receiver: " + errno_text("socket error"));
  }
  bufferevent_free(bev);
  ctx.close_listener();
}

void tp_accept(evconnlistener*, evutil_socket_t fd, sockaddr*, int, void* arg) {
  auto& ctx = *static_cast<tp_ctx*>(static_cast<run_ctx*>(arg));
  set_nodelay(fd);
  bufferevent* bev = bufferevent_socket_new(ctx.base, fd, bev_flags);
  if (!bev) return ctx.fail("receiver: bufferevent_socket_new");
  bufferevent_setcb(bev, tp_read, nullptr, tp_server_event, &ctx);
  bufferevent_enable(bev, EV_READ | EV_WRITE);
}

// --- connect rate -----------------------------------------------------------------------------

struct cr_ctx final : run_ctx {
  int count = 0;
  int accepted = 0;
  int eofs = 0;
};

void cr_start(cr_ctx& ctx);

void cr_unexpected_read(bufferevent*, void* arg) {
  static_cast<cr_ctx*>(arg)->fail("client: unexpected data");
}

void cr_event(bufferevent* bev, short what, void* arg) {
  auto& ctx = *static_cast<cr_ctx*>(arg);
  if (what & BEV_EVENT_CONNECTED) return;
  if (!(what & BEV_EVENT_EOF)) return ctx.fail("client: " + errno_text("socket error"));
  bufferevent_free(bev);
  if (++ctx.eofs < ctx.count) return cr_start(ctx);
  ctx.t1 = clock::now();
  ctx.close_listener();
}

void cr_start(cr_ctx& ctx) {
  if (!connect_to(ctx, cr_unexpected_read, nullptr, cr_event, &ctx)) ctx.fail("client: connect");
}

// The server side of a connection wraps it like any server would, then closes it at once.
void cr_accept(evconnlistener*, evutil_socket_t fd, sockaddr*, int, void* arg) {
  auto& ctx = *static_cast<cr_ctx*>(static_cast<run_ctx*>(arg));
  bufferevent* bev = bufferevent_socket_new(ctx.base, fd, bev_flags);
  if (!bev) return ctx.fail("server: bufferevent_socket_new");
  bufferevent_free(bev);
  ++ctx.accepted;
}

// --- idle connections -------------------------------------------------------------------------

struct idle_ctx;
struct idle_client {
  idle_ctx* ctx;
  bufferevent* bev;
  std::uint32_t id;
  unsigned char* buf;  // frame-buffer style: the 1 KiB after this struct; else null
};
// The frame-buffer style's client: a 1 KiB buffer of its own.
struct idle_client_1k {
  idle_client c;
  unsigned char buf[echo_buf_size];
};

struct idle_ctx final : echo_ctx {
  int conns = 0;
  int connected = 0;
  int verified = 0;
  memory_mark before;
  run_result mem;
  std::vector<idle_client*> clients;
  unsigned char bytes[256];

  void maybe_measure() {
    if (connected != conns || accepted != conns) return;
    // Both ends have a read callback armed and nothing else to do: measure, then wake them.
    per_conn(mem, before, memory_now(), conns);
    for (auto* c : clients)
      bufferevent_write(c->bev, &bytes[c->id % 256], 1);
  }
  void on_accepted() override { maybe_measure(); }
};

void idle_read(bufferevent* bev, void* arg) {
  auto* c = static_cast<idle_client*>(arg);
  idle_ctx& ctx = *c->ctx;
  unsigned char dynamic[msg_size];  // on the stack: shared by every connection
  unsigned char* b = c->buf ? c->buf : dynamic;
  const std::size_t n = bufferevent_read(bev, b, c->buf ? echo_buf_size : sizeof dynamic);
  if (n != 1 || b[0] != static_cast<unsigned char>(c->id % 256))
    return ctx.fail("client: echo mismatch");
  if (++ctx.verified == ctx.conns) {
    for (auto*& cl : ctx.clients) {
      bufferevent_free(cl->bev);
      if (cl->buf) {
        delete reinterpret_cast<idle_client_1k*>(std::exchange(cl, nullptr));
      } else {
        delete std::exchange(cl, nullptr);
      }
    }
    ctx.close_listener();
  }
}

void idle_event(bufferevent* bev, short what, void* arg) {
  auto* c = static_cast<idle_client*>(arg);
  if (what & BEV_EVENT_CONNECTED) {
    set_nodelay(bufferevent_getfd(bev));
    ++c->ctx->connected;
    c->ctx->maybe_measure();
    return;
  }
  c->ctx->fail("client: connection ended early");
}

run_result finish(run_ctx& ctx, int rc) {
  run_result r;
  if (rc < 0) {
    r.error = "libevent: event_base_dispatch failed";
  } else if (!ctx.error.empty()) {
    r.error = "libevent: " + ctx.error;
  } else {
    r.ok = true;
    r.seconds = seconds_between(ctx.t0, ctx.t1);
  }
  return r;
}

}  // namespace

run_result udp_pingpong(const pingpong_params& p) {
  udp_ctx ctx;
  ctx.p = p;
  std::uint16_t server_port = 0, client_port = 0;
  const int server = udp_loopback(server_port);
  const int client = server >= 0 ? udp_loopback(client_port, server_port) : -1;
  ctx.base = event_base_new();
  event* server_ev = nullptr;
  event* client_ev = nullptr;
  if (ctx.base && server >= 0 && client >= 0) {
    server_ev = event_new(ctx.base, server, EV_READ | EV_PERSIST, udp_server_read, &ctx);
    client_ev = event_new(ctx.base, client, EV_READ | EV_PERSIST, udp_client_read, &ctx);
  }
  if (!server_ev || !client_ev || event_add(server_ev, nullptr) != 0 ||
      event_add(client_ev, nullptr) != 0) {
    ctx.error = "setup failed";
  } else {
    if (p.warmup == 0) {
      ctx.h0 = heap_now();
      ctx.t0 = clock::now();
    }
    if (ctx.send(client)) event_base_dispatch(ctx.base);
  }
  if (server_ev) event_free(server_ev);
  if (client_ev) event_free(client_ev);
  if (ctx.base) event_base_free(ctx.base);
  for (int fd : {server, client})
    if (fd >= 0) ::close(fd);
  if (!ctx.error.empty()) return bench::fail("libevent: " + ctx.error);
  if (ctx.i != p.warmup + p.count) return bench::fail("libevent: the client did not finish");
  run_result r;
  r.ok = true;
  r.seconds = seconds_between(ctx.t0, ctx.t1);
  r.items = static_cast<std::uint64_t>(p.count);
  r.steady_news = ctx.h1.news - ctx.h0.news;
  r.steady_event_mallocs = ctx.h1.event_mallocs - ctx.h0.event_mallocs;
  r.steady_round_trips = static_cast<std::uint64_t>(p.count);
  return r;
}

run_result pingpong(const pingpong_params& p) {
  pp_ctx ctx;
  ctx.p = p;
  ctx.steady = p.conns == 1;
  if (!open(ctx, echo_accept, p.via)) return bench::fail("libevent: listener setup");
  ctx.clients.resize(static_cast<std::size_t>(p.conns));
  for (int i = 0; i < p.conns; ++i) {
    auto& c = ctx.clients[static_cast<std::size_t>(i)];
    c = pp_client{&ctx, nullptr, static_cast<std::uint32_t>(i), 0, {}};
    c.bev = connect_to(ctx, pp_read, nullptr, pp_event, &c);
    if (!c.bev) return bench::fail("libevent: connect");
    bufferevent_setwatermark(c.bev, EV_READ, msg_size, 0);
  }
  const int rc = event_base_dispatch(ctx.base);
  auto r = finish(ctx, rc);
  close(ctx);
  if (!r.ok) return r;
  if (ctx.finished != p.conns || ctx.servers_closed != p.conns) {
    return bench::fail("libevent: not every connection finished");
  }
  r.items = static_cast<std::uint64_t>(p.conns) * static_cast<std::uint64_t>(p.count);
  if (ctx.steady) {
    r.steady_news = ctx.h1.news - ctx.h0.news;
    r.steady_event_mallocs = ctx.h1.event_mallocs - ctx.h0.event_mallocs;
    r.steady_round_trips = static_cast<std::uint64_t>(p.count);
  }
  return r;
}

run_result throughput(std::uint64_t total_bytes) {
  tp_ctx ctx;
  ctx.total = total_bytes;
  if (!open(ctx, tp_accept)) return bench::fail("libevent: listener setup");
  if (!connect_to(ctx, nullptr, tp_write, tp_client_event, &ctx)) {
    return bench::fail("libevent: connect");
  }
  const int rc = event_base_dispatch(ctx.base);
  auto r = finish(ctx, rc);
  close(ctx);
  if (!r.ok) return r;
  if (!ctx.receiver_done) return bench::fail("libevent: receiver did not finish");
  r.items = total_bytes;
  return r;
}

run_result connect_rate(int count) {
  cr_ctx ctx;
  ctx.count = count;
  if (!open(ctx, cr_accept)) return bench::fail("libevent: listener setup");
  ctx.t0 = clock::now();
  cr_start(ctx);
  const int rc = event_base_dispatch(ctx.base);
  auto r = finish(ctx, rc);
  close(ctx);
  if (!r.ok) return r;
  if (ctx.accepted != count || ctx.eofs != count)
    return bench::fail("libevent: connection count mismatch");
  r.items = static_cast<std::uint64_t>(count);
  return r;
}

run_result idle_memory(const idle_params& p) {
  idle_ctx ctx;
  ctx.conns = p.conns;
  for (int i = 0; i < 256; ++i)
    ctx.bytes[i] = static_cast<unsigned char>(i);
  const bool dynamic = p.reader == idle_params::dynamic;
  if (!open(ctx, dynamic ? echo_accept : echo_accept_1k)) {
    return bench::fail("libevent: listener setup");
  }
  ctx.clients.reserve(static_cast<std::size_t>(p.conns));
  ctx.before = memory_before();
  for (int i = 0; i < p.conns; ++i) {
    const auto id = static_cast<std::uint32_t>(i);
    idle_client* c = nullptr;
    if (dynamic) {
      c = new idle_client{&ctx, nullptr, id, nullptr};
    } else {
      auto* c1k = new idle_client_1k{{&ctx, nullptr, id, nullptr}, {}};
      c1k->c.buf = c1k->buf;
      c = &c1k->c;
    }
    ctx.clients.push_back(c);
    c->bev = connect_to(ctx, idle_read, nullptr, idle_event, c);
    if (!c->bev) return bench::fail("libevent: connect");
  }
  const int rc = event_base_dispatch(ctx.base);
  auto r = finish(ctx, rc);
  close(ctx);
  if (!r.ok) return r;
  if (ctx.verified != p.conns || ctx.servers_closed != p.conns)
    return bench::fail("libevent: idle echo count");
  r.bytes_per_conn = ctx.mem.bytes_per_conn;
  r.rss_bytes_per_conn = ctx.mem.rss_bytes_per_conn;
  r.items = static_cast<std::uint64_t>(p.conns);
  return r;
}

}  // namespace bench::libevent_impl
