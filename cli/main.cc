// kvctl: a command-line client for the etcd v2 keys, members and auth APIs that behaves like
// `ETCDCTL_API=2 etcdctl` 3.4.23: same command-line shape, output, error texts and exit codes
// (observed etcdctl behaviour: the shared spec etcdctl-v2.md). Single-threaded; talks HTTP and
// HTTPS.
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
#include "common/version.h"
#include "cli/flags.h"
#include "cli/help.h"
#include "cli/output.h"

extern char** environ;
namespace kvd::cli {
namespace {

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
      {"backup",
       {{{"data-dir"}, Type::kString, ""},
        {{"wal-dir"}, Type::kString, ""},
        {{"backup-dir"}, Type::kString, ""},
        {{"backup-wal-dir"}, Type::kString, ""},
        {{"with-v3"}, Type::kBool, "false"}},
       cmd_backup},
      // kvctl's own; etcdctl v2 has no such commands.
      {"export", {{{"no-index"}, Type::kBool, "false"}}, cmd_export},
      {"import",
       {{{"force"}, Type::kBool, "false"}, {{"parallel"}, Type::kInt, "16"}},
       cmd_import},
      {"migrate",
       {{{"etcd-data-dir"}, Type::kString, ""},
        {{"data-dir"}, Type::kString, ""},
        {{"name"}, Type::kString, ""}},
       cmd_migrate},
  };
  return kCommands;
}

// A command with sub-commands (member, user, role, auth): urfave's sub-app.
struct Group {
  std::string name;
  std::vector<Command> commands;
};

const std::vector<Group>& groups() {
  static const FlagSpec kRoles = {{"roles"}, Type::kStringSlice, ""};
  static const std::vector<FlagSpec> kRolePerm = {{{"path"}, Type::kString, ""},
                                                  {{"read"}, Type::kBool, "false"},
                                                  {{"write"}, Type::kBool, "false"},
                                                  {{"readwrite", "rw"}, Type::kBool, "false"}};
  static const std::vector<Group> kGroups = {
      {"member",
       {{"list", {}, cmd_member_list},
        {"add", {}, cmd_member_add},
        {"remove", {}, cmd_member_remove},
        {"update", {}, cmd_member_update}}},
      {"user",
       {{"add", {}, cmd_user_add},
        {"get", {}, cmd_user_get},
        {"list", {}, cmd_user_list},
        {"remove", {}, cmd_user_remove},
        {"grant", {kRoles}, cmd_user_grant},
        {"revoke", {kRoles}, cmd_user_revoke},
        {"passwd", {}, cmd_user_passwd}}},
      {"role",
       {{"add", {}, cmd_role_add},
        {"get", {}, cmd_role_get},
        {"list", {}, cmd_role_list},
        {"remove", {}, cmd_role_remove},
        {"grant", kRolePerm, cmd_role_grant},
        {"revoke", kRolePerm, cmd_role_revoke}}},
      {"auth", {{"enable", {}, cmd_auth_enable}, {"disable", {}, cmd_auth_disable}}},
  };
  return kGroups;
}

void print_help(const std::string& topic) { write_stdout(*help_text(topic)); }

// urfave's ShowCommandHelp for `help <topic>`.
[[noreturn]] void show_command_help(const std::string& topic, const std::string& prefix) {
  std::string key = prefix + topic;
  if (topic == "h") key = prefix + "help";
  // Help keys that are not command names ("app", "member_app") are no topics.
  const bool command_name = topic.find('_') == std::string::npos && topic != "app";
  if (auto text = command_name ? help_text(key) : std::nullopt) {
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

[[noreturn]] void run_group(const Group& group, Context& c, const std::vector<std::string>& argv) {
  const std::string app = group.name + "_app";
  ParsedFlags sub;
  if (auto err = parse_go_flags({kHelpFlag}, argv, &sub)) {
    write_stdout("Incorrect Usage. " + *err + "\n\n");
    print_help(app);
    write_stderr(*err + "\n");
    exit_now(kExitBadArgs);
  }
  if (sub.get_bool("help") || sub.args.empty()) {
    print_help(app);
    exit_now(kExitSuccess);
  }
  const std::string& name = sub.args[0];
  std::vector<std::string> rest(sub.args.begin() + 1, sub.args.end());
  if (name == "help" || name == "h") {
    if (rest.empty()) {
      print_help(app + "_help");
      exit_now(kExitSuccess);
    }
    show_command_help(rest[0], group.name + "_");
  }
  for (const auto& cmd : group.commands) {
    if (cmd.name == name) run_command(cmd, group.name + "_" + name, c, rest);
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
    // etcdctl's two lines, which scripts read, then which kvctl this is.
    write_stdout("etcdctl version: " + std::string(version::kServer) + "\nAPI version: 2\n" +
                 "kvctl version: " + std::string(version::kKvd) + "\nGit SHA: " +
                 std::string(version::git_revision()) + "\n");
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
  for (const auto& group : groups()) {
    if (group.name == name) run_group(group, c, cmd_args);
  }
  for (const auto& cmd : commands()) {
    if (cmd.name == name) run_command(cmd, name, c, cmd_args);
  }
  write_stderr("No help topic for '" + name + "'\n");
  return kExitUnknownCommand;
}

}  // namespace
}  // namespace kvd::cli

int main(int argc, char** argv) { kvd::cli::exit_now(kvd::cli::run(argc, argv)); }
