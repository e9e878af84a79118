// What etcd checks before a member bootstraps (etcdserver's VerifyBootstrap and
// VerifyJoinExisting), done before anything is bound or written: for a data dir that holds no
// member yet, --initial-cluster must give this member exactly its --initial-advertise-peer-urls
// (host names resolved, as etcd compares them) and no URL twice. A data dir that holds a member
// ignores those flags, so nothing is checked then. Errors are etcd's texts.
#pragma once

#include <optional>
#include <string>

#include "server/flags.h"

namespace kvd::server {

// Whether data_dir holds a member (its raft log directory exists).
bool holds_member(const std::string& data_dir);

// nullopt when the flags may bootstrap a member; else etcd's error.
std::optional<std::string> verify_bootstrap(const Flags& f);

}  // namespace kvd::server
