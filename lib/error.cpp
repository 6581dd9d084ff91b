#include "evco/error.hpp"

#include <string>

namespace evco {
namespace {

class category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "evco"; }

  std::string message(int c) const override {
    switch (static_cast<errc>(c)) {
      case errc::eof:
        return "end of stream";
      case errc::timed_out:
        return "operation timed out";
      case errc::cancelled:
        return "operation cancelled";
      case errc::closed:
        return "stream closed";
      case errc::limit_exceeded:
        return "size limit exceeded";
      case errc::busy:
        return "another operation is already pending";
      case errc::connect_timed_out:
        return "connect timed out";
      case errc::handshake_timed_out:
        return "TLS handshake timed out";
      case errc::endpoint_no_port:
        return "endpoint has no port: write 1.2.3.4:80 or [::1]:80";
      case errc::endpoint_bad_port:
        return "endpoint port is not a number from 0 to 65535";
      case errc::endpoint_not_numeric:
        return "not a numeric IP address: use connect(lp, host, port) to connect to a name";
      case errc::endpoint_ipv6_unbracketed:
        return "IPv6 endpoint needs brackets and a port: write [::1]:80";
      case errc::endpoint_path_too_long:
        return "Unix socket path longer than 107 bytes";
      case errc::message_truncated:
        return "datagram larger than the receive buffer";
    }
    return "unknown evco error " + std::to_string(c);
  }

  std::error_condition default_error_condition(int c) const noexcept override {
    switch (static_cast<errc>(c)) {
      case errc::timed_out:
      case errc::connect_timed_out:
      case errc::handshake_timed_out:
        return std::errc::timed_out;
      case errc::cancelled:
      case errc::closed:
        return std::errc::operation_canceled;
      case errc::limit_exceeded:
        return std::errc::message_size;
      case errc::busy:
        return std::errc::device_or_resource_busy;
      case errc::endpoint_no_port:
      case errc::endpoint_bad_port:
      case errc::endpoint_not_numeric:
      case errc::endpoint_ipv6_unbracketed:
        return std::errc::invalid_argument;
      case errc::endpoint_path_too_long:
        return std::errc::filename_too_long;
      case errc::message_truncated:
        return std::errc::message_size;
      case errc::eof:
        break;
    }
    return {c, *this};
  }
};

}  // namespace

const std::error_category& evco_category() noexcept {
  static const category instance;
  return instance;
}

}  // namespace evco
