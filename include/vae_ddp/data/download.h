// --download: fetch the gzip MNIST files from the public mirrors (needs internet).
#pragma once

#include <string>

namespace vae {

// Downloads every canonical MNIST file missing from `dir` (neither raw nor .gz present)
// as `<name>.gz`, trying each mirror in turn; the md5 is checked when the data is loaded.
// Throws std::runtime_error naming the file and the last network error when every
// mirror fails (e.g. offline), UsageError when `dir` cannot be created.
void download_mnist(const std::string& dir);

}  // namespace vae
