// What kvctl needs of Go's encoding/json, beyond go::json_syntax_error (common/go.h), to report
// the same errors etcdctl reports: the texts of json.Unmarshal's type errors and its
// case-insensitive matching of object keys to struct fields. Pure functions; any thread.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace kvd::cli {

// The kind encoding/json names a JSON value by in its UnmarshalTypeError: "object", "array",
// "string", "number", "bool" ("null" never fails).
std::string go_json_kind(const nlohmann::json& v);

// UnmarshalTypeError.Error(): `go_type` is the Go type printed by the error, `field` the
// struct and field path ("User.roles"), empty for a top-level value.
std::string go_json_type_error(const nlohmann::json& v, const std::string& go_type,
                               const std::string& field = "");

// The member of `obj` that encoding/json decodes into a struct field named `name`: an exact
// key match, else the first case-insensitive one; nullptr if none (or obj is not an object).
const nlohmann::json* go_json_field(const nlohmann::json& obj, std::string_view name);

}  // namespace kvd::cli
