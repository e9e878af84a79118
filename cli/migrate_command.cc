// kvctl migrate: an etcd 3.4 member's data dir into a kvd data dir, offline (offline/migrate.h
// says what is kept). kvctl's own; etcdctl v2 has no such command.
//
//   kvctl migrate --etcd-data-dir /var/lib/etcd/etcd0.etcd --data-dir /var/lib/kvd/etcd0.etcd
//   kvctl migrate --etcd-data-dir SRC --name etcd0          (writes etcd0.etcd, as kvd's default)
#include <spdlog/spdlog.h>

#include "cli/command.h"
#include "common/ids.h"
#include "offline/migrate.h"

namespace kvd::cli {

void cmd_migrate(const Context& c) {
  spdlog::set_level(spdlog::level::err);  // RocksDB's notices are not the command's output
  const std::string src = c.cmd.get_string("etcd-data-dir");
  std::string dst = c.cmd.get_string("data-dir");
  const std::string name = c.cmd.get_string("name");
  if (src.empty()) handle_error(kExitBadArgs, "--etcd-data-dir is required");
  if (dst.empty() && !name.empty()) dst = name + ".etcd";  // kvd's and etcd's default data dir
  if (dst.empty()) handle_error(kExitBadArgs, "--data-dir (or --name) is required");
  auto rep = offline::migrate_etcd(src, dst);
  if (!rep.is_ok()) handle_error(kExitBadArgs, rep.status().message());
  const offline::MigrateReport& r = rep.value();
  for (const auto& w : r.warnings) write_stderr("warning: " + w + "\n");
  std::string members;
  for (uint64_t id : r.members) members += (members.empty() ? "" : " ") + hex_id(id);
  write_stdout("migrated etcd member " + hex_id(r.member_id) + " of cluster " +
               hex_id(r.cluster_id) + " to " + dst + ": " + std::to_string(r.nodes) +
               " nodes, etcd index " + std::to_string(r.etcd_index) + ", raft index " +
               std::to_string(r.raft_index) + " (" +
               (r.snap_file.empty() ? std::string("no snap file") : r.snap_file) + " and " +
               std::to_string(r.applied) + " WAL entries after it; " +
               std::to_string(r.uncommitted) + " uncommitted entries dropped); members [" +
               members + "]\nstart it with: kvd --name NAME --data-dir " + dst +
               " --force-new-cluster ... (then add members with `kvctl member add`)\n");
}

}  // namespace kvd::cli
