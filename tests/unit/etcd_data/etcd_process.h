// A real etcd (Debian's /usr/bin/etcd, 3.4) for the etcd_data tests: started on free loopback
// ports with --enable-v2, reached with a minimal blocking HTTP/1.1 client, stopped by PID. Every
// wait is for an event (a health answer, a process exit) and bounded in time.
//
// Test code; one thread.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "common/status.h"

namespace kvd::etcd_data::testing {

inline constexpr char kEtcdBinary[] = "/usr/bin/etcd";

struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;
};

// One request on a new connection (Connection: close) to 127.0.0.1:port; `body` is sent as a
// form (application/x-www-form-urlencoded) when not empty. Fails after 10 s without an answer.
Result<HttpResponse> http_request(uint16_t port, const std::string& method,
                                  const std::string& target, const std::string& body = "");

// A loopback port nothing listens on right now (the kernel's pick for a socket bound to port 0).
Result<uint16_t> free_port();

class EtcdProcess {
 public:
  // Starts etcd as a one-member cluster on `data_dir` (created by etcd) and waits until /health
  // says true. etcd's output goes to `log_path`. If etcd exits before it is healthy (a port taken
  // in the meantime), it is started again on other ports, three times at most.
  static Result<std::unique_ptr<EtcdProcess>> start(const std::string& data_dir,
                                                    int snapshot_count,
                                                    const std::string& log_path);
  ~EtcdProcess();  // SIGKILL if still running
  EtcdProcess(const EtcdProcess&) = delete;
  EtcdProcess& operator=(const EtcdProcess&) = delete;

  // SIGTERM, then waits for the exit (30 s at most, then SIGKILL). Fails if it did not exit 0 or
  // by SIGTERM.
  Status stop();

  uint16_t client_port() const { return client_port_; }
  Result<HttpResponse> http(const std::string& method, const std::string& target,
                            const std::string& body = "") const {
    return http_request(client_port_, method, target, body);
  }

 private:
  EtcdProcess() = default;
  pid_t pid_ = -1;
  uint16_t client_port_ = 0;
};

// A new empty directory under $TMPDIR (or /tmp), removed with its contents by the destructor.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace kvd::etcd_data::testing
