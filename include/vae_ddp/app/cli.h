// The command line: `vae_ddp [train|eval|sample] [options]`.
#pragma once

namespace vae {

// Parses, validates and dispatches. Returns the process exit code (errors.h); never throws.
int run_cli(int argc, char** argv);

}  // namespace vae
