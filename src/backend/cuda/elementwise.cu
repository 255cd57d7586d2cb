// Memory-bound kernels: conversions, elementwise activations, rotary embedding, token/position
// embeddings and the deterministic column sums used for bias and norm-weight gradients.
#include "backend/backend.h"  // dropout_uniform: one definition for every backend
#include "backend/cuda/kernels.h"

#ifndef TSUMUGI_CUDA_EMULATION
#include <cub/device/device_radix_sort.cuh>
#endif

#include <algorithm>

namespace tsumugi::backend::TSU_CUDA_NS {
namespace {

constexpr unsigned kThreads = 256;
constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2/pi)
constexpr float kGeluCubic = 0.044715f;

template <class TD, class TS>
__global__ void convert_kernel(TD* dst, const TS* src, std::size_t n) {
  TSU_GRID_STRIDE(i, n) st(dst + i, ld(src + i));
}

template <class TO, class TA, class TB>
__global__ void add_kernel(TO* out, const TA* a, const TB* b, std::size_t n) {
  TSU_GRID_STRIDE(i, n) st(out + i, ld(a + i) + ld(b + i));
}

template <class TD, class TS>
__global__ void accumulate_kernel(TD* dst, const TS* src, std::size_t n) {
  TSU_GRID_STRIDE(i, n) st(dst + i, ld(dst + i) + ld(src + i));
}

__device__ __forceinline__ float gelu_value(float x) {
  const float u = kGeluScale * (x + kGeluCubic * x * x * x);
  return 0.5f * x * (1.f + tanhf(u));
}

__device__ __forceinline__ float gelu_derivative(float x) {
  const float x2 = x * x;
  const float u = kGeluScale * (x + kGeluCubic * x2 * x);
  const float t = tanhf(u);
  const float du = kGeluScale * (1.f + 3.f * kGeluCubic * x2);
  return 0.5f * (1.f + t) + 0.5f * x * (1.f - t * t) * du;
}

template <class TO, class TI>
__global__ void gelu_forward_kernel(TO* out, const TI* inp, std::size_t n) {
  TSU_GRID_STRIDE(i, n) st(out + i, gelu_value(ld(inp + i)));
}

// dinp may alias dout: each element is read before it is written, by the same thread.
template <class TD, class TI, class TG>
__global__ void gelu_backward_kernel(TD* dinp, const TI* inp, const TG* dout, std::size_t n) {
  TSU_GRID_STRIDE(i, n) st(dinp + i, gelu_derivative(ld(inp + i)) * ld(dout + i));
}

// All-bf16 forms of the hot elementwise ops, 8 elements per thread per step (n8 = n / 8).
__global__ void add_vec8_kernel(bf16* out, const bf16* a, const bf16* b, std::size_t n8) {
  TSU_GRID_STRIDE(i, n8) {
    float x[8], y[8];
    load8(a + i * 8, x);
    load8(b + i * 8, y);
#pragma unroll
    for (int k = 0; k < 8; ++k) x[k] += y[k];
    store8(out + i * 8, x);
  }
}

__global__ void accumulate_vec8_kernel(bf16* dst, const bf16* src, std::size_t n8) {
  TSU_GRID_STRIDE(i, n8) {
    float x[8], y[8];
    load8(dst + i * 8, x);
    load8(src + i * 8, y);
#pragma unroll
    for (int k = 0; k < 8; ++k) x[k] += y[k];
    store8(dst + i * 8, x);
  }
}

__global__ void gelu_forward_vec8_kernel(bf16* out, const bf16* inp, std::size_t n8) {
  TSU_GRID_STRIDE(i, n8) {
    float x[8];
    load8(inp + i * 8, x);
#pragma unroll
    for (int k = 0; k < 8; ++k) x[k] = gelu_value(x[k]);
    store8(out + i * 8, x);
  }
}

__global__ void gelu_backward_vec8_kernel(bf16* dinp, const bf16* inp, const bf16* dout,
                                          std::size_t n8) {
  TSU_GRID_STRIDE(i, n8) {
    float x[8], d[8];
    load8(inp + i * 8, x);
    load8(dout + i * 8, d);
#pragma unroll
    for (int k = 0; k < 8; ++k) d[k] *= gelu_derivative(x[k]);
    store8(dinp + i * 8, d);
  }
}

// One thread per element; out may alias inp (each element is read, then written, by one thread).
template <class TO, class TI>
__global__ void dropout_scale_kernel(TO* out, const TI* inp, int C, std::size_t n, float p,
                                     uint64_t seed, uint64_t first_row, float keep_scale) {
  TSU_GRID_STRIDE(i, n) {
    const std::size_t row = i / C;
    const int col = static_cast<int>(i % C);
    const bool keep = p <= 0.f || dropout_uniform(seed, first_row + row, C, col) >= p;
    st(out + i, keep ? ld(inp + i) * keep_scale : 0.f);
  }
}

template <class TD, class TS>
__global__ void copy_strided_kernel(TD* dst, int dst_stride, const TS* src, int src_stride, int C,
                                    std::size_t n, bool accumulate) {
  TSU_GRID_STRIDE(i, n) {
    const std::size_t row = i / C, col = i % C;
    TD* d = dst + row * dst_stride + col;
    const float v = ld(src + row * src_stride + col);
    st(d, accumulate ? ld(d) + v : v);
  }
}

__device__ __forceinline__ float sigmoid(float x) { return 1.f / (1.f + expf(-x)); }

template <class TO, class TI>
__global__ void swiglu_forward_kernel(TO* out, const TI* inp, int F, std::size_t n) {
  TSU_GRID_STRIDE(i, n) {
    const std::size_t row = i / F, f = i % F;
    const float g = ld(inp + row * 2 * F + f);
    const float u = ld(inp + row * 2 * F + F + f);
    st(out + i, g * sigmoid(g) * u);
  }
}

template <class TD, class TI, class TG>
__global__ void swiglu_backward_kernel(TD* dinp, const TI* inp, const TG* dout, int F,
                                       std::size_t n) {
  TSU_GRID_STRIDE(i, n) {
    const std::size_t row = i / F, f = i % F;
    const float g = ld(inp + row * 2 * F + f);
    const float u = ld(inp + row * 2 * F + F + f);
    const float d = ld(dout + i);
    const float s = sigmoid(g);
    st(dinp + row * 2 * F + f, d * u * s * (1.f + g * (1.f - s)));
    st(dinp + row * 2 * F + F + f, d * g * s);
  }
}

// One thread per (row, head slot among q and k heads, pair index p < hd/2): dims p and
// p + hd/2 rotate together by angle pos * theta^(-2p/hd) (HF rotate_half). The inverse applies
// the transposed rotation. v columns are copied when out and in differ.
template <class TO, class TI>
__global__ void rope_kernel(TO* out, const TI* in, int N, int T, int H, int KV, int hd,
                            float theta, bool inverse, bool copy_v) {
  const int half = hd / 2;
  const std::size_t rs = static_cast<std::size_t>(H + 2 * KV) * hd;
  const std::size_t pairs = static_cast<std::size_t>(N) * (H + KV) * half;
  TSU_GRID_STRIDE(i, pairs) {
    const int p = static_cast<int>(i % half);
    const std::size_t rest = i / half;
    const int slot = static_cast<int>(rest % (H + KV));
    const std::size_t n = rest / (H + KV);
    const int pos = static_cast<int>(n % T);
    // fp32 like HF: inv_freq = 1 / theta^(2p/hd), angle = pos * inv_freq.
    const float inv_freq = 1.f / powf(theta, static_cast<float>(2 * p) / static_cast<float>(hd));
    const float angle = static_cast<float>(pos) * inv_freq;
    const float s = sinf(angle), c = cosf(angle);
    const std::size_t base = n * rs + static_cast<std::size_t>(slot) * hd;
    const float x1 = ld(in + base + p), x2 = ld(in + base + p + half);
    float y1, y2;
    if (!inverse) {
      y1 = x1 * c - x2 * s;
      y2 = x2 * c + x1 * s;
    } else {
      y1 = x1 * c + x2 * s;
      y2 = x2 * c - x1 * s;
    }
    st(out + base + p, y1);
    st(out + base + p + half, y2);
  }
  if (copy_v) {
    const std::size_t vw = static_cast<std::size_t>(KV) * hd;
    const std::size_t nv = static_cast<std::size_t>(N) * vw;
    TSU_GRID_STRIDE(i, nv) {
      const std::size_t idx = (i / vw) * rs + static_cast<std::size_t>(H + KV) * hd + i % vw;
      st(out + idx, ld(in + idx));
    }
  }
}

__global__ void embedding_forward_kernel(bf16* out, const int* tokens, const bf16* wte,
                                         const bf16* wpe, int T, int C, int V,
                                         std::size_t total) {
  TSU_GRID_STRIDE(i, total) {
    const std::size_t n = i / C;
    const int c = static_cast<int>(i % C);
    const int tok = tokens[n];
    float v = (tok >= 0 && tok < V) ? ld(wte + static_cast<std::size_t>(tok) * C + c) : quiet_nan();
    if (wpe) v += ld(wpe + (n % T) * C + c);
    st(out + i, v);
  }
}

__global__ void iota_kernel(int* v, int n) {
  TSU_GRID_STRIDE(i, static_cast<std::size_t>(n)) v[i] = static_cast<int>(i);
}

// After sorting (token, row) pairs, the first position of each run of equal tokens sums the
// run's dout rows in fp32, in row order, and adds the sum to the token's row once.
__global__ void embedding_scatter_kernel(bf16* dwte, const bf16* dout, const int* sorted_tok,
                                         const int* sorted_row, int N, int C, int V) {
  for (int p = blockIdx.x; p < N; p += gridDim.x) {
    const int tok = sorted_tok[p];
    if (p > 0 && sorted_tok[p - 1] == tok) continue;  // not the first of its run
    if (tok < 0 || tok >= V) continue;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
      float s = 0.f;
      for (int q = p; q < N && sorted_tok[q] == tok; ++q)
        s += ld(dout + static_cast<std::size_t>(sorted_row[q]) * C + c);
      bf16* d = dwte + static_cast<std::size_t>(tok) * C + c;
      st(d, ld(d) + s);
    }
  }
}

__global__ void embedding_dwpe_kernel(bf16* dwpe, const bf16* dout, int B, int T, int C) {
  const std::size_t total = static_cast<std::size_t>(T) * C;
  TSU_GRID_STRIDE(i, total) {
    float s = 0.f;
    for (int b = 0; b < B; ++b) s += ld(dout + static_cast<std::size_t>(b) * total + i);
    st(dwpe + i, ld(dwpe + i) + s);
  }
}

template <class TO, class TB>
__global__ void bias_add_kernel(TO* out, const TB* bias, int OC, std::size_t n) {
  TSU_GRID_STRIDE(i, n) st(out + i, ld(out + i) + ld(bias + i % OC));
}

// Column sums, stage 1: a block of 32 x 8 threads sums one chunk of rows for 32 columns (or
// 256 with VEC: 8 adjacent columns per thread through 16-byte loads) into fp32 partials [R, C].
// Stage 2 adds the R partials in order, so results do not depend on scheduling.
constexpr int kColTile = 32;
constexpr int kColRows = 8;

template <bool VEC>
__global__ void column_partial_kernel(const bf16* dout, const bf16* inp, const float* mean,
                                      const float* rstd, bool want1, bool want2, int N, int C,
                                      int rows_per_chunk, float* part1, float* part2) {
  constexpr int W = VEC ? 8 : 1;
  constexpr int kTileCols = kColTile * W;
  __shared__ float s1[kColRows][kTileCols + 1];
  __shared__ float s2[kColRows][kTileCols + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int c0 = blockIdx.x * kTileCols + tx * W;
  const int r = blockIdx.y;
  const int n0 = r * rows_per_chunk;
  const int n1 = min(N, n0 + rows_per_chunk);
  float a1[W], a2[W], g[W], x[W];
#pragma unroll
  for (int k = 0; k < W; ++k) a1[k] = a2[k] = 0.f;
  if (c0 < C) {  // with VEC, C % 8 == 0: all 8 columns exist
#pragma unroll 2
    for (int n = n0 + ty; n < n1; n += kColRows) {
      const std::size_t idx = static_cast<std::size_t>(n) * C + c0;
      if (VEC) load8(dout + idx, g);
      else g[0] = ld(dout + idx);
#pragma unroll
      for (int k = 0; k < W; ++k) a2[k] += g[k];
      if (want1) {
        if (VEC) load8(inp + idx, x);
        else x[0] = ld(inp + idx);
        const float mu = mean ? mean[n] : 0.f, rs = rstd[n];
#pragma unroll
        for (int k = 0; k < W; ++k) a1[k] += g[k] * (x[k] - mu) * rs;
      }
    }
  }
#pragma unroll
  for (int k = 0; k < W; ++k) {
    s1[ty][tx * W + k] = a1[k];
    s2[ty][tx * W + k] = a2[k];
  }
  __syncthreads();
  for (int j = ty * kColTile + tx; j < kTileCols; j += kColTile * kColRows) {
    const int c = blockIdx.x * kTileCols + j;
    if (c >= C) continue;
    float t1 = 0.f, t2 = 0.f;
    for (int k = 0; k < kColRows; ++k) {
      t1 += s1[k][j];
      t2 += s2[k][j];
    }
    if (want1) part1[static_cast<std::size_t>(r) * C + c] = t1;
    if (want2) part2[static_cast<std::size_t>(r) * C + c] = t2;
  }
}

template <class T1, class T2>
__global__ void column_final_kernel(const float* part1, const float* part2, T1* dst1, T2* dst2,
                                    int R, int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  if (dst1) {
    float s = 0.f;
    for (int r = 0; r < R; ++r) s += part1[static_cast<std::size_t>(r) * C + c];
    st(dst1 + c, ld(dst1 + c) + s);
  }
  if (dst2) {
    float s = 0.f;
    for (int r = 0; r < R; ++r) s += part2[static_cast<std::size_t>(r) * C + c];
    st(dst2 + c, ld(dst2 + c) + s);
  }
}

// Row chunks for the partial sums: about 4 blocks per SM in all, at least 64 rows per chunk.
int column_chunks(int N, int C, int sm_count, int tile_cols) {
  const int col_blocks = (C + tile_cols - 1) / tile_cols;
  const int target = 4 * std::max(sm_count, 1);
  int R = std::max(1, target / std::max(col_blocks, 1));
  const int max_r = std::max(1, (N + 63) / 64);
  return std::min(R, max_r);
}

}  // namespace

void convert(const Ctx& c, void* dst, DType dt, const void* src, DType st_, std::size_t n) {
  if (n == 0) return;
  with_float_type(dt, [&](auto td) {
    with_float_type(st_, [&](auto ts) {
      using TD = decltype(td);
      using TS = decltype(ts);
      auto* k = &convert_kernel<TD, TS>;
      TSU_LAUNCH(k, grid_for(n, kThreads, c.sm_count), kThreads, 0, c.stream,
                 static_cast<TD*>(dst), static_cast<const TS*>(src), n);
    });
  });
}

void add(const Ctx& c, void* out, DType ot, const void* a, DType at, const void* b, DType bt,
         std::size_t n) {
  if (n == 0) return;
  if (ot == DType::BF16 && at == DType::BF16 && bt == DType::BF16 && vec8_ok(n, {out, a, b})) {
    auto* k = &add_vec8_kernel;
    TSU_LAUNCH(k, grid_for(n / 8, kThreads, c.sm_count), kThreads, 0, c.stream,
               static_cast<bf16*>(out), static_cast<const bf16*>(a), static_cast<const bf16*>(b),
               n / 8);
    return;
  }
  with_float_type(ot, [&](auto to) {
    with_float_type(at, [&](auto ta) {
      with_float_type(bt, [&](auto tb) {
        using TO = decltype(to);
        using TA = decltype(ta);
        using TB = decltype(tb);
        auto* k = &add_kernel<TO, TA, TB>;
        TSU_LAUNCH(k, grid_for(n, kThreads, c.sm_count), kThreads, 0, c.stream,
                   static_cast<TO*>(out), static_cast<const TA*>(a), static_cast<const TB*>(b), n);
      });
    });
  });
}

void accumulate(const Ctx& c, void* dst, DType dt, const void* src, DType st_, std::size_t n) {
  if (n == 0) return;
  if (dt == DType::BF16 && st_ == DType::BF16 && vec8_ok(n, {dst, src})) {
    auto* k = &accumulate_vec8_kernel;
    TSU_LAUNCH(k, grid_for(n / 8, kThreads, c.sm_count), kThreads, 0, c.stream,
               static_cast<bf16*>(dst), static_cast<const bf16*>(src), n / 8);
    return;
  }
  with_float_type(dt, [&](auto td) {
    with_float_type(st_, [&](auto ts) {
      using TD = decltype(td);
      using TS = decltype(ts);
      auto* k = &accumulate_kernel<TD, TS>;
      TSU_LAUNCH(k, grid_for(n, kThreads, c.sm_count), kThreads, 0, c.stream,
                 static_cast<TD*>(dst), static_cast<const TS*>(src), n);
    });
  });
}

void gelu_forward(const Ctx& c, void* out, DType ot, const void* inp, DType it, std::size_t n) {
  if (n == 0) return;
  if (ot == DType::BF16 && it == DType::BF16 && vec8_ok(n, {out, inp})) {
    auto* k = &gelu_forward_vec8_kernel;
    TSU_LAUNCH(k, grid_for(n / 8, kThreads, c.sm_count), kThreads, 0, c.stream,
               static_cast<bf16*>(out), static_cast<const bf16*>(inp), n / 8);
    return;
  }
  with_float_type(ot, [&](auto to) {
    with_float_type(it, [&](auto ti) {
      using TO = decltype(to);
      using TI = decltype(ti);
      auto* k = &gelu_forward_kernel<TO, TI>;
      TSU_LAUNCH(k, grid_for(n, kThreads, c.sm_count), kThreads, 0, c.stream,
                 static_cast<TO*>(out), static_cast<const TI*>(inp), n);
    });
  });
}

void gelu_backward(const Ctx& c, void* dinp, DType dt, const void* inp, DType it,
                   const void* dout, DType gt, std::size_t n) {
  if (n == 0) return;
  if (dt == DType::BF16 && it == DType::BF16 && gt == DType::BF16 && vec8_ok(n, {dinp, inp, dout})) {
    auto* k = &gelu_backward_vec8_kernel;
    TSU_LAUNCH(k, grid_for(n / 8, kThreads, c.sm_count), kThreads, 0, c.stream,
               static_cast<bf16*>(dinp), static_cast<const bf16*>(inp),
               static_cast<const bf16*>(dout), n / 8);
    return;
  }
  with_float_type(dt, [&](auto td) {
    with_float_type(it, [&](auto ti) {
      with_float_type(gt, [&](auto tg) {
        using TD = decltype(td);
        using TI = decltype(ti);
        using TG = decltype(tg);
        auto* k = &gelu_backward_kernel<TD, TI, TG>;
        TSU_LAUNCH(k, grid_for(n, kThreads, c.sm_count), kThreads, 0, c.stream,
                   static_cast<TD*>(dinp), static_cast<const TI*>(inp),
                   static_cast<const TG*>(dout), n);
      });
    });
  });
}

void dropout_scale(const Ctx& c, void* out, DType ot, const void* inp, DType it, int N, int C,
                   float p, uint64_t seed, uint64_t first_row, float keep_scale) {
  const std::size_t n = static_cast<std::size_t>(N) * C;
  if (n == 0) return;
  with_float_type(ot, [&](auto to) {
    with_float_type(it, [&](auto ti) {
      using TO = decltype(to);
      using TI = decltype(ti);
      auto* k = &dropout_scale_kernel<TO, TI>;
      TSU_LAUNCH(k, grid_for(n, kThreads, c.sm_count), kThreads, 0, c.stream,
                 static_cast<TO*>(out), static_cast<const TI*>(inp), C, n, p, seed, first_row,
                 keep_scale);
    });
  });
}

void copy_strided(const Ctx& c, void* dst, DType dt, int dst_stride, const void* src, DType st_,
                  int src_stride, int N, int C, bool accumulate) {
  const std::size_t n = static_cast<std::size_t>(N) * C;
  if (n == 0) return;
  with_float_type(dt, [&](auto td) {
    with_float_type(st_, [&](auto ts) {
      using TD = decltype(td);
      using TS = decltype(ts);
      auto* k = &copy_strided_kernel<TD, TS>;
      TSU_LAUNCH(k, grid_for(n, kThreads, c.sm_count), kThreads, 0, c.stream,
                 static_cast<TD*>(dst), dst_stride, static_cast<const TS*>(src), src_stride, C, n,
                 accumulate);
    });
  });
}

void swiglu_forward(const Ctx& c, void* out, DType ot, const void* inp, DType it, int N, int F) {
  const std::size_t n = static_cast<std::size_t>(N) * F;
  if (n == 0) return;
  with_float_type(ot, [&](auto to) {
    with_float_type(it, [&](auto ti) {
      using TO = decltype(to);
      using TI = decltype(ti);
      auto* k = &swiglu_forward_kernel<TO, TI>;
      TSU_LAUNCH(k, grid_for(n, kThreads, c.sm_count), kThreads, 0, c.stream,
                 static_cast<TO*>(out), static_cast<const TI*>(inp), F, n);
    });
  });
}

void swiglu_backward(const Ctx& c, void* dinp, DType dt, const void* inp, DType it,
                     const void* dout, DType gt, int N, int F) {
  const std::size_t n = static_cast<std::size_t>(N) * F;
  if (n == 0) return;
  with_float_type(dt, [&](auto td) {
    with_float_type(it, [&](auto ti) {
      with_float_type(gt, [&](auto tg) {
        using TD = decltype(td);
        using TI = decltype(ti);
        using TG = decltype(tg);
        auto* k = &swiglu_backward_kernel<TD, TI, TG>;
        TSU_LAUNCH(k, grid_for(n, kThreads, c.sm_count), kThreads, 0, c.stream,
                   static_cast<TD*>(dinp), static_cast<const TI*>(inp),
                   static_cast<const TG*>(dout), F, n);
      });
    });
  });
}

void rope(const Ctx& c, void* out, DType ot, const void* in, DType it, int B, int T, int H,
          int KV, int hd, float theta, bool inverse) {
  const int N = B * T;
  const std::size_t work = static_cast<std::size_t>(N) * (H + 2 * KV) * hd;
  if (work == 0) return;
  const bool copy_v = out != in;
  with_float_type(ot, [&](auto to) {
    with_float_type(it, [&](auto ti) {
      using TO = decltype(to);
      using TI = decltype(ti);
      auto* k = &rope_kernel<TO, TI>;
      TSU_LAUNCH(k, grid_for(work / 2, kThreads, c.sm_count), kThreads, 0, c.stream,
                 static_cast<TO*>(out), static_cast<const TI*>(in), N, T, H, KV, hd, theta,
                 inverse, copy_v);
    });
  });
}

void embedding_forward(const Ctx& c, bf16* out, const int* tokens, const bf16* wte,
                       const bf16* wpe, int B, int T, int C, int V) {
  const std::size_t total = static_cast<std::size_t>(B) * T * C;
  if (total == 0) return;
  auto* k = &embedding_forward_kernel;
  TSU_LAUNCH(k, grid_for(total, kThreads, c.sm_count), kThreads, 0, c.stream, out, tokens, wte,
             wpe, T, C, V, total);
}

namespace {
std::size_t sort_temp_bytes(int N) {
  std::size_t temp = 0;
  TSU_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
      nullptr, temp, static_cast<const int*>(nullptr), static_cast<int*>(nullptr),
      static_cast<const int*>(nullptr), static_cast<int*>(nullptr), N));
  return temp;
}
}  // namespace

std::size_t embedding_backward_scratch_bytes(int N) {
  return 3 * align_up(static_cast<std::size_t>(N) * sizeof(int), 256) +
         align_up(sort_temp_bytes(N), 256);
}

void embedding_backward_dwte(const Ctx& c, bf16* dwte, const bf16* dout, const int* tokens,
                             int N, int C, int V, void* scratch) {
  if (N == 0 || C == 0) return;
  char* base = static_cast<char*>(scratch);
  const std::size_t ints = align_up(static_cast<std::size_t>(N) * sizeof(int), 256);
  int* sorted_tok = reinterpret_cast<int*>(base);
  int* rows = reinterpret_cast<int*>(base + ints);
  int* sorted_row = reinterpret_cast<int*>(base + 2 * ints);
  void* temp = base + 3 * ints;
  std::size_t temp_bytes = sort_temp_bytes(N);
  auto* iota = &iota_kernel;
  TSU_LAUNCH(iota, grid_for(N, kThreads, c.sm_count), kThreads, 0, c.stream, rows, N);
  // Radix sort is stable, so equal tokens keep row order: the per-token sums below add rows in
  // the same order every run.
  TSU_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, tokens, sorted_tok, rows,
                                                 sorted_row, N, 0, 32, c.stream));
  auto* k = &embedding_scatter_kernel;
  const unsigned blocks = static_cast<unsigned>(std::min(N, std::max(c.sm_count, 1) * 32));
  TSU_LAUNCH(k, blocks, kThreads, 0, c.stream, dwte, dout, sorted_tok, sorted_row, N, C, V);
}

void embedding_backward_dwpe(const Ctx& c, bf16* dwpe, const bf16* dout, int B, int T, int C) {
  const std::size_t total = static_cast<std::size_t>(T) * C;
  if (total == 0) return;
  auto* k = &embedding_dwpe_kernel;
  TSU_LAUNCH(k, grid_for(total, kThreads, c.sm_count), kThreads, 0, c.stream, dwpe, dout, B, T,
             C);
}

void bias_add(const Ctx& c, void* out, DType ot, const void* bias, DType bt, int N, int OC) {
  const std::size_t n = static_cast<std::size_t>(N) * OC;
  if (n == 0) return;
  with_float_type(ot, [&](auto to) {
    with_float_type(bt, [&](auto tb) {
      using TO = decltype(to);
      using TB = decltype(tb);
      auto* k = &bias_add_kernel<TO, TB>;
      TSU_LAUNCH(k, grid_for(n, kThreads, c.sm_count), kThreads, 0, c.stream,
                 static_cast<TO*>(out), static_cast<const TB*>(bias), OC, n);
    });
  });
}

std::size_t column_reduce_scratch_bytes(int N, int C, int sm_count) {
  const int R = std::max(column_chunks(N, C, sm_count, kColTile),
                         column_chunks(N, C, sm_count, kColTile * 8));
  return 2 * align_up(static_cast<std::size_t>(R) * C * sizeof(float), 256);
}

void column_reduce(const Ctx& c, const bf16* dout, const bf16* inp, const float* mean,
                   const float* rstd, void* dst1, DType d1t, void* dst2, DType d2t, int N, int C,
                   void* scratch) {
  if (C == 0 || (!dst1 && !dst2)) return;
  if (N == 0) return;  // nothing to add
  const bool vec = vec8_ok(C, {dout, dst1 ? inp : nullptr});
  const int tile_cols = vec ? kColTile * 8 : kColTile;
  const int R = column_chunks(N, C, c.sm_count, tile_cols);
  const int rows_per_chunk = (N + R - 1) / R;
  float* part1 = static_cast<float*>(scratch);
  float* part2 = reinterpret_cast<float*>(
      static_cast<char*>(scratch) +
      align_up(static_cast<std::size_t>(R) * C * sizeof(float), 256));
  auto* k1 = vec ? &column_partial_kernel<true> : &column_partial_kernel<false>;
  dim3 grid((C + tile_cols - 1) / tile_cols, R);
  dim3 block(kColTile, kColRows);
  TSU_LAUNCH(k1, grid, block, 0, c.stream, dout, inp, mean, rstd, dst1 != nullptr,
             dst2 != nullptr, N, C, rows_per_chunk, part1, part2);
  with_float_type(dst1 ? d1t : DType::F32, [&](auto t1) {
    with_float_type(dst2 ? d2t : DType::F32, [&](auto t2) {
      using T1 = decltype(t1);
      using T2 = decltype(t2);
      auto* k2 = &column_final_kernel<T1, T2>;
      TSU_LAUNCH(k2, (C + kThreads - 1) / kThreads, kThreads, 0, c.stream, part1, part2,
                 static_cast<T1*>(dst1), static_cast<T2*>(dst2), R, C);
    });
  });
}

}  // namespace tsumugi::backend::TSU_CUDA_NS
