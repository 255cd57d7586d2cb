// Elementwise exp, tanh and sigmoid in plain arithmetic that loops vectorize, shared by the CPU
// training backend and the decoder (both spend measurable time here: GELU, softmax, SwiGLU).
#pragma once

#include <cstdint>
#include <cstring>

namespace tsumugi::util {

// exp(x) by range reduction (x = n ln2 + r, |r| <= ln2/2) and a degree-6 Taylor polynomial: about
// 1e-7 relative error, plain arithmetic so `omp simd` loops vectorize (libm's expf does not here).
// Inputs are clamped to [-87, 87] (NaN stays NaN), so exp of a very negative number is ~1e-38, not 0.
// Under GCC's default -ftrapping-math neither a float clamp (std::min/max) nor std::floor would
// vectorize, which left every loop calling this scalar: the clamp compares the bits as integers
// and n is rounded by adding and subtracting 1.5 * 2^23.
inline float fast_exp(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  const uint32_t mag = u & 0x7fffffffu;
  constexpr uint32_t k87 = 0x42ae0000u;  // 87.0f
  u = (mag > k87 && mag <= 0x7f800000u) ? (u & 0x80000000u) | k87 : u;
  std::memcpy(&x, &u, 4);
  constexpr float kRound = 12582912.0f;
  const float n = (x * 1.44269504088896341f + kRound) - kRound;
  const float r = (x - n * 0.693145751953125f) - n * 1.42860682030941723e-6f;
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return p * scale;
}

inline float fast_tanh(float x) { return 1.0f - 2.0f / (fast_exp(2.0f * x) + 1.0f); }
inline float fast_sigmoid(float x) { return 1.0f / (1.0f + fast_exp(-x)); }

}  // namespace tsumugi::util
