#include "common/go.h"

#include <array>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <limits>
#include <utility>
#include <vector>

namespace kvd::go {
namespace {

constexpr char kHex[] = "0123456789abcdef";
constexpr char kHexUpper[] = "0123456789ABCDEF";

bool is_digit(char c) { return c >= '0' && c <= '9'; }
char lower(char c) { return static_cast<char>(c | 0x20); }

// Go's unicode.IsPrint for runes U+0080..U+07FF (Unicode 13, as in Go 1.19): the ranges below
// are the separators, controls, format characters and unassigned code points of that block.
bool is_print_below_0800(int32_t r) {
  static constexpr std::array<std::pair<int32_t, int32_t>, 20> kNotPrint = {{
      {0x0080, 0x00A0}, {0x00AD, 0x00AD}, {0x0378, 0x0379}, {0x0380, 0x0383}, {0x038B, 0x038B},
      {0x038D, 0x038D}, {0x03A2, 0x03A2}, {0x0530, 0x0530}, {0x0557, 0x0558}, {0x058B, 0x058C},
      {0x0590, 0x0590}, {0x05C8, 0x05CF}, {0x05EB, 0x05EE}, {0x05F5, 0x0605}, {0x061C, 0x061D},
      {0x06DD, 0x06DD}, {0x070E, 0x070F}, {0x074B, 0x074C}, {0x07B2, 0x07BF}, {0x07FB, 0x07FC},
  }};
  for (const auto& [lo, hi] : kNotPrint) {
    if (r >= lo && r <= hi) return false;
  }
  return true;
}

// Length of the valid UTF-8 sequence at s[i], or 0 if the bytes there are not one. Faster than
// decode_rune for the JSON escaper, which only needs to know where a valid rune ends.
size_t utf8_sequence_length(std::string_view s, size_t i) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  size_t left = s.size() - i;
  auto cont = [&](size_t k) { return (b(k) & 0xc0) == 0x80; };
  if (c >= 0xc2 && c <= 0xdf) {
    return left >= 2 && cont(i + 1) ? 2 : 0;
  }
  if (c >= 0xe0 && c <= 0xef) {
    if (left < 3) return 0;
    unsigned char c1 = b(i + 1);
    if (c == 0xe0 && c1 < 0xa0) return 0;  // overlong
    if (c == 0xed && c1 > 0x9f) return 0;  // surrogate
    return cont(i + 1) && cont(i + 2) ? 3 : 0;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    if (left < 4) return 0;
    unsigned char c1 = b(i + 1);
    if (c == 0xf0 && c1 < 0x90) return 0;  // overlong
    if (c == 0xf4 && c1 > 0x8f) return 0;  // above U+10FFFF
    return cont(i + 1) && cont(i + 2) && cont(i + 3) ? 4 : 0;
  }
  return 0;
}

// strconv's underscoreOK: underscores only between digits (a base prefix counts as a digit).
bool underscores_ok(std::string_view s) {
  char saw = '^';
  size_t i = 0;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) s.remove_prefix(1);
  bool hex = false;
  if (s.size() >= 2 && s[0] == '0' &&
      (lower(s[1]) == 'b' || lower(s[1]) == 'o' || lower(s[1]) == 'x')) {
    i = 2;
    saw = '0';
    hex = lower(s[1]) == 'x';
  }
  for (; i < s.size(); ++i) {
    if (is_digit(s[i]) || (hex && lower(s[i]) >= 'a' && lower(s[i]) <= 'f')) {
      saw = '0';
      continue;
    }
    if (s[i] == '_') {
      if (saw != '0') return false;
      saw = '_';
      continue;
    }
    if (saw == '_') return false;
    saw = '!';
  }
  return saw != '_';
}

}  // namespace

int32_t decode_rune(std::string_view s, size_t i, size_t* width) {
  auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char b0 = byte(i);
  *width = 1;
  if (b0 < 0x80) return b0;
  auto cont = [&](size_t k, unsigned char lo = 0x80, unsigned char hi = 0xBF) {
    return k < s.size() && byte(k) >= lo && byte(k) <= hi;
  };
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    if (!cont(i + 1)) return -1;
    *width = 2;
    return ((b0 & 0x1F) << 6) | (byte(i + 1) & 0x3F);
  }
  if (b0 >= 0xE0 && b0 <= 0xEF) {
    unsigned char lo = b0 == 0xE0 ? 0xA0 : 0x80;
    unsigned char hi = b0 == 0xED ? 0x9F : 0xBF;
    if (!cont(i + 1, lo, hi) || !cont(i + 2)) return -1;
    *width = 3;
    return ((b0 & 0x0F) << 12) | ((byte(i + 1) & 0x3F) << 6) | (byte(i + 2) & 0x3F);
  }
  if (b0 >= 0xF0 && b0 <= 0xF4) {
    unsigned char lo = b0 == 0xF0 ? 0x90 : 0x80;
    unsigned char hi = b0 == 0xF4 ? 0x8F : 0xBF;
    if (!cont(i + 1, lo, hi) || !cont(i + 2) || !cont(i + 3)) return -1;
    *width = 4;
    return ((b0 & 0x07) << 18) | ((byte(i + 1) & 0x3F) << 12) | ((byte(i + 2) & 0x3F) << 6) |
           (byte(i + 3) & 0x3F);
  }
  return -1;
}

std::string quote(std::string_view s) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size();) {
    size_t width = 1;
    int32_t r = decode_rune(s, i, &width);
    if (r < 0) {
      auto b = static_cast<unsigned char>(s[i]);
      out += "\\x";
      out += kHex[b >> 4];
      out += kHex[b & 0xF];
    } else if (r == '"' || r == '\\') {
      out += '\\';
      out += static_cast<char>(r);
    } else if (r >= 0x20 && r < 0x7F) {
      out += static_cast<char>(r);
    } else if (r < 0x80) {
      switch (r) {
        case '\a': out += "\\a"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\v': out += "\\v"; break;
        default:
          out += "\\x";
          out += kHex[r >> 4];
          out += kHex[r & 0xF];
      }
    } else if (r >= 0x800 || is_print_below_0800(r)) {
      out.append(s.substr(i, width));
    } else {
      out += "\\u0";
      out += kHex[(r >> 8) & 0xF];
      out += kHex[(r >> 4) & 0xF];
      out += kHex[r & 0xF];
    }
    i += width;
  }
  out += '"';
  return out;
}

void append_json_string(std::string& out, std::string_view s) {
  out.push_back('"');
  size_t run = 0;  // start of the pending run of bytes copied verbatim
  size_t i = 0;
  auto flush = [&](size_t end) {
    if (end > run) out.append(s.data() + run, end - run);
  };
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      if (c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&') {
        ++i;
        continue;
      }
      flush(i);
      switch (c) {
        case '"': out.append("\\\""); break;
        case '\\': out.append("\\\\"); break;
        case '\n': out.append("\\n"); break;
        case '\r': out.append("\\r"); break;
        case '\t': out.append("\\t"); break;
        default:
          out.append("\\u00");
          out.push_back(kHex[c >> 4]);
          out.push_back(kHex[c & 0xf]);
      }
      run = ++i;
      continue;
    }
    size_t len = utf8_sequence_length(s, i);
    if (len == 0) {
      flush(i);
      out.append("\\ufffd");
      run = ++i;
      continue;
    }
    // U+2028 and U+2029 (E2 80 A8/A9) break JavaScript parsers; Go escapes them.
    if (len == 3 && c == 0xe2 && static_cast<unsigned char>(s[i + 1]) == 0x80 &&
        (static_cast<unsigned char>(s[i + 2]) & 0xfe) == 0xa8) {
      flush(i);
      out.append(static_cast<unsigned char>(s[i + 2]) == 0xa8 ? "\\u2028" : "\\u2029");
      i += 3;
      run = i;
      continue;
    }
    i += len;
  }
  flush(i);
  out.push_back('"');
}

std::string json_quote(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  append_json_string(out, s);
  return out;
}

std::string format_float(double v) {
  if (v == 0) return "0";
  char buf[64];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  std::string out(buf);
  if (out.find('e') != std::string::npos) {
    std::snprintf(buf, sizeof buf, "%.17f", v);
    out = buf;
    while (!out.empty() && out.back() == '0') out.pop_back();
    if (!out.empty() && out.back() == '.') out.pop_back();
  }
  return out;
}

std::optional<bool> parse_bool(std::string_view s) {
  if (s == "1" || s == "t" || s == "T" || s == "TRUE" || s == "true" || s == "True") return true;
  if (s == "0" || s == "f" || s == "F" || s == "FALSE" || s == "false" || s == "False") {
    return false;
  }
  return std::nullopt;
}

std::optional<uint64_t> parse_uint(std::string_view s) {
  const std::string_view whole = s;
  if (s.empty()) return std::nullopt;
  unsigned base = 10;
  if (s[0] == '0') {
    if (s.size() >= 3 && (lower(s[1]) == 'b' || lower(s[1]) == 'o' || lower(s[1]) == 'x')) {
      base = lower(s[1]) == 'b' ? 2 : lower(s[1]) == 'o' ? 8 : 16;
      s.remove_prefix(2);
    } else {
      base = 8;
      s.remove_prefix(1);
    }
  }
  bool underscores = false;
  unsigned __int128 v = 0;
  for (char c : s) {
    if (c == '_') {
      underscores = true;
      continue;
    }
    unsigned d;
    if (is_digit(c)) {
      d = static_cast<unsigned>(c - '0');
    } else if (lower(c) >= 'a' && lower(c) <= 'z') {
      d = static_cast<unsigned>(lower(c) - 'a' + 10);
    } else {
      return std::nullopt;
    }
    if (d >= base) return std::nullopt;
    v = v * base + d;
    if (v > std::numeric_limits<uint64_t>::max()) return std::nullopt;
  }
  if (underscores && !underscores_ok(whole)) return std::nullopt;
  return static_cast<uint64_t>(v);
}

std::optional<int64_t> parse_int(std::string_view s) {
  bool neg = false;
  std::string_view digits = s;
  if (!digits.empty() && (digits[0] == '-' || digits[0] == '+')) {
    neg = digits[0] == '-';
    digits.remove_prefix(1);
  }
  auto u = parse_uint(digits);
  if (!u) return std::nullopt;
  constexpr uint64_t kCutoff = uint64_t{1} << 63;
  if (!neg && *u >= kCutoff) return std::nullopt;
  if (neg && *u > kCutoff) return std::nullopt;
  return neg ? static_cast<int64_t>(~*u + 1) : static_cast<int64_t>(*u);
}

std::optional<std::chrono::nanoseconds> parse_duration(std::string_view s) {
  // Grammar: [-+]?([0-9]*(\.[0-9]*)?[a-z]+)+, or "0".
  bool neg = false;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    neg = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s == "0") return std::chrono::nanoseconds(0);
  if (s.empty()) return std::nullopt;
  long double total_ns = 0;
  while (!s.empty()) {
    size_t i = 0;
    long double whole = 0;
    bool any_digits = false;
    while (i < s.size() && is_digit(s[i])) {
      whole = whole * 10 + (s[i] - '0');
      ++i;
      any_digits = true;
    }
    long double frac = 0;
    if (i < s.size() && s[i] == '.') {
      ++i;
      long double scale = 0.1L;
      while (i < s.size() && is_digit(s[i])) {
        frac += (s[i] - '0') * scale;
        scale /= 10;
        ++i;
        any_digits = true;
      }
    }
    if (!any_digits) return std::nullopt;
    size_t u = i;
    while (u < s.size() && s[u] != '.' && !is_digit(s[u])) ++u;
    std::string_view unit = s.substr(i, u - i);
    long double mult;
    if (unit == "ns") {
      mult = 1;
    } else if (unit == "us" || unit == "\xC2\xB5s" || unit == "\xCE\xBCs") {
      mult = 1e3L;
    } else if (unit == "ms") {
      mult = 1e6L;
    } else if (unit == "s") {
      mult = 1e9L;
    } else if (unit == "m") {
      mult = 60e9L;
    } else if (unit == "h") {
      mult = 3600e9L;
    } else {
      return std::nullopt;  // missing or unknown unit
    }
    total_ns += (whole + frac) * mult;
    s.remove_prefix(u);
  }
  if (total_ns > static_cast<long double>(std::numeric_limits<int64_t>::max())) {
    return std::nullopt;
  }
  auto ns = static_cast<int64_t>(total_ns);
  return std::chrono::nanoseconds(neg ? -ns : ns);
}

std::string format_duration(int64_t ns) {
  if (ns == 0) return "0s";
  bool neg = ns < 0;
  uint64_t u = neg ? static_cast<uint64_t>(-(ns + 1)) + 1 : static_cast<uint64_t>(ns);
  auto frac = [](uint64_t v, int prec) {
    uint64_t p = 1;
    for (int i = 0; i < prec; ++i) p *= 10;
    std::string out = std::to_string(v / p);
    uint64_t f = v % p;
    if (f != 0) {
      std::string digits = std::to_string(f);
      digits.insert(0, static_cast<size_t>(prec) - digits.size(), '0');
      while (!digits.empty() && digits.back() == '0') digits.pop_back();
      out += '.';
      out += digits;
    }
    return out;
  };
  std::string out;
  if (u < 1000) {
    out = std::to_string(u) + "ns";
  } else if (u < 1000000) {
    out = frac(u, 3) + "µs";
  } else if (u < 1000000000) {
    out = frac(u, 6) + "ms";
  } else {
    constexpr uint64_t kMinute = 60ULL * 1000000000ULL;
    std::string secs = frac(u % kMinute, 9) + "s";
    uint64_t minutes = u / kMinute;
    if (minutes == 0) {
      out = secs;
    } else {
      uint64_t hours = minutes / 60;
      out = (hours ? std::to_string(hours) + "h" : std::string()) + std::to_string(minutes % 60) +
            "m" + secs;
    }
  }
  return neg ? "-" + out : out;
}

void append_rfc3339_nano(std::string& out, int64_t unix_ns) {
  int64_t secs = unix_ns / 1'000'000'000;
  int64_t nanos = unix_ns % 1'000'000'000;
  if (nanos < 0) {
    nanos += 1'000'000'000;
    secs -= 1;
  }
  int64_t days = secs / 86400;
  int64_t rem = secs % 86400;
  if (rem < 0) {
    rem += 86400;
    days -= 1;
  }
  // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
  int64_t z = days + 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t y = yoe + era * 400;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  int64_t d = doy - (153 * mp + 2) / 5 + 1;
  int64_t m = mp < 10 ? mp + 3 : mp - 9;
  if (m <= 2) ++y;
  char buf[64];
  int n = std::snprintf(buf, sizeof buf, "%04lld-%02lld-%02lldT%02lld:%02lld:%02lld",
                        static_cast<long long>(y), static_cast<long long>(m),
                        static_cast<long long>(d), static_cast<long long>(rem / 3600),
                        static_cast<long long>(rem / 60 % 60), static_cast<long long>(rem % 60));
  out.append(buf, static_cast<size_t>(n));
  if (nanos != 0) {
    char frac[10];
    for (int k = 8; k >= 0; --k) {
      frac[k] = static_cast<char>('0' + nanos % 10);
      nanos /= 10;
    }
    int len = 9;
    while (len > 0 && frac[len - 1] == '0') --len;
    out.push_back('.');
    out.append(frac, static_cast<size_t>(len));
  }
  out.push_back('Z');
}

std::string format_rfc3339_nano(std::chrono::system_clock::time_point t) {
  std::string out;
  append_rfc3339_nano(
      out, std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
  return out;
}

std::string format_http_date(int64_t unix_seconds) {
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  size_t n = std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return std::string(buf, n);
}

std::string escape_path(std::string_view path) {
  std::string out;
  out.reserve(path.size());
  for (unsigned char c : path) {
    bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '-' || c == '_' || c == '.' || c == '~' || c == '$' || c == '&' ||
                c == '+' || c == ',' || c == '/' || c == ':' || c == ';' || c == '=' || c == '@';
    if (keep) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHexUpper[c >> 4]);
      out.push_back(kHexUpper[c & 15]);
    }
  }
  return out;
}

std::string query_escape(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '-' || c == '_' || c == '.' || c == '~';
    if (keep) {
      out.push_back(static_cast<char>(c));
    } else if (c == ' ') {
      out.push_back('+');
    } else {
      out.push_back('%');
      out.push_back(kHexUpper[c >> 4]);
      out.push_back(kHexUpper[c & 15]);
    }
  }
  return out;
}

namespace {

// encoding/json's quoteChar: the byte read as the rune of the same value (0xFF is U+00FF), in
// strconv.Quote's form between single quotes; both quote characters have their own forms.
std::string quote_json_char(unsigned char c) {
  if (c == '\'') return "'\\''";
  if (c == '"') return "'\"'";
  std::string rune;
  if (c < 0x80) {
    rune.push_back(static_cast<char>(c));
  } else {
    rune.push_back(static_cast<char>(0xC0 | (c >> 6)));
    rune.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
  std::string quoted = quote(rune);
  return "'" + quoted.substr(1, quoted.size() - 2) + "'";
}

bool is_json_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

bool is_hex_digit(unsigned char c) {
  return is_digit(static_cast<char>(c)) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// encoding/json's scanner reduced to what checkValid needs: bytes in, the first syntax error out.
// The states are Go's, named after what has been read; a state that does not consume a byte
// hands it to the next one, as Go's state functions call each other.
class JsonSyntaxChecker {
 public:
  // Scans one byte; false once an error has been recorded (later bytes change nothing).
  bool step(unsigned char c) {
    while (true) {
      switch (state_) {
        case State::kError:
          return false;
        case State::kBeginValueOrEmpty:  // after '['
          if (is_json_space(c)) return true;
          state_ = c == ']' ? State::kEndValue : State::kBeginValue;
          continue;
        case State::kBeginValue:
          return begin_value(c);
        case State::kBeginKeyOrEmpty:  // after '{'
          if (is_json_space(c)) return true;
          if (c == '}') {
            nesting_.back() = Nesting::kObjectValue;
            state_ = State::kEndValue;
            continue;
          }
          state_ = State::kBeginKey;
          continue;
        case State::kBeginKey:
          if (is_json_space(c)) return true;
          if (c == '"') {
            state_ = State::kInString;
            return true;
          }
          return fail(c, "looking for beginning of object key string");
        case State::kEndValue:
          return end_value(c);
        case State::kEndTop:
          if (is_json_space(c)) return true;
          return fail(c, "after top-level value");
        case State::kInString:
          if (c == '"') {
            state_ = State::kEndValue;
          } else if (c == '\\') {
            state_ = State::kInStringEscape;
          } else if (c < 0x20) {
            return fail(c, "in string literal");
          }
          return true;
        case State::kInStringEscape:
          if (c == 'u') {
            state_ = State::kInUnicodeEscape;
            hex_left_ = 4;
            return true;
          }
          if (c == 'b' || c == 'f' || c == 'n' || c == 'r' || c == 't' || c == '\\' ||
              c == '/' || c == '"') {
            state_ = State::kInString;
            return true;
          }
          return fail(c, "in string escape code");
        case State::kInUnicodeEscape:
          if (!is_hex_digit(c)) return fail(c, "in \\u hexadecimal character escape");
          if (--hex_left_ == 0) state_ = State::kInString;
          return true;
        case State::kNeg:  // after '-'
          if (!is_digit(static_cast<char>(c))) return fail(c, "in numeric literal");
          state_ = c == '0' ? State::kZero : State::kNonZero;
          return true;
        case State::kNonZero:  // after 1..9 and maybe more digits
          if (is_digit(static_cast<char>(c))) return true;
          state_ = State::kZero;
          continue;
        case State::kZero:  // after the integer part
          if (c == '.') {
            state_ = State::kDot;
            return true;
          }
          if (c == 'e' || c == 'E') {
            state_ = State::kE;
            return true;
          }
          state_ = State::kEndValue;
          continue;
        case State::kDot:
          if (!is_digit(static_cast<char>(c))) {
            return fail(c, "after decimal point in numeric literal");
          }
          state_ = State::kDotDigits;
          return true;
        case State::kDotDigits:
          if (is_digit(static_cast<char>(c))) return true;
          if (c == 'e' || c == 'E') {
            state_ = State::kE;
            return true;
          }
          state_ = State::kEndValue;
          continue;
        case State::kE:
          if (c == '+' || c == '-') {
            state_ = State::kESign;
            return true;
          }
          state_ = State::kESign;
          continue;
        case State::kESign:
          if (!is_digit(static_cast<char>(c))) return fail(c, "in exponent of numeric literal");
          state_ = State::kEDigits;
          return true;
        case State::kEDigits:
          if (is_digit(static_cast<char>(c))) return true;
          state_ = State::kEndValue;
          continue;
        case State::kLiteral:  // in true, false or null after its first letter
          if (c != static_cast<unsigned char>(literal_[literal_pos_])) {
            std::string context = "in literal ";
            context.append(literal_);
            context += " (expecting '";
            context += literal_[literal_pos_];
            context += "')";
            return fail(c, context);
          }
          if (++literal_pos_ == literal_.size()) state_ = State::kEndValue;
          return true;
      }
    }
  }

  // The end of input, scanned as a space so that a number there ends: "" or the error.
  std::string finish() {
    if (state_ != State::kError && !end_top_) step(' ');
    if (state_ == State::kError) return error_;
    return end_top_ ? "" : "unexpected end of JSON input";
  }

 private:
  enum class State {
    kBeginValueOrEmpty, kBeginValue, kBeginKeyOrEmpty, kBeginKey, kEndValue, kEndTop,
    kInString, kInStringEscape, kInUnicodeEscape,
    kNeg, kNonZero, kZero, kDot, kDotDigits, kE, kESign, kEDigits,
    kLiteral, kError,
  };
  // What an open array or object expects: Go's parseState.
  enum class Nesting : uint8_t { kObjectKey, kObjectValue, kArrayValue };
  static constexpr size_t kMaxNesting = 10000;

  bool begin_value(unsigned char c) {
    if (is_json_space(c)) return true;
    switch (c) {
      case '{': return push(c, Nesting::kObjectKey, State::kBeginKeyOrEmpty);
      case '[': return push(c, Nesting::kArrayValue, State::kBeginValueOrEmpty);
      case '"': state_ = State::kInString; return true;
      case '-': state_ = State::kNeg; return true;
      case '0': state_ = State::kZero; return true;
      case 't': return begin_literal("true");
      case 'f': return begin_literal("false");
      case 'n': return begin_literal("null");
      default: break;
    }
    if (c >= '1' && c <= '9') {
      state_ = State::kNonZero;
      return true;
    }
    return fail(c, "looking for beginning of value");
  }

  bool begin_literal(std::string_view word) {
    state_ = State::kLiteral;
    literal_ = word;
    literal_pos_ = 1;
    return true;
  }

  bool push(unsigned char c, Nesting n, State next) {
    nesting_.push_back(n);
    if (nesting_.size() > kMaxNesting) return fail(c, "exceeded max depth");
    state_ = next;
    return true;
  }

  bool end_value(unsigned char c) {
    if (nesting_.empty()) {
      end_top_ = true;
      state_ = State::kEndTop;
      return step(c);
    }
    if (is_json_space(c)) return true;
    switch (nesting_.back()) {
      case Nesting::kObjectKey:
        if (c != ':') return fail(c, "after object key");
        nesting_.back() = Nesting::kObjectValue;
        state_ = State::kBeginValue;
        return true;
      case Nesting::kObjectValue:
        if (c == ',') {
          nesting_.back() = Nesting::kObjectKey;
          state_ = State::kBeginKey;
          return true;
        }
        if (c == '}') return pop();
        return fail(c, "after object key:value pair");
      case Nesting::kArrayValue:
        if (c == ',') {
          state_ = State::kBeginValue;
          return true;
        }
        if (c == ']') return pop();
        return fail(c, "after array element");
    }
    return fail(c, "");
  }

  bool pop() {
    nesting_.pop_back();
    if (nesting_.empty()) {
      end_top_ = true;
      state_ = State::kEndTop;
    } else {
      state_ = State::kEndValue;
    }
    return true;
  }

  bool fail(unsigned char c, std::string_view context) {
    error_ = "invalid character " + quote_json_char(c) + " ";
    error_.append(context);
    state_ = State::kError;
    return false;
  }

  State state_ = State::kBeginValue;
  std::vector<Nesting> nesting_;
  bool end_top_ = false;  // a whole top-level value has been read
  std::string_view literal_;
  size_t literal_pos_ = 0;  // Invariant: 0 < literal_pos_ < literal_.size() in kLiteral
  int hex_left_ = 0;        // hex digits still expected in kInUnicodeEscape
  std::string error_;       // set with kError
};

}  // namespace

std::string json_syntax_error(std::string_view data) {
  JsonSyntaxChecker checker;
  for (char c : data) {
    if (!checker.step(static_cast<unsigned char>(c))) break;
  }
  return checker.finish();
}

}  // namespace kvd::go
