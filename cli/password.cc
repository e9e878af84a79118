#include "cli/password.h"

#include <signal.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <optional>

#include "cli/output.h"

namespace kvd::cli {
namespace {

// What stty prints when standard input is not a terminal (GNU coreutils, as on Debian).
constexpr char kNotATerminal[] = "stty: 'standard input': Inappropriate ioctl for device\n";

// The terminal state to restore from a signal handler; valid while `saved_valid` is set.
termios saved_termios{};
volatile sig_atomic_t saved_valid = 0;

constexpr int kSignals[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM};

void on_signal(int) {
  if (saved_valid) tcsetattr(STDIN_FILENO, TCSADRAIN, &saved_termios);
  _exit(255);  // Go's os.Exit(-1)
}

// Go's text of a read error on os.Stdin.
std::string read_error_text(int err) {
  std::string s = std::strerror(err);
  if (!s.empty() && s[0] >= 'A' && s[0] <= 'Z') s[0] = static_cast<char>(s[0] - 'A' + 'a');
  return "read /dev/stdin: " + s;
}

}  // namespace

std::variant<std::string, PasswordError> ask_password(const std::string& prompt) {
  if (!prompt.empty()) write_stdout(prompt);

  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  struct sigaction old[std::size(kSignals)];
  for (std::size_t i = 0; i < std::size(kSignals); ++i) sigaction(kSignals[i], &sa, &old[i]);

  // Echo off (as `stty -echo`: only ECHO changes).
  const bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved_termios) == 0;
  if (tty) {
    termios quiet = saved_termios;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    saved_valid = 1;
    tcsetattr(STDIN_FILENO, TCSADRAIN, &quiet);
  } else {
    write_stderr(kNotATerminal);
  }

  // One byte at a time, so that what follows the line stays on standard input for the command
  // (a value read from stdin after the password).
  std::string line;
  std::optional<PasswordError> error;
  for (;;) {
    char b = 0;
    ssize_t n = ::read(STDIN_FILENO, &b, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      error = PasswordError{read_error_text(errno)};
      break;
    }
    if (n == 0 || b == '\n') break;
    line += b;
  }

  if (tty) {
    tcsetattr(STDIN_FILENO, TCSADRAIN, &saved_termios);
    saved_valid = 0;
  } else {
    write_stderr(kNotATerminal);
  }
  for (std::size_t i = 0; i < std::size(kSignals); ++i) sigaction(kSignals[i], &old[i], nullptr);
  write_stdout("\n");

  if (error) return *error;
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return line;
}

}  // namespace kvd::cli
