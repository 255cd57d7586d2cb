// LayerNorm and RMSNorm: one warp per row, fp32 statistics. Weight/bias gradients are summed
// over rows by the deterministic column reduction in elementwise.cu.
#include "backend/cuda/kernels.h"

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

std::size_t norm_backward_scratch_bytes(int N, int C, int sm_count) {
  return column_reduce_scratch_bytes(N, C, sm_count);
}

void layernorm_backward(const Ctx& c, bf16* dinp, bf16* dweight, bf16* dbias, const bf16* dout,
                        const bf16* inp, const bf16* weight, const float* mean, const float* rstd,
                        int N, int C, void* scratch) {
  if (N == 0) return;
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
