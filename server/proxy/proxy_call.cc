#include "server/proxy/proxy_call.h"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <limits>
#include <optional>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/read.hpp>
#include <spdlog/spdlog.h>

#include "common/log_event.h"

#include "server/http/request_parser.h"
#include "server/proxy/headers.h"
#include "server/proxy/prober.h"
#include "server/proxy/upstream_pool.h"

namespace kvd::server::proxy {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

constexpr uint32_t kUpstreamHeaderLimit = 1u << 20;

// A member's response as the proxy relays it.
struct UpstreamResponse {
  int status = 0;
  std::string headers;  // lines that pass (pass_response_header), "Name: value\r\n"
  bool has_date = false;
  std::optional<uint64_t> etcd_index;  // X-Etcd-Index
  std::string body;  // received and not yet handed on
};

// Beast's response parser, keeping what the client gets.
class ResponseParser final : public BodyParser<false> {
 public:
  explicit ResponseParser(UpstreamResponse& r) : BodyParser<false>(&r.body), r_(r) {}

 private:
  void on_request_impl(http::verb, string_view, string_view, int,
                       error_code& ec) override {
    ec = http::error::bad_method;
  }
  void on_response_impl(int code, string_view, int, error_code&) override {
    r_.status = code;
  }
  void on_field_impl(http::field f, string_view name, string_view value,
                     error_code&) override {
    std::string_view n(name.data(), name.size());
    if (!pass_response_header(n)) return;
    if (f == http::field::date) r_.has_date = true;
    if (beast::iequals(name, "X-Etcd-Index")) {
      uint64_t v = 0;
      const auto [end, err] = std::from_chars(value.data(), value.data() + value.size(), v);
      if (err == std::errc() && end == value.data() + value.size()) r_.etcd_index = v;
    }
    r_.headers.append(n);
    r_.headers += ": ";
    r_.headers.append(value.data(), value.size());
    r_.headers += "\r\n";
  }

  UpstreamResponse& r_;
};

// One proxied request. Owned by the shared_ptrs in its pending handlers; all its methods run
// on its loop's only thread (loop_), which also runs the client connection: handing the answer
// to the connection, and its callbacks back, run inline. Invariant: at most one socket operation
// pending, one wait of timer_ (its deadline) and one of probe_timer_ (the silence check).
class ProxyCall final : public std::enable_shared_from_this<ProxyCall> {
 public:
  // REQUIRES: on a thread of loop `loop`.
  ProxyCall(Shared& shared, size_t loop, std::shared_ptr<Exchange> ex, std::string request,
            CallInfo info, std::vector<std::shared_ptr<Endpoint>> endpoints)
      : shared_(shared),
        loop_(loop),
        loop_executor_(shared.loops[loop].get_executor()),
        timer_(loop_executor_),
        probe_timer_(loop_executor_),
        ex_(std::move(ex)),
        request_(std::move(request)),
        info_(std::move(info)),
        endpoints_(std::move(endpoints)) {}

  // watch: the request is a long poll (wait=true), whose answer may not start for a long time;
  // the client leaving before then must end it on the member too. Other requests are answered
  // in moments, and what a member has begun (a write) is not undone by hanging up anyway.
  ~ProxyCall() {
    if (counted_) shared_.load[loop_].ended();
  }

  void start() {
    const bool watch = info_.watch;
    check_silence();
    if (!watch) {
      counted_ = true;
      shared_.load[loop_].started(Clock::now());
    }
    if (watch) {
      std::weak_ptr<ProxyCall> weak = weak_from_this();
      ex_->notify_close([weak] {
        if (auto self = weak.lock()) asio::post(self->loop_executor_, [self] { self->cancel(); });
      });
    }
    try_next();  // on the loop's thread already
  }

 private:
  using Conn = UpstreamPool::Conn;

  // ---- choosing a member ----

  void try_next() {
    if (done_) return;
    if (next_ >= endpoints_.size() && streaming_) {
      SPDLOG_WARN("proxy: no member left to resume a watch on");
      return end_stream_early(asio::error::not_found);
    }
    if (next_ >= endpoints_.size()) {
      shared_.metrics.dropped(info_.method, ProxyMetrics::Drop::kFailedResponse);
      static logev::Repeats repeats(std::chrono::seconds(5));
      if (uint64_t suppressed = 0; repeats.allow(&suppressed)) {
        KVD_LOG_EVENT(WARN, "proxy: unable to get response from " +
                                std::to_string(endpoints_.size()) + " endpoint(s)",
                      logev::str("method", info_.method), logev::count("suppressed", suppressed));
      }
      return finish_with(proxy_error(
          502, "unable to get response from " + std::to_string(endpoints_.size()) + " endpoint(s)"));
    }
    endpoint_ = endpoints_[next_++];
    retried_fresh_ = false;
    conn_ = endpoint_->pool->take(loop_);
    // An idle connection the member has closed meanwhile shows it now (end of stream or an
    // error to a peek): not used, so that a request is never written into a dead connection.
    while (conn_ && !still_open(conn_->socket.socket())) conn_ = endpoint_->pool->take(loop_);
    if (conn_) {
      reused_ = true;
      return send();
    }
    connect();
  }

  static bool still_open(tcp::socket& s) {
    char byte;
    const ssize_t n = ::recv(s.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }

  void connect() {
    reused_ = false;
    conn_ = std::make_unique<Conn>(endpoint_->pool->io(loop_));
    shared_.metrics.upstream_dial();
    arm(shared_.settings.dial_timeout);
    conn_->socket.socket().async_connect(
        endpoint_->pool->address(),
        asio::bind_executor(loop_executor_, [self = shared_from_this()](error_code ec) {
          self->disarm();
          if (self->done_) return;
          if (ec) return self->endpoint_failed("dial", ec);
          error_code ignored;
          self->conn_->socket.socket().set_option(tcp::no_delay(true), ignored);
          self->conn_->socket.socket().non_blocking(true, ignored);
          if (tls::TlsContexts* tls = self->endpoint_->pool->tls()) return self->handshake(*tls);
          self->send();
        }));
  }

  // An https member: the TLS handshake, under the dial timeout, before the request.
  void handshake(tls::TlsContexts& tls) {
    conn_->socket.use_tls(tls.client());
    tls.prepare_client(conn_->socket.native_ssl(), endpoint_->pool->host());
    arm(shared_.settings.dial_timeout);
    conn_->socket.async_handshake(
        asio::ssl::stream_base::client,
        asio::bind_executor(loop_executor_, [self = shared_from_this()](error_code ec) {
          self->disarm();
          if (self->done_) return;
          if (ec) {
            SPDLOG_WARN("proxy: TLS handshake with {}: {}", self->endpoint_->url,
                         tls::describe_handshake_error(self->conn_->socket.native_ssl(), ec));
            return self->endpoint_failed("dial", ec);
          }
          self->send();
        }));
  }

  // A transport failure before the member answered: retry a stale pooled connection once,
  // else mark the member failed and go on to the next.
  void endpoint_failed(const char* what, error_code ec) {
    const bool timed_out = timed_out_;
    timed_out_ = false;
    drop_conn();
    const bool silent = silent_;
    silent_ = false;
    const bool maybe_applied = sent_ && !info_.idempotent;
    sent_ = false;
    if (reused_ && !retried_fresh_ && !timed_out && !maybe_applied) {
      retried_fresh_ = true;
      return connect();
    }
    shared_.metrics.dropped(info_.method, ProxyMetrics::Drop::kFailedSending);
    // Once per member and 5 s: a member that is down fails every request sent its way.
    if (uint64_t suppressed = 0; endpoint_->failure_log.allow(&suppressed)) {
      KVD_LOG_EVENT(WARN, "proxy: failed to direct request to " + endpoint_->url + ": " + what +
                              " " +
                              (silent      ? std::string("the member stopped answering")
                               : timed_out ? std::string("i/o timeout")
                                           : ec.message()),
                    logev::count("suppressed", suppressed));
    }
    shared_.endpoints.mark_failed(*endpoint_, Clock::now());
    if (silent && !info_.idempotent) {
      // Sent, maybe applied: never sent again.
      return finish_with(proxy_error(
          504, "member " + endpoint_->url +
                   " stopped answering; the request may or may not have been applied"));
    }
    if (maybe_applied) {
      // The member had the whole request and may have applied it before it failed: sending
      // it to another member could apply it twice (etcd's proxy does; a create with
      // prevExist=false then reports "Key already exists" for its own write).
      return finish_with(proxy_error(
          502, "member " + endpoint_->url + " failed after the request was sent (" +
                   (timed_out ? std::string("i/o timeout") : ec.message()) +
                   "); it may or may not have been applied"));
    }
    try_next();
  }

  // ---- members that stop answering (prober.h) ----

  // Every kProbeInterval while the call runs: if its member was found silent while the call
  // waits on it, the pending operation is ended as by a timeout (the handlers then move on).
  void check_silence() {
    if (done_) return;
    if (conn_ && endpoint_ && !silent_ && shared_.endpoints.is_silent(*endpoint_)) {
      silent_ = true;
      timed_out_ = true;
      error_code ignored;
      conn_->socket.close(ignored);
    }
    probe_timer_.expires_after(kProbeInterval);
    probe_timer_.async_wait([self = shared_from_this()](error_code ec) {
      if (!ec) self->check_silence();
    });
  }

  // A long poll whose member left before the event: the same wait on another member, the
  // new answer's body going into the stream the client has (proxy_call.h).
  bool can_resume() const {
    return info_.watch && !info_.stream && !body_forwarded_ && response_.body.empty() &&
           info_.with_wait_index && (info_.wait_index || first_etcd_index_) &&
           resumes_ < kMaxResumes;
  }

  void resume(error_code ec) {
    ++resumes_;
    const bool silent = silent_;
    silent_ = false;
    timed_out_ = false;
    drop_conn();
    SPDLOG_INFO("proxy: watch on {} ended ({}); resuming it on another member", endpoint_->url,
                 silent ? "the member stopped answering" : ec.message());
    shared_.endpoints.mark_failed(*endpoint_, Clock::now());
    if (!info_.wait_index) request_ = info_.with_wait_index(*first_etcd_index_ + 1);
    endpoints_ = shared_.endpoints.available(Clock::now());
    std::erase_if(endpoints_, [this](const auto& ep) { return ep == endpoint_; });
    next_ = 0;
    try_next();
  }

  // ---- the exchange with the member ----

  void send() {
    // A request almost always fits the socket's send buffer: written here at once, with no
    // timer and no completion handler (the socket is non-blocking). The rest, if any, goes out
    // asynchronously under the write timeout.
    error_code ec;
    size_t n = 0;
    // (Through TLS, the request is encrypted and written by the asynchronous write below.)
    if (!conn_->socket.is_tls()) n = conn_->socket.socket().write_some(asio::buffer(request_), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      n = 0;
      ec = {};
    }
    if (ec) return endpoint_failed("write", ec);
    if (n == request_.size()) {
      sent_ = true;
      return start_response();
    }
    arm(shared_.settings.write_timeout);
    asio::async_write(conn_->socket, asio::buffer(request_.data() + n, request_.size() - n),
                      asio::bind_executor(loop_executor_, [self = shared_from_this()](error_code ec, size_t) {
                        self->disarm();
                        if (self->done_) return;
                        if (ec) return self->endpoint_failed("write", ec);
                        self->sent_ = true;
                        self->start_response();
                      }));
  }

  void start_response() {
    response_ = UpstreamResponse{};
    parser_.emplace(response_);
    parser_->header_limit(kUpstreamHeaderLimit);
    // Not boost::none: Beast 1.74 compares a Content-Length against the optional limit, and
    // anything is greater than none.
    parser_->body_limit(std::numeric_limits<uint64_t>::max());
    if (info_.head) parser_->skip(true);
    resumed_checked_ = false;
    read_some();
  }

  void read_some() {
    arm(shared_.settings.read_timeout);
    http::async_read_some(conn_->socket, conn_->buffer, *parser_,
                          asio::bind_executor(loop_executor_, [self = shared_from_this()](error_code ec, size_t) {
                            self->disarm();
                            self->on_read(ec);
                          }));
  }

  void on_read(error_code ec) {
    if (done_) return;
    if (ec) {
      if (streaming_ && can_resume()) return resume(ec);
      if (streaming_) return end_stream_early(ec);
      // No byte has reached the client: as a failed round trip (etcd does the same when a
      // member fails before its whole header arrived).
      return endpoint_failed("read", ec);
    }
    if (!parser_->is_header_done()) return read_some();
    if (streaming_ && resumes_ > 0 && !resumed_checked_) {
      // The member a watch was resumed on must answer as the first did, or the client's
      // stream ends (it retries).
      resumed_checked_ = true;
      if (response_.status != first_status_) return end_stream_early(asio::error::not_found);
    }
    if (!streaming_) {
      if (parser_->is_done()) return reply_whole();
      if (parser_->chunked() || !parser_->content_length()) return begin_stream();
      return read_some();  // a Content-Length body: relayed whole
    }
    forward_body();
  }

  // etcd_proxy_handled_total, and the handling time of a request that is not a watch.
  void report_handled(int status) {
    std::optional<std::chrono::nanoseconds> took;
    if (!info_.watch) took = Clock::now() - info_.start;
    shared_.metrics.handled(info_.method, status, took);
  }

  HttpResponse client_headers() {
    HttpResponse r;
    r.status = response_.status;
    r.raw_headers = std::move(response_.headers);
    r.date = !response_.has_date;
    return r;
  }

  void reply_whole() {
    HttpResponse r = client_headers();
    if (auto length = parser_->content_length()) r.content_length = *length;
    r.body = std::move(response_.body);
    const bool reusable = parser_->keep_alive();
    if (reusable) recycle_conn();
    else drop_conn();
    report_handled(r.status);
    finish_with(std::move(r));
  }

  void begin_stream() {
    streaming_ = true;
    first_status_ = response_.status;
    first_etcd_index_ = response_.etcd_index;
    std::weak_ptr<ProxyCall> weak = weak_from_this();
    ex_->begin_stream(client_headers(), [weak] {
      if (auto self = weak.lock()) asio::post(self->loop_executor_, [self] { self->cancel(); });
    });
    forward_body();
  }

  // Hands what has arrived to the client; reads on once the connection has taken it.
  void forward_body() {
    if (!response_.body.empty()) {
      std::string piece = std::move(response_.body);
      response_.body.clear();
      body_forwarded_ = true;
      // Holds the call alive until the client connection has taken the piece; dropped
      // unrun if that connection closes first.
      ex_->send_chunk(std::move(piece), [self = shared_from_this()] {
        asio::post(self->loop_executor_, [self] { self->after_piece(); });
      });
      return;
    }
    after_piece();
  }

  void after_piece() {
    if (done_) return;
    if (parser_->is_done()) {
      if (parser_->keep_alive()) recycle_conn();
      else drop_conn();
      report_handled(first_status_);
      done_ = true;
      probe_timer_.cancel();
      ex_->end_stream();
      ex_.reset();
      return;
    }
    read_some();
  }

  // The member's body broke off (it died, or closed an unframed body): end the client's
  // stream cleanly.
  void end_stream_early(error_code ec) {
    const bool eof_delimited = !parser_->chunked() && !parser_->content_length();
    if (!(eof_delimited && ec == http::error::end_of_stream))
      SPDLOG_INFO("proxy: response from {} broke off: {}", endpoint_->url,
                   timed_out_ ? "i/o timeout" : ec.message());
    drop_conn();
    report_handled(first_status_);
    auto finish = [this] {
      done_ = true;
      probe_timer_.cancel();
      ex_->end_stream();
      ex_.reset();
    };
    if (response_.body.empty()) return finish();
    // What the parser took before the end still goes out.
    std::string piece = std::move(response_.body);
    response_.body.clear();
    ex_->send_chunk(std::move(piece));
    finish();
  }

  // The client left (or its connection closed): stop talking to the member. The connection
  // is not reused: the member may still be answering on it.
  void cancel() {
    if (done_) return;
    done_ = true;
    disarm();
    probe_timer_.cancel();
    drop_conn();
    ex_.reset();
  }

  void finish_with(HttpResponse r) {
    done_ = true;
    probe_timer_.cancel();
    ex_->reply(std::move(r));
    ex_.reset();
  }

  void recycle_conn() {
    if (!conn_) return;
    if (conn_->buffer.size() != 0) return drop_conn();  // bytes past the response: out of step
    endpoint_->pool->give_back(loop_, std::move(conn_));
  }

  void drop_conn() {
    if (!conn_) return;
    error_code ignored;
    conn_->socket.close(ignored);
    conn_.reset();
  }

  // ---- the per-operation deadline ----

  void arm(Clock::duration d) {
    ++timer_gen_;
    if (d.count() <= 0) return;
    timer_.expires_after(d);
    timer_.async_wait([self = shared_from_this(), gen = timer_gen_](error_code ec) {
      if (ec || gen != self->timer_gen_ || !self->conn_) return;
      self->timed_out_ = true;
      error_code ignored;
      self->conn_->socket.close(ignored);  // the pending operation fails
    });
  }
  void disarm() {
    ++timer_gen_;
    timer_.cancel();
  }

  Shared& shared_;
  const size_t loop_;  // the loop of the client connection; member connections come from it
  // The loop's executor: one thread, so no strand is needed to serialize the handlers.
  asio::io_context::executor_type loop_executor_;
  asio::steady_timer timer_;
  asio::steady_timer probe_timer_;
  uint64_t timer_gen_ = 0;
  bool timed_out_ = false;
  bool silent_ = false;           // the pending operation was ended: the member is silent
  bool sent_ = false;             // the whole request was written to the current member
  std::shared_ptr<Exchange> ex_;  // null once answered or cancelled
  std::string request_;           // the bytes sent to a member (a resumed watch: rewritten)
  const CallInfo info_;
  std::vector<std::shared_ptr<Endpoint>> endpoints_;  // replaced when a watch resumes
  size_t next_ = 0;  // endpoints_[next_] is tried next
  static constexpr int kMaxResumes = 8;
  int resumes_ = 0;
  bool resumed_checked_ = false;  // the resumed member's status was compared
  int first_status_ = 0;          // the status the client got
  std::optional<uint64_t> first_etcd_index_;  // the X-Etcd-Index of the first answer
  bool body_forwarded_ = false;   // some of the body reached the client
  std::shared_ptr<Endpoint> endpoint_;
  std::unique_ptr<Conn> conn_;
  bool reused_ = false;         // conn_ came from the pool
  bool retried_fresh_ = false;  // a stale pooled connection was replaced once for endpoint_
  UpstreamResponse response_;
  std::optional<ResponseParser> parser_;
  bool streaming_ = false;  // the client has the headers
  bool done_ = false;       // answered, or the client left
  bool counted_ = false;    // in shared_.load[loop_].calls
};

}  // namespace

void start_proxy_call(Shared& shared, size_t loop, std::shared_ptr<Exchange> ex,
                      std::string request, CallInfo info,
                      std::vector<std::shared_ptr<Endpoint>> endpoints) {
  auto call = std::make_shared<ProxyCall>(shared, loop, std::move(ex), std::move(request),
                                          std::move(info), std::move(endpoints));
  call->start();
}

}  // namespace kvd::server::proxy
