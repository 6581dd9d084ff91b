#pragma once
// tls: TLS streams over libevent's bufferevent_openssl, secure by default.
//
// A TLS stream is an ordinary evco::stream: the handshake functions take a connected TCP
// stream (from connect() or accept()) and give back a stream whose reads and writes carry
// plaintext. OpenSSL stays a private dependency: this header includes none of it.

#include <stop_token>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>

#include "evco/error.hpp"
#include "evco/stream.hpp"
#include "evco/task.hpp"
#include "evco/timer.hpp"

struct ssl_ctx_st;  // OpenSSL's SSL_CTX

namespace evco {

/// Protocol versions; the values are OpenSSL's TLS1_x_VERSION. `unspecified` leaves the bound
/// to OpenSSL (lowest / highest it supports).
enum class tls_version : int {
  unspecified = 0,
  v1_0 = 0x0301,
  v1_1 = 0x0302,
  v1_2 = 0x0303,
  v1_3 = 0x0304,
};

/// Client settings. Used only by tls_context::client(), which is not a coroutine, so the
/// strings here are safe (see op_options on g++ 12 and aggregates inside co_await).
struct tls_client_options {
  /// PEM file of the CAs to trust instead of the system trust store; empty = system store.
  std::string ca_file;
  tls_version min_version = tls_version::v1_2;
  tls_version max_version = tls_version::unspecified;
  /// INSECURE: accepts any certificate for any name (no chain or hostname verification). For
  /// tests and debugging only; a man in the middle can read and change everything.
  bool insecure_skip_verify = false;
};

struct tls_server_options {
  tls_version min_version = tls_version::v1_2;
  tls_version max_version = tls_version::unspecified;
};
static_assert(std::is_trivially_destructible_v<tls_server_options>);  // see op_options

/// An SSL_CTX: the configuration shared by many TLS streams. Move-only. The handshake
/// functions take it by reference; each stream keeps its own reference to the SSL_CTX, so the
/// context may be destroyed once the handshake task has started.
class tls_context {
 public:
  tls_context() noexcept = default;
  tls_context(tls_context&& o) noexcept : ctx_(std::exchange(o.ctx_, nullptr)) {}
  tls_context& operator=(tls_context&& o) noexcept;
  ~tls_context();

  /// A client context: verifies the peer against the system trust store (or `ca_file`),
  /// TLS 1.2 minimum. Errors: an unreadable CA file (tls_category or system);
  /// std::errc::invalid_argument for a version range with min above max or a value that is
  /// no tls_version, and for a `ca_file` with a NUL in it.
  static result<tls_context> client(tls_client_options o = {});
  /// A server context with the certificate chain and private key from PEM files. Errors
  /// (tls_category or system): unreadable files, a key that does not match the certificate;
  /// std::errc::invalid_argument for a bad version range or a file name with a NUL in it.
  static result<tls_context> server(std::string cert_file, std::string key_file,
                                    tls_server_options o = {});

  bool is_valid() const noexcept { return ctx_ != nullptr; }
  /// The SSL_CTX, to set what evco has no option for (cipher lists, ALPN, session cache).
  ssl_ctx_st* native_handle() const noexcept { return ctx_; }

 private:
  explicit tls_context(ssl_ctx_st* c) noexcept : ctx_(c) {}
  ssl_ctx_st* ctx_ = nullptr;
};

/// Client handshake over a connected TCP stream. `server_name` is sent as SNI (unless it is an
/// IP address) and the certificate must match it (DNS name or IP address); it may be empty
/// only with insecure_skip_verify, and must not contain a NUL (invalid_argument for either). The
/// TCP stream must have no pending op and no queued output (errc::busy otherwise). Errors:
/// tls_category (certificate verify failed: <reason>, protocol version, ...),
/// errc::handshake_timed_out (== std::errc::timed_out) when the handshake takes longer than
/// `handshake_timeout` (zero = no limit), errc::cancelled, socket errors.
task<result<stream>> tls_client(stream tcp, const tls_context& ctx, std::string server_name,
                                duration handshake_timeout = {}, std::stop_token stop = {});

/// Server handshake over an accepted TCP stream; bytes the stream already buffered (the
/// client's first flight) are handed to TLS, not lost. Errors as for tls_client.
task<result<stream>> tls_server(stream tcp, const tls_context& ctx, duration handshake_timeout = {},
                                std::stop_token stop = {});

/// The server name (SNI) the client asked for, on the server side of a TLS stream; empty when
/// it sent none or `s` is not a TLS stream.
std::string tls_server_name(const stream& s);
/// The negotiated protocol ("TLSv1.3", ...); empty when `s` is not a TLS stream.
std::string tls_protocol(const stream& s);

/// The category of TLS failures ("tls"). Its codes are OpenSSL's packed error codes
/// (ERR_get_error()), failed peer verifications (the message names the X.509 reason, e.g.
/// "certificate verify failed: certificate has expired"), and tls_errc.
const std::error_category& tls_category() noexcept;

enum class tls_errc {
  /// The peer ended the TCP connection without close_notify: the data may have been cut off
  /// by an attacker, so this is not errc::eof.
  truncated = 1,
};

inline std::error_code make_error_code(tls_errc e) noexcept {
  return {static_cast<int>(e), tls_category()};
}

}  // namespace evco

template <>
struct std::is_error_code_enum<evco::tls_errc> : std::true_type {};
