// The versions kvd reports. kvd answers as the etcd release whose v2 API it reproduces, so that
// tools that parse etcd's versions (etcdctl, confd, dashboards) keep working, and says beside
// them which kvd it is: its own version and the git revision it was built from.
#pragma once

#include <string>
#include <string_view>

namespace kvd::version {

// etcd's server version (`etcd --version`, /version's "etcdserver", etcdctl's version).
inline constexpr std::string_view kServer = "3.4.23";
// The cluster version a new cluster records and /version reports as "etcdcluster".
inline constexpr std::string_view kCluster = "3.4.0";
// The body of GET /version on the peer port, etcd's exactly (only members read it).
inline constexpr std::string_view kVersionJson = R"({"etcdserver":"3.4.23","etcdcluster":"3.4.0"})";
// kvd's own release.
inline constexpr std::string_view kKvd = "0.1.0";

// The git revision kvd was built from: `git rev-parse --short HEAD`, with "-dirty" when tracked
// files differed from it, or "unknown" when built outside a git checkout. Defined by the source
// the build generates (common/git_revision.cmake, library kvd_revision): link kvd_revision to
// use it, or what uses it below.
std::string_view git_revision();

// The body of GET /version on the client port: etcd's two members first (what etcdctl,
// python-etcd and confd read), then kvd's version and revision, strings like the others.
inline const std::string& version_json() {
  static const std::string json = std::string(R"({"etcdserver":")") + std::string(kServer) +
                                  R"(","etcdcluster":")" + std::string(kCluster) +
                                  R"(","kvd":")" + std::string(kKvd) + R"(","kvdrevision":")" +
                                  std::string(git_revision()) + R"("})";
  return json;
}

}  // namespace kvd::version
