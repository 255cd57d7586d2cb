// AVX-512 row kernels (compiled with AVX-512 F/BW/VL/VNNI; called only when the CPU has them).
#include <immintrin.h>

#include "infer/kernels.h"

namespace tsumugi::infer::detail {

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__)

namespace {

inline float hsum(__m512 v) { return _mm512_reduce_add_ps(v); }

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
    for (int64_t k = 0; k < full; k += 16) {
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
    for (int64_t k = 0; k < full; k += 32) {
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

// Q8_0 x Q8_0: per 32-weight block an int8 dot product (VNNI vpdpbusd on |w| and x with w's sign),
// scaled by d_w * d_x into an f32 accumulator. Scales come 8 blocks at a time (one fp16->f32
// conversion and one multiply for 8 blocks); two rows share each load of x.
void rows_q8(const WMat& W, int64_t r0, int64_t r1, const int8_t* xq, const float* xd, float* y) {
  const int64_t K = W.cols, nb = K / kQ8Block, nb8 = nb / 8 * 8;
  const __m256i zero = _mm256_setzero_si256();
  auto dot = [&](const int8_t* wq, const __m256i xv) {
    const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wq));
    return _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(zero, _mm256_abs_epi8(wv), _mm256_sign_epi8(xv, wv)));
  };
  auto lane = [](__m256 v, int j) { return _mm256_permutexvar_ps(_mm256_set1_epi32(j), v); };
  auto hsum8 = [](__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_hadd_ps(s, s);
    s = _mm_hadd_ps(s, s);
    return _mm_cvtss_f32(s);
  };
  int64_t r = r0;
  for (; r + 2 <= r1; r += 2) {
    const int8_t* q0 = reinterpret_cast<const int8_t*>(W.data) + r * K;
    const int8_t* q1 = q0 + K;
    const uint16_t* d0 = W.scales + r * nb;
    const uint16_t* d1 = d0 + nb;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int64_t b = 0;
    for (; b < nb8; b += 8) {
      const __m256 dx = _mm256_loadu_ps(xd + b);
      const __m256 s0 = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(d0 + b))), dx);
      const __m256 s1 = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(d1 + b))), dx);
      for (int j = 0; j < 8; ++j) {
        const int64_t o = (b + j) * kQ8Block;
        const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + o));
        a0 = _mm256_fmadd_ps(lane(s0, j), dot(q0 + o, xv), a0);
        a1 = _mm256_fmadd_ps(lane(s1, j), dot(q1 + o, xv), a1);
      }
    }
    for (; b < nb; ++b) {
      const int64_t o = b * kQ8Block;
      const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + o));
      a0 = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(d0[b]) * xd[b]), dot(q0 + o, xv), a0);
      a1 = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(d1[b]) * xd[b]), dot(q1 + o, xv), a1);
    }
    y[r] = hsum8(a0);
    y[r + 1] = hsum8(a1);
  }
  for (; r < r1; ++r) {
    const int8_t* q0 = reinterpret_cast<const int8_t*>(W.data) + r * K;
    const uint16_t* d0 = W.scales + r * nb;
    __m256 a0 = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t o = b * kQ8Block;
      const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + o));
      a0 = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(d0[b]) * xd[b]), dot(q0 + o, xv), a0);
    }
    y[r] = hsum8(a0);
  }
}

}  // namespace

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

#endif

}  // namespace tsumugi::infer::detail
