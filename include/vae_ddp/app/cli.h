// The command line: `vae_ddp [train|eval|sample] [options]`.
#pragma once

#include <string>

namespace vae {

// Parses, validates and dispatches. Returns the process exit code (errors.h); never throws.
int run_cli(int argc, char** argv);

// The README's option table (Markdown), made from the one description of each option
// (config_fields()) and Config{}'s defaults; config_test's ReadmeTest keeps the README
// equal to it.
std::string option_table_markdown();

}  // namespace vae
