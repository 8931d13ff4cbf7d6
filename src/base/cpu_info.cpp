#include "vae_ddp/base/cpu_info.h"

#include <cstdlib>
#include <cstring>
#include <string>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define VAE_X86 1
#endif

namespace vae {

namespace {

#ifdef VAE_X86
struct Regs {
  unsigned a = 0, b = 0, c = 0, d = 0;
};

Regs cpuid(unsigned leaf, unsigned sub = 0) {
  Regs r;
  if (!__get_cpuid_count(leaf, sub, &r.a, &r.b, &r.c, &r.d)) return {};
  return r;
}

bool bit(unsigned reg, int n) { return (reg >> n) & 1u; }

// XCR0: which register states the OS saves (so the instructions using them may run).
unsigned long long xcr0() {
  if (!bit(cpuid(1).c, 27)) return 0;  // no OSXSAVE
  unsigned lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<unsigned long long>(hi) << 32) | lo;
}

std::string brand() {
  if (cpuid(0x80000000).a < 0x80000004) return "unknown CPU";
  char name[49] = {};
  for (unsigned i = 0; i < 3; ++i) {
    const Regs r = cpuid(0x80000002 + i);
    std::memcpy(name + 16 * i, &r, 16);
  }
  std::string s(name);
  const auto first = s.find_first_not_of(' '), last = s.find_last_not_of(' ');
  return first == std::string::npos ? "unknown CPU" : s.substr(first, last - first + 1);
}

CpuInfo detect() {
  CpuInfo info;
  info.model = brand();
  const unsigned long long xcr = xcr0();
  const bool avx_os = (xcr & 0x6) == 0x6, avx512_os = (xcr & 0xe6) == 0xe6, amx_os = (xcr & 0x60000) == 0x60000;
  const Regs l1 = cpuid(1), l7 = cpuid(7, 0), l71 = cpuid(7, 1);
  const bool avx2 = avx_os && bit(l7.b, 5), avx512 = avx512_os && bit(l7.b, 16);
  const bool avx512_bf16 = avx512 && bit(l71.a, 5), amx_bf16 = amx_os && bit(l7.d, 22);
  info.native_bf16 = avx512_bf16 || amx_bf16;
  info.isa = amx_bf16        ? "AMX-BF16"
             : avx512_bf16   ? "AVX512-BF16"
             : avx512        ? "AVX-512"
             : avx2          ? "AVX2"
             : bit(l1.c, 20) ? "SSE4.2"
                             : "baseline";
  return info;
}
#else
CpuInfo detect() { return {"unknown CPU", "baseline", false}; }
#endif

}  // namespace

const CpuInfo& cpu_info() {
  static const CpuInfo info = [] {
    CpuInfo i = detect();
    if (const char* forced = std::getenv("VAE_CPU_NATIVE_BF16")) i.native_bf16 = std::string(forced) == "1";
    return i;
  }();
  return info;
}

std::string describe_cpu(const CpuInfo& cpu) {
  return cpu.model + " (" + cpu.isa + ", bf16 " + (cpu.native_bf16 ? "native" : "emulated") + ")";
}

}  // namespace vae
