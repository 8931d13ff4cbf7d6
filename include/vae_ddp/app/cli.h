// The command line: `vae_ddp [SUBCOMMAND] [options]` (train when none is named).
#pragma once

#include <string>

namespace vae {

// --config PATH as read: PATH, or where a recipe of configs/ was renamed and PATH names its
// old file, the new one (with a warning; the old names go in the next release).
std::string recipe_path(const std::string& path);

// Parses, validates and dispatches. Returns the process exit code (errors.h); never throws.
int run_cli(int argc, char** argv);

// docs/options.md's option table (Markdown), made from the one description of each option
// (config_fields.inc) and Config{}'s defaults; config_test's OptionsPageTest keeps the page
// equal to it.
std::string option_table_markdown();

}  // namespace vae
