// Logging: only rank 0 speaks at info level; other ranks log warnings and errors with
// their rank in the line. Info goes to stdout, warnings and errors to stderr.
#pragma once

namespace vae {

void init_logging(int rank);

}  // namespace vae
