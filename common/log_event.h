// Structured log events: a message with named fields, as etcd's zap logger writes them
// ({"level":..,"msg":"slow fdatasync","took":"1.2s","expected-duration":"1s"}), and the
// rate limit for events that repeat.
//
//   KVD_LOG_EVENT(WARN, "slow fdatasync", logev::dur("took", took), logev::dur("expected-duration", 1s));
//
// The event travels through spdlog as one payload (encode()); the process's formatters
// (server/logging.cc) take it apart: zap writes the fields as JSON members after "msg", capnslog
// writes `msg (took="1.2s", expected-duration="1s")`. A payload that is not an encoded event is
// written as it is. Pure functions; Repeats is safe from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <mutex>
#include <string>
#include <string_view>
#include <type_traits>

namespace kvd::logev {

// One field: its key and its value as JSON. A field without a key is left out.
struct Field {
  std::string key;
  std::string json;
};

Field str(std::string key, std::string_view value);
Field dur(std::string key, std::chrono::nanoseconds d);  // Go's Duration.String(), as zap's
Field id(std::string key, uint64_t member_id);           // a member id in hex, as etcd's
Field num_double(std::string key, double value);
template <typename N>
  requires std::is_arithmetic_v<N>
Field num(std::string key, N value) {
  if constexpr (std::is_same_v<N, bool>) return {std::move(key), value ? "true" : "false"};
  else if constexpr (std::is_integral_v<N>) return {std::move(key), std::to_string(value)};
  else return num_double(std::move(key), static_cast<double>(value));
}

// A count that only matters when there is one (suppressed repeats, dropped messages): no field
// at all when it is 0.
Field count(std::string key, uint64_t n);

// The payload of an event: "\x1e" msg "\x1f" fields-as-JSON-members. Field values are JSON, so
// they never hold the raw separators.
std::string encode(std::string_view msg, std::initializer_list<Field> fields);

struct Decoded {
  std::string_view msg;
  std::string_view fields;  // `"k":v,"k2":v2`; empty when none
};
// Whether encode() made this payload.
bool is_event(std::string_view payload);
// A payload's message and fields; a payload that encode() did not make is all message.
Decoded decode(std::string_view payload);
// capnslog's rendering: `msg (k=v, k2=v2)` with the JSON values; just msg without fields.
std::string text(std::string_view payload);

// One kind of event that may repeat (a timeout per request, a failing health check per probe):
// allow() says whether to log this occurrence: the first one, then at most one per interval.
// The one that is logged learns how many were held back since the previous line, for a
// "suppressed" field, so that the log still says how often it happened.
class Repeats {
 public:
  explicit Repeats(std::chrono::steady_clock::duration interval) : interval_(interval) {}
  // n occurrences at once (say, requests that timed out together): the line that is logged
  // reports its own n, and *suppressed counts the occurrences held back before it.
  bool allow(uint64_t* suppressed, uint64_t n = 1);

 private:
  const std::chrono::steady_clock::duration interval_;
  std::mutex mu_;
  bool logged_ = false;
  std::chrono::steady_clock::time_point last_;
  uint64_t held_ = 0;
};

}  // namespace kvd::logev

// Logs msg with fields at LEVEL (TRACE, DEBUG, INFO, WARN, ERROR, CRITICAL) through spdlog's
// macros, so that the caller's file and line are the event's "caller". Needs <spdlog/spdlog.h>.
#define KVD_LOG_EVENT(LEVEL, msg, ...) \
  SPDLOG_##LEVEL("{}", ::kvd::logev::encode((msg), {__VA_ARGS__}))
