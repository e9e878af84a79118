// Client-visible v2 errors: etcd's error codes, messages and HTTP statuses
// (see shared spec v2-keys-api.md §9). Rendered in one place as
// {"errorCode":N,"message":M[,"cause":C],"index":I}\n.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace kvd::v2 {

enum class ErrorCode : int {
  kKeyNotFound = 100,
  kTestFailed = 101,
  kNotFile = 102,
  kNoMorePeer = 103,
  kNotDir = 104,
  kNodeExist = 105,
  kKeyIsPreserved = 106,
  kRootReadOnly = 107,
  kDirNotEmpty = 108,
  kExistingPeerAddr = 109,
  kUnauthorized = 110,
  kValueRequired = 200,
  kPrevValueRequired = 201,
  kTtlNaN = 202,
  kIndexNaN = 203,
  kValueOrTtlRequired = 204,
  kTimeoutNaN = 205,
  kNameRequired = 206,
  kIndexOrValueRequired = 207,
  kIndexValueMutex = 208,
  kInvalidField = 209,
  kInvalidForm = 210,
  kRefreshValue = 211,
  kRefreshTtlRequired = 212,
  kRaftInternal = 300,
  kLeaderElect = 301,
  kWatcherCleared = 400,
  kEventIndexCleared = 401,
  kStandbyInternal = 402,
  kInvalidActiveSize = 403,
  kInvalidRemoveDelay = 404,
  kClientInternal = 500,
};

struct Error {
  ErrorCode code;
  std::string cause;
  uint64_t index = 0;

  int status() const;                // HTTP status for this code
  std::string_view message() const;  // etcd's message text
  std::string to_json() const;       // body including the trailing '\n'
};

std::string_view error_message(ErrorCode code);
int error_status(ErrorCode code);

}  // namespace kvd::v2
