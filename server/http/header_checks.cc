#include "server/http/header_checks.h"

#include <cctype>
#include <optional>
#include <vector>

namespace kvd::server {
namespace {

// Go's httpguts.ValidHostHeader: the bytes a Host header may hold.
bool valid_host_header(std::string_view host) {
  for (unsigned char c : host) {
    if (std::isalnum(c)) continue;
    if (std::string_view("!$%&'()*+,-.:;=[]_~").find(static_cast<char>(c)) == std::string_view::npos)
      return false;
  }
  return true;
}

// Go's httpguts.ValidHeaderFieldName: an RFC 7230 token.
bool valid_header_name(std::string_view name) {
  if (name.empty()) return false;
  for (unsigned char c : name) {
    if (std::isalnum(c)) continue;
    if (std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) == std::string_view::npos)
      return false;
  }
  return true;
}

// Go's httpguts.ValidHeaderFieldValue: no control bytes other than tab.
bool valid_header_value(std::string_view value) {
  for (unsigned char c : value)
    if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
  return true;
}

}  // namespace

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

std::string_view trim_ows(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

size_t find_header_end(std::string_view data, size_t from) {
  for (size_t i = data.find('\n', from); i != std::string_view::npos; i = data.find('\n', i + 1)) {
    if (i + 1 < data.size() && data[i + 1] == '\n') return i + 2;
    if (i + 2 < data.size() && data[i + 1] == '\r' && data[i + 2] == '\n') return i + 3;
  }
  return std::string_view::npos;
}

HeaderVerdict normalize_header(std::string_view raw, std::string& out) {
  std::vector<std::string_view> lines;
  while (!raw.empty()) {
    size_t nl = raw.find('\n');
    std::string_view line = raw.substr(0, nl);
    raw.remove_prefix(nl == std::string_view::npos ? raw.size() : nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) break;
    lines.push_back(line);
  }
  if (lines.empty()) return HeaderVerdict::kBadRequest;
  std::string_view request_line = lines[0];
  const bool http10 = request_line.size() >= 9 &&
                      request_line.substr(request_line.size() - 9) == " HTTP/1.0";
  int hosts = 0;
  bool bad_host = false, bad_name = false, bad_value = false;
  std::vector<std::string_view> encodings;
  std::optional<std::string_view> content_length;
  for (size_t i = 1; i < lines.size(); ++i) {
    std::string_view line = lines[i];
    if (line[0] == ' ' || line[0] == '\t') continue;  // continuation of the previous field
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) return HeaderVerdict::kBadRequest;
    std::string_view name = line.substr(0, colon);
    std::string_view value = trim_ows(line.substr(colon + 1));
    bad_name = bad_name || !valid_header_name(name);
    bad_value = bad_value || !valid_header_value(value);
    if (iequals(name, "Host")) {
      ++hosts;
      bad_host = bad_host || !valid_host_header(value);
    } else if (iequals(name, "Transfer-Encoding")) {
      encodings.push_back(value);
    } else if (iequals(name, "Content-Length")) {
      if (!content_length) content_length = value;
    }
  }
  if (hosts > 1) return HeaderVerdict::kBadRequest;
  const bool chunked = !http10 && !encodings.empty();
  if (chunked && (encodings.size() != 1 || !iequals(encodings[0], "chunked")))
    return HeaderVerdict::kUnsupportedTransferEncoding;
  const bool http11 = request_line.size() >= 9 &&
                      request_line.substr(request_line.size() - 9) == " HTTP/1.1";
  if (http11 && hosts == 0 && request_line.substr(0, 8) != "CONNECT ")
    return HeaderVerdict::kMissingHost;
  if (hosts == 1 && bad_host) return HeaderVerdict::kBadHost;
  if (bad_name) return HeaderVerdict::kBadHeaderName;
  if (bad_value) return HeaderVerdict::kBadHeaderValue;

  out.clear();
  out.append(request_line);
  out += "\r\n";
  bool kept_length = false;
  for (size_t i = 1; i < lines.size(); ++i) {
    std::string_view line = lines[i];
    size_t colon = line.find(':');
    if (colon != std::string_view::npos) {
      std::string_view name = line.substr(0, colon);
      if (iequals(name, "Transfer-Encoding") && http10) continue;
      if (iequals(name, "Content-Length")) {
        if (chunked) continue;
        // Go accepts repeats of the same value; different values stay for Beast to reject.
        if (kept_length && trim_ows(line.substr(colon + 1)) == *content_length) continue;
        kept_length = true;
      }
    }
    out.append(line);
    out += "\r\n";
  }
  out += "\r\n";
  return HeaderVerdict::kOk;
}

bool istarts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

}  // namespace kvd::server
