#pragma once
// A test PKI, made once per run with OpenSSL into a temporary directory: a CA, and leaf
// certificates "good" (localhost, 127.0.0.1), "self" (self-signed), "wrong" (another name) and
// "expired".

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>

namespace evco::test {

struct pki {
  std::filesystem::path dir;
  std::string ca;  // the test CA's certificate: what clients trust

  std::string cert(const std::string& name) const { return (dir / (name + ".pem")).string(); }
  std::string key(const std::string& name) const { return (dir / (name + ".key")).string(); }

  pki();
  ~pki() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

using key_ptr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using x509_ptr = std::unique_ptr<X509, decltype(&X509_free)>;

inline key_ptr new_key() {
  key_ptr k(EVP_EC_gen("P-256"), &EVP_PKEY_free);
  if (!k) throw std::runtime_error("EVP_EC_gen failed");
  return k;
}

inline void add_ext(X509* x, X509V3_CTX* v3, int nid, const char* value) {
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, v3, nid, value);
  if (!ext || X509_add_ext(x, ext, -1) != 1) throw std::runtime_error("X509_add_ext failed");
  X509_EXTENSION_free(ext);
}

struct cert_spec {
  const char* cn;
  const char* san = nullptr;  // subjectAltName, e.g. "DNS:localhost,IP:127.0.0.1"
  long not_before = -3600;    // seconds from now
  long not_after = 86400;
  bool ca = false;
};

// Signed by `issuer` (with `issuer_key`), or self-signed when `issuer` is null.
inline x509_ptr make_cert(EVP_PKEY* key, const cert_spec& spec, X509* issuer,
                          EVP_PKEY* issuer_key) {
  static long serial = 1;
  x509_ptr x(X509_new(), &X509_free);
  X509_set_version(x.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x.get()), serial++);
  X509_gmtime_adj(X509_getm_notBefore(x.get()), spec.not_before);
  X509_gmtime_adj(X509_getm_notAfter(x.get()), spec.not_after);
  X509_set_pubkey(x.get(), key);
  X509_NAME* name = X509_get_subject_name(x.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(spec.cn), -1, -1, 0);
  X509_set_issuer_name(x.get(), issuer ? X509_get_subject_name(issuer) : name);
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, issuer ? issuer : x.get(), x.get(), nullptr, nullptr, 0);
  add_ext(x.get(), &v3, NID_basic_constraints, spec.ca ? "critical,CA:TRUE" : "CA:FALSE");
  if (spec.ca) add_ext(x.get(), &v3, NID_key_usage, "critical,keyCertSign,cRLSign");
  add_ext(x.get(), &v3, NID_subject_key_identifier, "hash");
  if (issuer) add_ext(x.get(), &v3, NID_authority_key_identifier, "keyid:always");
  if (spec.san) add_ext(x.get(), &v3, NID_subject_alt_name, spec.san);
  if (X509_sign(x.get(), issuer_key ? issuer_key : key, EVP_sha256()) <= 0)
    throw std::runtime_error("X509_sign failed");
  return x;
}

inline void write_pem(const std::string& path, X509* cert, EVP_PKEY* key) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (!f) throw std::runtime_error("cannot write " + path);
  const bool ok = cert ? PEM_write_X509(f, cert) == 1
                       : PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr) == 1;
  std::fclose(f);
  if (!ok) throw std::runtime_error("PEM write failed: " + path);
}

inline pki::pki() {
  char tmpl[] = "/tmp/evco-tls-XXXXXX";
  if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
  dir = tmpl;
  auto ca_key = new_key();
  auto ca_cert = make_cert(ca_key.get(), {.cn = "evco test CA", .ca = true}, nullptr, nullptr);
  ca = cert("ca");
  write_pem(ca, ca_cert.get(), nullptr);

  const auto leaf = [&](const std::string& name, const cert_spec& spec, bool self_signed) {
    auto k = new_key();
    auto c = self_signed ? make_cert(k.get(), spec, nullptr, nullptr)
                         : make_cert(k.get(), spec, ca_cert.get(), ca_key.get());
    write_pem(cert(name), c.get(), nullptr);
    write_pem(key(name), nullptr, k.get());
  };
  leaf("good", {.cn = "localhost", .san = "DNS:localhost,IP:127.0.0.1"}, false);
  leaf("self", {.cn = "localhost", .san = "DNS:localhost,IP:127.0.0.1"}, true);
  leaf("wrong", {.cn = "wrong.example", .san = "DNS:wrong.example"}, false);
  leaf("expired",
       {.cn = "localhost", .san = "DNS:localhost", .not_before = -2 * 86400, .not_after = -86400},
       false);
}

inline const pki& certs() {
  static const pki instance;
  return instance;
}

}  // namespace evco::test
