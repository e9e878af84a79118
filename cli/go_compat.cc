#include "cli/go_compat.h"

#include <limits>
#include <vector>

namespace kvd::cli {
namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Decodes one UTF-8 sequence at s[i]; returns its length, or 0 if invalid. Sets *rune.
std::size_t decode_utf8(std::string_view s, std::size_t i, std::uint32_t* rune) {
  auto b = static_cast<unsigned char>(s[i]);
  if (b < 0x80) {
    *rune = b;
    return 1;
  }
  std::size_t len;
  std::uint32_t r;
  std::uint32_t min;
  if ((b & 0xE0) == 0xC0) {
    len = 2, r = b & 0x1F, min = 0x80;
  } else if ((b & 0xF0) == 0xE0) {
    len = 3, r = b & 0x0F, min = 0x800;
  } else if ((b & 0xF8) == 0xF0) {
    len = 4, r = b & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (std::size_t k = 1; k < len; ++k) {
    auto c = static_cast<unsigned char>(s[i + k]);
    if ((c & 0xC0) != 0x80) return 0;
    r = (r << 6) | (c & 0x3F);
  }
  if (r < min || r > 0x10FFFF || (r >= 0xD800 && r <= 0xDFFF)) return 0;
  *rune = r;
  return len;
}

const char kHex[] = "0123456789abcdef";
const char kHexUpper[] = "0123456789ABCDEF";

}  // namespace

std::optional<std::chrono::nanoseconds> parse_go_duration(std::string_view s) {
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
    std::size_t i = 0;
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
    std::size_t u = i;
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
  if (total_ns > static_cast<long double>(std::numeric_limits<std::int64_t>::max())) {
    return std::nullopt;
  }
  auto ns = static_cast<std::int64_t>(total_ns);
  return std::chrono::nanoseconds(neg ? -ns : ns);
}

std::optional<std::int64_t> parse_go_int(std::string_view s) {
  bool neg = false;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    neg = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s.empty()) return std::nullopt;
  int base = 10;
  bool allow_underscore = false;
  if (s.size() >= 2 && s[0] == '0') {
    char p = static_cast<char>(s[1] | 0x20);
    if (p == 'x') {
      base = 16, s.remove_prefix(2), allow_underscore = true;
    } else if (p == 'o') {
      base = 8, s.remove_prefix(2), allow_underscore = true;
    } else if (p == 'b') {
      base = 2, s.remove_prefix(2), allow_underscore = true;
    } else {
      base = 8, s.remove_prefix(1), allow_underscore = true;
    }
    if (s.empty() && base != 8) return std::nullopt;
  }
  unsigned __int128 v = 0;
  for (char c : s) {
    if (c == '_' && allow_underscore) continue;
    int d;
    if (is_digit(c)) {
      d = c - '0';
    } else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') {
      d = (c | 0x20) - 'a' + 10;
    } else {
      return std::nullopt;
    }
    if (d >= base) return std::nullopt;
    v = v * base + d;
    if (v > static_cast<unsigned __int128>(std::numeric_limits<std::int64_t>::max()) + 1) {
      return std::nullopt;
    }
  }
  if (!neg && v > static_cast<unsigned __int128>(std::numeric_limits<std::int64_t>::max())) {
    return std::nullopt;
  }
  return neg ? static_cast<std::int64_t>(-static_cast<__int128>(v)) : static_cast<std::int64_t>(v);
}

std::optional<bool> parse_go_bool(std::string_view s) {
  if (s == "1" || s == "t" || s == "T" || s == "TRUE" || s == "true" || s == "True") return true;
  if (s == "0" || s == "f" || s == "F" || s == "FALSE" || s == "false" || s == "False") {
    return false;
  }
  return std::nullopt;
}

std::string go_json_quote(std::string_view s) {
  std::string out = "\"";
  for (std::size_t i = 0; i < s.size();) {
    auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
      if (b == '"' || b == '\\') {
        out += '\\';
        out += static_cast<char>(b);
      } else if (b == '\n') {
        out += "\\n";
      } else if (b == '\r') {
        out += "\\r";
      } else if (b == '\t') {
        out += "\\t";
      } else if (b < 0x20 || b == '<' || b == '>' || b == '&') {
        out += "\\u00";
        out += kHex[b >> 4];
        out += kHex[b & 0xF];
      } else {
        out += static_cast<char>(b);
      }
      ++i;
      continue;
    }
    std::uint32_t r;
    std::size_t n = decode_utf8(s, i, &r);
    if (n == 0) {
      out += "\\ufffd";
      ++i;
      continue;
    }
    if (r == 0x2028 || r == 0x2029) {
      out += r == 0x2028 ? "\\u2028" : "\\u2029";
    } else {
      out.append(s.substr(i, n));
    }
    i += n;
  }
  out += '"';
  return out;
}

std::string go_quote(std::string_view s) {
  std::string out = "\"";
  for (std::size_t i = 0; i < s.size();) {
    auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
      switch (b) {
        case '\a': out += "\\a"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\v': out += "\\v"; break;
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        default:
          if (b < 0x20 || b == 0x7F) {
            out += "\\x";
            out += kHex[b >> 4];
            out += kHex[b & 0xF];
          } else {
            out += static_cast<char>(b);
          }
      }
      ++i;
      continue;
    }
    std::uint32_t r;
    std::size_t n = decode_utf8(s, i, &r);
    if (n == 0) {
      out += "\\x";
      out += kHex[b >> 4];
      out += kHex[b & 0xF];
      ++i;
      continue;
    }
    out.append(s.substr(i, n));
    i += n;
  }
  out += '"';
  return out;
}

std::string go_escape_path(std::string_view s) {
  std::string out;
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '-' || c == '_' || c == '.' || c == '~' || c == '$' || c == '&' ||
                c == '+' || c == ',' || c == '/' || c == ':' || c == ';' || c == '=' || c == '@';
    if (keep) {
      out += ch;
    } else {
      out += '%';
      out += kHexUpper[c >> 4];
      out += kHexUpper[c & 0xF];
    }
  }
  return out;
}

std::string go_query_escape(std::string_view s) {
  std::string out;
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '-' || c == '_' || c == '.' || c == '~';
    if (keep) {
      out += ch;
    } else if (c == ' ') {
      out += '+';
    } else {
      out += '%';
      out += kHexUpper[c >> 4];
      out += kHexUpper[c & 0xF];
    }
  }
  return out;
}

std::string canonical_url_path(std::string_view p) {
  if (p.empty()) return "/";
  std::string in = p[0] == '/' ? std::string(p) : "/" + std::string(p);
  // path.Clean on a rooted path: drop empty and "." elements, resolve "..".
  std::vector<std::string_view> parts;
  std::string_view rest = in;
  while (!rest.empty()) {
    std::size_t slash = rest.find('/');
    std::string_view elem = rest.substr(0, slash);
    rest = slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
    if (elem.empty() || elem == ".") continue;
    if (elem == "..") {
      if (!parts.empty()) parts.pop_back();
      continue;
    }
    parts.push_back(elem);
  }
  std::string out;
  for (auto e : parts) {
    out += '/';
    out.append(e);
  }
  if (out.empty()) return "/";
  if (in.back() == '/') out += '/';
  return out;
}

std::string to_dec(std::uint64_t v) { return std::to_string(v); }

}  // namespace kvd::cli
