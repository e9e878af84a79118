#include "tests/unit/etcd_data/etcd_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string_view>
#include <thread>
#include <vector>

namespace kvd::etcd_data::testing {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr auto kPollInterval = std::chrono::milliseconds(20);
constexpr auto kStartTimeout = std::chrono::seconds(30);
constexpr auto kStopTimeout = std::chrono::seconds(30);

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

sockaddr_in loopback(uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

// A chunked body (RFC 9112 section 7.1) without trailers; nullopt if malformed.
std::optional<std::string> dechunk(std::string_view in) {
  std::string out;
  for (;;) {
    size_t eol = in.find("\r\n");
    if (eol == std::string_view::npos) return std::nullopt;
    size_t n = std::strtoull(std::string(in.substr(0, eol)).c_str(), nullptr, 16);
    in.remove_prefix(eol + 2);
    if (n == 0) return out;
    if (in.size() < n + 2) return std::nullopt;
    out.append(in.substr(0, n));
    in.remove_prefix(n + 2);
  }
}

Result<HttpResponse> parse_response(const std::string& raw) {
  size_t head_end = raw.find("\r\n\r\n");
  if (head_end == std::string::npos || raw.compare(0, 5, "HTTP/") != 0) {
    return Status::error("malformed HTTP response: " + raw.substr(0, 200));
  }
  HttpResponse r;
  size_t sp = raw.find(' ');
  r.status = std::atoi(raw.c_str() + sp + 1);
  size_t pos = raw.find("\r\n") + 2;
  while (pos < head_end) {
    size_t eol = raw.find("\r\n", pos);
    std::string line = raw.substr(pos, eol - pos);
    size_t colon = line.find(':');
    if (colon != std::string::npos) {
      size_t v = line.find_first_not_of(' ', colon + 1);
      r.headers[lower(line.substr(0, colon))] = v == std::string::npos ? "" : line.substr(v);
    }
    pos = eol + 2;
  }
  std::string body = raw.substr(head_end + 4);
  if (lower(r.headers["transfer-encoding"]) == "chunked") {
    std::optional<std::string> b = dechunk(body);
    if (!b) return Status::error("malformed chunked body");
    body = std::move(*b);
  } else if (r.headers.count("content-length")) {
    body.resize(std::min<size_t>(body.size(), std::stoull(r.headers["content-length"])));
  }
  r.body = std::move(body);
  return r;
}

}  // namespace

Result<HttpResponse> http_request(uint16_t port, const std::string& method,
                                  const std::string& target, const std::string& body) {
  Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return Status::error(std::string("socket: ") + std::strerror(errno));
  timeval tv{10, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in a = loopback(port);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    return Status::error("connect to port " + std::to_string(port) + ": " + std::strerror(errno));
  }
  std::string req = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1:" +
                    std::to_string(port) + "\r\nConnection: close\r\n";
  if (!body.empty()) {
    req += "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\n";
  }
  req += "\r\n" + body;
  for (size_t sent = 0; sent < req.size();) {
    ssize_t n = ::send(fd.get(), req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status::error(std::string("send: ") + std::strerror(errno));
    sent += static_cast<size_t>(n);
  }
  std::string raw;
  char buf[16384];
  for (;;) {
    ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::error(std::string("recv: ") + std::strerror(errno));
    if (n == 0) break;
    raw.append(buf, static_cast<size_t>(n));
  }
  return parse_response(raw);
}

Result<uint16_t> free_port() {
  Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a = loopback(0);
  socklen_t len = sizeof a;
  if (fd.get() < 0 || ::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    return Status::error(std::string("no free port: ") + std::strerror(errno));
  }
  return static_cast<uint16_t>(ntohs(a.sin_port));
}

Result<std::unique_ptr<EtcdProcess>> EtcdProcess::start(const std::string& data_dir,
                                                        int snapshot_count,
                                                        const std::string& log_path) {
  std::string last_error;
  for (int attempt = 0; attempt < 3; ++attempt) {
    std::error_code ec;
    fs::remove_all(data_dir, ec);
    Result<uint16_t> client = free_port();
    Result<uint16_t> peer = free_port();
    if (!client.is_ok()) return client.status();
    if (!peer.is_ok()) return peer.status();
    if (client.value() == peer.value()) continue;
    const std::string curl = "http://127.0.0.1:" + std::to_string(client.value());
    const std::string purl = "http://127.0.0.1:" + std::to_string(peer.value());
    std::vector<std::string> args = {kEtcdBinary,
                                     "--enable-v2",
                                     "--name", "t",
                                     "--data-dir", data_dir,
                                     "--listen-client-urls", curl,
                                     "--advertise-client-urls", curl,
                                     "--listen-peer-urls", purl,
                                     "--initial-advertise-peer-urls", purl,
                                     "--initial-cluster", "t=" + purl,
                                     "--snapshot-count", std::to_string(snapshot_count)};
    std::vector<char*> argv;
    for (std::string& s : args) argv.push_back(s.data());
    argv.push_back(nullptr);
    const int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0) return Status::error(log_path + ": " + std::strerror(errno));
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // no etcd left behind by a test process that dies
      ::dup2(log_fd, 1);
      ::dup2(log_fd, 2);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(log_fd);
    if (pid < 0) return Status::error(std::string("fork: ") + std::strerror(errno));
    std::unique_ptr<EtcdProcess> p(new EtcdProcess());
    p->pid_ = pid;
    p->client_port_ = client.value();
    const auto deadline = Clock::now() + kStartTimeout;
    bool someone_else = false;  // a healthy etcd answered on our client port, but not ours
    while (Clock::now() < deadline && !someone_else) {
      if (::waitpid(pid, nullptr, WNOHANG) == pid) {
        p->pid_ = -1;
        break;
      }
      Result<HttpResponse> r = p->http("GET", "/health");
      if (r.is_ok() && r.value().status == 200 &&
          r.value().body.find("\"true\"") != std::string::npos) {
        // Healthy, but ours? Another test's etcd may hold the client port we picked (ours then
        // exits): ours is the one that lists our peer URL.
        Result<HttpResponse> members = p->http("GET", "/v2/members");
        if (members.is_ok() && members.value().body.find("\"" + purl + "\"") != std::string::npos) {
          return p;
        }
        someone_else = true;
        continue;
      }
      std::this_thread::sleep_for(kPollInterval);
    }
    if (p->pid_ > 0 && !someone_else) {
      return Status::error("etcd not healthy within 30 s (see " + log_path + ")");
    }
    last_error = "etcd exited before it was healthy, or another answered on its port (see " +
                 log_path + ")";
    // p's destructor kills ours if it still runs; then other ports.
  }
  return Status::error(last_error);
}

EtcdProcess::~EtcdProcess() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
}

Status EtcdProcess::stop() {
  if (pid_ <= 0) return Status::error("etcd is not running");
  ::kill(pid_, SIGTERM);
  const auto deadline = Clock::now() + kStopTimeout;
  int st = 0;
  while (::waitpid(pid_, &st, WNOHANG) != pid_) {
    if (Clock::now() >= deadline) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &st, 0);
      pid_ = -1;
      return Status::error("etcd did not exit within 30 s of SIGTERM");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  pid_ = -1;
  const bool clean = (WIFEXITED(st) && WEXITSTATUS(st) == 0) ||
                     (WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM);
  if (!clean) return Status::error("etcd exited with status " + std::to_string(st));
  return Status::ok();
}

TempDir::TempDir(const std::string& prefix) {
  const char* base = std::getenv("TMPDIR");
  std::string templ = std::string(base && *base ? base : "/tmp") + "/" + prefix + "-XXXXXX";
  if (::mkdtemp(templ.data()) == nullptr) std::abort();
  path_ = templ;
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

}  // namespace kvd::etcd_data::testing
