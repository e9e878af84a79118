// Beast's HTTP/1 parsers, specialised to keep only what kvd uses, straight into plain structs
// (no header map is built): the client port's request parser and the proxy's response parser
// share the body handling of BodyParser.
//
// Threads: a parser belongs to one connection and is used on its executor only.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/optional.hpp>

#include "server/http/header_checks.h"

namespace kvd::server {

// A Beast parser that appends the body (plain or chunked) to *body; subclasses take the start
// line and the fields. A body announced as at most 1 MiB is reserved up front.
template <bool isRequest>
class BodyParser : public boost::beast::http::basic_parser<isRequest> {
 protected:
  using error_code = boost::system::error_code;
  using string_view = boost::beast::string_view;

  explicit BodyParser(std::string* body) : body_(body) {}

 private:
  void on_header_impl(error_code&) override {}
  void on_body_init_impl(boost::optional<uint64_t> const& content_length, error_code&) override {
    if (content_length && *content_length <= (1u << 20)) body_->reserve(*content_length);
  }
  size_t on_body_impl(string_view body, error_code&) override {
    body_->append(body.data(), body.size());
    return body.size();
  }
  void on_chunk_header_impl(uint64_t, string_view, error_code&) override {}
  size_t on_chunk_body_impl(uint64_t, string_view body, error_code&) override {
    body_->append(body.data(), body.size());
    return body.size();
  }
  void on_finish_impl(error_code&) override {}

  std::string* body_;
};

// One request's data. The strings keep their capacity between requests of a connection, but
// for a large body's.
struct RequestData {
  std::string method;
  std::string target;
  std::string content_type;
  std::string origin;
  std::string authorization;  // the first Authorization header
  std::string host;           // the Host header
  std::string body;
  int version = 11;
  bool has_host = false;
  bool has_content_type = false;
  bool has_origin = false;
  bool has_authorization = false;
  bool expect_continue = false;

  // A body buffer above this is given back after its request instead of kept for the next one,
  // so that a burst of large requests does not stay in memory.
  static constexpr size_t kKeptBodyCapacity = 1 << 20;

  void clear() {
    method.clear();
    target.clear();
    content_type.clear();
    origin.clear();
    authorization.clear();
    host.clear();
    if (body.capacity() > kKeptBodyCapacity) {
      std::string().swap(body);
    } else {
      body.clear();
    }
    version = 11;
    has_host = has_content_type = has_origin = has_authorization = expect_continue = false;
  }
};

// Beast's HTTP/1 parser keeping only what the API needs, straight into RequestData.
class RequestParser final : public BodyParser<true> {
 public:
  explicit RequestParser(RequestData& d) : BodyParser<true>(&d.body), d_(d) {}

 private:
  void on_request_impl(boost::beast::http::verb, string_view method, string_view target,
                       int version, error_code&) override {
    d_.method.assign(method.data(), method.size());
    d_.target.assign(target.data(), target.size());
    d_.version = version;
  }
  void on_response_impl(int, string_view, int, error_code& ec) override {
    ec = boost::beast::http::error::bad_method;
  }
  void on_field_impl(boost::beast::http::field f, string_view, string_view value,
                     error_code&) override {
    switch (f) {
      case boost::beast::http::field::content_type:
        if (!d_.has_content_type) d_.content_type.assign(value.data(), value.size());
        d_.has_content_type = true;
        break;
      case boost::beast::http::field::origin:
        if (!d_.has_origin) d_.origin.assign(value.data(), value.size());
        d_.has_origin = true;
        break;
      case boost::beast::http::field::host:
        if (!d_.has_host) d_.host.assign(value.data(), value.size());
        d_.has_host = true;
        break;
      case boost::beast::http::field::authorization:
        if (!d_.has_authorization) d_.authorization.assign(value.data(), value.size());
        d_.has_authorization = true;
        break;
      case boost::beast::http::field::expect:
        if (iequals({value.data(), value.size()}, "100-continue")) d_.expect_continue = true;
        break;
      default:
        break;
    }
  }

  RequestData& d_;
};

}  // namespace kvd::server
