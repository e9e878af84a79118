#include "server/proxy/refresher.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <spdlog/spdlog.h>

#include "common/members.h"
#include "common/status.h"
#include "server/http/blocking_client.h"
#include "server/proxy/upstream_pool.h"

namespace kvd::server::proxy {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

constexpr auto kMembersTimeout = std::chrono::seconds(10);  // etcd's GetClusterFromRemotePeers

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

}  // namespace

void Refresher::stop() {
  {
    std::lock_guard lock(mu_);
    stopped_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Refresher::loop() {
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

void Refresher::refresh() {
  std::optional<std::vector<MemberInfo>> members;
  for (const auto& peer : peer_urls_) {
    GetResult got = http_get(peer, "/members", kMembersTimeout, shared_.peer_tls.get());
    if (!got.error.empty()) {
      SPDLOG_DEBUG("proxy: could not get cluster response from {}: {}", peer, got.error);
      continue;
    }
    if (got.status != 200 || got.cluster_id.empty()) {
      SPDLOG_DEBUG("proxy: unusable cluster response from {} (status {})", peer, got.status);
      continue;
    }
    members = parse_members_json(got.body);
    if (members) break;
    SPDLOG_DEBUG("proxy: could not parse the cluster response from {}", peer);
  }
  if (!members) {
    SPDLOG_WARN("proxy: could not retrieve cluster information from the given URLs");
    shared_.endpoints.replace({}, nullptr);
    return;
  }
  std::vector<std::string> peers = all_peer_urls(*members);
  if (!peers.empty()) {
    std::string tmp = cluster_file_ + ".bak";
    Status st = write_file_synced(tmp, format_cluster_file(peers));
    if (st.is_ok() && std::rename(tmp.c_str(), cluster_file_.c_str()) != 0)
      st = Status::error("rename " + tmp + ": " + std::strerror(errno));
    if (!st.is_ok()) SPDLOG_WARN("proxy: cannot write the cluster file: {}", st.message());
    if (peers != peer_urls_)
      SPDLOG_INFO("proxy: updated peer urls in cluster file from [{}] to [{}]", join(peer_urls_),
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
    SPDLOG_INFO("proxy: endpoints found [{}]", list);
    last_logged_ = now;
  }
}

std::shared_ptr<Endpoint> Refresher::make(const std::string& url) {
  auto hp = parse_http_url(url);
  if (!hp) {
    SPDLOG_WARN("proxy: ignoring client URL {}: only http[s]://host:port is supported", url);
    return nullptr;
  }
  asio::io_context io;
  tcp::resolver resolver(io);
  error_code ec;
  auto results = resolver.resolve(hp->host, std::to_string(hp->port), ec);
  if (ec || results.empty()) {
    SPDLOG_WARN("proxy: cannot resolve client URL {}: {}", url, ec.message());
    return nullptr;
  }
  auto ep = std::make_shared<Endpoint>();
  ep->url = url;
  ep->address = *hp;
  if (hp->tls && !shared_.member_tls) {
    SPDLOG_WARN("proxy: ignoring client URL {}: https, but no TLS is set up", url);
    return nullptr;
  }
  ep->pool = std::make_shared<UpstreamPool>(shared_.loops, results.begin()->endpoint(),
                                            hp->tls ? shared_.member_tls : nullptr, hp->host);
  return ep;
}

std::string Refresher::join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : " ") + s;
  return out;
}

}  // namespace kvd::server::proxy
