#include "server/http/connection.h"

#include <algorithm>
#include <array>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_suffix.hpp>
#include <boost/beast/http/read.hpp>
#include <spdlog/spdlog.h>

#include "common/go.h"
#include "server/http/header_checks.h"

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

}  // namespace

Connection::Connection(std::shared_ptr<ClientServer::State> state, tcp::socket socket,
                       std::shared_ptr<tls::TlsContexts> tls, std::shared_ptr<void> place_lease)
    : place_lease_(std::move(place_lease)),
      state_(std::move(state)),
      tls_(std::move(tls)),
      socket_(std::move(socket)),
      timer_(socket_.get_executor()),
      buf_(2 * kHeaderLimit) {
  error_code ec;
  auto ep = socket_.socket().remote_endpoint(ec);
  if (!ec) remote_ip_ = ep.address().to_string();
}

Connection::~Connection() {
  std::lock_guard lock(state_->mu);
  state_->connections.erase(this);
}

void Connection::stop() {
  asio::post(socket_.get_executor(), [self = shared_from_this()] {
    if (self->writing_ && !self->streaming_) {
      self->close_after_ = true;
      return;
    }
    self->close();
  });
}

void Connection::stop_if_idle() {
  asio::post(socket_.get_executor(), [self = shared_from_this()] {
    if (self->streaming_ || (!self->handling_ && !self->writing_)) self->close();
  });
}

void Connection::reply(HttpResponse response) {
  asio::dispatch(socket_.get_executor(),
                 [self = shared_from_this(), r = std::move(response)]() mutable {
                   self->do_reply(std::move(r));
                 });
}

void Connection::begin_stream(HttpResponse headers, std::function<void()> on_close) {
  asio::dispatch(socket_.get_executor(), [self = shared_from_this(), h = std::move(headers),
                                          f = std::move(on_close)]() mutable {
    self->do_begin_stream(std::move(h), std::move(f));
  });
}

void Connection::send_chunk(std::string data) {
  asio::dispatch(socket_.get_executor(), [self = shared_from_this(), d = std::move(data)]() mutable {
    self->do_send_chunk(Piece{std::move(d), nullptr}, nullptr);
  });
}

void Connection::send_chunk(std::string data, std::function<void()> written) {
  asio::dispatch(socket_.get_executor(), [self = shared_from_this(), d = std::move(data),
                                          w = std::move(written)]() mutable {
    self->do_send_chunk(Piece{std::move(d), nullptr}, std::move(w));
  });
}

void Connection::send_chunk(SharedBytes data) {
  asio::dispatch(socket_.get_executor(), [self = shared_from_this(), d = std::move(data)]() mutable {
    self->do_send_chunk(Piece{{}, std::move(d)}, nullptr);
  });
}

void Connection::send_last_chunk(std::string data) {
  post_last_chunk(Piece{std::move(data), nullptr});
}

void Connection::send_last_chunk(SharedBytes data) { post_last_chunk(Piece{{}, std::move(data)}); }

void Connection::post_last_chunk(Piece data) {
  // Posted even on the connection's own loop: a long poll's event comes from a store notifying
  // many watchers in one go, on the loop of the raft strand. Those of that loop's connections
  // then go out after the notifying is done, so that the hand-offs to the other loops come first
  // and their writes run in parallel with these.
  asio::post(socket_.get_executor(), [self = shared_from_this(), d = std::move(data)]() mutable {
    if (self->queue_chunk(std::move(d), nullptr)) self->do_end_stream();
  });
}

void Connection::notify_close(std::function<void()> on_close) {
  asio::dispatch(socket_.get_executor(), [self = shared_from_this(), f = std::move(on_close)]() mutable {
    self->do_notify_close(std::move(f));
  });
}

void Connection::start_tls() {
  set_deadline(Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                  state_->cfg.tls_handshake_timeout));
  read_first_bytes();
}

void Connection::read_first_bytes() {
  socket_.socket().async_read_some(buf_.prepare(4096), [self = shared_from_this()](error_code ec, size_t n) {
    if (self->closed_) return;
    if (ec) return self->close();  // left, or the handshake deadline passed
    self->buf_.commit(n);
    std::string_view d(static_cast<const char*>(self->buf_.data().data()), self->buf_.size());
    if (d[0] != 0x16) {  // not a TLS handshake record: plain HTTP or anything else
      self->warn_tls("first record does not look like a TLS handshake");
      return self->close();
    }
    self->socket_.use_tls(self->tls_->server());
    self->socket_.async_handshake(boost::asio::ssl::stream_base::server, self->buf_.data(),
                                  [self](error_code ec, size_t) {
                                    // The client waits for the server's answer to its hello,
                                    // so nothing past the hello was read.
                                    self->buf_.consume(self->buf_.size());
                                    self->on_tls_handshake(ec);
                                  });
  });
}

void Connection::on_tls_handshake(error_code ec) {
  if (closed_) return;
  if (ec) {
    warn_tls(tls::describe_handshake_error(socket_.native_ssl(), ec));
    return close();
  }
  client_cert_cn_ = tls::TlsContexts::verified_peer_common_name(socket_.native_ssl());
  read_request();
}

void Connection::warn_tls(const std::string& why) {
  uint64_t suppressed = 0;
  {
    std::lock_guard lock(state_->tls_warn_mu);
    auto now = Clock::now();
    if (state_->last_tls_warning != Clock::time_point{} &&
        now - state_->last_tls_warning < std::chrono::seconds(1)) {
      ++state_->tls_warnings_suppressed;
      return;
    }
    state_->last_tls_warning = now;
    suppressed = std::exchange(state_->tls_warnings_suppressed, 0);
  }
  if (suppressed > 0) {
    SPDLOG_WARN("rejected connection from {}: TLS: {} ({} more rejected since the last warning)",
                 remote_ip_, why, suppressed);
  } else {
    SPDLOG_WARN("rejected connection from {}: TLS: {}", remote_ip_, why);
  }
}

void Connection::read_request() {
  if (closed_) return;
  release_body_charge();
  req_.clear();
  body_error_.clear();
  parser_.emplace(req_);
  parser_->header_limit(kHeaderLimit);
  parser_->body_limit(state_->cfg.max_request_bytes);
  set_deadline(Clock::now() + state_->read_timeout);
  header_scanned_ = 0;
  scan_header();
}

void Connection::scan_header() {
  if (closed_) return;
  std::string_view data(static_cast<const char*>(buf_.data().data()), buf_.size());
  if (!tls_ && !data.empty() && data[0] == 0x16 && header_scanned_ == 0 && req_count_ == 0) {
    // A TLS handshake sent to the plain port: closed at once, as etcd does (its client then
    // reports EOF), rather than read as a request line that never ends.
    return close();
  }
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

void Connection::on_header() {
  ++req_count_;
  version_ = req_.version;
  keep_alive_ = parser_->keep_alive();
  if (!req_.has_host && req_.version >= 11)
    return write_raw_and_close("400 Bad Request: missing required Host header");
  if (req_.target == "*") return reply_asterisk();
  if (parser_->is_done()) return dispatch_request();
  auto length = parser_->content_length();
  if (length && *length > state_->cfg.max_request_bytes) return reply_too_large();
  // A chunked body's size is unknown until it ends: it is charged as large as it may grow.
  if (!charge_body(length ? *length : state_->cfg.max_request_bytes)) return reply_busy();
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

void Connection::read_body() {
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

void Connection::dispatch_broken_chunked_body() {
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

void Connection::reply_asterisk() {
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

void Connection::on_read_error(error_code ec) {
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

void Connection::dispatch_request() {
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
  r.client_cert_cn = client_cert_cn_;
  r.authorization = req_.authorization;
  r.host = req_.host;
  r.tls = socket_.is_tls();
  set_handling(true);
  if (!r.tls && !state_->hosts.allows_all() && !state_->hosts.allows(r.host)) {
    std::string_view name = HostWhitelist::hostname(r.host);
    SPDLOG_WARN("rejecting HTTP request to prevent DNS rebinding attacks (host {})", go::quote(name));
    HttpResponse resp;
    resp.status = 421;
    resp.content_type = "text/plain; charset=utf-8";
    resp.nosniff = true;
    resp.body = HostWhitelist::refusal_text(name) + "\n";
    resp.cors = false;
    return reply(std::move(resp));
  }
  if (!state_->cfg.only_paths.empty()) {
    std::string_view path = r.target.substr(0, r.target.find('?'));
    const auto& only = state_->cfg.only_paths;
    if (std::find(only.begin(), only.end(), path) == only.end()) {
      HttpResponse resp;
      resp.status = 404;
      resp.content_type = "text/plain; charset=utf-8";
      resp.nosniff = true;
      resp.body = "404 page not found\n";
      return reply(std::move(resp));
    }
  }
  state_->handler.handle(r, shared_from_this());
}

void Connection::set_handling(bool on) {
  if (handling_ == on) return;
  handling_ = on;
  state_->handling.fetch_add(on ? 1 : -1);
}

void Connection::reply_too_large() {
  HttpResponse r;
  r.status = 413;
  r.content_type = "application/json";
  r.body = R"({"message":"http: request body too large"})";
  r.close = true;
  do_reply(std::move(r));
}

bool Connection::charge_body(uint64_t bytes) {
  const uint64_t before = state_->body_bytes.fetch_add(bytes);
  if (before + bytes > state_->cfg.max_buffered_body_bytes && before > 0) {
    state_->body_bytes.fetch_sub(bytes);
    return false;
  }
  body_charge_ = bytes;
  return true;
}

void Connection::release_body_charge() {
  if (body_charge_ == 0) return;
  state_->body_bytes.fetch_sub(body_charge_);
  body_charge_ = 0;
}

void Connection::reply_busy() {
  SPDLOG_DEBUG("refusing a request body: {} bytes of bodies are being read already",
                state_->body_bytes.load());
  HttpResponse r = {};
  r.status = 503;
  r.content_type = "text/plain; charset=utf-8";
  r.body = "503 Service Unavailable: too many request bodies being read at once; retry later\n";
  r.close = true;
  do_reply(std::move(r));
}

void Connection::write_raw_and_close(std::string_view status_text, std::string_view body) {
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

void Connection::compose_headers(const HttpResponse& r, Framing framing) {
  std::string_view origin;
  if (r.cors) {
    if (state_->cors_any) {
      origin = "*";
    } else if (req_.has_origin) {
      for (const auto& o : state_->cfg.cors)
        if (o == req_.origin) origin = req_.origin;
    }
  }
  out_.clear();
  append_response_head(out_, r, framing, version_, close_after_, origin);
}

void Connection::do_reply(HttpResponse r) {
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

template <class Buffers, class Done>
void Connection::write_bufs(const Buffers& bufs, Done done) {
  error_code ec;
  const size_t n = socket_.write_now(bufs, ec);
  const bool all = n == asio::buffer_size(bufs);
  if ((ec && ec != asio::error::would_block) || (all && buf_.size() > 0)) {
    // What runs after an answer may start the next request (already buffered: pipelined) or
    // close the connection (its on_close): not inside whoever answered (a store notifying its
    // watchers, the raft strand), as an asynchronous completion also never is.
    asio::post(socket_.get_executor(), [done = std::move(done), ec]() mutable { done(ec); });
    return;
  }
  if (all) return done(error_code{});
  boost::beast::buffers_suffix<Buffers> rest(bufs);
  rest.consume(n);
  asio::async_write(socket_, rest,
                    [done = std::move(done)](error_code ec, size_t) mutable { done(ec); });
}

void Connection::write_response(bool finish_normally) {
  writing_ = true;
  std::array<asio::const_buffer, 3> bufs{asio::buffer(out_), asio::buffer(body_),
                                         asio::buffer(tail_)};
  write_bufs(bufs, [self = shared_from_this(), finish_normally](error_code ec) {
    self->writing_ = false;
    if (ec || self->closed_) return self->close();
    if (!finish_normally) return self->graceful_close();
    self->finish_request();
  });
}

void Connection::finish_request() {
  if (close_after_ || state_stopping()) return graceful_close();
  if (bg_reading_) {
    // The watch's disconnect detector is still pending; it resumes reading when it completes.
    resume_after_bg_read_ = true;
    set_deadline(Clock::now() + state_->read_timeout);
    return;
  }
  read_request();
}

void Connection::do_begin_stream(HttpResponse h, std::function<void()> on_close) {
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
  queue_.push_back(Piece{out_, nullptr});
  flush();
  start_bg_read();
}

void Connection::do_notify_close(std::function<void()> on_close) {
  if (closed_) {
    if (on_close) on_close();
    return;
  }
  if (streaming_ || writing_) return;  // already answering
  on_close_ = std::move(on_close);
  start_bg_read();
}

void Connection::do_send_chunk(Piece data, std::function<void()> written) {
  if (queue_chunk(std::move(data), std::move(written))) flush();
}

bool Connection::queue_chunk(Piece data, std::function<void()> written) {
  if (closed_ || !streaming_ || stream_ending_) return false;
  auto push = [this](Piece piece) {
    queued_bytes_ += piece.size();
    queue_.push_back(std::move(piece));
  };
  if (chunked_) {
    // Framed around the data, which is written from where it is: size line, data, CRLF.
    Piece size_line;
    append_uint(size_line.own, data.size(), 16);
    size_line.own += "\r\n";
    push(std::move(size_line));
    push(std::move(data));
    push(Piece{"\r\n", nullptr});
  } else {
    push(std::move(data));
  }
  if (written) written_.push_back(std::move(written));
  if (queued_bytes_ > kMaxQueuedBytes) {
    SPDLOG_DEBUG("closing a watch stream: client too slow ({} bytes in {} pieces queued)",
                  queued_bytes_, queue_.size());
    close();
    return false;
  }
  return true;
}

void Connection::do_end_stream() {
  if (closed_ || !streaming_ || stream_ending_) return;
  stream_ending_ = true;
  if (chunked_) queue_.push_back(Piece{"0\r\n\r\n", nullptr});
  flush();
}

void Connection::flush() {
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
  queued_bytes_ = 0;
  batch_written_.clear();
  batch_written_.swap(written_);  // every queued chunk is in this batch
  batch_bufs_.clear();
  for (const auto& piece : batch_) batch_bufs_.push_back(piece.buffer());
  auto done = [self = shared_from_this()](error_code ec, size_t = 0) {
    self->writing_ = false;
    if (ec || self->closed_) return self->close();
    auto written = std::move(self->batch_written_);
    self->batch_written_.clear();
    for (auto& f : written) f();
    self->flush();
  };
  // A producer waiting on `written` makes its next chunk from the callback, which would nest
  // a write in a write for as long as it produces: its batches complete asynchronously.
  if (batch_written_.empty()) write_bufs(batch_bufs_, std::move(done));
  else asio::async_write(socket_, batch_bufs_, std::move(done));
}

void Connection::start_bg_read() {
  if (bg_reading_ || closed_) return;
  if (!lingering_ && buf_.size() >= kMaxBufferedWhileWatching) return;
  bg_reading_ = true;
  socket_.async_read_some(buf_.prepare(4096),
                          [self = shared_from_this()](error_code ec, size_t n) {
                            self->on_bg_read(ec, n);
                          });
}

void Connection::on_bg_read(error_code ec, size_t n) {
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

void Connection::graceful_close() {
  if (closed_) return;
  error_code ignored;
  socket_.socket().shutdown(tcp::socket::shutdown_send, ignored);
  lingering_ = true;
  streaming_ = false;
  on_close_ = nullptr;
  set_deadline(Clock::now() + std::min<Clock::duration>(kLingerTime, state_->read_timeout));
  start_bg_read();
}

void Connection::close() {
  if (closed_) return;
  closed_ = true;
  set_handling(false);  // an answer that comes now is dropped
  release_body_charge();
  error_code ignored;
  socket_.close(ignored);
  timer_.cancel();
  streaming_ = false;
  queue_.clear();
  queued_bytes_ = 0;
  written_.clear();
  batch_written_.clear();
  if (on_close_) {
    auto f = std::move(on_close_);
    on_close_ = nullptr;
    f();
  }
}

void Connection::set_deadline(Clock::time_point t) {
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

void Connection::on_timer(error_code ec) {
  if (ec == asio::error::operation_aborted || closed_) return;
  timer_armed_ = false;
  if (deadline_ == Clock::time_point::max()) return;
  if (Clock::now() >= deadline_) {
    if (!lingering_) SPDLOG_DEBUG("closing a client connection: read timeout");
    return close();
  }
  set_deadline(deadline_);
}

}  // namespace kvd::server
