// Logging: only rank 0 speaks at info level; other ranks log warnings and errors with
// their rank in the line.
#pragma once

namespace vae {

void init_logging(int rank);

}  // namespace vae
