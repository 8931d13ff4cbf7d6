// Seed derivation. Every random stream in training is a pure function of the user's
// seed and where we are (epoch, step, batch), not of how many numbers were drawn
// before: resuming from a checkpoint or changing the world size draws the same numbers.
#pragma once

#include <cstdint>

#include <ATen/core/Generator.h>

namespace vae {

enum class Stream : uint64_t {
  kInit = 1,
  kShuffle = 2,
  kNoise = 3,
  kEval = 4,
  kSample = 5,
  kImportance = 6,
  kBinarizeTrain = 7,
  kBinarizeEval = 8,
  kDropout = 9
};

// A 64-bit seed mixed (SplitMix64) from the user seed, a stream and two coordinates.
uint64_t derive_seed(int64_t seed, Stream stream, int64_t a = 0, int64_t b = 0);

// A fresh CPU generator seeded with derive_seed(...).
at::Generator make_generator(int64_t seed, Stream stream, int64_t a = 0, int64_t b = 0);

}  // namespace vae
