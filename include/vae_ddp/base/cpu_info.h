// What this CPU can do, where a choice depends on it: its name and widest vector ISA (the
// start-up table and ./launch/bench print them) and whether it does bf16 arithmetic
// natively (AVX512-BF16 or AMX-BF16). Without either, bf16 math is emulated in fp32: no
// faster than fp32 on the fast path, and far slower through libtorch's bf16 autocast.
#pragma once

#include <string>

namespace vae {

struct CpuInfo {
  std::string model;         // "AMD EPYC 7B13" (cpuid's brand string; "unknown CPU" elsewhere)
  std::string isa;           // "AMX-BF16", "AVX512-BF16", "AVX-512", "AVX2", "SSE4.2" or "baseline"
  bool native_bf16 = false;  // AVX512-BF16 or AMX-BF16, with the OS saving their registers
};

// Detected once, from cpuid and xgetbv. The environment variable VAE_CPU_NATIVE_BF16=0 or
// =1 overrides native_bf16 (the tests use it to play either kind of CPU).
const CpuInfo& cpu_info();

// "AMD EPYC 7B13 (AVX2, bf16 emulated)": one line for logs and the bench.
std::string describe_cpu(const CpuInfo& cpu);

}  // namespace vae
