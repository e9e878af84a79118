#include "cli/go_json.h"

#include <algorithm>
#include <cctype>

namespace kvd::cli {

std::string go_json_kind(const nlohmann::json& v) {
  if (v.is_object()) return "object";
  if (v.is_array()) return "array";
  if (v.is_string()) return "string";
  if (v.is_boolean()) return "bool";
  if (v.is_number()) return "number";
  return "null";
}

std::string go_json_type_error(const nlohmann::json& v, const std::string& go_type,
                               const std::string& field) {
  if (field.empty()) {
    return "json: cannot unmarshal " + go_json_kind(v) + " into Go value of type " + go_type;
  }
  return "json: cannot unmarshal " + go_json_kind(v) + " into Go struct field " + field +
         " of type " + go_type;
}

const nlohmann::json* go_json_field(const nlohmann::json& obj, std::string_view name) {
  if (!obj.is_object()) return nullptr;
  if (auto it = obj.find(std::string(name)); it != obj.end()) return &*it;
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    const std::string& k = it.key();
    if (k.size() == name.size() &&
        std::equal(k.begin(), k.end(), name.begin(), [](char a, char b) {
          return std::tolower(static_cast<unsigned char>(a)) ==
                 std::tolower(static_cast<unsigned char>(b));
        })) {
      return &*it;
    }
  }
  return nullptr;
}

}  // namespace kvd::cli
