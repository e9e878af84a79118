#include "cli/http_client.h"

#include "cli/tls_session.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace kvd::cli {
namespace {

// Go's syscall error strings are strerror() with a lower-case first letter.
std::string go_errno_text(int err) {
  std::string s = std::strerror(err);
  if (!s.empty() && s[0] >= 'A' && s[0] <= 'Z' && !(s.size() > 1 && s[1] >= 'A' && s[1] <= 'Z')) {
    s[0] = static_cast<char>(s[0] - 'A' + 'a');
  }
  return s;
}

std::string format_addr(const sockaddr* sa) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (sa->sa_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf);
    return "[" + std::string(buf) + "]:" + std::to_string(ntohs(in6->sin6_port));
  }
  auto* in4 = reinterpret_cast<const sockaddr_in*>(sa);
  inet_ntop(AF_INET, &in4->sin_addr, buf, sizeof buf);
  return std::string(buf) + ":" + std::to_string(ntohs(in4->sin_port));
}

// Owns a socket descriptor.
class Socket {
 public:
  explicit Socket(int fd) : fd_(fd) {}
  ~Socket() {
    if (fd_ >= 0) ::close(fd_);
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  int fd() const { return fd_; }

 private:
  int fd_;
};

enum class WaitResult { kReady, kHeaderTimeout, kDeadline, kDialTimeout };

// Waits for `events` on fd until the earliest of the given deadlines. EINTR is retried.
// `dial_deadline` is the deadline of the step under way (the dial, or the TLS handshake).
WaitResult wait_fd(int fd, short events, std::optional<Clock::time_point> header_deadline,
                   std::optional<Clock::time_point> deadline,
                   std::optional<Clock::time_point> dial_deadline) {
  for (;;) {
    auto now = Clock::now();
    if (deadline && now >= *deadline) return WaitResult::kDeadline;
    if (header_deadline && now >= *header_deadline) return WaitResult::kHeaderTimeout;
    if (dial_deadline && now >= *dial_deadline) return WaitResult::kDialTimeout;
    std::optional<Clock::time_point> first;
    for (auto d : {deadline, header_deadline, dial_deadline}) {
      if (d && (!first || *d < *first)) first = d;
    }
    int timeout_ms = -1;
    if (first) {
      auto ms = std::chrono::ceil<std::chrono::milliseconds>(*first - now).count();
      timeout_ms = static_cast<int>(std::clamp<long long>(ms, 0, 1 << 30));
    }
    pollfd p{fd, events, 0};
    int rc = ::poll(&p, 1, timeout_ms);
    if (rc > 0) return WaitResult::kReady;
    if (rc < 0 && errno != EINTR) return WaitResult::kReady;  // let the I/O call report it
  }
}

HttpFailure wait_failure(WaitResult w, const std::string& dial_text) {
  switch (w) {
    case WaitResult::kDeadline:
      return {HttpFailure::Kind::kDeadline, "context deadline exceeded"};
    case WaitResult::kHeaderTimeout:
      return {HttpFailure::Kind::kHeaderTimeout, ""};
    default:
      return {HttpFailure::Kind::kConnection, dial_text + ": i/o timeout"};
  }
}

// The connection's byte stream: the socket itself, or TLS over it. Every wait honours the
// call's deadlines; TLS runs in memory (TlsSession) and its bytes go through send_raw and
// recv_raw like plain ones, so socket failures have the same texts either way.
class Conn {
 public:
  Conn(int fd, std::string local, std::string remote, TlsSession* tls)
      : fd_(fd), local_(std::move(local)), remote_(std::move(remote)), tls_(tls) {}

  // TLS only: the handshake and the verification of the server, bounded also by Go's
  // TLSHandshakeTimeout.
  std::optional<HttpFailure> handshake(std::optional<Clock::time_point> header_deadline,
                                       std::optional<Clock::time_point> deadline) {
    const auto handshake_deadline = Clock::now() + std::chrono::seconds(10);
    for (;;) {
      auto r = tls_->handshake();
      // A failed handshake leaves an alert to send; as Go, kvctl reports the handshake's error
      // whether or not the alert could be sent.
      auto sent = flush(header_deadline, deadline);
      if (r == TlsSession::Result::kFailed) return tls_failure();
      if (sent) return sent;
      if (r == TlsSession::Result::kDone) return std::nullopt;
      std::string in;
      bool eof = false;
      auto w = wait_fd(fd_, POLLIN, header_deadline, deadline, handshake_deadline);
      if (w == WaitResult::kDialTimeout) {
        return HttpFailure{HttpFailure::Kind::kConnection, "net/http: TLS handshake timeout"};
      }
      if (w != WaitResult::kReady) return wait_failure(w, "");
      if (auto f = recv_raw(&in, &eof)) return f;
      if (eof) return HttpFailure{HttpFailure::Kind::kOther, tls_->eof_error()};
      tls_->feed(in);
    }
  }

  std::optional<HttpFailure> write(std::string_view data,
                                   std::optional<Clock::time_point> header_deadline,
                                   std::optional<Clock::time_point> deadline) {
    if (tls_ == nullptr) return send_raw(data, header_deadline, deadline);
    if (tls_->write(data) != TlsSession::Result::kDone) return tls_failure();
    auto f = flush(header_deadline, deadline);
    if (f) return alert_before(*f);
    return std::nullopt;
  }

  // Appends what arrives to *buf, or sets *eof at the end of the stream.
  std::optional<HttpFailure> read(std::string* buf, bool* eof,
                                  std::optional<Clock::time_point> header_deadline,
                                  std::optional<Clock::time_point> deadline) {
    for (;;) {
      if (tls_ != nullptr) {
        auto r = tls_->read(buf);
        // Post-handshake messages may want an answer, a failure leaves an alert to send.
        auto sent = flush(header_deadline, deadline);
        if (r == TlsSession::Result::kFailed) return tls_failure();
        if (r == TlsSession::Result::kDone) return std::nullopt;  // data first, as a plain read
        if (sent) return sent;
        if (r == TlsSession::Result::kClosed) {
          *eof = true;
          return std::nullopt;
        }
      }
      auto w = wait_fd(fd_, POLLIN, header_deadline, deadline, std::nullopt);
      if (w != WaitResult::kReady) return wait_failure(w, "");
      if (tls_ == nullptr) return recv_raw(buf, eof);
      std::string in;
      if (auto f = recv_raw(&in, eof)) return f;
      if (*eof) return std::nullopt;  // Go's tls.Conn reads a bare close as the end, too
      tls_->feed(in);
    }
  }

 private:
  HttpFailure tls_failure() const {
    HttpFailure f{HttpFailure::Kind::kOther, tls_->error()};
    f.plain_http_answer = tls_->answered_plain_http();
    return f;
  }

  // Go reads a connection while it writes the request on it. In TLS 1.3 a server judges the
  // client's certificate after the client's handshake is over; one that rejects it sends an
  // alert and closes, and the request written meanwhile may fail with a reset. Go then reports
  // the alert its reader got, so kvctl, which reads only after writing, looks for one that
  // arrived before reporting `write_failure`.
  HttpFailure alert_before(const HttpFailure& write_failure) {
    std::string in;
    bool eof = false;
    for (int i = 0; i < 64 && !eof; ++i) {
      std::size_t before = in.size();
      if (recv_raw(&in, &eof) || in.size() == before) break;
    }
    if (in.empty()) return write_failure;
    tls_->feed(in);
    std::string ignored;
    if (tls_->read(&ignored) == TlsSession::Result::kFailed &&
        tls_->error().rfind("remote error: ", 0) == 0) {
      return tls_failure();
    }
    return write_failure;
  }

  std::optional<HttpFailure> flush(std::optional<Clock::time_point> header_deadline,
                                   std::optional<Clock::time_point> deadline) {
    std::string out = tls_->take_outgoing();
    if (out.empty()) return std::nullopt;
    return send_raw(out, header_deadline, deadline);
  }

  std::optional<HttpFailure> send_raw(std::string_view data,
                                      std::optional<Clock::time_point> header_deadline,
                                      std::optional<Clock::time_point> deadline) {
    std::size_t sent = 0;
    while (sent < data.size()) {
      ssize_t n = ::send(fd_, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
      if (n > 0) {
        sent += static_cast<std::size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        auto w = wait_fd(fd_, POLLOUT, header_deadline, deadline, std::nullopt);
        if (w != WaitResult::kReady) return wait_failure(w, "dial tcp " + remote_);
        continue;
      }
      return HttpFailure{HttpFailure::Kind::kConnection, "write tcp " + local_ + "->" + remote_ +
                                                             ": write: " + go_errno_text(errno)};
    }
    return std::nullopt;
  }

  // One recv() into *buf once the socket is readable; EAGAIN reads nothing.
  std::optional<HttpFailure> recv_raw(std::string* buf, bool* eof) {
    char tmp[16384];
    for (;;) {
      ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
      if (n > 0) {
        buf->append(tmp, static_cast<std::size_t>(n));
        return std::nullopt;
      }
      if (n == 0) {
        *eof = true;
        return std::nullopt;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return std::nullopt;
      return HttpFailure{HttpFailure::Kind::kConnection,
                         "read tcp " + local_ + "->" + remote_ + ": read: " + go_errno_text(errno)};
    }
  }

  int fd_;
  std::string local_;
  std::string remote_;
  TlsSession* tls_;  // nullptr: plain
};

// Incremental reader over the connection with a buffer; every read honours the deadlines.
class Reader {
 public:
  explicit Reader(Conn* conn) : conn_(conn) {}

  // Reads more bytes into buf_. Returns nullopt on success (possibly eof_ set), else failure.
  std::optional<HttpFailure> fill(std::optional<Clock::time_point> header_deadline,
                                  std::optional<Clock::time_point> deadline) {
    return conn_->read(&buf_, &eof_, header_deadline, deadline);
  }

  std::string buf_;
  bool eof_ = false;

 private:
  Conn* conn_;
};

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return std::string(s);
}

HttpFailure protocol_error(std::string what) {
  return {HttpFailure::Kind::kOther, "net/http: HTTP/1.x transport connection broken: " + what};
}

}  // namespace

std::string HttpResponse::header(std::string_view lower_name) const {
  for (const auto& [k, v] : headers) {
    if (k == lower_name) return v;
  }
  return "";
}

HttpResult http_round_trip(const Endpoint& ep, const HttpCall& call) {
  const bool https = ep.scheme == "https";
  if (ep.scheme != "http" && !https) {
    return HttpFailure{HttpFailure::Kind::kOther,
                       "unsupported protocol scheme \"" + ep.scheme + "\""};
  }
  if (ep.host.empty()) {
    return HttpFailure{HttpFailure::Kind::kOther, "http: no Host in request URL"};
  }
  const std::string port = ep.port.empty() ? (https ? "443" : "80") : ep.port;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (::getaddrinfo(ep.host.c_str(), port.c_str(), &hints, &res) != 0 || res == nullptr) {
    return HttpFailure{HttpFailure::Kind::kConnection,
                       "dial tcp: lookup " + ep.host + ": no such host"};
  }
  sockaddr_storage addr{};
  std::memcpy(&addr, res->ai_addr, res->ai_addrlen);
  socklen_t addr_len = res->ai_addrlen;
  int family = res->ai_family;
  ::freeaddrinfo(res);
  const std::string remote = format_addr(reinterpret_cast<sockaddr*>(&addr));
  const std::string dial_text = "dial tcp " + remote;

  Socket sock(::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (sock.fd() < 0) {
    return HttpFailure{HttpFailure::Kind::kConnection,
                       dial_text + ": socket: " + go_errno_text(errno)};
  }
  auto dial_deadline = Clock::now() + call.dial_timeout;
  if (::connect(sock.fd(), reinterpret_cast<sockaddr*>(&addr), addr_len) != 0) {
    if (errno != EINPROGRESS) {
      return HttpFailure{HttpFailure::Kind::kConnection,
                         dial_text + ": connect: " + go_errno_text(errno)};
    }
    auto w = wait_fd(sock.fd(), POLLOUT, call.header_deadline, call.deadline, dial_deadline);
    if (w != WaitResult::kReady) return wait_failure(w, dial_text);
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(sock.fd(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      return HttpFailure{HttpFailure::Kind::kConnection,
                         dial_text + ": connect: " + go_errno_text(err)};
    }
  }
  sockaddr_storage local{};
  socklen_t local_len = sizeof local;
  ::getsockname(sock.fd(), reinterpret_cast<sockaddr*>(&local), &local_len);
  const std::string local_text = format_addr(reinterpret_cast<sockaddr*>(&local));

  std::optional<TlsSession> tls;
  if (https) {
    tls.emplace(call.tls != nullptr ? *call.tls : *TlsClientConfig::system_default(), ep.host);
  }
  Conn conn(sock.fd(), local_text, remote, tls ? &*tls : nullptr);
  if (tls) {
    if (auto f = conn.handshake(call.header_deadline, call.deadline)) return *f;
  }

  std::string host_header = ep.host.find(':') != std::string::npos ? "[" + ep.host + "]" : ep.host;
  if (!ep.port.empty()) host_header += ":" + ep.port;
  std::string req = call.method + " " + call.target + " HTTP/1.1\r\nHost: " + host_header +
                    "\r\nUser-Agent: Go-http-client/1.1\r\n";
  if (call.body) req += "Content-Length: " + std::to_string(call.body->size()) + "\r\n";
  if (!call.content_type.empty()) req += "Content-Type: " + call.content_type + "\r\n";
  if (!call.authorization.empty()) req += "Authorization: " + call.authorization + "\r\n";
  req += "Connection: close\r\n\r\n";
  if (call.body) req += *call.body;
  if (auto f = conn.write(req, call.header_deadline, call.deadline)) return *f;

  Reader rd(&conn);
  std::size_t header_end;
  for (;;) {
    header_end = rd.buf_.find("\r\n\r\n");
    if (header_end != std::string::npos) break;
    if (rd.eof_) {
      return HttpFailure{HttpFailure::Kind::kOther, rd.buf_.empty() ? "EOF" : "unexpected EOF"};
    }
    if (auto f = rd.fill(call.header_deadline, call.deadline)) return *f;
  }
  HttpResponse resp;
  std::string_view head(rd.buf_.data(), header_end);
  std::size_t line_end = head.find("\r\n");
  std::string_view status_line = head.substr(0, line_end);
  if (status_line.substr(0, 5) != "HTTP/" || status_line.size() < 12) {
    return protocol_error("malformed HTTP response " + std::string(status_line));
  }
  resp.status = std::atoi(std::string(status_line.substr(9, 3)).c_str());
  std::string_view rest = line_end == std::string_view::npos ? "" : head.substr(line_end + 2);
  while (!rest.empty()) {
    std::size_t e = rest.find("\r\n");
    std::string_view line = rest.substr(0, e);
    rest = e == std::string_view::npos ? std::string_view() : rest.substr(e + 2);
    std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    resp.headers.emplace_back(lower(std::string(line.substr(0, colon))),
                              trim(line.substr(colon + 1)));
  }
  std::string data = rd.buf_.substr(header_end + 4);
  rd.buf_.clear();
  auto more = [&]() -> std::optional<HttpFailure> {
    if (rd.eof_) return protocol_error("unexpected EOF");
    auto f = rd.fill(std::nullopt, call.deadline);
    if (f) return f;
    data += rd.buf_;
    rd.buf_.clear();
    if (rd.eof_) return std::nullopt;
    return std::nullopt;
  };
  bool no_body = call.method == "HEAD" || resp.status == 204 || resp.status == 304 ||
                 (resp.status >= 100 && resp.status < 200);
  if (no_body) return resp;
  if (lower(resp.header("transfer-encoding")).find("chunked") != std::string::npos) {
    std::size_t pos = 0;
    for (;;) {
      std::size_t eol;
      while ((eol = data.find("\r\n", pos)) == std::string::npos) {
        if (rd.eof_) return protocol_error("unexpected EOF");
        if (auto f = more()) return *f;
      }
      std::size_t size = std::strtoul(data.substr(pos, eol - pos).c_str(), nullptr, 16);
      pos = eol + 2;
      if (size == 0) break;
      while (data.size() < pos + size + 2) {
        if (rd.eof_) return protocol_error("unexpected EOF");
        if (auto f = more()) return *f;
      }
      resp.body.append(data, pos, size);
      pos += size + 2;
    }
    return resp;
  }
  std::string cl = resp.header("content-length");
  if (!cl.empty()) {
    std::size_t want = std::strtoull(cl.c_str(), nullptr, 10);
    while (data.size() < want) {
      if (rd.eof_) return protocol_error("unexpected EOF");
      if (auto f = more()) return *f;
    }
    resp.body = data.substr(0, want);
    return resp;
  }
  while (!rd.eof_) {
    if (auto f = more()) return *f;
  }
  resp.body = std::move(data);
  return resp;
}

}  // namespace kvd::cli
