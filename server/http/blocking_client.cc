#include "server/http/blocking_client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/ssl/stream_base.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
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

GetResult http_get(const std::string& base_url, const std::string& path,
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
  asio::io_context io;
  tcp::resolver resolver(io);
  tls::Stream stream(io);
  beast::flat_buffer buffer;
  http::request<http::string_body> req{http::verb::get, path, 11};
  req.set(http::field::host, a->host + ":" + a->port);
  http::response<http::string_body> res;
  error_code result = asio::error::timed_out;
  auto exchange = [&] {
    http::async_write(stream, req, [&](error_code ec, size_t) {
      if (ec) return void(result = ec);
      http::async_read(stream, buffer, res, [&](error_code ec, size_t) { result = ec; });
    });
  };
  resolver.async_resolve(a->host, a->port, [&](error_code ec, tcp::resolver::results_type r) {
    if (ec) return void(result = ec);
    asio::async_connect(stream.socket(), r, [&](error_code ec, const tcp::endpoint&) {
      if (ec) return void(result = ec);
      if (!a->tls) return exchange();
      stream.use_tls(tls->client());
      tls->prepare_client(stream.native_ssl(), a->host);
      stream.async_handshake(asio::ssl::stream_base::client, [&](error_code ec) {
        if (ec) {
          why = "TLS handshake: " + tls::describe_handshake_error(stream.native_ssl(), ec);
          return void(result = ec);
        }
        exchange();
      });
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
  out.body = std::move(res.body());
  return out;
}

}  // namespace kvd::server
