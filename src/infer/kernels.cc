#include "infer/kernels.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "formats/safetensors.h"
#include "backend/backend.h"
#include "infer/chunk_pool.h"
#include "util/error.h"

namespace tsumugi::infer {

std::string_view wtype_name(WType t) {
  switch (t) {
    case WType::F32: return "f32";
    case WType::BF16: return "bf16";
    case WType::F16: return "f16";
    case WType::Q8_0: return "q8_0";
  }
  return "?";
}

std::optional<WType> parse_wtype(std::string_view name) {
  if (name == "f32") return WType::F32;
  if (name == "bf16") return WType::BF16;
  if (name == "f16") return WType::F16;
  if (name == "q8_0") return WType::Q8_0;
  return std::nullopt;
}

uint64_t WMat::bytes() const {
  const uint64_t n = static_cast<uint64_t>(rows) * cols;
  switch (type) {
    case WType::F32: return 4 * n;
    case WType::BF16:
    case WType::F16: return 2 * n;
    case WType::Q8_0: return n + 2 * (n / kQ8Block);
  }
  return 0;
}

namespace detail {

float f16_to_f32(uint16_t h) { return formats::f16_to_float(h); }

namespace {
float bf16_to_f32(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
}  // namespace

// The reference the SIMD paths are tested against: plain loops, same quantized arithmetic.
void rows_scalar(const WMat& W, int64_t r0, int64_t r1, const float* x, const int8_t* xq, const float* xd,
                 float* y) {
  const int64_t K = W.cols;
  for (int64_t r = r0; r < r1; ++r) {
    double acc = 0;
    switch (W.type) {
      case WType::F32: {
        const float* w = reinterpret_cast<const float*>(W.data) + r * K;
        for (int64_t k = 0; k < K; ++k) {
          float wv;
          std::memcpy(&wv, w + k, 4);
          acc += static_cast<double>(wv) * x[k];
        }
        break;
      }
      case WType::BF16:
      case WType::F16: {
        const auto* w = reinterpret_cast<const std::byte*>(W.data) + 2 * r * K;
        for (int64_t k = 0; k < K; ++k) {
          uint16_t h;
          std::memcpy(&h, w + 2 * k, 2);
          acc += static_cast<double>(W.type == WType::BF16 ? bf16_to_f32(h) : f16_to_f32(h)) * x[k];
        }
        break;
      }
      case WType::Q8_0: {
        const uint8_t* q = reinterpret_cast<const uint8_t*>(W.data) + r * K;
        const uint16_t* d = W.scales + r * (K / kQ8Block);
        for (int64_t b = 0; b < K / kQ8Block; ++b) {
          int32_t s = 0;
          for (int j = 0; j < kQ8Block; ++j) s += (q[b * kQ8Block + j] - 128) * xq[b * kQ8Block + j];
          acc += static_cast<double>(f16_to_f32(d[b])) * xd[b] * s;
        }
        break;
      }
    }
    y[r] = static_cast<float>(acc);
  }
}

void quantize_x_scalar(const float* x, int64_t n, int8_t* q, float* d) {
  thread_local std::vector<uint16_t> d16;
  d16.resize(n / kQ8Block);
  quantize_q8_0(x, n, q, d16.data());
  for (int64_t b = 0; b < n / kQ8Block; ++b) d[b] = formats::f16_to_float(d16[b]);
}

}  // namespace detail

void quantize_q8_0_matrix(const float* w, int64_t n, uint8_t* q, uint16_t* d) {
  auto* s = reinterpret_cast<int8_t*>(q);
  quantize_q8_0(w, n, s, d);
  for (int64_t i = 0; i < n; ++i) q[i] = static_cast<uint8_t>(s[i] + 128);
}

void quantize_q8_0(const float* x, int64_t n, int8_t* q, uint16_t* d) {
  if (n % kQ8Block) fail("q8_0: {} values are not a whole number of 32-value blocks", n);
  for (int64_t b = 0; b < n / kQ8Block; ++b) {
    const float* xb = x + b * kQ8Block;
    float amax = 0;
    for (int j = 0; j < kQ8Block; ++j) amax = std::max(amax, std::fabs(xb[j]));
    // GGML: the scale is stored as fp16, the quants are rounded with the unrounded scale's inverse.
    const float dv = amax / 127.0f;
    const float id = dv != 0.0f ? 1.0f / dv : 0.0f;
    d[b] = formats::float_to_f16(dv);
    for (int j = 0; j < kQ8Block; ++j) q[b * kQ8Block + j] = static_cast<int8_t>(std::round(xb[j] * id));
  }
}

void dequantize_rows(const WMat& W, int64_t r0, int64_t n, float* out) {
  if (W.type != WType::F32 && kernel_isa() == "avx512") return detail::dequantize_rows_avx512(W, r0, n, out);
  const int64_t K = W.cols;
  const int64_t count = n * K;
  switch (W.type) {
    case WType::F32: std::memcpy(out, W.data + 4 * r0 * K, 4 * count); break;
    case WType::BF16:
    case WType::F16: {
      const std::byte* src = W.data + 2 * r0 * K;
      const bool bf = W.type == WType::BF16;
      for (int64_t i = 0; i < count; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        out[i] = bf ? formats::bf16_to_float(h) : formats::f16_to_float(h);
      }
      break;
    }
    case WType::Q8_0: {
      const uint8_t* q = reinterpret_cast<const uint8_t*>(W.data) + r0 * K;
      const uint16_t* d = W.scales + r0 * (K / kQ8Block);
      for (int64_t b = 0; b < count / kQ8Block; ++b) {
        const float s = formats::f16_to_float(d[b]);
        for (int j = 0; j < kQ8Block; ++j) out[b * kQ8Block + j] = s * (q[b * kQ8Block + j] - 128);
      }
      break;
    }
  }
}

namespace {

bool cpu_has_avx512() {
#if defined(__x86_64__)
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
#else
  return false;
#endif
}
bool cpu_has_avx512_bf16() {
#if defined(__x86_64__)
  static const bool has = __builtin_cpu_supports("avx512bf16");
  return has;
#else
  return false;
#endif
}
bool cpu_has_avx2() {
#if defined(__x86_64__)
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
#else
  return false;
#endif
}

struct Isa {
  std::string_view name;
  detail::RowsFn fn;
  detail::QuantizeFn quantize = detail::quantize_x_scalar;
};

Isa best_isa() {
#if defined(__x86_64__)
  if (cpu_has_avx512()) return {"avx512", detail::rows_avx512, detail::quantize_x_avx512};
  if (cpu_has_avx2()) return {"avx2", detail::rows_avx2};
#endif
  return {"scalar", detail::rows_scalar};
}

Isa& current_isa() {
  static Isa isa = best_isa();
  return isa;
}

}  // namespace

std::string_view kernel_isa() { return current_isa().name; }

void set_kernel_isa(std::string_view isa) {
  if (isa == "scalar") {
    current_isa() = {"scalar", detail::rows_scalar};
#if defined(__x86_64__)
  } else if (isa == "avx2") {
    if (!cpu_has_avx2()) fail("this CPU has no AVX2/FMA/F16C");
    current_isa() = {"avx2", detail::rows_avx2};
  } else if (isa == "avx512") {
    if (!cpu_has_avx512()) fail("this CPU has no AVX-512 F/BW/VL/VNNI");
    current_isa() = {"avx512", detail::rows_avx512, detail::quantize_x_avx512};
#endif
  } else {
    fail("unknown or unavailable kernel ISA '{}' (avx512 | avx2 | scalar)", isa);
  }
}

namespace {
// x converted for the kernels: Q8_0 quants and scales, or bf16 hi/lo halves; null when not needed.
struct PreparedX {
  const int8_t* q = nullptr;
  const float* d = nullptr;
};
PreparedX prepare_x(WType type, const float* x, int64_t K, int64_t n) {
  thread_local std::vector<int8_t> xq;
  thread_local std::vector<float> xd;
  thread_local std::vector<uint16_t> xbf;
  PreparedX p;
  if (type == WType::Q8_0) {
    xq.resize(n * K);
    xd.resize(n * (K / kQ8Block));
    for (int64_t t = 0; t < n; ++t)
      current_isa().quantize(x + t * K, K, xq.data() + t * K, xd.data() + t * (K / kQ8Block));
    p.q = xq.data();
    p.d = xd.data();
  } else if (type == WType::BF16 && current_isa().name == "avx512" && cpu_has_avx512_bf16()) {
    // x as bf16 hi + lo halves for the vdpbf16ps kernels (which read them through xq).
    xbf.resize(2 * n * K);
    for (int64_t t = 0; t < n; ++t) detail::split_bf16_avx512(x + t * K, K, xbf.data() + 2 * t * K, xbf.data() + 2 * t * K + K);
    p.q = reinterpret_cast<const int8_t*>(xbf.data());
  }
  return p;
}

// Rows at least 32 at a time, about 16 chunks a thread for large matrices: each claim is an atomic
// on a line the cores share.
int64_t rows_per_chunk(int64_t rows, int nt) { return std::max<int64_t>(32, (rows / (16 * std::max(nt, 1)) + 3) / 4 * 4); }


// Tokens [0, n) of x times W into y[t * ldy + r].
void matmul_token_block(const WMat& W, const float* x, int64_t n, float* y, int64_t ldy, int threads) {
  const int64_t K = W.cols, R = W.rows;
  const PreparedX px = prepare_x(W.type, x, K, n);
  const int nt = threads > 0 ? threads : omp_get_max_threads();
  auto rows = [&](int64_t r0, int64_t r1) {
    if (current_isa().name == "avx512") {
      detail::rows_batch_avx512(W, r0, r1, n, x, px.q, px.d, y, ldy);
      return;
    }
    const detail::RowsFn fn = current_isa().fn;
    for (int64_t t = 0; t < n; ++t)
      fn(W, r0, r1, x + t * K, px.q ? px.q + t * K : nullptr, px.d ? px.d + t * (K / kQ8Block) : nullptr, y + t * ldy);
  };
  const int64_t chunk = rows_per_chunk(R, nt);
  if (nt <= 1 || R * K * n < 32768) return rows(0, R);
  ChunkPool::shared(nt).run((R + chunk - 1) / chunk, [&](int64_t c) { rows(c * chunk, std::min(R, (c + 1) * chunk)); });
}

}  // namespace

void matmul_tokens(const WMat& W, const float* x, int64_t n, float* y, int threads) {
  // Blocks of tokens whose x stays in a core's L2 while every row group is multiplied by it.
  const int64_t block = std::max<int64_t>(4, (512 << 10) / (4 * W.cols) / 4 * 4);
  for (int64_t t = 0; t < n; t += block) matmul_token_block(W, x + t * W.cols, std::min(block, n - t), y + t * W.rows, W.rows, threads);
}

bool matmul_bf16_prompt(const WMat& W, const float* x, int64_t n, float* y, std::vector<uint16_t>& xs,
                        std::vector<float>& part) {
  if (W.type != WType::BF16 || current_isa().name != "avx512" || !cpu_has_avx512_bf16()) return false;
  const int64_t K = W.cols, R = W.rows;
  // Rows [0, n) of xs are the his, [n, 2n) the los: one matmul for both, its halves summed.
  xs.resize(static_cast<std::size_t>(2 * n * K));
  part.resize(static_cast<std::size_t>(2 * n * R));
  for (int64_t t = 0; t < n; ++t) detail::split_bf16_avx512(x + t * K, K, xs.data() + t * K, xs.data() + (n + t) * K);
  backend::cpu_matmul_bf16(xs.data(), static_cast<int>(2 * n), static_cast<int>(K),
                           reinterpret_cast<const uint16_t*>(W.data), static_cast<int>(R), part.data());
  const float* lo = part.data() + n * R;
  for (int64_t i = 0; i < n * R; ++i) y[i] = part[i] + lo[i];
  return true;
}

void matvec(const WMat& W, const float* x, float* y, int threads) {
  const MatvecOut one{&W, y};
  matvec_many(&one, 1, x, threads);
}

void matvec_many(const MatvecOut* outs, int n, const float* x, int threads) {
  if (n <= 0) return;
  const WMat& W0 = *outs[0].W;
  for (int i = 1; i < n; ++i)
    if (outs[i].W->type != W0.type || outs[i].W->cols != W0.cols)
      fail("matvec_many: matrix {} is {} x {} {}, matrix 0 has {} columns of {}", i, outs[i].W->rows,
           outs[i].W->cols, wtype_name(outs[i].W->type), W0.cols, wtype_name(W0.type));
  const detail::RowsFn fn = current_isa().fn;
  const int64_t K = W0.cols;
  const PreparedX px = prepare_x(W0.type, x, K, 1);
  const int8_t* q = px.q;
  const float* d = px.d;
  // Chunks of rows, numbered across the matrices, claimed by the threads of a ChunkPool (see there
  // why not OpenMP).
  constexpr int kMaxOuts = 8;
  if (n > kMaxOuts) fail("matvec_many: {} matrices, at most {}", n, kMaxOuts);
  const int nt = threads > 0 ? threads : omp_get_max_threads();
  int64_t total_rows = 0;
  for (int i = 0; i < n; ++i) total_rows += outs[i].W->rows;
  const int64_t chunk = rows_per_chunk(total_rows, nt);
  int64_t first_chunk[kMaxOuts + 1] = {0};
  for (int i = 0; i < n; ++i) first_chunk[i + 1] = first_chunk[i] + (outs[i].W->rows + chunk - 1) / chunk;
  if (nt <= 1 || total_rows * K < 32768) {
    for (int i = 0; i < n; ++i) fn(*outs[i].W, 0, outs[i].W->rows, x, q, d, outs[i].y);
    return;
  }
  ChunkPool::shared(nt).run(first_chunk[n], [&](int64_t c) {
    int i = 0;
    while (c >= first_chunk[i + 1]) ++i;
    const WMat& W = *outs[i].W;
    const int64_t r0 = (c - first_chunk[i]) * chunk;
    fn(W, r0, std::min(W.rows, r0 + chunk), x, q, d, outs[i].y);
  });
}

}  // namespace tsumugi::infer
