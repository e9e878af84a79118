// kvctl's member commands (list, add, remove, update) and cluster-health, as etcdctl v2's.
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

namespace kvd::cli {

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
std::variant<bool, std::string> check_health(const std::string& url, std::chrono::milliseconds dial,
                                             const TlsClientConfig* tls) {
  std::string target_url = url + "/health";
  std::string err;
  auto ep = url::parse(target_url, &err, false);
  if (!ep) return "parse " + go::quote(target_url) + err.substr(err.find(':'));
  HttpCall call;
  call.method = "GET";
  call.target = go::escape_path(ep->path.empty() ? "/" : ep->path);
  call.dial_timeout = dial;
  call.tls = tls;
  HttpResult r = http_round_trip(*ep, call);
  if (auto* f = std::get_if<HttpFailure>(&r)) {
    return "Get " + go::quote(target_url) + ": " +
           (f->plain_http_answer ? "http: server gave HTTP response to HTTPS client" : f->message);
  }
  return decode_health(std::get<HttpResponse>(r).body);
}

void cmd_cluster_health(const Context& c) {
  bool forever = c.cmd.get_bool("forever");
  if (forever) exit_on_sigint();
  // As etcdctl: the TLS settings before anything else, a bad file being a server error here.
  auto tls = tls_config(c);
  if (auto* err = std::get_if<std::string>(&tls)) handle_error(kExitServerError, *err);
  EtcdClient client =
      must_new_client_no_sync(c, std::get<std::shared_ptr<const TlsClientConfig>>(std::move(tls)));
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
        auto h = check_health(url, dial, client.tls());
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

}  // namespace kvd::cli
