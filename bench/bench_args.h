// The benchmarks' command lines: vae_ddp's own flags (--batch-size, --hidden-dims,
// --latent-dim, --threads ...), read into a Config through the one table of fields.
#pragma once

#include <string>

#include "vae_ddp/base/config.h"

namespace vae::bench {

// `c` with each `--flag value` pair of argv applied; flags that are not fields are ignored.
inline Config parse_flags(int argc, char** argv, Config c) {
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    for (const auto& f : config_fields()) {
      if (flag == std::string("--") + f.name) field_from_string(c, f, value, flag);
    }
  }
  return c;
}

}  // namespace vae::bench
