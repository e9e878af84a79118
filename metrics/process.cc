// The process_* families, as Prometheus's Go process collector reports them, read from /proc at
// each scrape: CPU time, resident and virtual memory, the address-space limit, open and maximum
// file descriptors, start time.
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "metrics/metrics.h"

namespace kvd::metrics {

namespace {

// Fields of /proc/self/stat after the command name: utime 14, stime 15, starttime 22, vsize 23,
// rss 24 (1-based numbering of the whole line).
struct Stat {
  double cpu_seconds = 0, start_seconds = 0, virtual_bytes = 0, resident_bytes = 0;
};

Stat read_stat() {
  Stat s;
  std::ifstream in("/proc/self/stat");
  std::string line;
  std::getline(in, line);
  const size_t close = line.rfind(')');
  if (close == std::string::npos) return s;
  std::istringstream fields(line.substr(close + 2));
  std::vector<std::string> f;
  for (std::string x; fields >> x;) f.push_back(x);
  // f[0] is field 3 (state).
  auto field = [&](int n) { return n - 3 < static_cast<int>(f.size()) ? std::stod(f[n - 3]) : 0.0; };
  const double tck = static_cast<double>(::sysconf(_SC_CLK_TCK));
  s.cpu_seconds = (field(14) + field(15)) / tck;
  s.virtual_bytes = field(23);
  s.resident_bytes = field(24) * static_cast<double>(::sysconf(_SC_PAGESIZE));
  double boot = 0;
  std::ifstream st("/proc/stat");
  for (std::string l; std::getline(st, l);) {
    if (l.rfind("btime ", 0) == 0) boot = std::stod(l.substr(6));
  }
  s.start_seconds = boot + field(22) / tck;
  return s;
}

double open_fds() {
  std::error_code ec;
  double n = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++n;
  }
  return n;
}

double limit(int resource) {
  struct rlimit rl {};
  if (::getrlimit(resource, &rl) != 0) return 0;
  return rl.rlim_cur == RLIM_INFINITY ? 1.8446744073709552e19 : static_cast<double>(rl.rlim_cur);
}

std::vector<Sample> one(double v) { return {Sample{{}, v}}; }

}  // namespace

void register_process_metrics(Registry& r) {
  r.collect("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
            Type::kCounter, [] { return one(read_stat().cpu_seconds); });
  r.collect("process_resident_memory_bytes", "Resident memory size in bytes.", Type::kGauge,
            [] { return one(read_stat().resident_bytes); });
  r.collect("process_virtual_memory_bytes", "Virtual memory size in bytes.", Type::kGauge,
            [] { return one(read_stat().virtual_bytes); });
  r.collect("process_virtual_memory_max_bytes",
            "Maximum amount of virtual memory available in bytes.", Type::kGauge,
            [] { return one(limit(RLIMIT_AS)); });
  r.collect("process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.", Type::kGauge,
            [] { return one(read_stat().start_seconds); });
  r.collect("process_open_fds", "Number of open file descriptors.", Type::kGauge,
            [] { return one(open_fds()); });
  r.collect("process_max_fds", "Maximum number of open file descriptors.", Type::kGauge,
            [] { return one(limit(RLIMIT_NOFILE)); });
}

}  // namespace kvd::metrics
