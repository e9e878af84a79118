// The process's log, as etcd 3.4 configures its own: --logger capnslog (one text line per event,
// "2026-12-03 14:17:51.963815 I | message") or zap (one JSON object per line with etcd's field
// names: level, ts, caller, msg), written to each of --log-outputs (default/stderr, stdout, or
// file paths, appended), at --log-level; the level can change at run time
// (PUT /config/local/log, etcd's v2 endpoint).
//
// Threads: setup_logging at start, before other threads log; set_level_name from any thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace kvd::server {

struct LogConfig {
  std::string logger = "capnslog";  // or "zap"
  std::vector<std::string> outputs = {"default"};
  std::string level = "info";  // debug, info, warn, error, panic, fatal
};

// Installs the sinks and the format; an unknown logger or level, or an output that cannot be
// opened, fails with etcd's message ("unknown logger option \"x\"", "open sink \"p\": ...").
Status setup_logging(const LogConfig& config);

// capnslog's level names (CRITICAL ERROR WARNING NOTICE INFO DEBUG TRACE, any case) as used by
// PUT /config/local/log: sets the level and returns its canonical name, or nullopt when the name
// is not a level.
std::optional<std::string> set_level_name(std::string_view name);

}  // namespace kvd::server
