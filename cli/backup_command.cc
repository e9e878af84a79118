// kvctl backup: etcdctl v2's backup of a member's data dir (offline), and kvd's online backup
// of a running member through its client URL (GET /kvd/backup). Both write a new data dir with
// a new member and cluster id, started with `kvd --force-new-cluster` (offline/backup.h has the
// rules and the stream format).
//
//   kvctl backup --data-dir DIR --backup-dir DIR2     offline, the member stopped
//   kvctl [--endpoints URL] backup --backup-dir DIR2   online, from the first endpoint
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "cli/command.h"
#include "common/ids.h"
#include "offline/backup.h"

namespace kvd::cli {
namespace {

void report(const offline::BackupInfo& info, const std::string& backup_dir) {
  std::string out = "backup of member " + hex_id(info.source_member_id) + " (cluster " +
                    hex_id(info.source_cluster_id) + ") at raft index " +
                    std::to_string(info.raft_index);
  out += " written to " + backup_dir + " as member " + hex_id(info.member_id) + " of cluster " +
         hex_id(info.cluster_id) + " (snapshot at raft index " +
         std::to_string(info.snapshot_index) + " with " + std::to_string(info.image_bytes) +
         " bytes of store image, " + std::to_string(info.entries) +
         " log entries after it); start it with: kvd --data-dir " + backup_dir +
         " --force-new-cluster ...\n";
  write_stdout(out);
}

}  // namespace

void cmd_backup(const Context& c) {
  // The database's own notices (RocksDB's info log) are no business of the command's output;
  // its errors are.
  spdlog::set_level(spdlog::level::err);
  const std::string data_dir = c.cmd.get_string("data-dir");
  const std::string backup_dir = c.cmd.get_string("backup-dir");
  if (!c.cmd.get_string("wal-dir").empty() || !c.cmd.get_string("backup-wal-dir").empty()) {
    handle_error(kExitBadArgs, "kvd keeps its log inside the data dir: --wal-dir and "
                               "--backup-wal-dir do not apply");
  }
  // --with-v3 is accepted for etcdctl's scripts: a kvd member has no v3 data.
  if (backup_dir.empty()) handle_error(kExitBadArgs, "--backup-dir is required");
  if (!data_dir.empty()) {
    auto info = offline::backup_data_dir(data_dir, backup_dir);
    if (!info.is_ok()) handle_error(kExitBadArgs, info.status().message());
    return report(info.value(), backup_dir);
  }

  EtcdClient client = new_client(c);
  ApiRequest req;
  req.path = "/kvd/backup";
  req.join_path = true;
  // No header timeout: the member answers once it has read its log, which takes a while for a
  // large store.
  auto sent = client.send(req, client.command_deadline(), /*one_shot=*/true, /*wait=*/true);
  if (auto* e = std::get_if<ClientError>(&sent)) handle_error(kExitBadConnection, *e);
  const HttpResponse& resp = std::get<HttpResponse>(sent);
  if (resp.status != 200) {
    auto j = nlohmann::json::parse(resp.body, nullptr, false);
    std::string why = j.is_object() && j.contains("message") && j["message"].is_string()
                          ? j["message"].get<std::string>()
                          : resp.body;
    if (resp.status == 404) why = "the server has no online backup (is it etcd, or a proxy?)";
    handle_error(kExitServerError, "backup: " + std::to_string(resp.status) + ": " + why);
  }
  auto content = offline::decode_stream(resp.body);
  if (!content.is_ok()) handle_error(kExitServerError, content.status().message());
  auto info = offline::write_backup(content.value(), backup_dir);
  if (!info.is_ok()) handle_error(kExitBadArgs, info.status().message());
  report(info.value(), backup_dir);
}

}  // namespace kvd::cli
