// From the TLS flags to the contexts every port uses, with etcd 3.4's rules (embed.Config's
// ClientSelfCert/PeerSelfCert, configureClientListeners/configurePeerListeners): auto TLS, the
// https URLs that need certificates, the warnings for TLS flags beside http URLs. Runs before
// the data dir is opened, so a bad file stops kvd before anything is written (auto TLS aside,
// which writes its certificates under the data dir as etcd does).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "server/flags.h"
#include "server/tls/tls_config.h"

namespace kvd::server {

struct TlsSetup {
  // The client port's (and, for a proxy, its own listeners'): null when no client TLS is set.
  std::shared_ptr<tls::TlsContexts> client;
  // The peer port's, and what the member dials peers with: never null (without peer flags, a
  // client context that verifies https peers against the system's roots, as Go's default).
  std::shared_ptr<tls::TlsContexts> peer;
  // For the log, once logging is set up.
  std::vector<std::string> warnings;
  std::vector<std::string> notices;
};

// Fails with one line naming the flag and the file.
Result<TlsSetup> setup_tls(const Flags& flags);

}  // namespace kvd::server
