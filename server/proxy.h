// Proxy mode (`kvd --proxy on|readonly`): an etcd v2 proxy that forwards client requests to the
// cluster's members. run_proxy() owns its own io_context and threads and returns the process
// exit status once SIGINT/SIGTERM stops it (or at once when the flags cannot be served).
#pragma once

#include "server/flags.h"

namespace kvd::server {

int run_proxy(const Flags& flags);

}  // namespace kvd::server
