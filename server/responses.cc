#include "server/responses.h"

#include <string>

#include "api_v2/render.h"
#include "common/go.h"

namespace kvd::server {

HttpResponse go_error(int status, std::string_view text) {
  HttpResponse r;
  r.status = status;
  r.content_type = kTextPlain;
  r.nosniff = true;
  r.body.reserve(text.size() + 1);
  r.body.append(text);
  r.body.push_back('\n');
  return r;
}

HttpResponse insufficient_credentials() {
  HttpResponse r;
  r.status = 401;
  r.content_type = kJson;
  r.body = "{\"message\":\"Insufficient credentials\"}";
  return r;
}

HttpResponse not_found() { return go_error(404, "404 page not found"); }

HttpResponse method_not_allowed(std::string_view allow) {
  HttpResponse r = go_error(405, "Method Not Allowed");
  r.allow = allow;
  return r;
}

HttpResponse transport_bad_request() {
  HttpResponse r;
  r.status = 400;
  r.content_type = kTextPlain;
  r.body = "400 Bad Request";
  r.cors = false;
  r.close = true;
  r.unreadable_request = true;
  return r;
}

HttpResponse message_error(int status, std::string_view message, uint64_t cluster_id) {
  HttpResponse r;
  r.status = status;
  r.content_type = kJson;
  r.cluster_id = cluster_id;
  r.body = "{\"message\":";
  go::append_json_string(r.body, message);
  r.body.push_back('}');
  return r;
}

HttpResponse keys_error(const v2::Error& e, uint64_t cluster_id, bool head) {
  HttpResponse r;
  r.status = e.status();
  r.content_type = kJson;
  r.cluster_id = cluster_id;
  r.etcd_index = e.index;
  r.body = e.to_json();
  r.omit_body = head;
  return r;
}

HttpResponse keys_event(const v2::Event& ev, const RaftStatus& st, uint64_t cluster_id,
                        bool write, bool no_value, bool head) {
  HttpResponse r;
  r.status = (ev.action == v2::Action::kCreate || ev.created()) ? 201 : 200;
  r.content_type = kJson;
  r.cluster_id = cluster_id;
  uint64_t index = write ? (ev.etcd_index ? ev.etcd_index : st.etcd_index)
                         : (st.etcd_index ? st.etcd_index : ev.etcd_index);
  r.etcd_index = index;
  r.raft_index = st.raft_index;
  r.raft_term = st.raft_term;
  bool strip = no_value && (ev.action == v2::Action::kSet || ev.action == v2::Action::kCreate ||
                            ev.action == v2::Action::kUpdate ||
                            ev.action == v2::Action::kCompareAndSwap);
  r.body = v2::render_event(ev, strip);
  r.omit_body = head;
  return r;
}

}  // namespace kvd::server
