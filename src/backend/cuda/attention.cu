// Causal self-attention without a T x T matrix in memory.
//
// Default path (head_dim in {32, 64, 80, 96, 128}): FlashAttention-2 style kernels on mma.sync,
// ldmatrix and cp.async, described where they are defined below (search "FlashAttention-2").
//
// WMMA path (the same head dims, TSUMUGI_CUDA_ATTENTION=wmma): the first tensor-core kernels,
// kept as a cross-check. Flash-attention style tiles of 64 queries
// x 64 keys, 4 warps per block, each warp owning 16 rows. Products go through WMMA bf16 16x16x16
// fragments with fp32 accumulation; scores go through shared memory for the (fp32) online
// softmax because WMMA's register layout is opaque. The backward pass is split in two kernels so
// no atomics are needed and the result is deterministic:
//   dkv: one block per (batch, kv head, key tile) loops over the query tiles of every query head
//        of its group, accumulating dK and dV in registers;
//   dq:  one block per (batch, head, query tile) loops over key tiles, accumulating dQ.
// Both recompute P = exp(S - lse) from the forward pass's log-sum-exp.
//
// Plain path (any head_dim <= 128, or TSUMUGI_CUDA_ATTENTION=simple): one warp per query row (or
// key row in dkv), fp32 throughout. Slow, but simple enough to serve as a fallback.
#include "backend/cuda/kernels.h"
#include "backend/cuda/mma.cuh"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

namespace tsumugi::backend::TSU_CUDA_NS {
namespace {

#ifndef TSUMUGI_CUDA_EMULATION
namespace wmma = nvcuda::wmma;
#else
namespace wmma = emu::wmma;
#endif

constexpr float kLn2 = 0.6931471805599453f;

struct AttnArgs {
  int B, T, H, KV, hd;
  int rs;  // qkv row stride (H + 2 KV) * hd
  float scale;
};

__device__ __forceinline__ std::size_t q_index(const AttnArgs& a, int b, int t, int h) {
  return (static_cast<std::size_t>(b) * a.T + t) * a.rs + static_cast<std::size_t>(h) * a.hd;
}
__device__ __forceinline__ std::size_t k_index(const AttnArgs& a, int b, int t, int g) {
  return (static_cast<std::size_t>(b) * a.T + t) * a.rs + static_cast<std::size_t>(a.H + g) * a.hd;
}
__device__ __forceinline__ std::size_t v_index(const AttnArgs& a, int b, int t, int g) {
  return (static_cast<std::size_t>(b) * a.T + t) * a.rs +
         static_cast<std::size_t>(a.H + a.KV + g) * a.hd;
}
__device__ __forceinline__ std::size_t o_index(const AttnArgs& a, int b, int t, int h) {
  return (static_cast<std::size_t>(b) * a.T + t) * (static_cast<std::size_t>(a.H) * a.hd) +
         static_cast<std::size_t>(h) * a.hd;
}
__device__ __forceinline__ std::size_t lse_index(const AttnArgs& a, int b, int h, int t) {
  return (static_cast<std::size_t>(b) * a.H + h) * a.T + t;
}

// ------------------------------------------------------------------------------------------
// D[b,h,t] = sum_d dout * out: the softmax backward's row term, shared by both paths.
constexpr int kDotWarps = 8;
__global__ void attn_dot_kernel(float* D, const bf16* dout, const bf16* out, AttnArgs a) {
  const std::size_t w = static_cast<std::size_t>(blockIdx.x) * kDotWarps + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const std::size_t total = static_cast<std::size_t>(a.B) * a.H * a.T;
  if (w >= total) return;
  const int t = static_cast<int>(w % a.T);
  const int h = static_cast<int>((w / a.T) % a.H);
  const int b = static_cast<int>(w / (static_cast<std::size_t>(a.T) * a.H));
  const std::size_t o = o_index(a, b, t, h);
  float s = 0.f;
  for (int d = lane; d < a.hd; d += 32) s += ld(dout + o + d) * ld(out + o + d);
  s = warp_sum(s);
  if (lane == 0) D[lse_index(a, b, h, t)] = s;
}

// ------------------------------------------------------------------------------------------
// Plain kernels: lane holds dims lane, lane+32, lane+64, lane+96 (head_dim <= 128).
constexpr int kSimpleWarps = 4;
constexpr int kMaxDimsPerLane = 4;

__global__ void attn_fwd_simple(bf16* out, float* lse, const bf16* qkv, AttnArgs a) {
  const std::size_t w = static_cast<std::size_t>(blockIdx.x) * kSimpleWarps + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (w >= static_cast<std::size_t>(a.B) * a.H * a.T) return;
  const int t = static_cast<int>(w % a.T);
  const int h = static_cast<int>((w / a.T) % a.H);
  const int b = static_cast<int>(w / (static_cast<std::size_t>(a.T) * a.H));
  const int g = h / (a.H / a.KV);
  float q[kMaxDimsPerLane], o[kMaxDimsPerLane];
  const std::size_t qi = q_index(a, b, t, h);
#pragma unroll
  for (int j = 0; j < kMaxDimsPerLane; ++j) {
    const int d = lane + 32 * j;
    q[j] = d < a.hd ? ld(qkv + qi + d) : 0.f;
    o[j] = 0.f;
  }
  float m = -INFINITY, l = 0.f;
  for (int key = 0; key <= t; ++key) {
    const std::size_t ki = k_index(a, b, key, g), vi = v_index(a, b, key, g);
    float s = 0.f;
#pragma unroll
    for (int j = 0; j < kMaxDimsPerLane; ++j) {
      const int d = lane + 32 * j;
      if (d < a.hd) s += q[j] * ld(qkv + ki + d);
    }
    s = warp_sum(s) * a.scale;
    const float m_new = fmaxf(m, s);
    const float corr = expf(m - m_new);  // 0 for the first key (m = -inf)
    const float p = expf(s - m_new);
    l = l * corr + p;
#pragma unroll
    for (int j = 0; j < kMaxDimsPerLane; ++j) {
      const int d = lane + 32 * j;
      if (d < a.hd) o[j] = o[j] * corr + p * ld(qkv + vi + d);
    }
    m = m_new;
  }
  const std::size_t oi = o_index(a, b, t, h);
#pragma unroll
  for (int j = 0; j < kMaxDimsPerLane; ++j) {
    const int d = lane + 32 * j;
    if (d < a.hd) st(out + oi + d, o[j] / l);
  }
  if (lane == 0) lse[lse_index(a, b, h, t)] = m + logf(l);
}

__global__ void attn_bwd_dq_simple(bf16* dqkv, const bf16* dout, const bf16* qkv,
                                   const float* lse, const float* D, AttnArgs a) {
  const std::size_t w = static_cast<std::size_t>(blockIdx.x) * kSimpleWarps + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (w >= static_cast<std::size_t>(a.B) * a.H * a.T) return;
  const int t = static_cast<int>(w % a.T);
  const int h = static_cast<int>((w / a.T) % a.H);
  const int b = static_cast<int>(w / (static_cast<std::size_t>(a.T) * a.H));
  const int g = h / (a.H / a.KV);
  const std::size_t qi = q_index(a, b, t, h), oi = o_index(a, b, t, h);
  float q[kMaxDimsPerLane], go[kMaxDimsPerLane], dq[kMaxDimsPerLane];
#pragma unroll
  for (int j = 0; j < kMaxDimsPerLane; ++j) {
    const int d = lane + 32 * j;
    q[j] = d < a.hd ? ld(qkv + qi + d) : 0.f;
    go[j] = d < a.hd ? ld(dout + oi + d) : 0.f;
    dq[j] = 0.f;
  }
  const float lse_t = lse[lse_index(a, b, h, t)];
  const float D_t = D[lse_index(a, b, h, t)];
  for (int key = 0; key <= t; ++key) {
    const std::size_t ki = k_index(a, b, key, g), vi = v_index(a, b, key, g);
    float s = 0.f, dp = 0.f;
#pragma unroll
    for (int j = 0; j < kMaxDimsPerLane; ++j) {
      const int d = lane + 32 * j;
      if (d < a.hd) {
        s += q[j] * ld(qkv + ki + d);
        dp += go[j] * ld(qkv + vi + d);
      }
    }
    s = warp_sum(s) * a.scale;
    dp = warp_sum(dp);
    const float ds = expf(s - lse_t) * (dp - D_t);
#pragma unroll
    for (int j = 0; j < kMaxDimsPerLane; ++j) {
      const int d = lane + 32 * j;
      if (d < a.hd) dq[j] += ds * ld(qkv + ki + d);
    }
  }
#pragma unroll
  for (int j = 0; j < kMaxDimsPerLane; ++j) {
    const int d = lane + 32 * j;
    if (d < a.hd) st(dqkv + qi + d, dq[j] * a.scale);
  }
}

// One warp per (b, kv head g, key row): sums over every query head of the group.
__global__ void attn_bwd_dkv_simple(bf16* dqkv, const bf16* dout, const bf16* qkv,
                                    const float* lse, const float* D, AttnArgs a) {
  const std::size_t w = static_cast<std::size_t>(blockIdx.x) * kSimpleWarps + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (w >= static_cast<std::size_t>(a.B) * a.KV * a.T) return;
  const int j0 = static_cast<int>(w % a.T);
  const int g = static_cast<int>((w / a.T) % a.KV);
  const int b = static_cast<int>(w / (static_cast<std::size_t>(a.T) * a.KV));
  const int G = a.H / a.KV;
  const std::size_t ki = k_index(a, b, j0, g), vi = v_index(a, b, j0, g);
  float k[kMaxDimsPerLane], v[kMaxDimsPerLane], dk[kMaxDimsPerLane], dv[kMaxDimsPerLane];
#pragma unroll
  for (int j = 0; j < kMaxDimsPerLane; ++j) {
    const int d = lane + 32 * j;
    k[j] = d < a.hd ? ld(qkv + ki + d) : 0.f;
    v[j] = d < a.hd ? ld(qkv + vi + d) : 0.f;
    dk[j] = dv[j] = 0.f;
  }
  for (int hh = 0; hh < G; ++hh) {
    const int h = g * G + hh;
    for (int t = j0; t < a.T; ++t) {
      const std::size_t qi = q_index(a, b, t, h), oi = o_index(a, b, t, h);
      float s = 0.f, dp = 0.f;
#pragma unroll
      for (int j = 0; j < kMaxDimsPerLane; ++j) {
        const int d = lane + 32 * j;
        if (d < a.hd) {
          s += ld(qkv + qi + d) * k[j];
          dp += ld(dout + oi + d) * v[j];
        }
      }
      s = warp_sum(s) * a.scale;
      dp = warp_sum(dp);
      const float p = expf(s - lse[lse_index(a, b, h, t)]);
      const float ds = p * (dp - D[lse_index(a, b, h, t)]);
#pragma unroll
      for (int j = 0; j < kMaxDimsPerLane; ++j) {
        const int d = lane + 32 * j;
        if (d < a.hd) {
          dv[j] += p * ld(dout + oi + d);
          dk[j] += ds * ld(qkv + qi + d);
        }
      }
    }
  }
#pragma unroll
  for (int j = 0; j < kMaxDimsPerLane; ++j) {
    const int d = lane + 32 * j;
    if (d < a.hd) {
      st(dqkv + ki + d, dk[j] * a.scale);
      st(dqkv + vi + d, dv[j]);
    }
  }
}

// ------------------------------------------------------------------------------------------
// Tensor-core kernels.
constexpr int kTile = 64;          // queries per block and keys per step
constexpr int kWarps = 4;          // 16 rows each
constexpr int kTcThreads = kWarps * 32;

constexpr std::size_t align128(std::size_t n) { return (n + 127) / 128 * 128; }

template <int HD>
struct Cfg {
  static_assert(HD % 16 == 0 && HD <= 128, "tensor-core attention needs head_dim % 16 == 0");
  static constexpr int LDS = HD + 8;     // bf16 row stride of the Q/K/V/dO tiles (skews banks)
  static constexpr int LDF = kTile + 4;  // fp32 row stride of a warp's 16 x 64 score tile
  static constexpr int LDP = kTile + 8;  // bf16 row stride of a warp's 16 x 64 P or dS tile
  static constexpr int LDO = HD + 4;     // fp32 row stride of a warp's 16 x HD output
  static constexpr std::size_t tile = align128(std::size_t{kTile} * LDS * 2);
  static constexpr std::size_t score = align128(std::size_t{kWarps} * 16 * LDF * 4);
  static constexpr std::size_t ptile = align128(std::size_t{kWarps} * 16 * LDP * 2);
  static constexpr std::size_t otile = align128(std::size_t{kWarps} * 16 * LDO * 4);
  static constexpr std::size_t rowvec = align128(std::size_t{kTile} * 4);
  static constexpr std::size_t fwd_smem = 3 * tile + score + ptile + otile + rowvec;
  static constexpr std::size_t dq_smem = 4 * tile + score + ptile + 2 * rowvec;
  static constexpr std::size_t dkv_smem = 4 * tile + score + 2 * ptile + 2 * rowvec;
};

// Copies rows [0, valid) of a 64 x HD tile (global row stride `stride` elements) into shared
// memory with 16-byte accesses; rows past `valid` (past the end of the sequence) become zero so
// they contribute nothing (0 * garbage could be NaN).
template <int HD>
__device__ __forceinline__ void load_tile(bf16* dst, const bf16* src, std::size_t stride,
                                          int valid) {
  constexpr int kVecs = HD / 8;
  for (int idx = threadIdx.x; idx < kTile * kVecs; idx += kTcThreads) {
    const int r = idx / kVecs, c = (idx % kVecs) * 8;
    uint4 val = make_uint4(0u, 0u, 0u, 0u);
    if (r < valid) val = *reinterpret_cast<const uint4*>(src + r * stride + c);
    *reinterpret_cast<uint4*>(dst + r * Cfg<HD>::LDS + c) = val;
  }
}

using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major>;
using FragBCol = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major>;
using FragBRow = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major>;
using FragC = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

// dst (16 x 64 fp32, row stride LDF) = A (16 x HD rows of `a`) * B^T where B is the 64 x HD tile
// `b` (so B^T is read as a column-major matrix_b).
template <int HD>
__device__ __forceinline__ void scores_16x64(float* dst, const bf16* a, const bf16* b) {
  constexpr int LDS = Cfg<HD>::LDS;
#pragma unroll
  for (int nt = 0; nt < kTile / 16; ++nt) {
    FragC acc;
    wmma::fill_fragment(acc, 0.f);
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
      FragA fa;
      FragBCol fb;
      wmma::load_matrix_sync(fa, a + kk * 16, LDS);
      wmma::load_matrix_sync(fb, b + nt * 16 * LDS + kk * 16, LDS);
      wmma::mma_sync(acc, fa, fb, acc);
    }
    wmma::store_matrix_sync(dst + nt * 16, acc, Cfg<HD>::LDF, wmma::mem_row_major);
  }
}

// Each lane works on one row r = lane / 2 and 32 of its 64 columns. The column order is rotated
// by lane so that the 32 lanes hit 32 different shared-memory banks.
__device__ __forceinline__ int lane_col(int lane, int j) { return (lane & 1) * 32 + ((j + lane) & 31); }

template <int HD>
__global__ void __launch_bounds__(kTcThreads) attn_fwd_tc(bf16* out, float* lse, const bf16* qkv,
                                                           AttnArgs a) {
  using C = Cfg<HD>;
  TSU_DYNAMIC_SMEM(smem);
  bf16* Qs = reinterpret_cast<bf16*>(smem);
  bf16* Ks = reinterpret_cast<bf16*>(smem + C::tile);
  bf16* Vs = reinterpret_cast<bf16*>(smem + 2 * C::tile);
  float* Sall = reinterpret_cast<float*>(smem + 3 * C::tile);
  bf16* Pall = reinterpret_cast<bf16*>(smem + 3 * C::tile + C::score);
  float* Oall = reinterpret_cast<float*>(smem + 3 * C::tile + C::score + C::ptile);
  float* rowv = reinterpret_cast<float*>(smem + 3 * C::tile + C::score + C::ptile + C::otile);

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int nqt = (a.T + kTile - 1) / kTile;
  const int BH = a.B * a.H;
  // Heaviest (last) query tiles get the lowest block ids so they start first.
  const int qt = nqt - 1 - static_cast<int>(blockIdx.x / BH);
  const int bh = static_cast<int>(blockIdx.x % BH);
  const int h = bh % a.H, b = bh / a.H;
  const int g = h / (a.H / a.KV);
  const int q0 = qt * kTile;

  float* Sw = Sall + warp * 16 * C::LDF;
  bf16* Pw = Pall + warp * 16 * C::LDP;
  float* Ow = Oall + warp * 16 * C::LDO;
  float* alpha_w = rowv + warp * 16;

  load_tile<HD>(Qs, qkv + q_index(a, b, q0, h), a.rs, min(kTile, a.T - q0));
  for (int i = lane; i < 16 * C::LDO; i += 32) Ow[i] = 0.f;
  __syncthreads();

  FragA qf[HD / 16];
#pragma unroll
  for (int kk = 0; kk < HD / 16; ++kk)
    wmma::load_matrix_sync(qf[kk], Qs + warp * 16 * C::LDS + kk * 16, C::LDS);

  const int r = lane >> 1;
  const int qrow = q0 + warp * 16 + r;
  const float sl2 = a.scale * kLog2e;  // scores in log2 units: exp2 is one instruction
  float m_run = -INFINITY, l_run = 0.f;

  for (int kt = 0; kt <= qt; ++kt) {
    const int k0 = kt * kTile;
    __syncthreads();  // every warp is done with the previous K/V tiles
    load_tile<HD>(Ks, qkv + k_index(a, b, k0, g), a.rs, min(kTile, a.T - k0));
    load_tile<HD>(Vs, qkv + v_index(a, b, k0, g), a.rs, min(kTile, a.T - k0));
    __syncthreads();

    // S = Q K^T for this warp's 16 rows.
#pragma unroll
    for (int nt = 0; nt < kTile / 16; ++nt) {
      FragC acc;
      wmma::fill_fragment(acc, 0.f);
#pragma unroll
      for (int kk = 0; kk < HD / 16; ++kk) {
        FragBCol fb;
        wmma::load_matrix_sync(fb, Ks + nt * 16 * C::LDS + kk * 16, C::LDS);
        wmma::mma_sync(acc, qf[kk], fb, acc);
      }
      wmma::store_matrix_sync(Sw + nt * 16, acc, C::LDF, wmma::mem_row_major);
    }
    __syncwarp();

    // Online softmax. Key 0 is visible to every row, so m_new is finite from the first tile on.
    float sv[32];
    float mx = -INFINITY;
#pragma unroll
    for (int j = 0; j < 32; ++j) {
      const int cj = lane_col(lane, j);
      const float s = (k0 + cj <= qrow) ? Sw[r * C::LDF + cj] * sl2 : -INFINITY;
      sv[j] = s;
      mx = fmaxf(mx, s);
    }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    const float m_new = fmaxf(m_run, mx);
    const float alpha = exp2f(m_run - m_new);  // 0 on the first tile
    float rsum = 0.f;
#pragma unroll
    for (int j = 0; j < 32; ++j) {
      const float p = exp2f(sv[j] - m_new);
      rsum += p;
      Pw[r * C::LDP + lane_col(lane, j)] = __float2bfloat16_rn(p);
    }
    rsum += __shfl_xor_sync(0xffffffffu, rsum, 1);
    l_run = l_run * alpha + rsum;
    m_run = m_new;
    if ((lane & 1) == 0) alpha_w[r] = alpha;
    __syncwarp();
    for (int i = lane; i < 16 * HD; i += 32) Ow[(i / HD) * C::LDO + i % HD] *= alpha_w[i / HD];
    __syncwarp();

    // O += P V (each P fragment loaded once, all of the row block's O fragments live)
    {
      FragC acc[HD / 16];
#pragma unroll
      for (int dt = 0; dt < HD / 16; ++dt)
        wmma::load_matrix_sync(acc[dt], Ow + dt * 16, C::LDO, wmma::mem_row_major);
#pragma unroll
      for (int kk = 0; kk < kTile / 16; ++kk) {
        FragA pf;
        wmma::load_matrix_sync(pf, Pw + kk * 16, C::LDP);
#pragma unroll
        for (int dt = 0; dt < HD / 16; ++dt) {
          FragBRow vf;
          wmma::load_matrix_sync(vf, Vs + kk * 16 * C::LDS + dt * 16, C::LDS);
          wmma::mma_sync(acc[dt], pf, vf, acc[dt]);
        }
      }
#pragma unroll
      for (int dt = 0; dt < HD / 16; ++dt)
        wmma::store_matrix_sync(Ow + dt * 16, acc[dt], C::LDO, wmma::mem_row_major);
    }
    __syncwarp();
  }

  if ((lane & 1) == 0) {
    alpha_w[r] = 1.f / l_run;
    if (qrow < a.T) lse[lse_index(a, b, h, qrow)] = (m_run + log2f(l_run)) * kLn2;
  }
  __syncwarp();
  for (int i = lane; i < 16 * HD; i += 32) {
    const int rr = i / HD, d = i % HD;
    const int t = q0 + warp * 16 + rr;
    if (t < a.T) st(out + o_index(a, b, t, h) + d, Ow[rr * C::LDO + d] * alpha_w[rr]);
  }
}

// Writes a 16 x 16 fp32 fragment, times `scale`, to rows row0.. of a bf16 matrix (row stride
// `stride`), skipping rows >= T; `stage` is the warp's 16 x LDF scratch.
template <int HD>
__device__ __forceinline__ void store_rows(bf16* dst, std::size_t stride, int row0, int T,
                                           const FragC& f, float scale, float* stage) {
  const int lane = threadIdx.x % 32;
  wmma::store_matrix_sync(stage, f, Cfg<HD>::LDF, wmma::mem_row_major);
  __syncwarp();
  for (int i = lane; i < 256; i += 32) {
    const int rr = i / 16, cc = i % 16;
    if (row0 + rr < T) st(dst + static_cast<std::size_t>(row0 + rr) * stride + cc,
                          stage[rr * Cfg<HD>::LDF + cc] * scale);
  }
  __syncwarp();
}

template <int HD>
__global__ void __launch_bounds__(kTcThreads)
    attn_bwd_dq_tc(bf16* dqkv, const bf16* dout, const bf16* qkv, const float* lse,
                   const float* Dsum, AttnArgs a) {
  using C = Cfg<HD>;
  TSU_DYNAMIC_SMEM(smem);
  bf16* Qs = reinterpret_cast<bf16*>(smem);
  bf16* dOs = reinterpret_cast<bf16*>(smem + C::tile);
  bf16* Ks = reinterpret_cast<bf16*>(smem + 2 * C::tile);
  bf16* Vs = reinterpret_cast<bf16*>(smem + 3 * C::tile);
  float* Sall = reinterpret_cast<float*>(smem + 4 * C::tile);
  bf16* DSall = reinterpret_cast<bf16*>(smem + 4 * C::tile + C::score);
  float* lse_s = reinterpret_cast<float*>(smem + 4 * C::tile + C::score + C::ptile);
  float* D_s = reinterpret_cast<float*>(smem + 4 * C::tile + C::score + C::ptile + C::rowvec);

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int nqt = (a.T + kTile - 1) / kTile;
  const int BH = a.B * a.H;
  const int qt = nqt - 1 - static_cast<int>(blockIdx.x / BH);
  const int bh = static_cast<int>(blockIdx.x % BH);
  const int h = bh % a.H, b = bh / a.H;
  const int g = h / (a.H / a.KV);
  const int q0 = qt * kTile;
  const int valid = min(kTile, a.T - q0);

  float* Sw = Sall + warp * 16 * C::LDF;
  bf16* DSw = DSall + warp * 16 * C::LDP;

  load_tile<HD>(Qs, qkv + q_index(a, b, q0, h), a.rs, valid);
  load_tile<HD>(dOs, dout + o_index(a, b, q0, h), static_cast<std::size_t>(a.H) * a.hd, valid);
  for (int i = threadIdx.x; i < kTile; i += kTcThreads) {
    lse_s[i] = i < valid ? lse[lse_index(a, b, h, q0 + i)] * kLog2e : 0.f;
    D_s[i] = i < valid ? Dsum[lse_index(a, b, h, q0 + i)] : 0.f;
  }
  __syncthreads();

  const int r = lane >> 1;
  const int qrow = q0 + warp * 16 + r;
  const float lse_r = lse_s[warp * 16 + r];
  const float D_r = D_s[warp * 16 + r];
  const float sl2 = a.scale * kLog2e;

  FragC dq[HD / 16];
#pragma unroll
  for (int dt = 0; dt < HD / 16; ++dt) wmma::fill_fragment(dq[dt], 0.f);

  for (int kt = 0; kt <= qt; ++kt) {
    const int k0 = kt * kTile;
    __syncthreads();
    load_tile<HD>(Ks, qkv + k_index(a, b, k0, g), a.rs, min(kTile, a.T - k0));
    load_tile<HD>(Vs, qkv + v_index(a, b, k0, g), a.rs, min(kTile, a.T - k0));
    __syncthreads();

    scores_16x64<HD>(Sw, Qs + warp * 16 * C::LDS, Ks);
    __syncwarp();
    float p[32];
#pragma unroll
    for (int j = 0; j < 32; ++j) {
      const int cj = lane_col(lane, j);
      p[j] = (k0 + cj <= qrow) ? exp2f(Sw[r * C::LDF + cj] * sl2 - lse_r) : 0.f;
    }
    __syncwarp();  // S is read; the same buffer takes dP next
    scores_16x64<HD>(Sw, dOs + warp * 16 * C::LDS, Vs);
    __syncwarp();
#pragma unroll
    for (int j = 0; j < 32; ++j) {
      const int cj = lane_col(lane, j);
      DSw[r * C::LDP + cj] = __float2bfloat16_rn(p[j] * (Sw[r * C::LDF + cj] - D_r));
    }
    __syncwarp();
    // dQ += dS K
#pragma unroll
    for (int kk = 0; kk < kTile / 16; ++kk) {
      FragA fa;
      wmma::load_matrix_sync(fa, DSw + kk * 16, C::LDP);
#pragma unroll
      for (int dt = 0; dt < HD / 16; ++dt) {
        FragBRow fb;
        wmma::load_matrix_sync(fb, Ks + kk * 16 * C::LDS + dt * 16, C::LDS);
        wmma::mma_sync(dq[dt], fa, fb, dq[dt]);
      }
    }
    __syncwarp();
  }

  bf16* dq_base = dqkv + q_index(a, b, 0, h);
#pragma unroll
  for (int dt = 0; dt < HD / 16; ++dt)
    store_rows<HD>(dq_base + dt * 16, a.rs, q0 + warp * 16, a.T, dq[dt], a.scale, Sw);
}

template <int HD>
__global__ void __launch_bounds__(kTcThreads)
    attn_bwd_dkv_tc(bf16* dqkv, const bf16* dout, const bf16* qkv, const float* lse,
                    const float* Dsum, AttnArgs a) {
  using C = Cfg<HD>;
  TSU_DYNAMIC_SMEM(smem);
  bf16* Ks = reinterpret_cast<bf16*>(smem);
  bf16* Vs = reinterpret_cast<bf16*>(smem + C::tile);
  bf16* Qs = reinterpret_cast<bf16*>(smem + 2 * C::tile);
  bf16* dOs = reinterpret_cast<bf16*>(smem + 3 * C::tile);
  float* Sall = reinterpret_cast<float*>(smem + 4 * C::tile);
  bf16* Pall = reinterpret_cast<bf16*>(smem + 4 * C::tile + C::score);
  bf16* DSall = reinterpret_cast<bf16*>(smem + 4 * C::tile + C::score + C::ptile);
  float* lse_s = reinterpret_cast<float*>(smem + 4 * C::tile + C::score + 2 * C::ptile);
  float* D_s =
      reinterpret_cast<float*>(smem + 4 * C::tile + C::score + 2 * C::ptile + C::rowvec);

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int nt_all = (a.T + kTile - 1) / kTile;
  const int BKV = a.B * a.KV;
  // Key tile 0 has the most query tiles to visit: lowest block ids first.
  const int kt = static_cast<int>(blockIdx.x / BKV);
  const int bg = static_cast<int>(blockIdx.x % BKV);
  const int g = bg % a.KV, b = bg / a.KV;
  const int G = a.H / a.KV;
  const int k0 = kt * kTile;

  float* Sw = Sall + warp * 16 * C::LDF;
  bf16* Pw = Pall + warp * 16 * C::LDP;
  bf16* DSw = DSall + warp * 16 * C::LDP;

  load_tile<HD>(Ks, qkv + k_index(a, b, k0, g), a.rs, min(kTile, a.T - k0));
  load_tile<HD>(Vs, qkv + v_index(a, b, k0, g), a.rs, min(kTile, a.T - k0));

  FragC dk[HD / 16], dv[HD / 16];
#pragma unroll
  for (int dt = 0; dt < HD / 16; ++dt) {
    wmma::fill_fragment(dk[dt], 0.f);
    wmma::fill_fragment(dv[dt], 0.f);
  }
  const int r = lane >> 1;
  const int krow = k0 + warp * 16 + r;
  const float sl2 = a.scale * kLog2e;

  for (int hh = 0; hh < G; ++hh) {
    const int h = g * G + hh;
    for (int qt = kt; qt < nt_all; ++qt) {
      const int q0 = qt * kTile;
      const int valid = min(kTile, a.T - q0);
      __syncthreads();  // previous Q/dO/lse/D tiles are no longer read
      load_tile<HD>(Qs, qkv + q_index(a, b, q0, h), a.rs, valid);
      load_tile<HD>(dOs, dout + o_index(a, b, q0, h), static_cast<std::size_t>(a.H) * a.hd,
                    valid);
      for (int i = threadIdx.x; i < kTile; i += kTcThreads) {
        lse_s[i] = i < valid ? lse[lse_index(a, b, h, q0 + i)] * kLog2e : 0.f;
        D_s[i] = i < valid ? Dsum[lse_index(a, b, h, q0 + i)] : 0.f;
      }
      __syncthreads();

      // S^T = K Q^T (16 keys x 64 queries), P^T from the stored log-sum-exp.
      scores_16x64<HD>(Sw, Ks + warp * 16 * C::LDS, Qs);
      __syncwarp();
      float p[32];
#pragma unroll
      for (int j = 0; j < 32; ++j) {
        const int cj = lane_col(lane, j);
        const int qi = q0 + cj;
        p[j] = (qi >= krow && qi < a.T) ? exp2f(Sw[r * C::LDF + cj] * sl2 - lse_s[cj]) : 0.f;
        Pw[r * C::LDP + cj] = __float2bfloat16_rn(p[j]);
      }
      __syncwarp();
      // dP^T = V dO^T
      scores_16x64<HD>(Sw, Vs + warp * 16 * C::LDS, dOs);
      __syncwarp();
#pragma unroll
      for (int j = 0; j < 32; ++j) {
        const int cj = lane_col(lane, j);
        DSw[r * C::LDP + cj] = __float2bfloat16_rn(p[j] * (Sw[r * C::LDF + cj] - D_s[cj]));
      }
      __syncwarp();
      // dV += P^T dO, dK += dS^T Q
#pragma unroll
      for (int kk = 0; kk < kTile / 16; ++kk) {
        FragA pa, dsa;
        wmma::load_matrix_sync(pa, Pw + kk * 16, C::LDP);
        wmma::load_matrix_sync(dsa, DSw + kk * 16, C::LDP);
#pragma unroll
        for (int dt = 0; dt < HD / 16; ++dt) {
          FragBRow fb;
          wmma::load_matrix_sync(fb, dOs + kk * 16 * C::LDS + dt * 16, C::LDS);
          wmma::mma_sync(dv[dt], pa, fb, dv[dt]);
          wmma::load_matrix_sync(fb, Qs + kk * 16 * C::LDS + dt * 16, C::LDS);
          wmma::mma_sync(dk[dt], dsa, fb, dk[dt]);
        }
      }
      __syncwarp();
    }
  }

  bf16* dk_base = dqkv + k_index(a, b, 0, g);
  bf16* dv_base = dqkv + v_index(a, b, 0, g);
#pragma unroll
  for (int dt = 0; dt < HD / 16; ++dt) {
    store_rows<HD>(dk_base + dt * 16, a.rs, k0 + warp * 16, a.T, dk[dt], a.scale, Sw);
    store_rows<HD>(dv_base + dt * 16, a.rs, k0 + warp * 16, a.T, dv[dt], 1.f, Sw);
  }
}

// ------------------------------------------------------------------------------------------
// FlashAttention-2 style kernels (the default; TSUMUGI_CUDA_ATTENTION=wmma selects the kernels
// above). Everything a warp multiplies stays in registers in mma.sync's fragment layout: scores,
// probabilities and accumulators never touch shared memory. A lane holds, for each 8-column
// block j of a 16-row warp tile, rows g = lane/4 and g+8 at columns 8j + 2t, 8j + 2t + 1
// (t = lane%4); a row's softmax statistics reduce over the 4 lanes of a quad. Blocks are 4
// warps; key tiles are 64 wide; the forward and dQ kernels take 128 queries per block at
// head_dim <= 64 (two 16-row blocks per warp; TSUMUGI_CUDA_ATTENTION=fa2_q64 forces 64), 64
// otherwise; dK/dV blocks own 64 keys. K/V (or Q/dO in dkv) tiles are
// double-buffered with cp.async so the next tile loads while this one is multiplied. Causal
// masking is applied only on tiles that reach past the diagonal (and on the tile crossing T).
// The backward is split for determinism without atomics: D = rowsum(dO * O) (attn_dot_kernel),
// then dQ per query tile and dK/dV per key tile, each recomputing P from the stored lse.
constexpr int kFaTile = 64;
constexpr int kFaWarps = 4;
constexpr int kFaThreads = kFaWarps * 32;

template <int HD>
struct FaCfg {
  static_assert(HD % 16 == 0 && HD <= 128, "tensor-core attention needs head_dim % 16 == 0");
  // 16 bytes of padding per row: the 8 rows an ldmatrix reads land in 8 different bank groups.
  static constexpr int LDS = HD + 8;
  static constexpr int tile_elems = kFaTile * LDS;
  static constexpr std::size_t tile = std::size_t{kFaTile} * LDS * 2;
  static constexpr std::size_t dq_smem = 6 * tile;                           // Q, dO, 2 x (K, V)
  static constexpr std::size_t dkv_smem = 6 * tile + 2 * 2 * kFaTile * 4;    // + 2 x (lse, D)
};

// Queues the copy of rows [0, valid) of a 64 x HD tile (global row stride `stride` elements)
// into shared memory; rows past `valid` (past the end of the sequence) are zero-filled so they
// contribute nothing to the products (0 * garbage could be NaN).
template <int HD>
__device__ __forceinline__ void fa_load_tile(bf16* dst, const bf16* src, std::size_t stride,
                                             int valid) {
  constexpr int kVecs = HD / 8;
  for (int idx = threadIdx.x; idx < kFaTile * kVecs; idx += kFaThreads) {
    const int r = idx / kVecs, c = (idx % kVecs) * 8;
    const bool ok = r < valid;
    cp_async16(dst + r * FaCfg<HD>::LDS + c, src + (ok ? r : 0) * stride + c, ok);
  }
}

// A-operand fragments (16 rows x 16 columns at column k0) of a row-major bf16 tile in shared
// memory whose row 0 is the warp's first row: matrices (rows 0-7 | 8-15) x (cols 0-7 | 8-15).
template <int HD>
__device__ __forceinline__ void fa_load_a(uint32_t* a, const bf16* rows, int k0) {
  const int lane = threadIdx.x % 32;
  ldsm_x4(a, rows + (lane % 16) * FaCfg<HD>::LDS + k0 + (lane / 16) * 8);
}

// acc[16 x 64] += A[16 x HD] * Bt^T where Bt is a 64 x HD row-major tile (K, V, Q or dO rows):
// the "scores" product. a[kk] are the A fragments for columns 16kk..16kk+15.
template <int HD>
__device__ __forceinline__ void fa_scores(float (*acc)[4], uint32_t (*a)[4],
                                          const bf16* bt) {
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int kk = 0; kk < HD / 16; ++kk) {
#pragma unroll
    for (int np = 0; np < kFaTile / 16; ++np) {
      // matrices: (rows np*16 + 0-7 | 8-15) x (cols 16kk + 0-7 | 8-15), b0/b1 of two n-blocks
      uint32_t b[4];
      ldsm_x4(b, bt + (np * 16 + (lane / 16) * 8 + lane % 8) * FaCfg<HD>::LDS + kk * 16 +
                     ((lane / 8) % 2) * 8);
      mma_bf16_16816(acc[2 * np], a[kk], b[0], b[1]);
      mma_bf16_16816(acc[2 * np + 1], a[kk], b[2], b[3]);
    }
  }
}

// acc[16 x HD] += P[16 x 64] * Bm where P is held as score fragments (converted to bf16 here)
// and Bm is a 64 x HD row-major tile (V, K, dO or Q), read transposed by ldmatrix.trans.
template <int HD>
__device__ __forceinline__ void fa_pv(float (*acc)[4], float (*p)[4], const bf16* bm) {
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int kk = 0; kk < kFaTile / 16; ++kk) {
    // The accumulator layout of two 8-column blocks is exactly mma's A layout for 16 columns.
    const uint32_t pa[4] = {pack_bf16(p[2 * kk][0], p[2 * kk][1]),
                            pack_bf16(p[2 * kk][2], p[2 * kk][3]),
                            pack_bf16(p[2 * kk + 1][0], p[2 * kk + 1][1]),
                            pack_bf16(p[2 * kk + 1][2], p[2 * kk + 1][3])};
#pragma unroll
    for (int dp = 0; dp < HD / 16; ++dp) {
      // matrices: (rows 16kk + 0-7 | 8-15) x (cols 16dp + 0-7 | 8-15), transposed
      uint32_t b[4];
      ldsm_x4_trans(b, bm + (kk * 16 + ((lane / 8) % 2) * 8 + lane % 8) * FaCfg<HD>::LDS +
                           dp * 16 + (lane / 16) * 8);
      mma_bf16_16816(acc[2 * dp], pa, b[0], b[1]);
      mma_bf16_16816(acc[2 * dp + 1], pa, b[2], b[3]);
    }
  }
}

// Writes a warp's 16 x HD fp32 accumulator, times `scale`, as bf16 rows row0.. (skipping rows
// >= T) of a matrix with row stride `stride`.
template <int HD>
__device__ __forceinline__ void fa_store(bf16* dst, std::size_t stride, int row0, int T,
                                         float (*acc)[4], float scale) {
  const int lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int row = row0 + g + 8 * half;
    if (row >= T) continue;
    bf16* p = dst + static_cast<std::size_t>(row) * stride + 2 * t;
#pragma unroll
    for (int j = 0; j < HD / 8; ++j)
      *reinterpret_cast<uint32_t*>(p + 8 * j) =
          pack_bf16(acc[j][2 * half] * scale, acc[j][2 * half + 1] * scale);
  }
}

// The forward gives each warp MT 16-row blocks (MT = 2 up to head_dim 64: 128 queries per
// block). Every K/V fragment read from shared memory then feeds MT mma's, which halves the
// shared-memory traffic per FLOP; at larger head dims the extra accumulators would spill.
template <int HD>
constexpr int fa_fwd_mt() {
  return HD <= 64 ? 2 : 1;
}
template <int MT>
constexpr int fa_fwd_rows() {
  return kFaWarps * 16 * MT;
}
template <int HD, int MT>
constexpr std::size_t fa_fwd_smem() {
  return (fa_fwd_rows<MT>() / kFaTile + 4) * FaCfg<HD>::tile;  // Q, 2 x (K, V)
}

template <int HD, int MT>
constexpr std::size_t fa_dq_m_smem() {
  return (2 * fa_fwd_rows<MT>() / kFaTile + 4) * FaCfg<HD>::tile;  // Q, dO, 2 x (K, V)
}

// acc[m] (16 x 64) += A[m] (16 x HD) * Bt^T for m < MT: fa_scores with each B fragment loaded
// once for all MT row blocks.
template <int HD, int MT>
__device__ __forceinline__ void fa_scores_m(float (*acc)[kFaTile / 8][4],
                                            uint32_t (*a)[HD / 16][4], const bf16* bt) {
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int kk = 0; kk < HD / 16; ++kk) {
#pragma unroll
    for (int np = 0; np < kFaTile / 16; ++np) {
      uint32_t b[4];
      ldsm_x4(b, bt + (np * 16 + (lane / 16) * 8 + lane % 8) * FaCfg<HD>::LDS + kk * 16 +
                     ((lane / 8) % 2) * 8);
#pragma unroll
      for (int m = 0; m < MT; ++m) {
        mma_bf16_16816(acc[m][2 * np], a[m][kk], b[0], b[1]);
        mma_bf16_16816(acc[m][2 * np + 1], a[m][kk], b[2], b[3]);
      }
    }
  }
}

// acc[m] (16 x HD) += P[m] (16 x 64) * Bm for m < MT, as fa_pv.
template <int HD, int MT>
__device__ __forceinline__ void fa_pv_m(float (*acc)[HD / 8][4], float (*p)[kFaTile / 8][4],
                                        const bf16* bm) {
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int kk = 0; kk < kFaTile / 16; ++kk) {
    uint32_t pa[MT][4];
#pragma unroll
    for (int m = 0; m < MT; ++m) {
      pa[m][0] = pack_bf16(p[m][2 * kk][0], p[m][2 * kk][1]);
      pa[m][1] = pack_bf16(p[m][2 * kk][2], p[m][2 * kk][3]);
      pa[m][2] = pack_bf16(p[m][2 * kk + 1][0], p[m][2 * kk + 1][1]);
      pa[m][3] = pack_bf16(p[m][2 * kk + 1][2], p[m][2 * kk + 1][3]);
    }
#pragma unroll
    for (int dp = 0; dp < HD / 16; ++dp) {
      uint32_t b[4];
      ldsm_x4_trans(b, bm + (kk * 16 + ((lane / 8) % 2) * 8 + lane % 8) * FaCfg<HD>::LDS +
                           dp * 16 + (lane / 16) * 8);
#pragma unroll
      for (int m = 0; m < MT; ++m) {
        mma_bf16_16816(acc[m][2 * dp], pa[m], b[0], b[1]);
        mma_bf16_16816(acc[m][2 * dp + 1], pa[m], b[2], b[3]);
      }
    }
  }
}

template <int HD, int MT>
__global__ void __launch_bounds__(kFaThreads) attn_fwd_fa2(bf16* out, float* lse, const bf16* qkv,
                                                            AttnArgs a) {
  using C = FaCfg<HD>;
  constexpr int BR = fa_fwd_rows<MT>();
  TSU_DYNAMIC_SMEM(smem);
  bf16* Qs = reinterpret_cast<bf16*>(smem);
  bf16* Ks = Qs + (BR / kFaTile) * C::tile_elems;  // buffers 0, 1
  bf16* Vs = Ks + 2 * C::tile_elems;               // buffers 0, 1

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
  const int nqt = (a.T + BR - 1) / BR;
  const int BH = a.B * a.H;
  // Heaviest (last) query tiles get the lowest block ids so they start first.
  const int qt = nqt - 1 - static_cast<int>(blockIdx.x / BH);
  const int bh = static_cast<int>(blockIdx.x % BH);
  const int h = bh % a.H, b = bh / a.H;
  const int kvh = h / (a.H / a.KV);
  const int q0 = qt * BR;
  const int nkt = (min(q0 + BR, a.T) + kFaTile - 1) / kFaTile;  // key tiles up to the diagonal
  const int wr0 = q0 + warp * 16 * MT;                          // the warp's first row

#pragma unroll
  for (int i = 0; i < BR / kFaTile; ++i)
    fa_load_tile<HD>(Qs + i * C::tile_elems, qkv + q_index(a, b, q0 + i * kFaTile, h), a.rs,
                     min(kFaTile, a.T - q0 - i * kFaTile));
  fa_load_tile<HD>(Ks, qkv + k_index(a, b, 0, kvh), a.rs, min(kFaTile, a.T));
  fa_load_tile<HD>(Vs, qkv + v_index(a, b, 0, kvh), a.rs, min(kFaTile, a.T));
  cp_async_commit();
  cp_async_wait<0>();
  __syncthreads();

  uint32_t qf[MT][HD / 16][4];
#pragma unroll
  for (int m = 0; m < MT; ++m)
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk)
      fa_load_a<HD>(qf[m][kk], Qs + (warp * MT + m) * 16 * C::LDS, kk * 16);

  float o[MT][HD / 8][4];
  float m_run[MT][2], l_part[MT][2];  // l_part: this lane's share of the row sums
#pragma unroll
  for (int m = 0; m < MT; ++m) {
#pragma unroll
    for (int j = 0; j < HD / 8; ++j) o[m][j][0] = o[m][j][1] = o[m][j][2] = o[m][j][3] = 0.f;
    m_run[m][0] = m_run[m][1] = -INFINITY;
    l_part[m][0] = l_part[m][1] = 0.f;
  }
  const float sl2 = a.scale * kLog2e;  // scores in log2 units: exp2 is one instruction

  for (int kt = 0; kt < nkt; ++kt) {
    const int buf = kt & 1;
    if (kt + 1 < nkt) {  // prefetch the next K/V tile into the other buffer
      const int k1 = (kt + 1) * kFaTile;
      fa_load_tile<HD>(Ks + (buf ^ 1) * C::tile_elems, qkv + k_index(a, b, k1, kvh), a.rs,
                       min(kFaTile, a.T - k1));
      fa_load_tile<HD>(Vs + (buf ^ 1) * C::tile_elems, qkv + v_index(a, b, k1, kvh), a.rs,
                       min(kFaTile, a.T - k1));
    }
    cp_async_commit();
    cp_async_wait<1>();  // this tile's group has landed (the newest may still be in flight)
    __syncthreads();
    const int k0 = kt * kFaTile;
    // A tile entirely above this warp's rows is fully masked: nothing to add (warp-uniform).
    if (k0 <= wr0 + 16 * MT - 1) {
      const bf16* Kb = Ks + buf * C::tile_elems;
      const bf16* Vb = Vs + buf * C::tile_elems;
      float s[MT][kFaTile / 8][4];
#pragma unroll
      for (int m = 0; m < MT; ++m)
#pragma unroll
        for (int j = 0; j < kFaTile / 8; ++j) s[m][j][0] = s[m][j][1] = s[m][j][2] = s[m][j][3] = 0.f;
      fa_scores_m<HD, MT>(s, qf, Kb);

      // Only tiles reaching past the warp's first row need the mask; keys past T only occur
      // there too.
      const bool need_mask = k0 + kFaTile - 1 > wr0;
#pragma unroll
      for (int m = 0; m < MT; ++m) {
        float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int j = 0; j < kFaTile / 8; ++j)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            float v = s[m][j][e] * sl2;
            if (need_mask && k0 + 8 * j + 2 * t + (e & 1) > wr0 + 16 * m + g + 8 * (e >> 1))
              v = -INFINITY;
            s[m][j][e] = v;
            mx[e >> 1] = fmaxf(mx[e >> 1], v);
          }
        float alpha[2];
#pragma unroll
        for (int i = 0; i < 2; ++i) {
          mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 1));
          mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 2));
          // Every row sees key 0 in tile 0, so m_new is finite from then on; at kt = 0,
          // exp2(-inf) = 0 clears the (zero) history.
          const float m_new = fmaxf(m_run[m][i], mx[i]);
          alpha[i] = exp2f(m_run[m][i] - m_new);
          m_run[m][i] = m_new;
          l_part[m][i] *= alpha[i];
        }
#pragma unroll
        for (int j = 0; j < kFaTile / 8; ++j)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const float p = exp2f(s[m][j][e] - m_run[m][e >> 1]);
            s[m][j][e] = p;
            l_part[m][e >> 1] += p;
          }
#pragma unroll
        for (int j = 0; j < HD / 8; ++j) {
          o[m][j][0] *= alpha[0];
          o[m][j][1] *= alpha[0];
          o[m][j][2] *= alpha[1];
          o[m][j][3] *= alpha[1];
        }
      }
      fa_pv_m<HD, MT>(o, s, Vb);
    }
    __syncthreads();  // every warp is done with this buffer before it is refilled
  }

#pragma unroll
  for (int m = 0; m < MT; ++m) {
    float inv[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      float l = l_part[m][i];
      l += __shfl_xor_sync(0xffffffffu, l, 1);
      l += __shfl_xor_sync(0xffffffffu, l, 2);
      inv[i] = 1.f / l;
      const int row = wr0 + 16 * m + g + 8 * i;
      if (t == 0 && row < a.T) lse[lse_index(a, b, h, row)] = (m_run[m][i] + log2f(l)) * kLn2;
    }
#pragma unroll
    for (int j = 0; j < HD / 8; ++j) {
      o[m][j][0] *= inv[0];
      o[m][j][1] *= inv[0];
      o[m][j][2] *= inv[1];
      o[m][j][3] *= inv[1];
    }
    fa_store<HD>(out + o_index(a, b, 0, h), static_cast<std::size_t>(a.H) * a.hd, wr0 + 16 * m,
                 a.T, o[m], 1.f);
  }
}

// dQ = scale * dS K with dS = P * (dP - D), P = exp(S - lse), dP = dO V^T: one block per
// (batch, head, query tile) walking the key tiles up to the diagonal.
template <int HD>
__global__ void __launch_bounds__(kFaThreads)
    attn_bwd_dq_fa2(bf16* dqkv, const bf16* dout, const bf16* qkv, const float* lse,
                    const float* Dsum, AttnArgs a) {
  using C = FaCfg<HD>;
  TSU_DYNAMIC_SMEM(smem);
  bf16* Qs = reinterpret_cast<bf16*>(smem);
  bf16* dOs = Qs + C::tile_elems;
  bf16* Ks = dOs + C::tile_elems;     // buffers 0, 1
  bf16* Vs = Ks + 2 * C::tile_elems;  // buffers 0, 1

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
  const int nqt = (a.T + kFaTile - 1) / kFaTile;
  const int BH = a.B * a.H;
  const int qt = nqt - 1 - static_cast<int>(blockIdx.x / BH);
  const int bh = static_cast<int>(blockIdx.x % BH);
  const int h = bh % a.H, b = bh / a.H;
  const int kvh = h / (a.H / a.KV);
  const int q0 = qt * kFaTile;
  const int valid = min(kFaTile, a.T - q0);

  fa_load_tile<HD>(Qs, qkv + q_index(a, b, q0, h), a.rs, valid);
  fa_load_tile<HD>(dOs, dout + o_index(a, b, q0, h), static_cast<std::size_t>(a.H) * a.hd, valid);
  fa_load_tile<HD>(Ks, qkv + k_index(a, b, 0, kvh), a.rs, min(kFaTile, a.T));
  fa_load_tile<HD>(Vs, qkv + v_index(a, b, 0, kvh), a.rs, min(kFaTile, a.T));
  cp_async_commit();

  const int row0 = q0 + warp * 16 + g;
  float lse_r[2], D_r[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int row = row0 + 8 * i;
    // Padding rows (>= T) have zero Q and dO, so P = 1, dP = 0 and dS = 0 with these values.
    lse_r[i] = row < a.T ? lse[lse_index(a, b, h, row)] * kLog2e : 0.f;
    D_r[i] = row < a.T ? Dsum[lse_index(a, b, h, row)] : 0.f;
  }
  cp_async_wait<0>();
  __syncthreads();

  uint32_t qf[HD / 16][4], df[HD / 16][4];
#pragma unroll
  for (int kk = 0; kk < HD / 16; ++kk) {
    fa_load_a<HD>(qf[kk], Qs + warp * 16 * C::LDS, kk * 16);
    fa_load_a<HD>(df[kk], dOs + warp * 16 * C::LDS, kk * 16);
  }
  float dq[HD / 8][4];
#pragma unroll
  for (int j = 0; j < HD / 8; ++j) dq[j][0] = dq[j][1] = dq[j][2] = dq[j][3] = 0.f;
  const float sl2 = a.scale * kLog2e;

  for (int kt = 0; kt <= qt; ++kt) {
    const int buf = kt & 1;
    if (kt < qt) {
      const int k1 = (kt + 1) * kFaTile;
      fa_load_tile<HD>(Ks + (buf ^ 1) * C::tile_elems, qkv + k_index(a, b, k1, kvh), a.rs,
                       min(kFaTile, a.T - k1));
      fa_load_tile<HD>(Vs + (buf ^ 1) * C::tile_elems, qkv + v_index(a, b, k1, kvh), a.rs,
                       min(kFaTile, a.T - k1));
    }
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    const bf16* Kb = Ks + buf * C::tile_elems;
    const bf16* Vb = Vs + buf * C::tile_elems;

    float s[kFaTile / 8][4], dp[kFaTile / 8][4];
#pragma unroll
    for (int j = 0; j < kFaTile / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[j][e] = dp[j][e] = 0.f;
    fa_scores<HD>(s, qf, Kb);
    fa_scores<HD>(dp, df, Vb);

    const int k0 = kt * kFaTile;
    const bool diag = kt == qt;
#pragma unroll
    for (int j = 0; j < kFaTile / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int i = e >> 1;
        float p = exp2f(s[j][e] * sl2 - lse_r[i]);
        if (diag && k0 + 8 * j + 2 * t + (e & 1) > row0 + 8 * i) p = 0.f;
        s[j][e] = p * (dp[j][e] - D_r[i]);  // dS
      }
    fa_pv<HD>(dq, s, Kb);
    __syncthreads();
  }
  fa_store<HD>(dqkv + q_index(a, b, 0, h), a.rs, q0 + warp * 16, a.T, dq, a.scale);
}

// attn_bwd_dq_fa2 with MT 16-row blocks per warp (the default at head_dim <= 64, MT = 2: 128
// queries per block), so each K/V fragment feeds MT mma's. Q and dO fragments are re-read from
// shared memory each step to leave registers for the accumulators.
template <int HD, int MT>
__global__ void __launch_bounds__(kFaThreads)
    attn_bwd_dq_fa2_m(bf16* dqkv, const bf16* dout, const bf16* qkv, const float* lse,
                      const float* Dsum, AttnArgs a) {
  using C = FaCfg<HD>;
  constexpr int BR = fa_fwd_rows<MT>();
  constexpr int QT = BR / kFaTile;  // 64-row smem tiles per Q (and dO) block
  TSU_DYNAMIC_SMEM(smem);
  bf16* Qs = reinterpret_cast<bf16*>(smem);
  bf16* dOs = Qs + QT * C::tile_elems;
  bf16* Ks = dOs + QT * C::tile_elems;  // buffers 0, 1
  bf16* Vs = Ks + 2 * C::tile_elems;    // buffers 0, 1

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
  const int nqt = (a.T + BR - 1) / BR;
  const int BH = a.B * a.H;
  const int qt = nqt - 1 - static_cast<int>(blockIdx.x / BH);
  const int bh = static_cast<int>(blockIdx.x % BH);
  const int h = bh % a.H, b = bh / a.H;
  const int kvh = h / (a.H / a.KV);
  const int q0 = qt * BR;
  const int nkt = (min(q0 + BR, a.T) + kFaTile - 1) / kFaTile;
  const int wr0 = q0 + warp * 16 * MT;

#pragma unroll
  for (int i = 0; i < QT; ++i) {
    const int valid = min(kFaTile, a.T - q0 - i * kFaTile);
    fa_load_tile<HD>(Qs + i * C::tile_elems, qkv + q_index(a, b, q0 + i * kFaTile, h), a.rs,
                     valid);
    fa_load_tile<HD>(dOs + i * C::tile_elems, dout + o_index(a, b, q0 + i * kFaTile, h),
                     static_cast<std::size_t>(a.H) * a.hd, valid);
  }
  fa_load_tile<HD>(Ks, qkv + k_index(a, b, 0, kvh), a.rs, min(kFaTile, a.T));
  fa_load_tile<HD>(Vs, qkv + v_index(a, b, 0, kvh), a.rs, min(kFaTile, a.T));
  cp_async_commit();

  float lse_r[MT][2], D_r[MT][2];
#pragma unroll
  for (int m = 0; m < MT; ++m)
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int row = wr0 + 16 * m + g + 8 * i;
      // Padding rows (>= T) have zero Q and dO, so P = 1, dP = 0 and dS = 0 with these values.
      lse_r[m][i] = row < a.T ? lse[lse_index(a, b, h, row)] * kLog2e : 0.f;
      D_r[m][i] = row < a.T ? Dsum[lse_index(a, b, h, row)] : 0.f;
    }
  cp_async_wait<0>();
  __syncthreads();

  float dq[MT][HD / 8][4];
#pragma unroll
  for (int m = 0; m < MT; ++m)
#pragma unroll
    for (int j = 0; j < HD / 8; ++j) dq[m][j][0] = dq[m][j][1] = dq[m][j][2] = dq[m][j][3] = 0.f;
  const float sl2 = a.scale * kLog2e;

  for (int kt = 0; kt < nkt; ++kt) {
    const int buf = kt & 1;
    if (kt + 1 < nkt) {
      const int k1 = (kt + 1) * kFaTile;
      fa_load_tile<HD>(Ks + (buf ^ 1) * C::tile_elems, qkv + k_index(a, b, k1, kvh), a.rs,
                       min(kFaTile, a.T - k1));
      fa_load_tile<HD>(Vs + (buf ^ 1) * C::tile_elems, qkv + v_index(a, b, k1, kvh), a.rs,
                       min(kFaTile, a.T - k1));
    }
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    const int k0 = kt * kFaTile;
    if (k0 <= wr0 + 16 * MT - 1) {  // else fully masked for this warp (warp-uniform)
      const bf16* Kb = Ks + buf * C::tile_elems;
      const bf16* Vb = Vs + buf * C::tile_elems;
      float s[MT][kFaTile / 8][4], dp[MT][kFaTile / 8][4];
#pragma unroll
      for (int m = 0; m < MT; ++m)
#pragma unroll
        for (int j = 0; j < kFaTile / 8; ++j)
#pragma unroll
          for (int e = 0; e < 4; ++e) s[m][j][e] = dp[m][j][e] = 0.f;
      {
        uint32_t af[MT][HD / 16][4];
#pragma unroll
        for (int m = 0; m < MT; ++m)
#pragma unroll
          for (int kk = 0; kk < HD / 16; ++kk)
            fa_load_a<HD>(af[m][kk], Qs + (warp * MT + m) * 16 * C::LDS, kk * 16);
        fa_scores_m<HD, MT>(s, af, Kb);
#pragma unroll
        for (int m = 0; m < MT; ++m)
#pragma unroll
          for (int kk = 0; kk < HD / 16; ++kk)
            fa_load_a<HD>(af[m][kk], dOs + (warp * MT + m) * 16 * C::LDS, kk * 16);
        fa_scores_m<HD, MT>(dp, af, Vb);
      }
      const bool need_mask = k0 + kFaTile - 1 > wr0;
#pragma unroll
      for (int m = 0; m < MT; ++m)
#pragma unroll
        for (int j = 0; j < kFaTile / 8; ++j)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int i = e >> 1;
            float p = exp2f(s[m][j][e] * sl2 - lse_r[m][i]);
            if (need_mask && k0 + 8 * j + 2 * t + (e & 1) > wr0 + 16 * m + g + 8 * i) p = 0.f;
            s[m][j][e] = p * (dp[m][j][e] - D_r[m][i]);  // dS
          }
      fa_pv_m<HD, MT>(dq, s, Kb);
    }
    __syncthreads();
  }
#pragma unroll
  for (int m = 0; m < MT; ++m)
    fa_store<HD>(dqkv + q_index(a, b, 0, h), a.rs, wr0 + 16 * m, a.T, dq[m], a.scale);
}

// dK = scale * dS^T Q and dV = P^T dO: one block per (batch, kv head, key tile), each warp
// owning 16 keys, walking every query tile at or below the diagonal of every query head of the
// group. Works on the transposed products (keys as rows) so the sums over queries stay in each
// warp's registers: no atomics, a fixed order, deterministic.
template <int HD>
__global__ void __launch_bounds__(kFaThreads)
    attn_bwd_dkv_fa2(bf16* dqkv, const bf16* dout, const bf16* qkv, const float* lse,
                     const float* Dsum, AttnArgs a) {
  using C = FaCfg<HD>;
  TSU_DYNAMIC_SMEM(smem);
  bf16* Ks = reinterpret_cast<bf16*>(smem);
  bf16* Vs = Ks + C::tile_elems;
  bf16* Qs = Vs + C::tile_elems;       // buffers 0, 1
  bf16* dOs = Qs + 2 * C::tile_elems;  // buffers 0, 1
  float* lse_s = reinterpret_cast<float*>(dOs + 2 * C::tile_elems);  // 2 x 64, log2 units
  float* D_s = lse_s + 2 * kFaTile;                                   // 2 x 64

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
  const int nqt = (a.T + kFaTile - 1) / kFaTile;
  const int BKV = a.B * a.KV;
  // Key tile 0 has the most query tiles to visit: lowest block ids first.
  const int kt = static_cast<int>(blockIdx.x / BKV);
  const int bg = static_cast<int>(blockIdx.x % BKV);
  const int kvh = bg % a.KV, b = bg / a.KV;
  const int G = a.H / a.KV;
  const int k0 = kt * kFaTile;
  const int per_head = nqt - kt;  // query tiles kt..nqt-1
  const int steps = G * per_head;

  // Queues step `it`'s Q/dO tiles and fills its lse/D rows (plain stores: visible after the
  // barrier that follows the cp.async wait).
  auto load_step = [&](int it, int buf) {
    const int h = kvh * G + it / per_head;
    const int q0 = (kt + it % per_head) * kFaTile;
    const int valid = min(kFaTile, a.T - q0);
    fa_load_tile<HD>(Qs + buf * C::tile_elems, qkv + q_index(a, b, q0, h), a.rs, valid);
    fa_load_tile<HD>(dOs + buf * C::tile_elems, dout + o_index(a, b, q0, h),
                     static_cast<std::size_t>(a.H) * a.hd, valid);
    for (int i = threadIdx.x; i < kFaTile; i += kFaThreads) {
      lse_s[buf * kFaTile + i] = i < valid ? lse[lse_index(a, b, h, q0 + i)] * kLog2e : 0.f;
      D_s[buf * kFaTile + i] = i < valid ? Dsum[lse_index(a, b, h, q0 + i)] : 0.f;
    }
  };

  fa_load_tile<HD>(Ks, qkv + k_index(a, b, k0, kvh), a.rs, min(kFaTile, a.T - k0));
  fa_load_tile<HD>(Vs, qkv + v_index(a, b, k0, kvh), a.rs, min(kFaTile, a.T - k0));
  load_step(0, 0);
  cp_async_commit();

  float dk[HD / 8][4], dv[HD / 8][4];
#pragma unroll
  for (int j = 0; j < HD / 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) dk[j][e] = dv[j][e] = 0.f;
  const int krow0 = k0 + warp * 16 + g;  // this lane's keys: krow0, krow0 + 8
  const float sl2 = a.scale * kLog2e;

  for (int it = 0; it < steps; ++it) {
    const int buf = it & 1;
    if (it + 1 < steps) load_step(it + 1, buf ^ 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    const bf16* Qb = Qs + buf * C::tile_elems;
    const bf16* dOb = dOs + buf * C::tile_elems;
    const float* lse_b = lse_s + buf * kFaTile;
    const float* D_b = D_s + buf * kFaTile;
    const int q0 = (kt + it % per_head) * kFaTile;

    // S^T = K Q^T and dP^T = V dO^T for this warp's 16 keys x 64 queries. K/V fragments are
    // re-read from shared memory each step rather than pinned in registers: it keeps the
    // kernel clear of spills at head_dim 128.
    float s[kFaTile / 8][4], dp[kFaTile / 8][4];
#pragma unroll
    for (int j = 0; j < kFaTile / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[j][e] = dp[j][e] = 0.f;
    {
      uint32_t kf[HD / 16][4];
#pragma unroll
      for (int kk = 0; kk < HD / 16; ++kk) fa_load_a<HD>(kf[kk], Ks + warp * 16 * C::LDS, kk * 16);
      fa_scores<HD>(s, kf, Qb);
    }
    {
      uint32_t vf[HD / 16][4];
#pragma unroll
      for (int kk = 0; kk < HD / 16; ++kk) fa_load_a<HD>(vf[kk], Vs + warp * 16 * C::LDS, kk * 16);
      fa_scores<HD>(dp, vf, dOb);
    }
    // Masking is needed on the diagonal tile (query < key) and on the tile crossing T.
    const bool need_mask = q0 == k0 || q0 + kFaTile > a.T;
#pragma unroll
    for (int j = 0; j < kFaTile / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int c = 8 * j + 2 * t + (e & 1);
        float p = exp2f(s[j][e] * sl2 - lse_b[c]);
        if (need_mask) {
          const int q = q0 + c;
          if (q < krow0 + 8 * (e >> 1) || q >= a.T) p = 0.f;
        }
        s[j][e] = p;
        dp[j][e] = p * (dp[j][e] - D_b[c]);  // dS^T
      }
    fa_pv<HD>(dv, s, dOb);
    fa_pv<HD>(dk, dp, Qb);
    __syncthreads();
  }
  fa_store<HD>(dqkv + k_index(a, b, 0, kvh), a.rs, k0 + warp * 16, a.T, dk, a.scale);
  fa_store<HD>(dqkv + v_index(a, b, 0, kvh), a.rs, k0 + warp * 16, a.T, dv, 1.f);
}

// ------------------------------------------------------------------------------------------
// Dispatch over the instantiated head dims.
template <class F>
bool with_head_dim(int hd, F&& f) {
  switch (hd) {
    case 32: f(std::integral_constant<int, 32>{}); return true;
    case 64: f(std::integral_constant<int, 64>{}); return true;
    case 80: f(std::integral_constant<int, 80>{}); return true;
    case 96: f(std::integral_constant<int, 96>{}); return true;
    case 128: f(std::integral_constant<int, 128>{}); return true;
    default: return false;
  }
}

// Set by attention_init: whether each head dim's kernels fit this device's shared memory.
bool g_tc_ready[129] = {};

AttnArgs make_args(const AttnDims& d) {
  AttnArgs a;
  a.B = d.B;
  a.T = d.T;
  a.H = d.H;
  a.KV = d.KV;
  a.hd = d.hd;
  a.rs = (d.H + 2 * d.KV) * d.hd;
  a.scale = 1.f / std::sqrt(static_cast<float>(d.hd));
  return a;
}

unsigned warp_blocks(std::size_t warps, int per_block) {
  return static_cast<unsigned>((warps + per_block - 1) / per_block);
}

}  // namespace

void attention_init(int max_smem_optin) {
  for (int hd : {32, 64, 80, 96, 128}) {
    with_head_dim(hd, [&](auto tag) {
      constexpr int HD = decltype(tag)::value;
      using C = Cfg<HD>;
      using F = FaCfg<HD>;
      constexpr int MT = fa_fwd_mt<HD>();
      const std::size_t need = std::max({C::fwd_smem, C::dq_smem, C::dkv_smem,
                                         fa_fwd_smem<HD, MT>(), F::dq_smem, F::dkv_smem});
      if (need > static_cast<std::size_t>(max_smem_optin)) return;  // plain kernels instead
      auto* ff = &attn_fwd_fa2<HD, MT>;
      auto* ff1 = &attn_fwd_fa2<HD, 1>;
      TSU_CUDA_CHECK(cudaFuncSetAttribute(ff1, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(fa_fwd_smem<HD, 1>())));
      auto* fq = &attn_bwd_dq_fa2<HD>;
      if constexpr (HD <= 64) {
        auto* fq2 = &attn_bwd_dq_fa2_m<HD, 2>;
        TSU_CUDA_CHECK(cudaFuncSetAttribute(fq2, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(fa_dq_m_smem<HD, 2>())));
      }
      auto* fkv = &attn_bwd_dkv_fa2<HD>;
      TSU_CUDA_CHECK(cudaFuncSetAttribute(ff, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(fa_fwd_smem<HD, MT>())));
      TSU_CUDA_CHECK(cudaFuncSetAttribute(fq, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(F::dq_smem)));
      TSU_CUDA_CHECK(cudaFuncSetAttribute(fkv, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(F::dkv_smem)));
      auto* f = &attn_fwd_tc<HD>;
      auto* q = &attn_bwd_dq_tc<HD>;
      auto* kv = &attn_bwd_dkv_tc<HD>;
      TSU_CUDA_CHECK(cudaFuncSetAttribute(f, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(C::fwd_smem)));
      TSU_CUDA_CHECK(cudaFuncSetAttribute(q, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(C::dq_smem)));
      TSU_CUDA_CHECK(cudaFuncSetAttribute(kv, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(C::dkv_smem)));
      g_tc_ready[HD] = true;
    });
  }
}

bool attention_uses_tensor_cores(const Ctx& c, const AttnDims& d, const void* const* ptrs,
                                 int nptrs) {
  if (c.simple_attention) return false;
  if (d.hd <= 0 || d.hd > 128 || !g_tc_ready[d.hd]) return false;
  // 16-byte vector loads need 16-byte aligned rows; rows are multiples of 16 bytes already.
  for (int i = 0; i < nptrs; ++i)
    if (reinterpret_cast<std::uintptr_t>(ptrs[i]) % 16 != 0) return false;
  return true;
}

void attention_forward(const Ctx& c, bf16* out, float* lse, const bf16* qkv, const AttnDims& d) {
  if (d.B * d.T == 0) return;
  const AttnArgs a = make_args(d);
  const void* ptrs[] = {out, qkv};
  if (attention_uses_tensor_cores(c, d, ptrs, 2)) {
    with_head_dim(d.hd, [&](auto tag) {
      constexpr int HD = decltype(tag)::value;
      if (!c.wmma_attention) {
        auto launch = [&](auto mt) {
          constexpr int MT = decltype(mt)::value;
          constexpr int BR = fa_fwd_rows<MT>();
          const unsigned blocks = static_cast<unsigned>(((d.T + BR - 1) / BR) * d.B * d.H);
          constexpr std::size_t smem = fa_fwd_smem<HD, MT>();
          auto* k = &attn_fwd_fa2<HD, MT>;
          TSU_LAUNCH(k, blocks, kFaThreads, smem, c.stream, out, lse, qkv, a);
        };
        if (c.fa2_q64)
          launch(std::integral_constant<int, 1>{});
        else
          launch(std::integral_constant<int, fa_fwd_mt<HD>()>{});
        return;
      }
      const unsigned blocks = static_cast<unsigned>(((d.T + kTile - 1) / kTile) * d.B * d.H);
      auto* k = &attn_fwd_tc<HD>;
      TSU_LAUNCH(k, blocks, kTcThreads, Cfg<HD>::fwd_smem, c.stream, out, lse, qkv, a);
    });
    return;
  }
  auto* k = &attn_fwd_simple;
  TSU_LAUNCH(k, warp_blocks(static_cast<std::size_t>(d.B) * d.H * d.T, kSimpleWarps),
             kSimpleWarps * 32, 0, c.stream, out, lse, qkv, a);
}

std::size_t attention_backward_scratch_bytes(const AttnDims& d) {
  return align_up(static_cast<std::size_t>(d.B) * d.H * d.T * sizeof(float), 256);
}

void attention_backward(const Ctx& c, bf16* dqkv, const bf16* dout, const bf16* qkv,
                        const bf16* out, const float* lse, const AttnDims& d, void* scratch) {
  if (d.B * d.T == 0) return;
  const AttnArgs a = make_args(d);
  float* D = static_cast<float*>(scratch);
  auto* kd = &attn_dot_kernel;
  TSU_LAUNCH(kd, warp_blocks(static_cast<std::size_t>(d.B) * d.H * d.T, kDotWarps),
             kDotWarps * 32, 0, c.stream, D, dout, out, a);
  const void* ptrs[] = {dqkv, dout, qkv};
  if (attention_uses_tensor_cores(c, d, ptrs, 3)) {
    with_head_dim(d.hd, [&](auto tag) {
      constexpr int HD = decltype(tag)::value;
      if (!c.wmma_attention) {
        const int nt = (d.T + kFaTile - 1) / kFaTile;
        bool dq_done = false;
        if constexpr (HD <= 64) {
          if (!c.fa2_q64) {
            constexpr std::size_t smem = fa_dq_m_smem<HD, 2>();
            const int nt2 = (d.T + fa_fwd_rows<2>() - 1) / fa_fwd_rows<2>();
            auto* kq = &attn_bwd_dq_fa2_m<HD, 2>;
            TSU_LAUNCH(kq, static_cast<unsigned>(nt2 * d.B * d.H), kFaThreads, smem, c.stream,
                       dqkv, dout, qkv, lse, static_cast<const float*>(D), a);
            dq_done = true;
          }
        }
        if (!dq_done) {
          auto* kq = &attn_bwd_dq_fa2<HD>;
          TSU_LAUNCH(kq, static_cast<unsigned>(nt * d.B * d.H), kFaThreads, FaCfg<HD>::dq_smem,
                     c.stream, dqkv, dout, qkv, lse, static_cast<const float*>(D), a);
        }
        auto* kkv = &attn_bwd_dkv_fa2<HD>;
        TSU_LAUNCH(kkv, static_cast<unsigned>(nt * d.B * d.KV), kFaThreads,
                   FaCfg<HD>::dkv_smem, c.stream, dqkv, dout, qkv, lse,
                   static_cast<const float*>(D), a);
        return;
      }
      const int ntiles = (d.T + kTile - 1) / kTile;
      auto* kq = &attn_bwd_dq_tc<HD>;
      TSU_LAUNCH(kq, static_cast<unsigned>(ntiles * d.B * d.H), kTcThreads, Cfg<HD>::dq_smem,
                 c.stream, dqkv, dout, qkv, lse, static_cast<const float*>(D), a);
      auto* kkv = &attn_bwd_dkv_tc<HD>;
      TSU_LAUNCH(kkv, static_cast<unsigned>(ntiles * d.B * d.KV), kTcThreads, Cfg<HD>::dkv_smem,
                 c.stream, dqkv, dout, qkv, lse, static_cast<const float*>(D), a);
    });
    return;
  }
  auto* kq = &attn_bwd_dq_simple;
  TSU_LAUNCH(kq, warp_blocks(static_cast<std::size_t>(d.B) * d.H * d.T, kSimpleWarps),
             kSimpleWarps * 32, 0, c.stream, dqkv, dout, qkv, lse, static_cast<const float*>(D),
             a);
  auto* kkv = &attn_bwd_dkv_simple;
  TSU_LAUNCH(kkv, warp_blocks(static_cast<std::size_t>(d.B) * d.KV * d.T, kSimpleWarps),
             kSimpleWarps * 32, 0, c.stream, dqkv, dout, qkv, lse, static_cast<const float*>(D),
             a);
}

}  // namespace tsumugi::backend::TSU_CUDA_NS
