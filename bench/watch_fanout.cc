// watch_fanout: how long a v2 server takes to notify many long-polling watchers of one change.
//
// Each round opens WATCHERS connections, each sending `GET /v2/keys/KEY?wait=true`; once every
// one has its response headers (etcd and kvd send them when the watch is registered), one PUT of
// KEY goes out on another connection, and the round's figure is the time from sending the PUT
// until the last watcher has read its event (the body's first chunk). Prints one line per round:
// `FANOUT ms=<milliseconds> client_cpu_ms=<this client's CPU time in that interval>`, and with
// SERVER_PID ` server_cpu_ms=<the CPU time all of that process's threads used in it>` (from
// /proc/SERVER_PID/task/*/schedstat): the server's own cost of the fan-out, which the wall time
// shows only in part when the client and the server share the cores.
//
//   watch_fanout HOST PORT KEY WATCHERS ROUNDS [SERVER_PID]
//
// The client is one thread on epoll with one recv per readable socket (and no per-watcher
// handler objects), so that its own cost per watcher, a few microseconds of mostly the kernel's
// receive path, stays small against the server's. Used by bench/run_memory.sh.
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

using Clock = std::chrono::steady_clock;

namespace {

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "watch_fanout: %s\n", msg.c_str());
  std::exit(2);
}

double thread_cpu_ms() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) * 1e3 + static_cast<double>(t.tv_nsec) / 1e6;
}

int connect_to(const sockaddr_in& addr) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die(std::string("socket: ") + std::strerror(errno));
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    die(std::string("connect: ") + std::strerror(errno));
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

void send_all(int fd, const std::string& data) {
  size_t at = 0;
  while (at < data.size()) {
    ssize_t n = ::send(fd, data.data() + at, data.size() - at, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) die(std::string("send: ") + std::strerror(errno));
    at += static_cast<size_t>(n);
  }
}

// The CPU time (ms) all threads of process pid have used so far (schedstat's first field, ns).
// Threads that end between two readings drop out: a server's threads here live as long as it.
double process_cpu_ms(long pid) {
  const std::string dir = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = ::opendir(dir.c_str());
  if (!d) die("cannot read " + dir + ": " + std::strerror(errno));
  double ms = 0;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream f(dir + "/" + e->d_name + "/schedstat");
    double ns = 0;
    if (f >> ns) ms += ns / 1e6;
  }
  ::closedir(d);
  return ms;
}

// One long-polling watch: what it has read and how far its answer got.
struct Watcher {
  int fd = -1;
  std::string in;
  enum { kHead, kEvent, kDone } state = kHead;
};

// Moves w forward over what it has read; returns true when it just read its event.
bool advance(Watcher& w) {
  if (w.state == Watcher::kHead) {
    size_t end = w.in.find("\r\n\r\n");
    if (end == std::string::npos) return false;
    if (w.in.compare(0, 12, "HTTP/1.1 200") != 0) die("a watch was refused: " + w.in.substr(0, end));
    w.in.erase(0, end + 4);
    w.state = Watcher::kEvent;
  }
  if (w.state == Watcher::kEvent) {
    size_t eol = w.in.find("\r\n");
    if (eol == std::string::npos) return false;
    size_t size = std::strtoul(w.in.c_str(), nullptr, 16);
    if (size == 0) die("a watch ended without an event");
    if (w.in.size() < eol + 2 + size + 2) return false;  // the chunk and its CRLF
    w.state = Watcher::kDone;
    return true;
  }
  return false;
}

// Reads what fd has into w; dies on a closed or failed socket.
void read_some(Watcher& w) {
  char buf[4096];
  for (;;) {
    ssize_t n = ::recv(w.fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      w.in.append(buf, static_cast<size_t>(n));
      if (static_cast<size_t>(n) < sizeof buf) return;
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n < 0 && errno == EINTR) continue;
    die(n == 0 ? "a watch's connection was closed" : std::string("recv: ") + std::strerror(errno));
  }
}

struct Figures {
  double ms = 0, client_cpu_ms = 0, server_cpu_ms = 0;
};

// Runs one round (server_pid: 0, or the server process whose CPU time is read).
Figures run_round(const sockaddr_in& addr, const std::string& host, const std::string& key,
                  size_t n, long server_pid) {
  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die(std::string("epoll_create1: ") + std::strerror(errno));
  std::vector<Watcher> watchers(n);
  const std::string request =
      "GET /v2/keys/" + key + "?wait=true HTTP/1.1\r\nHost: " + host + "\r\n\r\n";
  for (size_t i = 0; i < n; ++i) {
    watchers[i].fd = connect_to(addr);
    send_all(watchers[i].fd, request);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = i;
    if (::epoll_ctl(ep, EPOLL_CTL_ADD, watchers[i].fd, &ev) != 0) die("epoll_ctl");
  }
  std::vector<epoll_event> events(n);
  // wait_all(state): until every watcher reached state; bounded by a 60 s timeout per wait.
  auto wait_all = [&](int state, Clock::time_point* last) {
    size_t reached = 0;
    for (const auto& w : watchers) reached += w.state >= state;
    while (reached < n) {
      int k = ::epoll_wait(ep, events.data(), static_cast<int>(events.size()), 60000);
      if (k < 0 && errno == EINTR) continue;
      if (k <= 0) die("no answer from the server within 60 s");
      for (int i = 0; i < k; ++i) {
        Watcher& w = watchers[events[static_cast<size_t>(i)].data.u64];
        const int before = w.state;
        read_some(w);
        advance(w);
        if (before < state && w.state >= state) {
          ++reached;
          if (last) *last = Clock::now();
        }
      }
    }
  };
  wait_all(Watcher::kEvent, nullptr);  // every watch is registered
  for (const auto& w : watchers) {
    if (w.state == Watcher::kDone) die("a watch had an event before the PUT: is KEY written to?");
  }

  int put = connect_to(addr);
  const std::string body = "value=changed";
  const std::string put_request = "PUT /v2/keys/" + key + " HTTP/1.1\r\nHost: " + host +
                                  "\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                                  "Content-Length: " + std::to_string(body.size()) +
                                  "\r\nConnection: close\r\n\r\n" + body;
  const double server0 = server_pid ? process_cpu_ms(server_pid) : 0;
  const double cpu0 = thread_cpu_ms();
  const Clock::time_point sent = Clock::now();
  send_all(put, put_request);
  Clock::time_point last = sent;
  wait_all(Watcher::kDone, &last);
  Figures f;
  f.client_cpu_ms = thread_cpu_ms() - cpu0;
  if (server_pid) f.server_cpu_ms = process_cpu_ms(server_pid) - server0;
  f.ms = std::chrono::duration<double, std::milli>(last - sent).count();
  ::close(put);
  for (auto& w : watchers) ::close(w.fd);
  ::close(ep);
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 6 && argc != 7) die("usage: watch_fanout HOST PORT KEY WATCHERS ROUNDS [SERVER_PID]");
  const std::string host = argv[1];
  const int port = std::atoi(argv[2]);
  const std::string key = argv[3];
  const long n = std::atol(argv[4]), rounds = std::atol(argv[5]);
  const long server_pid = argc == 7 ? std::atol(argv[6]) : 0;
  if (port <= 0 || port > 65535 || n <= 0 || rounds <= 0 || server_pid < 0) die("bad arguments");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) die("bad address " + host);
  // A descriptor per watcher, and a few more.
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < static_cast<rlim_t>(n) + 64) {
    lim.rlim_cur = std::min<rlim_t>(lim.rlim_max, static_cast<rlim_t>(n) + 64);
    setrlimit(RLIMIT_NOFILE, &lim);
  }
  for (long r = 0; r < rounds; ++r) {
    Figures f = run_round(addr, host + ":" + argv[2], key, static_cast<size_t>(n), server_pid);
    std::printf("FANOUT ms=%.3f client_cpu_ms=%.3f", f.ms, f.client_cpu_ms);
    if (server_pid) std::printf(" server_cpu_ms=%.3f", f.server_cpu_ms);
    std::printf("\n");
    std::fflush(stdout);
  }
  return 0;
}
