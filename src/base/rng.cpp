#include "vae_ddp/base/rng.h"

#include <ATen/CPUGeneratorImpl.h>

namespace vae {

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

uint64_t derive_seed(int64_t seed, Stream stream, int64_t a, int64_t b) {
  uint64_t h = splitmix64(static_cast<uint64_t>(seed));
  h = splitmix64(h ^ static_cast<uint64_t>(stream));
  h = splitmix64(h ^ static_cast<uint64_t>(a));
  return splitmix64(h ^ static_cast<uint64_t>(b));
}

at::Generator make_generator(int64_t seed, Stream stream, int64_t a, int64_t b) {
  return at::detail::createCPUGenerator(derive_seed(seed, stream, a, b));
}

}  // namespace vae
