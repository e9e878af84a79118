// The HTTP vocabulary shared by the client servers of the member and the proxy: a parsed
// request, a response to serialize, the Exchange through which a handler answers, and the
// RequestHandler interface. The connection (server/http/connection.h) parses a request into an
// HttpRequest and hands it to a RequestHandler (the member's ClientApi, or the proxy's Forwarder)
// together with an Exchange through which the answer comes back, possibly later and from another
// thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace kvd::server {

// A parsed request. The views stay valid until the answer has been completed through the
// Exchange (reply() or end_stream()) or the connection closes.
struct HttpRequest {
  std::string_view method;
  std::string_view target;        // raw request-target as sent
  std::string_view content_type;  // first Content-Type header, raw
  std::string_view body;
  std::string_view body_error;  // the body broke off (Go's reader error text), else empty
  int version = 11;  // 10 or 11
  // The whole header block as received, normalized to CRLF lines: the request line, the
  // fields in the client's order, the blank line. For handlers that pass headers on (proxy).
  std::string_view raw_header;
  std::string_view remote_ip;  // the client's address, "127.0.0.1"
  // On a TLS connection whose client presented a certificate the server asked for and
  // verified (--client-cert-auth, --trusted-ca-file): its common name, else empty. etcd's v2
  // auth takes it as the request's user.
  std::string_view client_cert_cn;
  std::string_view authorization;  // the first Authorization header's value, or empty
  std::string_view host;           // the Host header's value (Go's Request.Host), or empty
  bool tls = false;                // it came over TLS (Go's Request.TLS != nil)
};

// One response, serialized by the connection. Headers are written in Go's order (CORS, then the
// others sorted by name, Date, Content-Length or Transfer-Encoding, Connection), so answers look
// like etcd's byte for byte apart from the Date.
struct HttpResponse {
  int status = 200;
  std::string_view content_type;  // "" = none; static strings only
  std::string_view allow;         // "" = none; static strings only
  std::string location;           // "" = none
  bool nosniff = false;           // X-Content-Type-Options: nosniff (Go's http.Error)
  std::optional<uint64_t> cluster_id;  // X-Etcd-Cluster-Id, hex
  std::optional<uint64_t> etcd_index;  // X-Etcd-Index
  std::optional<uint64_t> raft_index;  // X-Raft-Index
  std::optional<uint64_t> raft_term;   // X-Raft-Term
  std::string body;
  bool omit_body = false;   // HEAD: Content-Length of body, but no body bytes
  bool cors = true;         // false for Go's transport-level errors (bad request line / URL)
  bool close = false;       // close the connection after this response
  // Go's answer to a request it could not read (e.g. a bad escape in the path): the status
  // line, Content-Type and "Connection: close", then the body; no Date or Content-Length.
  bool unreadable_request = false;
  // Pass-through (proxy): header lines ("Name: value\r\n" each) written as given after CORS,
  // in place of the typed fields above, which should then be left empty.
  std::string raw_headers;
  bool date = true;  // false: no Date of our own (raw_headers carries the origin's)
  // Frame with this Content-Length whatever the size of body (which must match it, or be
  // empty for HEAD); unset: Go's rule (Content-Length up to 2048 bytes, else chunked).
  std::optional<uint64_t> content_length;
};

// How a handler answers. Implemented by the connection; any thread may call these, in this
// order: either reply() once, or begin_stream(), then send_chunk() any number of times, then
// optionally end_stream(). Calls after the client went away are ignored.
class Exchange {
 public:
  virtual ~Exchange() = default;
  virtual void reply(HttpResponse response) = 0;
  // Writes the headers at once with chunked encoding (a watch). on_close runs once (on the
  // connection's strand) if the stream ends any other way than end_stream(): client
  // disconnect, slow client (more than kMaxQueuedBytes waiting for the socket), server stop.
  virtual void begin_stream(HttpResponse headers, std::function<void()> on_close) = 0;
  virtual void send_chunk(std::string data) = 0;
  // The same; `written` runs (on the connection's strand) once the chunk has been handed to the
  // socket, so a producer can wait for it before making more (back-pressure). It does not run
  // if the stream closes first; on_close does.
  virtual void send_chunk(std::string data, std::function<void()> written) = 0;
  virtual void end_stream() = 0;
  // send_chunk(data) then end_stream(), in one hand-off to the connection and one write (a
  // long-poll watch's only event goes out with the end of its body).
  virtual void send_last_chunk(std::string data) = 0;
  // The same two for bytes shared with other streams (one event rendered once for all of its
  // watchers): written from where they are, never copied. data must not be null.
  using SharedBytes = std::shared_ptr<const std::string>;
  virtual void send_chunk(SharedBytes data) = 0;
  virtual void send_last_chunk(SharedBytes data) = 0;
  // Before the answer starts: watch the client connection, and run on_close once (on the
  // connection's strand) if the client leaves before reply() or begin_stream(). For handlers
  // whose answer may take long, such as a proxied request. begin_stream's on_close replaces it.
  virtual void notify_close(std::function<void()> on_close) = 0;

  // What a stream may have waiting while the client reads slowly: a burst of events (thousands
  // of keys expiring at once) fits, a client that stopped reading is closed.
  static constexpr size_t kMaxQueuedBytes = 4 << 20;
};

// What the client server hands each parsed request to. Implementations are called from any
// of the io_context's threads, concurrently, and answer through the Exchange.
class RequestHandler {
 public:
  virtual ~RequestHandler() = default;
  virtual void handle(const HttpRequest& request, const std::shared_ptr<Exchange>& exchange) = 0;
};

}  // namespace kvd::server
