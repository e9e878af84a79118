// Command-line parsing with the exact semantics etcdctl gets from Go's `flag` package and
// urfave/cli v1: flags stop at the first positional argument, "--" ends flags, `-x=v` and
// `--x v` forms, bool flags never consume the next argument, and urfave's reordering of
// command flags that appear after positional arguments.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace kvd::cli {

struct FlagSpec {
  // kStringSlice: urfave's StringSliceFlag, one value per occurrence (no splitting at commas).
  enum class Type { kBool, kString, kInt, kDuration, kStringSlice };
  std::vector<std::string> names;  // names[0] is the canonical name, e.g. {"recursive", "r"}
  Type type;
  std::string default_value;
};

class ParsedFlags {
 public:
  bool get_bool(const std::string& name) const;
  std::string get_string(const std::string& name) const;
  std::int64_t get_int(const std::string& name) const;
  std::chrono::nanoseconds get_duration(const std::string& name) const;
  // The values of a kStringSlice flag, in order.
  std::vector<std::string> get_list(const std::string& name) const;

  std::map<std::string, std::string> values;  // canonical name -> raw value (defaults filled)
  std::map<std::string, std::vector<std::string>> lists;  // kStringSlice flags given
  std::vector<std::string> args;              // positional arguments left after the flags
};

// Go flag.FlagSet.Parse. On error returns Go's message, e.g.
// `flag provided but not defined: -bogus`, `invalid value "5" for flag -timeout: parse error`.
std::optional<std::string> parse_go_flags(const std::vector<FlagSpec>& specs,
                                          const std::vector<std::string>& argv, ParsedFlags* out);

// urfave/cli v1.22 reorderArgs: moves the command's own flags (and the argument after each,
// unless that is itself one of the flags) in front of the other arguments. A "--" moves to the
// front of the remaining arguments and nothing after it is reordered, so
// `exec-watch /k -- cmd` parses as the arguments [/k cmd].
std::vector<std::string> reorder_args(const std::vector<FlagSpec>& specs,
                                      const std::vector<std::string>& argv);

}  // namespace kvd::cli
