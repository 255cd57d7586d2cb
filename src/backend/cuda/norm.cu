// LayerNorm and RMSNorm: one warp per row, fp32 statistics. Weight/bias gradients are summed
// over rows by the deterministic column reduction in elementwise.cu.
#include "backend/cuda/kernels.h"

#include <algorithm>

namespace tsumugi::backend::TSU_CUDA_NS {
namespace {

constexpr int kRowsPerBlock = 8;  // one warp per row
constexpr unsigned kThreads = kRowsPerBlock * 32;

unsigned row_blocks(int N) { return static_cast<unsigned>((N + kRowsPerBlock - 1) / kRowsPerBlock); }

// Rows are read in 8-element (16-byte) vectors when VEC (C % 8 == 0, aligned pointers): lane
// `lane` takes elements [8 lane, 8 lane + 8), then +256, ...; else one element per lane.
#define TSU_ROW_LOOP(c) for (int c = VEC ? lane * 8 : lane; c < C; c += VEC ? 256 : 32)
#define TSU_ROW_LOAD(dst, p)                      \
  if (VEC) {                                      \
    load8((p), dst);                              \
  } else {                                        \
    dst[0] = ld(p);                               \
  }
constexpr int kW = 8;  // values per lane per step (only the first is used without VEC)

// Two passes over the row for mean then variance (no E[x^2] - mean^2 cancellation); the row
// stays in L1 between passes. out may alias inp: element c is read before it is written.
template <bool VEC>
__global__ void layernorm_forward_kernel(bf16* out, float* mean_out, float* rstd_out,
                                         const bf16* inp, const bf16* weight, const bf16* bias,
                                         int N, int C, float eps) {
  constexpr int W = VEC ? kW : 1;
  const int lane = threadIdx.x % 32;
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / 32;
  if (row >= N) return;  // whole warp leaves together
  const bf16* x = inp + static_cast<std::size_t>(row) * C;
  bf16* y = out + static_cast<std::size_t>(row) * C;
  float v[kW], w[kW], b[kW];
  float s = 0.f;
  TSU_ROW_LOOP(c) {
    TSU_ROW_LOAD(v, x + c);
#pragma unroll
    for (int k = 0; k < W; ++k) s += v[k];
  }
  const float mean = warp_sum(s) / C;
  float var = 0.f;
  TSU_ROW_LOOP(c) {
    TSU_ROW_LOAD(v, x + c);
#pragma unroll
    for (int k = 0; k < W; ++k) var += (v[k] - mean) * (v[k] - mean);
  }
  const float rstd = 1.f / sqrtf(warp_sum(var) / C + eps);
  TSU_ROW_LOOP(c) {
    TSU_ROW_LOAD(v, x + c);
    TSU_ROW_LOAD(w, weight + c);
    if (bias) {
      TSU_ROW_LOAD(b, bias + c);
    } else {
#pragma unroll
      for (int k = 0; k < W; ++k) b[k] = 0.f;
    }
#pragma unroll
    for (int k = 0; k < W; ++k) v[k] = (v[k] - mean) * rstd * w[k] + b[k];
    if (VEC) store8(y + c, v);
    else st(y + c, v[0]);
  }
  if (lane == 0) {
    if (mean_out) mean_out[row] = mean;
    if (rstd_out) rstd_out[row] = rstd;
  }
}

// sum = a + b, then LayerNorm of the sum, with the row in registers (C <= 256 * NV, C % 8 == 0,
// aligned). The sum is rounded to bf16 before it is normalised and the sums run in
// layernorm_forward_kernel's order, so the results equal add followed by layernorm_forward.
template <int NV>
__global__ void __launch_bounds__(kThreads)
    add_layernorm_forward_kernel(bf16* sum, bf16* out, float* mean_out, float* rstd_out,
                                 const bf16* a, const bf16* b, const bf16* weight,
                                 const bf16* bias, int N, int C, float eps) {
  const int lane = threadIdx.x % 32;
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / 32;
  if (row >= N) return;  // whole warp leaves together
  const std::size_t off = static_cast<std::size_t>(row) * C;
  float v[NV][8];
  float s = 0.f;
#pragma unroll
  for (int j = 0; j < NV; ++j) {
    const int c = (j * 32 + lane) * 8;
    if (c >= C) continue;
    float x[8], y[8];
    load8(a + off + c, x);
    load8(b + off + c, y);
#pragma unroll
    for (int k = 0; k < 8; ++k) x[k] += y[k];
    store8(sum + off + c, x);
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      v[j][k] = __bfloat162float(__float2bfloat16_rn(x[k]));
      s += v[j][k];
    }
  }
  const float mean = warp_sum(s) / C;
  float var = 0.f;
#pragma unroll
  for (int j = 0; j < NV; ++j) {
    const int c = (j * 32 + lane) * 8;
    if (c >= C) continue;
#pragma unroll
    for (int k = 0; k < 8; ++k) var += (v[j][k] - mean) * (v[j][k] - mean);
  }
  const float rstd = 1.f / sqrtf(warp_sum(var) / C + eps);
#pragma unroll
  for (int j = 0; j < NV; ++j) {
    const int c = (j * 32 + lane) * 8;
    if (c >= C) continue;
    float w[8], bb[8];
    load8(weight + c, w);
    if (bias) {
      load8(bias + c, bb);
    } else {
#pragma unroll
      for (int k = 0; k < 8; ++k) bb[k] = 0.f;
    }
#pragma unroll
    for (int k = 0; k < 8; ++k) v[j][k] = (v[j][k] - mean) * rstd * w[k] + bb[k];
    store8(out + off + c, v[j]);
  }
  if (lane == 0) {
    if (mean_out) mean_out[row] = mean;
    if (rstd_out) rstd_out[row] = rstd;
  }
}

// dinp += rstd * (dn - mean(dn) - xhat * mean(dn * xhat)), dn = dout * weight.
// mean == nullptr: RMSNorm (xhat = x * rstd, no mean(dn) term).
template <bool VEC>
__global__ void norm_backward_kernel(bf16* dinp, const bf16* dout, const bf16* inp,
                                     const bf16* weight, const float* mean, const float* rstd,
                                     int N, int C) {
  constexpr int W = VEC ? kW : 1;
  const int lane = threadIdx.x % 32;
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / 32;
  if (row >= N) return;
  const std::size_t off = static_cast<std::size_t>(row) * C;
  const float mu = mean ? mean[row] : 0.f, rs = rstd[row];
  float x[kW], g[kW], w[kW], d[kW];
  float a = 0.f, b = 0.f;
  TSU_ROW_LOOP(c) {
    TSU_ROW_LOAD(x, inp + off + c);
    TSU_ROW_LOAD(g, dout + off + c);
    TSU_ROW_LOAD(w, weight + c);
#pragma unroll
    for (int k = 0; k < W; ++k) {
      const float dn = g[k] * w[k];
      a += dn;
      b += dn * (x[k] - mu) * rs;
    }
  }
  a = mean ? warp_sum(a) / C : 0.f;
  b = warp_sum(b) / C;
  TSU_ROW_LOOP(c) {
    TSU_ROW_LOAD(x, inp + off + c);
    TSU_ROW_LOAD(g, dout + off + c);
    TSU_ROW_LOAD(w, weight + c);
    TSU_ROW_LOAD(d, dinp + off + c);
#pragma unroll
    for (int k = 0; k < W; ++k) d[k] += rs * (g[k] * w[k] - a - (x[k] - mu) * rs * b);
    if (VEC) store8(dinp + off + c, d);
    else st(dinp + off + c, d[0]);
  }
}

// LayerNorm backward in one pass over the rows (C <= 32 * 8 * NV, C % 8 == 0, aligned): each warp
// takes rows warp_id, warp_id + total warps, ..., loads its lanes' 8-column vectors of dout, inp
// and dinp together (one memory round trip per row), keeps them in registers for the row's two
// reductions and its dinp update, and sums its share of the weight and bias gradients over its
// rows in registers. The block's 8 warps then add theirs in warp order into one partial row per
// block, and norm_partials_final_kernel adds the blocks' rows in block order: deterministic. This
// reads dout and inp once where the column reduction plus the row kernel read them twice.
constexpr int kLnFusedMaxVec = 4;  // C up to 1024
template <int NV>
__global__ void __launch_bounds__(kThreads)
    layernorm_backward_fused_kernel(bf16* dinp, const bf16* dout, const bf16* inp,
                                    const bf16* weight, const float* mean, const float* rstd, int N,
                                    int C, float* part_w, float* part_b) {
  __shared__ float red[kRowsPerBlock][kLnFusedMaxVec * 256];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int warps = gridDim.x * kRowsPerBlock;
  float w[NV][8], acc_w[NV][8], acc_b[NV][8];
#pragma unroll
  for (int v = 0; v < NV; ++v) {
    const int c = (v * 32 + lane) * 8;
#pragma unroll
    for (int k = 0; k < 8; ++k) w[v][k] = acc_w[v][k] = acc_b[v][k] = 0.f;
    if (c < C) load8(weight + c, w[v]);
  }
  for (int row = blockIdx.x * kRowsPerBlock + warp; row < N; row += warps) {
    const std::size_t off = static_cast<std::size_t>(row) * C;
    const float mu = mean[row], rs = rstd[row];
    uint4 xu[NV], gu[NV], du[NV];
#pragma unroll
    for (int v = 0; v < NV; ++v) {
      const int c = (v * 32 + lane) * 8;
      if (c >= C) continue;
      xu[v] = *reinterpret_cast<const uint4*>(inp + off + c);
      gu[v] = *reinterpret_cast<const uint4*>(dout + off + c);
      if (dinp) du[v] = *reinterpret_cast<const uint4*>(dinp + off + c);
    }
    float a = 0.f, b = 0.f;
#pragma unroll
    for (int v = 0; v < NV; ++v) {
      const int c = (v * 32 + lane) * 8;
      if (c >= C) continue;
      const bf16* xe = reinterpret_cast<const bf16*>(&xu[v]);
      const bf16* ge = reinterpret_cast<const bf16*>(&gu[v]);
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        const float g = ld(ge + k), xhat = (ld(xe + k) - mu) * rs;
        const float dn = g * w[v][k];
        a += dn;
        b += dn * xhat;
        acc_w[v][k] += g * xhat;
        acc_b[v][k] += g;
      }
    }
    a = warp_sum(a) / C;
    b = warp_sum(b) / C;
    if (!dinp) continue;
#pragma unroll
    for (int v = 0; v < NV; ++v) {
      const int c = (v * 32 + lane) * 8;
      if (c >= C) continue;
      const bf16* xe = reinterpret_cast<const bf16*>(&xu[v]);
      const bf16* ge = reinterpret_cast<const bf16*>(&gu[v]);
      bf16* de = reinterpret_cast<bf16*>(&du[v]);
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        const float xhat = (ld(xe + k) - mu) * rs;
        st(de + k, ld(de + k) + rs * (ld(ge + k) * w[v][k] - a - xhat * b));
      }
      *reinterpret_cast<uint4*>(dinp + off + c) = du[v];
    }
  }
  // The block's partial rows: warps in order, first the weight's, then the bias's.
  for (int which = 0; which < 2; ++which) {
#pragma unroll
    for (int v = 0; v < NV; ++v) {
      const int c = (v * 32 + lane) * 8;
      if (c >= C) continue;
#pragma unroll
      for (int k = 0; k < 8; ++k) red[warp][c + k] = which == 0 ? acc_w[v][k] : acc_b[v][k];
    }
    __syncthreads();
    float* part = which == 0 ? part_w : part_b;
    for (int c = threadIdx.x; c < C; c += kThreads) {
      float t = 0.f;
      for (int r = 0; r < kRowsPerBlock; ++r) t += red[r][c];
      part[static_cast<std::size_t>(blockIdx.x) * C + c] = t;
    }
    __syncthreads();
  }
}

// dweight[c] += the sum over R partial rows of part_w[r, c] (and dbias from part_b): each block
// takes 32 columns, its 8 warps sum interleaved rows, and the 8 sums are added in warp order.
constexpr int kFinalCols = 32;
__global__ void norm_partials_final_kernel(const float* part_w, const float* part_b, bf16* dweight,
                                           bf16* dbias, int R, int C) {
  __shared__ float red[2][kRowsPerBlock][kFinalCols];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int c = blockIdx.x * kFinalCols + lane;
  float sw = 0.f, sb = 0.f;
  if (c < C)
    for (int r = warp; r < R; r += kRowsPerBlock) {
      sw += part_w[static_cast<std::size_t>(r) * C + c];
      sb += part_b[static_cast<std::size_t>(r) * C + c];
    }
  red[0][warp][lane] = sw;
  red[1][warp][lane] = sb;
  __syncthreads();
  if (warp == 0 && c < C) {
    float tw = 0.f, tb = 0.f;
    for (int w = 0; w < kRowsPerBlock; ++w) {
      tw += red[0][w][lane];
      tb += red[1][w][lane];
    }
    st(dweight + c, ld(dweight + c) + tw);
    st(dbias + c, ld(dbias + c) + tb);
  }
}

// Blocks of the fused LayerNorm backward: at least 16 rows per warp, and no more than fit the
// GPU at once: 256 threads of up to 128 registers (NV <= 3, C <= 768; ptxas: 64 / 110 / 128)
// make 2 blocks per SM, NV = 4 takes 171 registers, so 1.
unsigned ln_fused_blocks(int N, int C, int sm_count) {
  const int by_rows = (N + 16 * kRowsPerBlock - 1) / (16 * kRowsPerBlock);
  const int per_sm = (C + 255) / 256 <= 3 ? 2 : 1;
  return static_cast<unsigned>(std::max(1, std::min(by_rows, per_sm * std::max(sm_count, 1))));
}

__global__ void rmsnorm_forward_kernel(bf16* out, float* rstd_out, const bf16* inp,
                                       const bf16* weight, int N, int C, float eps) {
  const int lane = threadIdx.x % 32;
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / 32;
  if (row >= N) return;
  const bf16* x = inp + static_cast<std::size_t>(row) * C;
  bf16* y = out + static_cast<std::size_t>(row) * C;
  float s = 0.f;
  for (int c = lane; c < C; c += 32) {
    const float v = ld(x + c);
    s += v * v;
  }
  const float rstd = 1.f / sqrtf(warp_sum(s) / C + eps);
  for (int c = lane; c < C; c += 32) st(y + c, ld(x + c) * rstd * ld(weight + c));
  if (lane == 0 && rstd_out) rstd_out[row] = rstd;
}

#undef TSU_ROW_LOOP
#undef TSU_ROW_LOAD

}  // namespace

void layernorm_forward(const Ctx& c, bf16* out, float* mean, float* rstd, const bf16* inp,
                       const bf16* weight, const bf16* bias, int N, int C, float eps) {
  if (N == 0) return;
  const bool vec = vec8_ok(C, {out, inp, weight, bias});
  auto* k = vec ? &layernorm_forward_kernel<true> : &layernorm_forward_kernel<false>;
  TSU_LAUNCH(k, row_blocks(N), kThreads, 0, c.stream, out, mean, rstd, inp, weight, bias, N, C,
             eps);
}

bool add_layernorm_forward(const Ctx& c, bf16* sum, bf16* out, float* mean, float* rstd,
                           const bf16* a, const bf16* b, const bf16* weight, const bf16* bias, int N,
                           int C, float eps) {
  const int nv = (C + 255) / 256;
  if (c.ln_two_pass || nv > kLnFusedMaxVec || !vec8_ok(C, {sum, out, a, b, weight, bias}))
    return false;
  if (N == 0) return true;
  auto launch = [&](auto* k) {
    TSU_LAUNCH(k, row_blocks(N), kThreads, 0, c.stream, sum, out, mean, rstd, a, b, weight, bias,
               N, C, eps);
  };
  if (nv == 1) launch(&add_layernorm_forward_kernel<1>);
  else if (nv == 2) launch(&add_layernorm_forward_kernel<2>);
  else if (nv == 3) launch(&add_layernorm_forward_kernel<3>);
  else launch(&add_layernorm_forward_kernel<4>);
  return true;
}

std::size_t norm_backward_scratch_bytes(int N, int C, int sm_count) {
  const std::size_t fused =
      2 * align_up(static_cast<std::size_t>(ln_fused_blocks(N, C, sm_count)) * C * sizeof(float), 256);
  return std::max(column_reduce_scratch_bytes(N, C, sm_count), fused);
}

void layernorm_backward(const Ctx& c, bf16* dinp, bf16* dweight, bf16* dbias, const bf16* dout,
                        const bf16* inp, const bf16* weight, const float* mean, const float* rstd,
                        int N, int C, void* scratch) {
  if (N == 0) return;
  const int nv = (C + 255) / 256;
  if (!c.ln_two_pass && dweight && dbias && nv <= kLnFusedMaxVec &&
      vec8_ok(C, {dinp, dout, inp, weight})) {
    const unsigned blocks = ln_fused_blocks(N, C, c.sm_count);
    float* part_w = static_cast<float*>(scratch);
    float* part_b = reinterpret_cast<float*>(
        static_cast<char*>(scratch) + align_up(static_cast<std::size_t>(blocks) * C * sizeof(float), 256));
    auto launch = [&](auto* k) {
      TSU_LAUNCH(k, blocks, kThreads, 0, c.stream, dinp, dout, inp, weight, mean, rstd, N, C,
                 part_w, part_b);
    };
    if (nv == 1) launch(&layernorm_backward_fused_kernel<1>);
    else if (nv == 2) launch(&layernorm_backward_fused_kernel<2>);
    else if (nv == 3) launch(&layernorm_backward_fused_kernel<3>);
    else launch(&layernorm_backward_fused_kernel<4>);
    auto* f = &norm_partials_final_kernel;
    TSU_LAUNCH(f, (C + kFinalCols - 1) / kFinalCols, kThreads, 0, c.stream,
               static_cast<const float*>(part_w), static_cast<const float*>(part_b), dweight, dbias,
               static_cast<int>(blocks), C);
    return;
  }
  // Parameter gradients first: dinp may alias dout, and the row kernel overwrites it.
  column_reduce(c, dout, inp, mean, rstd, dweight, DType::BF16, dbias, DType::BF16, N, C,
                scratch);
  if (dinp) {
    const bool vec = vec8_ok(C, {dinp, dout, inp, weight});
    auto* k = vec ? &norm_backward_kernel<true> : &norm_backward_kernel<false>;
    TSU_LAUNCH(k, row_blocks(N), kThreads, 0, c.stream, dinp, dout, inp, weight, mean, rstd, N,
               C);
  }
}

void rmsnorm_forward(const Ctx& c, bf16* out, float* rstd, const bf16* inp, const bf16* weight,
                     int N, int C, float eps) {
  if (N == 0) return;
  auto* k = &rmsnorm_forward_kernel;
  TSU_LAUNCH(k, row_blocks(N), kThreads, 0, c.stream, out, rstd, inp, weight, N, C, eps);
}

void rmsnorm_backward(const Ctx& c, bf16* dinp, bf16* dweight, const bf16* dout, const bf16* inp,
                      const bf16* weight, const float* rstd, int N, int C, void* scratch) {
  if (N == 0) return;
  column_reduce(c, dout, inp, nullptr, rstd, dweight, DType::BF16, nullptr, DType::BF16, N, C,
                scratch);
  if (dinp) {
    const bool vec = vec8_ok(C, {dinp, dout, inp, weight});
    auto* k = vec ? &norm_backward_kernel<true> : &norm_backward_kernel<false>;
    TSU_LAUNCH(k, row_blocks(N), kThreads, 0, c.stream, dinp, dout, inp, weight,
               static_cast<const float*>(nullptr), rstd, N, C);
  }
}

}  // namespace tsumugi::backend::TSU_CUDA_NS
