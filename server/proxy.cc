#include "server/proxy.h"

#include <spdlog/spdlog.h>

namespace kvd::server {

int run_proxy(const Flags& /*flags*/) {
  spdlog::critical("proxy mode (--proxy on|readonly) is not available in this version of kvd");
  return 1;
}

}  // namespace kvd::server
