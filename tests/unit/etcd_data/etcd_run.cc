#include "tests/unit/etcd_data/etcd_run.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>

namespace kvd::etcd_data::testing {

namespace {

namespace fs = std::filesystem;

// Where the last filler may be at most, past the newest snap file, when the scenario starts:
// the scenario's writes (and etcd's own SYNC entries, two a second while a TTL key exists) then
// stay below the next snapshot, kSnapshotCount entries further.
constexpr uint64_t kMaxFillerLead = 20;

int64_t unix_ns_now() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Result<Write> write(const EtcdProcess& etcd, std::string method, std::string key,
                    std::string query, std::string value) {
  Write w{std::move(method), std::move(key), std::move(query), std::move(value), {}, 0, 0};
  const std::string target = "/v2/keys" + w.key + (w.query.empty() ? "" : "?" + w.query);
  Result<HttpResponse> r = etcd.http(w.method, target, w.value.empty() ? "" : "value=" + w.value);
  if (!r.is_ok()) return r.status();
  w.response = std::move(r.value());
  const std::string what = w.method + " " + target;
  if (w.response.status / 100 != 2) {
    return Status::error(what + ": " + std::to_string(w.response.status) + " " + w.response.body);
  }
  if (!w.response.headers.count("x-etcd-index") || !w.response.headers.count("x-raft-index")) {
    return Status::error(what + ": no X-Etcd-Index or X-Raft-Index header");
  }
  w.etcd_index = std::stoull(w.response.headers["x-etcd-index"]);
  w.raft_index = std::stoull(w.response.headers["x-raft-index"]);
  return w;
}

uint64_t snap_index_of(const std::string& path) {
  return std::stoull(fs::path(path).filename().string().substr(17, 16), nullptr, 16);
}

Status run_scenario(const std::string& data_dir, const std::string& log, EtcdRun* run) {
  Result<std::unique_ptr<EtcdProcess>> started = EtcdProcess::start(data_dir, kSnapshotCount, log);
  if (!started.is_ok()) return started.status();
  EtcdProcess& etcd = *started.value();
  Result<HttpResponse> members = etcd.http("GET", "/v2/members");
  if (!members.is_ok()) return members.status();
  nlohmann::json mj = nlohmann::json::parse(members.value().body, nullptr, false);
  if (!mj.is_object() || !mj["members"].is_array() || mj["members"].size() != 1) {
    return Status::error("GET /v2/members: " + members.value().body);
  }
  run->member_id = std::stoull(mj["members"][0]["id"].get<std::string>(), nullptr, 16);
  run->cluster_id = std::stoull(members.value().headers["x-etcd-cluster-id"], nullptr, 16);

  bool placed = false;
  for (int i = 0; i < 20 * kSnapshotCount && !placed; ++i) {
    Result<Write> w = write(etcd, "PUT", "/fill/" + std::to_string(i), "", "f" + std::to_string(i));
    if (!w.is_ok()) return w.status();
    run->fillers.push_back(std::move(w.value()));
    std::vector<std::string> snaps = snap_files(data_dir);
    placed = snaps.size() >= 2 &&
             run->fillers.back().raft_index <= snap_index_of(snaps.front()) + kMaxFillerLead;
  }
  if (!placed) return Status::error("etcd saved no second snap file in time");

  std::vector<Write>& s = run->scenario;
  auto add = [&](const char* method, std::string key, std::string query,
                 std::string value) -> Status {
    Result<Write> w = write(etcd, method, std::move(key), std::move(query), std::move(value));
    if (!w.is_ok()) return w.status();
    s.push_back(std::move(w.value()));
    return Status::ok();
  };
  Status st = add("PUT", "/a", "", "1");
  if (st.is_ok()) st = add("PUT", "/b", "", "2");
  if (st.is_ok()) {
    run->ttl_sent_before_ns = unix_ns_now();
    st = add("PUT", "/ttl", "ttl=600", "t");  // kTtlWrite
    run->ttl_sent_after_ns = unix_ns_now();
  }
  if (st.is_ok()) st = add("POST", "/queue", "", "job1");
  if (st.is_ok()) st = add("PUT", "/dir", "dir=true", "");
  if (st.is_ok()) st = add("PUT", "/a", "prevValue=1", "3");
  if (st.is_ok()) st = add("DELETE", "/b", "", "");
  if (st.is_ok()) st = add("PUT", "/c", "prevExist=false", "x");
  if (st.is_ok()) st = add("DELETE", "/c", "prevIndex=" + std::to_string(s.back().etcd_index), "");
  if (st.is_ok()) st = add("PUT", "/ttl", "ttl=900&refresh=true&prevExist=true", "");
  if (!st.is_ok()) return st;
  return etcd.stop();
}

std::string tail_of(const std::string& path) {
  std::string log = read_bytes(path);
  return log.size() > 4000 ? log.substr(log.size() - 4000) : log;
}

}  // namespace

const EtcdRun* etcd_run(std::string* error) {
  static std::unique_ptr<TempDir> dir;
  static std::optional<EtcdRun> run;
  static std::string run_error;
  if (!dir) {
    dir = std::make_unique<TempDir>("kvd-etcd-data");
    EtcdRun r;
    r.data_dir = dir->path() + "/data";
    const std::string log = dir->path() + "/etcd.log";
    if (Status s = run_scenario(r.data_dir, log, &r); s.is_ok()) {
      run = std::move(r);
    } else {
      run_error = s.message() + "\netcd's log (the end):\n" + tail_of(log);
    }
  }
  *error = run_error;
  return run ? &*run : nullptr;
}

std::vector<std::string> snap_files(const std::string& data_dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (fs::directory_iterator it(data_dir + "/member/snap", ec), end; !ec && it != end;
       it.increment(ec)) {
    if (it->path().extension() == ".snap") out.push_back(it->path().string());
  }
  std::sort(out.rbegin(), out.rend());
  return out;
}

std::vector<WalFile> wal_files(const std::string& data_dir) {
  std::vector<std::string> warnings;
  Result<std::vector<WalFile>> files = list_wal_files(data_dir + "/member/wal", &warnings);
  EXPECT_TRUE(files.is_ok()) << files.status().message();
  return files.is_ok() ? files.value() : std::vector<WalFile>{};
}

std::vector<WalRecord> wal_records(const std::string& data_dir) {
  WalDecoder dec(wal_files(data_dir));
  std::vector<WalRecord> out;
  for (;;) {
    Result<std::optional<WalRecord>> r = dec.next();
    EXPECT_TRUE(r.is_ok()) << r.status().message();
    if (!r.is_ok() || !r.value()) break;
    out.push_back(std::move(*r.value()));
  }
  return out;
}

void copy_compact(const std::string& from, const std::string& to) {
  fs::create_directories(to + "/member/wal");
  fs::create_directories(to + "/member/snap");
  for (const std::string& snap : snap_files(from)) {
    fs::copy_file(snap, to + "/member/snap/" + fs::path(snap).filename().string());
  }
  const std::vector<WalFile> files = wal_files(from);
  std::vector<uint64_t> ends(files.size(), 0);
  for (const WalRecord& r : wal_records(from)) ends[r.file] = r.end;
  for (size_t i = 0; i < files.size(); ++i) {
    std::string head(ends[i], '\0');
    std::ifstream in(files[i].path, std::ios::binary);
    in.read(head.data(), static_cast<std::streamsize>(head.size()));
    EXPECT_TRUE(in.good()) << files[i].path;
    write_bytes(to + "/member/wal/" + files[i].name, head);
  }
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  EXPECT_TRUE(out.good()) << path;
}

}  // namespace kvd::etcd_data::testing
