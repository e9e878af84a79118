// The client HTTP server of the member and of the proxy: listens on the --listen-client-urls
// and serves HTTP/1.1 (keep-alive, pipelining) and HTTP/1.0 to a RequestHandler (the member's
// ClientApi, or the proxy's Forwarder). Boost.Beast's parser on raw sockets (connection.h);
// responses are serialized by hand in Go's header order (response_writer.h).
//
// Threads: each accepted connection runs on the executor that ClientServerConfig's
// place_connection gives it (one of the process's single-threaded event loops, the least
// busy), or on a strand of its own; the handler completes requests from wherever it likes and the
// connection dispatches back to its executor. Watches hold no thread: a waiting watch is one
// pending socket read that notices the client leaving.
//
// Ownership: ClientServer owns the listeners; connections keep the shared server state alive
// until they end, so ClientServer may be destroyed while the event loops still drain.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "common/status.h"
#include "server/http/event_loops.h"
#include "server/http/types.h"
#include "server/tls/tls_config.h"

namespace kvd::server {

struct ClientServerConfig {
  std::vector<std::string> listen_urls;  // "http://127.0.0.1:2379" ..., several allowed
  std::vector<std::string> cors = {"*"};  // --cors
  // --host-whitelist (host_whitelist.h): plain-HTTP requests naming another host get 421.
  std::vector<std::string> host_whitelist = {"*"};
  // Non-empty: only requests for these exact paths (any query) reach the handler; any other is
  // answered as Go's ServeMux answers an unknown path (404 "404 page not found"). The metrics
  // listeners (--listen-metrics-urls) serve {"/metrics", "/health"} so, as etcd's do.
  std::vector<std::string> only_paths;
  uint64_t max_request_bytes = 32 * 1024 * 1024;
  // All request bodies being read (and held until their answer) at once, over all connections:
  // a body that would exceed it is refused with 503 instead of buffered (a chunked body counts
  // as max_request_bytes). Bounds what slow senders of large bodies can pin in memory.
  uint64_t max_buffered_body_bytes = 256 * 1024 * 1024;
  // Open client connections at most (0: no limit); one beyond is closed as soon as it is
  // accepted, so that the descriptors the database and the peers need stay free.
  size_t max_connections = 0;
  // Bounds reading one request (headers, and again the body) and waiting idle for the next one
  // on a keep-alive connection. A running watch is not bounded.
  std::chrono::seconds read_header_timeout{30};
  // Tests only: overrides read_header_timeout when non-zero.
  std::chrono::milliseconds read_timeout_override{0};
  // Where each new connection runs, asked once it is accepted: the place's executor, which
  // must not run two handlers at once (an io_context run by one thread: EventLoops::place()),
  // and its lease, held as long as the connection lives. Unset: a new strand on the server's
  // io_context. Called on the accept strand.
  std::function<LoopPlace()> place_connection;
  // TLS for the https listen URLs (http and https may be mixed). Null: listen() refuses an
  // https URL, naming tls_flags ("--cert-file, --key-file").
  std::shared_ptr<tls::TlsContexts> tls;
  std::string tls_flags = "--cert-file, --key-file";
  // Bounds a TLS client's handshake, counted from its connection (a client that never
  // finishes it is dropped then; others are not held up meanwhile).
  std::chrono::milliseconds tls_handshake_timeout{10000};
};

// The listeners of --listen-metrics-urls beside the client ones `client` describes: the same
// connection threads, limit and TLS (an https metrics URL uses the client certificate, as
// etcd), no CORS headers, and only /metrics and /health served.
ClientServerConfig metrics_listener_config(const ClientServerConfig& client,
                                           std::vector<std::string> urls);
// "u1, u2" for the log.
std::string join_urls(const std::vector<std::string>& urls);

class ClientServer {
 public:
  // Serves `handler`, which must outlive the io_context's last handler.
  ClientServer(boost::asio::io_context& io, RequestHandler& handler, ClientServerConfig cfg);
  ~ClientServer();
  ClientServer(const ClientServer&) = delete;
  ClientServer& operator=(const ClientServer&) = delete;

  // Binds all URLs (error names the URL: bad URL, https without TLS, in use) and starts
  // accepting. Call once, before the io_context runs or from one of its threads.
  Status listen();
  // listen() in two steps: bind() binds and listens (connections wait in the kernel's
  // backlog), start() accepts them. kvd binds every port before it opens the data dir, and
  // starts serving once the member exists. Call each once, in that order, instead of listen().
  Status bind();
  void start();
  // Closes listeners and connections (watches end, their watchers are removed). Any thread.
  // A response being written is finished first.
  void stop();
  // A graceful stop, as Go's http.Server.Shutdown that etcd runs on SIGTERM: closes the
  // listeners and the idle connections and watches, lets requests already handed to the node
  // be answered (each connection closes after its answer), and once none is left or `timeout`
  // passed, runs done() (on an io_context thread). Call stop() afterwards. Any thread, once.
  void shutdown(std::chrono::milliseconds timeout, std::function<void()> done);

  // The bound endpoints, in listen_urls order (port 0 resolved). Valid after listen().
  std::vector<boost::asio::ip::tcp::endpoint> local_endpoints() const;
  // Open client connections right now (for tests and stats). Any thread.
  size_t connection_count() const;

  struct State;

 private:
  std::shared_ptr<State> state_;
};

}  // namespace kvd::server
