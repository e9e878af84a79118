// Wire handling of the client port.
//
// A connection alternates between reading one request and answering it; it never reads the
// next request before the current answer is fully written, so pipelined requests are answered
// in order. Watches answer in pieces (headers at once, then chunks); while one runs, a single
// pending read on the socket notices the client leaving (EOF or error) and removes the
// watcher; bytes it receives are kept for the next request.
//
// Response bytes are composed by hand into a reused buffer: status line, CORS, the other
// headers sorted by name as Go writes them, Date, Content-Length or Transfer-Encoding,
// Connection. Bodies are written from the handler's string without copying.
//
// Request headers are read up to the blank line and checked as Go's net/http does before Beast
// parses them (normalize_header): bare LF line ends are accepted, more than one Host or a
// malformed Host is 400, a Transfer-Encoding other than exactly one "chunked" is 501 (HTTP/1.1;
// HTTP/1.0 ignores it), chunked wins over Content-Length, identical repeated Content-Lengths
// count once. A chunked body that breaks off with bad framing is still handed to the API with
// Go's error text (etcd answers 210 "Invalid POST form" with it) and the connection closes.
//
// Response framing follows Go's ResponseWriter: a body of up to 2048 bytes (its buffer) gets
// Content-Length; a larger one is sent as one chunk with Transfer-Encoding: chunked (HTTP/1.1),
// or unframed with the connection closed after it (HTTP/1.0), or with neither header (HEAD).
//
// Failure modes: a request the parser rejects gets Go's plain "400 Bad Request" (431 for
// headers over the limit) and the connection closes; a body over max_request_bytes gets 413;
// a client that does not deliver a request within the read timeout is disconnected. After
// a final answer the write side is shut down and the rest of the client's data is drained for
// a short time, so the client reads the answer instead of a reset.
#include "server/http_server.h"
#include "server/poll_until.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <ctime>
#include <deque>
#include <mutex>
#include <unordered_map>
#include <utility>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/status.hpp>
#include <spdlog/spdlog.h>

#include "server/client_api.h"

namespace kvd::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
using Clock = std::chrono::steady_clock;

namespace {

// Go's default http.Server.MaxHeaderBytes plus the 4096 bytes of slack it allows.
constexpr uint32_t kHeaderLimit = (1u << 20) + 4096;
// How long a closing connection drains what the client still sends.
constexpr auto kLingerTime = std::chrono::seconds(2);
// Bytes of pipelined input a watching connection buffers before it stops reading.
constexpr size_t kMaxBufferedWhileWatching = 64 * 1024;
// Go's bufferBeforeChunkingSize: a handler's output up to this size gets a Content-Length.
constexpr size_t kGoResponseBuffer = 2048;

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

void append_uint(std::string& out, uint64_t v, int base = 10) {
  char buf[24];
  auto res = std::to_chars(buf, buf + sizeof buf, v, base);
  out.append(buf, static_cast<size_t>(res.ptr - buf));
}

// "Date: Tue, 24 Nov 2026 17:45:49 GMT\r\n", recomputed once a second per thread.
void append_date_header(std::string& out) {
  thread_local std::time_t cached_sec = 0;
  thread_local char cached[64];
  thread_local size_t cached_len = 0;
  std::time_t now = std::time(nullptr);
  if (now != cached_sec || cached_len == 0) {
    std::tm tm{};
    gmtime_r(&now, &tm);
    cached_len = std::strftime(cached, sizeof cached, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
    cached_sec = now;
  }
  out.append(cached, cached_len);
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

std::string_view trim_ows(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

// Go's httpguts.ValidHostHeader: the bytes a Host header may hold.
bool valid_host_header(std::string_view host) {
  for (unsigned char c : host) {
    if (std::isalnum(c)) continue;
    if (std::string_view("!$%&'()*+,-.:;=[]_~").find(static_cast<char>(c)) == std::string_view::npos)
      return false;
  }
  return true;
}

// Where the header block in data ends (just past its blank line), or npos while incomplete.
// Lines end in "\n" with an optional "\r" before it, as Go's textproto reads them.
size_t find_header_end(std::string_view data, size_t from) {
  for (size_t i = data.find('\n', from); i != std::string_view::npos; i = data.find('\n', i + 1)) {
    if (i + 1 < data.size() && data[i + 1] == '\n') return i + 2;
    if (i + 2 < data.size() && data[i + 1] == '\r' && data[i + 2] == '\n') return i + 3;
  }
  return std::string_view::npos;
}

// Go's httpguts.ValidHeaderFieldName: an RFC 7230 token.
bool valid_header_name(std::string_view name) {
  if (name.empty()) return false;
  for (unsigned char c : name) {
    if (std::isalnum(c)) continue;
    if (std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) == std::string_view::npos)
      return false;
  }
  return true;
}

// Go's httpguts.ValidHeaderFieldValue: no control bytes other than tab.
bool valid_header_value(std::string_view value) {
  for (unsigned char c : value)
    if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
  return true;
}

enum class HeaderVerdict {
  kOk,
  kBadRequest,                   // plain "400 Bad Request"
  kUnsupportedTransferEncoding,  // 501
  kMissingHost,                   // "400 Bad Request: missing required Host header"
  kBadHost,                      // "400 Bad Request: malformed Host header"
  kBadHeaderName,                // "400 Bad Request: invalid header name"
  kBadHeaderValue,               // "400 Bad Request: invalid header value"
};

// Rewrites a raw header block (request line, fields, blank line) into the strict CRLF form
// Beast parses, applying Go's rules that Beast does not share (see the top of this file), in
// Go's order: a line without a colon, several Hosts, the Transfer-Encoding, then (after the
// missing-Host check, done by the caller) a malformed Host, header names, header values.
HeaderVerdict normalize_header(std::string_view raw, std::string& out) {
  std::vector<std::string_view> lines;
  while (!raw.empty()) {
    size_t nl = raw.find('\n');
    std::string_view line = raw.substr(0, nl);
    raw.remove_prefix(nl == std::string_view::npos ? raw.size() : nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) break;
    lines.push_back(line);
  }
  if (lines.empty()) return HeaderVerdict::kBadRequest;
  std::string_view request_line = lines[0];
  const bool http10 = request_line.size() >= 9 &&
                      request_line.substr(request_line.size() - 9) == " HTTP/1.0";
  int hosts = 0;
  bool bad_host = false, bad_name = false, bad_value = false;
  std::vector<std::string_view> encodings;
  std::optional<std::string_view> content_length;
  for (size_t i = 1; i < lines.size(); ++i) {
    std::string_view line = lines[i];
    if (line[0] == ' ' || line[0] == '\t') continue;  // continuation of the previous field
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) return HeaderVerdict::kBadRequest;
    std::string_view name = line.substr(0, colon);
    std::string_view value = trim_ows(line.substr(colon + 1));
    bad_name = bad_name || !valid_header_name(name);
    bad_value = bad_value || !valid_header_value(value);
    if (iequals(name, "Host")) {
      ++hosts;
      bad_host = bad_host || !valid_host_header(value);
    } else if (iequals(name, "Transfer-Encoding")) {
      encodings.push_back(value);
    } else if (iequals(name, "Content-Length")) {
      if (!content_length) content_length = value;
    }
  }
  if (hosts > 1) return HeaderVerdict::kBadRequest;
  const bool chunked = !http10 && !encodings.empty();
  if (chunked && (encodings.size() != 1 || !iequals(encodings[0], "chunked")))
    return HeaderVerdict::kUnsupportedTransferEncoding;
  const bool http11 = request_line.size() >= 9 &&
                      request_line.substr(request_line.size() - 9) == " HTTP/1.1";
  if (http11 && hosts == 0 && request_line.substr(0, 8) != "CONNECT ")
    return HeaderVerdict::kMissingHost;
  if (hosts == 1 && bad_host) return HeaderVerdict::kBadHost;
  if (bad_name) return HeaderVerdict::kBadHeaderName;
  if (bad_value) return HeaderVerdict::kBadHeaderValue;

  out.clear();
  out.append(request_line);
  out += "\r\n";
  bool kept_length = false;
  for (size_t i = 1; i < lines.size(); ++i) {
    std::string_view line = lines[i];
    size_t colon = line.find(':');
    if (colon != std::string_view::npos) {
      std::string_view name = line.substr(0, colon);
      if (iequals(name, "Transfer-Encoding") && http10) continue;
      if (iequals(name, "Content-Length")) {
        if (chunked) continue;
        // Go accepts repeats of the same value; different values stay for Beast to reject.
        if (kept_length && trim_ows(line.substr(colon + 1)) == *content_length) continue;
        kept_length = true;
      }
    }
    out.append(line);
    out += "\r\n";
  }
  out += "\r\n";
  return HeaderVerdict::kOk;
}

// One request's data. The strings keep their capacity between requests of a connection.
struct RequestData {
  std::string method;
  std::string target;
  std::string content_type;
  std::string origin;
  std::string body;
  int version = 11;
  bool has_host = false;
  bool has_content_type = false;
  bool has_origin = false;
  bool expect_continue = false;

  void clear() {
    method.clear();
    target.clear();
    content_type.clear();
    origin.clear();
    body.clear();
    version = 11;
    has_host = has_content_type = has_origin = expect_continue = false;
  }
};

// Beast's HTTP/1 parser keeping only what the API needs, straight into RequestData.
class RequestParser final : public http::basic_parser<true> {
 public:
  explicit RequestParser(RequestData& d) : d_(d) {}

 private:
  void on_request_impl(http::verb, beast::string_view method, beast::string_view target,
                       int version, error_code&) override {
    d_.method.assign(method.data(), method.size());
    d_.target.assign(target.data(), target.size());
    d_.version = version;
  }
  void on_response_impl(int, beast::string_view, int, error_code& ec) override {
    ec = http::error::bad_method;
  }
  void on_field_impl(http::field f, beast::string_view, beast::string_view value,
                     error_code&) override {
    switch (f) {
      case http::field::content_type:
        if (!d_.has_content_type) d_.content_type.assign(value.data(), value.size());
        d_.has_content_type = true;
        break;
      case http::field::origin:
        if (!d_.has_origin) d_.origin.assign(value.data(), value.size());
        d_.has_origin = true;
        break;
      case http::field::host:
        d_.has_host = true;
        break;
      case http::field::expect:
        if (iequals({value.data(), value.size()}, "100-continue")) d_.expect_continue = true;
        break;
      default:
        break;
    }
  }
  void on_header_impl(error_code&) override {}
  void on_body_init_impl(boost::optional<uint64_t> const& content_length, error_code&) override {
    if (content_length && *content_length <= (1u << 20)) d_.body.reserve(*content_length);
  }
  size_t on_body_impl(beast::string_view body, error_code&) override {
    d_.body.append(body.data(), body.size());
    return body.size();
  }
  void on_chunk_header_impl(uint64_t, beast::string_view, error_code&) override {}
  size_t on_chunk_body_impl(uint64_t, beast::string_view body, error_code&) override {
    d_.body.append(body.data(), body.size());
    return body.size();
  }
  void on_finish_impl(error_code&) override {}

  RequestData& d_;
};

class Connection;

}  // namespace

struct ClientServer::State {
  State(asio::io_context& io_, RequestHandler& handler_, std::unique_ptr<ClientApi> api_,
        ClientServerConfig cfg_)
      : io(io_), cfg(std::move(cfg_)), api(std::move(api_)), handler(handler_),
        accept_strand(asio::make_strand(io_)) {
    cors_any = std::find(cfg.cors.begin(), cfg.cors.end(), "*") != cfg.cors.end();
    read_timeout = cfg.read_timeout_override.count() > 0
                       ? std::chrono::duration_cast<Clock::duration>(cfg.read_timeout_override)
                       : std::chrono::duration_cast<Clock::duration>(cfg.read_header_timeout);
  }

  asio::io_context& io;
  const ClientServerConfig cfg;
  std::unique_ptr<ClientApi> api;  // when serving a member; then handler is *api
  RequestHandler& handler;
  bool cors_any = false;
  Clock::duration read_timeout{};

  // Acceptors and their endpoints; the acceptors are used only on accept_strand after listen().
  asio::strand<asio::io_context::executor_type> accept_strand;
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors;
  std::vector<tcp::endpoint> endpoints;

  mutable std::mutex mu;
  std::unordered_map<Connection*, std::weak_ptr<Connection>> connections;  // guarded by mu
  std::atomic<bool> stopped{false};  // no new connections or requests (stop or shutdown)
  bool stop_done = false;            // stop() ran; guarded by mu
  // Requests handed to the ClientApi and not answered yet, over all connections.
  std::atomic<int64_t> handling{0};
};

namespace {

// One client connection. Owned by the shared_ptrs held by its pending operations and by
// handlers answering its current request. REQUIRES: every private method runs on the executor
// of socket_ (a strand, or a single-threaded loop); the Exchange methods may be called from any
// thread and dispatch to it.
class Connection final : public Exchange, public std::enable_shared_from_this<Connection> {
 public:
  Connection(std::shared_ptr<ClientServer::State> state, tcp::socket socket)
      : state_(std::move(state)),
        socket_(std::move(socket)),
        timer_(socket_.get_executor()),
        buf_(2 * kHeaderLimit) {
    error_code ec;
    auto ep = socket_.remote_endpoint(ec);
    if (!ec) remote_ip_ = ep.address().to_string();
  }

  ~Connection() override {
    std::lock_guard lock(state_->mu);
    state_->connections.erase(this);
  }

  // Any thread.
  void start() {
    asio::dispatch(socket_.get_executor(), [self = shared_from_this()] { self->read_request(); });
  }
  // Closes now, except that a response being written is finished first (then it closes).
  void stop() {
    asio::post(socket_.get_executor(), [self = shared_from_this()] {
      if (self->writing_ && !self->streaming_) {
        self->close_after_ = true;
        return;
      }
      self->close();
    });
  }
  // Shutdown: closes the connection unless a request on it is being handled or answered
  // (those close after their answer, see finish_request).
  void stop_if_idle() {
    asio::post(socket_.get_executor(), [self = shared_from_this()] {
      if (self->streaming_ || (!self->handling_ && !self->writing_)) self->close();
    });
  }

  void reply(HttpResponse response) override {
    asio::dispatch(socket_.get_executor(),
                   [self = shared_from_this(), r = std::move(response)]() mutable {
                     self->do_reply(std::move(r));
                   });
  }
  void begin_stream(HttpResponse headers, std::function<void()> on_close) override {
    asio::dispatch(socket_.get_executor(), [self = shared_from_this(), h = std::move(headers),
                                            f = std::move(on_close)]() mutable {
      self->do_begin_stream(std::move(h), std::move(f));
    });
  }
  void send_chunk(std::string data) override {
    asio::dispatch(socket_.get_executor(), [self = shared_from_this(), d = std::move(data)]() mutable {
      self->do_send_chunk(std::move(d), nullptr);
    });
  }
  void send_chunk(std::string data, std::function<void()> written) override {
    asio::dispatch(socket_.get_executor(), [self = shared_from_this(), d = std::move(data),
                                            w = std::move(written)]() mutable {
      self->do_send_chunk(std::move(d), std::move(w));
    });
  }
  void end_stream() override {
    asio::dispatch(socket_.get_executor(), [self = shared_from_this()] { self->do_end_stream(); });
  }
  void notify_close(std::function<void()> on_close) override {
    asio::dispatch(socket_.get_executor(), [self = shared_from_this(), f = std::move(on_close)]() mutable {
      self->do_notify_close(std::move(f));
    });
  }

 private:
  // ---- reading requests ----

  void read_request() {
    if (closed_) return;
    req_.clear();
    body_error_.clear();
    parser_.emplace(req_);
    parser_->header_limit(kHeaderLimit);
    parser_->body_limit(state_->cfg.max_request_bytes);
    set_deadline(Clock::now() + state_->read_timeout);
    header_scanned_ = 0;
    scan_header();
  }

  // Waits for the whole header block in buf_, then checks and parses it (normalize_header).
  void scan_header() {
    if (closed_) return;
    std::string_view data(static_cast<const char*>(buf_.data().data()), buf_.size());
    size_t end = find_header_end(data, header_scanned_ > 2 ? header_scanned_ - 2 : 0);
    if (end == std::string_view::npos) {
      if (data.size() >= kHeaderLimit)
        return write_raw_and_close("431 Request Header Fields Too Large");
      header_scanned_ = data.size();
      size_t room = std::min<size_t>(16 * 1024, buf_.max_size() - buf_.size());
      socket_.async_read_some(buf_.prepare(room), [self = shared_from_this()](error_code ec, size_t n) {
        if (self->closed_) return;
        if (ec) return self->close();  // EOF, reset, timeout, stop: nothing to answer
        self->buf_.commit(n);
        self->scan_header();
      });
      return;
    }
    if (end > kHeaderLimit) return write_raw_and_close("431 Request Header Fields Too Large");
    const HeaderVerdict verdict = normalize_header(data.substr(0, end), header_);
    switch (verdict) {
      case HeaderVerdict::kOk:
        break;
      case HeaderVerdict::kBadRequest:
        return write_raw_and_close("400 Bad Request");
      case HeaderVerdict::kMissingHost:
        return write_raw_and_close("400 Bad Request: missing required Host header");
      case HeaderVerdict::kBadHost:
      case HeaderVerdict::kBadHeaderName:
      case HeaderVerdict::kBadHeaderValue:
        return write_raw_and_close(verdict == HeaderVerdict::kBadHost
                                       ? "400 Bad Request: malformed Host header"
                                   : verdict == HeaderVerdict::kBadHeaderName
                                       ? "400 Bad Request: invalid header name"
                                       : "400 Bad Request: invalid header value");
      case HeaderVerdict::kUnsupportedTransferEncoding:
        return write_raw_and_close("501 Not Implemented", "Unsupported transfer encoding");
    }
    error_code ec;
    parser_->put(asio::buffer(header_), ec);
    if (!ec && !parser_->is_header_done()) ec = http::error::bad_version;  // cannot happen
    if (ec) return on_read_error(ec);
    buf_.consume(end);
    on_header();
  }

  void on_header() {
    version_ = req_.version;
    keep_alive_ = parser_->keep_alive();
    if (!req_.has_host && req_.version >= 11)
      return write_raw_and_close("400 Bad Request: missing required Host header");
    if (req_.target == "*") return reply_asterisk();
    if (parser_->is_done()) return dispatch_request();
    auto length = parser_->content_length();
    if (length && *length > state_->cfg.max_request_bytes) return reply_too_large();
    if (req_.expect_continue && req_.version >= 11) {
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      asio::async_write(socket_, asio::buffer(kContinue.data(), kContinue.size()),
                        [self = shared_from_this()](error_code ec, size_t) {
                          if (ec) return self->close();
                          self->read_body();
                        });
      return;
    }
    read_body();
  }

  void read_body() {
    if (closed_) return;
    set_deadline(Clock::now() + state_->read_timeout);
    http::async_read(socket_, buf_, *parser_, [self = shared_from_this()](error_code ec, size_t) {
      if (self->closed_) return;
      if (ec == http::error::bad_chunk || ec == http::error::bad_chunk_extension)
        return self->dispatch_broken_chunked_body();
      if (ec) return self->on_read_error(ec);
      self->dispatch_request();
    });
  }

  // Go hands a request to the handler before its body is read, so a broken chunked body
  // surfaces as the body reader's error: the API answers with it (etcd: 210 "Invalid POST
  // form"), and the connection closes since the stream is out of step.
  void dispatch_broken_chunked_body() {
    // Beast stops where the chunk header (CRLF after the previous chunk's data, then the hex
    // size) was expected: a bad size byte is Go's "invalid byte in chunk length"; anything
    // else, such as a missing CRLF after the data, is "malformed chunked encoding".
    std::string_view rest(static_cast<const char*>(buf_.data().data()), buf_.size());
    if (rest.substr(0, 2) == "\r\n") rest.remove_prefix(2);
    const bool bad_size = !rest.empty() && !std::isxdigit(static_cast<unsigned char>(rest[0]));
    body_error_ = bad_size ? "invalid byte in chunk length" : "malformed chunked encoding";
    keep_alive_ = false;
    dispatch_request();
  }

  // Go's server answers "OPTIONS *" itself (200, empty); its ServeMux answers any other method
  // with "*" with 400 and "Connection: close" set as a handler header.
  void reply_asterisk() {
    clear_deadline();
    const bool options = req_.method == "OPTIONS";
    close_after_ = !keep_alive_ || !options || state_stopping();
    out_.clear();
    out_ += version_ >= 11 ? "HTTP/1.1 " : "HTTP/1.0 ";
    out_ += options ? "200 OK\r\nContent-Length: 0\r\n" : "400 Bad Request\r\n";
    if (!options && version_ >= 11) out_ += "Connection: close\r\n";
    append_date_header(out_);
    if (!options) out_ += "Content-Length: 0\r\n";
    if (close_after_) {
      if (options && version_ >= 11) out_ += "Connection: close\r\n";
    } else if (version_ < 11) {
      out_ += "Connection: keep-alive\r\n";
    }
    out_ += "\r\n";
    body_.clear();
    tail_.clear();
    write_response(true);
  }

  void on_read_error(error_code ec) {
    if (ec == http::error::body_limit) return reply_too_large();
    if (ec == http::error::bad_transfer_encoding)
      return write_raw_and_close("501 Not Implemented", "Unsupported transfer encoding");
    if (ec == http::error::header_limit)
      return write_raw_and_close("431 Request Header Fields Too Large");
    if (ec.category() == http::make_error_code(http::error::bad_method).category() &&
        ec != http::error::end_of_stream && ec != http::error::partial_message &&
        ec != http::error::buffer_overflow) {
      return write_raw_and_close("400 Bad Request");
    }
    // EOF, reset, timeout (socket closed by the timer), stop: nothing to answer.
    close();
  }

  void dispatch_request() {
    clear_deadline();
    HttpRequest r;
    r.method = req_.method;
    r.target = req_.target;
    r.content_type = req_.content_type;
    r.body = req_.body;
    r.body_error = body_error_;
    r.version = req_.version;
    r.raw_header = header_;
    r.remote_ip = remote_ip_;
    set_handling(true);
    state_->handler.handle(r, shared_from_this());
  }

  void set_handling(bool on) {
    if (handling_ == on) return;
    handling_ = on;
    state_->handling.fetch_add(on ? 1 : -1);
  }

  // ---- answering ----

  void reply_too_large() {
    HttpResponse r;
    r.status = 413;
    r.content_type = "application/json";
    r.body = R"({"message":"http: request body too large"})";
    r.close = true;
    do_reply(std::move(r));
  }

  // Go's answer to a request it cannot read: no CORS, always closes.
  // Go's answer to a request it cannot read: no Date, body = status text unless given.
  void write_raw_and_close(std::string_view status_text, std::string_view body = {}) {
    out_.clear();
    out_ += "HTTP/1.1 ";
    out_ += status_text;
    out_ += "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n";
    out_ += body.empty() ? status_text : body;
    body_.clear();
    tail_.clear();
    close_after_ = true;
    write_response(false);
  }

  // How a response body is delimited.
  enum class Framing { kLength, kChunked, kNone };

  // kChunked on HTTP/1.0 writes no framing header (the body ends with the connection).
  void compose_headers(const HttpResponse& r, Framing framing) {
    out_.clear();
    out_ += version_ >= 11 ? "HTTP/1.1 " : "HTTP/1.0 ";
    append_uint(out_, static_cast<uint64_t>(r.status));
    out_ += ' ';
    out_ += reason(r.status);
    out_ += "\r\n";
    if (r.cors) {
      std::string_view origin;
      if (state_->cors_any) {
        origin = "*";
      } else if (req_.has_origin) {
        for (const auto& o : state_->cfg.cors)
          if (o == req_.origin) origin = req_.origin;
      }
      if (!origin.empty()) {
        out_ +=
            "Access-Control-Allow-Headers: accept, content-type, authorization\r\n"
            "Access-Control-Allow-Methods: POST, GET, OPTIONS, PUT, DELETE\r\n"
            "Access-Control-Allow-Origin: ";
        out_ += origin;
        out_ += "\r\n";
      }
    }
    out_ += r.raw_headers;
    if (!r.allow.empty()) {
      out_ += "Allow: ";
      out_ += r.allow;
      out_ += "\r\n";
    }
    if (!r.content_type.empty()) {
      out_ += "Content-Type: ";
      out_ += r.content_type;
      out_ += "\r\n";
    }
    if (!r.location.empty()) {
      out_ += "Location: ";
      out_ += r.location;
      out_ += "\r\n";
    }
    if (r.nosniff) out_ += "X-Content-Type-Options: nosniff\r\n";
    if (r.cluster_id) {
      out_ += "X-Etcd-Cluster-Id: ";
      append_uint(out_, *r.cluster_id, 16);
      out_ += "\r\n";
    }
    if (r.etcd_index) {
      out_ += "X-Etcd-Index: ";
      append_uint(out_, *r.etcd_index);
      out_ += "\r\n";
    }
    if (r.raft_index) {
      out_ += "X-Raft-Index: ";
      append_uint(out_, *r.raft_index);
      out_ += "\r\n";
    }
    if (r.raft_term) {
      out_ += "X-Raft-Term: ";
      append_uint(out_, *r.raft_term);
      out_ += "\r\n";
    }
    if (r.date) append_date_header(out_);
    if (framing == Framing::kChunked) {
      if (version_ >= 11) out_ += "Transfer-Encoding: chunked\r\n";
    } else if (framing == Framing::kLength) {
      out_ += "Content-Length: ";
      append_uint(out_, r.content_length ? *r.content_length : r.body.size());
      out_ += "\r\n";
    }
    if (close_after_) {
      if (version_ >= 11) out_ += "Connection: close\r\n";
    } else if (version_ < 11) {
      out_ += "Connection: keep-alive\r\n";
    }
    out_ += "\r\n";
  }

  void do_reply(HttpResponse r) {
    if (closed_ || streaming_ || writing_) return;
    set_handling(false);
    on_close_ = nullptr;
    if (r.unreadable_request) {
      std::string status_text = std::to_string(r.status) + " " + std::string(reason(r.status));
      return write_raw_and_close(status_text, r.body);
    }
    close_after_ = r.close || !keep_alive_ || state_stopping();
    tail_.clear();
    const bool body_allowed = r.status >= 200 && r.status != 204 && r.status != 304;
    if (!r.content_length && r.body.empty() && req_.method == "HEAD" && body_allowed) {
      compose_headers(r, Framing::kNone);  // Go: a HEAD answer that wrote nothing has no length
    } else if (r.content_length || r.body.size() <= kGoResponseBuffer || !body_allowed) {
      compose_headers(r, Framing::kLength);
    } else if (r.omit_body) {
      compose_headers(r, Framing::kNone);  // HEAD: Go has sent the headers before the end
    } else if (version_ >= 11) {
      compose_headers(r, Framing::kChunked);
      append_uint(out_, r.body.size(), 16);  // the handler's one write is one chunk
      out_ += "\r\n";
      tail_ = "\r\n0\r\n\r\n";
    } else {
      close_after_ = true;  // HTTP/1.0: the body ends with the connection
      compose_headers(r, Framing::kNone);
    }
    if (r.omit_body) body_.clear();
    else body_ = std::move(r.body);
    write_response(true);
  }

  void write_response(bool finish_normally) {
    writing_ = true;
    std::array<asio::const_buffer, 3> bufs{asio::buffer(out_), asio::buffer(body_),
                                           asio::buffer(tail_)};
    asio::async_write(socket_, bufs,
                      [self = shared_from_this(), finish_normally](error_code ec, size_t) {
                        self->writing_ = false;
                        if (ec || self->closed_) return self->close();
                        if (!finish_normally) return self->graceful_close();
                        self->finish_request();
                      });
  }

  // The current request is fully answered: next request, or close.
  void finish_request() {
    if (close_after_ || state_stopping()) return graceful_close();
    if (bg_reading_) {
      // The watch's disconnect detector is still pending; it resumes reading when it completes.
      resume_after_bg_read_ = true;
      set_deadline(Clock::now() + state_->read_timeout);
      return;
    }
    read_request();
  }

  void do_begin_stream(HttpResponse h, std::function<void()> on_close) {
    if (closed_ || streaming_ || writing_) {
      if (on_close) on_close();
      return;
    }
    set_handling(false);
    streaming_ = true;
    stream_ending_ = false;
    on_close_ = std::move(on_close);
    chunked_ = version_ >= 11;
    // HTTP/1.0 has no chunks: the body runs until the connection closes.
    close_after_ = !keep_alive_ || !chunked_ || state_stopping();
    compose_headers(h, Framing::kChunked);
    queue_.push_back(out_);
    flush();
    start_bg_read();
  }

  // The pending read that notices a client leaving is the one a stream uses (start_bg_read).
  void do_notify_close(std::function<void()> on_close) {
    if (closed_) {
      if (on_close) on_close();
      return;
    }
    if (streaming_ || writing_) return;  // already answering
    on_close_ = std::move(on_close);
    start_bg_read();
  }

  void do_send_chunk(std::string data, std::function<void()> written) {
    if (closed_ || !streaming_ || stream_ending_) return;
    if (chunked_) {
      std::string framed;
      framed.reserve(data.size() + 12);
      append_uint(framed, data.size(), 16);
      framed += "\r\n";
      framed += data;
      framed += "\r\n";
      queue_.push_back(std::move(framed));
    } else {
      queue_.push_back(std::move(data));
    }
    if (written) written_.push_back(std::move(written));
    if (queue_.size() > kMaxQueuedChunks) {
      spdlog::debug("closing a watch stream: client too slow ({} events queued)", queue_.size());
      return close();
    }
    flush();
  }

  void do_end_stream() {
    if (closed_ || !streaming_ || stream_ending_) return;
    stream_ending_ = true;
    if (chunked_) queue_.emplace_back("0\r\n\r\n");
    flush();
  }

  void flush() {
    if (writing_ || closed_) return;
    if (queue_.empty()) {
      if (stream_ending_) {
        streaming_ = false;
        stream_ending_ = false;
        on_close_ = nullptr;
        finish_request();
      }
      return;
    }
    writing_ = true;
    batch_.clear();
    while (!queue_.empty()) {
      batch_.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
    batch_written_.clear();
    batch_written_.swap(written_);  // every queued chunk is in this batch
    batch_bufs_.clear();
    for (const auto& s : batch_) batch_bufs_.push_back(asio::buffer(s));
    asio::async_write(socket_, batch_bufs_, [self = shared_from_this()](error_code ec, size_t) {
      self->writing_ = false;
      if (ec || self->closed_) return self->close();
      auto written = std::move(self->batch_written_);
      self->batch_written_.clear();
      for (auto& f : written) f();
      self->flush();
    });
  }

  // ---- reading while not parsing: disconnect detection and draining ----

  void start_bg_read() {
    if (bg_reading_ || closed_) return;
    if (!lingering_ && buf_.size() >= kMaxBufferedWhileWatching) return;
    bg_reading_ = true;
    socket_.async_read_some(buf_.prepare(4096),
                            [self = shared_from_this()](error_code ec, size_t n) {
                              self->on_bg_read(ec, n);
                            });
  }

  void on_bg_read(error_code ec, size_t n) {
    bg_reading_ = false;
    if (closed_) return;
    if (ec) return close();  // the client left (or the linger ended)
    buf_.commit(n);
    if (lingering_) {
      buf_.consume(buf_.size());
      return start_bg_read();
    }
    if (streaming_) {
      // Bytes while streaming are the client's next request, possibly sent as soon as it saw
      // the stream's last chunk, before that write's completion ended the stream here: keep
      // them for finish_request() to parse, which it does at once when no read is pending.
      if (buf_.size() == 0) start_bg_read();
      return;
    }
    if (resume_after_bg_read_) {
      resume_after_bg_read_ = false;
      read_request();
    }
  }

  // Final answer written: stop sending, drain what the client still sends for a while.
  void graceful_close() {
    if (closed_) return;
    error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_send, ignored);
    lingering_ = true;
    streaming_ = false;
    on_close_ = nullptr;
    set_deadline(Clock::now() + std::min<Clock::duration>(kLingerTime, state_->read_timeout));
    start_bg_read();
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    set_handling(false);  // an answer that comes now is dropped
    error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    timer_.cancel();
    streaming_ = false;
    queue_.clear();
    written_.clear();
    batch_written_.clear();
    if (on_close_) {
      auto f = std::move(on_close_);
      on_close_ = nullptr;
      f();
    }
  }

  bool state_stopping() const { return state_->stopped.load(std::memory_order_relaxed); }

  // ---- the read deadline: one timer per connection, re-armed lazily ----

  void set_deadline(Clock::time_point t) {
    deadline_ = t;
    if (!timer_armed_) {
      timer_armed_ = true;
      timer_.expires_at(t);
      timer_.async_wait([self = shared_from_this()](error_code ec) { self->on_timer(ec); });
    } else if (t < timer_.expiry()) {
      timer_.expires_at(t);  // the pending wait completes with operation_aborted
      timer_.async_wait([self = shared_from_this()](error_code ec) { self->on_timer(ec); });
    }
  }
  void clear_deadline() { deadline_ = Clock::time_point::max(); }

  void on_timer(error_code ec) {
    if (ec == asio::error::operation_aborted || closed_) return;
    timer_armed_ = false;
    if (deadline_ == Clock::time_point::max()) return;
    if (Clock::now() >= deadline_) {
      if (!lingering_) spdlog::debug("closing a client connection: read timeout");
      return close();
    }
    set_deadline(deadline_);
  }

  std::shared_ptr<ClientServer::State> state_;
  tcp::socket socket_;
  asio::steady_timer timer_;
  beast::flat_buffer buf_;
  RequestData req_;
  std::optional<RequestParser> parser_;

  // The current request. Invariant: at most one write in flight (writing_).
  int version_ = 11;
  bool keep_alive_ = true;
  bool close_after_ = false;
  bool writing_ = false;
  bool handling_ = false;  // handed to the ClientApi, not answered yet (counted in State)
  std::string out_;   // headers of a plain response
  std::string body_;  // body of a plain response
  std::string tail_;  // after body_: the end of a chunked plain response, else empty
  std::string header_;       // the current request's header block, normalized for Beast
  size_t header_scanned_ = 0;  // bytes of buf_ already searched for the header's end
  std::string body_error_;   // why the body could not be read (Go's text), else empty

  // Streaming (watch) state. Invariant: on_close_ is set only while streaming_, or between
  // notify_close() and the answer.
  bool streaming_ = false;
  bool stream_ending_ = false;
  bool chunked_ = true;
  std::function<void()> on_close_;
  std::deque<std::string> queue_;  // not yet handed to the socket
  // send_chunk's callbacks for the chunks in queue_, and for those in the batch being written.
  std::vector<std::function<void()>> written_, batch_written_;
  std::vector<std::string> batch_;  // being written
  std::vector<asio::const_buffer> batch_bufs_;

  bool bg_reading_ = false;
  bool resume_after_bg_read_ = false;
  bool lingering_ = false;
  bool closed_ = false;
  std::string remote_ip_;

  Clock::time_point deadline_ = Clock::time_point::max();
  bool timer_armed_ = false;
};

struct ParsedUrl {
  std::string host;
  uint16_t port = 0;
};

// Parses a listen URL as etcd accepts it for binding: http://IP:port.
std::optional<ParsedUrl> parse_listen_url(const std::string& url, std::string* error) {
  std::string_view u = url;
  if (u.rfind("https://", 0) == 0) {
    *error = "https (TLS) is not supported by kvd: " + url;
    return std::nullopt;
  }
  if (u.rfind("unix://", 0) == 0 || u.rfind("unixs://", 0) == 0) {
    *error = "unix sockets are not supported by kvd: " + url;
    return std::nullopt;
  }
  if (u.rfind("http://", 0) != 0) {
    *error = "URL scheme must be http, https, unix, or unixs: " + url;
    return std::nullopt;
  }
  u.remove_prefix(7);
  if (!u.empty() && u.back() == '/') u.remove_suffix(1);
  if (u.find('/') != std::string_view::npos) {
    *error = "URL must not contain a path: " + url;
    return std::nullopt;
  }
  size_t colon = u.rfind(':');
  if (colon == std::string_view::npos || colon + 1 == u.size()) {
    *error = "URL address does not have the form \"host:port\": " + url;
    return std::nullopt;
  }
  std::string_view host = u.substr(0, colon);
  std::string_view port = u.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  unsigned value = 0;
  auto res = std::from_chars(port.data(), port.data() + port.size(), value);
  if (res.ec != std::errc() || res.ptr != port.data() + port.size() || value > 65535) {
    *error = "invalid port in URL: " + url;
    return std::nullopt;
  }
  ParsedUrl out;
  out.host = host.empty() ? "0.0.0.0" : host == "localhost" ? "127.0.0.1" : std::string(host);
  out.port = static_cast<uint16_t>(value);
  return out;
}

void accept_loop(const std::shared_ptr<ClientServer::State>& state, size_t i) {
  asio::any_io_executor executor = state->cfg.connection_executor
                                       ? state->cfg.connection_executor()
                                       : asio::any_io_executor(asio::make_strand(state->io));
  state->acceptors[i]->async_accept(
      executor,
      asio::bind_executor(state->accept_strand, [state, i](error_code ec, tcp::socket socket) {
        if (ec == asio::error::operation_aborted || state->stopped) return;
        if (ec) {
          // Out of descriptors and the like: back off briefly instead of spinning.
          spdlog::warn("accepting a client connection failed: {}", ec.message());
          auto timer = std::make_shared<asio::steady_timer>(state->accept_strand,
                                                            std::chrono::milliseconds(100));
          timer->async_wait([state, i, timer](error_code) {
            if (state->stopped) return;
            asio::post(state->accept_strand, [state, i] { accept_loop(state, i); });
          });
          return;
        }
        error_code ignored;
        socket.set_option(tcp::no_delay(true), ignored);
        auto conn = std::make_shared<Connection>(state, std::move(socket));
        {
          // Under mu with the stopped check, so stop() sees every connection it must close.
          std::lock_guard lock(state->mu);
          if (state->stopped) return;
          state->connections.emplace(conn.get(), conn);
        }
        conn->start();
        accept_loop(state, i);
      }));
}

}  // namespace

ClientServer::ClientServer(asio::io_context& io, Node& node, ClientServerConfig cfg) {
  auto api = std::make_unique<ClientApi>(node);
  RequestHandler& handler = *api;
  state_ = std::make_shared<State>(io, handler, std::move(api), std::move(cfg));
}

ClientServer::ClientServer(asio::io_context& io, RequestHandler& handler, ClientServerConfig cfg)
    : state_(std::make_shared<State>(io, handler, nullptr, std::move(cfg))) {}

ClientServer::~ClientServer() { stop(); }

Status ClientServer::listen() {
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors;
  std::vector<tcp::endpoint> endpoints;
  for (const auto& url : state_->cfg.listen_urls) {
    std::string error;
    auto parsed = parse_listen_url(url, &error);
    if (!parsed) return Status::error(error);
    error_code ec;
    auto address = asio::ip::make_address(parsed->host, ec);
    if (ec) return Status::error("expected IP in URL for binding (" + url + ")");
    tcp::endpoint ep(address, parsed->port);
    auto acceptor = std::make_unique<tcp::acceptor>(state_->accept_strand);
    auto fail = [&](const char* what) {
      return Status::error("listen tcp " + address.to_string() + ":" +
                           std::to_string(parsed->port) + " (" + url + "): " + what + ": " +
                           ec.message());
    };
    if (acceptor->open(ep.protocol(), ec); ec) return fail("socket");
    if (acceptor->set_option(tcp::acceptor::reuse_address(true), ec); ec) return fail("setsockopt");
    if (acceptor->bind(ep, ec); ec) return fail("bind");
    if (acceptor->listen(asio::socket_base::max_listen_connections, ec); ec) return fail("listen");
    endpoints.push_back(acceptor->local_endpoint(ec));
    acceptors.push_back(std::move(acceptor));
  }
  state_->acceptors = std::move(acceptors);
  state_->endpoints = std::move(endpoints);
  for (size_t i = 0; i < state_->acceptors.size(); ++i) accept_loop(state_, i);
  return Status::ok();
}

namespace {

// Stops accepting (the listeners close on the accept strand) and returns the open connections.
// Returns nothing when `once` and a stop already ran.
std::vector<std::shared_ptr<Connection>> stop_accepting(
    const std::shared_ptr<ClientServer::State>& state, bool once) {
  std::vector<std::shared_ptr<Connection>> conns;
  {
    std::lock_guard lock(state->mu);
    if (once) {
      if (state->stop_done) return conns;
      state->stop_done = true;
    }
    state->stopped = true;
    for (auto& [ptr, weak] : state->connections)
      if (auto c = weak.lock()) conns.push_back(std::move(c));
  }
  asio::post(state->accept_strand, [state] {
    for (auto& a : state->acceptors) {
      error_code ignored;
      a->close(ignored);
    }
  });
  return conns;
}

}  // namespace

void ClientServer::stop() {
  for (auto& c : stop_accepting(state_, true)) c->stop();
}

void ClientServer::shutdown(std::chrono::milliseconds timeout, std::function<void()> done) {
  for (auto& c : stop_accepting(state_, false)) c->stop_if_idle();
  // Polled: the answers come from the node's strand, which has no hook for "all answered".
  poll_until(
      state_->accept_strand, std::chrono::milliseconds(10), Clock::now() + timeout,
      [state = state_] { return state->handling.load() <= 0; },
      [state = state_, done = std::move(done)] {
        if (state->handling.load() > 0) {
          spdlog::warn("stopping with {} client requests unanswered", state->handling.load());
        }
        done();
      });
}

std::vector<tcp::endpoint> ClientServer::local_endpoints() const { return state_->endpoints; }

size_t ClientServer::connection_count() const {
  std::lock_guard lock(state_->mu);
  return state_->connections.size();
}

}  // namespace kvd::server
