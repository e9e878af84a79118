// Prometheus metrics as etcd 3.4 exposes them (client_golang's text exposition format 0.0.4):
// counters, gauges and histograms, in families with labels, registered once in a process-wide
// Registry and rendered for GET /metrics.
//
// Cost on the hot path: Counter::inc and Histogram::observe touch only the calling thread's shard
// (kShards cache-line-separated slots, a relaxed atomic add each): no lock, no shared cache line
// between the event loops. A labelled child is looked up under the family's mutex once and then
// kept by reference by the code that counts (children are never removed).
//
// Rendering follows client_golang: families sorted by name, each with "# HELP" and "# TYPE",
// children sorted by label values, label values escaped (\\, \", \n), numbers as Go's
// strconv.FormatFloat(v, 'g', -1, 64) ("5", "0.036229536", "1e+06", "+Inf").
//
// Threads: everything here is safe from any thread.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace kvd::metrics {

inline constexpr size_t kShards = 16;

// This thread's shard (threads take shards in turn as they first count).
size_t shard_index();

class Counter {
 public:
  void inc(uint64_t n = 1) {
    shards_[shard_index()].v.fetch_add(n, std::memory_order_relaxed);
  }
  uint64_t value() const;

 private:
  struct alignas(64) Shard {
    std::atomic<uint64_t> v{0};
  };
  std::array<Shard, kShards> shards_;
};

class Gauge {
 public:
  void set(double v) { v_.store(v, std::memory_order_relaxed); }
  void add(double d) { v_.fetch_add(d, std::memory_order_relaxed); }
  double value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> v_{0};
};

class Histogram {
 public:
  // REQUIRES: bounds strictly increasing (the +Inf bucket is implicit).
  explicit Histogram(std::vector<double> bounds);
  void observe(double v);
  struct Snapshot {
    std::vector<uint64_t> cumulative;  // per bound, then +Inf
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot snapshot() const;
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  struct alignas(64) Shard {
    std::unique_ptr<std::atomic<uint64_t>[]> buckets;  // bounds + 1
    std::atomic<double> sum{0};
  };
  std::vector<double> bounds_;
  std::array<Shard, kShards> shards_;
};

// Prometheus's ExponentialBuckets(start, factor, count).
std::vector<double> exponential_buckets(double start, double factor, int count);

enum class Type { kCounter, kGauge, kHistogram };

// One named metric and its children, one per combination of label values.
template <typename M>
class Family {
 public:
  // The child for these label values (in the order of the family's label names), made on first
  // use. REQUIRES: as many values as label names.
  M& with(const std::vector<std::string>& values);
  M& only() { return with({}); }  // a family without labels

 private:
  friend class Registry;
  Family(std::vector<std::string> labels, std::function<std::unique_ptr<M>()> make)
      : labels_(std::move(labels)), make_(std::move(make)) {}
  std::vector<std::string> labels_;
  std::function<std::unique_ptr<M>()> make_;
  mutable std::mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<M>> children_;  // GUARDED_BY(mu_)
};

// What a collector adds at scrape time: samples of one family computed then (a process's
// memory, a member's raft state), rendered with the registered ones.
struct Sample {
  std::vector<std::pair<std::string, std::string>> labels;
  double value = 0;
};

class Registry {
 public:
  // Registering a name twice returns the first family (its help and labels win).
  Family<Counter>& counter(const std::string& name, const std::string& help,
                           std::vector<std::string> labels = {});
  Family<Gauge>& gauge(const std::string& name, const std::string& help,
                       std::vector<std::string> labels = {});
  Family<Histogram>& histogram(const std::string& name, const std::string& help,
                               std::vector<double> bounds, std::vector<std::string> labels = {});
  // A family computed at each render by fn (which may run on any thread).
  void collect(const std::string& name, const std::string& help, Type type,
               std::function<std::vector<Sample>()> fn);

  // The text exposition of every family, with `extra` families (computed by the caller for this
  // scrape, e.g. from a member's state) merged in by name.
  struct Extra {
    std::string name, help;
    Type type = Type::kGauge;
    std::vector<Sample> samples;
  };
  std::string render(const std::vector<Extra>& extra = {}) const;

 private:
  struct Entry {
    std::string help;
    Type type = Type::kCounter;
    std::unique_ptr<Family<Counter>> counters;
    std::unique_ptr<Family<Gauge>> gauges;
    std::unique_ptr<Family<Histogram>> histograms;
    std::function<std::vector<Sample>()> collector;
  };
  mutable std::mutex mu_;
  std::map<std::string, Entry> entries_;  // GUARDED_BY(mu_)
};

// The child of f that `slot` caches: looked up with the label values labels() makes on first
// use (under the family's mutex) and kept in slot, so that later calls take no lock and
// allocate nothing. For hot paths that count into a fixed table of children.
template <typename M, typename Labels>
M& cached_child(std::atomic<M*>& slot, Family<M>& f, Labels labels) {
  M* m = slot.load(std::memory_order_acquire);
  if (!m) {
    m = &f.with(labels());
    slot.store(m, std::memory_order_release);
  }
  return *m;
}

// The process's registry (what /metrics renders).
Registry& registry();

// Registers process_cpu_seconds_total, process_resident_memory_bytes,
// process_virtual_memory_bytes, process_virtual_memory_max_bytes, process_open_fds,
// process_max_fds and process_start_time_seconds (read from /proc at each scrape). Idempotent.
void register_process_metrics(Registry& r = registry());

// Go's strconv.FormatFloat(v, 'g', -1, 64), as client_golang writes sample values.
std::string format_value(double v);

template <typename M>
M& Family<M>::with(const std::vector<std::string>& values) {
  std::lock_guard lk(mu_);
  auto& slot = children_[values];
  if (!slot) slot = make_();
  return *slot;
}

}  // namespace kvd::metrics
