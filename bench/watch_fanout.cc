// watch_fanout: how long a v2 server takes to notify many long-polling watchers of one change.
//
//   watch_fanout HOST PORT KEY WATCHERS ROUNDS
//
// Each round opens WATCHERS connections, each sending `GET /v2/keys/KEY?wait=true`; once every
// one has its response headers (etcd and kvd send them when the watch is registered), one PUT of
// KEY goes out on another connection, and the round's figure is the time from sending the PUT
// until the last watcher has read its event (the body's first chunk). Prints one line per round:
// `FANOUT ms=<milliseconds>`. Single-threaded, so that its own cost per watcher stays a few
// microseconds and the figure is the server's; used by bench/run_memory.sh.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio.hpp>

namespace asio = boost::asio;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "watch_fanout: %s\n", msg.c_str());
  std::exit(2);
}

// The first n bytes of buf, consumed.
std::string take(asio::streambuf& buf, size_t n) {
  std::string out(asio::buffers_begin(buf.data()), asio::buffers_begin(buf.data()) + n);
  buf.consume(n);
  return out;
}

struct Watcher {
  explicit Watcher(asio::io_context& io) : socket(io) {}
  tcp::socket socket;
  std::string request;
  asio::streambuf buf;
  Clock::time_point notified{};
};

class Round {
 public:
  Round(asio::io_context& io, tcp::endpoint ep, std::string host, std::string key, size_t n)
      : io_(io), ep_(ep), host_(std::move(host)), key_(std::move(key)), n_(n) {}

  // Runs the round; returns the fan-out time in milliseconds.
  double run() {
    for (size_t i = 0; i < n_; ++i) {
      auto w = std::make_shared<Watcher>(io_);
      w->request = "GET /v2/keys/" + key_ + "?wait=true HTTP/1.1\r\nHost: " + host_ + "\r\n\r\n";
      watchers_.push_back(w);
      w->socket.async_connect(ep_, [this, w](boost::system::error_code ec) {
        if (ec) die("connect: " + ec.message());
        asio::async_write(w->socket, asio::buffer(w->request),
                          [this, w](boost::system::error_code ec, size_t) {
                            if (ec) die("write: " + ec.message());
                            read_head(w);
                          });
      });
    }
    io_.restart();
    io_.run();
    if (notified_ != n_) die("only " + std::to_string(notified_) + " watchers were notified");
    Clock::time_point last = sent_;
    for (const auto& w : watchers_) {
      last = std::max(last, w->notified);
      boost::system::error_code ignored;
      w->socket.close(ignored);
    }
    return std::chrono::duration<double, std::milli>(last - sent_).count();
  }

 private:
  void read_head(const std::shared_ptr<Watcher>& w) {
    asio::async_read_until(w->socket, w->buf, "\r\n\r\n",
                           [this, w](boost::system::error_code ec, size_t n) {
                             if (ec) die("reading a watch's headers: " + ec.message());
                             std::string head = take(w->buf, n);
                             if (head.find(" 200 ") == std::string::npos) {
                               die("a watch was refused: " + head);
                             }
                             read_chunk_size(w);
                             if (++registered_ == n_) send_put();
                           });
  }

  void read_chunk_size(const std::shared_ptr<Watcher>& w) {
    asio::async_read_until(w->socket, w->buf, "\r\n",
                           [this, w](boost::system::error_code ec, size_t n) {
                             if (ec) die("reading an event: " + ec.message());
                             std::string line = take(w->buf, n);
                             size_t size = std::strtoul(line.c_str(), nullptr, 16);
                             if (size == 0) die("a watch ended without an event");
                             read_body(w, size + 2);  // the chunk and its CRLF
                           });
  }

  void read_body(const std::shared_ptr<Watcher>& w, size_t want) {
    if (w->buf.size() >= want) {
      w->notified = Clock::now();
      ++notified_;  // the socket closes with the round, outside the measured time
      return;
    }
    asio::async_read(w->socket, w->buf, asio::transfer_at_least(want - w->buf.size()),
                     [this, w, want](boost::system::error_code ec, size_t) {
                       if (ec) die("reading an event: " + ec.message());
                       read_body(w, want);
                     });
  }

  void send_put() {
    put_ = std::make_unique<tcp::socket>(io_);
    boost::system::error_code ec;
    put_->connect(ep_, ec);  // connected before the clock starts
    if (ec) die("connect: " + ec.message());
    const std::string body = "value=changed";
    put_request_ = "PUT /v2/keys/" + key_ + " HTTP/1.1\r\nHost: " + host_ +
                   "\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: " +
                   std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
    sent_ = Clock::now();
    asio::async_write(*put_, asio::buffer(put_request_), [this](boost::system::error_code ec, size_t) {
      if (ec) die("PUT: " + ec.message());
      asio::async_read(*put_, put_buf_, [](boost::system::error_code, size_t) {});
    });
  }

  asio::io_context& io_;
  tcp::endpoint ep_;
  std::string host_, key_;
  size_t n_;
  std::vector<std::shared_ptr<Watcher>> watchers_;
  size_t registered_ = 0, notified_ = 0;
  std::unique_ptr<tcp::socket> put_;
  std::string put_request_;
  asio::streambuf put_buf_;
  Clock::time_point sent_{};
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 6) die("usage: watch_fanout HOST PORT KEY WATCHERS ROUNDS");
  const std::string host = argv[1];
  const int port = std::atoi(argv[2]);
  const std::string key = argv[3];
  const long n = std::atol(argv[4]), rounds = std::atol(argv[5]);
  if (port <= 0 || port > 65535 || n <= 0 || rounds <= 0) die("bad arguments");
  boost::system::error_code ec;
  tcp::endpoint ep(asio::ip::make_address(host, ec), static_cast<unsigned short>(port));
  if (ec) die("bad address " + host);
  // A descriptor per watcher, and a few more.
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < static_cast<rlim_t>(n) + 64) {
    lim.rlim_cur = std::min<rlim_t>(lim.rlim_max, static_cast<rlim_t>(n) + 64);
    setrlimit(RLIMIT_NOFILE, &lim);
  }
  asio::io_context io;
  for (long r = 0; r < rounds; ++r) {
    Round round(io, ep, host + ":" + argv[2], key, static_cast<size_t>(n));
    std::printf("FANOUT ms=%.3f\n", round.run());
    std::fflush(stdout);
  }
  return 0;
}
