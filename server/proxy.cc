// Proxy mode: etcd's v2 proxy (proxy/httpproxy in etcd 3.4), on kvd's client HTTP server.
//
// Pieces, all owned by run_proxy():
//   - EndpointSet (proxy_endpoints.h): the member client URLs in try order, failure marks.
//   - Refresher: a thread of its own that learns the members from the peer URLs' GET /members
//     at start and every --proxy-refresh-interval, rewrites <data-dir>/proxy/cluster, and
//     installs the new endpoint list.
//   - Forwarder (a RequestHandler): answers what the proxy answers itself (readonly refusals,
//     OPTIONS, /v2/config/local/proxy, /metrics) and starts a ProxyCall for everything else.
//   - ProxyCall: one client request on its way to a member and back, on its client's loop.
//   - UpstreamPool: idle keep-alive connections to one member, reused across requests.
//   - Loops: one single-threaded io_context per core. The client server puts each accepted
//     connection on one of them (round robin); its calls and the member connections they take
//     from the pool stay on that loop, so a request crosses no thread.
//
// Forwarding (spec v2-proxy.md §3): a call tries the endpoints available when it starts, in
// order; a transport failure (refused, dial/write/read timeout, reset before the response
// header) marks that endpoint failed for --proxy-failure-wait and moves on with the same
// request; any HTTP answer, 5xx included, goes to the client as it is. A failure on a reused
// pooled connection before any response byte is first retried once on a fresh connection to
// the same member (the member may have closed an idle connection), without marking it.
//
// Responses: a member answer that is complete when its header arrives, or has a
// Content-Length, is relayed in one reply (with the member's Content-Length). A chunked or
// unframed one (watches, large bodies) is streamed: headers at once, then each piece as it
// arrives, reading more from the member only once the client connection has taken the last
// piece (back-pressure). A member that dies mid-stream ends the client's stream cleanly, so
// a watch sees what it sees through etcd's proxy: an empty 200, which clients retry. A client
// that leaves closes the upstream connection, which ends the member's watch.
#include "server/proxy.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <thread>
#include <utility>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "server/client_api.h"
#include "server/event_loops.h"
#include "server/http_server.h"
#include "server/proxy_endpoints.h"
#include "server/proxy_headers.h"

namespace kvd::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

namespace proxy {
namespace {

constexpr std::string_view kJson = "application/json";
// An idle pooled connection older than this is closed instead of reused: kvd members close
// idle client connections after 30 s.
constexpr auto kMaxIdleTime = std::chrono::seconds(20);
constexpr size_t kMaxIdlePerMember = 1024;  // per member and loop
constexpr auto kMembersTimeout = std::chrono::seconds(10);  // etcd's GetClusterFromRemotePeers
constexpr uint32_t kUpstreamHeaderLimit = 1u << 20;

// Counters for /metrics, named like etcd's proxy metrics.
struct Metrics {
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> handled{0};
  std::atomic<uint64_t> dropped_zero_endpoints{0};
  std::atomic<uint64_t> dropped_failed_sending{0};
  std::atomic<uint64_t> dropped_failed_response{0};
  std::atomic<uint64_t> upstream_dials{0};
};

}  // namespace

// The proxy's event loops (server/event_loops.h). A client connection, the calls it makes and
// the member connections they use all live on one of them, so a request is served without
// crossing threads.
using Loops = EventLoops;
// Which of the loops the current thread runs (set by each thread of run_proxy).
thread_local size_t t_loop = 0;

// Idle keep-alive connections to one member, one list per loop. Thread-safe. A connection is
// bound to its loop's io_context: whoever took one is its only user until it gives it back.
class UpstreamPool {
 public:
  struct Conn {
    explicit Conn(asio::io_context& io) : socket(io) {}
    tcp::socket socket;
    beast::flat_buffer buffer;
    Clock::time_point idle_since{};
  };

  UpstreamPool(Loops& loops, tcp::endpoint address) : loops_(loops), address_(address) {
    for (size_t i = 0; i < loops.size(); ++i) slots_.push_back(std::make_unique<Slot>());
  }

  asio::io_context& io(size_t loop) { return loops_[loop]; }
  const tcp::endpoint& address() const { return address_; }

  // An idle connection of `loop`, or null.
  std::unique_ptr<Conn> take(size_t loop) {
    const auto now = Clock::now();
    Slot& slot = *slots_[loop];
    std::lock_guard lock(slot.mu);
    while (!slot.idle.empty()) {
      auto c = std::move(slot.idle.back());
      slot.idle.pop_back();
      if (now - c->idle_since < kMaxIdleTime) return c;
    }
    return nullptr;
  }
  void give_back(size_t loop, std::unique_ptr<Conn> c) {
    c->idle_since = Clock::now();
    Slot& slot = *slots_[loop];
    std::lock_guard lock(slot.mu);
    if (slot.idle.size() < kMaxIdlePerMember) slot.idle.push_back(std::move(c));
  }

 private:
  struct Slot {
    std::mutex mu;
    std::vector<std::unique_ptr<Conn>> idle;  // guarded by mu; most recently used last
  };
  Loops& loops_;
  const tcp::endpoint address_;
  std::vector<std::unique_ptr<Slot>> slots_;  // one per loop; the vector itself is const
};

namespace {

// A member's response as the proxy relays it.
struct UpstreamResponse {
  int status = 0;
  std::string headers;  // lines that pass (pass_response_header), "Name: value\r\n"
  bool has_date = false;
  std::string body;  // received and not yet handed on
};

// Beast's response parser, keeping what the client gets.
class ResponseParser final : public http::basic_parser<false> {
 public:
  explicit ResponseParser(UpstreamResponse& r) : r_(r) {}

 private:
  void on_request_impl(http::verb, beast::string_view, beast::string_view, int,
                       error_code& ec) override {
    ec = http::error::bad_method;
  }
  void on_response_impl(int code, beast::string_view, int, error_code&) override {
    r_.status = code;
  }
  void on_field_impl(http::field f, beast::string_view name, beast::string_view value,
                     error_code&) override {
    std::string_view n(name.data(), name.size());
    if (!pass_response_header(n)) return;
    if (f == http::field::date) r_.has_date = true;
    r_.headers.append(n);
    r_.headers += ": ";
    r_.headers.append(value.data(), value.size());
    r_.headers += "\r\n";
  }
  void on_header_impl(error_code&) override {}
  void on_body_init_impl(boost::optional<uint64_t> const& length, error_code&) override {
    if (length && *length <= (1u << 20)) r_.body.reserve(*length);
  }
  size_t on_body_impl(beast::string_view body, error_code&) override {
    r_.body.append(body.data(), body.size());
    return body.size();
  }
  void on_chunk_header_impl(uint64_t, beast::string_view, error_code&) override {}
  size_t on_chunk_body_impl(uint64_t, beast::string_view body, error_code&) override {
    r_.body.append(body.data(), body.size());
    return body.size();
  }
  void on_finish_impl(error_code&) override {}

  UpstreamResponse& r_;
};

HttpResponse proxy_error(int status, const std::string& message) {
  HttpResponse r;
  r.status = status;
  r.content_type = kJson;
  nlohmann::json j = {{"message", "httpproxy: " + message}};
  r.body = j.dump();
  return r;
}

struct Settings {
  ProxyMode mode = ProxyMode::kOn;
  Clock::duration dial_timeout{};
  Clock::duration write_timeout{};
  Clock::duration read_timeout{};  // zero: none
};

// How busy one loop is, for busy polling (EventLoops::set_spin). While at most kFewCalls
// proxied requests are in flight on the loop (and none of the last kQuietAfterBusy was busy),
// the loop polls for the member's answer for up to kAwaitSpin instead of sleeping: one sleep
// and wake-up less per request, which on a virtual machine is a good part of what a proxy hop
// costs. kAwaitSpin covers a cluster write's commit (fsyncs on two members); a 40 us poll, which
// only a read's answer beat, made one-connection writes slower than not polling at all. Once none
// is in flight, the loop polls only kIdleSpin for the client's next request. Used by the loop's
// own thread only.
struct LoopLoad {
  static constexpr int kFewCalls = 2;
  static constexpr auto kQuietAfterBusy = std::chrono::milliseconds(100);
  static constexpr auto kAwaitSpin = std::chrono::microseconds(2000);
  static constexpr auto kIdleSpin = std::chrono::microseconds(50);
  int calls = 0;  // proxied requests in flight, long polls excluded
  Clock::time_point busy_until{};

  void started(Clock::time_point now) {
    if (++calls > kFewCalls) busy_until = now + kQuietAfterBusy;
  }
  void ended() { --calls; }
  std::chrono::microseconds spin(Clock::time_point now) const {
    if (calls > kFewCalls || now < busy_until) return std::chrono::microseconds(0);
    return calls > 0 ? kAwaitSpin : kIdleSpin;
  }
};

// What the calls share. Outlives every call (run_proxy drains the io_context before it goes).
struct Shared {
  Shared(Loops& loops_, Settings s, Clock::duration failure_wait)
      : loops(loops_), settings(s), endpoints(failure_wait), load(loops_.size()) {}
  Loops& loops;
  const Settings settings;
  EndpointSet endpoints;
  Metrics metrics;
  std::vector<LoopLoad> load;  // load[i]: loop i's, touched by its thread only
};

// One proxied request. Owned by the shared_ptrs in its pending handlers; all its methods run
// on its loop's only thread (loop_), which also runs the client connection: handing the answer
// to the connection, and its callbacks back, run inline. Invariant: at most one socket operation
// and one timer wait pending.
class ProxyCall final : public std::enable_shared_from_this<ProxyCall> {
 public:
  // REQUIRES: on a thread of loop `loop`.
  ProxyCall(Shared& shared, size_t loop, std::shared_ptr<Exchange> ex, std::string request,
            bool head, std::vector<std::shared_ptr<Endpoint>> endpoints)
      : shared_(shared),
        loop_(loop),
        loop_executor_(shared.loops[loop].get_executor()),
        timer_(loop_executor_),
        ex_(std::move(ex)),
        request_(std::move(request)),
        head_(head),
        endpoints_(std::move(endpoints)) {}

  // watch: the request is a long poll (wait=true), whose answer may not start for a long time;
  // the client leaving before then must end it on the member too. Other requests are answered
  // in moments, and what a member has begun (a write) is not undone by hanging up anyway.
  ~ProxyCall() {
    if (counted_) shared_.load[loop_].ended();
  }

  void start(bool watch) {
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
    if (next_ >= endpoints_.size()) {
      shared_.metrics.dropped_failed_response.fetch_add(1, std::memory_order_relaxed);
      spdlog::warn("proxy: unable to get response from {} endpoint(s)", endpoints_.size());
      return finish_with(proxy_error(
          502, "unable to get response from " + std::to_string(endpoints_.size()) + " endpoint(s)"));
    }
    endpoint_ = endpoints_[next_++];
    retried_fresh_ = false;
    conn_ = endpoint_->pool->take(loop_);
    if (conn_) {
      reused_ = true;
      return send();
    }
    connect();
  }

  void connect() {
    reused_ = false;
    conn_ = std::make_unique<Conn>(endpoint_->pool->io(loop_));
    shared_.metrics.upstream_dials.fetch_add(1, std::memory_order_relaxed);
    arm(shared_.settings.dial_timeout);
    conn_->socket.async_connect(
        endpoint_->pool->address(),
        asio::bind_executor(loop_executor_, [self = shared_from_this()](error_code ec) {
          self->disarm();
          if (self->done_) return;
          if (ec) return self->endpoint_failed("dial", ec);
          error_code ignored;
          self->conn_->socket.set_option(tcp::no_delay(true), ignored);
          self->conn_->socket.non_blocking(true, ignored);
          self->send();
        }));
  }

  // A transport failure before the member answered: retry a stale pooled connection once,
  // else mark the member failed and go on to the next.
  void endpoint_failed(const char* what, error_code ec) {
    const bool timed_out = timed_out_;
    timed_out_ = false;
    drop_conn();
    if (reused_ && !retried_fresh_ && !timed_out) {
      retried_fresh_ = true;
      return connect();
    }
    shared_.metrics.dropped_failed_sending.fetch_add(1, std::memory_order_relaxed);
    spdlog::warn("proxy: failed to direct request to {}: {} {}", endpoint_->url, what,
                 timed_out ? "i/o timeout" : ec.message());
    shared_.endpoints.mark_failed(*endpoint_, Clock::now());
    try_next();
  }

  // ---- the exchange with the member ----

  void send() {
    // A request almost always fits the socket's send buffer: written here at once, with no
    // timer and no completion handler (the socket is non-blocking). The rest, if any, goes out
    // asynchronously under the write timeout.
    error_code ec;
    size_t n = conn_->socket.write_some(asio::buffer(request_), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      n = 0;
      ec = {};
    }
    if (ec) return endpoint_failed("write", ec);
    if (n == request_.size()) return start_response();
    arm(shared_.settings.write_timeout);
    asio::async_write(conn_->socket, asio::buffer(request_.data() + n, request_.size() - n),
                      asio::bind_executor(loop_executor_, [self = shared_from_this()](error_code ec, size_t) {
                        self->disarm();
                        if (self->done_) return;
                        if (ec) return self->endpoint_failed("write", ec);
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
    if (head_) parser_->skip(true);
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
      if (streaming_) return end_stream_early(ec);
      // No byte has reached the client: as a failed round trip (etcd does the same when a
      // member fails before its whole header arrived).
      return endpoint_failed("read", ec);
    }
    if (!parser_->is_header_done()) return read_some();
    if (!streaming_) {
      if (parser_->is_done()) return reply_whole();
      if (parser_->chunked() || !parser_->content_length()) return begin_stream();
      return read_some();  // a Content-Length body: relayed whole
    }
    forward_body();
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
    shared_.metrics.handled.fetch_add(1, std::memory_order_relaxed);
    finish_with(std::move(r));
  }

  void begin_stream() {
    streaming_ = true;
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
      shared_.metrics.handled.fetch_add(1, std::memory_order_relaxed);
      done_ = true;
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
      spdlog::info("proxy: response from {} broke off: {}", endpoint_->url,
                   timed_out_ ? "i/o timeout" : ec.message());
    drop_conn();
    shared_.metrics.handled.fetch_add(1, std::memory_order_relaxed);
    auto finish = [this] {
      done_ = true;
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
    drop_conn();
    ex_.reset();
  }

  void finish_with(HttpResponse r) {
    done_ = true;
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
  uint64_t timer_gen_ = 0;
  bool timed_out_ = false;
  std::shared_ptr<Exchange> ex_;  // null once answered or cancelled
  const std::string request_;     // the bytes sent to a member
  const bool head_;
  const std::vector<std::shared_ptr<Endpoint>> endpoints_;
  size_t next_ = 0;  // endpoints_[next_] is tried next
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

std::string_view path_of(std::string_view target) { return target.substr(0, target.find('?')); }

// The client side: what the proxy answers itself, and forwarding for everything else.
// Called from any io thread.
class Forwarder final : public RequestHandler {
 public:
  explicit Forwarder(Shared& shared) : shared_(shared) {}

  void handle(const HttpRequest& r, const std::shared_ptr<Exchange>& ex) override {
    const std::string_view path = path_of(r.target);
    if (path == "/metrics") return ex->reply(metrics());
    shared_.metrics.requests.fetch_add(1, std::memory_order_relaxed);
    if (shared_.settings.mode == ProxyMode::kReadonly && r.method != "GET") {
      HttpResponse resp;  // etcd's readonly handler: bare 501, outside the CORS wrapper
      resp.status = 501;
      resp.cors = false;
      return ex->reply(std::move(resp));
    }
    if (r.method == "OPTIONS") {
      HttpResponse resp;  // answered by the CORS wrapper
      return ex->reply(std::move(resp));
    }
    if (path == "/v2/config/local/proxy") return ex->reply(config(r.method));
    if (!r.body_error.empty()) {
      return ex->reply(
          proxy_error(500, "failed to read request body: " + std::string(r.body_error)));
    }
    auto endpoints = shared_.endpoints.available(Clock::now());
    if (endpoints.empty()) {
      shared_.metrics.dropped_zero_endpoints.fetch_add(1, std::memory_order_relaxed);
      spdlog::warn("proxy: zero endpoints currently available");
      return ex->reply(proxy_error(503, "zero endpoints currently available"));
    }
    auto call = std::make_shared<ProxyCall>(
        shared_, t_loop, ex, build_upstream_request(r.method, r.target, r.raw_header, r.body, r.remote_ip),
        r.method == "HEAD", std::move(endpoints));
    call->start(query_flag(r.target, "wait"));
  }

 private:
  HttpResponse config(std::string_view method) {
    HttpResponse resp;
    if (method != "GET") {
      resp.status = 405;
      resp.allow = "GET";
      resp.content_type = "text/plain; charset=utf-8";
      resp.nosniff = true;
      resp.body = "Method Not Allowed\n";
      return resp;
    }
    nlohmann::json urls = nlohmann::json::array();
    for (const auto& ep : shared_.endpoints.available(Clock::now())) urls.push_back(ep->url);
    resp.content_type = "text/plain; charset=utf-8";  // Go sniffs the JSON encoder's output
    resp.body = nlohmann::json({{"endpoints", urls}}).dump() + "\n";
    return resp;
  }

  HttpResponse metrics() {
    const auto& m = shared_.metrics;
    std::ostringstream out;
    out << "# HELP etcd_proxy_requests_total Counter requests incoming by method.\n"
        << "# TYPE etcd_proxy_requests_total counter\n"
        << "etcd_proxy_requests_total " << m.requests.load() << "\n"
        << "# HELP etcd_proxy_handled_total Counter of requests fully handled (by authoratitave "
           "servers)\n"
        << "# TYPE etcd_proxy_handled_total counter\n"
        << "etcd_proxy_handled_total " << m.handled.load() << "\n"
        << "# HELP etcd_proxy_dropped_total Counter of requests dropped on the proxy.\n"
        << "# TYPE etcd_proxy_dropped_total counter\n"
        << "etcd_proxy_dropped_total{proxying_error=\"zero_endpoints\"} "
        << m.dropped_zero_endpoints.load() << "\n"
        << "etcd_proxy_dropped_total{proxying_error=\"failed_sending_request\"} "
        << m.dropped_failed_sending.load() << "\n"
        << "etcd_proxy_dropped_total{proxying_error=\"failed_getting_response\"} "
        << m.dropped_failed_response.load() << "\n"
        << "# HELP kvd_proxy_upstream_dials_total TCP connections opened to members.\n"
        << "# TYPE kvd_proxy_upstream_dials_total counter\n"
        << "kvd_proxy_upstream_dials_total " << m.upstream_dials.load() << "\n";
    HttpResponse resp;
    resp.content_type = "text/plain; version=0.0.4; charset=utf-8";
    resp.body = out.str();
    return resp;
  }

  Shared& shared_;
};

// ---- learning the members ----

// One blocking GET on a private io_context, bounded by `timeout` as a whole.
struct GetResult {
  int status = 0;
  std::string cluster_id;  // X-Etcd-Cluster-Id
  std::string body;
  std::string error;  // transport error, else empty
};

GetResult http_get(const std::string& base_url, const std::string& path,
                   std::chrono::milliseconds timeout) {
  GetResult out;
  auto hp = parse_http_url(base_url);
  if (!hp) {
    out.error = "unsupported URL";
    return out;
  }
  asio::io_context io;
  tcp::resolver resolver(io);
  beast::tcp_stream stream(io);
  beast::flat_buffer buffer;
  http::request<http::string_body> req{http::verb::get, path, 11};
  req.set(http::field::host, hp->host + ":" + std::to_string(hp->port));
  http::response<http::string_body> res;
  error_code result;
  stream.expires_after(timeout);
  resolver.async_resolve(hp->host, std::to_string(hp->port), [&](error_code ec, auto results) {
    if (ec) {
      result = ec;
      return;
    }
    stream.async_connect(results, [&](error_code ec2, auto) {
      if (ec2) {
        result = ec2;
        return;
      }
      http::async_write(stream, req, [&](error_code ec3, size_t) {
        if (ec3) {
          result = ec3;
          return;
        }
        http::async_read(stream, buffer, res, [&](error_code ec4, size_t) { result = ec4; });
      });
    });
  });
  io.run();
  if (result) {
    out.error = result.message();
    return out;
  }
  out.status = static_cast<int>(res.result_int());
  out.cluster_id = std::string(res["X-Etcd-Cluster-Id"]);
  out.body = std::move(res.body());
  return out;
}

Status write_file_synced(const std::string& path, const std::string& content) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Status::error("open " + path + ": " + std::strerror(errno));
  size_t off = 0;
  while (off < content.size()) {
    ssize_t n = ::write(fd, content.data() + off, content.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      ::close(fd);
      return Status::error("write " + path + ": " + std::strerror(e));
    }
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    int e = errno;
    ::close(fd);
    return Status::error("fsync " + path + ": " + std::strerror(e));
  }
  ::close(fd);
  return Status::ok();
}

// Learns the member client URLs through the peer URLs, on a thread of its own.
class Refresher {
 public:
  Refresher(Shared& shared, std::vector<std::string> peer_urls, std::string cluster_file,
            Clock::duration interval)
      : shared_(shared),
        peer_urls_(std::move(peer_urls)),
        cluster_file_(std::move(cluster_file)),
        interval_(interval),
        rng_(std::random_device{}()) {}
  ~Refresher() { stop(); }

  // The first refresh, on the caller's thread, then the loop.
  void start() {
    refresh();
    thread_ = std::thread([this] { loop(); });
  }
  void stop() {
    {
      std::lock_guard lock(mu_);
      stopped_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void loop() {
    for (;;) {
      Clock::duration wait = interval_;
      // etcd: with the default interval or longer, retry every second while nothing is usable.
      if (interval_ >= std::chrono::milliseconds(30000) &&
          shared_.endpoints.available(Clock::now()).empty())
        wait = std::chrono::seconds(1);
      {
        std::unique_lock lock(mu_);
        if (cv_.wait_for(lock, wait, [this] { return stopped_; })) return;
      }
      refresh();
    }
  }

  void refresh() {
    std::optional<std::vector<MemberUrls>> members;
    for (const auto& peer : peer_urls_) {
      GetResult got = http_get(peer, "/members", kMembersTimeout);
      if (!got.error.empty()) {
        spdlog::debug("proxy: could not get cluster response from {}: {}", peer, got.error);
        continue;
      }
      if (got.status != 200 || got.cluster_id.empty()) {
        spdlog::debug("proxy: unusable cluster response from {} (status {})", peer, got.status);
        continue;
      }
      members = parse_members_json(got.body);
      if (members) break;
      spdlog::debug("proxy: could not parse the cluster response from {}", peer);
    }
    if (!members) {
      spdlog::warn("proxy: could not retrieve cluster information from the given URLs");
      shared_.endpoints.replace({}, nullptr);
      return;
    }
    std::vector<std::string> peers = all_peer_urls(*members);
    if (!peers.empty()) {
      std::string tmp = cluster_file_ + ".bak";
      Status st = write_file_synced(tmp, format_cluster_file(peers));
      if (st.is_ok() && std::rename(tmp.c_str(), cluster_file_.c_str()) != 0)
        st = Status::error("rename " + tmp + ": " + std::strerror(errno));
      if (!st.is_ok()) spdlog::warn("proxy: cannot write the cluster file: {}", st.message());
      if (peers != peer_urls_)
        spdlog::info("proxy: updated peer urls in cluster file from [{}] to [{}]", join(peer_urls_),
                     join(peers));
      peer_urls_ = peers;
    }
    std::vector<std::string> clients = all_client_urls(*members);
    std::shuffle(clients.begin(), clients.end(), rng_);
    shared_.endpoints.replace(clients, [this](const std::string& url) { return make(url); });
    auto now = shared_.endpoints.urls();
    if (now != last_logged_) {
      std::string list;
      for (const auto& u : now) list += (list.empty() ? "\"" : " \"") + u + "\"";
      spdlog::info("proxy: endpoints found [{}]", list);
      last_logged_ = now;
    }
  }

  std::shared_ptr<Endpoint> make(const std::string& url) {
    auto hp = parse_http_url(url);
    if (!hp) {
      spdlog::warn("proxy: ignoring client URL {}: only http://host:port is supported", url);
      return nullptr;
    }
    asio::io_context io;
    tcp::resolver resolver(io);
    error_code ec;
    auto results = resolver.resolve(hp->host, std::to_string(hp->port), ec);
    if (ec || results.empty()) {
      spdlog::warn("proxy: cannot resolve client URL {}: {}", url, ec.message());
      return nullptr;
    }
    auto ep = std::make_shared<Endpoint>();
    ep->url = url;
    ep->address = *hp;
    ep->pool = std::make_shared<UpstreamPool>(shared_.loops, results.begin()->endpoint());
    return ep;
  }

  static std::string join(const std::vector<std::string>& v) {
    std::string out;
    for (const auto& s : v) out += (out.empty() ? "" : " ") + s;
    return out;
  }

  Shared& shared_;
  std::vector<std::string> peer_urls_;  // the seed; replaced by what each refresh learns
  const std::string cluster_file_;
  const Clock::duration interval_;
  std::mt19937 rng_;
  std::vector<std::string> last_logged_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopped_ = false;  // guarded by mu_
  std::thread thread_;
};

Status make_dirs(const std::string& path) {
  std::string cur;
  std::stringstream ss(path);
  std::string part;
  if (!path.empty() && path[0] == '/') cur = "/";
  while (std::getline(ss, part, '/')) {
    if (part.empty()) continue;
    cur += part;
    if (::mkdir(cur.c_str(), 0700) != 0 && errno != EEXIST)
      return Status::error("mkdir " + cur + ": " + std::strerror(errno));
    cur += "/";
  }
  return Status::ok();
}

// The seed peer URLs: the cluster file when there is one (it wins over --initial-cluster, as
// in etcd), else --initial-cluster's. A file that cannot be read or parsed is fatal.
Result<std::vector<std::string>> seed_peer_urls(const Flags& flags, const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  if (in) {
    std::stringstream content;
    content << in.rdbuf();
    if (in.bad()) return Status::error("cannot read the proxy's cluster file " + file);
    auto urls = parse_cluster_file(content.str());
    if (!urls)
      return Status::error("the proxy's cluster file " + file +
                           " is corrupt (want {\"PeerURLs\":[...]}); remove it to start over "
                           "from --initial-cluster");
    spdlog::info("proxy: using peer urls [{}] from cluster file {}",
                 [&] {
                   std::string s;
                   for (const auto& u : *urls) s += (s.empty() ? "" : " ") + u;
                   return s;
                 }(),
                 file);
    return *urls;
  }
  if (errno != ENOENT) return Status::error("cannot open the proxy's cluster file " + file + ": " +
                                            std::strerror(errno));
  std::vector<std::string> urls;
  for (const auto& [name, url] : flags.initial_cluster) urls.push_back(url);
  std::sort(urls.begin(), urls.end());
  urls.erase(std::unique(urls.begin(), urls.end()), urls.end());
  return urls;
}

}  // namespace
}  // namespace proxy

int run_proxy(const Flags& flags) {
  using namespace proxy;
  const std::string proxy_dir = flags.data_dir + "/proxy";
  if (Status st = make_dirs(proxy_dir); !st.is_ok()) {
    spdlog::critical("cannot create the proxy's data dir {}: {}", proxy_dir, st.message());
    return 1;
  }
  const std::string cluster_file = proxy_dir + "/cluster";
  auto seed = seed_peer_urls(flags, cluster_file);
  if (!seed.is_ok()) {
    spdlog::critical("{}", seed.status().message());
    return 1;
  }
  spdlog::info("proxy: this proxy supports v2 API only!");

  Loops loops;
  asio::io_context& io = loops[0];  // also the acceptors', signals' loop
  Settings settings;
  settings.mode = flags.proxy;
  settings.dial_timeout = flags.proxy_dial_timeout;
  settings.write_timeout = flags.proxy_write_timeout;
  settings.read_timeout = flags.proxy_read_timeout;
  Shared shared(loops, settings, flags.proxy_failure_wait);
  Forwarder forwarder(shared);

  ClientServerConfig server_config;
  server_config.listen_urls = flags.listen_client_urls;
  server_config.cors = flags.cors;
  server_config.connection_executor = [&loops] { return loops.next_executor(); };
  ClientServer server(io, forwarder, server_config);
  if (auto st = server.listen(); !st.is_ok()) {
    spdlog::critical("cannot listen for clients: {}", st.message());
    return 1;
  }

  Refresher refresher(shared, std::move(seed.value()), cluster_file,
                      std::chrono::duration_cast<Clock::duration>(
                          std::max(flags.proxy_refresh_interval, std::chrono::milliseconds(1))));
  refresher.start();

  std::string urls;
  for (const auto& u : flags.listen_client_urls) urls += (urls.empty() ? "" : ", ") + u;
  spdlog::info("kvd proxy ({}) serving clients on {}",
               flags.proxy == ProxyMode::kReadonly ? "readonly" : "on", urls);

  loops.set_spin([&shared](size_t i) { return shared.load[i].spin(Clock::now()); });

  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const error_code& ec, int sig) {
    if (ec) return;
    spdlog::info("received signal {}, shutting down", sig);
    server.stop();
    loops.stop();
  });

  loops.run([](size_t i) { t_loop = i; });
  refresher.stop();
  return 0;
}

}  // namespace kvd::server
