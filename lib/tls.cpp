#include "evco/tls.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include <event2/bufferevent_ssl.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>

#include "event_op.hpp"
#include "stream/state.hpp"

namespace evco {
namespace {

using ssl_ptr = detail::c_handle<SSL, &SSL_free>;
using ctx_ptr = detail::c_handle<SSL_CTX, &SSL_CTX_free>;
using bev_ptr = detail::c_handle<bufferevent, &bufferevent_free>;

// tls_category codes: OpenSSL's packed error codes (positive; below 2^31 once system errors
// are mapped to the system category), tls_errc (small positive numbers, a library OpenSSL
// never uses), and failed peer verifications as -X509_V_ERR_*.
class category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "tls"; }

  std::string message(int c) const override {
    if (c == static_cast<int>(tls_errc::truncated))
      return "TLS stream truncated: the peer closed the connection without close_notify";
    if (c < 0)
      return std::string("certificate verify failed: ") + X509_verify_cert_error_string(-c);
    const auto e = static_cast<unsigned long>(static_cast<unsigned int>(c));
    if (const char* reason = ERR_reason_error_string(e)) return reason;
    char text[256];
    ERR_error_string_n(e, text, sizeof text);
    return text;
  }
};

bool is_ssl_reason(unsigned long e, int reason) noexcept {
  return !ERR_SYSTEM_ERROR(e) && ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == reason;
}

// One OpenSSL error as an error_code; `ssl` (if any) tells why a verification failed.
std::error_code from_openssl(unsigned long e, const SSL* ssl) noexcept {
  if (ERR_SYSTEM_ERROR(e)) return {ERR_GET_REASON(e), std::system_category()};
  if (is_ssl_reason(e, SSL_R_UNEXPECTED_EOF_WHILE_READING)) return tls_errc::truncated;
  if (ssl && is_ssl_reason(e, SSL_R_CERTIFICATE_VERIFY_FAILED)) {
    if (const long v = SSL_get_verify_result(ssl); v != X509_V_OK && v > 0 && v < (1 << 20)) {
      return {-static_cast<int>(v), tls_category()};
    }
  }
  return {static_cast<int>(e), tls_category()};
}

// The first (root-cause) error in this thread's OpenSSL queue, which is then cleared.
std::error_code last_tls_error() noexcept {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  return e != 0 ? from_openssl(e, nullptr) : std::make_error_code(std::errc::io_error);
}

// stream_state::map_error for TLS streams. libevent 2.1.12's conn_closed() stores, in order,
// SSL_get_error()'s code (SSL_ERROR_SSL, SSL_ERROR_SYSCALL: a small number) and then
// OpenSSL's error queue, at most three entries; bufferevent_get_openssl_error() hands them
// back newest first. The oldest queue entry is the cause. No queue entry means a dirty
// shutdown: the peer ended TCP without close_notify (OpenSSL 3 reports that as "unexpected
// eof", mapped the same), unless the socket itself failed.
std::error_code stream_error(bufferevent* bev, int socket_errno) noexcept {
  unsigned long stored[4];
  int n = 0;
  while (n < 4 && (stored[n] = bufferevent_get_openssl_error(bev)) != 0)
    ++n;
  int oldest = n - 1;
  if (oldest >= 0 && stored[oldest] < 0x100) --oldest;  // SSL_ERROR_*, not a queue entry
  if (oldest >= 0) return from_openssl(stored[oldest], bufferevent_openssl_get_ssl(bev));
  if (socket_errno == 0 || socket_errno == EAGAIN || socket_errno == EWOULDBLOCK ||
      socket_errno == EINTR) {
    return tls_errc::truncated;
  }
  return {socket_errno, std::system_category()};
}

// stream_state::send_close_notify. libevent 2.1's be_openssl_destruct only SSL_free()s and
// closes the socket: without this, every close would look like a truncation to the peer.
bool send_close_notify(bufferevent* bev) noexcept {
  SSL* ssl = bufferevent_openssl_get_ssl(bev);
  if (!ssl || !SSL_is_init_finished(ssl)) return true;
  const int r = SSL_shutdown(ssl);  // 0: sent, the peer's is still to come; fine for a close
  if (r >= 0) return true;
  const int e = SSL_get_error(ssl, r);
  ERR_clear_error();
  return e != SSL_ERROR_WANT_WRITE;
}

bool is_known(tls_version v) noexcept {
  switch (v) {
    case tls_version::unspecified:
    case tls_version::v1_0:
    case tls_version::v1_1:
    case tls_version::v1_2:
    case tls_version::v1_3:
      return true;
  }
  return false;
}

// OpenSSL takes min > max and fails only at the handshake, much later and far away, and
// refuses an unknown version without queueing an error (which read as EIO): both are the
// caller's mistake, reported when the context is made.
bool is_version_range(tls_version min, tls_version max) noexcept {
  if (!is_known(min) || !is_known(max)) return false;
  return min == tls_version::unspecified || max == tls_version::unspecified ||
         static_cast<int>(min) <= static_cast<int>(max);
}

// OpenSSL reads file and host names as C strings: one with a NUL inside would be cut short
// there, and a name other than the caller's would be loaded or verified.
bool has_nul(const std::string& s) noexcept {
  return s.find('\0') != std::string::npos;
}

bool set_versions(SSL_CTX* c, tls_version min, tls_version max) noexcept {
  return SSL_CTX_set_min_proto_version(c, static_cast<int>(min)) == 1 &&
         SSL_CTX_set_max_proto_version(c, static_cast<int>(max)) == 1;
}

// --- bytes read before the handshake ---------------------------------------------------------
//
// A plain stream may already hold the peer's first flight (a ClientHello read while the accepted
// stream waited to be handed to tls_server). This read-only filter BIO returns those bytes
// first, then reads straight from the socket BIO below it: no read-ahead of its own, so
// libevent's readiness tracking (socket readable or SSL_pending) stays exact.

struct prefix {
  std::string bytes;
  std::size_t offset = 0;
  std::size_t left() const noexcept { return bytes.size() - offset; }
};

int prefix_read(BIO* b, char* out, int len) {
  auto* p = static_cast<prefix*>(BIO_get_data(b));
  BIO_clear_retry_flags(b);
  if (p && p->left() > 0 && len > 0) {
    const std::size_t n = std::min(p->left(), static_cast<std::size_t>(len));
    std::memcpy(out, p->bytes.data() + p->offset, n);
    p->offset += n;
    return static_cast<int>(n);
  }
  BIO* next = BIO_next(b);
  if (!next) return 0;
  const int r = BIO_read(next, out, len);
  BIO_copy_next_retry(b);
  return r;
}

int prefix_write(BIO* b, const char* in, int len) {
  BIO* next = BIO_next(b);
  if (!next) return -1;
  const int r = BIO_write(next, in, len);
  BIO_clear_retry_flags(b);
  BIO_copy_next_retry(b);
  return r;
}

long prefix_ctrl(BIO* b, int cmd, long num, void* ptr) {
  auto* p = static_cast<prefix*>(BIO_get_data(b));
  BIO* next = BIO_next(b);
  const long left = p ? static_cast<long>(p->left()) : 0;
  switch (cmd) {
    case BIO_CTRL_PENDING:
      return left + (next ? BIO_ctrl(next, cmd, num, ptr) : 0);
    case BIO_CTRL_EOF:
      if (left > 0) return 0;
      break;
    default:
      break;
  }
  return next ? BIO_ctrl(next, cmd, num, ptr) : 0;
}

int prefix_create(BIO* b) {
  BIO_set_init(b, 1);
  return 1;
}

int prefix_destroy(BIO* b) {
  delete static_cast<prefix*>(BIO_get_data(b));
  BIO_set_data(b, nullptr);
  return 1;
}

const BIO_METHOD* prefix_method() {
  static BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_FILTER, "evco prefix");
    if (m) {
      BIO_meth_set_read(m, prefix_read);
      BIO_meth_set_write(m, prefix_write);
      BIO_meth_set_ctrl(m, prefix_ctrl);
      BIO_meth_set_create(m, prefix_create);
      BIO_meth_set_destroy(m, prefix_destroy);
    }
    return m;
  }();
  return method;
}

// Sets the SSL's BIOs on `fd`: reads go through `early` first when it holds anything.
bool attach_socket(SSL* ssl, int fd, std::string early) {
  BIO* sock = BIO_new_socket(fd, BIO_NOCLOSE);  // the bufferevent closes the fd
  if (!sock) return false;
  if (early.empty()) {
    SSL_set_bio(ssl, sock, sock);
    return true;
  }
  const BIO_METHOD* method = prefix_method();
  BIO* first = method ? BIO_new(method) : nullptr;
  if (!first) {
    BIO_free(sock);
    return false;
  }
  BIO_set_data(first, new (std::nothrow) prefix{std::move(early)});
  if (!BIO_get_data(first)) {
    BIO_free(first);
    BIO_free(sock);
    return false;
  }
  BIO_push(first, sock);
  BIO_up_ref(sock);  // owned twice: below the read chain, and as the write BIO
  SSL_set_bio(ssl, first, sock);
  return true;
}

// --- the handshake ---------------------------------------------------------------------------

// Waits for BEV_EVENT_CONNECTED on a TLS bufferevent, bounded by a budget (on the
// loop's timer queue) and a stop token. While it waits,
// libevent watches only the direction OpenSSL asked for: a stalled peer costs no CPU.
struct handshake_wait : detail::event_op {
  bufferevent* bev;
  duration timeout;

  handshake_wait(loop& l, bufferevent* e, duration t, std::stop_token st)
      : event_op(l, std::move(st), &on_timer, parked_type), bev(e), timeout(t) {}

  // loop::parked(): the socket's endpoints and the handshake's budget.
  static void describe(const detail::parked_op& p, parked_op_info& out) {
    detail::describe_socket(bufferevent_getfd(static_cast<const handshake_wait&>(p).bev), out);
    describe_deadline(p, out);
  }
  static constexpr detail::parked_op_type parked_type{"handshake", &describe};
  // A frame destroyed while parked: the bufferevent (freed after this) must not call back.
  ~handshake_wait() { bufferevent_setcb(bev, nullptr, nullptr, nullptr, nullptr); }

  bool await_ready() noexcept { return false; }
  bool await_suspend(std::coroutine_handle<> h) {
    if (!park(h, detail::deadline_after(timeout))) return false;
    bufferevent_setcb(bev, nullptr, nullptr, &on_bev_event, this);
    return true;
  }
  result<void> await_resume() const noexcept {
    if (ec) return ec;
    return success();
  }

  void done(std::error_code e) noexcept {
    bufferevent_setcb(bev, nullptr, nullptr, nullptr, nullptr);
    finish(e);  // resumes last
  }
  static void on_timer(evutil_socket_t, short, void* arg) {
    auto& self = *static_cast<handshake_wait*>(arg);
    self.done(self.cancelled() ? errc::cancelled : errc::handshake_timed_out);
  }
  static void on_bev_event(bufferevent* bev, short what, void* arg) {
    const int err = EVUTIL_SOCKET_ERROR();  // first: anything below may overwrite it
    auto& self = *static_cast<handshake_wait*>(arg);
    if (what & BEV_EVENT_CONNECTED) return self.done({});
    if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR)) return self.done(errc::eof);
    self.done(stream_error(bev, err));
  }
};

task<result<stream>> handshake(stream tcp, ssl_ptr ssl, bufferevent_ssl_state state,
                               duration timeout, std::stop_token stop) {
  co_await detail::internal_frame{};
  if (stop.stop_requested()) co_return errc::cancelled;
  if (!tcp.is_open()) co_return errc::closed;
  // Plaintext still queued would have to go out before the handshake; drain() it first.
  if (tcp.buffered_output() > 0) co_return errc::busy;
  // A stream with no socket (a pair) stays whole, to be closed the way its transport closes.
  bufferevent* handle = tcp.native_handle();
  if (!handle) co_return std::make_error_code(std::errc::not_enough_memory);
  if (bufferevent_getfd(handle) < 0) {
    co_return std::make_error_code(std::errc::not_a_socket);
  }
  loop* lp = nullptr;
  detail::stream_settings kept;
  bufferevent* plain = detail::release_bufferevent(tcp, lp, kept);
  if (!plain) co_return errc::busy;

  // Take the socket out of the plain bufferevent, and with it what it already read. A TLS
  // bufferevent on the socket itself (not a filter over the plain one): OpenSSL reads and
  // writes the fd directly, there is one output buffer (so drain() means flushed), and
  // bufferevent_getfd() keeps working for shutdown(), close's linger and the endpoints.
  const int fd = bufferevent_getfd(plain);
  evbuffer* in = bufferevent_get_input(plain);
  std::string early(evbuffer_get_length(in), '\0');
  evbuffer_remove(in, early.data(), early.size());
  bufferevent_setfd(plain, -1);  // freeing it now leaves the socket open
  bufferevent_free(plain);
  if (fd < 0) co_return std::make_error_code(std::errc::bad_file_descriptor);

  if (!attach_socket(ssl.get(), fd, std::move(early))) {
    ::close(fd);
    co_return last_tls_error();
  }
  ERR_clear_error();  // libevent blames whatever is queued on this connection
  // On failure libevent may or may not have freed the SSL and closed the fd (2.1.12 frees both
  // when it got far enough): leak rather than free twice, on this out-of-memory path only.
  bev_ptr bev(bufferevent_openssl_socket_new(lp->native_handle(), fd, ssl.release(), state,
                                             BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS));
  if (!bev) co_return std::make_error_code(std::errc::not_enough_memory);
  bufferevent_openssl_set_allow_dirty_shutdown(bev.get(), 0);  // truncation is an error

  EVCO_TRYV(co_await handshake_wait{*lp, bev.get(), timeout, std::move(stop)});

  static constexpr detail::tls_hooks hooks{&stream_error, &send_close_notify};
  stream st = detail::attach(*lp, bev.release(), detail::bufferevent_transport, &hooks);
  kept.apply_to(st);  // the read limit, watermarks and idle timeouts of the TCP stream
  co_return st;
}

bool is_ip_address(const std::string& name) noexcept {
  in6_addr a;
  return inet_pton(AF_INET, name.c_str(), &a) == 1 || inet_pton(AF_INET6, name.c_str(), &a) == 1;
}

SSL* ssl_of(const stream& s) noexcept {
  bufferevent* bev = detail::bufferevent_if_any(s);         // a plain socket without one has no TLS
  return bev ? bufferevent_openssl_get_ssl(bev) : nullptr;  // null for other bufferevents
}

}  // namespace

const std::error_category& tls_category() noexcept {
  static const category instance;
  return instance;
}

tls_context& tls_context::operator=(tls_context&& o) noexcept {
  if (this != &o) {
    if (ctx_) SSL_CTX_free(ctx_);
    ctx_ = std::exchange(o.ctx_, nullptr);
  }
  return *this;
}

tls_context::~tls_context() {
  if (ctx_) SSL_CTX_free(ctx_);
}

result<tls_context> tls_context::client(tls_client_options o) {
  if (!is_version_range(o.min_version, o.max_version) || has_nul(o.ca_file)) {
    return std::make_error_code(std::errc::invalid_argument);
  }
  ERR_clear_error();
  ctx_ptr c(SSL_CTX_new(TLS_client_method()));
  if (!c) return last_tls_error();
  SSL_CTX_set_options(c.get(), SSL_OP_NO_RENEGOTIATION);
  if (!set_versions(c.get(), o.min_version, o.max_version)) return last_tls_error();
  if (o.insecure_skip_verify) {
    SSL_CTX_set_verify(c.get(), SSL_VERIFY_NONE, nullptr);
  } else {
    SSL_CTX_set_verify(c.get(), SSL_VERIFY_PEER, nullptr);
    const int ok = o.ca_file.empty()
                       ? SSL_CTX_set_default_verify_paths(c.get())
                       : SSL_CTX_load_verify_locations(c.get(), o.ca_file.c_str(), nullptr);
    if (ok != 1) return last_tls_error();
  }
  return tls_context(c.release());
}

result<tls_context> tls_context::server(std::string cert_file, std::string key_file,
                                        tls_server_options o) {
  if (!is_version_range(o.min_version, o.max_version) || has_nul(cert_file) || has_nul(key_file)) {
    return std::make_error_code(std::errc::invalid_argument);
  }
  ERR_clear_error();
  ctx_ptr c(SSL_CTX_new(TLS_server_method()));
  if (!c) return last_tls_error();
  SSL_CTX_set_options(c.get(), SSL_OP_NO_RENEGOTIATION);
  if (!set_versions(c.get(), o.min_version, o.max_version) ||
      SSL_CTX_use_certificate_chain_file(c.get(), cert_file.c_str()) != 1 ||
      SSL_CTX_use_PrivateKey_file(c.get(), key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(c.get()) != 1) {
    return last_tls_error();
  }
  return tls_context(c.release());
}

task<result<stream>> tls_client(stream tcp, const tls_context& ctx, std::string server_name,
                                duration handshake_timeout, std::stop_token stop) {
  co_await detail::internal_frame{};
  SSL_CTX* c = ctx.native_handle();
  if (!c) co_return std::make_error_code(std::errc::invalid_argument);
  // Secure by default: a verifying client needs the name to verify against.
  if (server_name.empty() && (SSL_CTX_get_verify_mode(c) & SSL_VERIFY_PEER))
    co_return std::make_error_code(std::errc::invalid_argument);
  if (has_nul(server_name)) co_return std::make_error_code(std::errc::invalid_argument);
  ERR_clear_error();
  ssl_ptr ssl(SSL_new(c));
  if (!ssl) co_return last_tls_error();
  if (!server_name.empty()) {
    // SNI carries host names only (RFC 6066); an address is checked against the IP SANs.
    const bool ok =
        is_ip_address(server_name)
            ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl.get()), server_name.c_str()) == 1
            : SSL_set_tlsext_host_name(ssl.get(), server_name.c_str()) == 1 &&
                  SSL_set1_host(ssl.get(), server_name.c_str()) == 1;
    if (!ok) co_return last_tls_error();
  }
  co_return co_await handshake(std::move(tcp), std::move(ssl), BUFFEREVENT_SSL_CONNECTING,
                               handshake_timeout, std::move(stop));
}

task<result<stream>> tls_server(stream tcp, const tls_context& ctx, duration handshake_timeout,
                                std::stop_token stop) {
  co_await detail::internal_frame{};
  SSL_CTX* c = ctx.native_handle();
  if (!c) co_return std::make_error_code(std::errc::invalid_argument);
  ERR_clear_error();
  ssl_ptr ssl(SSL_new(c));
  if (!ssl) co_return last_tls_error();
  co_return co_await handshake(std::move(tcp), std::move(ssl), BUFFEREVENT_SSL_ACCEPTING,
                               handshake_timeout, std::move(stop));
}

std::string tls_server_name(const stream& s) {
  SSL* ssl = ssl_of(s);
  const char* name = ssl ? SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) : nullptr;
  return name ? name : "";
}

std::string tls_protocol(const stream& s) {
  SSL* ssl = ssl_of(s);
  return ssl ? SSL_get_version(ssl) : "";
}

}  // namespace evco
