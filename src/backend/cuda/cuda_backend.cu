// The CUDA implementation of backend::Backend: bf16 compute copies, activations and gradients,
// fp32 master weights and optimizer state, one stream, matmuls through cuBLASLt.
#include "backend/backend.h"
#include "backend/cuda/kernels.h"

#ifndef TSUMUGI_CUDA_EMULATION
#include <cublasLt.h>
#include <cublas_v2.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

namespace tsumugi::backend {
namespace TSU_CUDA_NS {
namespace {

#define TSU_BLAS_CHECK(call)                                                                  \
  do {                                                                                        \
    cublasStatus_t tsu_st_ = (call);                                                          \
    if (tsu_st_ != CUBLAS_STATUS_SUCCESS)                                                     \
      throw_cuda(#call, cublasGetStatusString(tsu_st_), __FILE__, __LINE__);                  \
  } while (0)

constexpr std::size_t kWorkspaceBytes = 32u << 20;  // cuBLASLt's recommendation for Hopper
constexpr std::size_t kStageBytes = 16u << 20;      // per pinned staging buffer


const char* dtype_name(DType d) {
  switch (d) {
    case DType::F32: return "fp32";
    case DType::BF16: return "bf16";
    case DType::I32: return "int32";
  }
  return "?";
}


[[noreturn]] void bad(const char* op, const std::string& msg) {
  throw std::runtime_error(std::string("CUDA backend: ") + op + ": " + msg);
}

// Checks that `b` holds at least `count` elements of one of the allowed storage types.
void need(const Buf& b, std::size_t count, std::initializer_list<DType> ok, const char* op,
          const char* arg) {
  if (count == 0) return;
  if (!b) bad(op, std::string(arg) + " is empty");
  bool type_ok = false;
  for (DType d : ok) type_ok = type_ok || d == dtype_of(b.kind);
  if (!type_ok) {
    std::string want;
    for (DType d : ok) want += std::string(want.empty() ? "" : " or ") + dtype_name(d);
    bad(op, std::string(arg) + " is " + dtype_name(dtype_of(b.kind)) + ", expected " + want);
  }
  if (b.count < count)
    bad(op, std::string(arg) + " holds " + std::to_string(b.count) + " elements, needs " +
                std::to_string(count));
}

std::size_t sz(long long a, long long b = 1, long long c = 1) {
  return static_cast<std::size_t>(a) * static_cast<std::size_t>(b) * static_cast<std::size_t>(c);
}

uint16_t float_to_bf16_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
  return static_cast<uint16_t>(u >> 16);
}

float bf16_bits_to_float(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint32_t ptr_alignment(const void* p) {
  const auto v = reinterpret_cast<std::uintptr_t>(p);
  uint32_t a = 256;
  while (a > 1 && v % a != 0) a >>= 1;
  return a;
}

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// One GEMM in cuBLAS column-major terms: D[m,n] = op(A)[m,k] op(B)[k,n] (+ beta C) (+ bias[m]).
struct Gemm {
  bool ta = false, tb = false;
  int m = 0, n = 0, k = 0;
  const void* A = nullptr;
  int lda = 0;
  const void* B = nullptr;
  int ldb = 0;
  void* C = nullptr;
  DType ct = DType::BF16;
  int ldc = 0;
  bool accumulate = false;  // beta = 1
  const void* bias = nullptr;
  DType bias_t = DType::BF16;
  // GELU epilogues: GeluAux writes C's pre-activation to aux and gelu of it to C; GeluGrad
  // multiplies the product by gelu'(aux). aux has C's type and layout (leading dimension ldc).
  // BgradB writes the sums of op(B) over k (one per column of C, in C's type) to aux.
  enum class Epi { None, GeluAux, GeluGrad, BgradB } epi = Epi::None;
  void* aux = nullptr;
};

struct GemmKey {
  int ta, tb, m, n, k, lda, ldb, ldc, ct, accumulate, bias, align_a, align_b, align_c, epi, align_aux;
  bool operator==(const GemmKey& o) const { return std::memcmp(this, &o, sizeof(*this)) == 0; }
};
struct GemmKeyHash {
  std::size_t operator()(const GemmKey& k) const {
    const int* p = reinterpret_cast<const int*>(&k);
    std::size_t h = 1469598103934665603ull;
    for (std::size_t i = 0; i < sizeof(GemmKey) / sizeof(int); ++i)
      h = (h ^ static_cast<std::size_t>(static_cast<unsigned>(p[i]))) * 1099511628211ull;
    return h;
  }
};

struct LtPlan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool ok = false;  // false: use cublasGemmEx (no heuristic result, or cuBLASLt refused it)
};

cudaDataType cuda_type(DType d) { return d == DType::BF16 ? CUDA_R_16BF : CUDA_R_32F; }

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device) : device_(device) {
    try {
      init();
    } catch (...) {
      release();
      throw;
    }
  }
  ~CudaBackend() override { release(); }

  // Dense bf16 tensor-core peaks from NVIDIA's data sheets, for MFU: H100/H200 SXM 989 TFLOP/s,
  // H100 PCIe 756, A100 312. Unknown cards return 0 and the trainer measures a matmul instead.
  double nominal_peak_flops() const override {
#ifdef TSUMUGI_CUDA_EMULATION
    // A made-up figure: timing a matmul on the emulator would take minutes and mean nothing.
    return 1e12;
#endif
    const std::string n = prop_.name;
    if (n.find("H100") != std::string::npos && n.find("PCIe") != std::string::npos) return 756e12;
    if (n.find("H100") != std::string::npos || n.find("H200") != std::string::npos ||
        n.find("GH200") != std::string::npos)
      return 989.4e12;
    if (n.find("A100") != std::string::npos) return 312e12;
    return 0.0;
  }

  // Counted at our own cudaMalloc calls (buffers, the shared scratch area, cuBLASLt's workspace),
  // not cudaMemGetInfo: that also counts the CUDA context, NCCL's buffers and other processes on
  // the same GPU, so it would not say what a run's configuration costs.
  uint64_t peak_memory_bytes() const override { return peak_bytes_; }

  std::unique_ptr<DeviceComm> make_device_comm(const CommBootstrap& boot, std::string* why) override {
#ifdef TSU_NCCL
    (void)why;
    TSU_CUDA_CHECK(cudaSetDevice(device_));  // NCCL binds the communicator to the current device
    TSU_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return make_nccl_comm(stream_, boot);
#else
    (void)boot;
    if (why) *why = "this build's CUDA backend has no NCCL (configure found no nccl.h / libnccl, or no MPI)";
    return nullptr;
#endif
  }

  std::string name() const override {
    return std::string("cuda (") + prop_.name + ", sm_" + std::to_string(prop_.major) +
           std::to_string(prop_.minor) + ")";
  }
  std::size_t element_size(Kind kind) const override { return dtype_size(dtype_of(kind)); }

  // ---- memory
  Buf alloc(std::size_t count, Kind kind) override {
    Buf b;
    b.kind = kind;
    b.count = count;
    if (count == 0) return b;
    const std::size_t bytes = count * element_size(kind);
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      bad("alloc", "cudaMalloc of " + std::to_string(bytes) + " bytes failed: " +
                       cudaGetErrorString(e));
    }
    TSU_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, stream_));
    allocations_[p] = bytes;
    held(static_cast<int64_t>(bytes));
    b.ptr = p;
    return b;
  }

  void free(Buf& b) override {
    if (!b.ptr) return;
    auto it = allocations_.find(b.ptr);
    if (it == allocations_.end()) bad("free", "buffer was not allocated by alloc() (a view?)");
    TSU_CUDA_CHECK(cudaStreamSynchronize(stream_));  // kernels may still use it
    held(-static_cast<int64_t>(it->second));
    allocations_.erase(it);
    TSU_CUDA_CHECK(cudaFree(b.ptr));
    b = Buf{};
  }

  void upload(Buf dst, const float* src, std::size_t count) override {
    const OpTimer op_timer(this, "upload");
    need(dst, count, {DType::F32, DType::BF16}, "upload", "dst");
    upload_raw(dst, src, count, dtype_of(dst.kind));
  }
  void upload_ints(Buf dst, const int32_t* src, std::size_t count) override {
    const OpTimer op_timer(this, "upload_ints");
    need(dst, count, {DType::I32}, "upload_ints", "dst");
    upload_raw(dst, src, count, DType::I32);
  }

  void download(float* dst, const Buf& src, std::size_t count) override {
    const OpTimer op_timer(this, "download");
    need(src, count, {DType::F32, DType::BF16, DType::I32}, "download", "src");
    const DType dt = dtype_of(src.kind);
    const std::size_t es = dtype_size(dt);
    const std::size_t chunk = kStageBytes / 4;
    for (std::size_t off = 0; off < count; off += chunk) {
      const std::size_t len = std::min(chunk, count - off);
      TSU_CUDA_CHECK(cudaMemcpyAsync(stage_[0], static_cast<const char*>(src.ptr) + off * es,
                                     len * es, cudaMemcpyDeviceToHost, stream_));
      TSU_CUDA_CHECK(cudaStreamSynchronize(stream_));
      if (dt == DType::BF16) {
        const uint16_t* h = static_cast<const uint16_t*>(stage_[0]);
        for (std::size_t i = 0; i < len; ++i) dst[off + i] = bf16_bits_to_float(h[i]);
      } else if (dt == DType::I32) {
        const int32_t* h = static_cast<const int32_t*>(stage_[0]);
        for (std::size_t i = 0; i < len; ++i) dst[off + i] = static_cast<float>(h[i]);
      } else {
        std::memcpy(dst + off, stage_[0], len * 4);
      }
    }
  }

  void zero(Buf b, std::size_t count) override {
    const OpTimer op_timer(this, "zero");
    if (count == 0) return;
    need(b, count, {DType::F32, DType::BF16, DType::I32}, "zero", "b");
    TSU_CUDA_CHECK(cudaMemsetAsync(b.ptr, 0, count * element_size(b.kind), stream_));
  }

  void copy(Buf dst, const Buf& src, std::size_t count) override {
    const OpTimer op_timer(this, "copy");
    if (count == 0) return;
    need(dst, count, {DType::F32, DType::BF16, DType::I32}, "copy", "dst");
    need(src, count, {DType::F32, DType::BF16, DType::I32}, "copy", "src");
    const DType dt = dtype_of(dst.kind), st = dtype_of(src.kind);
    if (dt == st) {
      TSU_CUDA_CHECK(cudaMemcpyAsync(dst.ptr, src.ptr, count * dtype_size(dt),
                                     cudaMemcpyDeviceToDevice, stream_));
      return;
    }
    if (dt == DType::I32 || st == DType::I32)
      bad("copy", "cannot convert between int32 and floating-point buffers");
    convert(ctx_, dst.ptr, dt, src.ptr, st, count);
  }

  void synchronize() override {
    TSU_CUDA_CHECK(cudaStreamSynchronize(stream_));
    if (prof_) prof_resolve(false);
  }

  // ---- LoRA / hidden-dropout helpers (the mask is backend.h's dropout_uniform, as on the CPU)
  void dropout_scale(Buf out, const Buf& inp, int N, int C, float p, uint64_t seed,
                     uint64_t first_row, float scale) override {
    const OpTimer op_timer(this, "dropout_scale");
    const std::size_t n = sz(N, C);
    if (n == 0) return;
    need(out, n, {DType::BF16, DType::F32}, "dropout_scale", "out");
    need(inp, n, {DType::BF16, DType::F32}, "dropout_scale", "inp");
    if (!(p < 1.0f)) bad("dropout_scale", "p must be below 1");
    // The same fp32 expression as the CPU backend, so kept values differ only by the output type.
    const float keep_scale = p > 0.0f ? scale / (1.0f - p) : scale;
    TSU_CUDA_NS::dropout_scale(ctx_, out.ptr, dtype_of(out.kind), inp.ptr, dtype_of(inp.kind), N,
                               C, p, seed, first_row, keep_scale);
  }

  void copy_strided(Buf dst, int dst_stride, const Buf& src, int src_stride, int N, int C,
                    bool accumulate) override {
    const OpTimer op_timer(this, "copy_strided");
    if (N <= 0 || C <= 0) return;
    if (dst_stride < C || src_stride < C) bad("copy_strided", "a stride is smaller than C");
    need(dst, sz(N - 1, dst_stride) + C, {DType::BF16, DType::F32}, "copy_strided", "dst");
    need(src, sz(N - 1, src_stride) + C, {DType::BF16, DType::F32}, "copy_strided", "src");
    TSU_CUDA_NS::copy_strided(ctx_, dst.ptr, dtype_of(dst.kind), dst_stride, src.ptr,
                              dtype_of(src.kind), src_stride, N, C, accumulate);
  }

  // ---- embeddings
  void embedding_forward(Buf out, const Buf& tokens, const Buf& wte, const Buf& wpe, int B, int T,
                         int C) override {
    const OpTimer op_timer(this, "embedding_forward");
    const std::size_t N = sz(B, T);
    need(out, N * C, {DType::BF16}, "embedding_forward", "out");
    need(tokens, N, {DType::I32}, "embedding_forward", "tokens");
    need(wte, static_cast<std::size_t>(C), {DType::BF16}, "embedding_forward", "wte");
    if (wpe) need(wpe, sz(T, C), {DType::BF16}, "embedding_forward", "wpe");
    const int V = static_cast<int>(wte.count / C);
    TSU_CUDA_NS::embedding_forward(ctx_, as_bf16(out), as_int(tokens), as_bf16(wte),
                                   wpe ? as_bf16(wpe) : nullptr, B, T, C, V);
  }

  void embedding_backward(Buf dwte, Buf dwpe, const Buf& dout, const Buf& tokens, int B, int T,
                          int C) override {
    const OpTimer op_timer(this, "embedding_backward");
    const std::size_t N = sz(B, T);
    need(dwte, static_cast<std::size_t>(C), {DType::BF16}, "embedding_backward", "dwte");
    need(dout, N * C, {DType::BF16}, "embedding_backward", "dout");
    need(tokens, N, {DType::I32}, "embedding_backward", "tokens");
    if (dwpe) need(dwpe, sz(T, C), {DType::BF16}, "embedding_backward", "dwpe");
    const int V = static_cast<int>(dwte.count / C);
    void* s = scratch(embedding_backward_scratch_bytes(static_cast<int>(N)));
    embedding_backward_dwte(ctx_, as_bf16(dwte), as_bf16(dout), as_int(tokens),
                            static_cast<int>(N), C, V, s);
    if (dwpe) embedding_backward_dwpe(ctx_, as_bf16(dwpe), as_bf16(dout), B, T, C);
  }

  // ---- matmul (row-major): out[N,OC] = inp[N,IC] W[OC,IC]^T + bias. cuBLAS sees a row-major
  // [R,C] matrix as a column-major [C,R] one, so it computes out^T [OC,N] = op_T(W as [IC,OC])
  // x inp^T [IC,N], with the bias added along the OC rows.
  void matmul_forward(Buf out, const Buf& inp, const Buf& weight, const Buf& bias, int N, int IC,
                      int OC) override {
    const OpTimer op_timer(this, "matmul_forward", IC, OC);
    need(out, sz(N, OC), {DType::BF16, DType::F32}, "matmul_forward", "out");
    need(inp, sz(N, IC), {DType::BF16}, "matmul_forward", "inp");
    need(weight, sz(OC, IC), {DType::BF16}, "matmul_forward", "weight");
    if (bias) need(bias, static_cast<std::size_t>(OC), {DType::BF16, DType::F32}, "matmul_forward",
                   "bias");
    gemm(forward_gemm(out, inp, weight, bias, N, IC, OC));
  }

  // TSUMUGI_CUDA_GELU_FUSION=1 fuses the GELU into the up projection's matmul (cuBLASLt's
  // GELU_AUX epilogue writes both the pre-activation and the activation), =2 also the GELU's
  // backward into the down projection's input-gradient matmul (DGELU epilogue). Where cuBLASLt
  // offers no algorithm for a shape, or pointers are not aligned for it, the two ops run apart.
  void matmul_gelu_forward(Buf out, Buf pre, const Buf& inp, const Buf& weight, const Buf& bias,
                           int N, int IC, int OC) override {
    const OpTimer op_timer(this, "matmul_gelu_forward", IC, OC);
    const char* op = "matmul_gelu_forward";
    need(out, sz(N, OC), {DType::BF16, DType::F32}, op, "out");
    need(pre, sz(N, OC), {DType::BF16, DType::F32}, op, "pre");
    need(inp, sz(N, IC), {DType::BF16}, op, "inp");
    need(weight, sz(OC, IC), {DType::BF16}, op, "weight");
    if (bias) need(bias, static_cast<std::size_t>(OC), {DType::BF16, DType::F32}, op, "bias");
    if (gelu_fusion_ >= 1 && N > 0 && OC > 0 && IC > 0) {
      Gemm g = forward_gemm(out, inp, weight, bias, N, IC, OC);
      g.epi = Gemm::Epi::GeluAux;
      g.aux = pre.ptr;
      if (dtype_of(pre.kind) == g.ct && lt_fused(g)) return;
    }
    Backend::matmul_gelu_forward(out, pre, inp, weight, bias, N, IC, OC);
  }

  void matmul_gelu_backward(Buf dpre, Buf dweight, Buf dbias, const Buf& dout, const Buf& act,
                            const Buf& weight, const Buf& pre, Buf dact, int N, int IC,
                            int OC) override {
    const OpTimer op_timer(this, "matmul_gelu_backward", IC, OC);
    const char* op = "matmul_gelu_backward";
    need(dpre, sz(N, IC), {DType::BF16, DType::F32}, op, "dpre");
    need(pre, sz(N, IC), {DType::BF16, DType::F32}, op, "pre");
    need(dout, sz(N, OC), {DType::BF16}, op, "dout");
    need(weight, sz(OC, IC), {DType::BF16}, op, "weight");
    if (gelu_fusion_ >= 2 && N > 0 && OC > 0 && IC > 0) {
      Gemm g = input_grad_gemm(dpre, dout, weight, N, IC, OC, false);
      g.epi = Gemm::Epi::GeluGrad;
      g.aux = pre.ptr;
      if (dtype_of(pre.kind) == g.ct && lt_fused(g)) {
        matmul_backward(Buf{}, dweight, dbias, dout, act, weight, N, IC, OC, false);
        return;
      }
    }
    Backend::matmul_gelu_backward(dpre, dweight, dbias, dout, act, weight, pre, dact, N, IC, OC);
  }

  void matmul_backward(Buf dinp, Buf dweight, Buf dbias, const Buf& dout, const Buf& inp,
                       const Buf& weight, int N, int IC, int OC, bool accumulate_dinp) override {
    const OpTimer op_timer(this, "matmul_backward", IC, OC);
    need(dout, sz(N, OC), {DType::BF16}, "matmul_backward", "dout");
    if (dbias)
      need(dbias, static_cast<std::size_t>(OC), {DType::BF16, DType::F32}, "matmul_backward", "dbias");
    if (dinp) {
      need(dinp, sz(N, IC), {DType::BF16, DType::F32}, "matmul_backward", "dinp");
      need(weight, sz(OC, IC), {DType::BF16}, "matmul_backward", "weight");
      gemm(input_grad_gemm(dinp, dout, weight, N, IC, OC, accumulate_dinp));
    }
    if (dweight) {
      need(dweight, sz(OC, IC), {DType::BF16, DType::F32}, "matmul_backward", "dweight");
      need(inp, sz(N, IC), {DType::BF16}, "matmul_backward", "inp");
      const Gemm g = weight_grad_gemm(dweight, dout, inp, N, IC, OC);
      // TSUMUGI_CUDA_BGRAD_FUSION=1: the bias gradient from the same matmul (cuBLASLt's BGRADB
      // epilogue sums dout's columns while it reads them), into scratch (cuBLASLt overwrites it;
      // dbias accumulates) and then added to dbias, instead of a column reduction re-reading dout.
      if (dbias && bgrad_fusion_ && N > 0 && IC > 0 && OC > 0) {
        Gemm f = g;
        f.epi = Gemm::Epi::BgradB;
        f.aux = scratch(align_up(sz(OC) * dtype_size(g.ct), 256));
        if (lt_fused(f)) {
          TSU_CUDA_NS::accumulate(ctx_, dbias.ptr, dtype_of(dbias.kind), f.aux, g.ct, static_cast<std::size_t>(OC));
          return;
        }
      }
      gemm(g);
    }
    if (dbias) {
      void* s = scratch(column_reduce_scratch_bytes(N, OC, ctx_.sm_count));
      column_reduce(ctx_, as_bf16(dout), nullptr, nullptr, nullptr, nullptr, DType::F32,
                    dbias.ptr, dtype_of(dbias.kind), N, OC, s);
    }
  }

  // ---- norms
  void layernorm_forward(Buf out, Buf mean, Buf rstd, const Buf& inp, const Buf& weight,
                         const Buf& bias, int N, int C, float eps) override {
    const OpTimer op_timer(this, "layernorm_forward");
    const char* op = "layernorm_forward";
    need(inp, sz(N, C), {DType::BF16}, op, "inp");
    need_layernorm_forward(op, out, mean, rstd, weight, bias, N, C);
    TSU_CUDA_NS::layernorm_forward(ctx_, as_bf16(out), opt_f32(mean), opt_f32(rstd), as_bf16(inp),
                                   as_bf16(weight), bias ? as_bf16(bias) : nullptr, N, C, eps);
  }

  void add_layernorm_forward(Buf sum, Buf out, Buf mean, Buf rstd, const Buf& a, const Buf& b,
                             const Buf& weight, const Buf& bias, int N, int C, float eps) override {
    const OpTimer op_timer(this, "add_layernorm_forward");
    const char* op = "add_layernorm_forward";
    need(sum, sz(N, C), {DType::BF16}, op, "sum");
    need(a, sz(N, C), {DType::BF16}, op, "a");
    need(b, sz(N, C), {DType::BF16}, op, "b");
    need_layernorm_forward(op, out, mean, rstd, weight, bias, N, C);
    if (TSU_CUDA_NS::add_layernorm_forward(ctx_, as_bf16(sum), as_bf16(out), opt_f32(mean),
                                           opt_f32(rstd), as_bf16(a), as_bf16(b), as_bf16(weight),
                                           bias ? as_bf16(bias) : nullptr, N, C, eps))
      return;
    Backend::add_layernorm_forward(sum, out, mean, rstd, a, b, weight, bias, N, C, eps);
  }

  void layernorm_backward(Buf dinp, Buf dweight, Buf dbias, const Buf& dout, const Buf& inp,
                          const Buf& weight, const Buf& mean, const Buf& rstd, int N,
                          int C) override {
    const OpTimer op_timer(this, "layernorm_backward");
    const char* op = "layernorm_backward";
    if (dinp) need(dinp, sz(N, C), {DType::BF16}, op, "dinp");
    if (dweight) need(dweight, static_cast<std::size_t>(C), {DType::BF16}, op, "dweight");
    if (dbias) need(dbias, static_cast<std::size_t>(C), {DType::BF16}, op, "dbias");
    need(dout, sz(N, C), {DType::BF16}, op, "dout");
    need(inp, sz(N, C), {DType::BF16}, op, "inp");
    need(weight, static_cast<std::size_t>(C), {DType::BF16}, op, "weight");
    need(mean, static_cast<std::size_t>(N), {DType::F32}, op, "mean");
    need(rstd, static_cast<std::size_t>(N), {DType::F32}, op, "rstd");
    void* s = scratch(norm_backward_scratch_bytes(N, C, ctx_.sm_count));
    TSU_CUDA_NS::layernorm_backward(ctx_, opt_bf16(dinp), opt_bf16(dweight), opt_bf16(dbias),
                                    as_bf16(dout), as_bf16(inp), as_bf16(weight), as_f32(mean),
                                    as_f32(rstd), N, C, s);
  }

  void rmsnorm_forward(Buf out, Buf rstd, const Buf& inp, const Buf& weight, int N, int C,
                       float eps) override {
    const OpTimer op_timer(this, "rmsnorm_forward");
    const char* op = "rmsnorm_forward";
    need(out, sz(N, C), {DType::BF16}, op, "out");
    need(inp, sz(N, C), {DType::BF16}, op, "inp");
    need(weight, static_cast<std::size_t>(C), {DType::BF16}, op, "weight");
    if (rstd) need(rstd, static_cast<std::size_t>(N), {DType::F32}, op, "rstd");
    TSU_CUDA_NS::rmsnorm_forward(ctx_, as_bf16(out), opt_f32(rstd), as_bf16(inp), as_bf16(weight),
                                 N, C, eps);
  }

  void rmsnorm_backward(Buf dinp, Buf dweight, const Buf& dout, const Buf& inp,
                        const Buf& weight, const Buf& rstd, int N, int C) override {
    const OpTimer op_timer(this, "rmsnorm_backward");
    const char* op = "rmsnorm_backward";
    if (dinp) need(dinp, sz(N, C), {DType::BF16}, op, "dinp");
    if (dweight) need(dweight, static_cast<std::size_t>(C), {DType::BF16}, op, "dweight");
    need(dout, sz(N, C), {DType::BF16}, op, "dout");
    need(inp, sz(N, C), {DType::BF16}, op, "inp");
    need(weight, static_cast<std::size_t>(C), {DType::BF16}, op, "weight");
    need(rstd, static_cast<std::size_t>(N), {DType::F32}, op, "rstd");
    void* s = scratch(norm_backward_scratch_bytes(N, C, ctx_.sm_count));
    TSU_CUDA_NS::rmsnorm_backward(ctx_, opt_bf16(dinp), opt_bf16(dweight), as_bf16(dout),
                                  as_bf16(inp), as_bf16(weight), as_f32(rstd), N, C, s);
  }

  // ---- elementwise
  void add(Buf out, const Buf& a, const Buf& b, std::size_t n) override {
    const OpTimer op_timer(this, "add");
    need(out, n, {DType::BF16, DType::F32}, "add", "out");
    need(a, n, {DType::BF16, DType::F32}, "add", "a");
    need(b, n, {DType::BF16, DType::F32}, "add", "b");
    TSU_CUDA_NS::add(ctx_, out.ptr, dtype_of(out.kind), a.ptr, dtype_of(a.kind), b.ptr,
                     dtype_of(b.kind), n);
  }
  void accumulate(Buf dst, const Buf& src, std::size_t n) override {
    const OpTimer op_timer(this, "accumulate");
    need(dst, n, {DType::BF16, DType::F32}, "accumulate", "dst");
    need(src, n, {DType::BF16, DType::F32}, "accumulate", "src");
    TSU_CUDA_NS::accumulate(ctx_, dst.ptr, dtype_of(dst.kind), src.ptr, dtype_of(src.kind), n);
  }
  void gelu_forward(Buf out, const Buf& inp, std::size_t n) override {
    const OpTimer op_timer(this, "gelu_forward");
    need(out, n, {DType::BF16, DType::F32}, "gelu_forward", "out");
    need(inp, n, {DType::BF16, DType::F32}, "gelu_forward", "inp");
    TSU_CUDA_NS::gelu_forward(ctx_, out.ptr, dtype_of(out.kind), inp.ptr, dtype_of(inp.kind), n);
  }
  void gelu_backward(Buf dinp, const Buf& inp, const Buf& dout, std::size_t n) override {
    const OpTimer op_timer(this, "gelu_backward");
    need(dinp, n, {DType::BF16, DType::F32}, "gelu_backward", "dinp");
    need(inp, n, {DType::BF16, DType::F32}, "gelu_backward", "inp");
    need(dout, n, {DType::BF16, DType::F32}, "gelu_backward", "dout");
    TSU_CUDA_NS::gelu_backward(ctx_, dinp.ptr, dtype_of(dinp.kind), inp.ptr, dtype_of(inp.kind),
                               dout.ptr, dtype_of(dout.kind), n);
  }
  void swiglu_forward(Buf out, const Buf& inp, int N, int F) override {
    const OpTimer op_timer(this, "swiglu_forward");
    need(out, sz(N, F), {DType::BF16, DType::F32}, "swiglu_forward", "out");
    need(inp, sz(N, 2, F), {DType::BF16, DType::F32}, "swiglu_forward", "inp");
    TSU_CUDA_NS::swiglu_forward(ctx_, out.ptr, dtype_of(out.kind), inp.ptr, dtype_of(inp.kind), N,
                                F);
  }
  void swiglu_backward(Buf dinp, const Buf& inp, const Buf& dout, int N, int F) override {
    const OpTimer op_timer(this, "swiglu_backward");
    need(dinp, sz(N, 2, F), {DType::BF16, DType::F32}, "swiglu_backward", "dinp");
    need(inp, sz(N, 2, F), {DType::BF16, DType::F32}, "swiglu_backward", "inp");
    need(dout, sz(N, F), {DType::BF16, DType::F32}, "swiglu_backward", "dout");
    TSU_CUDA_NS::swiglu_backward(ctx_, dinp.ptr, dtype_of(dinp.kind), inp.ptr, dtype_of(inp.kind),
                                 dout.ptr, dtype_of(dout.kind), N, F);
  }

  // ---- rope
  void rope_forward(Buf out, const Buf& qkv, const AttentionShape& s, float theta) override {
    const OpTimer op_timer(this, "rope_forward");
    rope_common("rope_forward", out, qkv, s, theta, false);
  }
  void rope_backward(Buf dqkv, const Buf& dout, const AttentionShape& s, float theta) override {
    const OpTimer op_timer(this, "rope_backward");
    rope_common("rope_backward", dqkv, dout, s, theta, true);
  }

  // ---- attention
  void attention_forward(Buf out, Buf lse, const Buf& qkv, const AttentionShape& s) override {
    const OpTimer op_timer(this, "attention_forward");
    const char* op = "attention_forward";
    check_shape(op, s);
    need(out, sz(s.B, s.T) * s.n_head * s.head_dim, {DType::BF16}, op, "out");
    need(lse, sz(s.B, s.n_head, s.T), {DType::F32}, op, "lse");
    need(qkv, sz(s.B, s.T) * (s.n_head + 2 * s.n_kv_head) * s.head_dim, {DType::BF16}, op, "qkv");
    TSU_CUDA_NS::attention_forward(ctx_, as_bf16(out), as_f32(lse), as_bf16(qkv), dims(s));
  }

  void attention_backward(Buf dqkv, const Buf& dout, const Buf& qkv, const Buf& out,
                          const Buf& lse, const AttentionShape& s) override {
    const OpTimer op_timer(this, "attention_backward");
    const char* op = "attention_backward";
    check_shape(op, s);
    const std::size_t nqkv = sz(s.B, s.T) * (s.n_head + 2 * s.n_kv_head) * s.head_dim;
    const std::size_t nout = sz(s.B, s.T) * s.n_head * s.head_dim;
    need(dqkv, nqkv, {DType::BF16}, op, "dqkv");
    need(dout, nout, {DType::BF16}, op, "dout");
    need(qkv, nqkv, {DType::BF16}, op, "qkv");
    need(out, nout, {DType::BF16}, op, "out");
    need(lse, sz(s.B, s.n_head, s.T), {DType::F32}, op, "lse");
    void* sc = scratch(attention_backward_scratch_bytes(dims(s)));
    TSU_CUDA_NS::attention_backward(ctx_, as_bf16(dqkv), as_bf16(dout), as_bf16(qkv),
                                    as_bf16(out), as_f32(lse), dims(s), sc);
  }

  // ---- loss
  void cross_entropy_forward_backward(Buf losses, Buf logits, const Buf& targets, int N, int V,
                                      float dloss) override {
    const OpTimer op_timer(this, "cross_entropy_forward_backward");
    const char* op = "cross_entropy_forward_backward";
    need(losses, static_cast<std::size_t>(N), {DType::F32}, op, "losses");
    need(logits, sz(N, V), {DType::BF16}, op, "logits");
    need(targets, static_cast<std::size_t>(N), {DType::I32}, op, "targets");
    cross_entropy(ctx_, as_f32(losses), as_bf16(logits), as_int(targets), N, V, dloss);
  }

  // ---- optimizer
  void adamw_update(Buf master, Buf param, const Buf& grad, Buf m, Buf v, std::size_t n,
                    const AdamWParams& p) override {
    const OpTimer op_timer(this, "adamw_update");
    const char* op = "adamw_update";
    need(master, n, {DType::F32}, op, "master");
    if (param) need(param, n, {DType::BF16, DType::F32}, op, "param");
    need(grad, n, {DType::BF16, DType::F32}, op, "grad");
    need(m, n, {DType::F32}, op, "m");
    need(v, n, {DType::F32}, op, "v");
    const AdamWArgs a = adamw_args(op, p);
    adamw(ctx_, as_f32(master), param ? param.ptr : nullptr,
          param ? dtype_of(param.kind) : DType::F32, grad.ptr, dtype_of(grad.kind), as_f32(m),
          as_f32(v), n, a);
  }

  void adamw_update_segments(Buf master, Buf param, const Buf& grad, Buf m, Buf v,
                             const std::vector<AdamWSegment>& segments,
                             const AdamWParams& p) override {
    const OpTimer op_timer(this, "adamw_update_segments");
    const char* op = "adamw_update_segments";
    std::size_t end = 0;
    std::vector<float> decays;  // the distinct weight decays, in order of appearance
    for (const AdamWSegment& s : segments) {
      if (s.count == 0) continue;
      end = std::max(end, s.offset + s.count);
      if (std::find(decays.begin(), decays.end(), s.weight_decay) == decays.end())
        decays.push_back(s.weight_decay);
    }
    if (end == 0) return;
    for (float wd : decays)
      if (!std::isfinite(wd)) bad(op, "weight decay " + std::to_string(wd) + " is not a finite number");
    if (decays.size() > static_cast<std::size_t>(kAdamWMaxDecays)) {
      Backend::adamw_update_segments(master, param, grad, m, v, segments, p);
      return;
    }
    need(master, end, {DType::F32}, op, "master");
    if (param) need(param, end, {DType::BF16, DType::F32}, op, "param");
    need(grad, end, {DType::BF16, DType::F32}, op, "grad");
    need(m, end, {DType::F32}, op, "m");
    need(v, end, {DType::F32}, op, "v");
    const AdamWArgs a = adamw_args(op, p);
    if (!same_segments(segments, adamw_segments_)) upload_adamw_table(op, segments, decays);
    AdamWDecays d{};
    for (std::size_t i = 0; i < decays.size(); ++i) d.v[i] = 1.0f - p.lr * decays[i];
    adamw_chunks(ctx_, adamw_table_, adamw_table_len_, as_f32(master), param ? param.ptr : nullptr,
                 param ? dtype_of(param.kind) : DType::F32, grad.ptr, dtype_of(grad.kind),
                 as_f32(m), as_f32(v), a, d);
  }

  double sum_squares(const Buf& b, std::size_t n) override {
    const OpTimer op_timer(this, "sum_squares");
    need(b, n, {DType::BF16, DType::F32}, "sum_squares", "b");
    return reduce(b, n, true);
  }
  double sum(const Buf& b, std::size_t n) override {
    const OpTimer op_timer(this, "sum");
    need(b, n, {DType::BF16, DType::F32}, "sum", "b");
    return reduce(b, n, false);
  }

 private:
  // ---- TSUMUGI_CUDA_PROFILE=1: the GPU time of every op inside a real run, from a pair of events
  // around each (the outermost op only: a fused op's fallback pieces count as that op), summed per
  // op and shape and printed when the backend goes away, with the gaps between ops: the time the
  // GPU waited for the host (or ran work no op timer wraps: the NCCL collectives), short gaps
  // (under 1 ms: launches, synchronizations and host work within and between steps) apart from
  // long ones (start-up, evaluation, checkpoints). The
  // events cost the host a few microseconds per op, so runs for speed figures leave it off.
  class OpTimer {
   public:
    OpTimer(CudaBackend* b, const char* op, int in = -1, int out = -1) : b_(b->prof_ ? b : nullptr) {
      if (b_) b_->prof_begin(op, in, out);
    }
    ~OpTimer() {
      if (b_) b_->prof_end();
    }
    OpTimer(const OpTimer&) = delete;
    OpTimer& operator=(const OpTimer&) = delete;

   private:
    CudaBackend* b_;
  };
  struct ProfSpan {
    std::string label;
    cudaEvent_t start = nullptr, end = nullptr;
  };
  struct ProfTotal {
    double ms = 0;
    long calls = 0;
  };

  cudaEvent_t prof_event() {
    if (!prof_free_.empty()) {
      cudaEvent_t e = prof_free_.back();
      prof_free_.pop_back();
      return e;
    }
    cudaEvent_t e = nullptr;
    TSU_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDefault));
    return e;
  }

  void prof_begin(const char* op, int in, int out) {
    if (prof_depth_ > 0) {  // the op's own sub-ops are part of it
      ++prof_depth_;
      return;
    }
    prof_open_.label = op;
    if (in >= 0) prof_open_.label += " " + std::to_string(in) + "->" + std::to_string(out);
    prof_open_.start = prof_event();
    prof_open_.end = prof_event();
    TSU_CUDA_CHECK(cudaEventRecord(prof_open_.start, stream_));
    prof_depth_ = 1;  // only now: if anything above threw, no OpTimer will call prof_end
  }

  void prof_end() noexcept {
    if (--prof_depth_ > 0) return;
    (void)cudaEventRecord(prof_open_.end, stream_);
    prof_pending_.push_back(prof_open_);
    if (prof_pending_.size() >= 16384) prof_resolve(true);  // runs that never synchronize
  }

  // Folds finished spans into the totals; the stream must have been synchronized (sync = true
  // does it).
  void prof_resolve(bool sync) noexcept {
    if (prof_pending_.empty()) return;
    if (sync) (void)cudaStreamSynchronize(stream_);
    for (const ProfSpan& sp : prof_pending_) {
      float ms = 0, gap = 0;
      if (cudaEventElapsedTime(&ms, sp.start, sp.end) == cudaSuccess) {
        ProfTotal& t = prof_totals_[sp.label];
        t.ms += ms;
        ++t.calls;
      }
      if (prof_prev_end_ && cudaEventElapsedTime(&gap, prof_prev_end_, sp.start) == cudaSuccess) {
        ProfTotal& t = gap < 1.0f ? prof_short_gaps_ : prof_long_gaps_;
        t.ms += gap;
        ++t.calls;
      }
      prof_free_.push_back(sp.start);
      if (prof_prev_end_) prof_free_.push_back(prof_prev_end_);
      prof_prev_end_ = sp.end;  // kept for the next span's gap
    }
    prof_pending_.clear();
    (void)cudaGetLastError();
  }

  void prof_report() noexcept {
    prof_resolve(true);
    if (prof_totals_.empty()) return;
    std::vector<std::pair<std::string, ProfTotal>> rows(prof_totals_.begin(), prof_totals_.end());
    std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.ms > b.second.ms; });
    double busy = 0;
    for (const auto& r : rows) busy += r.second.ms;
    const double span = busy + prof_short_gaps_.ms + prof_long_gaps_.ms;
    std::fprintf(stderr, "tsumugi: CUDA profile (TSUMUGI_CUDA_PROFILE=1) on %s: %.1f ms of GPU timeline\n",
                 prop_.name, span);
    std::fprintf(stderr, "  %-44s %9s %11s %7s %11s\n", "op (in->out features)", "calls", "ms", "%", "us/call");
    for (const auto& r : rows)
      std::fprintf(stderr, "  %-44s %9ld %11.2f %6.1f%% %11.1f\n", r.first.c_str(), r.second.calls, r.second.ms,
                   100.0 * r.second.ms / span, 1e3 * r.second.ms / static_cast<double>(r.second.calls));
    std::fprintf(stderr, "  %-44s %9s %11.2f %6.1f%%\n", "all ops", "", busy, 100.0 * busy / span);
    std::fprintf(stderr, "  %-44s %9ld %11.2f %6.1f%%\n", "gaps under 1 ms (idle, or untimed: NCCL)", prof_short_gaps_.calls,
                 prof_short_gaps_.ms, 100.0 * prof_short_gaps_.ms / span);
    std::fprintf(stderr, "  %-44s %9ld %11.2f %6.1f%%\n", "gaps of 1 ms or more (idle, or NCCL)", prof_long_gaps_.calls,
                 prof_long_gaps_.ms, 100.0 * prof_long_gaps_.ms / span);
  }

  void prof_release() noexcept {
    for (const ProfSpan& sp : prof_pending_) {
      prof_free_.push_back(sp.start);
      prof_free_.push_back(sp.end);
    }
    prof_pending_.clear();
    for (cudaEvent_t e : prof_free_) (void)cudaEventDestroy(e);
    prof_free_.clear();
    if (prof_prev_end_) (void)cudaEventDestroy(prof_prev_end_);
    prof_prev_end_ = nullptr;
  }

  // What layernorm_forward and add_layernorm_forward both take: out [N,C], weight and bias [C]
  // (bias optional), mean and rstd [N] (optional).
  static void need_layernorm_forward(const char* op, const Buf& out, const Buf& mean, const Buf& rstd,
                                     const Buf& weight, const Buf& bias, int N, int C) {
    need(out, sz(N, C), {DType::BF16}, op, "out");
    need(weight, static_cast<std::size_t>(C), {DType::BF16}, op, "weight");
    if (bias) need(bias, static_cast<std::size_t>(C), {DType::BF16}, op, "bias");
    if (mean) need(mean, static_cast<std::size_t>(N), {DType::F32}, op, "mean");
    if (rstd) need(rstd, static_cast<std::size_t>(N), {DType::F32}, op, "rstd");
  }

  static bf16* as_bf16(const Buf& b) { return static_cast<bf16*>(b.ptr); }
  static bf16* opt_bf16(const Buf& b) { return b ? static_cast<bf16*>(b.ptr) : nullptr; }
  static float* as_f32(const Buf& b) { return static_cast<float*>(b.ptr); }
  static float* opt_f32(const Buf& b) { return b ? static_cast<float*>(b.ptr) : nullptr; }
  static const int* as_int(const Buf& b) { return static_cast<const int*>(b.ptr); }

  static AttnDims dims(const AttentionShape& s) {
    return AttnDims{s.B, s.T, s.n_head, s.n_kv_head, s.head_dim};
  }

  static void check_shape(const char* op, const AttentionShape& s) {
    if (s.B < 0 || s.T < 0 || s.n_head <= 0 || s.n_kv_head <= 0 || s.head_dim <= 0)
      bad(op, "bad attention shape");
    if (s.n_head % s.n_kv_head != 0) bad(op, "n_head must be a multiple of n_kv_head");
    if (s.head_dim > 128) bad(op, "head_dim > 128 is not supported by the CUDA kernels");
  }

  void rope_common(const char* op, Buf out, const Buf& in, const AttentionShape& s, float theta,
                   bool inverse) {
    if (s.B < 0 || s.T <= 0 || s.n_head <= 0 || s.n_kv_head <= 0 || s.head_dim <= 0 ||
        s.head_dim % 2 != 0)
      bad(op, "bad shape (head_dim must be even)");
    const std::size_t n = sz(s.B, s.T) * (s.n_head + 2 * s.n_kv_head) * s.head_dim;
    need(out, n, {DType::BF16, DType::F32}, op, "out");
    need(in, n, {DType::BF16, DType::F32}, op, "in");
    rope(ctx_, out.ptr, dtype_of(out.kind), in.ptr, dtype_of(in.kind), s.B, s.T, s.n_head,
         s.n_kv_head, s.head_dim, theta, inverse);
  }

  // Bias corrections in fp32 exactly as the CPU backend computes them.
  static AdamWArgs adamw_args(const char* op, const AdamWParams& p) {
    if (p.step < 1) bad(op, "step must be >= 1 (bias correction)");
    const float bc1 = 1.0f - std::pow(p.beta1, static_cast<float>(p.step));
    const float bc2 = 1.0f - std::pow(p.beta2, static_cast<float>(p.step));
    AdamWArgs a;
    a.beta1 = p.beta1;
    a.beta2 = p.beta2;
    a.eps = p.eps;
    a.grad_scale = p.grad_scale;
    a.step_size = p.lr / bc1;
    a.bc2_sqrt = std::sqrt(bc2);
    a.decay = 1.0f - p.lr * p.weight_decay;
    return a;
  }

  static bool same_segments(const std::vector<AdamWSegment>& x, const std::vector<AdamWSegment>& y) {
    if (x.size() != y.size()) return false;
    for (std::size_t i = 0; i < x.size(); ++i)
      if (x[i].offset != y[i].offset || x[i].count != y[i].count ||
          x[i].weight_decay != y[i].weight_decay)
        return false;
    return true;
  }

  // The chunk table of adamw_update_segments lives on the device and is rebuilt only when the
  // segments change (a training run passes the same ones every step).
  void upload_adamw_table(const char* op, const std::vector<AdamWSegment>& segments,
                          const std::vector<float>& decays) {
    std::vector<AdamWSegment> sorted;
    for (const AdamWSegment& s : segments)
      if (s.count) sorted.push_back(s);
    std::sort(sorted.begin(), sorted.end(),
              [](const AdamWSegment& x, const AdamWSegment& y) { return x.offset < y.offset; });
    for (std::size_t i = 1; i < sorted.size(); ++i)
      if (sorted[i].offset < sorted[i - 1].offset + sorted[i - 1].count)
        bad(op, "segments overlap at element " + std::to_string(sorted[i].offset));
    const std::vector<AdamWChunk> table = adamw_chunk_table(segments, decays);
    const std::size_t bytes = table.size() * sizeof(AdamWChunk);
    if (bytes > adamw_table_bytes_) {
      TSU_CUDA_CHECK(cudaStreamSynchronize(stream_));  // the old table may still be in use
      if (adamw_table_) TSU_CUDA_CHECK(cudaFree(adamw_table_));
      held(-static_cast<int64_t>(adamw_table_bytes_));
      adamw_table_ = nullptr;
      adamw_table_bytes_ = 0;
      TSU_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&adamw_table_), bytes));
      adamw_table_bytes_ = bytes;
      held(static_cast<int64_t>(bytes));
    }
    // From pageable memory, so the copy is done before the call returns and `table` may go.
    TSU_CUDA_CHECK(cudaMemcpyAsync(adamw_table_, table.data(), bytes, cudaMemcpyHostToDevice,
                                   stream_));
    TSU_CUDA_CHECK(cudaStreamSynchronize(stream_));
    adamw_table_len_ = table.size();
    adamw_segments_ = segments;
  }

  double reduce(const Buf& b, std::size_t n, bool squares) {
    void* s = scratch(reduce_scratch_bytes());
    reduce_sum(ctx_, b.ptr, dtype_of(b.kind), n, squares, result_dev_, s);
    TSU_CUDA_CHECK(cudaMemcpyAsync(result_host_, result_dev_, sizeof(double),
                                   cudaMemcpyDeviceToHost, stream_));
    TSU_CUDA_CHECK(cudaStreamSynchronize(stream_));
    if (prof_) prof_resolve(false);
    return *result_host_;
  }

  void held(int64_t delta) {
    held_bytes_ = static_cast<uint64_t>(static_cast<int64_t>(held_bytes_) + delta);
    peak_bytes_ = std::max(peak_bytes_, held_bytes_);
  }

  // One scratch area reused by every op (they run in stream order, one at a time).
  void* scratch(std::size_t bytes) {
    if (bytes <= scratch_bytes_) return scratch_;
    TSU_CUDA_CHECK(cudaStreamSynchronize(stream_));  // the old area may still be in use
    if (scratch_) TSU_CUDA_CHECK(cudaFree(scratch_));
    held(-static_cast<int64_t>(scratch_bytes_));
    scratch_ = nullptr;
    scratch_bytes_ = 0;
    const std::size_t want = align_up(bytes + bytes / 4, 1u << 20);
    TSU_CUDA_CHECK(cudaMalloc(&scratch_, want));
    scratch_bytes_ = want;
    held(static_cast<int64_t>(want));
    return scratch_;
  }

  // Host fp32/int32 -> device through two pinned buffers, so a copy overlaps the conversion of
  // the next chunk and the call returns without waiting for the GPU to drain its queue.
  void upload_raw(Buf dst, const void* src, std::size_t count, DType dt) {
    const std::size_t es = dtype_size(dt);
    const std::size_t chunk = kStageBytes / 4;
    for (std::size_t off = 0; off < count; off += chunk) {
      const std::size_t len = std::min(chunk, count - off);
      const int k = stage_next_;
      stage_next_ ^= 1;
      TSU_CUDA_CHECK(cudaEventSynchronize(stage_event_[k]));  // previous copy out of it is done
      if (dt == DType::BF16) {
        const float* f = static_cast<const float*>(src) + off;
        uint16_t* h = static_cast<uint16_t*>(stage_[k]);
        for (std::size_t i = 0; i < len; ++i) h[i] = float_to_bf16_bits(f[i]);
      } else {
        std::memcpy(stage_[k], static_cast<const char*>(src) + off * 4, len * 4);
      }
      TSU_CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(dst.ptr) + off * es, stage_[k], len * es,
                                     cudaMemcpyHostToDevice, stream_));
      TSU_CUDA_CHECK(cudaEventRecord(stage_event_[k], stream_));
    }
  }

  // D [m,n] = op(A) op(B) (+ D when accumulating) in cuBLAS's column-major terms, D being C's
  // buffer with leading dimension ldc.
  static Gemm gemm_of(bool ta, bool tb, int m, int n, int k, const void* A, int lda, const void* B,
                      int ldb, const Buf& C, int ldc, bool accumulate) {
    Gemm g;
    g.ta = ta;
    g.tb = tb;
    g.m = m;
    g.n = n;
    g.k = k;
    g.A = A;
    g.lda = lda;
    g.B = B;
    g.ldb = ldb;
    g.C = C.ptr;
    g.ct = dtype_of(C.kind);
    g.ldc = ldc;
    g.accumulate = accumulate;
    return g;
  }

  // out^T [OC,N] = op_T(W as [IC,OC]) x inp^T [IC,N] (+ bias along the OC rows)
  static Gemm forward_gemm(const Buf& out, const Buf& inp, const Buf& weight, const Buf& bias,
                           int N, int IC, int OC) {
    Gemm g = gemm_of(true, false, OC, N, IC, weight.ptr, IC, inp.ptr, IC, out, OC, false);
    g.bias = bias ? bias.ptr : nullptr;
    g.bias_t = bias ? dtype_of(bias.kind) : DType::BF16;
    return g;
  }

  // dinp^T [IC,N] = W^T [IC,OC] x dout^T [OC,N]
  static Gemm input_grad_gemm(const Buf& dinp, const Buf& dout, const Buf& weight, int N, int IC,
                              int OC, bool accumulate) {
    return gemm_of(false, false, IC, N, OC, weight.ptr, IC, dout.ptr, OC, dinp, IC, accumulate);
  }

  // dweight^T [IC,OC] += inp^T [IC,N] x dout [N,OC]
  static Gemm weight_grad_gemm(const Buf& dweight, const Buf& dout, const Buf& inp, int N, int IC,
                               int OC) {
    return gemm_of(false, true, IC, OC, N, inp.ptr, IC, dout.ptr, OC, dweight, IC, true);
  }

  static const char* epilogue_name(Gemm::Epi e) {
    if (e == Gemm::Epi::None) return "";
    return e == Gemm::Epi::BgradB ? "bias gradient" : "GELU";
  }

  // A matmul with a fused epilogue (GELU or bias gradient) through cuBLASLt, or false (nothing
  // launched) when this shape, these pointers or this build cannot take it.
  bool lt_fused(const Gemm& g) {
    if (force_gemm_ex_ || g.k == 0 || g.epi == Gemm::Epi::None) return false;
    const bool bgrad = g.epi == Gemm::Epi::BgradB;
    if (g.accumulate && !bgrad) return false;
    // cuBLASLt reads the bias itself only in D's type, 16-byte aligned; the GELU's aux needs a
    // leading dimension divisible by 8; aux and the bias gradient 16-byte alignment.
    if (g.bias && (g.bias_t != g.ct || reinterpret_cast<std::uintptr_t>(g.bias) % 16 != 0))
      return false;
    if ((!bgrad && g.ldc % 8 != 0) || reinterpret_cast<std::uintptr_t>(g.aux) % 16 != 0) return false;
    LtPlan& plan = lt_plan(g, g.bias != nullptr);
    if (!plan.ok) return false;
    if (g.bias)
      TSU_BLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                    &g.bias, sizeof(g.bias)));
    TSU_BLAS_CHECK(cublasLtMatmulDescSetAttribute(
        plan.op, bgrad ? CUBLASLT_MATMUL_DESC_BIAS_POINTER : CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER,
        &g.aux, sizeof(g.aux)));
    const float alpha = 1.f, beta = g.accumulate ? 1.f : 0.f;
    const cublasStatus_t st =
        cublasLtMatmul(lt_, plan.op, &alpha, g.A, plan.a, g.B, plan.b, &beta, g.C, plan.c, g.C,
                       plan.c, &plan.algo, workspace_, kWorkspaceBytes, stream_);
    if (st == CUBLAS_STATUS_SUCCESS) return true;
    std::fprintf(stderr,
                 "tsumugi: cuBLASLt matmul %dx%dx%d with a fused %s failed (%s); running it apart "
                 "for this shape\n",
                 g.m, g.n, g.k, epilogue_name(g.epi), cublasGetStatusString(st));
    plan.ok = false;
    return false;
  }

  void gemm(const Gemm& g) {
    if (g.m == 0 || g.n == 0) return;
    if (g.k == 0) {
      // Nothing to multiply: D = beta C (+ bias).
      if (!g.accumulate)
        TSU_CUDA_CHECK(cudaMemsetAsync(g.C, 0, sz(g.m, g.n) * dtype_size(g.ct), stream_));
      if (g.bias) bias_add(ctx_, g.C, g.ct, g.bias, g.bias_t, g.n, g.m);
      return;
    }
    // Fused bias when cuBLASLt can read it directly (same type as D, 16-byte aligned).
    const bool fuse_bias = g.bias && g.bias_t == g.ct &&
                           reinterpret_cast<std::uintptr_t>(g.bias) % 16 == 0;
    if (!force_gemm_ex_) {
      LtPlan& plan = lt_plan(g, fuse_bias);
      if (plan.ok) {
        if (fuse_bias) {
          const void* bias = g.bias;
          TSU_BLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                        &bias, sizeof(bias)));
        }
        const float alpha = 1.f, beta = g.accumulate ? 1.f : 0.f;
        const cublasStatus_t st =
            cublasLtMatmul(lt_, plan.op, &alpha, g.A, plan.a, g.B, plan.b, &beta, g.C, plan.c,
                           g.C, plan.c, &plan.algo, workspace_, kWorkspaceBytes, stream_);
        if (st == CUBLAS_STATUS_SUCCESS) {
          if (g.bias && !fuse_bias) bias_add(ctx_, g.C, g.ct, g.bias, g.bias_t, g.n, g.m);
          return;
        }
        std::fprintf(stderr,
                     "tsumugi: cuBLASLt matmul %dx%dx%d failed (%s); using cublasGemmEx for "
                     "this shape\n",
                     g.m, g.n, g.k, cublasGetStatusString(st));
        plan.ok = false;
      }
    }
    gemm_ex(g);
  }

  void gemm_ex(const Gemm& g) {
    if (!blas_) {
      TSU_BLAS_CHECK(cublasCreate(&blas_));
      TSU_BLAS_CHECK(cublasSetStream(blas_, stream_));
      TSU_BLAS_CHECK(cublasSetWorkspace(blas_, workspace_, kWorkspaceBytes));
    }
    const float alpha = 1.f, beta = g.accumulate ? 1.f : 0.f;
    TSU_BLAS_CHECK(cublasGemmEx(blas_, g.ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                                g.tb ? CUBLAS_OP_T : CUBLAS_OP_N, g.m, g.n, g.k, &alpha, g.A,
                                CUDA_R_16BF, g.lda, g.B, CUDA_R_16BF, g.ldb, &beta, g.C,
                                cuda_type(g.ct), g.ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    if (g.bias) bias_add(ctx_, g.C, g.ct, g.bias, g.bias_t, g.n, g.m);
  }

  LtPlan& lt_plan(const Gemm& g, bool fuse_bias) {
    GemmKey key{};
    key.ta = g.ta;
    key.tb = g.tb;
    key.m = g.m;
    key.n = g.n;
    key.k = g.k;
    key.lda = g.lda;
    key.ldb = g.ldb;
    key.ldc = g.ldc;
    key.ct = static_cast<int>(g.ct);
    key.accumulate = g.accumulate;
    key.bias = fuse_bias;
    key.align_a = static_cast<int>(ptr_alignment(g.A));
    key.align_b = static_cast<int>(ptr_alignment(g.B));
    key.align_c = static_cast<int>(ptr_alignment(g.C));
    key.epi = static_cast<int>(g.epi);
    key.align_aux = g.aux ? static_cast<int>(ptr_alignment(g.aux)) : 0;
    auto it = plans_.find(key);
    if (it != plans_.end()) return it->second;
    LtPlan& p = plans_[key];
    const cublasOperation_t ta = g.ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t tb = g.tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    TSU_BLAS_CHECK(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    TSU_BLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
    TSU_BLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
    cublasLtEpilogue_t epi = fuse_bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    if (g.epi == Gemm::Epi::GeluAux)
      epi = fuse_bias ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_AUX;
    if (g.epi == Gemm::Epi::GeluGrad) epi = CUBLASLT_EPILOGUE_DGELU;
    if (g.epi == Gemm::Epi::BgradB) epi = CUBLASLT_EPILOGUE_BGRADB;
    TSU_BLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
    if (g.epi == Gemm::Epi::BgradB) {
      TSU_BLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g.aux,
                                                    sizeof(g.aux)));
    } else if (g.epi != Gemm::Epi::None) {
      // The heuristic judges alignment from the aux pointer; the call sets each one's own.
      const int64_t aux_ld = g.ldc;
      TSU_BLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER,
                                                    &g.aux, sizeof(g.aux)));
      TSU_BLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD,
                                                    &aux_ld, sizeof(aux_ld)));
    }
    if (fuse_bias) {
      // The bias type defaults to D's type, which fuse_bias guarantees.
      const void* bias = g.bias;
      TSU_BLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                                    sizeof(bias)));
    }
    // Layouts describe the matrices as stored (before op): op(A) is m x k.
    TSU_BLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, CUDA_R_16BF, g.ta ? g.k : g.m,
                                              g.ta ? g.m : g.k, g.lda));
    TSU_BLAS_CHECK(cublasLtMatrixLayoutCreate(&p.b, CUDA_R_16BF, g.tb ? g.n : g.k,
                                              g.tb ? g.k : g.n, g.ldb));
    TSU_BLAS_CHECK(cublasLtMatrixLayoutCreate(&p.c, cuda_type(g.ct), g.m, g.n, g.ldc));

    cublasLtMatmulPreference_t pref = nullptr;
    TSU_BLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    const uint64_t ws = kWorkspaceBytes;
    cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
    // Tell the heuristic how aligned the actual pointers are (views may be offset).
    const uint32_t aa = ptr_alignment(g.A), ab = ptr_alignment(g.B), ac = ptr_alignment(g.C);
    if (st == CUBLAS_STATUS_SUCCESS)
      st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                &aa, sizeof(aa));
    if (st == CUBLAS_STATUS_SUCCESS)
      st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                &ab, sizeof(ab));
    if (st == CUBLAS_STATUS_SUCCESS)
      st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                                &ac, sizeof(ac));
    if (st == CUBLAS_STATUS_SUCCESS)
      st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                                &ac, sizeof(ac));
    cublasLtMatmulHeuristicResult_t res{};
    int returned = 0;
    if (st == CUBLAS_STATUS_SUCCESS)
      st = cublasLtMatmulAlgoGetHeuristic(lt_, p.op, p.a, p.b, p.c, p.c, pref, 1, &res, &returned);
    cublasLtMatmulPreferenceDestroy(pref);
    p.ok = st == CUBLAS_STATUS_SUCCESS && returned > 0;
    if (p.ok) {
      p.algo = res.algo;
    } else {
      std::fprintf(stderr,
                   "tsumugi: no cuBLASLt algorithm for matmul m=%d n=%d k=%d%s%s (%s); %s\n", g.m,
                   g.n, g.k, g.epi == Gemm::Epi::None ? "" : " with a fused ", epilogue_name(g.epi),
                   cublasGetStatusString(st),
                   g.epi == Gemm::Epi::None ? "using cublasGemmEx" : "running it apart");
    }
    return p;
  }

  void init() {
    TSU_CUDA_CHECK(cudaSetDevice(device_));
    TSU_CUDA_CHECK(cudaGetDeviceProperties(&prop_, device_));
    TSU_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    ctx_.stream = stream_;
    ctx_.sm_count = prop_.multiProcessorCount;
    // TSUMUGI_CUDA_ATTENTION: unset or "fa2" (default), "fa2_q64" (FA2 with 64-query blocks in
    // the forward and dQ kernels, instead of 128 at head_dim <= 64), "wmma" (older tensor-core
    // kernels), "simple" (no tensor cores).
    const std::string attn = env("TSUMUGI_CUDA_ATTENTION");
    ctx_.simple_attention = attn == "simple";
    ctx_.wmma_attention = attn == "wmma";
    ctx_.fa2_q64 = attn == "fa2_q64";
    // TSUMUGI_CUDA_CE=two_pass: the cross-entropy kernel that reads each row twice from global
    // memory instead of keeping it in shared memory (the fallback for vocabularies too large).
    ctx_.ce_two_pass = std::string(env("TSUMUGI_CUDA_CE")) == "two_pass";
    // TSUMUGI_CUDA_LN=two_pass: LayerNorm's backward as separate column sums and row kernel (the
    // one-pass kernel takes C <= 1024).
    ctx_.ln_two_pass = std::string(env("TSUMUGI_CUDA_LN")) == "two_pass";
    force_gemm_ex_ = std::string(env("TSUMUGI_CUDA_MATMUL")) == "cublas";
    prof_ = std::string(env("TSUMUGI_CUDA_PROFILE")) == "1";
    bgrad_fusion_ = std::string(env("TSUMUGI_CUDA_BGRAD_FUSION")) == "1";
    const std::string fusion = env("TSUMUGI_CUDA_GELU_FUSION");
    if (!fusion.empty()) {
      if (fusion != "0" && fusion != "1" && fusion != "2")
        bad("init", "TSUMUGI_CUDA_GELU_FUSION must be 0, 1 or 2, not '" + fusion + "'");
      gelu_fusion_ = fusion[0] - '0';
    }
    TSU_BLAS_CHECK(cublasLtCreate(&lt_));
    TSU_CUDA_CHECK(cudaMalloc(&workspace_, kWorkspaceBytes));
    held(static_cast<int64_t>(kWorkspaceBytes));
    for (int i = 0; i < 2; ++i) {
      TSU_CUDA_CHECK(cudaMallocHost(&stage_[i], kStageBytes));
      TSU_CUDA_CHECK(cudaEventCreateWithFlags(&stage_event_[i], cudaEventDisableTiming));
    }
    TSU_CUDA_CHECK(cudaMalloc(&result_dev_, sizeof(double)));
    TSU_CUDA_CHECK(cudaMallocHost(&result_host_, sizeof(double)));
    // Run one kernel now: a binary without code for this GPU fails here, with a clear reason,
    // instead of in the middle of training.
    float one = 1.f;
    TSU_CUDA_CHECK(cudaMemcpyAsync(result_dev_, &one, sizeof(one), cudaMemcpyHostToDevice, stream_));
    try {
      convert(ctx_, result_dev_, DType::BF16, result_dev_, DType::F32, 1);
      TSU_CUDA_CHECK(cudaStreamSynchronize(stream_));
    } catch (const std::exception& e) {
      throw std::runtime_error(std::string("the CUDA kernels do not run on ") + prop_.name +
                               " (sm_" + std::to_string(prop_.major) +
                               std::to_string(prop_.minor) +
                               "); rebuild with CMAKE_CUDA_ARCHITECTURES including it: " + e.what());
    }
    attention_init(static_cast<int>(prop_.sharedMemPerBlockOptin));
    cross_entropy_init(static_cast<int>(prop_.sharedMemPerBlockOptin));
  }

  void release() noexcept {
    if (stream_) (void)cudaStreamSynchronize(stream_);
    if (prof_ && stream_) prof_report();
    prof_release();
    for (auto& kv : allocations_) (void)cudaFree(kv.first);
    allocations_.clear();
    for (auto& kv : plans_) {
      LtPlan& p = kv.second;
      if (p.a) cublasLtMatrixLayoutDestroy(p.a);
      if (p.b) cublasLtMatrixLayoutDestroy(p.b);
      if (p.c) cublasLtMatrixLayoutDestroy(p.c);
      if (p.op) cublasLtMatmulDescDestroy(p.op);
    }
    plans_.clear();
    if (blas_) cublasDestroy(blas_);
    blas_ = nullptr;
    if (lt_) cublasLtDestroy(lt_);
    lt_ = nullptr;
    if (scratch_) (void)cudaFree(scratch_);
    scratch_ = nullptr;
    if (workspace_) (void)cudaFree(workspace_);
    workspace_ = nullptr;
    for (int i = 0; i < 2; ++i) {
      if (stage_[i]) (void)cudaFreeHost(stage_[i]);
      stage_[i] = nullptr;
      if (stage_event_[i]) (void)cudaEventDestroy(stage_event_[i]);
      stage_event_[i] = nullptr;
    }
    if (adamw_table_) (void)cudaFree(adamw_table_);
    adamw_table_ = nullptr;
    if (result_dev_) (void)cudaFree(result_dev_);
    result_dev_ = nullptr;
    if (result_host_) (void)cudaFreeHost(result_host_);
    result_host_ = nullptr;
    if (stream_) (void)cudaStreamDestroy(stream_);
    stream_ = nullptr;
    (void)cudaGetLastError();
  }

  int device_;
  cudaDeviceProp prop_{};
  cudaStream_t stream_ = nullptr;
  Ctx ctx_;
  bool force_gemm_ex_ = false;
  int gelu_fusion_ = 0;  // TSUMUGI_CUDA_GELU_FUSION: 0 none, 1 forward, 2 forward and backward
  bool bgrad_fusion_ = false;  // TSUMUGI_CUDA_BGRAD_FUSION=1
  bool prof_ = false;  // TSUMUGI_CUDA_PROFILE=1
  int prof_depth_ = 0;
  ProfSpan prof_open_;
  std::vector<ProfSpan> prof_pending_;
  std::vector<cudaEvent_t> prof_free_;
  cudaEvent_t prof_prev_end_ = nullptr;  // the end of the last span folded in
  std::map<std::string, ProfTotal> prof_totals_;
  ProfTotal prof_short_gaps_, prof_long_gaps_;
  cublasLtHandle_t lt_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  void* workspace_ = nullptr;
  void* scratch_ = nullptr;
  std::size_t scratch_bytes_ = 0;
  void* stage_[2] = {nullptr, nullptr};
  cudaEvent_t stage_event_[2] = {nullptr, nullptr};
  int stage_next_ = 0;
  double* result_dev_ = nullptr;
  double* result_host_ = nullptr;
  AdamWChunk* adamw_table_ = nullptr;  // adamw_update_segments' chunks for adamw_segments_
  std::size_t adamw_table_bytes_ = 0, adamw_table_len_ = 0;
  std::vector<AdamWSegment> adamw_segments_;
  std::unordered_map<GemmKey, LtPlan, GemmKeyHash> plans_;
  std::unordered_map<void*, std::size_t> allocations_;  // buffer -> bytes
  uint64_t held_bytes_ = 0, peak_bytes_ = 0;  // through the cudaMalloc calls above
};

}  // namespace
}  // namespace TSU_CUDA_NS

#ifdef TSUMUGI_CUDA_EMULATION
#define TSU_CUDA_FACTORY make_emulated_cuda_backend
#else
#define TSU_CUDA_FACTORY make_cuda_backend
#endif

std::unique_ptr<Backend> TSU_CUDA_FACTORY(std::string* why) {
  auto say = [&](const std::string& s) {
    if (why) *why = s;
  };
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    say(std::string("no usable CUDA device (") + cudaGetErrorString(e) + ")");
    return nullptr;
  }
  if (n <= 0) {
    say("no CUDA device found");
    return nullptr;
  }
  // One GPU per rank: under mpirun/srun the rank's index on its node picks the device (modulo the
  // count, so oversubscribed nodes still start); TSUMUGI_CUDA_DEVICE overrides.
  int device = 0;
  for (const char* v : {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID"})
    if (const char* r = std::getenv(v); r && *r) {
      device = std::atoi(r) % n;
      break;
    }
  if (const char* d = std::getenv("TSUMUGI_CUDA_DEVICE"); d && *d) device = std::atoi(d);
  if (device < 0 || device >= n) {
    say("TSUMUGI_CUDA_DEVICE=" + std::to_string(device) + " but " + std::to_string(n) +
        " device(s) are present");
    return nullptr;
  }
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, device) != cudaSuccess) {
    (void)cudaGetLastError();
    say("cannot read the properties of CUDA device " + std::to_string(device));
    return nullptr;
  }
  if (prop.major < 8) {
    say(std::string(prop.name) + " has compute capability " + std::to_string(prop.major) + "." +
        std::to_string(prop.minor) + "; the CUDA backend needs 8.0 or newer (bf16)");
    return nullptr;
  }
  try {
    return std::make_unique<TSU_CUDA_NS::CudaBackend>(device);
  } catch (const std::exception& ex) {
    say(ex.what());
    return nullptr;
  }
}

}  // namespace tsumugi::backend
