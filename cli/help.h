// Help screens of kvctl (identical to etcdctl's v2 help output).
#pragma once

#include <optional>
#include <string_view>

namespace kvd::cli {

// Returns the help screen for `topic`: "app", "member_app", a command name ("set", "help"),
// or "member_<sub>" ("member_list"). nullopt if there is none.
std::optional<std::string_view> help_text(std::string_view topic);

}  // namespace kvd::cli
