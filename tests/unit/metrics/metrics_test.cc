// metrics/: Go's number layout (values seen in a real etcd 3.4's /metrics), counters summed over
// threads, histogram buckets, and the exposition's order, labels and escaping.
#include "metrics/metrics.h"

#include <gtest/gtest.h>

#include <thread>

namespace kvd::metrics {
namespace {

TEST(MetricsTest, format_value_asGo) {
  // Go's strconv.FormatFloat(v, 'g', -1, 64), as etcd's /metrics shows them.
  EXPECT_EQ(format_value(0), "0");
  EXPECT_EQ(format_value(5), "5");
  EXPECT_EQ(format_value(20000), "20000");
  EXPECT_EQ(format_value(999999), "999999");
  EXPECT_EQ(format_value(1e6), "1e+06");
  EXPECT_EQ(format_value(1048576), "1.048576e+06");
  EXPECT_EQ(format_value(2147483648.0), "2.147483648e+09");
  EXPECT_EQ(format_value(26509312), "2.6509312e+07");
  EXPECT_EQ(format_value(1796304806.69), "1.79630480669e+09");
  EXPECT_EQ(format_value(18446744073709551615.0), "1.8446744073709552e+19");
  EXPECT_EQ(format_value(0.036229536), "0.036229536");
  EXPECT_EQ(format_value(0.001), "0.001");
  EXPECT_EQ(format_value(0.0001), "0.0001");
  EXPECT_EQ(format_value(0.00001), "1e-05");
  EXPECT_EQ(format_value(0.09), "0.09");
  EXPECT_EQ(format_value(8.192), "8.192");
  EXPECT_EQ(format_value(-3.5), "-3.5");
  EXPECT_EQ(format_value(1.0 / 0.0), "+Inf");
}

TEST(MetricsTest, counter_sumsEveryThreadsShare) {
  Counter c;
  std::vector<std::thread> ts;
  for (int t = 0; t < 8; ++t) {
    ts.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) c.inc();
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(c.value(), 80000u);
}

TEST(MetricsTest, histogram_bucketsAreLessOrEqual) {
  Histogram h(exponential_buckets(0.001, 2, 3));  // 0.001 0.002 0.004
  for (double v : {0.0005, 0.001, 0.0015, 0.004, 0.5}) h.observe(v);
  const auto s = h.snapshot();
  EXPECT_EQ(s.cumulative, (std::vector<uint64_t>{2, 3, 4, 5}));
  EXPECT_EQ(s.count, 5u);
  EXPECT_DOUBLE_EQ(s.sum, 0.5070);
}

TEST(MetricsTest, render_sortedWithHelpTypeAndEscapedLabels) {
  Registry r;
  r.counter("b_total", "B things.", {"action"}).with({"set"}).inc(3);
  r.counter("b_total", "ignored", {"action"}).with({"get"}).inc();
  r.gauge("a_gauge", "An \"a\".").only().set(0.5);
  r.histogram("c_seconds", "C.", {0.1, 1}, {"To"}).with({"x\"y\\z\n"}).observe(0.5);
  r.counter("d_total", "Never counted.", {"x"});  // no child: not rendered
  r.collect("e", "E.", Type::kGauge, [] { return std::vector<Sample>{{{{"k", "2"}}, 2}, {{{"k", "1"}}, 1}}; });
  EXPECT_EQ(r.render({{"aa_extra", "Extra.", Type::kGauge, {{{}, 7}}}}),
            "# HELP a_gauge An \"a\".\n"
            "# TYPE a_gauge gauge\n"
            "a_gauge 0.5\n"
            "# HELP aa_extra Extra.\n"
            "# TYPE aa_extra gauge\n"
            "aa_extra 7\n"
            "# HELP b_total B things.\n"
            "# TYPE b_total counter\n"
            "b_total{action=\"get\"} 1\n"
            "b_total{action=\"set\"} 3\n"
            "# HELP c_seconds C.\n"
            "# TYPE c_seconds histogram\n"
            "c_seconds_bucket{To=\"x\\\"y\\\\z\\n\",le=\"0.1\"} 0\n"
            "c_seconds_bucket{To=\"x\\\"y\\\\z\\n\",le=\"1\"} 1\n"
            "c_seconds_bucket{To=\"x\\\"y\\\\z\\n\",le=\"+Inf\"} 1\n"
            "c_seconds_sum{To=\"x\\\"y\\\\z\\n\"} 0.5\n"
            "c_seconds_count{To=\"x\\\"y\\\\z\\n\"} 1\n"
            "# HELP e E.\n"
            "# TYPE e gauge\n"
            "e{k=\"1\"} 1\n"
            "e{k=\"2\"} 2\n");
}

TEST(MetricsTest, render_labelsSortedByNameAsClientGolang) {
  // As etcd's etcd_http_failed_total{code="404",method="GET"}: declared (method, code), written
  // by name, children ordered by the labels so sorted.
  Registry r;
  auto& f = r.counter("f_total", "F.", {"method", "code"});
  f.with({"PUT", "412"}).inc();
  f.with({"GET", "500"}).inc();
  f.with({"GET", "404"}).inc(2);
  r.histogram("h", "H.", {1}, {"method", "Code"}).with({"GET", "7"}).observe(2);
  r.collect("g", "G.", Type::kGauge, [] {
    return std::vector<Sample>{{{{"z", "1"}, {"a", "2"}}, 1}, {{{"z", "0"}, {"a", "1"}}, 0}};
  });
  EXPECT_EQ(r.render(),
            "# HELP f_total F.\n"
            "# TYPE f_total counter\n"
            "f_total{code=\"404\",method=\"GET\"} 2\n"
            "f_total{code=\"412\",method=\"PUT\"} 1\n"
            "f_total{code=\"500\",method=\"GET\"} 1\n"
            "# HELP g G.\n"
            "# TYPE g gauge\n"
            "g{a=\"1\",z=\"0\"} 0\n"
            "g{a=\"2\",z=\"1\"} 1\n"
            "# HELP h H.\n"
            "# TYPE h histogram\n"
            "h_bucket{Code=\"7\",method=\"GET\",le=\"1\"} 0\n"
            "h_bucket{Code=\"7\",method=\"GET\",le=\"+Inf\"} 1\n"
            "h_sum{Code=\"7\",method=\"GET\"} 2\n"
            "h_count{Code=\"7\",method=\"GET\"} 1\n");
}

TEST(MetricsTest, process_metricsAreThere) {
  Registry r;
  register_process_metrics(r);
  const std::string out = r.render();
  for (const char* name : {"process_cpu_seconds_total ", "process_resident_memory_bytes ",
                           "process_open_fds ", "process_max_fds ", "process_start_time_seconds ",
                           "process_virtual_memory_bytes "}) {
    EXPECT_NE(out.find(std::string("\n") + name), std::string::npos) << name;
  }
  EXPECT_EQ(out.find("process_resident_memory_bytes 0\n"), std::string::npos);
}

}  // namespace
}  // namespace kvd::metrics
