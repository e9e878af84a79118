// Data directories as etcd keeps them: created 0700 (fileutil.PrivateDirMode), and an existing
// one with looser permissions named in a warning (etcd's CheckDirPermission). Pure file-system
// helpers; any thread.
#pragma once

#include <optional>
#include <string>

#include "common/status.h"

namespace kvd {

// Creates path and every missing parent with mode 0700 (existing ones are left as they are).
Status make_private_dirs(const std::string& path);

// etcd's warning for an existing directory whose mode is not 0700:
// `directory "d" exist, but the permission is "drwxr-xr-x". The recommended permission is
// "-rwx------" to prevent possible unprivileged access to the data.` nullopt when the mode is
// 0700 or the directory does not exist.
std::optional<std::string> loose_permission_warning(const std::string& path);

}  // namespace kvd
