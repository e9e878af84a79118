// kvctl export and import: a v2 keys tree as a JSON file, read through the keys API of etcd or
// kvd and written back through it. etcdctl v2 has no such commands; these follow kvctl's shape
// (global flags, "Error:  ..." texts, etcdctl's exit codes plus kExitTargetNotEmpty).
//
// THE EXPORT FILE (written by cmd_export, read by cmd_import)
//
// One JSON object, UTF-8, with a fixed member order and one node per line so that two exports
// compare with diff:
//
//   {"format":"kvd-v2-export","version":1,"root":"/","etcdIndex":1042,"nodes":[
//   {"key":"/a","dir":true,"createdIndex":5,"modifiedIndex":5},
//   {"key":"/a/b","value":"x\ny","createdIndex":6,"modifiedIndex":9},
//   {"key":"/lock","dir":true,"expiration":"2026-11-23T10:50:30.13098912Z","ttl":97,
//    "createdIndex":7,"modifiedIndex":7},
//   {"key":"/q/00000000000000000012","value":"job","createdIndex":12,"modifiedIndex":12}
//   ]}
//
// (the third node is one line in a real file).
//   format      always "kvd-v2-export".
//   version     1. An importer refuses any other version.
//   root        the KEY that was exported (informational).
//   etcdIndex   the server's X-Etcd-Index of the one recursive quorum GET the file was read
//               from: every node is as of that index. Omitted with --no-index.
//   nodes       every node under root, root itself included unless it is "/", in pre-order
//               with siblings sorted by key (the server's sorted=true order), so a directory
//               always comes before its children. Per node:
//     key            the absolute key ("/a/b"); in-order keys keep their generated names.
//     dir            true for a directory; absent for a key with a value.
//     value          the value of a key (any UTF-8 text); absent for a directory.
//     expiration     for a node with a TTL: when it expires, RFC3339Nano in UTC. AUTHORITATIVE
//                    on import: the TTL set is the time left until then (rounded up to whole
//                    seconds); a node already expired is skipped with its subtree.
//     ttl            for a node with a TTL: seconds left at export time (informational; used on
//                    import only when expiration is absent).
//     createdIndex, modifiedIndex   the source's indexes. Omitted with --no-index. Import
//                    ignores them: the target assigns its own.
// Readers ignore members they do not know. Nothing else is in the file.
//
// What the file cannot hold: hidden nodes (names starting with '_') are not listed by a v2
// recursive GET of their parent, so they are not exported; the offline migration covers them.
// What differs between two exports of the same tree from different servers: etcdIndex,
// createdIndex and modifiedIndex (drop them with --no-index), and the TTL countdown (ttl, and
// expiration by up to a second per import, since the API takes whole seconds).
//
// What a crash leaves: the file is written to stdout once the whole tree is read; an export cut
// short lacks the closing "]}" and import refuses it as not JSON. An import cut short leaves the
// nodes created so far in the target (re-run into an emptied target, or with --force).
//
// Import order: directories level by level (every directory of depth d before any of depth
// d+1), then all keys; within a step up to --parallel requests are in flight, each worker
// thread with its own client, so no create finds its parent missing or made implicitly.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/etcd_client.h"
#include "cli/output.h"
#include "common/go.h"

namespace kvd::cli {
namespace {

using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

constexpr const char* kFormat = "kvd-v2-export";
constexpr std::int64_t kVersion = 1;
// import into a target that already holds keys, without --force.
constexpr int kExitTargetNotEmpty = 6;

std::int64_t now_unix_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// ---------------------------------------------------------------------------------------------
// export

void append_node_lines(const Node& n, bool with_index, std::vector<std::string>& lines) {
  ordered_json j;
  j["key"] = n.key;
  if (n.dir) {
    j["dir"] = true;
  } else {
    j["value"] = n.value;
  }
  if (n.expiration) {
    // Normalised to UTC so that files from servers in different time zones compare equal.
    if (auto ns = go::parse_rfc3339_nano(*n.expiration)) {
      std::string t;
      go::append_rfc3339_nano(t, *ns);
      j["expiration"] = t;
    } else {
      j["expiration"] = *n.expiration;
    }
    j["ttl"] = n.ttl;
  }
  if (with_index) {
    j["createdIndex"] = n.created_index;
    j["modifiedIndex"] = n.modified_index;
  }
  lines.push_back(j.dump(-1, ' ', false, json::error_handler_t::replace));
  if (n.nodes) {
    std::vector<const Node*> children;
    for (const auto& c : *n.nodes) children.push_back(&c);
    // The server sorted them already (sorted=true); sorting again keeps the file's order
    // independent of that.
    std::sort(children.begin(), children.end(),
              [](const Node* a, const Node* b) { return a->key < b->key; });
    for (const Node* c : children) append_node_lines(*c, with_index, lines);
  }
}

}  // namespace

void cmd_export(const Context& c) {
  EtcdClient client = must_new_client(c);
  if (c.args().size() > 1) handle_error(kExitBadArgs, "export takes at most one key");
  std::string key = c.args().empty() ? "/" : c.args()[0];
  const bool with_index = !c.cmd.get_bool("no-index");
  ApiRequest r = keys_request("GET", key);
  r.query = {{"recursive", "true"}, {"sorted", "true"}, {"quorum", "true"}};
  KeysResponse resp = must_keys(client, r, false);

  std::vector<std::string> lines;
  if (resp.node.key.empty() || resp.node.key == "/") {
    // The root itself is no node of the file: its children are.
    Node root = resp.node;
    root.key = "/";
    if (root.nodes) {
      std::vector<std::string> all;
      append_node_lines(root, with_index, all);
      lines.assign(all.begin() + 1, all.end());
    }
  } else {
    append_node_lines(resp.node, with_index, lines);
  }
  ordered_json head;
  head["format"] = kFormat;
  head["version"] = kVersion;
  head["root"] = resp.node.key.empty() ? "/" : resp.node.key;
  if (with_index) head["etcdIndex"] = resp.index;
  std::string out = head.dump(-1, ' ', false, json::error_handler_t::replace);
  out.pop_back();  // the closing brace
  out += ",\"nodes\":[\n";
  for (std::size_t i = 0; i < lines.size(); ++i) {
    out += lines[i];
    out += i + 1 < lines.size() ? ",\n" : "\n";
  }
  out += "]}\n";
  write_stdout(out);
}

// ---------------------------------------------------------------------------------------------
// import

namespace {

struct ImportNode {
  std::string key;
  bool dir = false;
  std::string value;
  std::optional<std::int64_t> expiration_ns;
  std::optional<std::int64_t> ttl;
  std::size_t depth = 0;  // number of path segments
};

[[noreturn]] void bad_input(const std::string& msg) {
  handle_error(kExitBadArgs, "import: " + msg + "; nothing was written");
}

std::string parent_of(const std::string& key) {
  auto slash = key.rfind('/');
  return slash == 0 ? "/" : key.substr(0, slash);
}

// Checks the whole file before anything is written; exits with kExitBadArgs on a problem.
std::vector<ImportNode> parse_import_file(const std::string& text) {
  json doc = json::parse(text, nullptr, false);
  if (doc.is_discarded()) {
    std::string err = go::json_syntax_error(text);
    bad_input("input is not JSON" + (err.empty() ? "" : " (" + err + ")"));
  }
  if (!doc.is_object()) bad_input("input is not a JSON object");
  auto fmt = doc.find("format");
  if (fmt == doc.end() || !fmt->is_string() || fmt->get<std::string>() != kFormat) {
    bad_input(std::string("input is not a kvctl export (\"format\" must be \"") + kFormat + "\")");
  }
  auto ver = doc.find("version");
  if (ver == doc.end() || !ver->is_number_integer()) bad_input("missing \"version\"");
  if (ver->get<std::int64_t>() != kVersion) {
    bad_input("unsupported version " + ver->dump() + " (this kvctl reads version " +
              std::to_string(kVersion) + ")");
  }
  auto nodes = doc.find("nodes");
  if (nodes == doc.end() || !nodes->is_array()) bad_input("missing \"nodes\" array");

  std::vector<ImportNode> out;
  std::map<std::string, bool> seen;  // key -> dir
  for (std::size_t i = 0; i < nodes->size(); ++i) {
    const json& j = (*nodes)[i];
    const std::string where = "nodes[" + std::to_string(i) + "]";
    if (!j.is_object()) bad_input(where + " is not an object");
    ImportNode n;
    auto k = j.find("key");
    if (k == j.end() || !k->is_string()) bad_input(where + ": missing \"key\"");
    n.key = k->get<std::string>();
    const std::string at = where + " (" + n.key + ")";
    if (n.key.size() < 2 || n.key[0] != '/' || n.key.back() == '/' ||
        n.key.find("//") != std::string::npos || n.key.find("/./") != std::string::npos ||
        n.key.find("/../") != std::string::npos || n.key.ends_with("/.") ||
        n.key.ends_with("/..")) {
      bad_input(at + ": \"key\" must be an absolute, clean key other than /");
    }
    n.depth = static_cast<std::size_t>(std::count(n.key.begin(), n.key.end(), '/'));
    if (auto d = j.find("dir"); d != j.end()) {
      if (!d->is_boolean()) bad_input(at + ": \"dir\" must be true or false");
      n.dir = d->get<bool>();
    }
    auto v = j.find("value");
    if (n.dir && v != j.end()) bad_input(at + ": a directory has no \"value\"");
    if (!n.dir) {
      if (v == j.end() || !v->is_string()) bad_input(at + ": missing \"value\"");
      n.value = v->get<std::string>();
    }
    if (auto e = j.find("expiration"); e != j.end() && !e->is_null()) {
      std::optional<std::int64_t> ns;
      if (e->is_string()) ns = go::parse_rfc3339_nano(e->get<std::string>());
      if (!ns) bad_input(at + ": \"expiration\" is not an RFC 3339 time");
      n.expiration_ns = ns;
    }
    if (auto t = j.find("ttl"); t != j.end() && !t->is_null()) {
      if (!t->is_number_integer() || t->get<std::int64_t>() < 0) {
        bad_input(at + ": \"ttl\" must be a non-negative integer");
      }
      n.ttl = t->get<std::int64_t>();
    }
    if (!seen.emplace(n.key, n.dir).second) bad_input(at + ": duplicate key");
    out.push_back(std::move(n));
  }
  for (std::size_t i = 0; i < out.size(); ++i) {
    // A parent absent from the file is fine (an export of /a/b holds no /a); one that is a key
    // with a value cannot have children.
    for (std::string p = parent_of(out[i].key); p != "/"; p = parent_of(p)) {
      auto it = seen.find(p);
      if (it != seen.end() && !it->second) {
        bad_input("nodes[" + std::to_string(i) + "] (" + out[i].key + "): its parent " + p +
                  " is a key with a value, not a directory");
      }
    }
  }
  return out;
}

// The TTL to send for n at `now_ns`: 0 for none; nullopt when n has expired.
std::optional<std::int64_t> ttl_at(const ImportNode& n, std::int64_t now_ns) {
  if (n.expiration_ns) {
    std::int64_t left = *n.expiration_ns - now_ns;
    if (left <= 0) return std::nullopt;
    return (left + 999999999) / 1000000000;
  }
  if (n.ttl) {
    if (*n.ttl <= 0) return std::nullopt;
    return *n.ttl;
  }
  return 0;
}

// The etcd error code at the front of an etcd error's text ("105: Key already exists ...").
int etcd_code(const ClientError& e) {
  if (e.kind != ClientError::Kind::kEtcd) return 0;
  return std::atoi(e.message.c_str());
}

// Runs one import step: the nodes at `batch`, up to `parallel` at once, each worker with its
// own copy of `proto` (EtcdClient is single-threaded). Stops handing out work at the first
// failure, whose text is returned. Owned and called by cmd_import's thread only.
class StepRunner {
 public:
  StepRunner(const EtcdClient& proto, bool force, std::size_t parallel,
             std::atomic<std::size_t>& done)
      : proto_(proto), force_(force), parallel_(parallel), done_(done) {}

  std::optional<std::string> run(const std::vector<const ImportNode*>& batch, bool progress,
                                 const std::function<void()>& show) {
    next_.store(0);
    finished_ = 0;
    std::vector<std::thread> threads;
    const std::size_t n = std::min(parallel_, batch.size());
    for (std::size_t t = 0; t < n; ++t) {
      threads.emplace_back([this, &batch] {
        EtcdClient client = proto_;
        for (;;) {
          if (failed_.load()) break;
          std::size_t i = next_.fetch_add(1);
          if (i >= batch.size()) break;
          if (auto err = create(client, *batch[i])) {
            std::lock_guard<std::mutex> lock(mu_);
            if (!error_) error_ = batch[i]->key + ": " + *err;
            failed_.store(true);
            break;
          }
          done_.fetch_add(1);
        }
        std::lock_guard<std::mutex> lock(mu_);
        ++finished_;
        cv_.notify_all();
      });
    }
    {
      std::unique_lock<std::mutex> lock(mu_);
      while (finished_ < n) {
        cv_.wait_for(lock, std::chrono::milliseconds(200));
        if (progress) {
          lock.unlock();
          show();
          lock.lock();
        }
      }
    }
    for (auto& t : threads) t.join();
    return error_;
  }

 private:
  std::optional<std::string> create(EtcdClient& client, const ImportNode& n) {
    auto ttl = ttl_at(n, now_unix_ns());
    std::int64_t t = ttl.value_or(1);  // expired since planning: the shortest TTL there is
    if (n.dir) {
      auto r = client.keys(set_request(n.key, "", t, true, "false", "", 0),
                           client.command_deadline(), true, false);
      auto* e = std::get_if<ClientError>(&r);
      if (e == nullptr) return std::nullopt;
      // --force: an existing directory is kept, with the file's TTL (or none).
      if (force_ && etcd_code(*e) == 105) {
        ApiRequest u = set_request(n.key, "", t, true, "true", "", 0);
        if (t == 0) u.form->emplace_back("ttl", "");
        r = client.keys(u, client.command_deadline(), false, false);
        if (auto* e2 = std::get_if<ClientError>(&r)) return e2->message;
        return std::nullopt;
      }
      return e->message;
    }
    auto r = client.keys(set_request(n.key, n.value, t, false, force_ ? "" : "false", "", 0),
                         client.command_deadline(), !force_, false);
    if (auto* e = std::get_if<ClientError>(&r)) return e->message;
    return std::nullopt;
  }

  const EtcdClient& proto_;
  const bool force_;
  const std::size_t parallel_;
  std::atomic<std::size_t>& done_;
  std::atomic<std::size_t> next_{0};
  std::atomic<bool> failed_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::size_t finished_ = 0;          // guarded by mu_
  std::optional<std::string> error_;  // guarded by mu_
};

std::string seconds_text(Clock::duration d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2fs", std::chrono::duration<double>(d).count());
  return buf;
}

}  // namespace

void cmd_import(const Context& c) {
  const auto start = Clock::now();
  if (c.args().size() > 1) handle_error(kExitBadArgs, "import takes at most one file");
  std::string text;
  if (c.args().empty() || c.args()[0] == "-") {
    text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  } else {
    std::ifstream in(c.args()[0], std::ios::binary);
    if (!in) handle_error(kExitBadArgs, "import: cannot read " + c.args()[0]);
    text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  if (text.empty()) bad_input("the input is empty");
  std::vector<ImportNode> nodes = parse_import_file(text);
  const bool force = c.cmd.get_bool("force");
  std::int64_t parallel = c.cmd.get_int("parallel");
  if (parallel < 1) handle_error(kExitBadArgs, "import: --parallel must be at least 1");

  EtcdClient client = must_new_client(c);
  ApiRequest probe = keys_request("GET", "/");
  probe.query = {{"quorum", "true"}};
  KeysResponse root = must_keys(client, probe, false);
  if (root.node.nodes && !root.node.nodes->empty() && !force) {
    std::vector<std::string> names;
    for (const auto& n : *root.node.nodes) names.push_back(n.key);
    std::sort(names.begin(), names.end());
    std::string shown = names[0] + (names.size() > 1 ? ", ..." : "");
    handle_error(kExitTargetNotEmpty,
                 "import: the target is not empty (/ holds " + std::to_string(names.size()) +
                     " entries: " + shown + "); import into an empty cluster or pass --force");
  }

  // Plan: nodes already expired are skipped with everything under them.
  const std::int64_t now = now_unix_ns();
  std::set<std::string> expired_dirs;
  std::size_t skipped = 0;
  std::map<std::size_t, std::vector<const ImportNode*>> dirs_by_depth;
  std::vector<const ImportNode*> keys;
  std::vector<const ImportNode*> sorted;
  for (const auto& n : nodes) sorted.push_back(&n);
  std::sort(sorted.begin(), sorted.end(), [](const ImportNode* a, const ImportNode* b) {
    return a->depth != b->depth ? a->depth < b->depth : a->key < b->key;
  });
  std::size_t with_ttl = 0;
  for (const ImportNode* n : sorted) {
    bool under_expired = false;
    for (std::string p = parent_of(n->key); p != "/"; p = parent_of(p)) {
      if (expired_dirs.count(p)) under_expired = true;
    }
    if (under_expired || !ttl_at(*n, now)) {
      if (n->dir) expired_dirs.insert(n->key);
      ++skipped;
      continue;
    }
    if (n->expiration_ns || n->ttl) ++with_ttl;
    if (n->dir) {
      dirs_by_depth[n->depth].push_back(n);
    } else {
      keys.push_back(n);
    }
  }
  std::size_t dir_count = 0;
  for (const auto& [depth, v] : dirs_by_depth) dir_count += v.size();
  const std::size_t total = dir_count + keys.size();

  const bool progress = ::isatty(STDERR_FILENO) == 1;
  std::atomic<std::size_t> done{0};
  auto show = [&] {
    const std::size_t d = done.load();
    write_stderr("\rimport: " + std::to_string(d) + "/" + std::to_string(total) + " nodes (" +
                 std::to_string(total ? d * 100 / total : 100) + "%)");
  };
  StepRunner runner(client, force, static_cast<std::size_t>(parallel), done);
  std::optional<std::string> err;
  for (const auto& [depth, batch] : dirs_by_depth) {
    if ((err = runner.run(batch, progress, show))) break;
  }
  if (!err) err = runner.run(keys, progress, show);
  if (progress) {
    show();
    write_stderr("\n");
  }
  const std::string counts = std::to_string(done.load()) + " of " + std::to_string(total) +
                             " nodes (" + std::to_string(dir_count) + " dirs, " +
                             std::to_string(keys.size()) + " keys, " + std::to_string(with_ttl) +
                             " with a TTL), skipped " + std::to_string(skipped) + " expired";
  if (err) {
    write_stderr("import: stopped after " + counts + "\n");
    handle_error(kExitServerError, "import: " + *err);
  }
  write_stdout("import: created " + counts + " in " + seconds_text(Clock::now() - start) + "\n");
}

}  // namespace kvd::cli
