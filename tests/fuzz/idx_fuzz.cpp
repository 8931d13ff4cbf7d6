// libFuzzer target: the IDX reader on arbitrary bytes. A UsageError is the expected answer
// to a bad file; anything else (a crash, a sanitizer report, another exception) is a bug.
#include <cstdint>
#include <vector>

#include "vae_ddp/base/errors.h"
#include "vae_ddp/data/mnist.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<uint8_t> bytes(data, data + size);
  for (int rank : {1, 3}) {
    try {
      vae::parse_idx(bytes, rank, "fuzz.idx");
    } catch (const vae::UsageError&) {
    }
  }
  return 0;
}
