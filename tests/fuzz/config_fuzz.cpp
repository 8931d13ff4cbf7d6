// libFuzzer target: the YAML config reader and validation on arbitrary text. A UsageError
// is the expected answer; anything else is a bug.
#include <cstdint>
#include <string>

#include "vae_ddp/base/config.h"
#include "vae_ddp/base/errors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    vae::Config c = vae::load_yaml_string(text, "fuzz.yaml", vae::Config{});
    vae::validate(c);
    // What was accepted round-trips.
    if (!(vae::load_yaml_string(vae::to_yaml(c), "round-trip", vae::Config{}) == c)) __builtin_trap();
  } catch (const vae::UsageError&) {
  }
  return 0;
}
