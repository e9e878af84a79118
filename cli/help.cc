// Help screens, byte for byte as etcdctl 3.4.23 (API v2) prints them, so that scripts and
// humans see the same text. Keyed by topic: "app" (no command), "<group>_app" (the sub-command
// list of member, user, role or auth), "<group>_app_help" (that list as `<group> help` shows
// it), a command name, or "<group>_<sub>" ("<group>_help": the help of `<group> help`).
#include "cli/help.h"

#include <array>
#include <utility>

namespace kvd::cli {
namespace {

// clang-format off
constexpr std::array<std::pair<std::string_view, std::string_view>, 54> kHelp{{
    {"app", R"(NAME:
   etcdctl - A simple command line client for etcd.

USAGE:
   etcdctl [global options] command [command options] [arguments...]

VERSION:
   3.4.23

COMMANDS:
   backup          backup an etcd directory
   cluster-health  check the health of the etcd cluster
   mk              make a new key with a given value
   mkdir           make a new directory
   rm              remove a key or a directory
   rmdir           removes the key if it is an empty directory or a key-value pair
   get             retrieve the value of a key
   ls              retrieve a directory
   set             set the value of a key
   setdir          create a new directory or update an existing directory TTL
   update          update an existing key with a given value
   updatedir       update an existing directory
   watch           watch a key for changes
   exec-watch      watch a key for changes and exec an executable
   member          member add, remove and list subcommands
   user            user add, grant and revoke subcommands
   role            role add, grant and revoke subcommands
   auth            overall auth controls
   help, h         Shows a list of commands or help for one command

GLOBAL OPTIONS:
   --debug                          output cURL commands which can be used to reproduce the request
   --no-sync                        don't synchronize cluster information before sending request
   --output simple, -o simple       output response in the given format (simple, `extended` or `json`) (default: "simple")
   --discovery-srv value, -D value  domain name to query for SRV records describing cluster endpoints
   --insecure-discovery             accept insecure SRV records describing cluster endpoints
   --peers value, -C value          DEPRECATED - "--endpoints" should be used instead
   --endpoint value                 DEPRECATED - "--endpoints" should be used instead
   --endpoints value                a comma-delimited list of machine addresses in the cluster (default: "http://127.0.0.1:2379,http://127.0.0.1:4001")
   --cert-file value                identify HTTPS client using this SSL certificate file
   --key-file value                 identify HTTPS client using this SSL key file
   --ca-file value                  verify certificates of HTTPS-enabled servers using this CA bundle
   --username value, -u value       provide username[:password] and prompt if password is not supplied.
   --timeout value                  connection timeout per request (default: 2s)
   --total-timeout value            timeout for the command execution (except watch) (default: 5s)
   --help, -h                       show help
   --version, -v                    print the version
)"},
    {"member_app", R"(NAME:
   etcdctl member - member add, remove and list subcommands

USAGE:
   etcdctl member command [command options] [arguments...]

COMMANDS:
   list    enumerate existing cluster members
   add     add a new member to the etcd cluster
   remove  remove an existing member from the etcd cluster
   update  update an existing member in the etcd cluster

OPTIONS:
   --help, -h  show help
   
)"},
    {"backup", R"(NAME:
   kvctl backup - backup a member's data dir, or a running member

USAGE:
   kvctl backup [command options]  

DESCRIPTION:
   With --data-dir: copies a stopped member's data dir (etcdctl's backup). Without it:
   an online backup of the running member at the first endpoint, consistent at one
   index. Either way the backup gets a new member and cluster id and is started with
   kvd --data-dir BACKUP-DIR --force-new-cluster.

OPTIONS:
   --data-dir value        Path to the member's data dir (offline backup)
   --wal-dir value         Path to the etcd wal dir (kvd has none: refused)
   --backup-dir value      Path to the backup dir (absent or empty)
   --backup-wal-dir value  Path to the backup wal dir (kvd has none: refused)
   --with-v3               Backup v3 backend data (kvd has none: ignored)
   
)"},
    {"cluster-health", R"(NAME:
   etcdctl cluster-health - check the health of the etcd cluster

USAGE:
   etcdctl cluster-health [command options]  

OPTIONS:
   --forever, -f  forever check the health every 10 second until CTRL+C
   
)"},
    {"mk", R"(NAME:
   etcdctl mk - make a new key with a given value

USAGE:
   etcdctl mk [command options] <key> <value>

OPTIONS:
   --in-order   create in-order key under directory <key>
   --ttl value  key time-to-live in seconds (default: 0)
   
)"},
    {"mkdir", R"(NAME:
   etcdctl mkdir - make a new directory

USAGE:
   etcdctl mkdir [command options] <key>

OPTIONS:
   --ttl value  key time-to-live in seconds (default: 0)
   
)"},
    {"rm", R"(NAME:
   etcdctl rm - remove a key or a directory

USAGE:
   etcdctl rm [command options] <key>

OPTIONS:
   --dir               removes the key if it is an empty directory or a key-value pair
   --recursive, -r     removes the key and all child keys(if it is a directory)
   --with-value value  previous value
   --with-index value  previous index (default: 0)
   
)"},
    {"rmdir", R"(NAME:
   etcdctl rmdir - removes the key if it is an empty directory or a key-value pair

USAGE:
   etcdctl rmdir <key>
)"},
    {"get", R"(NAME:
   etcdctl get - retrieve the value of a key

USAGE:
   etcdctl get [command options] <key>

OPTIONS:
   --sort        returns result in sorted order
   --quorum, -q  require quorum for get request
   
)"},
    {"ls", R"(NAME:
   etcdctl ls - retrieve a directory

USAGE:
   etcdctl ls [command options] [key]

OPTIONS:
   --sort           returns result in sorted order
   --recursive, -r  returns all key names recursively for the given path
   -p               append slash (/) to directories
   --quorum, -q     require quorum for get request
   
)"},
    {"set", R"(NAME:
   etcdctl set - set the value of a key

USAGE:
   etcdctl set [command options] <key> <value>

DESCRIPTION:
   Set sets the value of a key.

   When <value> begins with '-', <value> is interpreted as a flag.
   Insert '--' for workaround:

   $ set -- <key> <value>

OPTIONS:
   --ttl value              key time-to-live in seconds (default: 0)
   --swap-with-value value  previous value
   --swap-with-index value  previous index (default: 0)
   
)"},
    {"setdir", R"(NAME:
   etcdctl setdir - create a new directory or update an existing directory TTL

USAGE:
   etcdctl setdir [command options] <key>

OPTIONS:
   --ttl value  key time-to-live in seconds (default: 0)
   
)"},
    {"update", R"(NAME:
   etcdctl update - update an existing key with a given value

USAGE:
   etcdctl update [command options] <key> <value>

OPTIONS:
   --ttl value  key time-to-live in seconds (default: 0)
   
)"},
    {"updatedir", R"(NAME:
   etcdctl updatedir - update an existing directory

USAGE:
   etcdctl updatedir [command options] <key> <value>

OPTIONS:
   --ttl value  key time-to-live in seconds (default: 0)
   
)"},
    {"watch", R"(NAME:
   etcdctl watch - watch a key for changes

USAGE:
   etcdctl watch [command options] <key>

OPTIONS:
   --forever, -f        forever watch a key until CTRL+C
   --after-index value  watch after the given index (default: 0)
   --recursive, -r      returns all values for key and child keys
   
)"},
    {"exec-watch", R"(NAME:
   etcdctl exec-watch - watch a key for changes and exec an executable

USAGE:
   etcdctl exec-watch [command options] <key> <command> [args...]

OPTIONS:
   --after-index value  watch after the given index (default: 0)
   --recursive, -r      watch all values for key and child keys
   
)"},
    // kvctl's own commands (not in etcdctl, so not in the "app" list, which stays etcdctl's).
    {"export", R"(NAME:
   kvctl export - write the v2 tree under a key to stdout as JSON

USAGE:
   kvctl export [command options] [key]

DESCRIPTION:
   Reads the tree under [key] (default /) with one recursive quorum GET and writes
   it as a "kvd-v2-export" JSON file (described in cli/export_import.cc): every
   directory and key with its value, TTL (expiration, authoritative, and ttl) and
   indexes, and the X-Etcd-Index it was read at. Works against etcd and kvd.
   Hidden nodes (names starting with '_') are not listed by the v2 API and are not
   exported.

OPTIONS:
   --no-index  leave out etcdIndex, createdIndex and modifiedIndex (to compare files)
   
)"},
    {"migrate", R"(NAME:
   kvctl migrate - convert a stopped etcd 3.4 member's data dir into a kvd data dir

USAGE:
   kvctl migrate [command options]

DESCRIPTION:
   Reads etcd's snap and WAL files and writes a kvd data dir serving the same v2
   tree: every node (hidden ones too), TTLs, createdIndex, modifiedIndex and the
   X-Etcd-Index. The member keeps its id and cluster id; start it with
   kvd --force-new-cluster, then add members. v3 data is not migrated.

OPTIONS:
   --etcd-data-dir value  the etcd member's --data-dir (read only)
   --data-dir value       the kvd data dir to write (absent or empty)
   --name value           the member's name: --data-dir defaults to NAME.etcd
   
)"},
    {"import", R"(NAME:
   kvctl import - create the tree of an export file in an empty cluster

USAGE:
   kvctl import [command options] [file]

DESCRIPTION:
   Reads an export file ([file], or stdin) and checks all of it before writing.
   Refuses a target that holds any key under / (exit code 6) unless --force.
   Creates directories level by level, then keys, several requests at a time.
   TTLs are the time left until each node's expiration; expired nodes are skipped.
   Indexes cannot be preserved: the target assigns its own createdIndex and
   modifiedIndex. Exit codes: 0 done, 1 bad input (nothing written), 4 a request
   failed, 6 target not empty.

OPTIONS:
   --force           import into a non-empty target: overwrite keys, keep existing directories
   --parallel value  requests in flight (default: 16)
   
)"},
    {"member", R"(NAME:
   etcdctl member - member add, remove and list subcommands

USAGE:
   etcdctl member [arguments...]
)"},
    {"user", R"(NAME:
   etcdctl user - user add, grant and revoke subcommands

USAGE:
   etcdctl user [arguments...]
)"},
    {"role", R"(NAME:
   etcdctl role - role add, grant and revoke subcommands

USAGE:
   etcdctl role [arguments...]
)"},
    {"auth", R"(NAME:
   etcdctl auth - overall auth controls

USAGE:
   etcdctl auth [arguments...]
)"},
    {"help", R"(NAME:
    - Shows a list of commands or help for one command

USAGE:
    [command]
)"},
    {"member_list", R"(NAME:
   etcdctl member list - enumerate existing cluster members

USAGE:
   etcdctl member list  
)"},
    {"member_add", R"(NAME:
   etcdctl member add - add a new member to the etcd cluster

USAGE:
   etcdctl member add <name> <peerURL>
)"},
    {"member_remove", R"(NAME:
   etcdctl member remove - remove an existing member from the etcd cluster

USAGE:
   etcdctl member remove <memberID>
)"},
    {"member_app_help", R"(NAME:
   etcdctl member - member add, remove and list subcommands

USAGE:
   etcdctl member [global options] command [command options] [arguments...]

VERSION:
   3.4.23

COMMANDS:
   list    enumerate existing cluster members
   add     add a new member to the etcd cluster
   remove  remove an existing member from the etcd cluster
   update  update an existing member in the etcd cluster

GLOBAL OPTIONS:
   --help, -h  show help
)"},
    {"member_help", R"(NAME:
   etcdctl member help - Shows a list of commands or help for one command

USAGE:
   etcdctl member help [command]
)"},
    {"user_app_help", R"(NAME:
   etcdctl user - user add, grant and revoke subcommands

USAGE:
   etcdctl user [global options] command [command options] [arguments...]

VERSION:
   3.4.23

COMMANDS:
   add     add a new user for the etcd cluster
   get     get details for a user
   list    list all current users
   remove  remove a user for the etcd cluster
   grant   grant roles to an etcd user
   revoke  revoke roles for an etcd user
   passwd  change password for a user

GLOBAL OPTIONS:
   --help, -h  show help
)"},
    {"user_help", R"(NAME:
   etcdctl user help - Shows a list of commands or help for one command

USAGE:
   etcdctl user help [command]
)"},
    {"role_app_help", R"(NAME:
   etcdctl role - role add, grant and revoke subcommands

USAGE:
   etcdctl role [global options] command [command options] [arguments...]

VERSION:
   3.4.23

COMMANDS:
   add     add a new role for the etcd cluster
   get     get details for a role
   list    list all roles
   remove  remove a role from the etcd cluster
   grant   grant path matches to an etcd role
   revoke  revoke path matches for an etcd role

GLOBAL OPTIONS:
   --help, -h  show help
)"},
    {"role_help", R"(NAME:
   etcdctl role help - Shows a list of commands or help for one command

USAGE:
   etcdctl role help [command]
)"},
    {"auth_app_help", R"(NAME:
   etcdctl auth - overall auth controls

USAGE:
   etcdctl auth [global options] command [command options] [arguments...]

VERSION:
   3.4.23

COMMANDS:
   enable   enable auth access controls
   disable  disable auth access controls

GLOBAL OPTIONS:
   --help, -h  show help
)"},
    {"auth_help", R"(NAME:
   etcdctl auth help - Shows a list of commands or help for one command

USAGE:
   etcdctl auth help [command]
)"},
    {"member_update", R"(NAME:
   etcdctl member update - update an existing member in the etcd cluster

USAGE:
   etcdctl member update <memberID> <peerURLs>
)"},
    {"user_app", R"(NAME:
   etcdctl user - user add, grant and revoke subcommands

USAGE:
   etcdctl user command [command options] [arguments...]

COMMANDS:
   add     add a new user for the etcd cluster
   get     get details for a user
   list    list all current users
   remove  remove a user for the etcd cluster
   grant   grant roles to an etcd user
   revoke  revoke roles for an etcd user
   passwd  change password for a user

OPTIONS:
   --help, -h  show help
   
)"},
    {"user_add", R"(NAME:
   etcdctl user add - add a new user for the etcd cluster

USAGE:
   etcdctl user add <user>
)"},
    {"user_get", R"(NAME:
   etcdctl user get - get details for a user

USAGE:
   etcdctl user get <user>
)"},
    {"user_list", R"(NAME:
   etcdctl user list - list all current users

USAGE:
   etcdctl user list <user>
)"},
    {"user_remove", R"(NAME:
   etcdctl user remove - remove a user for the etcd cluster

USAGE:
   etcdctl user remove <user>
)"},
    {"user_grant", R"(NAME:
   etcdctl user grant - grant roles to an etcd user

USAGE:
   etcdctl user grant [command options] <user>

OPTIONS:
   --roles value  List of roles to grant or revoke
   
)"},
    {"user_revoke", R"(NAME:
   etcdctl user revoke - revoke roles for an etcd user

USAGE:
   etcdctl user revoke [command options] <user>

OPTIONS:
   --roles value  List of roles to grant or revoke
   
)"},
    {"user_passwd", R"(NAME:
   etcdctl user passwd - change password for a user

USAGE:
   etcdctl user passwd <user>
)"},
    {"role_app", R"(NAME:
   etcdctl role - role add, grant and revoke subcommands

USAGE:
   etcdctl role command [command options] [arguments...]

COMMANDS:
   add     add a new role for the etcd cluster
   get     get details for a role
   list    list all roles
   remove  remove a role from the etcd cluster
   grant   grant path matches to an etcd role
   revoke  revoke path matches for an etcd role

OPTIONS:
   --help, -h  show help
   
)"},
    {"role_add", R"(NAME:
   etcdctl role add - add a new role for the etcd cluster

USAGE:
   etcdctl role add <role> 
)"},
    {"role_get", R"(NAME:
   etcdctl role get - get details for a role

USAGE:
   etcdctl role get <role>
)"},
    {"role_list", R"(NAME:
   etcdctl role list - list all roles

USAGE:
   etcdctl role list  
)"},
    {"role_remove", R"(NAME:
   etcdctl role remove - remove a role from the etcd cluster

USAGE:
   etcdctl role remove <role>
)"},
    {"role_grant", R"(NAME:
   etcdctl role grant - grant path matches to an etcd role

USAGE:
   etcdctl role grant [command options] <role>

OPTIONS:
   --path value       Path granted for the role to access
   --read             Grant read-only access
   --write            Grant write-only access
   --readwrite, --rw  Grant read-write access
   
)"},
    {"role_revoke", R"(NAME:
   etcdctl role revoke - revoke path matches for an etcd role

USAGE:
   etcdctl role revoke [command options] <role>

OPTIONS:
   --path value       Path revoked for the role to access
   --read             Revoke read access
   --write            Revoke write access
   --readwrite, --rw  Revoke read-write access
   
)"},
    {"auth_app", R"(NAME:
   etcdctl auth - overall auth controls

USAGE:
   etcdctl auth command [command options] [arguments...]

COMMANDS:
   enable   enable auth access controls
   disable  disable auth access controls

OPTIONS:
   --help, -h  show help
   
)"},
    {"auth_enable", R"(NAME:
   etcdctl auth enable - enable auth access controls

USAGE:
   etcdctl auth enable  
)"},
    {"auth_disable", R"(NAME:
   etcdctl auth disable - disable auth access controls

USAGE:
   etcdctl auth disable  
)"},
}};
// clang-format on

}  // namespace

std::optional<std::string_view> help_text(std::string_view topic) {
  for (const auto& [name, text] : kHelp) {
    if (name == topic) return text;
  }
  return std::nullopt;
}

}  // namespace kvd::cli
