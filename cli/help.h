// Help screens of kvctl (identical to etcdctl's v2 help output).
#pragma once

#include <optional>
#include <string_view>

namespace kvd::cli {

// Returns the help screen for `topic`: "app", "<group>_app" (group: member, user, role,
// auth), "<group>_app_help", a command name ("set", "help"), or "<group>_<sub>"
// ("member_list", "user_add", "user_help"). nullopt if there is none.
std::optional<std::string_view> help_text(std::string_view topic);

}  // namespace kvd::cli
