// AVX2 + FMA + F16C row kernels: the fallback for CPUs without AVX-512.
#include <immintrin.h>

#include <cstring>

#include "infer/kernels.h"

namespace tsumugi::infer::detail {

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

namespace {

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_hadd_ps(s, s);
  s = _mm_hadd_ps(s, s);
  return _mm_cvtss_f32(s);
}

template <WType T>
inline __m256 load8(const std::byte* p) {
  if constexpr (T == WType::F32) return _mm256_loadu_ps(reinterpret_cast<const float*>(p));
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  if constexpr (T == WType::F16) return _mm256_cvtph_ps(h);
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

template <WType T>
float tail_weight(const std::byte* p) {
  uint16_t h;
  if constexpr (T == WType::F32) {
    float f;
    std::memcpy(&f, p, 4);
    return f;
  }
  std::memcpy(&h, p, 2);
  if constexpr (T == WType::F16) return _cvtsh_ss(h);
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

template <WType T>
void rows_float(const WMat& W, int64_t r0, int64_t r1, const float* x, float* y) {
  const int64_t K = W.cols, esz = T == WType::F32 ? 4 : 2, full = K / 8 * 8;
  for (int64_t r = r0; r < r1; ++r) {
    const std::byte* w = W.data + r * K * esz;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int64_t k = 0;
    for (; k + 16 <= full; k += 16) {
      a0 = _mm256_fmadd_ps(load8<T>(w + k * esz), _mm256_loadu_ps(x + k), a0);
      a1 = _mm256_fmadd_ps(load8<T>(w + (k + 8) * esz), _mm256_loadu_ps(x + k + 8), a1);
    }
    for (; k < full; k += 8) a0 = _mm256_fmadd_ps(load8<T>(w + k * esz), _mm256_loadu_ps(x + k), a0);
    float s = hsum(_mm256_add_ps(a0, a1));
    for (; k < K; ++k) s += tail_weight<T>(w + k * esz) * x[k];
    y[r] = s;
  }
}

// Q8_0 x Q8_0 as GGML's AVX2 path: |w| times x with w's sign (maddubs), pairs summed (madd). The
// stored q + 128 is turned back into signed q first: maddubs would saturate on 255 * 127 * 2.
void rows_q8(const WMat& W, int64_t r0, int64_t r1, const int8_t* xq, const float* xd, float* y) {
  const int64_t K = W.cols, nb = K / kQ8Block;
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i bias = _mm256_set1_epi8(static_cast<char>(0x80));
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* q = reinterpret_cast<const uint8_t*>(W.data) + r * K;
    const uint16_t* d = W.scales + r * nb;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      const __m256i wv =
          _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + b * kQ8Block)), bias);
      const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + b * kQ8Block));
      const __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(xv, wv));
      const __m256 p = _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, ones));
      acc = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(d[b]) * xd[b]), p, acc);
    }
    y[r] = hsum(acc);
  }
}

}  // namespace

void rows_avx2(const WMat& W, int64_t r0, int64_t r1, const float* x, const int8_t* xq, const float* xd,
               float* y) {
  switch (W.type) {
    case WType::F32: rows_float<WType::F32>(W, r0, r1, x, y); break;
    case WType::BF16: rows_float<WType::BF16>(W, r0, r1, x, y); break;
    case WType::F16: rows_float<WType::F16>(W, r0, r1, x, y); break;
    case WType::Q8_0: rows_q8(W, r0, r1, xq, xd, y); break;
  }
}

#else

void rows_avx2(const WMat& W, int64_t r0, int64_t r1, const float* x, const int8_t* xq, const float* xd,
               float* y) {
  rows_scalar(W, r0, r1, x, xq, xd, y);
}

#endif

}  // namespace tsumugi::infer::detail
