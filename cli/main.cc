// kvctl: a command-line client for the etcd v2 keys and members API that behaves like
// `ETCDCTL_API=2 etcdctl` 3.4.23: same command-line shape, output, error texts and exit codes
// (see /work/shared/spec/etcdctl-v2.md). Single-threaded; talks HTTP only.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "cli/etcd_client.h"
#include "common/go.h"
#include "cli/flags.h"
#include "cli/help.h"
#include "cli/output.h"

extern char** environ;

namespace kvd::cli {
namespace {

// etcdctl's exit codes (ctlv2/command/error.go).
constexpr int kExitSuccess = 0;
constexpr int kExitBadArgs = 1;
constexpr int kExitBadConnection = 2;
constexpr int kExitUnknownCommand = 3;
constexpr int kExitServerError = 4;
constexpr int kExitClusterNotHealthy = 5;

using Type = FlagSpec::Type;

const std::vector<FlagSpec> kGlobalFlags = {
    {{"debug"}, Type::kBool, "false"},
    {{"no-sync"}, Type::kBool, "false"},
    {{"output", "o"}, Type::kString, "simple"},
    {{"discovery-srv", "D"}, Type::kString, ""},
    {{"insecure-discovery"}, Type::kBool, "false"},
    {{"peers", "C"}, Type::kString, ""},
    {{"endpoint"}, Type::kString, ""},
    {{"endpoints"}, Type::kString, ""},
    {{"cert-file"}, Type::kString, ""},
    {{"key-file"}, Type::kString, ""},
    {{"ca-file"}, Type::kString, ""},
    {{"username", "u"}, Type::kString, ""},
    {{"timeout"}, Type::kDuration, "2s"},
    {{"total-timeout"}, Type::kDuration, "5s"},
    {{"help", "h"}, Type::kBool, "false"},
    {{"version", "v"}, Type::kBool, "false"},
};

const FlagSpec kHelpFlag = {{"help", "h"}, Type::kBool, "false"};
const FlagSpec kTtlFlag = {{"ttl"}, Type::kInt, "0"};

struct Context {
  ParsedFlags global;
  ParsedFlags cmd;
  std::string output() const { return global.get_string("output"); }
  const std::vector<std::string>& args() const { return cmd.args; }
};

[[noreturn]] void exit_now(int code) {
  std::fflush(stdout);
  std::_Exit(code);
}

// etcdctl's handleError: "Error:  <err>" plus, for cluster errors, the per-endpoint detail.
[[noreturn]] void handle_error(int code, const ClientError& err) {
  std::string out = "Error:  " + err.message + "\n";
  if (err.kind == ClientError::Kind::kCluster) {
    for (std::size_t i = 0; i < err.errors.size(); ++i) {
      out += "error #" + std::to_string(i) + ": " + err.errors[i] + "\n";
    }
    out += "\n";
  }
  write_stderr(out);
  exit_now(code);
}

[[noreturn]] void handle_error(int code, const std::string& msg) {
  handle_error(code, ClientError{ClientError::Kind::kPlain, msg, {}, false});
}

std::string getenv_str(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (;;) {
    std::size_t p = s.find(sep, start);
    out.push_back(s.substr(start, p - start));
    if (p == std::string::npos) break;
    start = p + 1;
  }
  return out;
}

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string out;
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i) out += sep;
    out += v[i];
  }
  return out;
}

std::string base64(const std::string& in) {
  static const char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    unsigned v = (static_cast<unsigned char>(in[i]) << 16) |
                 (static_cast<unsigned char>(in[i + 1]) << 8) | static_cast<unsigned char>(in[i + 2]);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (i < in.size()) {
    unsigned v = static_cast<unsigned char>(in[i]) << 16;
    if (i + 1 < in.size()) v |= static_cast<unsigned char>(in[i + 1]) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < in.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

// Endpoint precedence: --endpoints > ETCDCTL_ENDPOINTS > --endpoint > ETCDCTL_ENDPOINT >
// --peers/-C > ETCDCTL_PEERS > default.
std::vector<std::string> endpoint_flag_value(const Context& c) {
  std::string s = c.global.get_string("endpoints");
  if (s.empty()) s = getenv_str("ETCDCTL_ENDPOINTS");
  if (s.empty()) s = c.global.get_string("endpoint");
  if (s.empty()) s = getenv_str("ETCDCTL_ENDPOINT");
  if (s.empty()) s = c.global.get_string("peers");
  if (s.empty()) s = getenv_str("ETCDCTL_PEERS");
  if (s.empty()) s = "http://127.0.0.1:2379,http://127.0.0.1:4001";
  return split(s, ',');
}

EtcdClient new_client(const Context& c) {
  std::vector<Endpoint> eps;
  for (const auto& raw : endpoint_flag_value(c)) {
    std::string err;
    auto ep = url::parse(raw, &err, /*default_http=*/true);
    if (!ep) {
      write_stderr(err + "\n");
      exit_now(kExitBadArgs);
    }
    eps.push_back(*ep);
  }
  ClientOptions opts;
  opts.header_timeout = c.global.get_duration("timeout");
  opts.total_timeout = c.global.get_duration("total-timeout");
  opts.debug = c.global.get_bool("debug");
  std::string user = c.global.get_string("username");
  if (user.empty()) user = getenv_str("ETCDCTL_USERNAME");
  if (!user.empty()) {
    std::string password;
    if (auto colon = user.find(':'); colon != std::string::npos) {
      password = user.substr(colon + 1);
      user.resize(colon);
    } else {
      write_stderr("Password: ");
      std::getline(std::cin, password);
    }
    opts.authorization = "Basic " + base64(user + ":" + password);
  }
  return EtcdClient(std::move(eps), opts);
}

// etcdctl's mustNewClient: builds the client and syncs the member list unless --no-sync.
EtcdClient must_new_client(const Context& c) {
  EtcdClient client = new_client(c);
  bool debug = c.global.get_bool("debug");
  if (!c.global.get_bool("no-sync")) {
    if (debug) {
      write_stderr("start to sync cluster using endpoints(" + join(client.endpoint_texts(), ",") +
                   ")\n");
    }
    if (auto err = client.sync(client.command_deadline())) {
      if (err->message == "client: no endpoints available") {
        write_stderr("etcd cluster has no published client endpoints.\n");
        write_stderr("Try '--no-sync' if you want to access non-published client endpoints(" +
                     join(client.endpoint_texts(), ",") + ").\n");
        handle_error(kExitServerError, *err);
      }
      if (err->connection) handle_error(kExitBadConnection, *err);
    }
    if (debug) {
      write_stderr("got endpoints(" + join(client.endpoint_texts(), ",") + ") after sync\n");
    }
  }
  if (debug) write_stderr("Cluster-Endpoints: " + join(client.endpoint_texts(), ", ") + "\n");
  return client;
}

EtcdClient must_new_client_no_sync(const Context& c) {
  EtcdClient client = new_client(c);
  if (c.global.get_bool("debug")) {
    write_stderr("Cluster-Endpoints: " + join(client.endpoint_texts(), ", ") + "\n");
  }
  return client;
}

// argOrStdin: the i-th argument, else all of stdin (which must not be empty).
std::optional<std::string> arg_or_stdin(const Context& c, std::size_t i) {
  if (i < c.args().size()) return c.args()[i];
  std::string data((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  if (data.empty() || std::cin.bad()) return std::nullopt;
  return data;
}

std::string require_key(const Context& c) {
  if (c.args().empty()) handle_error(kExitBadArgs, "key required");
  return c.args()[0];
}

std::string bool_str(bool b) { return b ? "true" : "false"; }

ApiRequest keys_request(const std::string& method, const std::string& key) {
  ApiRequest r;
  r.method = method;
  r.path = "/v2/keys" + (key.empty() || key[0] != '/' ? "/" + key : key);
  return r;
}

// SetOptions -> PUT request, as the Go client's setAction builds it.
ApiRequest set_request(const std::string& key, const std::string& value, std::int64_t ttl,
                       bool dir, const std::string& prev_exist, const std::string& prev_value,
                       std::uint64_t prev_index) {
  ApiRequest r = keys_request("PUT", key);
  r.form.emplace();
  if (dir) {
    r.query.emplace_back("dir", "true");
  } else {
    if (!prev_value.empty()) r.query.emplace_back("prevValue", prev_value);
    r.form->emplace_back("value", value);
  }
  if (prev_index != 0) r.query.emplace_back("prevIndex", std::to_string(prev_index));
  if (!prev_exist.empty()) r.query.emplace_back("prevExist", prev_exist);
  if (ttl > 0) r.form->emplace_back("ttl", std::to_string(ttl));
  return r;
}

KeysResponse must_keys(EtcdClient& client, const ApiRequest& req, bool one_shot) {
  auto r = client.keys(req, client.command_deadline(), one_shot, false);
  if (auto* e = std::get_if<ClientError>(&r)) handle_error(kExitServerError, *e);
  return std::get<KeysResponse>(r);
}

void cmd_set(const Context& c) {
  EtcdClient client = must_new_client(c);
  std::string key = require_key(c);
  auto value = arg_or_stdin(c, 1);
  if (!value) handle_error(kExitBadArgs, "value required");
  auto resp = must_keys(client,
                        set_request(key, *value, c.cmd.get_int("ttl"), false, "",
                                    c.cmd.get_string("swap-with-value"),
                                    static_cast<std::uint64_t>(c.cmd.get_int("swap-with-index"))),
                        false);
  print_response(resp, c.output());
}

void cmd_mk(const Context& c) {
  EtcdClient client = must_new_client(c);
  std::string key = require_key(c);
  auto value = arg_or_stdin(c, 1);
  if (!value) handle_error(kExitBadArgs, "value required");
  std::int64_t ttl = c.cmd.get_int("ttl");
  KeysResponse resp;
  if (!c.cmd.get_bool("in-order")) {
    resp = must_keys(client, set_request(key, *value, ttl, false, "false", "", 0), true);
  } else {
    ApiRequest r = keys_request("POST", key);
    r.form.emplace();
    r.form->emplace_back("value", *value);
    if (ttl > 0) r.form->emplace_back("ttl", std::to_string(ttl));
    resp = must_keys(client, r, false);
  }
  print_response(resp, c.output());
}

void mkdir_like(const Context& c, const std::string& prev_exist) {
  EtcdClient client = must_new_client(c);
  std::string key = require_key(c);
  auto resp = must_keys(client, set_request(key, "", c.cmd.get_int("ttl"), true, prev_exist, "", 0),
                        prev_exist == "false");
  if (c.output() != "simple") print_response(resp, c.output());
}

void cmd_mkdir(const Context& c) { mkdir_like(c, "false"); }
void cmd_setdir(const Context& c) { mkdir_like(c, ""); }
void cmd_updatedir(const Context& c) { mkdir_like(c, "true"); }

void cmd_update(const Context& c) {
  EtcdClient client = must_new_client(c);
  std::string key = require_key(c);
  auto value = arg_or_stdin(c, 1);
  if (!value) handle_error(kExitBadArgs, "value required");
  auto resp = must_keys(client, set_request(key, *value, c.cmd.get_int("ttl"), false, "true", "", 0),
                        false);
  print_response(resp, c.output());
}

void delete_like(const Context& c, bool dir, bool recursive, const std::string& prev_value,
                 std::uint64_t prev_index) {
  EtcdClient client = must_new_client(c);
  std::string key = require_key(c);
  ApiRequest r = keys_request("DELETE", key);
  if (!prev_value.empty()) r.query.emplace_back("prevValue", prev_value);
  if (prev_index != 0) r.query.emplace_back("prevIndex", std::to_string(prev_index));
  if (dir) r.query.emplace_back("dir", "true");
  if (recursive) r.query.emplace_back("recursive", "true");
  auto resp = must_keys(client, r, true);
  if (!resp.node.dir || c.output() != "simple") print_response(resp, c.output());
}

void cmd_rm(const Context& c) {
  delete_like(c, c.cmd.get_bool("dir"), c.cmd.get_bool("recursive"),
              c.cmd.get_string("with-value"),
              static_cast<std::uint64_t>(c.cmd.get_int("with-index")));
}

void cmd_rmdir(const Context& c) { delete_like(c, true, false, "", 0); }

ApiRequest get_request(const std::string& key, bool recursive, bool sorted, bool quorum) {
  ApiRequest r = keys_request("GET", key);
  r.query = {{"recursive", bool_str(recursive)},
             {"sorted", bool_str(sorted)},
             {"quorum", bool_str(quorum)}};
  return r;
}

void cmd_get(const Context& c) {
  EtcdClient client = must_new_client(c);
  std::string key = require_key(c);
  auto resp = must_keys(
      client, get_request(key, false, c.cmd.get_bool("sort"), c.cmd.get_bool("quorum")), false);
  if (resp.node.dir) {
    write_stderr(resp.node.key + ": is a directory\n");
    exit_now(kExitBadArgs);
  }
  print_response(resp, c.output());
}

void print_ls_node(const Node& n, bool slash, std::string& out) {
  out += n.key;
  if (n.dir && slash) out += '/';
  out += '\n';
  if (n.nodes) {
    for (const auto& child : *n.nodes) print_ls_node(child, slash, out);
  }
}

void cmd_ls(const Context& c) {
  EtcdClient client = must_new_client(c);
  std::string key = c.args().empty() ? "/" : c.args()[0];
  auto resp = must_keys(client,
                        get_request(key, c.cmd.get_bool("recursive"), c.cmd.get_bool("sort"),
                                    c.cmd.get_bool("quorum")),
                        false);
  if (c.output() != "simple") {
    print_response(resp, c.output());
    return;
  }
  std::string out;
  if (!resp.node.dir) out += resp.node.key + "\n";
  if (resp.node.nodes) {
    for (const auto& n : *resp.node.nodes) print_ls_node(n, c.cmd.get_bool("p"), out);
  }
  write_stdout(out);
}

void on_sigint(int) { std::_Exit(0); }

void exit_on_sigint() {
  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
}

// The Go client's httpWatcher: long-polls key?wait=true&waitIndex=W, advancing W past each
// event; empty bodies are retried.
class Watcher {
 public:
  Watcher(EtcdClient& client, std::string key, std::uint64_t after_index, bool recursive)
      : client_(client), key_(std::move(key)), recursive_(recursive),
        wait_index_(after_index > 0 ? after_index + 1 : 0) {}

  KeysResponse next() {
    for (;;) {
      ApiRequest r = keys_request("GET", key_);
      r.query = {{"wait", "true"},
                 {"waitIndex", std::to_string(wait_index_)},
                 {"recursive", bool_str(recursive_)}};
      auto res = client_.keys(r, std::nullopt, false, true);
      if (auto* e = std::get_if<ClientError>(&res)) {
        if (e->message == "client: response body is empty") continue;
        handle_error(kExitServerError, *e);
      }
      auto resp = std::get<KeysResponse>(res);
      wait_index_ = resp.node.modified_index + 1;
      return resp;
    }
  }

 private:
  EtcdClient& client_;
  std::string key_;
  bool recursive_;
  std::uint64_t wait_index_;
};

void cmd_watch(const Context& c) {
  EtcdClient client = must_new_client(c);
  std::string key = require_key(c);
  bool recursive = c.cmd.get_bool("recursive");
  bool forever = c.cmd.get_bool("forever");
  Watcher w(client, key, static_cast<std::uint64_t>(c.cmd.get_int("after-index")), recursive);
  exit_on_sigint();
  for (;;) {
    KeysResponse resp = w.next();
    if (resp.node.dir) continue;
    if (recursive) write_stdout("[" + resp.action + "] " + resp.node.key + "\n");
    print_response(resp, c.output());
    if (!forever) return;
  }
}

// exec.LookPath: a name with a slash is used as is; otherwise the first executable in $PATH.
std::optional<std::string> look_path(const std::string& name, std::string* error) {
  if (name.find('/') != std::string::npos) return name;
  for (const auto& dir : split(getenv_str("PATH"), ':')) {
    std::string p = (dir.empty() ? "." : dir) + "/" + name;
    if (::access(p.c_str(), X_OK) == 0) return p;
  }
  *error = "exec: " + go::quote(name) + ": executable file not found in $PATH";
  return std::nullopt;
}

// Starts argv with `env` added to the environment, without waiting. Returns Go's error text
// ("fork/exec /x: no such file or directory") if the program could not be started.
std::optional<std::string> start_process(const std::vector<std::string>& argv,
                                         const std::vector<std::string>& env) {
  std::string err;
  auto path = look_path(argv[0], &err);
  if (!path) return err;
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) return "pipe: " + std::string(std::strerror(errno));
  std::vector<std::string> envs;
  std::vector<std::string> names;
  for (const auto& e : env) names.push_back(e.substr(0, e.find('=') + 1));
  for (char** e = environ; *e; ++e) {
    std::string s = *e;
    bool overridden = std::any_of(names.begin(), names.end(),
                                  [&](const std::string& n) { return s.rfind(n, 0) == 0; });
    if (!overridden) envs.push_back(s);
  }
  envs.insert(envs.end(), env.begin(), env.end());
  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  std::vector<char*> cenv;
  for (const auto& e : envs) cenv.push_back(const_cast<char*>(e.c_str()));
  cenv.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::signal(SIGINT, SIG_DFL);
    ::execve(path->c_str(), cargv.data(), cenv.data());
    int e = errno;
    (void)!::write(pipefd[1], &e, sizeof e);
    ::_exit(127);
  }
  ::close(pipefd[1]);
  if (pid < 0) {
    ::close(pipefd[0]);
    return "fork/exec " + *path + ": " + std::strerror(errno);
  }
  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(pipefd[0], &child_errno, sizeof child_errno);
  } while (n < 0 && errno == EINTR);
  ::close(pipefd[0]);
  if (n == static_cast<ssize_t>(sizeof child_errno)) {
    ::waitpid(pid, nullptr, 0);
    std::string text = std::strerror(child_errno);
    if (!text.empty()) text[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(text[0])));
    return "fork/exec " + *path + ": " + text;
  }
  return std::nullopt;
}

void cmd_exec_watch(const Context& c) {
  EtcdClient client = must_new_client(c);
  const auto& args = c.args();
  if (args.size() < 2) handle_error(kExitBadArgs, "key and command to exec required");
  bool found_sep = false;
  for (std::size_t i = 1; i < args.size(); ++i) {
    if (args[i] == "--") found_sep = true;
  }
  std::string key;
  std::vector<std::string> cmd;
  if (found_sep) {
    key = args[0];
    cmd.assign(args.begin() + 2, args.end());
  } else {
    key = args.back();
    cmd.assign(args.begin(), args.end() - 1);
  }
  std::int64_t after = c.cmd.get_int("after-index");
  std::uint64_t index = after != 0 ? static_cast<std::uint64_t>(after) + 1 : 0;
  exit_on_sigint();
  Watcher w(client, key, index, c.cmd.get_bool("recursive"));
  for (;;) {
    KeysResponse resp = w.next();
    while (::waitpid(-1, nullptr, WNOHANG) > 0) {
    }
    if (resp.node.dir) {
      write_stderr("Ignored dir " + resp.node.key + " change\n");
      continue;
    }
    if (cmd.empty()) {
      write_stderr("exec: no command");
      exit_now(kExitBadArgs);
    }
    auto err = start_process(cmd, {"ETCD_WATCH_ACTION=" + resp.action,
                                   "ETCD_WATCH_MODIFIED_INDEX=" + std::to_string(resp.node.modified_index),
                                   "ETCD_WATCH_KEY=" + resp.node.key,
                                   "ETCD_WATCH_VALUE=" + resp.node.value});
    if (err) {
      write_stderr(*err);
      exit_now(kExitBadArgs);
    }
  }
}

void cmd_member_list(const Context& c) {
  if (!c.args().empty()) {
    write_stderr("No arguments accepted\n");
    exit_now(kExitBadArgs);
  }
  EtcdClient client = must_new_client(c);
  auto deadline = client.command_deadline();
  auto members = client.list_members(deadline);
  if (auto* e = std::get_if<ClientError>(&members)) {
    write_stderr(e->message + "\n");
    exit_now(kExitBadArgs);
  }
  auto leader = client.leader(deadline);
  if (auto* e = std::get_if<ClientError>(&leader)) {
    write_stderr("Failed to get leader:  " + e->message + "\n");
    exit_now(kExitBadArgs);
  }
  const std::string leader_id = std::get<Member>(leader).id;
  std::string out;
  for (const auto& m : std::get<std::vector<Member>>(members)) {
    if (m.name.empty()) {
      out += m.id + "[unstarted]: peerURLs=" + join(m.peer_urls, ",") + "\n";
    } else {
      out += m.id + ": name=" + m.name + " peerURLs=" + join(m.peer_urls, ",") +
             " clientURLs=" + join(m.client_urls, ",") +
             " isLeader=" + bool_str(m.id == leader_id) + "\n";
    }
  }
  write_stdout(out);
}

void cmd_member_add(const Context& c) {
  if (c.args().size() != 2) {
    write_stderr("Provide a name and a single member peerURL\n");
    exit_now(kExitBadArgs);
  }
  EtcdClient client = must_new_client(c);
  auto deadline = client.command_deadline();
  auto added = client.add_member(c.args()[1], deadline);
  if (auto* e = std::get_if<ClientError>(&added)) {
    write_stderr(e->message + "\n");
    exit_now(kExitBadArgs);
  }
  const std::string new_id = std::get<Member>(added).id;
  const std::string new_name = c.args()[0];
  write_stdout("Added member named " + new_name + " with ID " + new_id + " to cluster\n");
  auto members = client.list_members(deadline);
  if (auto* e = std::get_if<ClientError>(&members)) {
    write_stderr(e->message + "\n");
    exit_now(kExitBadArgs);
  }
  std::vector<std::string> conf;
  for (const auto& m : std::get<std::vector<Member>>(members)) {
    for (const auto& u : m.peer_urls) conf.push_back((m.id == new_id ? new_name : m.name) + "=" + u);
  }
  write_stdout("\nETCD_NAME=" + go::quote(new_name) + "\nETCD_INITIAL_CLUSTER=" +
               go::quote(join(conf, ",")) + "\nETCD_INITIAL_CLUSTER_STATE=\"existing\"\n");
}

void cmd_member_remove(const Context& c) {
  if (c.args().size() != 1) {
    write_stderr("Provide a single member ID\n");
    exit_now(kExitBadArgs);
  }
  const std::string id = c.args()[0];
  EtcdClient client = must_new_client(c);
  auto deadline = client.command_deadline();
  auto members = client.list_members(deadline);
  if (auto* e = std::get_if<ClientError>(&members)) {
    write_stderr("Error while verifying ID against known members: " + e->message + "\n");
    exit_now(kExitBadArgs);
  }
  bool found = false;
  for (const auto& m : std::get<std::vector<Member>>(members)) {
    if (m.id == id) found = true;
    if (m.name == id) {
      write_stderr("Found a member named " + m.name +
                   "; if this is correct, please use its ID, eg:\n\tetcdctl member remove " +
                   m.id + "\n");
      write_stderr(
          "For more details, read the documentation at "
          "https://github.com/etcd-io/etcd/blob/master/Documentation/op-guide/"
          "runtime-configuration.md#remove-a-member\n\n");
    }
  }
  if (!found) {
    write_stderr("Couldn't find a member in the cluster with an ID of " + id + ".\n");
    exit_now(kExitBadArgs);
  }
  if (auto err = client.remove_member(id, deadline)) {
    write_stderr("Received an error trying to remove member " + id + ": " + err->message);
    exit_now(kExitBadArgs);
  }
  write_stdout("Removed member " + id + " from cluster\n");
}

void cmd_member_update(const Context& c) {
  if (c.args().size() != 2) {
    write_stderr(
        "Provide an ID and a list of comma separated peerURL (0xabcd "
        "http://example.com,http://example1.com)\n");
    exit_now(kExitBadArgs);
  }
  EtcdClient client = must_new_client(c);
  const std::string id = c.args()[0];
  if (auto err = client.update_member(id, split(c.args()[1], ','), client.command_deadline())) {
    write_stderr(err->message + "\n");
    exit_now(kExitBadArgs);
  }
  write_stdout("Updated member with ID " + id + " in cluster\n");
}

// GET <url>/health with Go's http.Client error wrapping; returns the decoded verdict or an error.
std::variant<bool, std::string> check_health(const std::string& url, std::chrono::milliseconds dial) {
  std::string target_url = url + "/health";
  std::string err;
  auto ep = url::parse(target_url, &err, false);
  if (!ep) return "parse " + go::quote(target_url) + err.substr(err.find(':'));
  HttpCall call;
  call.method = "GET";
  call.target = go::escape_path(ep->path.empty() ? "/" : ep->path);
  call.dial_timeout = dial;
  HttpResult r = http_round_trip(*ep, call);
  if (auto* f = std::get_if<HttpFailure>(&r)) return "Get " + go::quote(target_url) + ": " + f->message;
  return decode_health(std::get<HttpResponse>(r).body);
}

void cmd_cluster_health(const Context& c) {
  bool forever = c.cmd.get_bool("forever");
  if (forever) exit_on_sigint();
  EtcdClient client = must_new_client_no_sync(c);
  auto members = client.list_members(std::nullopt);
  if (auto* e = std::get_if<ClientError>(&members)) {
    write_stdout("cluster may be unhealthy: failed to list members\n");
    handle_error(kExitServerError, *e);
  }
  auto total = c.global.get_duration("total-timeout");
  auto dial = std::chrono::milliseconds(30000);
  if (total.count() != 0) {
    dial = std::min(dial, std::chrono::duration_cast<std::chrono::milliseconds>(total));
  }
  for (;;) {
    std::size_t healthy_members = 0;
    const auto& ms = std::get<std::vector<Member>>(members);
    for (const auto& m : ms) {
      if (m.client_urls.empty()) {
        write_stdout("member " + m.id + " is unreachable: no available published client urls\n");
        continue;
      }
      bool checked = false;
      for (const auto& url : m.client_urls) {
        auto h = check_health(url, dial);
        if (auto* e = std::get_if<std::string>(&h)) {
          write_stdout("failed to check the health of member " + m.id + " on " + url + ": " + *e +
                       "\n");
          continue;
        }
        checked = true;
        if (std::get<bool>(h)) {
          ++healthy_members;
          write_stdout("member " + m.id + " is healthy: got healthy result from " + url + "\n");
        } else {
          write_stdout("member " + m.id + " is unhealthy: got unhealthy result from " + url + "\n");
        }
        break;
      }
      if (!checked) {
        write_stdout("member " + m.id + " is unreachable: [" + join(m.client_urls, " ") +
                     "] are all unreachable\n");
      }
    }
    bool all = healthy_members == ms.size() && !ms.empty();
    if (all) {
      write_stdout("cluster is healthy\n");
    } else if (healthy_members == 0) {
      write_stdout("cluster is unavailable\n");
    } else {
      write_stdout("cluster is degraded\n");
    }
    if (!forever) exit_now(all ? kExitSuccess : kExitClusterNotHealthy);
    write_stdout("\nnext check after 10 second...\n\n");
    ::sleep(10);  // the documented polling period of --forever, not a synchronisation
  }
}

struct Command {
  std::string name;
  std::vector<FlagSpec> flags;
  void (*run)(const Context&);
};

const std::vector<Command>& commands() {
  static const std::vector<Command> kCommands = {
      {"cluster-health", {{{"forever", "f"}, Type::kBool, "false"}}, cmd_cluster_health},
      {"mk", {{{"in-order"}, Type::kBool, "false"}, kTtlFlag}, cmd_mk},
      {"mkdir", {kTtlFlag}, cmd_mkdir},
      {"rm",
       {{{"dir"}, Type::kBool, "false"},
        {{"recursive", "r"}, Type::kBool, "false"},
        {{"with-value"}, Type::kString, ""},
        {{"with-index"}, Type::kInt, "0"}},
       cmd_rm},
      {"rmdir", {}, cmd_rmdir},
      {"get", {{{"sort"}, Type::kBool, "false"}, {{"quorum", "q"}, Type::kBool, "false"}}, cmd_get},
      {"ls",
       {{{"sort"}, Type::kBool, "false"},
        {{"recursive", "r"}, Type::kBool, "false"},
        {{"p"}, Type::kBool, "false"},
        {{"quorum", "q"}, Type::kBool, "false"}},
       cmd_ls},
      {"set",
       {kTtlFlag, {{"swap-with-value"}, Type::kString, ""}, {{"swap-with-index"}, Type::kInt, "0"}},
       cmd_set},
      {"setdir", {kTtlFlag}, cmd_setdir},
      {"update", {kTtlFlag}, cmd_update},
      {"updatedir", {kTtlFlag}, cmd_updatedir},
      {"watch",
       {{{"forever", "f"}, Type::kBool, "false"},
        {{"after-index"}, Type::kInt, "0"},
        {{"recursive", "r"}, Type::kBool, "false"}},
       cmd_watch},
      {"exec-watch",
       {{{"after-index"}, Type::kInt, "0"}, {{"recursive", "r"}, Type::kBool, "false"}},
       cmd_exec_watch},
  };
  return kCommands;
}

const std::vector<Command>& member_commands() {
  static const std::vector<Command> kMember = {
      {"list", {}, cmd_member_list},
      {"add", {}, cmd_member_add},
      {"remove", {}, cmd_member_remove},
      {"update", {}, cmd_member_update},
  };
  return kMember;
}

const std::vector<std::string> kUnsupported = {"backup", "user", "role", "auth"};

void print_help(const std::string& topic) { write_stdout(*help_text(topic)); }

// urfave's ShowCommandHelp for `help <topic>`.
[[noreturn]] void show_command_help(const std::string& topic, const std::string& prefix) {
  std::string key = prefix + topic;
  if (topic == "h") key = prefix + "help";
  if (prefix.empty() && topic == "member") key = "member";
  if (prefix == "member_" && (topic == "help" || topic == "h")) key = "help";
  if (auto text = help_text(key)) {
    write_stdout(*text);
    exit_now(kExitSuccess);
  }
  write_stderr("No help topic for '" + topic + "'\n");
  exit_now(kExitUnknownCommand);
}

// Runs a leaf command: reorders and parses its flags, handles -h, then its action.
[[noreturn]] void run_command(const Command& cmd, const std::string& help_topic, Context& c,
                              const std::vector<std::string>& argv) {
  std::vector<FlagSpec> specs = cmd.flags;
  specs.push_back(kHelpFlag);
  if (auto err = parse_go_flags(specs, reorder_args(specs, argv), &c.cmd)) {
    write_stdout("Incorrect Usage: " + *err + "\n\n");
    print_help(help_topic);
    write_stderr(*err + "\n");
    exit_now(kExitBadArgs);
  }
  if (c.cmd.get_bool("help")) {
    print_help(help_topic);
    exit_now(kExitSuccess);
  }
  cmd.run(c);
  exit_now(kExitSuccess);
}

[[noreturn]] void run_member(Context& c, const std::vector<std::string>& argv) {
  ParsedFlags sub;
  if (auto err = parse_go_flags({kHelpFlag}, argv, &sub)) {
    write_stdout("Incorrect Usage. " + *err + "\n\n");
    print_help("member_app");
    write_stderr(*err + "\n");
    exit_now(kExitBadArgs);
  }
  if (sub.get_bool("help") || sub.args.empty()) {
    print_help("member_app");
    exit_now(kExitSuccess);
  }
  const std::string& name = sub.args[0];
  std::vector<std::string> rest(sub.args.begin() + 1, sub.args.end());
  if (name == "help" || name == "h") {
    if (rest.empty()) {
      print_help("member_app");
      exit_now(kExitSuccess);
    }
    show_command_help(rest[0], "member_");
  }
  for (const auto& cmd : member_commands()) {
    if (cmd.name == name) run_command(cmd, "member_" + name, c, rest);
  }
  write_stderr("No help topic for '" + name + "'\n");
  exit_now(kExitUnknownCommand);
}

int run(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  Context c;
  if (auto err = parse_go_flags(kGlobalFlags, args, &c.global)) {
    write_stdout("Incorrect Usage. " + *err + "\n\n");
    print_help("app");
    write_stderr(*err + "\n");
    return kExitBadArgs;
  }
  if (c.global.get_bool("help")) {
    print_help("app");
    return kExitSuccess;
  }
  if (c.global.get_bool("version")) {
    write_stdout("etcdctl version: 3.4.23\nAPI version: 2\n");
    return kExitSuccess;
  }
  const auto& rest = c.global.args;
  if (rest.empty()) {
    print_help("app");
    return kExitSuccess;
  }
  const std::string& name = rest[0];
  std::vector<std::string> cmd_args(rest.begin() + 1, rest.end());
  if (name == "help" || name == "h") {
    if (cmd_args.empty()) {
      print_help("app");
      return kExitSuccess;
    }
    show_command_help(cmd_args[0], "");
  }
  if (name == "member") run_member(c, cmd_args);
  for (const auto& cmd : commands()) {
    if (cmd.name == name) run_command(cmd, name, c, cmd_args);
  }
  if (std::find(kUnsupported.begin(), kUnsupported.end(), name) != kUnsupported.end()) {
    write_stderr("kvctl: the " + name + " command is not supported\n");
    return kExitBadArgs;
  }
  write_stderr("No help topic for '" + name + "'\n");
  return kExitUnknownCommand;
}

}  // namespace
}  // namespace kvd::cli

int main(int argc, char** argv) { kvd::cli::exit_now(kvd::cli::run(argc, argv)); }
