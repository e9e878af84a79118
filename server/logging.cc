// setup_logging and the zap-style JSON formatter (logging.h).
#include "server/logging.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/dist_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <filesystem>
#include <memory>

#include "common/go.h"
#include "common/log_event.h"

namespace kvd::server {

namespace {

std::string_view zap_level(spdlog::level::level_enum l) {
  switch (l) {
    case spdlog::level::trace:
    case spdlog::level::debug:
      return "debug";
    case spdlog::level::info:
      return "info";
    case spdlog::level::warn:
      return "warn";
    case spdlog::level::err:
      return "error";
    case spdlog::level::critical:
      return "fatal";
    default:
      return "info";
  }
}

// zap's production JSON encoder as etcd 3.4 configures it: {"level":..,"ts":ISO8601 in UTC with
// milliseconds,"caller":"dir/file.cc:line","msg":..}. The caller is there when the call site
// passed its location (the SPDLOG_* macros); the message is JSON-escaped.
class ZapFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    std::string out = "{\"level\":\"";
    out += zap_level(msg.level);
    out += "\",\"ts\":\"";
    const auto since = msg.time.time_since_epoch();
    const auto secs = std::chrono::duration_cast<std::chrono::seconds>(since);
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(since - secs).count();
    const std::time_t t = secs.count();
    std::tm tm{};
    ::gmtime_r(&t, &tm);
    char buf[40];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<int>(ms));
    out += buf;
    out += '"';
    if (!msg.source.empty()) {
      // zap's short caller: the file's directory and name.
      std::string_view file = msg.source.filename;
      size_t cut = file.rfind('/');
      if (cut != std::string_view::npos && cut > 0) {
        size_t dir = file.rfind('/', cut - 1);
        file = file.substr(dir == std::string_view::npos ? 0 : dir + 1);
      }
      out += ",\"caller\":";
      go::append_json_string(out, std::string(file) + ":" + std::to_string(msg.source.line));
    }
    const logev::Decoded event = logev::decode(std::string_view(msg.payload.data(), msg.payload.size()));
    out += ",\"msg\":";
    go::append_json_string(out, event.msg);
    if (!event.fields.empty()) {
      out += ',';
      out += event.fields;
    }
    out += "}\n";
    dest.append(out.data(), out.data() + out.size());
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<ZapFormatter>();
  }
};

// capnslog's message: the text as it is, or an event's message with its fields after it
// (logev::text).
class EventText final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    const std::string_view payload(msg.payload.data(), msg.payload.size());
    if (!logev::is_event(payload)) {
      dest.append(payload.data(), payload.data() + payload.size());
      return;
    }
    const std::string t = logev::text(payload);
    dest.append(t.data(), t.data() + t.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<EventText>();
  }
};

std::optional<spdlog::level::level_enum> level_of(std::string_view name) {
  if (name == "debug") return spdlog::level::debug;
  if (name == "info") return spdlog::level::info;
  if (name == "warn") return spdlog::level::warn;
  if (name == "error") return spdlog::level::err;
  if (name == "panic" || name == "fatal" || name == "dpanic") return spdlog::level::critical;
  return std::nullopt;
}

}  // namespace

Status setup_logging(const LogConfig& config) {
  if (config.logger != "capnslog" && config.logger != "zap") {
    return Status::error("unknown logger option \"" + config.logger + "\"");
  }
  auto level = level_of(config.level);
  if (!level) return Status::error("unknown level \"" + config.level + "\"");
  std::vector<spdlog::sink_ptr> sinks;
  for (const std::string& out : config.outputs) {
    if (out == "default" || out == "stderr") {
      sinks.push_back(std::make_shared<spdlog::sinks::stderr_sink_mt>());
    } else if (out == "stdout") {
      sinks.push_back(std::make_shared<spdlog::sinks::stdout_sink_mt>());
    } else {
      // spdlog would create missing directories; etcd (Go's os.OpenFile) does not.
      const std::filesystem::path parent = std::filesystem::path(out).parent_path();
      std::error_code ec;
      if (!parent.empty() && !std::filesystem::is_directory(parent, ec)) {
        return Status::error("open sink \"" + out + "\": open " + out +
                             ": no such file or directory");
      }
      try {
        sinks.push_back(std::make_shared<spdlog::sinks::basic_file_sink_mt>(out, false));
      } catch (const spdlog::spdlog_ex& e) {
        return Status::error("open sink \"" + out + "\": " + e.what());
      }
    }
  }
  if (sinks.empty()) sinks.push_back(std::make_shared<spdlog::sinks::stderr_sink_mt>());
  auto logger = std::make_shared<spdlog::logger>("", sinks.begin(), sinks.end());
  if (config.logger == "zap") {
    logger->set_formatter(std::make_unique<ZapFormatter>());
  } else {
    auto formatter = std::make_unique<spdlog::pattern_formatter>();
    formatter->add_flag<EventText>('*').set_pattern("%Y-%m-%d %H:%M:%S.%f %L | %*");
    logger->set_formatter(std::move(formatter));
  }
  logger->set_level(*level);
  // Each line is written out at once (as Go's unbuffered files): a log file is complete up to
  // the last event, even after a crash.
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(logger);
  return Status::ok();
}

std::optional<std::string> set_level_name(std::string_view name) {
  std::string upper(name);
  std::transform(upper.begin(), upper.end(), upper.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  // capnslog's names and one-letter forms; NOTICE is kvd's info.
  static const struct {
    const char* name;
    char letter;
    spdlog::level::level_enum level;
  } kLevels[] = {{"CRITICAL", 'C', spdlog::level::critical}, {"ERROR", 'E', spdlog::level::err},
                 {"WARNING", 'W', spdlog::level::warn},      {"NOTICE", 'N', spdlog::level::info},
                 {"INFO", 'I', spdlog::level::info},         {"DEBUG", 'D', spdlog::level::debug},
                 {"TRACE", 'T', spdlog::level::trace}};
  for (const auto& l : kLevels) {
    if (upper == l.name || (upper.size() == 1 && upper[0] == l.letter)) {
      spdlog::set_level(l.level);
      return std::string(l.name);
    }
  }
  return std::nullopt;
}

}  // namespace kvd::server
