// /v2/keys: gets, writes and watches (v2-keys-api.md). The request is parsed into a typed
// request (api_v2/keys_request.h; bad input is answered here), handed to the Node, and the
// Node's StoreResult rendered as etcd renders it. A watch answers in pieces through the
// Exchange's stream: headers at once, then each event.
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <variant>

#include "api_v2/keys_request.h"
#include "api_v2/render.h"
#include "server/client_api.h"
#include "server/responses.h"

namespace kvd::server {

void ClientApi::handle_keys(const HttpRequest& r, std::string_view m, std::string_view path,
                            const ExchangePtr& ex) {
  if (m != "GET" && m != "HEAD" && m != "PUT" && m != "POST" && m != "DELETE") {
    ex->reply(method_not_allowed("HEAD,GET,PUT,POST,DELETE"));
    return;
  }
  const uint64_t cid = cluster_id_;
  const bool head = m == "HEAD";
  const auto start = std::chrono::steady_clock::now();
  v2::HttpInput in{m, r.target, r.content_type, r.body, r.body_error};
  if (!in.target.empty() && in.target[0] != '/') {
    // Absolute form: hand the parser the origin-form part.
    size_t slash = in.target.find('/', in.target.find("://") + 3);
    in.target = slash == std::string_view::npos ? std::string_view("/v2/keys") : in.target.substr(slash);
  }
  v2::KeysRequest parsed = v2::parse_keys_request(in);
  if (auto* e = std::get_if<v2::Error>(&parsed)) {
    ex->reply(keys_error(*e, cid, head));
    return;
  }
  KeysMetrics::Method method = KeysMetrics::Method::kGet;
  if (head) method = KeysMetrics::Method::kHead;
  else if (m == "PUT") method = KeysMetrics::Method::kPut;
  else if (m == "POST") method = KeysMetrics::Method::kPost;
  else if (m == "DELETE") method = KeysMetrics::Method::kDelete;
  else if (auto* g = std::get_if<v2::GetRequest>(&parsed); g && g->quorum)
    method = KeysMetrics::Method::kQget;
  const Timing timing{method, start};
  if (!node_.auth_enabled()) return serve_keys(std::move(parsed), head, timing, ex);
  // etcd checks the key as the request's path names it (after /v2/keys, before cleaning), and a
  // subtree for recursive requests.
  bool recursive = false;
  if (auto* g = std::get_if<v2::GetRequest>(&parsed)) recursive = g->recursive;
  if (auto* w = std::get_if<v2::WatchRequest>(&parsed)) recursive = w->recursive;
  if (auto* w = std::get_if<v2::WriteRequest>(&parsed)) recursive = w->cmd.recursive;
  auto pending = std::make_shared<v2::KeysRequest>(std::move(parsed));
  check_key(r, node_.auth_state(), path.substr(std::string_view("/v2/keys").size()), recursive,
            [this, pending, head, timing, ex, cid](bool allowed) {
              if (!allowed) {
                return ex->reply(keys_error(
                    v2::Error{v2::ErrorCode::kUnauthorized, "Insufficient credentials", 0}, cid, head));
              }
              serve_keys(std::move(*pending), head, timing, ex);
            });
}

// Called by watch callbacks, which the member runs on its strand; the mutex (never contended
// then) keeps that from being a condition of correctness.
class ClientApi::WatchEventJson {
 public:
  Exchange::SharedBytes get(const std::shared_ptr<const v2::Event>& ev) {
    std::lock_guard lock(mu_);
    if (ev != event_) {
      event_ = ev;
      json_ = std::make_shared<const std::string>(v2::render_event(*ev));
    }
    return json_;
  }

 private:
  std::mutex mu_;
  // Held, so that no other event can have its address while its JSON is here.
  std::shared_ptr<const v2::Event> event_;
  Exchange::SharedBytes json_;
};

std::shared_ptr<ClientApi::WatchEventJson> ClientApi::make_watch_event_json() {
  return std::make_shared<WatchEventJson>();
}

namespace {

// A watch's event: one more chunk of a stream, or a long poll's whole answer.
void send_watch_event(Exchange& ex, const v2::Event& ev, bool stream) {
  if (stream) ex.send_chunk(v2::render_event(ev));
  else ex.send_last_chunk(v2::render_event(ev));
}

}  // namespace

void ClientApi::serve_keys(v2::KeysRequest parsed, bool head, Timing timing,
                           const ExchangePtr& ex) {
  const uint64_t cid = cluster_id_;
  KeysMetrics* counts = &keys_metrics_;
  if (auto* g = std::get_if<v2::GetRequest>(&parsed)) {
    counts->received(timing.method);
    node_.get(std::move(*g), [ex, cid, head, counts, timing](StoreResult res, RaftStatus st) {
      if (auto* ev = std::get_if<v2::Event>(&res)) {
        ex->reply(keys_event(*ev, st, cid, false, false, head));
        counts->succeeded(timing.method, timing.start);
      } else {
        const auto& e = std::get<v2::Error>(res);
        counts->failed(timing.method, e.status());
        ex->reply(keys_error(e, cid, head));
      }
    });
    return;
  }
  if (auto* w = std::get_if<v2::WriteRequest>(&parsed)) {
    counts->received(timing.method);
    bool no_value = w->no_value_on_success;
    node_.propose(std::move(*w), [ex, cid, no_value, counts, timing](StoreResult res, RaftStatus st) {
      if (auto* ev = std::get_if<v2::Event>(&res)) {
        ex->reply(keys_event(*ev, st, cid, true, no_value, false));
        counts->succeeded(timing.method, timing.start);
      } else {
        const auto& e = std::get<v2::Error>(res);
        counts->failed(timing.method, e.status());
        ex->reply(keys_error(e, cid, false));
      }
    });
    return;
  }
  auto& watch = std::get<v2::WatchRequest>(parsed);
  const bool stream = watch.stream;
  Node* node = &node_;
  node_.watch(
      std::move(watch),
      [ex, stream, json = watch_json_](const std::shared_ptr<const v2::Event>& ev) {
        // The event's other watchers get the same bytes: rendered once, never copied.
        if (stream) ex->send_chunk(json->get(ev));
        else ex->send_last_chunk(json->get(ev));
      },
      [ex, cid, stream, node, counts, timing](v2::WatchResult wr, RaftStatus st) {
        if (wr.error) {
          counts->failed(timing.method, wr.error->status());
          ex->reply(keys_error(*wr.error, cid, false));
          return;
        }
        HttpResponse h;
        h.content_type = kJson;
        h.cluster_id = cid;
        h.etcd_index = wr.etcd_index;
        h.raft_index = st.raft_index;
        h.raft_term = st.raft_term;
        if (wr.event) {
          // Found in history: no watcher was registered. A stream stays open with nothing
          // more to say, as etcd's does, until the client leaves.
          ex->begin_stream(std::move(h), nullptr);
          send_watch_event(*ex, *wr.event, stream);
          return;
        }
        v2::WatcherId id = wr.id;
        ex->begin_stream(std::move(h), [node, id] { node->unwatch(id); });
      });
}

}  // namespace kvd::server
