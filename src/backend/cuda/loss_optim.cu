// Fused softmax cross-entropy, fused AdamW, and the fp64 reductions returned to the host.
#include "backend/cuda/kernels.h"

#include <algorithm>
#include <vector>

namespace tsumugi::backend::TSU_CUDA_NS {
namespace {

constexpr int kCeThreads = 512;
constexpr int kCeWarps = kCeThreads / 32;

// Online softmax state: running max m and sum s of exp(x - m).
__device__ __forceinline__ void softmax_add(float& m, float& s, float v) {
  if (v > m) {
    s = s * expf(m - v) + 1.f;  // s = 0 when m = -inf: 0 * 0
    m = v;
  } else {
    s += expf(v - m);  // NaN propagates
  }
}

__device__ __forceinline__ void softmax_merge(float& m, float& s, float m2, float s2) {
  if (m2 == -INFINITY) return;
  if (m == -INFINITY) {
    m = m2;
    s = s2;
    return;
  }
  const float M = fmaxf(m, m2);
  s = s * expf(m - M) + s2 * expf(m2 - M);
  m = M;
}

// One block per row. VEC: the row is read and written as 16-byte vectors of 8 bf16.
template <bool VEC>
__global__ void __launch_bounds__(kCeThreads)
    cross_entropy_kernel(float* losses, bf16* logits, const int* targets, int V, float dloss) {
  __shared__ float red_m[kCeWarps], red_s[kCeWarps];
  __shared__ float sh_lse;
  const int row = blockIdx.x;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  bf16* x = logits + static_cast<std::size_t>(row) * V;
  const int tgt = targets[row];
  // Read before the barrier below: the gradient pass overwrites the row.
  float target_logit = 0.f;
  if (threadIdx.x == 0 && tgt >= 0 && tgt < V) target_logit = ld(x + tgt);

  float m = -INFINITY, s = 0.f;
  if (VEC) {
    const uint4* xv = reinterpret_cast<const uint4*>(x);
    for (int i = threadIdx.x; i < V / 8; i += kCeThreads) {
      const uint4 u = xv[i];
      const bf16* e = reinterpret_cast<const bf16*>(&u);
#pragma unroll
      for (int k = 0; k < 8; ++k) softmax_add(m, s, ld(e + k));
    }
  } else {
    for (int i = threadIdx.x; i < V; i += kCeThreads) softmax_add(m, s, ld(x + i));
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, o);
    const float s2 = __shfl_xor_sync(0xffffffffu, s, o);
    softmax_merge(m, s, m2, s2);
  }
  if (lane == 0) {
    red_m[warp] = m;
    red_s[warp] = s;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    float M = red_m[0], S = red_s[0];
    for (int w = 1; w < kCeWarps; ++w) softmax_merge(M, S, red_m[w], red_s[w]);
    const float lse = M + logf(S);
    sh_lse = lse;
    float loss = 0.f;
    if (tgt >= V) loss = quiet_nan();
    else if (tgt >= 0) loss = lse - target_logit;
    losses[row] = loss;
  }
  __syncthreads();
  if (dloss == 0.f) return;
  const float lse = sh_lse;
  const bool ignored = tgt < 0;
  if (VEC) {
    uint4* xv = reinterpret_cast<uint4*>(x);
    for (int i = threadIdx.x; i < V / 8; i += kCeThreads) {
      uint4 u = xv[i];
      bf16* e = reinterpret_cast<bf16*>(&u);
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        const int j = i * 8 + k;
        const float g = ignored ? 0.f : dloss * (expf(ld(e + k) - lse) - (j == tgt ? 1.f : 0.f));
        st(e + k, g);
      }
      xv[i] = u;
    }
  } else {
    for (int j = threadIdx.x; j < V; j += kCeThreads) {
      const float g = ignored ? 0.f : dloss * (expf(ld(x + j) - lse) - (j == tgt ? 1.f : 0.f));
      st(x + j, g);
    }
  }
}

// Sum of v over the block's kCeThreads threads (every thread gets it); `red` is kCeWarps floats.
__device__ __forceinline__ float ce_block_sum(float v, float* red) {
  v = warp_sum(v);
  if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = v;
  __syncthreads();
  float t = 0.f;
#pragma unroll
  for (int w = 0; w < kCeWarps; ++w) t += red[w];  // the same order in every thread
  __syncthreads();
  return t;
}
__device__ __forceinline__ float ce_block_max(float v, float* red) {
  v = warp_max(v);
  if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = v;
  __syncthreads();
  float t = red[0];
#pragma unroll
  for (int w = 1; w < kCeWarps; ++w) t = fmaxf(t, red[w]);
  __syncthreads();
  return t;
}

// The row-in-shared-memory variant (V * 2 bytes of dynamic shared memory, V % 8 == 0): the logits
// are read from global memory once and the gradients written once; the max, the sum of
// exponentials and the gradients are three passes over shared memory. Taking the max first keeps
// the sum free of the online softmax's serial rescaling (the two-pass kernel above spends most
// of its time in that dependency chain, not waiting for memory).
__global__ void __launch_bounds__(kCeThreads)
    cross_entropy_smem_kernel(float* losses, bf16* logits, const int* targets, int V, float dloss) {
  TSU_DYNAMIC_SMEM(smem);
  uint4* row_s = reinterpret_cast<uint4*>(smem);
  __shared__ float red[kCeWarps];
  const int nv = V / 8;
  uint4* xv = reinterpret_cast<uint4*>(logits + static_cast<std::size_t>(blockIdx.x) * V);
  const int tgt = targets[blockIdx.x];
  // fmaxf drops a NaN logit from the max, but the sum of exponentials below turns it into a NaN
  // loss (and gradients), as the two-pass kernel does.
  float m = -INFINITY;
  // Unrolled so that each thread has several 16-byte loads in flight (two blocks fit an SM).
#pragma unroll 4
  for (int i = threadIdx.x; i < nv; i += kCeThreads) {
    const uint4 u = xv[i];
    row_s[i] = u;
    const bf16* e = reinterpret_cast<const bf16*>(&u);
#pragma unroll
    for (int k = 0; k < 8; ++k) m = fmaxf(m, ld(e + k));
  }
  m = ce_block_max(m, red);
  const float m2 = m * kLog2e;
  float part[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};  // independent sums: no serial chain
  for (int i = threadIdx.x; i < nv; i += kCeThreads) {
    const uint4 u = row_s[i];
    const bf16* e = reinterpret_cast<const bf16*>(&u);
#pragma unroll
    for (int k = 0; k < 8; ++k) part[k] += exp2f(fmaf(ld(e + k), kLog2e, -m2));
  }
  float sum = 0.f;
#pragma unroll
  for (int k = 0; k < 8; ++k) sum += part[k];
  sum = ce_block_sum(sum, red);
  const float lse = m + logf(sum);
  if (threadIdx.x == 0) {
    float loss = 0.f;
    if (tgt >= V) loss = quiet_nan();
    else if (tgt >= 0) loss = lse - ld(reinterpret_cast<const bf16*>(row_s) + tgt);
    losses[blockIdx.x] = loss;
  }
  if (dloss == 0.f) return;
  const bool ignored = tgt < 0;
  const float lse2 = lse * kLog2e;
  for (int i = threadIdx.x; i < nv; i += kCeThreads) {
    uint4 u = row_s[i];
    bf16* e = reinterpret_cast<bf16*>(&u);
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      const int j = i * 8 + k;
      const float g =
          ignored ? 0.f : dloss * (exp2f(fmaf(ld(e + k), kLog2e, -lse2)) - (j == tgt ? 1.f : 0.f));
      st(e + k, g);
    }
    xv[i] = u;
  }
}

int g_ce_smem_limit = 0;  // set by cross_entropy_init: the largest row kept in shared memory

template <class TP, class TG>
__device__ __forceinline__ void adamw_element(std::size_t i, float* master, TP* param,
                                              const TG* grad, float* m, float* v,
                                              const AdamWArgs& a, float decay, bool write_param) {
  const float g = ld(grad + i) * a.grad_scale;
  const float mi = m[i] * a.beta1 + (1.f - a.beta1) * g;
  const float vi = v[i] * a.beta2 + (1.f - a.beta2) * g * g;
  m[i] = mi;
  v[i] = vi;
  float w = master[i] * decay;
  w -= a.step_size * mi / (sqrtf(vi) / a.bc2_sqrt + a.eps);
  master[i] = w;
  if (write_param) st(param + i, w);
}

template <class TP, class TG>
__global__ void adamw_kernel(float* master, TP* param, const TG* grad, float* m, float* v,
                             std::size_t n, AdamWArgs a, bool write_param) {
  TSU_GRID_STRIDE(i, n) { adamw_element(i, master, param, grad, m, v, a, a.decay, write_param); }
}

// One block per chunk of the table, so the ~150 tensors of a model take one launch.
template <class TP, class TG>
__global__ void adamw_chunks_kernel(const AdamWChunk* chunks, float* master, TP* param,
                                    const TG* grad, float* m, float* v, AdamWArgs a,
                                    AdamWDecays decays, bool write_param) {
  const AdamWChunk ch = chunks[blockIdx.x];
  const float decay = decays.v[ch.decay_index];
  for (uint32_t j = threadIdx.x; j < ch.len; j += blockDim.x)
    adamw_element(ch.start + j, master, param, grad, m, v, a, decay, write_param);
}

constexpr int kRedThreads = 256;
constexpr int kRedBlocks = 1024;

// The number of partials depends on n only, so a sum is bit-identical on every GPU.
unsigned reduce_blocks(std::size_t n) {
  return static_cast<unsigned>(
      std::max<std::size_t>(1, std::min<std::size_t>(kRedBlocks, (n + kRedThreads - 1) / kRedThreads)));
}

// Reads 16 bytes per thread and step when x is 16-byte aligned (the gradient buffers are): with
// 2-byte loads the gradient norm of GPT-2 124M ran at ~665 GB/s, a sixth of the GPU's bandwidth.
template <class T, bool SQ>
__global__ void reduce_partial_kernel(const T* x, std::size_t n, double* partial) {
  __shared__ double red[kRedThreads / 32];
  constexpr int kVec = 16 / sizeof(T);
  double acc = 0.0;
  std::size_t done = 0;
  if (reinterpret_cast<std::uintptr_t>(x) % 16 == 0) {
    const std::size_t nv = n / kVec;
    const uint4* xv = reinterpret_cast<const uint4*>(x);
    TSU_GRID_STRIDE(i, nv) {
      const uint4 u = xv[i];
      const T* e = reinterpret_cast<const T*>(&u);
#pragma unroll
      for (int k = 0; k < kVec; ++k) {
        const double v = ld(e + k);
        acc += SQ ? v * v : v;
      }
    }
    done = nv * kVec;
  }
  TSU_GRID_STRIDE(i, n - done) {
    const double v = ld(x + done + i);
    acc += SQ ? v * v : v;
  }
  acc = warp_sum(acc);
  if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    double t = 0.0;
    for (int w = 0; w < kRedThreads / 32; ++w) t += red[w];
    partial[blockIdx.x] = t;
  }
}

__global__ void reduce_final_kernel(const double* partial, int count, double* result) {
  __shared__ double red[kRedThreads / 32];
  double acc = 0.0;
  for (int i = threadIdx.x; i < count; i += kRedThreads) acc += partial[i];
  acc = warp_sum(acc);
  if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    double t = 0.0;
    for (int w = 0; w < kRedThreads / 32; ++w) t += red[w];
    *result = t;
  }
}

}  // namespace

void cross_entropy_init(int max_smem_optin) {
  // Leave room for the kernel's static shared memory.
  const int limit = max_smem_optin - 1024;
  if (limit <= 0) return;
  auto* k = &cross_entropy_smem_kernel;
  TSU_CUDA_CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, limit));
  g_ce_smem_limit = limit;
}

void cross_entropy(const Ctx& c, float* losses, bf16* logits, const int* targets, int N, int V,
                   float dloss) {
  if (N == 0) return;
  const bool vec = V % 8 == 0 && reinterpret_cast<std::uintptr_t>(logits) % 16 == 0;
  const std::size_t row_bytes = static_cast<std::size_t>(V) * sizeof(bf16);
  if (vec && !c.ce_two_pass && row_bytes <= static_cast<std::size_t>(g_ce_smem_limit)) {
    auto* k = &cross_entropy_smem_kernel;
    TSU_LAUNCH(k, static_cast<unsigned>(N), kCeThreads, row_bytes, c.stream, losses, logits,
               targets, V, dloss);
    return;
  }
  if (vec) {
    auto* k = &cross_entropy_kernel<true>;
    TSU_LAUNCH(k, static_cast<unsigned>(N), kCeThreads, 0, c.stream, losses, logits, targets, V,
               dloss);
  } else {
    auto* k = &cross_entropy_kernel<false>;
    TSU_LAUNCH(k, static_cast<unsigned>(N), kCeThreads, 0, c.stream, losses, logits, targets, V,
               dloss);
  }
}

void adamw(const Ctx& c, float* master, void* param, DType pt, const void* grad, DType gt,
           float* m, float* v, std::size_t n, const AdamWArgs& a) {
  if (n == 0) return;
  const bool write_param = param != nullptr && param != static_cast<void*>(master);
  with_float_type(pt, [&](auto tp) {
    with_float_type(gt, [&](auto tg) {
      using TP = decltype(tp);
      using TG = decltype(tg);
      auto* k = &adamw_kernel<TP, TG>;
      TSU_LAUNCH(k, grid_for(n, 256, c.sm_count), 256, 0, c.stream, master,
                 static_cast<TP*>(param), static_cast<const TG*>(grad), m, v, n, a, write_param);
    });
  });
}

std::vector<AdamWChunk> adamw_chunk_table(const std::vector<AdamWSegment>& segments,
                                          const std::vector<float>& decays) {
  std::vector<AdamWChunk> table;
  for (const AdamWSegment& s : segments) {
    if (s.count == 0) continue;
    const auto d = std::find(decays.begin(), decays.end(), s.weight_decay) - decays.begin();
    for (std::size_t at = 0; at < s.count; at += kAdamWChunk) {
      AdamWChunk ch;
      ch.start = s.offset + at;
      ch.len = static_cast<uint32_t>(std::min<std::size_t>(kAdamWChunk, s.count - at));
      ch.decay_index = static_cast<uint32_t>(d);
      table.push_back(ch);
    }
  }
  return table;
}

void adamw_chunks(const Ctx& c, const AdamWChunk* table, std::size_t nchunks, float* master,
                  void* param, DType pt, const void* grad, DType gt, float* m, float* v,
                  const AdamWArgs& a, const AdamWDecays& decays) {
  if (nchunks == 0) return;
  const bool write_param = param != nullptr && param != static_cast<void*>(master);
  with_float_type(pt, [&](auto tp) {
    with_float_type(gt, [&](auto tg) {
      using TP = decltype(tp);
      using TG = decltype(tg);
      auto* k = &adamw_chunks_kernel<TP, TG>;
      TSU_LAUNCH(k, static_cast<unsigned>(nchunks), 256, 0, c.stream, table, master,
                 static_cast<TP*>(param), static_cast<const TG*>(grad), m, v, a, decays,
                 write_param);
    });
  });
}

std::size_t reduce_scratch_bytes() { return kRedBlocks * sizeof(double); }

void reduce_sum(const Ctx& c, const void* x, DType xt, std::size_t n, bool squares,
                double* result_dev, void* scratch) {
  double* partial = static_cast<double*>(scratch);
  const unsigned blocks = reduce_blocks(n);
  with_float_type(xt, [&](auto tx) {
    using T = decltype(tx);
    auto* k = squares ? &reduce_partial_kernel<T, true> : &reduce_partial_kernel<T, false>;
    TSU_LAUNCH(k, blocks, kRedThreads, 0, c.stream, static_cast<const T*>(x), n, partial);
  });
  auto* f = &reduce_final_kernel;
  TSU_LAUNCH(f, 1, kRedThreads, 0, c.stream, static_cast<const double*>(partial),
             static_cast<int>(blocks), result_dev);
}

}  // namespace tsumugi::backend::TSU_CUDA_NS
