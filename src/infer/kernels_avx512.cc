// AVX-512 row kernels (compiled with AVX-512 F/BW/VL/VNNI; called only when the CPU has them).
#include <immintrin.h>

#include "infer/kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "formats/safetensors.h"
#include "util/error.h"
#include "util/fast_math.h"

namespace tsumugi::infer::detail {

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__)

namespace {

inline float hsum(__m512 v) { return _mm512_reduce_add_ps(v); }

// Four lines from `at`, non-temporal: weights are read once per token (or prompt chunk).
inline void prefetch4_nta(const char* at) {
  _mm_prefetch(at, _MM_HINT_NTA);
  _mm_prefetch(at + 64, _MM_HINT_NTA);
  _mm_prefetch(at + 128, _MM_HINT_NTA);
  _mm_prefetch(at + 192, _MM_HINT_NTA);
}

// 16 weights widened to f32; `mask` selects the valid ones at a row's tail.
inline __m512 load_w(const std::byte* p, WType t, __mmask16 mask) {
  if (t == WType::F32) return _mm512_maskz_loadu_ps(mask, p);
  const __m256i h = _mm256_maskz_loadu_epi16(mask, p);
  if (t == WType::F16) return _mm512_cvtph_ps(h);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));  // bf16: the high half of an f32
}

// Four rows at a time share each load of x; the loop is bound by how fast the weights stream in.
template <WType T>
void rows_float(const WMat& W, int64_t r0, int64_t r1, const float* x, float* y) {
  const int64_t K = W.cols;
  const int64_t esz = T == WType::F32 ? 4 : 2;
  const int64_t full = K / 16 * 16;
  const __mmask16 tail = static_cast<__mmask16>((1u << (K - full)) - 1);
  int64_t r = r0;
  for (; r + 4 <= r1; r += 4) {
    const std::byte* w0 = W.data + r * K * esz;
    const std::byte* w1 = w0 + K * esz;
    const std::byte* w2 = w1 + K * esz;
    const std::byte* w3 = w2 + K * esz;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    // The next group of four rows is one contiguous run of 4 * K * esz bytes: prefetched in
    // address order, four lines for every 64 bytes taken from each current row.
    const char* next = reinterpret_cast<const char*>(w0 + 4 * K * esz);
    for (int64_t k = 0; k < full; k += 16) {
      if (T == WType::F32 || k % 32 == 0) prefetch4_nta(next + 4 * k * esz);
      const __m512 xv = _mm512_loadu_ps(x + k);
      a0 = _mm512_fmadd_ps(load_w(w0 + k * esz, T, 0xFFFF), xv, a0);
      a1 = _mm512_fmadd_ps(load_w(w1 + k * esz, T, 0xFFFF), xv, a1);
      a2 = _mm512_fmadd_ps(load_w(w2 + k * esz, T, 0xFFFF), xv, a2);
      a3 = _mm512_fmadd_ps(load_w(w3 + k * esz, T, 0xFFFF), xv, a3);
    }
    if (tail) {
      const __m512 xv = _mm512_maskz_loadu_ps(tail, x + full);
      a0 = _mm512_fmadd_ps(load_w(w0 + full * esz, T, tail), xv, a0);
      a1 = _mm512_fmadd_ps(load_w(w1 + full * esz, T, tail), xv, a1);
      a2 = _mm512_fmadd_ps(load_w(w2 + full * esz, T, tail), xv, a2);
      a3 = _mm512_fmadd_ps(load_w(w3 + full * esz, T, tail), xv, a3);
    }
    y[r] = hsum(a0);
    y[r + 1] = hsum(a1);
    y[r + 2] = hsum(a2);
    y[r + 3] = hsum(a3);
  }
  for (; r < r1; ++r) {
    const std::byte* w0 = W.data + r * K * esz;
    __m512 a0 = _mm512_setzero_ps();
    for (int64_t k = 0; k < full; k += 16) a0 = _mm512_fmadd_ps(load_w(w0 + k * esz, T, 0xFFFF), _mm512_loadu_ps(x + k), a0);
    if (tail) a0 = _mm512_fmadd_ps(load_w(w0 + full * esz, T, tail), _mm512_maskz_loadu_ps(tail, x + full), a0);
    y[r] = hsum(a0);
  }
}

#if defined(__AVX512BF16__)
// bf16 with AVX512-BF16: vdpbf16ps multiplies 32 bf16 pairs per instruction. x is given as two bf16
// vectors, hi = bf16(x) and lo = bf16(x - hi), so w*hi + w*lo keeps x to ~16 bits (about f32's
// result for bf16 weights) at a quarter of the widening path's instructions.
void rows_bf16_dp(const WMat& W, int64_t r0, int64_t r1, const uint16_t* xh, const uint16_t* xl, float* y) {
  const int64_t K = W.cols, full = K / 32 * 32;
  const __mmask32 tail = static_cast<__mmask32>((1ull << (K - full)) - 1);
  auto ld = [](const void* p) { return (__m512bh)_mm512_loadu_si512(p); };
  auto ldm = [](__mmask32 m, const void* p) { return (__m512bh)_mm512_maskz_loadu_epi16(m, p); };
  int64_t r = r0;
  for (; r + 4 <= r1; r += 4) {
    const uint16_t* w0 = reinterpret_cast<const uint16_t*>(W.data) + r * K;
    const uint16_t* w1 = w0 + K;
    const uint16_t* w2 = w1 + K;
    const uint16_t* w3 = w2 + K;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    const char* next = reinterpret_cast<const char*>(w0 + 4 * K);  // the next group, in address order
    for (int64_t k = 0; k < full; k += 32) {
      prefetch4_nta(next + 8 * k);
      const __m512bh h = ld(xh + k), l = ld(xl + k);
      __m512bh w = ld(w0 + k);
      a0 = _mm512_dpbf16_ps(_mm512_dpbf16_ps(a0, w, h), w, l);
      w = ld(w1 + k);
      a1 = _mm512_dpbf16_ps(_mm512_dpbf16_ps(a1, w, h), w, l);
      w = ld(w2 + k);
      a2 = _mm512_dpbf16_ps(_mm512_dpbf16_ps(a2, w, h), w, l);
      w = ld(w3 + k);
      a3 = _mm512_dpbf16_ps(_mm512_dpbf16_ps(a3, w, h), w, l);
    }
    if (tail) {
      const __m512bh h = ldm(tail, xh + full), l = ldm(tail, xl + full);
      __m512bh w = ldm(tail, w0 + full);
      a0 = _mm512_dpbf16_ps(_mm512_dpbf16_ps(a0, w, h), w, l);
      w = ldm(tail, w1 + full);
      a1 = _mm512_dpbf16_ps(_mm512_dpbf16_ps(a1, w, h), w, l);
      w = ldm(tail, w2 + full);
      a2 = _mm512_dpbf16_ps(_mm512_dpbf16_ps(a2, w, h), w, l);
      w = ldm(tail, w3 + full);
      a3 = _mm512_dpbf16_ps(_mm512_dpbf16_ps(a3, w, h), w, l);
    }
    y[r] = hsum(a0);
    y[r + 1] = hsum(a1);
    y[r + 2] = hsum(a2);
    y[r + 3] = hsum(a3);
  }
  for (; r < r1; ++r) {
    const uint16_t* w0 = reinterpret_cast<const uint16_t*>(W.data) + r * K;
    __m512 a0 = _mm512_setzero_ps();
    for (int64_t k = 0; k < full; k += 32) {
      const __m512bh w = ld(w0 + k);
      a0 = _mm512_dpbf16_ps(_mm512_dpbf16_ps(a0, w, ld(xh + k)), w, ld(xl + k));
    }
    if (tail) {
      const __m512bh w = ldm(tail, w0 + full);
      a0 = _mm512_dpbf16_ps(_mm512_dpbf16_ps(a0, w, ldm(tail, xh + full)), w, ldm(tail, xl + full));
    }
    y[r] = hsum(a0);
  }
}
#endif

// Q8_0 x Q8_0 with the weights stored as unsigned q + 128: VNNI's vpdpbusd multiplies unsigned by
// signed bytes, so one instruction takes 64 weights (two blocks) against x's signed quants. The +128
// adds 128 * sum(x) to each block's sum; starting the sum at -128 * sum(x), computed once per group
// of rows, takes it out again. Lanes 0-7 hold the first block's partial sums, 8-15 the second's;
// each half is scaled by its block's d_w * d_x. Four rows share each load of x, and the next
// group of four rows is prefetched in address order (non-temporal: the weights are read once per
// token); without prefetching, 2-thread decoding of the 124M shape ran at 106 tokens/s instead of
// ~200 (the hardware prefetcher does not follow four interleaved rows).
void rows_q8(const WMat& W, int64_t r0, int64_t r1, const int8_t* xq, const float* xd, float* y) {
  const int64_t K = W.cols, nb = K / kQ8Block, nb8 = nb / 8 * 8;
  const uint8_t* base = reinterpret_cast<const uint8_t*>(W.data);
  const __m512i k80 = _mm512_set1_epi8(static_cast<char>(0x80));
  const __m256i k80h = _mm256_set1_epi8(static_cast<char>(0x80));
  const __m512i zero = _mm512_setzero_si512();
  // Scale lanes for block pair j of a group of eight: 2j in lanes 0-7, 2j+1 in lanes 8-15.
  __m512i pick[4];
  for (int j = 0; j < 4; ++j)
    pick[j] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi32(2 * j)), _mm256_set1_epi32(2 * j + 1), 1);
  auto ld512 = [](const void* p) { return _mm512_loadu_si512(p); };
  auto ld256 = [](const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); };
  auto scales8 = [&](const uint16_t* d, const __m256 dx) {
    return _mm512_castps256_ps512(_mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(d))), dx));
  };
  constexpr int R = 4;
  static_assert(R == 4, "the prefetch below takes 4 lines per step, one per row");
  auto hsum8 = [](__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_hadd_ps(s, s);
    s = _mm_hadd_ps(s, s);
    return _mm_cvtss_f32(s);
  };
  int64_t r = r0;
  for (; r + R <= r1; r += R) {
    const uint8_t* q[R];
    const uint16_t* d[R];
    for (int i = 0; i < R; ++i) {
      q[i] = base + (r + i) * K;
      d[i] = W.scales + (r + i) * nb;
    }
    __m512 acc[R];
    __m256 acc_tail[R];
    for (int i = 0; i < R; ++i) {
      acc[i] = _mm512_setzero_ps();
      acc_tail[i] = _mm256_setzero_ps();
    }
    int64_t b = 0;
    for (; b < nb8; b += 8) {
      const __m256 dx = _mm256_loadu_ps(xd + b);
      __m512 sc[R];
      for (int i = 0; i < R; ++i) sc[i] = scales8(d[i] + b, dx);
      for (int j = 0; j < 4; ++j) {
        const int64_t o = (b + 2 * j) * kQ8Block;
        const __m512i xv = ld512(xq + o);
        const __m512i start = _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, k80, xv));
        prefetch4_nta(reinterpret_cast<const char*>(q[0] + R * K + R * o));  // R = 4 lines
        for (int i = 0; i < R; ++i) {
          const __m512i p = _mm512_dpbusd_epi32(start, ld512(q[i] + o), xv);
          acc[i] = _mm512_fmadd_ps(_mm512_permutexvar_ps(pick[j], sc[i]), _mm512_cvtepi32_ps(p), acc[i]);
        }
      }
    }
    for (; b < nb; ++b) {
      const int64_t o = b * kQ8Block;
      const __m256i xv = ld256(xq + o);
      const __m256i start = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_dpbusd_epi32(_mm256_setzero_si256(), k80h, xv));
      for (int i = 0; i < R; ++i) {
        const __m256i p = _mm256_dpbusd_epi32(start, ld256(q[i] + o), xv);
        acc_tail[i] = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(d[i][b]) * xd[b]), _mm256_cvtepi32_ps(p), acc_tail[i]);
      }
    }
    for (int i = 0; i < R; ++i) y[r + i] = hsum(acc[i]) + hsum8(acc_tail[i]);
  }
  for (; r < r1; ++r) {
    const uint8_t* q0 = base + r * K;
    const uint16_t* d0 = W.scales + r * nb;
    __m256 a0 = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t o = b * kQ8Block;
      const __m256i xv = ld256(xq + o);
      const __m256i start = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_dpbusd_epi32(_mm256_setzero_si256(), k80h, xv));
      const __m256i p = _mm256_dpbusd_epi32(start, ld256(q0 + o), xv);
      a0 = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(d0[b]) * xd[b]), _mm256_cvtepi32_ps(p), a0);
    }
    y[r] = hsum8(a0);
  }
}

// ---- Several tokens at once (short prompts): each group of RG rows is loaded once per group of
// NT tokens, and RG x NT sums stay in registers, so the weights stream in once for all tokens
// instead of once per token (matvec) or being widened to f32 panels first (the oneDNN path).

template <WType T, int RG, int NT>
void block_float(const std::byte* w, int64_t K, const float* x, int64_t ldx, float* y, int64_t ldy,
                 const char* next) {
  const int64_t esz = T == WType::F32 ? 4 : 2;
  const int64_t full = K / 16 * 16;
  const __mmask16 tail = static_cast<__mmask16>((1u << (K - full)) - 1);
  __m512 acc[RG][NT];
  for (int i = 0; i < RG; ++i)
    for (int t = 0; t < NT; ++t) acc[i][t] = _mm512_setzero_ps();
  for (int64_t k = 0; k < full; k += 16) {
    if (next && (T == WType::F32 || k % 32 == 0)) prefetch4_nta(next + RG * k * esz);
    __m512 wv[RG];
    for (int i = 0; i < RG; ++i) wv[i] = load_w(w + (i * K + k) * esz, T, 0xFFFF);
    for (int t = 0; t < NT; ++t) {
      const __m512 xv = _mm512_loadu_ps(x + t * ldx + k);
      for (int i = 0; i < RG; ++i) acc[i][t] = _mm512_fmadd_ps(wv[i], xv, acc[i][t]);
    }
  }
  if (tail) {
    __m512 wv[RG];
    for (int i = 0; i < RG; ++i) wv[i] = load_w(w + (i * K + full) * esz, T, tail);
    for (int t = 0; t < NT; ++t) {
      const __m512 xv = _mm512_maskz_loadu_ps(tail, x + t * ldx + full);
      for (int i = 0; i < RG; ++i) acc[i][t] = _mm512_fmadd_ps(wv[i], xv, acc[i][t]);
    }
  }
  for (int t = 0; t < NT; ++t)
    for (int i = 0; i < RG; ++i) y[t * ldy + i] = hsum(acc[i][t]);
}

#if defined(__AVX512BF16__)
// x of token t as bf16 hi/lo halves at xh + t * 2K (hi) and + K (lo), as rows_bf16_dp.
template <int RG, int NT>
void block_bf16_dp(const uint16_t* w, int64_t K, const uint16_t* xh, float* y, int64_t ldy, const char* next) {
  const int64_t full = K / 32 * 32;
  const __mmask32 tail = static_cast<__mmask32>((1ull << (K - full)) - 1);
  __m512 acc[RG][NT];
  for (int i = 0; i < RG; ++i)
    for (int t = 0; t < NT; ++t) acc[i][t] = _mm512_setzero_ps();
  auto step = [&](int64_t k, __mmask32 m) {
    __m512bh wv[RG];
    for (int i = 0; i < RG; ++i) wv[i] = (__m512bh)_mm512_maskz_loadu_epi16(m, w + i * K + k);
    for (int t = 0; t < NT; ++t) {
      const uint16_t* xt = xh + t * 2 * K;
      const __m512bh h = (__m512bh)_mm512_maskz_loadu_epi16(m, xt + k);
      const __m512bh l = (__m512bh)_mm512_maskz_loadu_epi16(m, xt + K + k);
      for (int i = 0; i < RG; ++i) acc[i][t] = _mm512_dpbf16_ps(_mm512_dpbf16_ps(acc[i][t], wv[i], h), wv[i], l);
    }
  };
  for (int64_t k = 0; k < full; k += 32) {
    if (next) prefetch4_nta(next + RG * 2 * k);
    step(k, 0xFFFFFFFFu);
  }
  if (tail) step(full, tail);
  for (int t = 0; t < NT; ++t)
    for (int i = 0; i < RG; ++i) y[t * ldy + i] = hsum(acc[i][t]);
}
#endif

// Q8_0 weights (q + 128) against Q8_0 tokens, the arithmetic of rows_q8 for each (row, token).
template <int RG, int NT>
void block_q8(const uint8_t* q, const uint16_t* d, int64_t K, const int8_t* xq, const float* xd, float* y,
              int64_t ldy, const char* next) {
  const int64_t nb = K / kQ8Block, nb8 = nb / 8 * 8;
  const __m512i k80 = _mm512_set1_epi8(static_cast<char>(0x80));
  const __m256i k80h = _mm256_set1_epi8(static_cast<char>(0x80));
  const __m512i zero = _mm512_setzero_si512();
  __m512 acc[RG][NT];
  __m256 acc_tail[RG][NT];
  for (int i = 0; i < RG; ++i)
    for (int t = 0; t < NT; ++t) {
      acc[i][t] = _mm512_setzero_ps();
      acc_tail[i][t] = _mm256_setzero_ps();
    }
  for (int64_t b = 0; b < nb8; b += 8) {
    __m256 wsc[RG], xsc[NT];
    for (int i = 0; i < RG; ++i) wsc[i] = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(d + i * nb + b)));
    for (int t = 0; t < NT; ++t) xsc[t] = _mm256_loadu_ps(xd + t * nb + b);
    for (int j = 0; j < 4; ++j) {
      // Lanes 0-7 take block 2j's scale, 8-15 block 2j+1's (as rows_q8's pick).
      const __m512i pick = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi32(2 * j)), _mm256_set1_epi32(2 * j + 1), 1);
      const int64_t o = (b + 2 * j) * kQ8Block;
      if (next) prefetch4_nta(next + RG * o);
      __m512i xv[NT], start[NT];
      for (int t = 0; t < NT; ++t) {
        xv[t] = _mm512_loadu_si512(xq + t * K + o);
        start[t] = _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, k80, xv[t]));
      }
      for (int i = 0; i < RG; ++i) {
        const __m512i wv = _mm512_loadu_si512(q + i * K + o);
        for (int t = 0; t < NT; ++t) {
          const __m512 sc = _mm512_permutexvar_ps(pick, _mm512_castps256_ps512(_mm256_mul_ps(wsc[i], xsc[t])));
          acc[i][t] = _mm512_fmadd_ps(sc, _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(start[t], wv, xv[t])), acc[i][t]);
        }
      }
    }
  }
  for (int64_t b = nb8; b < nb; ++b) {
    const int64_t o = b * kQ8Block;
    for (int t = 0; t < NT; ++t) {
      const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + t * K + o));
      const __m256i start = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_dpbusd_epi32(_mm256_setzero_si256(), k80h, xv));
      for (int i = 0; i < RG; ++i) {
        const __m256i p = _mm256_dpbusd_epi32(start, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + i * K + o)), xv);
        acc_tail[i][t] = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(d[i * nb + b]) * xd[t * nb + b]), _mm256_cvtepi32_ps(p), acc_tail[i][t]);
      }
    }
  }
  for (int t = 0; t < NT; ++t)
    for (int i = 0; i < RG; ++i) {
      __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc_tail[i][t]), _mm256_extractf128_ps(acc_tail[i][t], 1));
      s = _mm_hadd_ps(s, s);
      s = _mm_hadd_ps(s, s);
      y[t * ldy + i] = hsum(acc[i][t]) + _mm_cvtss_f32(s);
    }
}

// One group of RG rows (starting at row r) times tokens [0, n), NT = 4 at a time.
template <int RG>
void rows_group_batch(const WMat& W, int64_t r, int64_t n, const float* x, const int8_t* xq, const float* xd,
                      float* y, int64_t ldy, bool prefetch) {
  const int64_t K = W.cols;
  for (int64_t t0 = 0; t0 < n; t0 += 4) {
    const int nt = static_cast<int>(std::min<int64_t>(4, n - t0));
    // The next row group is prefetched while the first token group streams this one in; later
    // token groups find these rows in the cache.
    const bool pf = prefetch && t0 == 0;
    float* yt = y + t0 * ldy + r;
    auto run = [&](auto nt_const) {
      constexpr int NT = decltype(nt_const)::value;
      switch (W.type) {
        case WType::F32:
          block_float<WType::F32, RG, NT>(W.data + 4 * r * K, K, x + t0 * K, K, yt, ldy,
                                          pf ? reinterpret_cast<const char*>(W.data + 4 * (r + RG) * K) : nullptr);
          break;
        case WType::F16:
          block_float<WType::F16, RG, NT>(W.data + 2 * r * K, K, x + t0 * K, K, yt, ldy,
                                          pf ? reinterpret_cast<const char*>(W.data + 2 * (r + RG) * K) : nullptr);
          break;
        case WType::BF16:
#if defined(__AVX512BF16__)
          if (xq) {
            const auto* xh = reinterpret_cast<const uint16_t*>(xq) + t0 * 2 * K;
            block_bf16_dp<RG, NT>(reinterpret_cast<const uint16_t*>(W.data) + r * K, K, xh, yt, ldy,
                                  pf ? reinterpret_cast<const char*>(W.data + 2 * (r + RG) * K) : nullptr);
            break;
          }
#endif
          block_float<WType::BF16, RG, NT>(W.data + 2 * r * K, K, x + t0 * K, K, yt, ldy,
                                           pf ? reinterpret_cast<const char*>(W.data + 2 * (r + RG) * K) : nullptr);
          break;
        case WType::Q8_0: {
          const uint8_t* q = reinterpret_cast<const uint8_t*>(W.data);
          block_q8<RG, NT>(q + r * K, W.scales + r * (K / kQ8Block), K, xq + t0 * K, xd + t0 * (K / kQ8Block), yt, ldy,
                           pf ? reinterpret_cast<const char*>(q + (r + RG) * K) : nullptr);
          break;
        }
      }
    };
    switch (nt) {
      case 1: run(std::integral_constant<int, 1>{}); break;
      case 2: run(std::integral_constant<int, 2>{}); break;
      case 3: run(std::integral_constant<int, 3>{}); break;
      default: run(std::integral_constant<int, 4>{}); break;
    }
  }
}

// ---- Attention of one query over a head's cache: f16 rows are widened in registers as they are
// read (no widened copy), four keys' dot products at a time, and the value sum in two sets of
// accumulators (even and odd keys) so consecutive FMAs do not wait on each other.
template <bool F16>
inline __m512 cache_vec(const void* base, int64_t j, int hd, int i) {
  if constexpr (F16)
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(base) + j * hd + 16 * i)));
  else
    return _mm512_loadu_ps(static_cast<const float*>(base) + j * hd + 16 * i);
}

template <bool F16>
void attend(const float* q, const void* k, const void* v, int len, int hd, float scale, float* sc, float* o) {
  const int nv = hd / 16;
  __m512 qv[16];
  for (int i = 0; i < nv; ++i) qv[i] = _mm512_loadu_ps(q + 16 * i);
  int j = 0;
  for (; j + 4 <= len; j += 4) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int i = 0; i < nv; ++i) {
      a0 = _mm512_fmadd_ps(qv[i], cache_vec<F16>(k, j, hd, i), a0);
      a1 = _mm512_fmadd_ps(qv[i], cache_vec<F16>(k, j + 1, hd, i), a1);
      a2 = _mm512_fmadd_ps(qv[i], cache_vec<F16>(k, j + 2, hd, i), a2);
      a3 = _mm512_fmadd_ps(qv[i], cache_vec<F16>(k, j + 3, hd, i), a3);
    }
    sc[j] = hsum(a0) * scale;
    sc[j + 1] = hsum(a1) * scale;
    sc[j + 2] = hsum(a2) * scale;
    sc[j + 3] = hsum(a3) * scale;
  }
  for (; j < len; ++j) {
    __m512 a = _mm512_setzero_ps();
    for (int i = 0; i < nv; ++i) a = _mm512_fmadd_ps(qv[i], cache_vec<F16>(k, j, hd, i), a);
    sc[j] = hsum(a) * scale;
  }
  __m512 m = _mm512_set1_ps(-INFINITY);
  j = 0;
  for (; j + 16 <= len; j += 16) m = _mm512_max_ps(m, _mm512_loadu_ps(sc + j));
  float mx = _mm512_reduce_max_ps(m);
  for (; j < len; ++j) mx = std::max(mx, sc[j]);
  float sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int i = 0; i < len; ++i) sum += (sc[i] = util::fast_exp(sc[i] - mx));
  const float inv = 1.0f / sum;
  __m512 e[16], d[16];
  for (int i = 0; i < nv; ++i) e[i] = d[i] = _mm512_setzero_ps();
  j = 0;
  for (; j + 2 <= len; j += 2) {
    const __m512 p0 = _mm512_set1_ps(sc[j] * inv), p1 = _mm512_set1_ps(sc[j + 1] * inv);
    for (int i = 0; i < nv; ++i) {
      e[i] = _mm512_fmadd_ps(p0, cache_vec<F16>(v, j, hd, i), e[i]);
      d[i] = _mm512_fmadd_ps(p1, cache_vec<F16>(v, j + 1, hd, i), d[i]);
    }
  }
  if (j < len) {
    const __m512 p = _mm512_set1_ps(sc[j] * inv);
    for (int i = 0; i < nv; ++i) e[i] = _mm512_fmadd_ps(p, cache_vec<F16>(v, j, hd, i), e[i]);
  }
  for (int i = 0; i < nv; ++i) _mm512_storeu_ps(o + 16 * i, _mm512_add_ps(e[i], d[i]));
}

}  // namespace

// GGML's Q8_0 of x, as quantize_q8_0 computes it (round half away from zero, the fp16 scale's
// unrounded inverse), 32 values per step.
void quantize_x_avx512(const float* x, int64_t n, int8_t* q, float* d) {
  const __m512i sign = _mm512_set1_epi32(static_cast<int>(0x80000000u));
  const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
  auto round_away = [&](__m512 v) {
    const __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __mmask16 up = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_sub_ps(v, t)), half, _CMP_GE_OQ);
    const __m512 step = _mm512_castsi512_ps(
        _mm512_or_si512(_mm512_castps_si512(one), _mm512_and_si512(sign, _mm512_castps_si512(v))));  // +-1 as v
    return _mm512_mask_add_ps(t, up, t, step);
  };
  for (int64_t b = 0; b < n / kQ8Block; ++b) {
    const __m512 v0 = _mm512_loadu_ps(x + b * kQ8Block), v1 = _mm512_loadu_ps(x + b * kQ8Block + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    const float dv = amax / 127.0f;
    const float id = dv != 0.0f ? 1.0f / dv : 0.0f;
    d[b] = _cvtsh_ss(_cvtss_sh(dv, _MM_FROUND_TO_NEAREST_INT));
    const __m512 s = _mm512_set1_ps(id);
    const __m512i i0 = _mm512_cvttps_epi32(round_away(_mm512_mul_ps(v0, s)));
    const __m512i i1 = _mm512_cvttps_epi32(round_away(_mm512_mul_ps(v1, s)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + b * kQ8Block), _mm512_cvtsepi32_epi8(i0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + b * kQ8Block + 16), _mm512_cvtsepi32_epi8(i1));
  }
}

#if defined(__AVX512BF16__)
void split_bf16_avx512(const float* x, int64_t n, uint16_t* hi, uint16_t* lo) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (n - i)) - 1);
    const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
    const __m256i h = (__m256i)_mm512_cvtneps_pbh(v);
    const __m512 hv = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    const __m256i l = (__m256i)_mm512_cvtneps_pbh(_mm512_sub_ps(v, hv));
    _mm256_mask_storeu_epi16(hi + i, m, h);
    _mm256_mask_storeu_epi16(lo + i, m, l);
  }
}
#else
void split_bf16_avx512(const float* x, int64_t n, uint16_t* hi, uint16_t* lo) {
  for (int64_t i = 0; i < n; ++i) {
    hi[i] = formats::float_to_bf16(x[i]);
    lo[i] = formats::float_to_bf16(x[i] - formats::bf16_to_float(hi[i]));
  }
}
#endif

void dequantize_rows_avx512(const WMat& W, int64_t r0, int64_t n, float* out) {
  const int64_t K = W.cols, count = n * K, full = count / 16 * 16;
  switch (W.type) {
    case WType::F32: std::memcpy(out, W.data + 4 * r0 * K, 4 * count); return;
    case WType::BF16:
    case WType::F16: {
      const std::byte* src = W.data + 2 * r0 * K;
      for (int64_t i = 0; i < count; i += 16) {
        const __mmask16 m = i < full ? 0xFFFF : static_cast<__mmask16>((1u << (count - i)) - 1);
        _mm512_mask_storeu_ps(out + i, m, load_w(src + 2 * i, W.type, m));
      }
      return;
    }
    case WType::Q8_0: {
      // K is a multiple of 32: whole blocks of 32, two halves of 16 under one scale.
      const uint8_t* q = reinterpret_cast<const uint8_t*>(W.data) + r0 * K;
      const uint16_t* d = W.scales + r0 * (K / kQ8Block);
      const __m512i bias = _mm512_set1_epi32(128);
      for (int64_t b = 0; b < count / kQ8Block; ++b) {
        const __m512 s = _mm512_set1_ps(_cvtsh_ss(d[b]));
        for (int h = 0; h < 2; ++h) {
          const int64_t o = b * kQ8Block + 16 * h;
          const __m512i v = _mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + o))), bias);
          _mm512_storeu_ps(out + o, _mm512_mul_ps(s, _mm512_cvtepi32_ps(v)));
        }
      }
      return;
    }
  }
}

void attend_avx512(const float* q, const void* k, const void* v, bool f16, int len, int hd, float scale, float* sc,
                   float* o) {
  if (hd % 16 || hd > 256) fail("attend_avx512: head size {} (a multiple of 16 up to 256)", hd);
  if (f16)
    attend<true>(q, k, v, len, hd, scale, sc, o);
  else
    attend<false>(q, k, v, len, hd, scale, sc, o);
}

void rows_batch_avx512(const WMat& W, int64_t r0, int64_t r1, int64_t n, const float* x, const int8_t* xq,
                       const float* xd, float* y, int64_t ldy) {
  int64_t r = r0;
  for (; r + 4 <= r1; r += 4) rows_group_batch<4>(W, r, n, x, xq, xd, y, ldy, r + 8 <= r1);
  if (r == r1) return;
  // The last rows (fewer than 4) token by token through the single-token kernel, so that every
  // row's sum is matvec's to the bit.
  const int64_t K = W.cols;
  const bool bf16_halves = W.type == WType::BF16 && xq;
  for (int64_t t = 0; t < n; ++t) {
    const int8_t* q = !xq ? nullptr : bf16_halves ? xq + t * 4 * K : xq + t * K;
    rows_avx512(W, r, r1, x + t * K, q, xd ? xd + t * (K / kQ8Block) : nullptr, y + t * ldy);
  }
}

void rows_avx512(const WMat& W, int64_t r0, int64_t r1, const float* x, const int8_t* xq, const float* xd,
                 float* y) {
  switch (W.type) {
    case WType::F32: rows_float<WType::F32>(W, r0, r1, x, y); break;
    case WType::BF16:
#if defined(__AVX512BF16__)
      if (xq) {  // matvec split x into bf16 hi/lo halves (the CPU has AVX512-BF16)
        const auto* h = reinterpret_cast<const uint16_t*>(xq);
        rows_bf16_dp(W, r0, r1, h, h + W.cols, y);
        break;
      }
#endif
      rows_float<WType::BF16>(W, r0, r1, x, y);
      break;
    case WType::F16: rows_float<WType::F16>(W, r0, r1, x, y); break;
    case WType::Q8_0: rows_q8(W, r0, r1, xq, xd, y); break;
  }
}

#else

void rows_avx512(const WMat& W, int64_t r0, int64_t r1, const float* x, const int8_t* xq, const float* xd,
                 float* y) {
  rows_scalar(W, r0, r1, x, xq, xd, y);
}
void quantize_x_avx512(const float* x, int64_t n, int8_t* q, float* d) { quantize_x_scalar(x, n, q, d); }
void rows_batch_avx512(const WMat&, int64_t, int64_t, int64_t, const float*, const int8_t*, const float*, float*,
                       int64_t) {
  fail("no AVX-512 kernels in this build");
}
void attend_avx512(const float*, const void*, const void*, bool, int, int, float, float*, float*) {
  fail("no AVX-512 kernels in this build");
}
void dequantize_rows_avx512(const WMat&, int64_t, int64_t, float*) { fail("no AVX-512 kernels in this build"); }
void split_bf16_avx512(const float*, int64_t, uint16_t*, uint16_t*) { fail("no AVX-512 kernels in this build"); }

#endif

}  // namespace tsumugi::infer::detail
