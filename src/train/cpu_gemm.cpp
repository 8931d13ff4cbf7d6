#include "vae_ddp/train/cpu_gemm.h"

#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include <c10/util/BFloat16.h>
#include <oneapi/dnnl/dnnl.hpp>

#include "vae_ddp/base/cpu_info.h"

namespace vae::cpu {

namespace {

using dnnl::memory;
using Key = std::tuple<int64_t, int64_t, int64_t, bool, bool, bool, bool, bool, bool>;

struct Cached {
  dnnl::matmul primitive;
  memory::desc a, b, bias, c, scratchpad;
  bool bf16_operands = false;  // A and B are passed as bf16
};

// The primitives are shared; CpuStep runs them from several threads at once (one chunk of
// rows each), so each thread has its own stream and scratchpad (user scratchpad mode:
// a library-owned scratchpad may be one global buffer).
struct Context {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  std::map<Key, Cached> cache;
  std::mutex mutex;
};

struct PerThread {
  dnnl::stream stream;
  std::vector<char> scratchpad;
  std::vector<c10::BFloat16> a16, b16;  // bf16 operands (native)
  std::vector<float> a32, b32;          // bf16-rounded operands (emulated)
};

Context& context() {
  static Context ctx;
  return ctx;
}

// `bf16`: A and B are bf16 in memory; C and the bias are fp32 either way.
Cached build(Context& ctx, const GemmOp& op, int64_t m, int64_t n, int64_t k, bool has_bias, bool bf16) {
  using dt = memory::data_type;
  const dt in = bf16 ? dt::bf16 : dt::f32;
  // Row-major with strides: a transposed operand is the same memory read column-wise.
  const memory::desc a({m, k}, in, op.trans_a ? memory::dims{1, m} : memory::dims{k, 1});
  const memory::desc b({k, n}, in, op.trans_b ? memory::dims{1, k} : memory::dims{n, 1});
  const memory::desc c({m, n}, dt::f32, memory::dims{n, 1});
  const memory::desc bias = has_bias ? memory::desc({1, n}, dt::f32, memory::dims{n, 1}) : memory::desc();
  dnnl::post_ops post;
  if (op.accumulate) post.append_sum(1.0f);
  if (op.relu) post.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
  dnnl::primitive_attr attr;
  attr.set_post_ops(post);
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  const auto desc = has_bias ? dnnl::matmul::desc(a, b, bias, c) : dnnl::matmul::desc(a, b, c);
  const dnnl::matmul::primitive_desc pd(desc, attr, ctx.engine);
  return {dnnl::matmul(pd), a, b, bias, c, pd.scratchpad_desc(), bf16};
}

// oneDNN runs bf16 matmuls as such where the CPU has bf16 arithmetic and this oneDNN has
// kernels for it (Debian's oneDNN 2.6: AVX512-BF16 and AMX); asked once.
bool bf16_matmul_available() {
  static const bool available = [] {
    if (!cpu_info().native_bf16) return false;
    try {
      build(context(), GemmOp{}, 16, 16, 16, /*has_bias=*/true, /*bf16=*/true);
      return true;
    } catch (const dnnl::error&) {
      return false;
    }
  }();
  return available;
}

// The n values at `from` rounded to bf16 (to nearest even), stored as T: bf16 itself
// (native), or fp32 again (emulated).
template <class T>
const T* rounded_to_bf16(const float* from, int64_t n, std::vector<T>& to) {
  to.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) to[static_cast<size_t>(i)] = static_cast<T>(c10::BFloat16(from[i]));
  return to.data();
}

}  // namespace

void gemm(const GemmOp& op, int64_t m, int64_t n, int64_t k, const float* a, const float* b, const float* bias,
          float* c) {
  Context& ctx = context();
  const bool native_bf16 = op.bf16 && bf16_matmul_available();
  const Key key{m, n, k, op.trans_a, op.trans_b, op.relu, op.accumulate, bias != nullptr, native_bf16};
  const Cached* entry = nullptr;
  {
    std::lock_guard<std::mutex> lock(ctx.mutex);
    auto it = ctx.cache.find(key);
    if (it == ctx.cache.end()) {
      Cached built;
      try {
        built = build(ctx, op, m, n, k, bias != nullptr, native_bf16);
      } catch (const dnnl::error&) {
        if (!native_bf16) throw;
        built = build(ctx, op, m, n, k, bias != nullptr, false);  // no bf16 kernel for this layout: emulated
      }
      it = ctx.cache.emplace(key, std::move(built)).first;
    }
    entry = &it->second;
  }
  thread_local PerThread mine{dnnl::stream(ctx.engine), {}, {}, {}, {}, {}};
  // oneDNN reads through the operands' handles only; the const_casts do not write.
  void* pa = const_cast<float*>(a);
  void* pb = const_cast<float*>(b);
  if (entry->bf16_operands) {
    pa = const_cast<c10::BFloat16*>(rounded_to_bf16(a, m * k, mine.a16));
    pb = const_cast<c10::BFloat16*>(rounded_to_bf16(b, k * n, mine.b16));
  } else if (op.bf16) {
    pa = const_cast<float*>(rounded_to_bf16(a, m * k, mine.a32));
    pb = const_cast<float*>(rounded_to_bf16(b, k * n, mine.b32));
  }
  memory ma(entry->a, ctx.engine, pa);
  memory mb(entry->b, ctx.engine, pb);
  memory mc(entry->c, ctx.engine, c);
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}};
  if (bias) args.emplace(DNNL_ARG_BIAS, memory(entry->bias, ctx.engine, const_cast<float*>(bias)));
  const size_t scratch = entry->scratchpad.get_size();
  if (scratch > 0) {
    if (mine.scratchpad.size() < scratch) mine.scratchpad.resize(scratch);
    args.emplace(DNNL_ARG_SCRATCHPAD, memory(entry->scratchpad, ctx.engine, mine.scratchpad.data()));
  }
  entry->primitive.execute(mine.stream, args);
  mine.stream.wait();
}

const char* gemm_library() { return "oneDNN"; }

bool gemm_bf16_native() { return bf16_matmul_available(); }

}  // namespace vae::cpu
