#include "server/http/blocking_client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "common/url.h"

namespace kvd::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

GetResult http_get(const std::string& base_url, const std::string& path,
                   std::chrono::milliseconds timeout) {
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
  asio::io_context io;
  tcp::resolver resolver(io);
  beast::tcp_stream stream(io);
  beast::flat_buffer buffer;
  http::request<http::string_body> req{http::verb::get, path, 11};
  req.set(http::field::host, a->host + ":" + a->port);
  http::response<http::string_body> res;
  error_code result = asio::error::timed_out;
  stream.expires_after(timeout);
  resolver.async_resolve(a->host, a->port, [&](error_code ec, tcp::resolver::results_type r) {
    if (ec) return void(result = ec);
    stream.async_connect(r, [&](error_code ec, const tcp::endpoint&) {
      if (ec) return void(result = ec);
      http::async_write(stream, req, [&](error_code ec, size_t) {
        if (ec) return void(result = ec);
        http::async_read(stream, buffer, res, [&](error_code ec, size_t) { result = ec; });
      });
    });
  });
  // The resolver has no deadline of its own: the run is bounded too.
  io.run_for(timeout + std::chrono::milliseconds(100));
  if (result) {
    out.error = result.message();
    return out;
  }
  out.status = static_cast<int>(res.result_int());
  out.cluster_id = std::string(res["X-Etcd-Cluster-Id"]);
  out.body = std::move(res.body());
  return out;
}

}  // namespace kvd::server
