// Causal self-attention without a T x T matrix in memory.
//
// Tensor-core path (head_dim in {32, 64, 80, 96, 128}): flash-attention style tiles of 64 queries
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

constexpr float kLog2e = 1.4426950408889634f;
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
      const std::size_t need = std::max({C::fwd_smem, C::dq_smem, C::dkv_smem});
      if (need > static_cast<std::size_t>(max_smem_optin)) return;  // plain kernels instead
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
