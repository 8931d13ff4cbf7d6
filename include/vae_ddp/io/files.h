// Files the user keeps (checkpoints, pictures, metrics) are written whole or not at all.
#pragma once

#include <functional>
#include <string>

namespace vae {

// Writes `data` to `path` atomically: temp file in the same directory, fsync, rename,
// fsync of the directory. Throws std::runtime_error naming the path on failure; the
// previous file at `path`, if any, is then untouched. `before_rename` (tests) runs
// between the fsync and the rename.
void write_file_atomic(const std::string& path, const std::string& data,
                       const std::function<void()>& before_rename = {});

}  // namespace vae
