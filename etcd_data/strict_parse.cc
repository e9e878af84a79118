#include "etcd_data/strict_parse.h"

#include <google/protobuf/message.h>
#include <google/protobuf/unknown_field_set.h>

#include <climits>
#include <vector>

namespace kvd::etcd_data {

namespace {

namespace gp = google::protobuf;

bool has_unknown_fields(const gp::Message& m) {
  const gp::Reflection* r = m.GetReflection();
  if (!r->GetUnknownFields(m).empty()) return true;
  std::vector<const gp::FieldDescriptor*> fields;
  r->ListFields(m, &fields);
  for (const gp::FieldDescriptor* f : fields) {
    if (f->cpp_type() != gp::FieldDescriptor::CPPTYPE_MESSAGE) continue;
    if (f->is_repeated()) {
      for (int i = 0; i < r->FieldSize(m, f); ++i) {
        if (has_unknown_fields(r->GetRepeatedMessage(m, f, i))) return true;
      }
    } else if (has_unknown_fields(r->GetMessage(m, f))) {
      return true;
    }
  }
  return false;
}

}  // namespace

bool parse_strict(gp::Message* m, std::string_view data) {
  m->Clear();
  if (data.size() > static_cast<size_t>(INT_MAX)) return false;
  if (!m->ParseFromArray(data.data(), static_cast<int>(data.size()))) return false;
  return !has_unknown_fields(*m);
}

}  // namespace kvd::etcd_data
