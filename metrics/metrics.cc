// Counters, histograms, the registry and the text exposition (metrics.h).
#include "metrics/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

namespace kvd::metrics {

namespace {

std::atomic<size_t> next_shard{0};

void append_label_value(std::string& out, const std::string& v) {
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
}

void append_labels(std::string& out, const std::vector<std::pair<std::string, std::string>>& ls) {
  if (ls.empty()) return;
  out += '{';
  for (size_t i = 0; i < ls.size(); ++i) {
    if (i) out += ',';
    out += ls[i].first;
    out += "=\"";
    append_label_value(out, ls[i].second);
    out += '"';
  }
  out += '}';
}

void append_sample(std::string& out, const std::string& name,
                   const std::vector<std::pair<std::string, std::string>>& labels, double v) {
  out += name;
  append_labels(out, labels);
  out += ' ';
  out += format_value(v);
  out += '\n';
}

using Labels = std::vector<std::pair<std::string, std::string>>;

// client_golang writes a sample's labels sorted by name, whatever order the family declared.
Labels by_name(Labels ls) {
  std::sort(ls.begin(), ls.end());
  return ls;
}

Labels zip(const std::vector<std::string>& names, const std::vector<std::string>& values) {
  Labels out;
  for (size_t i = 0; i < names.size() && i < values.size(); ++i) {
    out.emplace_back(names[i], values[i]);
  }
  return by_name(std::move(out));
}

// A family's children in client_golang's order: by their labels, sorted by name first.
template <typename M>
std::vector<std::pair<Labels, const M*>> sorted_children(
    const std::vector<std::string>& names,
    const std::map<std::vector<std::string>, std::unique_ptr<M>>& children) {
  std::vector<std::pair<Labels, const M*>> out;
  out.reserve(children.size());
  for (const auto& [values, m] : children) out.emplace_back(zip(names, values), m.get());
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  return out;
}

// Samples computed at scrape time, in the same order with their labels sorted by name.
std::vector<Sample> sorted_samples(std::vector<Sample> samples) {
  for (auto& s : samples) s.labels = by_name(std::move(s.labels));
  std::sort(samples.begin(), samples.end(),
            [](const Sample& a, const Sample& b) { return a.labels < b.labels; });
  return samples;
}

const char* type_name(Type t) {
  switch (t) {
    case Type::kCounter:
      return "counter";
    case Type::kGauge:
      return "gauge";
    case Type::kHistogram:
      return "histogram";
  }
  return "untyped";
}

void append_histogram(std::string& out, const std::string& name,
                      std::vector<std::pair<std::string, std::string>> labels,
                      const Histogram& h) {
  const Histogram::Snapshot s = h.snapshot();
  const auto& bounds = h.bounds();
  for (size_t i = 0; i <= bounds.size(); ++i) {
    auto ls = labels;
    ls.emplace_back("le", i < bounds.size() ? format_value(bounds[i]) : "+Inf");
    append_sample(out, name + "_bucket", ls, static_cast<double>(s.cumulative[i]));
  }
  append_sample(out, name + "_sum", labels, s.sum);
  append_sample(out, name + "_count", labels, static_cast<double>(s.count));
}

}  // namespace

size_t shard_index() {
  thread_local const size_t index = next_shard.fetch_add(1, std::memory_order_relaxed) % kShards;
  return index;
}

uint64_t Counter::value() const {
  uint64_t sum = 0;
  for (const auto& s : shards_) sum += s.v.load(std::memory_order_relaxed);
  return sum;
}

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)) {
  for (auto& s : shards_) {
    s.buckets = std::make_unique<std::atomic<uint64_t>[]>(bounds_.size() + 1);
    for (size_t i = 0; i <= bounds_.size(); ++i) s.buckets[i].store(0);
  }
}

void Histogram::observe(double v) {
  // The first bucket whose upper bound holds v (Prometheus buckets are "less or equal").
  const size_t i = static_cast<size_t>(
      std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
  Shard& s = shards_[shard_index()];
  s.buckets[i].fetch_add(1, std::memory_order_relaxed);
  s.sum.fetch_add(v, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot out;
  std::vector<uint64_t> per(bounds_.size() + 1, 0);
  for (const auto& s : shards_) {
    for (size_t i = 0; i <= bounds_.size(); ++i) {
      per[i] += s.buckets[i].load(std::memory_order_relaxed);
    }
    out.sum += s.sum.load(std::memory_order_relaxed);
  }
  uint64_t running = 0;
  for (uint64_t n : per) {
    running += n;
    out.cumulative.push_back(running);
  }
  out.count = running;
  return out;
}

std::vector<double> exponential_buckets(double start, double factor, int count) {
  std::vector<double> out;
  for (int i = 0; i < count; ++i, start *= factor) out.push_back(start);
  return out;
}

Family<Counter>& Registry::counter(const std::string& name, const std::string& help,
                                   std::vector<std::string> labels) {
  std::lock_guard lk(mu_);
  Entry& e = entries_[name];
  if (!e.counters) {
    e.help = help;
    e.type = Type::kCounter;
    e.counters.reset(new Family<Counter>(std::move(labels),
                                         [] { return std::make_unique<Counter>(); }));
  }
  return *e.counters;
}

Family<Gauge>& Registry::gauge(const std::string& name, const std::string& help,
                               std::vector<std::string> labels) {
  std::lock_guard lk(mu_);
  Entry& e = entries_[name];
  if (!e.gauges) {
    e.help = help;
    e.type = Type::kGauge;
    e.gauges.reset(
        new Family<Gauge>(std::move(labels), [] { return std::make_unique<Gauge>(); }));
  }
  return *e.gauges;
}

Family<Histogram>& Registry::histogram(const std::string& name, const std::string& help,
                                       std::vector<double> bounds,
                                       std::vector<std::string> labels) {
  std::lock_guard lk(mu_);
  Entry& e = entries_[name];
  if (!e.histograms) {
    e.help = help;
    e.type = Type::kHistogram;
    e.histograms.reset(new Family<Histogram>(
        std::move(labels), [bounds] { return std::make_unique<Histogram>(bounds); }));
  }
  return *e.histograms;
}

void Registry::collect(const std::string& name, const std::string& help, Type type,
                       std::function<std::vector<Sample>()> fn) {
  std::lock_guard lk(mu_);
  Entry& e = entries_[name];
  e.help = help;
  e.type = type;
  e.collector = std::move(fn);
}

std::string Registry::render(const std::vector<Extra>& extra) const {
  // name -> (help, type, rendered samples)
  std::map<std::string, std::pair<std::string, std::string>> families;
  std::map<std::string, Type> types;
  {
    std::lock_guard lk(mu_);
    for (const auto& [name, e] : entries_) {
      std::string body;
      if (e.counters) {
        std::lock_guard fl(e.counters->mu_);
        for (const auto& [labels, c] : sorted_children(e.counters->labels_, e.counters->children_))
          append_sample(body, name, labels, static_cast<double>(c->value()));
      } else if (e.gauges) {
        std::lock_guard fl(e.gauges->mu_);
        for (const auto& [labels, g] : sorted_children(e.gauges->labels_, e.gauges->children_))
          append_sample(body, name, labels, g->value());
      } else if (e.histograms) {
        std::lock_guard fl(e.histograms->mu_);
        for (const auto& [labels, h] :
             sorted_children(e.histograms->labels_, e.histograms->children_))
          append_histogram(body, name, labels, *h);
      } else if (e.collector) {
        for (const auto& s : sorted_samples(e.collector())) append_sample(body, name, s.labels, s.value);
      }
      if (body.empty()) continue;  // a family without children renders nothing, as Go's
      families[name] = {e.help, std::move(body)};
      types[name] = e.type;
    }
  }
  for (const Extra& x : extra) {
    std::string body;
    for (const auto& s : sorted_samples(x.samples)) append_sample(body, x.name, s.labels, s.value);
    if (body.empty()) continue;
    families[x.name] = {x.help, std::move(body)};
    types[x.name] = x.type;
  }
  std::string out;
  for (const auto& [name, hb] : families) {
    out += "# HELP " + name + " " + hb.first + "\n";
    out += "# TYPE " + name + " " + type_name(types[name]) + "\n";
    out += hb.second;
  }
  return out;
}

Registry& registry() {
  static Registry* r = new Registry();  // never destroyed: threads may count during exit
  return *r;
}

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == 0) return std::signbit(v) ? "-0" : "0";
  // The shortest digits that read back exactly (d.ddde±x), then laid out as Go does.
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  std::string sci(buf, end);
  const size_t e = sci.find('e');
  std::string mant = sci.substr(0, e);
  const int exp = std::stoi(sci.substr(e + 1));
  const bool neg = mant[0] == '-';
  if (neg) mant.erase(0, 1);
  std::string digits;
  for (char c : mant) {
    if (c != '.') digits += c;
  }
  // strconv's 'g' with the shortest precision takes the exponent form when the decimal
  // exponent is below -4 or at least 6 (its eprec is 6 when shortest), plain digits otherwise.
  const int eprec = 6;
  std::string out = neg ? "-" : "";
  if (exp < -4 || exp >= eprec) {
    out += digits[0];
    if (digits.size() > 1) {
      out += '.';
      out += digits.substr(1);
    }
    out += 'e';
    out += exp < 0 ? '-' : '+';
    const int a = exp < 0 ? -exp : exp;
    if (a < 10) out += '0';
    out += std::to_string(a);
    return out;
  }
  if (exp < 0) {
    out += "0.";
    out += std::string(static_cast<size_t>(-exp - 1), '0');
    out += digits;
    return out;
  }
  const size_t point = static_cast<size_t>(exp) + 1;
  if (digits.size() <= point) {
    out += digits + std::string(point - digits.size(), '0');
  } else {
    out += digits.substr(0, point) + "." + digits.substr(point);
  }
  return out;
}

}  // namespace kvd::metrics
