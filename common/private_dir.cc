// Private data directories (private_dir.h).
#include "common/private_dir.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>

namespace kvd {

namespace {

constexpr mode_t kPrivateDirMode = 0700;

// Go's FileMode.String() for a directory or a plain file's permission bits.
std::string go_mode_string(bool dir, mode_t mode) {
  std::string out(1, dir ? 'd' : '-');
  const char* rwx = "rwxrwxrwx";
  for (int i = 0; i < 9; ++i) out += (mode & (0400 >> i)) ? rwx[i] : '-';
  return out;
}

}  // namespace

Status make_private_dirs(const std::string& path) {
  if (path.empty()) return Status::error("no directory given");
  std::string cur;
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t slash = path.find('/', pos);
    if (slash == std::string::npos) slash = path.size();
    cur = path.substr(0, slash);
    pos = slash + 1;
    if (cur.empty() || cur == "." || cur == "..") continue;
    if (::mkdir(cur.c_str(), kPrivateDirMode) != 0 && errno != EEXIST) {
      return Status::error("mkdir " + cur + ": " + std::strerror(errno));
    }
  }
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) return Status::error("stat " + path + ": " + std::strerror(errno));
  if (!S_ISDIR(st.st_mode)) return Status::error(path + " is not a directory");
  return Status::ok();
}

std::optional<std::string> loose_permission_warning(const std::string& path) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return std::nullopt;
  const mode_t perm = st.st_mode & 0777;
  if (perm == kPrivateDirMode) return std::nullopt;
  return "directory \"" + path + "\" exist, but the permission is \"" +
         go_mode_string(true, perm) + "\". The recommended permission is \"" +
         go_mode_string(false, kPrivateDirMode) +
         "\" to prevent possible unprivileged access to the data.";
}

}  // namespace kvd
