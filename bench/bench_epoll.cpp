// The workloads on a minimal hand-written epoll loop, C style: the syscall-limit reference.
// Level-triggered, no buffering layer. Throughput runs two loops and keeps the faster: the
// sender writes one chunk per readiness event and the receiver reads until a short read, or
// both go on until EAGAIN.

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "common.hpp"

namespace bench::epoll_impl {
namespace {

enum kind { k_listen, k_server, k_client, k_sender, k_receiver };

struct conn {
  int kind;
  int fd;
};

struct server_conn {
  conn c;
  unsigned char buf[echo_buf_size];
};

struct client_conn {
  conn c;
  std::uint32_t id;
  int i;
  std::size_t have;
  unsigned char out[msg_size];
  unsigned char in[msg_size];
};

struct ep_ctx {
  int epfd = -1;
  std::string error;
  clock::time_point t0{}, t1{};
  int open_conns = 0;

  void fail(std::string why) {
    if (error.empty()) error = std::move(why);
  }
};

bool watch(ep_ctx& ctx, conn* c, std::uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = c;
  if (epoll_ctl(ctx.epfd, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
    ctx.fail(errno_text("epoll_ctl"));
    return false;
  }
  return true;
}

// Where a listener is: 127.0.0.1:port, or a Unix socket.
struct address {
  sockaddr_storage sa{};
  socklen_t len = 0;
  sockaddr* get() { return reinterpret_cast<sockaddr*>(&sa); }
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&sa); }
};

// A connected pair over the listener at `to`: blocking connect (loopback TCP and Unix sockets
// complete it at once), then accept; both ends end up non-blocking, TCP ones with TCP_NODELAY.
bool make_pair(ep_ctx& ctx, int lfd, const address& to, int& cfd, int& sfd) {
  cfd = socket(to.sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (cfd < 0) {
    ctx.fail(errno_text("socket"));
    return false;
  }
  if (connect(cfd, to.get(), to.len) != 0) {
    ctx.fail(errno_text("connect"));
    return false;
  }
  sfd = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (sfd < 0) {
    ctx.fail(errno_text("accept4"));
    return false;
  }
  set_nonblocking(cfd);
  if (to.sa.ss_family != AF_UNIX) {  // a Unix socket has no TCP_NODELAY
    set_nodelay(cfd);
    set_nodelay(sfd);
  }
  return true;
}

server_conn* new_server(int fd) {
  auto* s = static_cast<server_conn*>(std::malloc(sizeof(server_conn)));
  s->c = conn{k_server, fd};
  return s;
}

// The echo server: read what is there, write it back, close on eof.
void server_readable(ep_ctx& ctx, server_conn* s) {
  const ssize_t n = read(s->c.fd, s->buf, sizeof s->buf);
  if (n > 0) {
    if (write(s->c.fd, s->buf, static_cast<std::size_t>(n)) != n) ctx.fail("server: short write");
    return;
  }
  if (n < 0 && errno == EAGAIN) return;
  if (n < 0) ctx.fail(errno_text("server read"));
  close(s->c.fd);
  std::free(s);
  --ctx.open_conns;
}

bool send_message(ep_ctx& ctx, client_conn* c) {
  fill_message(c->out, c->id, static_cast<std::uint32_t>(c->i));
  if (write(c->c.fd, c->out, msg_size) != static_cast<ssize_t>(msg_size)) {
    ctx.fail("client: short write");
    return false;
  }
  return true;
}

// The loop: until nothing is open any more or a failure.
bool run(ep_ctx& ctx, void (*dispatch)(ep_ctx&, conn*, std::uint32_t)) {
  epoll_event evs[256];
  while (ctx.open_conns > 0 && ctx.error.empty()) {
    const int n = epoll_wait(ctx.epfd, evs, 256, 1000);
    if (n < 0) {
      if (errno == EINTR) continue;
      ctx.fail(errno_text("epoll_wait"));
      return false;
    }
    for (int k = 0; k < n && ctx.error.empty(); ++k) {
      dispatch(ctx, static_cast<conn*>(evs[k].data.ptr), evs[k].events);
    }
  }
  return ctx.error.empty();
}

// A non-blocking listening socket on a fresh abstract Unix name.
int listen_unix(int backlog = 4096) {
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_un sa;
  const socklen_t len = unix_address(unix_name(), sa);
  if (bind(fd, reinterpret_cast<sockaddr*>(&sa), len) != 0 || listen(fd, backlog) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

struct scoped_ctx {
  ep_ctx ctx;
  int lfd = -1;
  std::uint16_t port = 0;
  address at;  // the listener's
  explicit scoped_ctx(pingpong_params::transport via = pingpong_params::transport::tcp) {
    ctx.epfd = epoll_create1(EPOLL_CLOEXEC);
    lfd = via == pingpong_params::transport::unix_socket ? listen_unix() : listen_loopback(port);
    at.len = sizeof at.sa;
    if (ctx.epfd < 0 || lfd < 0 || getsockname(lfd, at.get(), &at.len) != 0) {
      ctx.fail(errno_text("setup"));
    }
  }
  ~scoped_ctx() {
    if (lfd >= 0) close(lfd);
    if (ctx.epfd >= 0) close(ctx.epfd);
  }
  scoped_ctx(const scoped_ctx&) = delete;
  scoped_ctx& operator=(const scoped_ctx&) = delete;
};

run_result finish(ep_ctx& ctx) {
  run_result r;
  if (!ctx.error.empty()) {
    r.error = "epoll: " + ctx.error;
    return r;
  }
  r.ok = true;
  r.seconds = seconds_between(ctx.t0, ctx.t1);
  return r;
}

// --- pingpong ---------------------------------------------------------------------------------

struct pp_state {
  pingpong_params p;
  bool steady;
  int finished;
  heap_counters h0, h1;
};
pp_state pp;

void pp_dispatch(ep_ctx& ctx, conn* c, std::uint32_t) {
  if (c->kind == k_server) return server_readable(ctx, reinterpret_cast<server_conn*>(c));
  auto* cl = reinterpret_cast<client_conn*>(c);
  const ssize_t n = read(c->fd, cl->in + cl->have, msg_size - cl->have);
  if (n <= 0) {
    if (n < 0 && errno == EAGAIN) return;
    return ctx.fail(n == 0 ? "client: early eof" : errno_text("client read"));
  }
  cl->have += static_cast<std::size_t>(n);
  if (cl->have < msg_size) return;
  cl->have = 0;
  if (std::memcmp(cl->in, cl->out, msg_size) != 0) return ctx.fail("client: echo mismatch");
  ++cl->i;
  if (cl->i == pp.p.warmup && pp.steady) {
    pp.h0 = heap_now();
    ctx.t0 = clock::now();
  }
  if (cl->i == pp.p.warmup + pp.p.count) {
    close(c->fd);
    std::free(cl);
    --ctx.open_conns;
    if (++pp.finished == pp.p.conns) {
      ctx.t1 = clock::now();
      pp.h1 = heap_now();
    }
    return;
  }
  send_message(ctx, cl);
}

// --- udp pingpong -----------------------------------------------------------------------------

struct udp_state {
  pingpong_params p;
  int i;
  heap_counters h0, h1;
  unsigned char out[msg_size];
  unsigned char buf[echo_buf_size];
};
udp_state udp;

bool udp_send(ep_ctx& ctx, int fd) {
  fill_message(udp.out, 0, static_cast<std::uint32_t>(udp.i));
  if (send(fd, udp.out, msg_size, 0) != static_cast<ssize_t>(msg_size)) {
    ctx.fail(errno_text("client send"));
    return false;
  }
  return true;
}

// The server (k_server) sends each datagram back to its sender; the client (k_client, a
// connected socket) checks the echo and sends the next. One datagram per readiness event.
void udp_dispatch(ep_ctx& ctx, conn* c, std::uint32_t) {
  if (c->kind == k_server) {
    sockaddr_storage from{};
    socklen_t len = sizeof from;
    const ssize_t n =
        recvfrom(c->fd, udp.buf, sizeof udp.buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
    if (n < 0) {
      if (errno == EAGAIN) return;
      return ctx.fail(errno_text("server recvfrom"));
    }
    if (sendto(c->fd, udp.buf, static_cast<std::size_t>(n), 0, reinterpret_cast<sockaddr*>(&from),
               len) != n) {
      ctx.fail(errno_text("server sendto"));
    }
    return;
  }
  unsigned char in[msg_size];
  const ssize_t n = recv(c->fd, in, sizeof in, 0);
  if (n < 0) {
    if (errno == EAGAIN) return;
    return ctx.fail(errno_text("client recv"));
  }
  if (n != static_cast<ssize_t>(msg_size) || std::memcmp(in, udp.out, msg_size) != 0) {
    return ctx.fail("client: echo mismatch");
  }
  ++udp.i;
  if (udp.i == udp.p.warmup) {
    udp.h0 = heap_now();
    ctx.t0 = clock::now();
  }
  if (udp.i == udp.p.warmup + udp.p.count) {
    ctx.t1 = clock::now();
    udp.h1 = heap_now();
    ctx.open_conns = 0;  // ends run()
    return;
  }
  udp_send(ctx, c->fd);
}

// --- throughput -------------------------------------------------------------------------------

struct tp_state {
  std::uint64_t total;
  std::uint64_t sent;
  std::uint64_t chunk;
  std::size_t off;  // within the current chunk
  std::uint64_t got;
  checksum ck;
  unsigned char* buf;
  bool receiver_done;
  // The other loop: the sender writes and the receiver reads until EAGAIN.
  bool until_eagain;
};
tp_state tp;

void tp_dispatch(ep_ctx& ctx, conn* c, std::uint32_t) {
  if (c->kind == k_sender) {
    const stream_source& src = source();
    // One write per readiness event, as the reader does one read (the bytes stay cache-hot),
    // or writes until EAGAIN: throughput() runs both and keeps the faster.
    while (tp.sent < tp.total) {
      const std::uint64_t start = tp.chunk * chunk_size;
      const auto len =
          static_cast<std::size_t>(std::min<std::uint64_t>(chunk_size, tp.total - start));
      const ssize_t w = write(c->fd, src.chunk(tp.chunk) + tp.off, len - tp.off);
      if (w < 0) {
        if (errno == EAGAIN) return;
        return ctx.fail(errno_text("sender write"));
      }
      tp.off += static_cast<std::size_t>(w);
      tp.sent += static_cast<std::uint64_t>(w);
      if (tp.off == len) {
        ++tp.chunk;
        tp.off = 0;
      }
      if (!tp.until_eagain && tp.sent < tp.total) return;
    }
    close(c->fd);  // everything is in the kernel: FIN follows it
    std::free(c);
    --ctx.open_conns;
    return;
  }
  // Read until the socket is drained (a short read, or EAGAIN), so the sender's backlog stays
  // small.
  for (;;) {
    const ssize_t n = read(c->fd, tp.buf, chunk_size);
    if (n < 0) {
      if (errno == EAGAIN) return;
      return ctx.fail(errno_text("receiver read"));
    }
    if (n == 0) {
      if (tp.got != tp.total) return ctx.fail("receiver: eof after " + std::to_string(tp.got));
      if (tp.ck.value() != expected_checksum(tp.total))
        return ctx.fail("receiver: checksum mismatch");
      tp.receiver_done = true;
      close(c->fd);
      std::free(c);
      --ctx.open_conns;
      return;
    }
    const auto un = static_cast<std::uint64_t>(n);
    if (un > tp.total - tp.got) return ctx.fail("receiver: bytes beyond the end");
    tp.ck.update(tp.buf, static_cast<std::size_t>(n));
    tp.got += un;
    if (tp.got == tp.total) ctx.t1 = clock::now();
    if (!tp.until_eagain && static_cast<std::size_t>(n) < chunk_size) return;
  }
}

// --- connect rate -----------------------------------------------------------------------------

struct cr_state {
  int count;
  int accepted;
  int eofs;
  std::uint16_t port;
  conn listen;
};
cr_state cr;

bool cr_start(ep_ctx& ctx) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ctx.fail(errno_text("socket"));
    return false;
  }
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = htons(cr.port);
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 && errno != EINPROGRESS) {
    ctx.fail(errno_text("connect"));
    close(fd);
    return false;
  }
  auto* c = static_cast<conn*>(std::malloc(sizeof(conn)));
  *c = conn{k_client, fd};
  ++ctx.open_conns;
  return watch(ctx, c, EPOLLIN);  // readable once the server's FIN (or an error) arrives
}

void cr_dispatch(ep_ctx& ctx, conn* c, std::uint32_t) {
  if (c->kind == k_listen) {
    for (;;) {
      const int fd = accept4(c->fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EAGAIN) return;
        return ctx.fail(errno_text("accept4"));
      }
      close(fd);
      ++cr.accepted;
    }
  }
  unsigned char buf[16];
  const ssize_t n = read(c->fd, buf, sizeof buf);
  if (n < 0 && errno == EAGAIN) return;
  if (n != 0) return ctx.fail(n > 0 ? "client: unexpected data" : errno_text("client read"));
  close(c->fd);
  std::free(c);
  --ctx.open_conns;
  if (++cr.eofs < cr.count) {
    cr_start(ctx);
    return;
  }
  ctx.t1 = clock::now();
}

// --- idle -------------------------------------------------------------------------------------

// Both ends of an idle connection. In the frame-buffer style each holds a 1 KiB buffer (right
// after the struct); in the dynamic one, none: reads go into one buffer shared by every
// connection.
struct idle_conn {
  conn c;
  std::uint32_t id;
  unsigned char* buf;
};

struct idle_state {
  int conns;
  int verified;
  bool frame_buffer;
  idle_conn** clients;
  unsigned char shared_buf[echo_buf_size];
};
idle_state idle;

idle_conn* new_idle_conn(int kind, int fd, std::uint32_t id) {
  const std::size_t room = idle.frame_buffer ? echo_buf_size : 0;
  auto* ic = static_cast<idle_conn*>(std::malloc(sizeof(idle_conn) + room));
  *ic = idle_conn{{kind, fd}, id, room ? reinterpret_cast<unsigned char*>(ic + 1) : nullptr};
  return ic;
}

void idle_dispatch(ep_ctx& ctx, conn* c, std::uint32_t) {
  auto* ic = reinterpret_cast<idle_conn*>(c);
  unsigned char* buf = ic->buf ? ic->buf : idle.shared_buf;
  const ssize_t n = read(c->fd, buf, echo_buf_size);
  if (n < 0 && errno == EAGAIN) return;
  if (c->kind == k_server) {
    if (n > 0) {
      if (write(c->fd, buf, static_cast<std::size_t>(n)) != n) ctx.fail("server: short write");
      return;
    }
    if (n < 0) ctx.fail(errno_text("server read"));
    close(c->fd);
    std::free(ic);
    --ctx.open_conns;
    return;
  }
  if (n != 1 || buf[0] != static_cast<unsigned char>(ic->id % 256)) {
    return ctx.fail("client: echo mismatch");
  }
  if (++idle.verified < idle.conns) return;
  for (int i = 0; i < idle.conns; ++i) {
    close(idle.clients[i]->c.fd);
    std::free(idle.clients[i]);
    --ctx.open_conns;
  }
}

}  // namespace

run_result pingpong(const pingpong_params& p) {
  scoped_ctx s(p.via);
  ep_ctx& ctx = s.ctx;
  pp = pp_state{p, p.conns == 1, 0, {}, {}};
  auto** clients = static_cast<client_conn**>(
      std::calloc(static_cast<std::size_t>(p.conns), sizeof(client_conn*)));
  int made = 0;
  for (; made < p.conns && ctx.error.empty(); ++made) {
    int cfd = -1, sfd = -1;
    if (!make_pair(ctx, s.lfd, s.at, cfd, sfd)) break;
    auto* cl = static_cast<client_conn*>(std::malloc(sizeof(client_conn)));
    *cl = client_conn{{k_client, cfd}, static_cast<std::uint32_t>(made), 0, 0, {}, {}};
    clients[made] = cl;
    ctx.open_conns += 2;
    watch(ctx, &cl->c, EPOLLIN);
    watch(ctx, &new_server(sfd)->c, EPOLLIN);
  }
  if (ctx.error.empty()) {
    ctx.t0 = clock::now();
    if (pp.steady && p.warmup == 0) pp.h0 = heap_now();
    for (int i = 0; i < p.conns && ctx.error.empty(); ++i)
      send_message(ctx, clients[i]);
    run(ctx, pp_dispatch);
  }
  std::free(clients);
  auto r = finish(ctx);
  if (!r.ok) return r;
  if (pp.finished != p.conns) return bench::fail("epoll: not every client finished");
  r.items = static_cast<std::uint64_t>(p.conns) * static_cast<std::uint64_t>(p.count);
  if (pp.steady) {
    r.steady_news = pp.h1.news - pp.h0.news;
    r.steady_event_mallocs = pp.h1.event_mallocs - pp.h0.event_mallocs;
    r.steady_round_trips = static_cast<std::uint64_t>(p.count);
  }
  return r;
}

run_result udp_pingpong(const pingpong_params& p) {
  ep_ctx ctx;
  udp = udp_state{p, 0, {}, {}, {}, {}};
  std::uint16_t server_port = 0, client_port = 0;
  ctx.epfd = epoll_create1(EPOLL_CLOEXEC);
  conn server{k_server, udp_loopback(server_port)};
  conn client{k_client, server.fd >= 0 ? udp_loopback(client_port, server_port) : -1};
  if (ctx.epfd < 0 || server.fd < 0 || client.fd < 0) ctx.fail(errno_text("setup"));
  if (ctx.error.empty() && watch(ctx, &server, EPOLLIN) && watch(ctx, &client, EPOLLIN)) {
    ctx.open_conns = 2;
    if (p.warmup == 0) {
      udp.h0 = heap_now();
      ctx.t0 = clock::now();
    }
    if (udp_send(ctx, client.fd)) run(ctx, udp_dispatch);
  }
  for (int fd : {server.fd, client.fd, ctx.epfd})
    if (fd >= 0) close(fd);
  auto r = finish(ctx);
  if (!r.ok) return r;
  if (udp.i != p.warmup + p.count) return bench::fail("epoll: the client did not finish");
  r.items = static_cast<std::uint64_t>(p.count);
  r.steady_news = udp.h1.news - udp.h0.news;
  r.steady_event_mallocs = udp.h1.event_mallocs - udp.h0.event_mallocs;
  r.steady_round_trips = static_cast<std::uint64_t>(p.count);
  return r;
}

namespace {
run_result throughput_with(std::uint64_t total_bytes, bool until_eagain) {
  scoped_ctx s;
  ep_ctx& ctx = s.ctx;
  tp = tp_state{total_bytes, 0, 0, 0, 0, checksum{}, nullptr, false, until_eagain};
  int cfd = -1, sfd = -1;
  if (ctx.error.empty() && make_pair(ctx, s.lfd, s.at, cfd, sfd)) {
    tp.buf = static_cast<unsigned char*>(std::malloc(chunk_size));
    auto* snd = static_cast<conn*>(std::malloc(sizeof(conn)));
    *snd = conn{k_sender, cfd};
    auto* rcv = static_cast<conn*>(std::malloc(sizeof(conn)));
    *rcv = conn{k_receiver, sfd};
    ctx.open_conns = 2;
    ctx.t0 = clock::now();
    if (watch(ctx, rcv, EPOLLIN) && watch(ctx, snd, EPOLLOUT)) run(ctx, tp_dispatch);
    std::free(tp.buf);
  }
  auto r = finish(ctx);
  if (!r.ok) return r;
  if (!tp.receiver_done) return bench::fail("epoll: receiver did not finish");
  r.items = total_bytes;
  return r;
}
}  // namespace

// The limit is whichever loop is faster in this run: one write per readiness event, or writes
// and reads until EAGAIN (on this machine each wins some runs).
run_result throughput(std::uint64_t total_bytes) {
  run_result one = throughput_with(total_bytes, false);
  if (!one.ok) return one;
  run_result all = throughput_with(total_bytes, true);
  if (!all.ok) return all;
  return all.seconds < one.seconds ? all : one;
}

run_result connect_rate(int count) {
  scoped_ctx s;
  ep_ctx& ctx = s.ctx;
  cr = cr_state{count, 0, 0, s.port, conn{k_listen, s.lfd}};
  if (ctx.error.empty() && watch(ctx, &cr.listen, EPOLLIN)) {
    ctx.t0 = clock::now();
    if (cr_start(ctx)) run(ctx, cr_dispatch);
  }
  auto r = finish(ctx);
  if (!r.ok) return r;
  if (cr.accepted != count || cr.eofs != count)
    return bench::fail("epoll: connection count mismatch");
  r.items = static_cast<std::uint64_t>(count);
  return r;
}

run_result idle_memory(const idle_params& p) {
  scoped_ctx s;
  ep_ctx& ctx = s.ctx;
  auto** clients =
      static_cast<idle_conn**>(std::calloc(static_cast<std::size_t>(p.conns), sizeof(idle_conn*)));
  idle.conns = p.conns;
  idle.verified = 0;
  idle.frame_buffer = p.reader == idle_params::frame_buffer;
  idle.clients = clients;
  run_result mem;
  const memory_mark before = memory_before();
  int made = 0;
  for (; made < p.conns && ctx.error.empty(); ++made) {
    int cfd = -1, sfd = -1;
    if (!make_pair(ctx, s.lfd, s.at, cfd, sfd)) break;
    clients[made] = new_idle_conn(k_client, cfd, static_cast<std::uint32_t>(made));
    ctx.open_conns += 2;
    watch(ctx, &clients[made]->c, EPOLLIN);
    watch(ctx, &new_idle_conn(k_server, sfd, 0)->c, EPOLLIN);
  }
  if (ctx.error.empty()) {
    per_conn(mem, before, memory_now(), p.conns);
    for (int i = 0; i < p.conns && ctx.error.empty(); ++i) {
      const auto b = static_cast<unsigned char>(i % 256);
      if (write(clients[i]->c.fd, &b, 1) != 1) ctx.fail("client: short write");
    }
    ctx.t0 = ctx.t1 = clock::now();
    run(ctx, idle_dispatch);
  }
  std::free(clients);
  auto r = finish(ctx);
  if (!r.ok) return r;
  if (idle.verified != p.conns) return bench::fail("epoll: idle echo count");
  r.bytes_per_conn = mem.bytes_per_conn;
  r.rss_bytes_per_conn = mem.rss_bytes_per_conn;
  r.items = static_cast<std::uint64_t>(p.conns);
  return r;
}

}  // namespace bench::epoll_impl
