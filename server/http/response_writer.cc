#include "server/http/response_writer.h"

#include <charconv>
#include <ctime>

#include <boost/beast/http/status.hpp>

#include "common/go.h"

namespace kvd::server {

namespace http = boost::beast::http;

std::string_view reason(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 412: return "Precondition Failed";
    case 413: return "Request Entity Too Large";
    case 415: return "Unsupported Media Type";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
  }
  auto r = http::obsolete_reason(static_cast<http::status>(status));
  return {r.data(), r.size()};
}

void append_uint(std::string& out, uint64_t v, int base) {
  char buf[24];
  auto res = std::to_chars(buf, buf + sizeof buf, v, base);
  out.append(buf, static_cast<size_t>(res.ptr - buf));
}

void append_date_header(std::string& out) {
  thread_local std::time_t cached_sec = 0;
  thread_local std::string cached;
  std::time_t now = std::time(nullptr);
  if (now != cached_sec || cached.empty()) {
    cached = "Date: " + go::format_http_date(now) + "\r\n";
    cached_sec = now;
  }
  out.append(cached);
}

void append_response_head(std::string& out, const HttpResponse& r, Framing framing, int version,
                          bool close, std::string_view cors_origin) {
  out.clear();
  out += version >= 11 ? "HTTP/1.1 " : "HTTP/1.0 ";
  append_uint(out, static_cast<uint64_t>(r.status));
  out += ' ';
  out += reason(r.status);
  out += "\r\n";
  if (r.cors && !cors_origin.empty()) {
    out +=
        "Access-Control-Allow-Headers: accept, content-type, authorization\r\n"
        "Access-Control-Allow-Methods: POST, GET, OPTIONS, PUT, DELETE\r\n"
        "Access-Control-Allow-Origin: ";
    out += cors_origin;
    out += "\r\n";
  }
  out += r.raw_headers;
  if (!r.allow.empty()) {
    out += "Allow: ";
    out += r.allow;
    out += "\r\n";
  }
  if (!r.content_type.empty()) {
    out += "Content-Type: ";
    out += r.content_type;
    out += "\r\n";
  }
  if (!r.location.empty()) {
    out += "Location: ";
    out += r.location;
    out += "\r\n";
  }
  if (r.nosniff) out += "X-Content-Type-Options: nosniff\r\n";
  if (r.cluster_id) {
    out += "X-Etcd-Cluster-Id: ";
    append_uint(out, *r.cluster_id, 16);
    out += "\r\n";
  }
  if (r.etcd_index) {
    out += "X-Etcd-Index: ";
    append_uint(out, *r.etcd_index);
    out += "\r\n";
  }
  if (r.raft_index) {
    out += "X-Raft-Index: ";
    append_uint(out, *r.raft_index);
    out += "\r\n";
  }
  if (r.raft_term) {
    out += "X-Raft-Term: ";
    append_uint(out, *r.raft_term);
    out += "\r\n";
  }
  if (r.date) append_date_header(out);
  if (framing == Framing::kChunked) {
    if (version >= 11) out += "Transfer-Encoding: chunked\r\n";
  } else if (framing == Framing::kLength) {
    out += "Content-Length: ";
    append_uint(out, r.content_length ? *r.content_length : r.body.size());
    out += "\r\n";
  }
  if (close) {
    if (version >= 11) out += "Connection: close\r\n";
  } else if (version < 11) {
    out += "Connection: keep-alive\r\n";
  }
  out += "\r\n";
}

}  // namespace kvd::server
