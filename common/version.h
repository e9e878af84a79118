// The versions kvd reports. kvd answers as the etcd release whose v2 API it reproduces, so that
// tools that parse etcd's versions (etcdctl, confd, dashboards) keep working.
#pragma once

#include <string_view>

namespace kvd::version {

// etcd's server version (`etcd --version`, /version's "etcdserver", etcdctl's version).
inline constexpr std::string_view kServer = "3.4.23";
// The cluster version a new cluster records and /version reports as "etcdcluster".
inline constexpr std::string_view kCluster = "3.4.0";
// The body of GET /version on the client and peer ports.
inline constexpr std::string_view kVersionJson = R"({"etcdserver":"3.4.23","etcdcluster":"3.4.0"})";

}  // namespace kvd::version
