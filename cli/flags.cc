#include "cli/flags.h"
#include "common/go.h"


namespace kvd::cli {
namespace {

const FlagSpec* find_spec(const std::vector<FlagSpec>& specs, const std::string& name) {
  for (const auto& s : specs) {
    for (const auto& n : s.names) {
      if (n == name) return &s;
    }
  }
  return nullptr;
}

}  // namespace

bool ParsedFlags::get_bool(const std::string& name) const {
  auto it = values.find(name);
  return it != values.end() && go::parse_bool(it->second).value_or(false);
}

std::string ParsedFlags::get_string(const std::string& name) const {
  auto it = values.find(name);
  return it == values.end() ? "" : it->second;
}

std::int64_t ParsedFlags::get_int(const std::string& name) const {
  auto it = values.find(name);
  return it == values.end() ? 0 : go::parse_int(it->second).value_or(0);
}

std::chrono::nanoseconds ParsedFlags::get_duration(const std::string& name) const {
  auto it = values.find(name);
  if (it == values.end()) return std::chrono::nanoseconds(0);
  return go::parse_duration(it->second).value_or(std::chrono::nanoseconds(0));
}

std::vector<std::string> ParsedFlags::get_list(const std::string& name) const {
  auto it = lists.find(name);
  return it == lists.end() ? std::vector<std::string>{} : it->second;
}

std::optional<std::string> parse_go_flags(const std::vector<FlagSpec>& specs,
                                          const std::vector<std::string>& argv, ParsedFlags* out) {
  for (const auto& s : specs) out->values[s.names[0]] = s.default_value;
  std::size_t i = 0;
  while (i < argv.size()) {
    const std::string& s = argv[i];
    if (s.size() < 2 || s[0] != '-') break;
    std::size_t minuses = 1;
    if (s[1] == '-') {
      minuses = 2;
      if (s.size() == 2) {
        ++i;  // "--" ends the flags and is consumed
        break;
      }
    }
    std::string name = s.substr(minuses);
    if (name.empty() || name[0] == '-' || name[0] == '=') return "bad flag syntax: " + s;
    ++i;
    bool has_value = false;
    std::string value;
    if (auto eq = name.find('=', 1); eq != std::string::npos) {
      value = name.substr(eq + 1);
      has_value = true;
      name.resize(eq);
    }
    const FlagSpec* spec = find_spec(specs, name);
    if (spec == nullptr) return "flag provided but not defined: -" + name;
    if (spec->type == FlagSpec::Type::kBool) {
      if (has_value) {
        if (!go::parse_bool(value)) {
          return "invalid boolean value " + go::quote(value) + " for -" + name + ": parse error";
        }
      } else {
        value = "true";
      }
    } else {
      if (!has_value && i < argv.size()) {
        value = argv[i++];
        has_value = true;
      }
      if (!has_value) return "flag needs an argument: -" + name;
      if (spec->type == FlagSpec::Type::kInt && !go::parse_int(value)) {
        // strconv reports overflow separately from syntax errors.
        bool digits = !value.empty();
        for (std::size_t k = (value[0] == '-' || value[0] == '+') ? 1 : 0; k < value.size(); ++k) {
          if (value[k] < '0' || value[k] > '9') digits = false;
        }
        return "invalid value " + go::quote(value) + " for flag -" + name + ": " +
               (digits && value.size() > 1 ? "value out of range" : "parse error");
      }
      if (spec->type == FlagSpec::Type::kDuration && !go::parse_duration(value)) {
        return "invalid value " + go::quote(value) + " for flag -" + name + ": parse error";
      }
    }
    if (spec->type == FlagSpec::Type::kStringSlice) out->lists[spec->names[0]].push_back(value);
    out->values[spec->names[0]] = value;
  }
  out->args.assign(argv.begin() + static_cast<std::ptrdiff_t>(i), argv.end());
  return std::nullopt;
}

std::vector<std::string> reorder_args(const std::vector<FlagSpec>& specs,
                                      const std::vector<std::string>& argv) {
  auto is_flag = [&](std::string a) {
    if (a == "-" || a == "--" || a.empty() || a[0] != '-') return false;
    // urfave strips up to two '-' from a "--" prefix, then one more from a "-" prefix.
    if (a.rfind("--", 0) == 0) {
      for (int k = 0; k < 2; ++k) a.erase(a.find('-'), 1);
    }
    if (a.rfind('-', 0) == 0) a.erase(0, 1);
    a = a.substr(0, a.find('='));
    return find_spec(specs, a) != nullptr;
  };
  std::vector<std::string> flags;
  std::vector<std::string> rest;
  bool next_may_be_value = false;
  for (std::size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (next_may_be_value && !is_flag(a)) {
      // Taken as the previous flag's value even if it starts with '-' (or is "--").
      next_may_be_value = false;
      flags.push_back(a);
    } else if (a == "--") {
      // Nothing after "--" moves, and the "--" itself goes in front of the other arguments.
      rest.insert(rest.begin(), "--");
      rest.insert(rest.end(), argv.begin() + static_cast<std::ptrdiff_t>(i) + 1, argv.end());
      break;
    } else if (is_flag(a)) {
      flags.push_back(a);
      next_may_be_value = a.find('=') == std::string::npos;
    } else {
      rest.push_back(a);
    }
  }
  flags.insert(flags.end(), rest.begin(), rest.end());
  return flags;
}

}  // namespace kvd::cli
