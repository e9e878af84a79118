// GET /kvd/backup: an online backup of this member as a backup stream (offline/backup.h), read
// by `kvctl backup --endpoints URL --backup-dir DIR`. etcd 3.4 has no v2 counterpart (its v3
// API streams a snapshot of the v3 store). The answer carries password hashes when v2 auth is
// on, so it then needs the root role, as changing the membership does.
#include <algorithm>

#include <spdlog/spdlog.h>

#include "offline/backup.h"
#include "server/client_api.h"
#include "server/responses.h"

namespace kvd::server {
namespace {

constexpr size_t kChunkBytes = 1 << 20;

// Sends the stream from offset on, a chunk at a time, each once the previous one reached the
// socket (the client sets the pace).
void send_from(const std::shared_ptr<Exchange>& ex, const std::shared_ptr<const std::string>& data,
               size_t offset) {
  if (offset >= data->size()) return ex->end_stream();
  const size_t n = std::min(kChunkBytes, data->size() - offset);
  ex->send_chunk(data->substr(offset, n), [ex, data, next = offset + n] { send_from(ex, data, next); });
}

}  // namespace

void ClientApi::handle_backup(const HttpRequest& r, const ExchangePtr& ex) {
  if (r.method != "GET") return ex->reply(method_not_allowed("GET"));
  if (node_.auth_enabled()) {
    return check_root(r, node_.auth_state(), [this, ex](bool allowed) {
      if (!allowed) return ex->reply(insufficient_credentials());
      serve_backup(ex);
    });
  }
  serve_backup(ex);
}

void ClientApi::serve_backup(const ExchangePtr& ex) {
  const uint64_t cid = cluster_id_;
  node_.backup([ex, cid](Result<Node::Backup> got) {
    if (!got.is_ok()) return ex->reply(message_error(500, got.status().message(), cid));
    const Node::Backup& b = got.value();
    offline::BackupContent content;
    content.member_id = b.member_id;
    content.cluster_id = b.cluster_id;
    content.cluster_token = b.cluster_token;
    content.snapshot = std::move(got.value().snapshot);
    content.entries = std::move(got.value().entries);
    content.hard_state = b.hard_state;
    auto data = std::make_shared<const std::string>(offline::encode_stream(content));
    SPDLOG_INFO("backup: sending the raft log up to index {} (snapshot at {}, {} entries after "
                 "it), {} bytes",
                 content.hard_state.commit, content.snapshot.metadata.index,
                 content.entries.size(), data->size());
    HttpResponse head;
    head.content_type = "application/octet-stream";
    head.cluster_id = cid;
    head.raft_index = content.hard_state.commit;
    head.raft_term = content.hard_state.term;
    ex->begin_stream(std::move(head), [] {});
    send_from(ex, data, 0);
  });
}

}  // namespace kvd::server
