// Weight matrices in the decoding formats and the kernels that multiply them: matrix-vector for
// single-token decoding (memory-bound: weight bytes per token decide the speed), dequantization
// for prompt processing (done as f32 matrix-matrix work by oneDNN).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>
#include <optional>
#include <string>
#include <string_view>

namespace tsumugi::infer {

// f32, bf16, f16 rows as stored; q8_0 is GGML's Q8_0: blocks of 32 weights along a row, one fp16
// scale d = max|w|/127 and int8 q = round(w/d). Here the quants of a matrix are contiguous, stored
// as unsigned bytes q + 128, and the fp16 scales are kept beside them: the same numbers as GGML's
// interleaved 34-byte blocks, laid out so that VNNI's unsigned-by-signed byte dot product takes 64
// weights per instruction with no per-row sign fix-up (see kernels_avx512.cc).
enum class WType { F32, BF16, F16, Q8_0 };

std::string_view wtype_name(WType t);
std::optional<WType> parse_wtype(std::string_view name);

constexpr int kQ8Block = 32;

// A row-major [rows, cols] weight matrix (tsumugi orientation: Linear [out, in]). `data` may point
// into a memory-mapped file (no alignment assumed) or into memory the loader owns.
struct WMat {
  WType type = WType::F32;
  int64_t rows = 0, cols = 0;
  const std::byte* data = nullptr;    // rows*cols elements (uint8 quants q + 128 for q8_0)
  const uint16_t* scales = nullptr;   // q8_0 only: rows*cols/32 fp16 scales
  uint64_t bytes() const;
};

// GGML's Q8_0 quantization of n values (n a multiple of 32): q[n], d[n/32] (fp16 bits).
void quantize_q8_0(const float* x, int64_t n, int8_t* q, uint16_t* d);

// The q8_0 matrix layout of WMat: n values (a whole number of rows, cols a multiple of 32) into
// quants q + 128 and fp16 scales.
void quantize_q8_0_matrix(const float* w, int64_t n, uint8_t* q, uint16_t* d);

// Rows [r0, r0+n) of W as f32 into out[n*cols].
void dequantize_rows(const WMat& W, int64_t r0, int64_t n, float* out);

// y[rows] = W x. Threads split the rows; q8_0 multiplies by x quantized to Q8_0 blocks (as GGML
// does), the other types multiply f32 x by the weights widened to f32.
void matvec(const WMat& W, const float* x, float* y, int threads);

// Several matrices of one type and width times the same x (LLaMA's q, k, v; gate and up): x is
// converted once and all rows are shared out in one dispatch.
struct MatvecOut {
  const WMat* W;
  float* y;
};
void matvec_many(const MatvecOut* outs, int n, const float* x, int threads);

// y[t * rows + r] = (W x_t)[r] for n tokens x[n * cols] (a short prompt): the weights are read once
// for all n tokens, with the arithmetic of matvec for each (q8_0: x_t quantized to Q8_0).
void matmul_tokens(const WMat& W, const float* x, int64_t n, float* y, int threads);

// y[t * rows + r] = (W x_t)[r] for a bf16 W and a longer prompt, through oneDNN's bf16 matmul on
// the weights as stored: each x_t as bf16 hi + lo halves (as matvec's AVX512-BF16 kernel takes it),
// so the result keeps about 16 bits of x, where widening W to f32 panels first cost a third of the
// prompt's time. Returns false, doing nothing, where the kernels lack AVX512-BF16. xs and part are
// the caller's scratch (the decoder's, so that it is freed with the sequence).
bool matmul_bf16_prompt(const WMat& W, const float* x, int64_t n, float* y, std::vector<uint16_t>& xs,
                        std::vector<float>& part);

// The instruction set the kernels use: "avx512" (AVX-512 F/BW/VL + VNNI), "avx2" (AVX2 + FMA + F16C)
// or "scalar". Chosen at start-up from the CPU; tests may force a lower one to compare paths.
std::string_view kernel_isa();
void set_kernel_isa(std::string_view isa);  // throws when the CPU lacks it

// Per-ISA row kernels (kernels_avx512.cc, kernels_avx2.cc, kernels.cc): y[r] for r in [r0, r1).
// xq/xd are x quantized (q8_0 only).
namespace detail {
using RowsFn = void (*)(const WMat& W, int64_t r0, int64_t r1, const float* x, const int8_t* xq,
                        const float* xd, float* y);
void rows_scalar(const WMat& W, int64_t r0, int64_t r1, const float* x, const int8_t* xq, const float* xd,
                 float* y);
void rows_avx2(const WMat& W, int64_t r0, int64_t r1, const float* x, const int8_t* xq, const float* xd,
               float* y);
void rows_avx512(const WMat& W, int64_t r0, int64_t r1, const float* x, const int8_t* xq, const float* xd,
                 float* y);
// Rows [r0, r1) times n tokens: y[t * ldy + r]. x is [n, cols]; xq/xd (q8_0: [n, cols] quants and
// [n, cols/32] scales; bf16 with AVX512-BF16: [n, 2 * cols] hi/lo halves) as matvec prepares them.
void rows_batch_avx512(const WMat& W, int64_t r0, int64_t r1, int64_t n, const float* x, const int8_t* xq,
                       const float* xd, float* y, int64_t ldy);
// One query of one head against the head's first `len` cached keys and values (row-major
// [len, hd], f32 or f16 elements): o[hd] = softmax(scale * K q) V. `sc` has room for len scores.
// hd a multiple of 16, at most 256.
void attend_avx512(const float* q, const void* k, const void* v, bool f16, int len, int hd, float scale, float* sc,
                   float* o);
// dequantize_rows with AVX-512 (the prompt path widens every weight once per prompt chunk).
void dequantize_rows_avx512(const WMat& W, int64_t r0, int64_t n, float* out);
// x as bf16 hi = bf16(x) and lo = bf16(x - hi) for the vdpbf16ps kernel, 16 values per step
// (the same round-to-nearest-even as formats::float_to_bf16).
void split_bf16_avx512(const float* x, int64_t n, uint16_t* hi, uint16_t* lo);
// x quantized for the q8_0 kernels: GGML's Q8_0 (as quantize_q8_0) with the scales widened to f32.
using QuantizeFn = void (*)(const float* x, int64_t n, int8_t* q, float* d);
void quantize_x_scalar(const float* x, int64_t n, int8_t* q, float* d);
void quantize_x_avx512(const float* x, int64_t n, int8_t* q, float* d);
float f16_to_f32(uint16_t h);
}  // namespace detail

}  // namespace tsumugi::infer
