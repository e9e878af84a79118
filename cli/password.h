// Password prompts as etcdctl makes them (its speakeasy.Ask): the prompt goes to stdout, echo is
// turned off on standard input while one line is read from it, and a newline follows on stdout.
// etcdctl reads standard input, not /dev/tty, and turns echo off by running stty; when standard
// input is not a terminal the password is still read from it, and stty's complaint
// ("stty: 'standard input': Inappropriate ioctl for device") appears on stderr once before and
// once after the read. kvctl does the same with termios and without running stty.
// Single-threaded: installs signal handlers for the duration of the read.
#pragma once

#include <string>
#include <variant>

namespace kvd::cli {

struct PasswordError {
  std::string message;  // Go's error text, e.g. "read /dev/stdin: input/output error"
};

// Prints `prompt` (if not empty), reads one line from standard input with echo off and returns
// it without its "\n" (and one trailing "\r"); end of input ends the line. SIGINT, SIGTERM,
// SIGHUP or SIGQUIT during the read restore echo and exit with status 255, as etcdctl.
std::variant<std::string, PasswordError> ask_password(const std::string& prompt);

}  // namespace kvd::cli
