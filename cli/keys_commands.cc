// kvctl's keys commands: set, mk, mkdir, setdir, updatedir, update, rm, rmdir, get, ls, watch,
// exec-watch, as etcdctl v2's (ctlv2/command).
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

#include "cli/command.h"
#include "cli/etcd_client.h"
#include "common/go.h"
#include "cli/flags.h"
#include "cli/help.h"
#include "cli/output.h"

extern char** environ;

namespace kvd::cli {

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

}  // namespace kvd::cli
