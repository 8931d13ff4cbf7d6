// Error kinds and the exit codes they map to.
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

}  // namespace vae
