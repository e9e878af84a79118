// The client port's listeners: binds the listen URLs, accepts connections onto the configured
// executors, and stops them (at once, or gracefully as Go's http.Server.Shutdown).
#include "server/http/client_server.h"

#include <unistd.h>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include "common/url.h"
#include "server/http/connection.h"
#include "common/poll_until.h"

namespace kvd::server {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
using Clock = std::chrono::steady_clock;

namespace {

struct ListenAddress {
  std::string host;
  uint16_t port = 0;
  bool tls = false;
};

// A listen URL as etcd accepts it for binding: http://IP:port[/]. On failure *error says why
// (without the URL).
std::optional<ListenAddress> parse_listen_url(const std::string& url, std::string* error) {
  auto a = url::parse_address(url, error);
  if (!a) return std::nullopt;
  if (!a->path.empty() && a->path != "/") {
    *error = "URL must not contain a path";
    return std::nullopt;
  }
  if (a->port.empty()) {
    *error = "URL address does not have the form \"host:port\"";
    return std::nullopt;
  }
  ListenAddress out;
  out.host = a->host.empty() ? "0.0.0.0" : a->host == "localhost" ? "127.0.0.1" : a->host;
  out.port = a->port_number;
  out.tls = a->tls;
  return out;
}

// The socket, moved onto `executor` when it is on another one (its descriptor leaves one event
// loop's epoll set for the other's).
tcp::socket move_to(tcp::socket socket, const asio::any_io_executor& executor, error_code& ec) {
  if (socket.get_executor() == executor) return socket;
  const tcp::endpoint local = socket.local_endpoint(ec);
  if (ec) return socket;
  tcp::socket::native_handle_type fd = socket.release(ec);
  if (ec) return socket;
  tcp::socket moved(executor);
  moved.assign(local.protocol(), fd, ec);
  if (ec) ::close(fd);
  return moved;
}

void accept_loop(const std::shared_ptr<ClientServer::State>& state, size_t i) {
  // With place_connection, a connection is accepted onto the server's own loop and placed once
  // it is there: chosen before it arrives, the place would miss the connections closed
  // meanwhile (a client opening one connection after another would alternate loops).
  asio::any_io_executor executor = state->cfg.place_connection
                                       ? asio::any_io_executor(state->io.get_executor())
                                       : asio::any_io_executor(asio::make_strand(state->io));
  state->acceptors[i]->async_accept(
      executor,
      asio::bind_executor(state->accept_strand, [state, i](error_code ec, tcp::socket socket) {
        if (ec == asio::error::operation_aborted || state->stopped) return;
        if (ec) {
          // Out of descriptors and the like: back off briefly instead of spinning, and say so
          // once a minute rather than at every retry.
          if (state->warn_due(Clock::now())) {
            SPDLOG_WARN("accepting a client connection failed: {}", ec.message());
          }
          auto timer = std::make_shared<asio::steady_timer>(state->accept_strand,
                                                            std::chrono::milliseconds(100));
          timer->async_wait([state, i, timer](error_code) {
            if (state->stopped) return;
            asio::post(state->accept_strand, [state, i] { accept_loop(state, i); });
          });
          return;
        }
        LoopPlace place;
        if (state->cfg.place_connection) {
          place = state->cfg.place_connection();
          socket = move_to(std::move(socket), place.executor, ec);
          if (ec) {
            if (state->warn_due(Clock::now())) {
              SPDLOG_WARN("placing a client connection on an event loop failed: {}",
                           ec.message());
            }
            return accept_loop(state, i);
          }
        }
        error_code ignored;
        socket.set_option(tcp::no_delay(true), ignored);
        auto conn = std::make_shared<Connection>(state, std::move(socket),
                                                 state->acceptor_tls[i] ? state->cfg.tls : nullptr,
                                                 std::move(place.lease));
        {
          // Under mu with the stopped check, so stop() sees every connection it must close.
          std::lock_guard lock(state->mu);
          if (state->stopped) return;
          if (state->cfg.max_connections != 0 &&
              state->connections.size() >= state->cfg.max_connections) {
            // Over the limit: closed at once (conn is destroyed unstarted), so that the
            // descriptors the rest of the process needs stay free.
            if (state->warn_due(Clock::now())) {
              SPDLOG_WARN("refusing client connections: {} are open, the limit is {}",
                           state->connections.size(), state->cfg.max_connections);
            }
            accept_loop(state, i);
            return;
          }
          state->connections.emplace(conn.get(), conn);
        }
        conn->start();
        accept_loop(state, i);
      }));
}

}  // namespace

ClientServer::ClientServer(asio::io_context& io, RequestHandler& handler, ClientServerConfig cfg)
    : state_(std::make_shared<State>(io, handler, std::move(cfg))) {}

ClientServer::~ClientServer() { stop(); }

ClientServerConfig metrics_listener_config(const ClientServerConfig& client,
                                           std::vector<std::string> urls) {
  ClientServerConfig cfg;
  cfg.listen_urls = std::move(urls);
  cfg.cors = {};
  cfg.only_paths = {"/metrics", "/health"};
  cfg.max_connections = client.max_connections;
  cfg.place_connection = client.place_connection;
  cfg.tls = client.tls;
  cfg.tls_flags = client.tls_flags;
  return cfg;
}

std::string join_urls(const std::vector<std::string>& urls) {
  std::string out;
  for (const auto& u : urls) {
    if (!out.empty()) out += ", ";
    out += u;
  }
  return out;
}

Status ClientServer::listen() {
  if (Status st = bind(); !st.is_ok()) return st;
  start();
  return Status::ok();
}

void ClientServer::start() {
  for (size_t i = 0; i < state_->acceptors.size(); ++i) accept_loop(state_, i);
}

Status ClientServer::bind() {
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors;
  std::vector<tcp::endpoint> endpoints;
  std::vector<bool> acceptor_tls;
  for (const auto& url : state_->cfg.listen_urls) {
    std::string error;
    auto parsed = parse_listen_url(url, &error);
    if (!parsed) return Status::error(error + ": " + url);
    if (parsed->tls && (!state_->cfg.tls || !state_->cfg.tls->server()))
      return Status::error("TLS key/cert (" + state_->cfg.tls_flags +
                           ") must be provided for client url " + url + " with HTTPS scheme");
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
    acceptor_tls.push_back(parsed->tls);
  }
  state_->acceptors = std::move(acceptors);
  state_->endpoints = std::move(endpoints);
  state_->acceptor_tls = std::move(acceptor_tls);
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
          SPDLOG_WARN("stopping with {} client requests unanswered", state->handling.load());
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
