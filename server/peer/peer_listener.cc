// The peer port's listeners and what they accept. The first four bytes of an accepted
// connection decide what it is: the kvd magic starts a peer handshake (inbound_stream.cc), an
// HTTP method starts an HTTP/1.1 exchange (GET /members, GET /version, anything else 404),
// anything else is logged and closed. An inbound connection that does not finish its handshake
// or HTTP request within handshake_timeout is closed.
#include "server/peer/transport_impl.h"

#include <ctime>

#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/go.h"
#include "common/version.h"

namespace kvd::server {

Result<PeerListeners> bind_peer_listeners(asio::io_context& io, const std::vector<std::string>& urls,
                                          const std::shared_ptr<tls::TlsContexts>& tls) {
  PeerListeners out;
  auto fail = [&out](std::string what) {
    error_code ignored;
    for (auto& a : out.acceptors) a->close(ignored);
    return Status::error(std::move(what));
  };
  for (const std::string& url : urls) {
    std::string why;
    auto hp = parse_peer_url(url, &why);
    if (!hp) return fail("cannot listen on peer URL " + url + ": " + why);
    if (hp->tls && (!tls || !tls->server())) {
      return fail("TLS key/cert (--peer-cert-file, --peer-key-file) must be provided for peer "
                  "url " + url + " with HTTPS scheme");
    }
    error_code ec;
    tcp::resolver resolver(io);
    auto results = resolver.resolve(hp->host, hp->port, tcp::resolver::passive, ec);
    if (ec || results.empty()) {
      return fail("cannot listen on peer URL " + url + ": " + (ec ? ec.message() : "host not found"));
    }
    auto acc = std::make_shared<tcp::acceptor>(io);
    tcp::endpoint ep = results.begin()->endpoint();
    acc->open(ep.protocol(), ec);
    if (!ec) acc->set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acc->bind(ep, ec);
    if (!ec) acc->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return fail("cannot listen on peer URL " + url + ": " + ec.message());
    out.acceptors.push_back(std::move(acc));
    out.tls.push_back(hp->tls);
  }
  return out;
}

Status PeerTransport::Impl::listen() {
  std::lock_guard lk(mu);
  if (stopped) return Status::error("peer transport is stopped");
  PeerListeners bound;
  if (config.listeners) {
    bound = *config.listeners;
  } else {
    auto made = bind_peer_listeners(io, config.listen_peer_urls, config.tls);
    if (!made.is_ok()) return made.status();
    bound = std::move(made.value());
  }
  for (size_t i = 0; i < bound.acceptors.size(); ++i) {
    error_code ec;
    ports.push_back(bound.acceptors[i]->local_endpoint(ec).port());
    acceptors.push_back(bound.acceptors[i]);
    start_accept_locked(bound.acceptors[i], bound.tls[i]);
  }
  return Status::ok();
}

void PeerTransport::Impl::start_accept_locked(const std::shared_ptr<tcp::acceptor>& acc,
                                              bool tls) {
  acc->async_accept([self = shared_from_this(), acc, tls](error_code ec, tcp::socket socket) {
    std::lock_guard lk(self->mu);
    if (self->stopped || !acc->is_open()) return;
    if (ec) {
      if (self->warn_limiter.allow("accept")) {
        SPDLOG_WARN("peer port: accept failed: {}", ec.message());
      }
      auto timer = std::make_shared<asio::steady_timer>(self->io, kAcceptRetry);
      timer->async_wait([self, acc, timer, tls](error_code) {
        std::lock_guard lk(self->mu);
        if (!self->stopped && acc->is_open()) self->start_accept_locked(acc, tls);
      });
      return;
    }
    set_user_timeout(socket, self->config.user_timeout);
    auto c = std::make_shared<InConn>(std::move(socket));
    self->inbound.insert(c);
    if (tls) self->start_inbound_tls_locked(c);
    else self->start_inbound_locked(c);
    self->start_accept_locked(acc, tls);
  });
}

void PeerTransport::Impl::start_inbound_tls_locked(const std::shared_ptr<InConn>& c) {
  c->remote = remote_of(c->socket);
  arm_inbound_locked(c, "no TLS handshake within the handshake timeout");
  c->socket.use_tls(config.tls->server());
  c->socket.async_handshake(asio::ssl::stream_base::server,
                            [self = shared_from_this(), c](error_code ec) {
                              self->on_inbound_tls(c, ec);
                            });
}

void PeerTransport::Impl::on_inbound_tls(const std::shared_ptr<InConn>& c, error_code ec) {
  std::lock_guard lk(mu);
  if (stopped || !inbound.count(c)) return;
  if (ec) {
    warn_inbound_locked(c, "rejected: TLS handshake: " +
                               tls::describe_handshake_error(c->socket.native_ssl(), ec));
    return close_inbound_locked(c);
  }
  check_client_san_locked(c);
}

void PeerTransport::Impl::check_client_san_locked(const std::shared_ptr<InConn>& c) {
  auto sans = tls::TlsContexts::peer_sans(c->socket.native_ssl());
  std::string remote = remote_host_of(c->socket);
  if (!sans.has_certificate || (sans.ips.empty() && sans.dns_names.empty())) {
    return start_inbound_locked(c);
  }
  if (!sans.ips.empty() && sans.dns_names.empty()) {
    if (std::find(sans.ips.begin(), sans.ips.end(), remote) != sans.ips.end()) {
      return start_inbound_locked(c);
    }
    std::string valid;
    for (const auto& ip : sans.ips) valid += (valid.empty() ? "" : ", ") + ip;
    warn_inbound_locked(c, "rejected: x509: certificate is valid for " + valid + ", not " + remote);
    return close_inbound_locked(c);
  }
  // As etcd: with DNS SANs, one of them must resolve to the remote address.
  check_dns_san(c, std::make_shared<tcp::resolver>(io), std::move(sans.dns_names), 0,
                std::move(remote));
}

void PeerTransport::Impl::check_dns_san(const std::shared_ptr<InConn>& c,
                                        std::shared_ptr<tcp::resolver> resolver,
                                        std::vector<std::string> names, size_t next,
                                        std::string remote) {
  if (next == names.size()) {
    std::lock_guard lk(mu);
    if (stopped || !inbound.count(c)) return;
    std::string list;
    for (const auto& n : names) list += (list.empty() ? "\"" : " \"") + n + "\"";
    warn_inbound_locked(c, "rejected: tls: \"" + remote + "\" does not match any of DNSNames [" +
                               list + "]");
    return close_inbound_locked(c);
  }
  auto* r = resolver.get();
  r->async_resolve(names[next], "", [self = shared_from_this(), c, resolver, names, next, remote](
                                        error_code ec, tcp::resolver::results_type results) mutable {
    if (!ec) {
      for (const auto& e : results) {
        if (e.endpoint().address().to_string() == remote) {
          std::lock_guard lk(self->mu);
          if (self->stopped || !self->inbound.count(c)) return;
          return self->start_inbound_locked(c);
        }
      }
    }
    self->check_dns_san(c, std::move(resolver), std::move(names), next + 1, std::move(remote));
  });
}

void PeerTransport::Impl::start_inbound_locked(const std::shared_ptr<InConn>& c) {
  if (c->remote.empty()) c->remote = remote_of(c->socket);
  arm_inbound_locked(c, "nothing complete received within the handshake timeout");
  c->socket.async_read_some(asio::buffer(c->head), [self = shared_from_this(), c](
                                                       error_code ec, size_t n) {
    self->on_first_bytes(c, ec, n, 0);
  });
}

void PeerTransport::Impl::on_first_bytes(const std::shared_ptr<InConn>& c, error_code ec, size_t n,
    size_t have) {
  std::lock_guard lk(mu);
  if (stopped || !inbound.count(c)) return;
  have += n;
  if (ec) {
    if (have > 0) {
      warn_inbound_locked(c, "closed before a complete handshake: " + ec.message());
    }
    return close_inbound_locked(c);
  }
  if (have < c->head.size()) {
    c->socket.async_read_some(
        asio::buffer(c->head.data() + have, c->head.size() - have),
        [self = shared_from_this(), c, have](error_code ec, size_t n) {
          self->on_first_bytes(c, ec, n, have);
        });
    return;
  }
  std::string_view head(c->head.data(), c->head.size());
  if (head == std::string_view(wire::kMagic.data(), wire::kMagic.size())) {
    asio::async_read(c->socket, asio::buffer(c->handshake_rest),
                     [self = shared_from_this(), c](error_code ec, size_t) {
                       self->on_handshake(c, ec);
                     });
  } else if (looks_like_http(head)) {
    c->http_buffer.commit(asio::buffer_copy(c->http_buffer.prepare(head.size()),
                                            asio::buffer(head.data(), head.size())));
    read_http_request_locked(c);
  } else {
    warn_inbound_locked(c, "refused: neither a kvd peer handshake nor an HTTP request");
    close_inbound_locked(c);
  }
}

void PeerTransport::Impl::close_inbound_locked(const std::shared_ptr<InConn>& c) {
  c->deadline.cancel();
  close_socket(c->socket);
  inbound.erase(c);
}

void PeerTransport::Impl::warn_inbound_locked(const std::shared_ptr<InConn>& c,
    const std::string& what) {
  std::string key = "in:" + remote_host_of(c->socket) + ":" + hex_id(c->sender);
  if (warn_limiter.allow(key)) SPDLOG_WARN("peer port: connection from {}: {}", c->remote, what);
}

void PeerTransport::Impl::arm_inbound_locked(const std::shared_ptr<InConn>& c, const char* what) {
  c->deadline.expires_after(config.handshake_timeout);
  c->deadline.async_wait([self = shared_from_this(), c, what](error_code ec) {
    if (ec == asio::error::operation_aborted) return;
    std::lock_guard lk(self->mu);
    if (self->stopped || !self->inbound.count(c) || !expired(c->deadline)) return;
    self->warn_inbound_locked(c, std::string("closed: ") + what);
    self->close_inbound_locked(c);
  });
}

void PeerTransport::Impl::read_http_request_locked(const std::shared_ptr<InConn>& c) {
  c->parser.emplace();
  c->parser->body_limit(kMaxHttpBodyBytes);
  arm_inbound_locked(c, "no complete HTTP request within the handshake timeout");
  http::async_read(c->socket, c->http_buffer, *c->parser,
                   [self = shared_from_this(), c](error_code ec, size_t) {
                     self->on_http_request(c, ec);
                   });
}

void PeerTransport::Impl::on_http_request(const std::shared_ptr<InConn>& c, error_code ec) {
  if (ec) {
    std::lock_guard lk(mu);
    if (stopped || !inbound.count(c)) return;
    if (ec != http::error::end_of_stream) {
      warn_inbound_locked(c, "HTTP request not read: " + ec.message());
    }
    return close_inbound_locked(c);
  }
  const auto& req = c->parser->get();
  std::string_view target(req.target().data(), req.target().size());
  target = target.substr(0, target.find('?'));
  auto res = std::make_shared<http::response<http::string_body>>();
  res->version(req.version());
  res->keep_alive(req.keep_alive());
  auto method_not_allowed = [&] {
    res->result(http::status::method_not_allowed);
    res->set(http::field::allow, "GET");
    res->set(http::field::content_type, "text/plain; charset=utf-8");
    res->set("X-Content-Type-Options", "nosniff");
    res->body() = "Method Not Allowed\n";
  };
  if (target == "/members") {
    if (req.method() != http::verb::get) {
      method_not_allowed();
    } else {
      res->result(http::status::ok);
      res->set(http::field::content_type, "application/json");
      res->set("X-Etcd-Cluster-Id", hex_id(config.cluster_id));
      // members_json is safe from any thread (Handler contract) and runs without our mutex.
      res->body() = handler.members_json ? handler.members_json() : "[]\n";
    }
  } else if (target == "/version") {
    if (req.method() != http::verb::get) {
      method_not_allowed();
    } else {
      res->result(http::status::ok);
      res->set(http::field::content_type, "application/json");
      res->body() = std::string(version::kVersionJson);
    }
  } else {
    res->result(http::status::not_found);
    res->set(http::field::content_type, "text/plain; charset=utf-8");
    res->set("X-Content-Type-Options", "nosniff");
    res->body() = "404 page not found\n";
  }
  res->set(http::field::date, go::format_http_date(std::time(nullptr)));
  res->prepare_payload();
  std::lock_guard lk(mu);
  if (stopped || !inbound.count(c)) return;
  arm_inbound_locked(c, "the HTTP client did not read its answer within the handshake timeout");
  http::async_write(c->socket, *res, [self = shared_from_this(), c, res](error_code ec, size_t) {
    std::lock_guard lk(self->mu);
    if (self->stopped || !self->inbound.count(c)) return;
    if (ec || !res->keep_alive()) return self->close_inbound_locked(c);
    self->read_http_request_locked(c);
  });
}

}  // namespace kvd::server
