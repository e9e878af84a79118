// sync_floor: what a commit's fsyncs cost when the members of a cluster share one disk.
//
//   sync_floor DIR WRITERS [ITERATIONS]
//
// WRITERS threads, each appending to a file of its own in DIR (one per member, as each member
// has its own log), start every iteration together (a barrier); each writes 4 KiB at the end of
// its file and fdatasyncs it. An iteration's figure is the time from the first writer's start
// until a majority of them (WRITERS / 2 + 1) have synced: the part of a write's latency that the
// disk alone sets when the leader and its followers sync at once (Raft thesis 10.2.1), whatever
// the server. With WRITERS 1 it is one lone append + fdatasync. Prints one line:
// `SYNC_FLOOR writers=<n> majority=<m> p50_ms=<median> p90_ms=<90th percentile>`.
// Used by bench/run_cluster.sh; threads rather than processes so that the start is one barrier
// (Python's threads queue on the interpreter lock between the barrier and the write).
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

using Clock = std::chrono::steady_clock;

namespace {

struct Span {
  Clock::time_point start, end;
};

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "sync_floor: %s\n", what.c_str());
  std::exit(1);
}

long parse(const char* text, const char* what, long lo, long hi) {
  char* end = nullptr;
  long v = std::strtol(text, &end, 10);
  if (end == text || *end != '\0' || v < lo || v > hi) {
    die(std::string(what) + " must be an integer from " + std::to_string(lo) + " to " +
        std::to_string(hi) + ", not '" + text + "'");
  }
  return v;
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3 || argc > 4) die("usage: sync_floor DIR WRITERS [ITERATIONS]");
  const std::string dir = argv[1];
  const int writers = static_cast<int>(parse(argv[2], "WRITERS", 1, 64));
  const int iterations =
      argc > 3 ? static_cast<int>(parse(argv[3], "ITERATIONS", 1, 1000000)) : 2000;
  std::vector<int> fds;
  std::vector<std::string> paths;
  for (int k = 0; k < writers; ++k) {
    paths.push_back(dir + "/sync-floor." + std::to_string(getpid()) + "." + std::to_string(k));
    int fd = ::open(paths.back().c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0) die("cannot create " + paths.back());
    fds.push_back(fd);
  }
  std::vector<std::vector<Span>> spans(writers, std::vector<Span>(iterations));
  std::barrier start(writers);
  std::atomic<bool> failed{false};
  std::vector<std::thread> threads;
  for (int k = 0; k < writers; ++k) {
    threads.emplace_back([&, k] {
      const std::string block(4096, 'x');
      for (int i = 0; i < iterations; ++i) {
        start.arrive_and_wait();
        Span& s = spans[k][i];
        s.start = Clock::now();
        if (::write(fds[k], block.data(), block.size()) != static_cast<ssize_t>(block.size()) ||
            ::fdatasync(fds[k]) != 0) {
          failed.store(true);
        }
        s.end = Clock::now();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int k = 0; k < writers; ++k) {
    ::close(fds[k]);
    ::unlink(paths[k].c_str());
  }
  if (failed.load()) die("a write or fdatasync in " + dir + " failed");
  const int majority = writers / 2 + 1;
  std::vector<double> took;
  took.reserve(iterations);
  std::vector<Clock::time_point> ends(writers);
  for (int i = 0; i < iterations; ++i) {
    Clock::time_point first = spans[0][i].start;
    for (int k = 0; k < writers; ++k) {
      first = std::min(first, spans[k][i].start);
      ends[k] = spans[k][i].end;
    }
    std::nth_element(ends.begin(), ends.begin() + (majority - 1), ends.end());
    took.push_back(std::chrono::duration<double, std::milli>(ends[majority - 1] - first).count());
  }
  std::printf("SYNC_FLOOR writers=%d majority=%d p50_ms=%.4f p90_ms=%.4f\n", writers, majority,
              percentile(took, 0.5), percentile(took, 0.9));
  return 0;
}
