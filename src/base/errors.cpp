#include "vae_ddp/base/errors.h"

#include <cstdio>

#include <c10/util/Exception.h>

namespace vae {

std::string error_line(const std::exception& e) {
  const auto* c10e = dynamic_cast<const c10::Error*>(&e);
  const std::string msg = c10e ? c10e->what_without_backtrace() : e.what();
  return msg.substr(0, msg.find('\n'));
}

int exit_code_for(const std::exception& e) { return dynamic_cast<const UsageError*>(&e) ? kExitUsage : kExitRuntime; }

void print_warning(const std::string& line) {
  std::fprintf(stderr, "vae_ddp: warning: %s\n", line.c_str());
  std::fflush(stderr);
}

void print_error(const std::string& line, int rank) {
  if (rank > 0) {
    std::fprintf(stderr, "vae_ddp: error: [rank %d] %s\n", rank, line.c_str());
  } else {
    std::fprintf(stderr, "vae_ddp: error: %s\n", line.c_str());
  }
  std::fflush(stderr);
}

}  // namespace vae
