// Parsing of /v2/keys requests. Reproduces what etcd 3.4 (built with Go 1.19) does before a
// request reaches its store: net/http's Request.ParseForm (mime.ParseMediaType on the content
// type of PUT/POST, url.ParseQuery on the body and the query), then etcd's parameter checks in
// their order (shared spec v2-keys-api.md §2), then the choice of store operation (§5).
//
// Go behaviour reproduced here because clients can observe it:
// - The form seen by lookups is the body's pairs followed by the query's pairs, so a body value
//   wins over a query value and, for a repeated name, the first occurrence wins.
// - url.ParseQuery splits on '&' only; a pair containing ';' is skipped and sets the error
//   "invalid semicolon separator in query", replacing any earlier error. Other errors (bad
//   escapes) keep the first one. Parsing continues after an error, but any error means 210.
// - The body's error is reported before the query's; a mime error before the body's.
// - A form body over 10 MiB is "http: POST too large" (net/http's default limit).
// - Bad escapes read `invalid URL escape "%zz"` with the (at most 3) bytes quoted as
//   strconv.Quote does, so non-printable characters appear as \n, \xff, \u0085.
#include "api_v2/keys_request.h"

#include <algorithm>
#include <array>
#include <limits>
#include <set>

#include "common/go.h"

namespace kvd::v2 {
namespace {

constexpr std::string_view kKeysPrefix = "/v2/keys";
constexpr std::string_view kFormMediaType = "application/x-www-form-urlencoded";
constexpr size_t kMaxFormBytes = size_t{10} << 20;  // net/http parsePostForm's default

// ---- percent-decoding -------------------------------------------------------------------------

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// url.QueryUnescape (plus_is_space) or url.PathUnescape. On a malformed escape returns false and
// sets *error to Go's EscapeError text.
bool unescape(std::string_view s, bool plus_is_space, std::string* out, std::string* error) {
  out->clear();
  out->reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '%') {
      if (i + 2 >= s.size() || hex_value(s[i + 1]) < 0 || hex_value(s[i + 2]) < 0) {
        *error = "invalid URL escape " + go::quote(s.substr(i, 3));
        return false;
      }
      out->push_back(static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2])));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out->push_back(' ');
    } else {
      out->push_back(c);
    }
  }
  return true;
}

// ---- mime.ParseMediaType ----------------------------------------------------------------------

// Width of the Unicode white-space rune (unicode.IsSpace) at s[i], 0 if there is none.
size_t space_width(std::string_view s, size_t i) {
  size_t width = 1;
  int32_t r = go::decode_rune(s, i, &width);
  switch (r) {
    case '\t': case '\n': case '\v': case '\f': case '\r': case ' ':
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F:
    case 0x3000:
      return width;
    default:
      return r >= 0x2000 && r <= 0x200A ? width : 0;
  }
}

std::string_view trim_left_space(std::string_view s) {
  size_t w;
  while (!s.empty() && (w = space_width(s, 0)) > 0) s.remove_prefix(w);
  return s;
}

std::string_view trim_space(std::string_view s) {
  s = trim_left_space(s);
  // Trailing white space: scan forward, remember where the last non-space rune ended.
  size_t end = 0;
  for (size_t i = 0; i < s.size();) {
    size_t w = space_width(s, i);
    if (w == 0) {
      size_t width;
      go::decode_rune(s, i, &width);
      i += width;
      end = i;
    } else {
      i += w;
    }
  }
  return s.substr(0, end);
}

std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool is_token_char(char c) {
  auto u = static_cast<unsigned char>(c);
  if (u <= 0x20 || u >= 0x7F) return false;
  return std::string_view(R"(()<>@,;:\"/[]?=)").find(c) == std::string_view::npos;
}

bool is_tspecial(char c) {
  return std::string_view(R"(()<>@,;:\"/[]?=)").find(c) != std::string_view::npos;
}

// Splits s into its leading token and the rest.
std::pair<std::string_view, std::string_view> consume_token(std::string_view s) {
  size_t n = 0;
  while (n < s.size() && is_token_char(s[n])) ++n;
  return {s.substr(0, n), s.substr(n)};
}

// A token or a quoted string. Returns false (nothing consumed) when there is neither.
bool consume_value(std::string_view s, std::string* value, std::string_view* rest) {
  value->clear();
  if (s.empty()) {
    *rest = s;
    return false;
  }
  if (s[0] != '"') {
    auto [token, r] = consume_token(s);
    *value = std::string(token);
    *rest = r;
    return !token.empty();
  }
  for (size_t i = 1; i < s.size(); ++i) {
    char c = s[i];
    if (c == '"') {
      *rest = s.substr(i + 1);
      return true;
    }
    if (c == '\\' && i + 1 < s.size() && is_tspecial(s[i + 1])) {
      value->push_back(s[i + 1]);
      ++i;
      continue;
    }
    if (c == '\r' || c == '\n') break;
    value->push_back(c);
  }
  value->clear();
  *rest = s;
  return false;
}

// One "; name=value" parameter. Returns false when s does not start with one.
bool consume_media_param(std::string_view s, std::string* name, std::string_view* rest) {
  std::string_view r = trim_left_space(s);
  if (r.empty() || r[0] != ';') return false;
  r = trim_left_space(r.substr(1));
  auto [token, after_name] = consume_token(r);
  if (token.empty()) return false;
  r = trim_left_space(after_name);
  if (r.empty() || r[0] != '=') return false;
  r = trim_left_space(r.substr(1));
  std::string value;
  if (!consume_value(r, &value, rest)) return false;
  *name = ascii_lower(token);
  return true;
}

struct MediaType {
  std::string type;   // lower-cased; may be set even when error is (invalid parameter)
  std::string error;  // Go's error text; empty on success
};

// mime.ParseMediaType as of Go 1.19, reduced to what ParseForm looks at.
MediaType parse_media_type(std::string_view v) {
  MediaType mt;
  size_t semi = v.find(';');
  if (semi == std::string_view::npos) semi = v.size();
  std::string type = ascii_lower(trim_space(v.substr(0, semi)));

  auto [main_type, rest] = consume_token(type);
  if (main_type.empty()) {
    mt.error = "mime: no media type";
    return mt;
  }
  if (!rest.empty()) {
    if (rest[0] != '/') {
      mt.error = "mime: expected slash after first token";
      return mt;
    }
    auto [sub_type, tail] = consume_token(rest.substr(1));
    if (sub_type.empty()) {
      mt.error = "mime: expected token after slash";
      return mt;
    }
    if (!tail.empty()) {
      mt.error = "mime: unexpected content after media subtype";
      return mt;
    }
  }

  // Go keeps "name*N" continuations in a map per base name and plain names in another; two
  // identical names always land in the same map, so one set of seen names finds duplicates.
  std::set<std::string> seen;
  std::string_view params = v.substr(semi);
  while (!params.empty()) {
    params = trim_left_space(params);
    if (params.empty()) break;
    std::string name;
    std::string_view after;
    if (!consume_media_param(params, &name, &after)) {
      if (trim_space(params) == ";") break;  // a trailing semicolon is allowed
      mt.type = type;
      mt.error = "mime: invalid media parameter";
      return mt;
    }
    if (!seen.insert(name).second) {
      mt.error = "mime: duplicate parameter name";
      return mt;
    }
    params = after;
  }
  mt.type = type;
  return mt;
}

// ---- Go's strconv and path --------------------------------------------------------------------

// strconv.ParseUint(s, 10, 64): decimal digits only, no sign, no underscores, no overflow.
std::optional<uint64_t> parse_uint64(std::string_view s) {
  if (s.empty()) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (std::numeric_limits<uint64_t>::max() - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  return v;
}

// path.Clean: collapse slashes, drop "." elements, resolve "..", drop the trailing slash.
std::string go_path_clean(std::string_view p) {
  if (p.empty()) return ".";
  const bool rooted = p[0] == '/';
  std::vector<std::string_view> parts;
  size_t i = 0;
  while (i < p.size()) {
    size_t j = p.find('/', i);
    if (j == std::string_view::npos) j = p.size();
    std::string_view elem = p.substr(i, j - i);
    i = j + 1;
    if (elem.empty() || elem == ".") continue;
    if (elem == "..") {
      if (!parts.empty() && parts.back() != "..") {
        parts.pop_back();
      } else if (!rooted) {
        parts.push_back(elem);
      }
      continue;
    }
    parts.push_back(elem);
  }
  std::string out = rooted ? "/" : "";
  for (size_t k = 0; k < parts.size(); ++k) {
    if (k > 0) out += '/';
    out.append(parts[k]);
  }
  if (out.empty()) out = ".";
  return out;
}

// ---- the form as etcd sees it -----------------------------------------------------------------

// r.Form after ParseForm: body pairs, then query pairs.
class MergedForm {
 public:
  MergedForm(const Form& body, const Form& query) : body_(body), query_(query) {}
  std::optional<std::string> get(std::string_view name) const {
    auto v = body_.get(name);
    return v ? v : query_.get(name);
  }
  bool has(std::string_view name) const { return body_.has(name) || query_.has(name); }
  // FormValue: first value or "".
  std::string value(std::string_view name) const { return get(name).value_or(""); }

 private:
  const Form& body_;
  const Form& query_;
};

Error param_error(ErrorCode code, std::string cause) { return Error{code, std::move(cause), 0}; }

}  // namespace

// ---- public functions -------------------------------------------------------------------------

std::optional<std::string> Form::parse(std::string_view encoded) {
  std::optional<std::string> error;
  while (!encoded.empty()) {
    std::string_view pair = encoded;
    size_t amp = encoded.find('&');
    if (amp != std::string_view::npos) {
      pair = encoded.substr(0, amp);
      encoded.remove_prefix(amp + 1);
    } else {
      encoded = {};
    }
    if (pair.find(';') != std::string_view::npos) {
      error = "invalid semicolon separator in query";  // replaces an earlier error, as Go does
      continue;
    }
    if (pair.empty()) continue;
    std::string_view raw_name = pair, raw_value;
    if (size_t eq = pair.find('='); eq != std::string_view::npos) {
      raw_name = pair.substr(0, eq);
      raw_value = pair.substr(eq + 1);
    }
    std::string name, value, cause;
    if (!unescape(raw_name, true, &name, &cause) || !unescape(raw_value, true, &value, &cause)) {
      if (!error) error = cause;
      continue;
    }
    pairs_.emplace_back(std::move(name), std::move(value));
  }
  return error;
}

std::optional<std::string> Form::get(std::string_view name) const {
  for (const auto& [n, v] : pairs_) {
    if (n == name) return v;
  }
  return std::nullopt;
}

bool Form::has(std::string_view name) const { return get(name).has_value(); }

std::optional<std::string> decode_path(std::string_view raw_path) {
  std::string out, error;
  if (!unescape(raw_path, false, &out, &error)) return std::nullopt;
  return out;
}

// ServeMux's cleanPath. It cannot fail on an already decoded path; the optional leaves room for
// the caller's contract (see the header).
std::optional<std::string> clean_path(std::string_view decoded_path) {
  if (decoded_path.empty()) return std::string("/");
  std::string p(decoded_path);
  if (p[0] != '/') p.insert(p.begin(), '/');
  std::string np = go_path_clean(p);
  if (p.back() == '/' && np != "/") np += '/';
  return np;
}

KeysRequest parse_keys_request(const HttpInput& in) {
  std::string_view raw_path = in.target, raw_query;
  if (size_t q = in.target.find('?'); q != std::string_view::npos) {
    raw_path = in.target.substr(0, q);
    raw_query = in.target.substr(q + 1);
  }
  const bool is_put = in.method == "PUT";
  const bool is_post = in.method == "POST";
  const bool is_delete = in.method == "DELETE";
  const bool is_head = in.method == "HEAD";

  // Request.ParseForm: only PUT and POST look at the body, and only a form body is read.
  Form body_form, query_form;
  std::optional<std::string> form_error;
  if (is_put || is_post) {
    MediaType mt = parse_media_type(in.content_type.empty() ? std::string_view("application/octet-stream")
                                                            : in.content_type);
    if (!mt.error.empty()) form_error = mt.error;
    if (mt.type == kFormMediaType && !in.body_error.empty()) {
      if (!form_error) form_error = std::string(in.body_error);
    } else if (mt.type == kFormMediaType) {
      if (in.body.size() > kMaxFormBytes) {
        return param_error(ErrorCode::kInvalidForm, "http: POST too large");
      }
      auto body_error = body_form.parse(in.body);
      if (!form_error) form_error = body_error;
    }
  }
  auto query_error = query_form.parse(raw_query);
  if (!form_error) form_error = query_error;
  if (form_error) return param_error(ErrorCode::kInvalidForm, *form_error);
  const MergedForm form(body_form, query_form);

  std::string path, path_error;
  if (!unescape(raw_path, false, &path, &path_error)) {
    return param_error(ErrorCode::kInvalidForm, path_error);
  }
  if (!std::string_view(path).starts_with(kKeysPrefix)) {
    return param_error(ErrorCode::kInvalidForm, "incorrect key prefix");
  }
  std::string key = go_path_clean("/" + path.substr(kKeysPrefix.size()));

  // Parameter checks, in etcd's order; the first failure wins.
  auto get_uint = [&](std::string_view name, uint64_t* out) {
    auto v = form.get(name);
    if (!v) return true;
    auto n = parse_uint64(*v);
    if (!n) return false;
    *out = *n;
    return true;
  };
  auto get_bool = [&](std::string_view name, bool* out) {
    auto v = form.get(name);
    if (!v) return true;
    auto b = go::parse_bool(*v);
    if (!b) return false;
    *out = *b;
    return true;
  };
  auto invalid_field = [](std::string_view name) {
    return param_error(ErrorCode::kInvalidField, "invalid value for \"" + std::string(name) + "\"");
  };

  uint64_t prev_index = 0, wait_index = 0;
  if (!get_uint("prevIndex", &prev_index)) {
    return param_error(ErrorCode::kIndexNaN, "invalid value for \"prevIndex\"");
  }
  if (!get_uint("waitIndex", &wait_index)) {
    return param_error(ErrorCode::kIndexNaN, "invalid value for \"waitIndex\"");
  }
  bool recursive = false, sorted = false, wait = false, dir = false, quorum = false, stream = false;
  if (!get_bool("recursive", &recursive)) return invalid_field("recursive");
  if (!get_bool("sorted", &sorted)) return invalid_field("sorted");
  if (!get_bool("wait", &wait)) return invalid_field("wait");
  if (!get_bool("dir", &dir)) return invalid_field("dir");
  if (!get_bool("quorum", &quorum)) return invalid_field("quorum");
  if (!get_bool("stream", &stream)) return invalid_field("stream");
  if (wait && in.method != "GET") {
    return param_error(ErrorCode::kInvalidField, "\"wait\" can only be used with GET requests");
  }
  std::string prev_value = form.value("prevValue");
  if (form.has("prevValue") && prev_value.empty()) {
    return param_error(ErrorCode::kPrevValueRequired, "\"prevValue\" cannot be empty");
  }
  bool no_value_on_success = false;
  if (!get_bool("noValueOnSuccess", &no_value_on_success)) return invalid_field("noValueOnSuccess");

  // An empty first ttl value means no TTL. kvd also rejects TTLs whose nanoseconds overflow
  // int64 (etcd silently wraps them into permanent or already expired keys).
  std::optional<uint64_t> ttl;
  if (!form.value("ttl").empty()) {
    auto n = parse_uint64(*form.get("ttl"));
    constexpr uint64_t kMaxTtlSeconds =
        static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / 1'000'000'000;
    if (!n || *n > kMaxTtlSeconds) {
      return param_error(ErrorCode::kTtlNaN, "invalid value for \"ttl\"");
    }
    ttl = *n;
  }
  std::optional<bool> prev_exist;
  if (form.has("prevExist")) {
    auto b = go::parse_bool(*form.get("prevExist"));
    if (!b) return param_error(ErrorCode::kInvalidField, "invalid value for prevExist");
    prev_exist = *b;
  }
  bool refresh = false;
  if (form.has("refresh")) {
    auto b = go::parse_bool(*form.get("refresh"));
    if (!b) return param_error(ErrorCode::kInvalidField, "invalid value for refresh");
    refresh = *b;
    if (refresh) {
      if (!form.value("value").empty()) {
        return param_error(ErrorCode::kRefreshValue, "A value was provided on a refresh");
      }
      if (!ttl) return param_error(ErrorCode::kRefreshTtlRequired, "No TTL value set");
    }
  }

  // Reads. HEAD never goes through raft and never watches; GET with quorum is a plain
  // (linearizable) read even when wait is set.
  if (is_head) {
    return GetRequest{.key = key, .recursive = recursive, .sorted = sorted, .quorum = false,
                      .head = true};
  }
  if (!is_put && !is_post && !is_delete) {
    if (wait && !quorum) {
      return WatchRequest{.key = key, .recursive = recursive, .stream = stream,
                          .wait_index = wait_index};
    }
    return GetRequest{.key = key, .recursive = recursive, .sorted = sorted, .quorum = quorum,
                      .head = false};
  }

  // A write that would create a node deeper than kMaxKeyDepth (a POST adds one level).
  if (is_put || is_post) {
    const size_t depth = static_cast<size_t>(std::count(key.begin(), key.end(), '/')) -
                         (key == "/" ? 1 : 0) + (is_post ? 1 : 0);
    if (depth > kMaxKeyDepth) {
      return param_error(ErrorCode::kInvalidField,
                         "key too deep: " + std::to_string(depth) + " levels, at most " +
                             std::to_string(kMaxKeyDepth));
    }
  }

  // Writes: only the fields the chosen operation reads are set, so the store never sees a flag
  // that etcd would have ignored (dir on update/CAS, prevValue on create, value on a dir).
  WriteRequest w;
  Command& cmd = w.cmd;
  cmd.key = key;
  const bool has_condition = prev_index > 0 || !prev_value.empty();
  if (is_delete) {
    if (has_condition) {
      cmd.op = Op::kCompareAndDelete;
      if (!prev_value.empty()) cmd.prev_value = prev_value;
      cmd.prev_index = prev_index;
    } else {
      cmd.op = Op::kDelete;
      cmd.dir = dir;
      cmd.recursive = recursive;
    }
    return w;
  }

  w.ttl_seconds = ttl;
  w.no_value_on_success = no_value_on_success;
  const std::string value = form.value("value");
  if (is_post) {
    cmd.op = Op::kCreateInOrder;
    cmd.dir = dir;
    if (!dir) cmd.value = value;
    return w;
  }

  cmd.refresh = refresh;
  if (prev_exist == false) {
    cmd.op = Op::kCreate;
    cmd.dir = dir;
    if (!dir) cmd.value = value;
  } else if (has_condition) {
    cmd.op = Op::kCompareAndSwap;
    cmd.value = value;
    if (!prev_value.empty()) cmd.prev_value = prev_value;
    cmd.prev_index = prev_index;
  } else if (prev_exist == true) {
    cmd.op = Op::kUpdate;
    cmd.value = value;
  } else {
    cmd.op = Op::kSet;
    cmd.dir = dir;
    if (!dir) cmd.value = value;
  }
  return w;
}

}  // namespace kvd::v2
