#include "server/http/blocking_client.h"

#include <optional>

#include <boost/asio/connect.hpp>
#include <boost/asio/ssl/stream_base.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "common/url.h"
#include "server/tls/stream.h"

namespace kvd::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

GetResult http_request(const std::string& base_url, const HttpCall& call,
                       std::chrono::milliseconds timeout, tls::TlsContexts* tls) {
  GetResult out;
  std::string why;
  auto a = url::parse_address(base_url, &why);
  if (!a) {
    out.error = why;
    return out;
  }
  if (a->port.empty()) {
    out.error = "no port in URL";
    return out;
  }
  std::optional<url::Address> proxy;
  if (!call.proxy_url.empty()) {
    proxy = url::parse_address(call.proxy_url, &why);
    if (!proxy || proxy->tls || proxy->port.empty()) {
      out.error = "invalid proxy address " + call.proxy_url + (why.empty() ? "" : ": " + why);
      return out;
    }
  }
  std::shared_ptr<tls::TlsContexts> default_tls;
  if (a->tls && !tls) {
    // Go's default: verify against the system's roots.
    auto made = tls::TlsContexts::create(tls::TlsInfo{});
    if (!made.is_ok()) {
      out.error = made.status().message();
      return out;
    }
    default_tls = made.value();
    tls = default_tls.get();
  }
  const std::string host_port =
      (a->host.find(':') != std::string::npos ? "[" + a->host + "]" : a->host) + ":" + a->port;
  asio::io_context io;
  tcp::resolver resolver(io);
  tls::Stream stream(io);
  beast::flat_buffer buffer;
  http::verb verb = http::string_to_verb(call.method);
  // A plain request through a proxy names the whole URL (RFC 9112 3.2.2).
  std::string target = proxy && !a->tls ? "http://" + host_port + call.target : call.target;
  http::request<http::string_body> req{verb, target, 11};
  req.set(http::field::host, host_port);
  if (!call.body.empty() || verb == http::verb::put || verb == http::verb::post) {
    if (!call.content_type.empty()) req.set(http::field::content_type, call.content_type);
    req.body() = call.body;
    req.prepare_payload();
  }
  http::response<http::string_body> res;
  http::request<http::empty_body> connect{http::verb::connect, host_port, 11};
  connect.set(http::field::host, host_port);
  http::response_parser<http::empty_body> connect_res;
  connect_res.skip(true);  // a CONNECT answer has no body
  error_code result = asio::error::timed_out;
  auto exchange = [&] {
    http::async_write(stream, req, [&](error_code ec, size_t) {
      if (ec) return void(result = ec);
      http::async_read(stream, buffer, res, [&](error_code ec, size_t) { result = ec; });
    });
  };
  auto handshake = [&] {
    stream.use_tls(tls->client());
    tls->prepare_client(stream.native_ssl(), a->host);
    stream.async_handshake(asio::ssl::stream_base::client, [&](error_code ec) {
      if (ec) {
        why = "TLS handshake: " + tls::describe_handshake_error(stream.native_ssl(), ec);
        return void(result = ec);
      }
      exchange();
    });
  };
  auto tunnel = [&] {
    http::async_write(stream.socket(), connect, [&](error_code ec, size_t) {
      if (ec) return void(result = ec);
      http::async_read_header(stream.socket(), buffer, connect_res, [&](error_code ec, size_t) {
        if (ec) return void(result = ec);
        if (connect_res.get().result_int() != 200) {
          why = "proxy refused CONNECT " + host_port + ": " +
                std::to_string(connect_res.get().result_int());
          return void(result = asio::error::connection_refused);
        }
        buffer.consume(buffer.size());
        handshake();
      });
    });
  };
  const std::string& dial_host = proxy ? proxy->host : a->host;
  const std::string& dial_port = proxy ? proxy->port : a->port;
  resolver.async_resolve(dial_host, dial_port, [&](error_code ec, tcp::resolver::results_type r) {
    if (ec) return void(result = ec);
    asio::async_connect(stream.socket(), r, [&](error_code ec, const tcp::endpoint&) {
      if (ec) return void(result = ec);
      if (!a->tls) return exchange();
      if (proxy) return tunnel();
      handshake();
    });
  });
  // Bounds the whole exchange: what has not completed by then is abandoned with the io_context.
  io.run_for(timeout);
  if (result) {
    out.error = why.empty() ? result.message() : why;
    return out;
  }
  out.status = static_cast<int>(res.result_int());
  out.cluster_id = std::string(res["X-Etcd-Cluster-Id"]);
  out.etcd_index = std::string(res["X-Etcd-Index"]);
  out.body = std::move(res.body());
  return out;
}

GetResult http_get(const std::string& base_url, const std::string& path,
                   std::chrono::milliseconds timeout, tls::TlsContexts* tls) {
  HttpCall call;
  call.target = path;
  return http_request(base_url, call, timeout, tls);
}

}  // namespace kvd::server
