// Host-side entry points of the CUDA kernels, one group per .cu file. The backend class
// (cuda_backend.cu) checks buffer kinds and sizes, then calls these; each launches on ctx.stream
// and returns without synchronizing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/common.cuh"

// The NCCL device communicator (nccl_comm.cu) is built with the real NCCL when CMake found it
// (TSUMUGI_HAVE_NCCL), and in the emulator over MPI (nccl_emu.h) when MPI is there.
#if defined(TSUMUGI_CUDA_EMULATION) && defined(TSUMUGI_HAVE_MPI)
#define TSU_NCCL 1
#elif !defined(TSUMUGI_CUDA_EMULATION) && defined(TSUMUGI_HAVE_NCCL)
#define TSU_NCCL 1
#endif

namespace tsumugi::backend::TSU_CUDA_NS {

// Storage type of each buffer kind: bf16 compute copies, activations and gradients; fp32 master
// weights, optimizer state and statistics.
inline DType dtype_of(Kind k) {
  switch (k) {
    case Kind::Param:
    case Kind::Grad:
    case Kind::Activation:
      return DType::BF16;
    case Kind::Master:
    case Kind::OptState:
    case Kind::Float32:
      return DType::F32;
    case Kind::Int32:
      return DType::I32;
  }
  return DType::F32;
}
inline std::size_t dtype_size(DType d) { return d == DType::BF16 ? 2 : 4; }

#ifdef TSU_NCCL
// ---- nccl_comm.cu: one NCCL communicator over the job's ranks, its collectives on `stream`
// (the backend's). Bootstraps by broadcasting rank 0's ncclUniqueId through `boot`.
std::unique_ptr<DeviceComm> make_nccl_comm(cudaStream_t stream, const CommBootstrap& boot);
#endif

struct Ctx {
  cudaStream_t stream = nullptr;
  int sm_count = 1;
  bool simple_attention = false;  // force the plain (no tensor core) attention kernels
  bool wmma_attention = false;    // the older WMMA tensor-core kernels instead of the FA2 ones
  bool fa2_q64 = false;           // FA2 forward and dQ with 64-query blocks at every head_dim
  bool ce_two_pass = false;       // cross-entropy without the row in shared memory
  bool ln_two_pass = false;       // LayerNorm backward as column sums, then the row kernel
};

// ---- elementwise.cu
void convert(const Ctx& c, void* dst, DType dt, const void* src, DType st, std::size_t n);
void add(const Ctx& c, void* out, DType ot, const void* a, DType at, const void* b, DType bt,
         std::size_t n);
void accumulate(const Ctx& c, void* dst, DType dt, const void* src, DType st, std::size_t n);
void gelu_forward(const Ctx& c, void* out, DType ot, const void* inp, DType it, std::size_t n);
void gelu_backward(const Ctx& c, void* dinp, DType dt, const void* inp, DType it,
                   const void* dout, DType gt, std::size_t n);
void swiglu_forward(const Ctx& c, void* out, DType ot, const void* inp, DType it, int N, int F);
void swiglu_backward(const Ctx& c, void* dinp, DType dt, const void* inp, DType it,
                     const void* dout, DType gt, int N, int F);
// inverse=false rotates (forward), inverse=true applies the transpose rotation (backward).
void rope(const Ctx& c, void* out, DType ot, const void* in, DType it, int B, int T, int H,
          int KV, int hd, float theta, bool inverse);
void embedding_forward(const Ctx& c, bf16* out, const int* tokens, const bf16* wte,
                       const bf16* wpe, int B, int T, int C, int V);
std::size_t embedding_backward_scratch_bytes(int N);
// dwte[tokens[n]] += dout[n], summed per token in fp32 in row order (deterministic).
void embedding_backward_dwte(const Ctx& c, bf16* dwte, const bf16* dout, const int* tokens, int N,
                             int C, int V, void* scratch);
void embedding_backward_dwpe(const Ctx& c, bf16* dwpe, const bf16* dout, int B, int T, int C);
void bias_add(const Ctx& c, void* out, DType ot, const void* bias, DType bt, int N, int OC);
// Column sums over N rows of [N,C] (deterministic, fp32):
//   dst1[c] += sum_n dout[n,c] * xhat[n,c], xhat = (inp - mean) * rstd (mean may be null: inp*rstd)
//   dst2[c] += sum_n dout[n,c]
// dst1 or dst2 may be null; inp/mean/rstd are only read when dst1 is set.
std::size_t column_reduce_scratch_bytes(int N, int C, int sm_count);
void column_reduce(const Ctx& c, const bf16* dout, const bf16* inp, const float* mean,
                   const float* rstd, void* dst1, DType d1t, void* dst2, DType d2t, int N, int C,
                   void* scratch);

// out[n,c] = inp[n,c] * keep_scale when dropout_uniform(seed, first_row + n, C, c) >= p (or
// p <= 0), else 0 (Backend::dropout_scale; out may alias inp).
void dropout_scale(const Ctx& c, void* out, DType ot, const void* inp, DType it, int N, int C,
                   float p, uint64_t seed, uint64_t first_row, float keep_scale);
// dst[n*dst_stride + col] (+)= src[n*src_stride + col] for n < N, col < C.
void copy_strided(const Ctx& c, void* dst, DType dt, int dst_stride, const void* src, DType st,
                  int src_stride, int N, int C, bool accumulate);

// ---- norm.cu (mean/rstd may be null in forward: not stored)
void layernorm_forward(const Ctx& c, bf16* out, float* mean, float* rstd, const bf16* inp,
                       const bf16* weight, const bf16* bias, int N, int C, float eps);
// sum = a + b and out = LayerNorm(sum) in one pass; false (nothing launched) when the shape or
// alignment does not suit the kernel (C > 1024, C % 8 != 0) or TSUMUGI_CUDA_LN=two_pass.
bool add_layernorm_forward(const Ctx& c, bf16* sum, bf16* out, float* mean, float* rstd,
                           const bf16* a, const bf16* b, const bf16* weight, const bf16* bias, int N,
                           int C, float eps);
std::size_t norm_backward_scratch_bytes(int N, int C, int sm_count);
void layernorm_backward(const Ctx& c, bf16* dinp, bf16* dweight, bf16* dbias, const bf16* dout,
                        const bf16* inp, const bf16* weight, const float* mean, const float* rstd,
                        int N, int C, void* scratch);
void rmsnorm_forward(const Ctx& c, bf16* out, float* rstd, const bf16* inp, const bf16* weight,
                     int N, int C, float eps);
void rmsnorm_backward(const Ctx& c, bf16* dinp, bf16* dweight, const bf16* dout, const bf16* inp,
                      const bf16* weight, const float* rstd, int N, int C, void* scratch);

// ---- attention.cu
struct AttnDims {
  int B, T, H, KV, hd;
};
// Whether the tensor-core kernels take this shape and these pointers (else the plain ones run).
bool attention_uses_tensor_cores(const Ctx& c, const AttnDims& d, const void* const* ptrs,
                                 int nptrs);
// Raises the dynamic shared memory limit of the tensor-core kernels once per device.
void attention_init(int max_smem_optin);
void attention_forward(const Ctx& c, bf16* out, float* lse, const bf16* qkv, const AttnDims& d);
std::size_t attention_backward_scratch_bytes(const AttnDims& d);
void attention_backward(const Ctx& c, bf16* dqkv, const bf16* dout, const bf16* qkv,
                        const bf16* out, const float* lse, const AttnDims& d, void* scratch);

// ---- loss_optim.cu
// Raises the shared-memory limit of the kernel that keeps a row of logits in shared memory
// (rows up to about max_smem_optin / 2 entries; larger vocabularies use the two-pass kernel).
void cross_entropy_init(int max_smem_optin);
void cross_entropy(const Ctx& c, float* losses, bf16* logits, const int* targets, int N, int V,
                   float dloss);
// torch.optim.AdamW's operation order (as the CPU backend): w *= decay;
// w -= step_size * m / (sqrt(v) / bc2_sqrt + eps).
struct AdamWArgs {
  float beta1, beta2, eps, grad_scale;
  float step_size;  // lr / (1 - beta1^step)
  float bc2_sqrt;   // sqrt(1 - beta2^step)
  float decay;      // 1 - lr * weight_decay
};
void adamw(const Ctx& c, float* master, void* param, DType pt, const void* grad, DType gt,
           float* m, float* v, std::size_t n, const AdamWArgs& a);
// adamw on many tensors in one launch: a table of chunks (one block each), every chunk inside
// one tensor and carrying the index of that tensor's decay factor (1 - lr * weight_decay).
constexpr std::size_t kAdamWChunk = 16384;
constexpr int kAdamWMaxDecays = 4;
struct AdamWChunk {
  uint64_t start;
  uint32_t len;
  uint32_t decay_index;
};
struct AdamWDecays {
  float v[kAdamWMaxDecays];
};
// The table for these segments; decays lists the distinct weight decays (at most
// kAdamWMaxDecays), and a chunk's decay_index points into it.
std::vector<AdamWChunk> adamw_chunk_table(const std::vector<AdamWSegment>& segments,
                                          const std::vector<float>& decays);
void adamw_chunks(const Ctx& c, const AdamWChunk* table, std::size_t nchunks, float* master,
                  void* param, DType pt, const void* grad, DType gt, float* m, float* v,
                  const AdamWArgs& a, const AdamWDecays& decays);
std::size_t reduce_scratch_bytes();
// Writes sum(x) or sum(x^2) (fp64 accumulation) to *result_dev (device memory).
void reduce_sum(const Ctx& c, const void* x, DType xt, std::size_t n, bool squares,
                double* result_dev, void* scratch);

}  // namespace tsumugi::backend::TSU_CUDA_NS
