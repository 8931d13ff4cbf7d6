// Error kinds, the exit codes they map to, and the one line a user sees for each.
#pragma once

#include <stdexcept>
#include <string>

namespace vae {

// Something the user can fix: a flag, a config key, a data or checkpoint file.
// main() prints its message as one line and exits with kExitUsage.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

constexpr int kExitOk = 0;
constexpr int kExitRuntime = 1;  // anything else that went wrong while running
constexpr int kExitUsage = 2;    // bad flag, config, data or checkpoint

// The first line of an error's message, without libtorch's C++ backtrace.
std::string error_line(const std::exception& e);
// kExitUsage for UsageError, kExitRuntime for anything else.
int exit_code_for(const std::exception& e);
// Prints "vae_ddp: error: <line>" to stderr, with "[rank N] " before the line when
// rank > 0, and flushes.
void print_error(const std::string& line, int rank = 0);
// Prints "vae_ddp: warning: <line>" to stderr (before logging is set up: a flag or file
// that is still read under an old name).
void print_warning(const std::string& line);

}  // namespace vae
