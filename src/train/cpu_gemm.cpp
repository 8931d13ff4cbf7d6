#include "vae_ddp/train/cpu_gemm.h"

#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include <oneapi/dnnl/dnnl.hpp>

namespace vae::cpu {

namespace {

using dnnl::memory;
using Key = std::tuple<int64_t, int64_t, int64_t, bool, bool, bool, bool, bool>;

struct Cached {
  dnnl::matmul primitive;
  memory::desc a, b, bias, c, scratchpad;
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
};

Context& context() {
  static Context ctx;
  return ctx;
}

Cached build(Context& ctx, const GemmOp& op, int64_t m, int64_t n, int64_t k, bool has_bias) {
  using dt = memory::data_type;
  // Row-major with strides: a transposed operand is the same memory read column-wise.
  const memory::desc a({m, k}, dt::f32, op.trans_a ? memory::dims{1, m} : memory::dims{k, 1});
  const memory::desc b({k, n}, dt::f32, op.trans_b ? memory::dims{1, k} : memory::dims{n, 1});
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
  return {dnnl::matmul(pd), a, b, bias, c, pd.scratchpad_desc()};
}

}  // namespace

void gemm(const GemmOp& op, int64_t m, int64_t n, int64_t k, const float* a, const float* b, const float* bias,
          float* c) {
  Context& ctx = context();
  const Key key{m, n, k, op.trans_a, op.trans_b, op.relu, op.accumulate, bias != nullptr};
  const Cached* entry = nullptr;
  {
    std::lock_guard<std::mutex> lock(ctx.mutex);
    auto it = ctx.cache.find(key);
    if (it == ctx.cache.end()) it = ctx.cache.emplace(key, build(ctx, op, m, n, k, bias != nullptr)).first;
    entry = &it->second;
  }
  // oneDNN reads through these handles only; the const_casts do not write.
  memory ma(entry->a, ctx.engine, const_cast<float*>(a));
  memory mb(entry->b, ctx.engine, const_cast<float*>(b));
  memory mc(entry->c, ctx.engine, c);
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}};
  if (bias) args.emplace(DNNL_ARG_BIAS, memory(entry->bias, ctx.engine, const_cast<float*>(bias)));
  thread_local PerThread mine{dnnl::stream(ctx.engine), {}};
  const size_t scratch = entry->scratchpad.get_size();
  if (scratch > 0) {
    if (mine.scratchpad.size() < scratch) mine.scratchpad.resize(scratch);
    args.emplace(DNNL_ARG_SCRATCHPAD, memory(entry->scratchpad, ctx.engine, mine.scratchpad.data()));
  }
  entry->primitive.execute(mine.stream, args);
  mine.stream.wait();
}

const char* gemm_library() { return "oneDNN"; }

}  // namespace vae::cpu
