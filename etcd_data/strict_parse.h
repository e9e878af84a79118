// Parsing etcd's protobuf messages as strictly as etcd's generated (gogo) code, or more.
//
// libprotobuf accepts what gogo refuses: a field whose wire type is not the declared one is kept
// as an unknown field (and so are groups, which gogo rejects), where gogo's Unmarshal fails. etcd
// tells a raw v2 Request from an InternalRaftRequest by whether the latter's Unmarshal fails, so
// a parse that leaves an unknown field anywhere in the message tree counts as a failure here.
//
// Pure functions; any thread.
#pragma once

#include <string_view>

namespace google::protobuf {
class Message;
}

namespace kvd::etcd_data {

// Parses `data` into `m` (cleared first). False when it does not parse, or when any message in
// the result holds an unknown field.
bool parse_strict(google::protobuf::Message* m, std::string_view data);

}  // namespace kvd::etcd_data
