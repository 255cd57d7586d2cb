// Shared by every CUDA kernel file: element types, load/store helpers, warp reductions and the
// launch macro. With TSUMUGI_CUDA_EMULATION the same sources compile as plain C++ against emu.h,
// which runs kernels on the CPU (one fiber per GPU thread) so their logic is tested without a GPU.
#pragma once

#ifdef TSUMUGI_CUDA_EMULATION
#include "backend/cuda/emu.h"
#else
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <mma.h>
#endif

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>

// The emulated build gets its own namespace so it can never be linked against (or mistaken for)
// the real kernels when both end up in one program.
#ifdef TSUMUGI_CUDA_EMULATION
#define TSU_CUDA_NS cuda_emu
#else
#define TSU_CUDA_NS cuda
#endif

namespace tsumugi::backend::TSU_CUDA_NS {

using bf16 = __nv_bfloat16;

// Storage type of a buffer, derived from its Kind (see dtype_of in kernels.h).
enum class DType { F32, BF16, I32 };

[[noreturn]] inline void throw_cuda(const char* what, const char* detail, const char* file,
                                    int line) {
  throw std::runtime_error(std::string("CUDA backend: ") + what + " failed: " + detail + " (" +
                           file + ":" + std::to_string(line) + ")");
}

#define TSU_CUDA_CHECK(call)                                                            \
  do {                                                                                  \
    cudaError_t tsu_err_ = (call);                                                      \
    if (tsu_err_ != cudaSuccess)                                                        \
      ::tsumugi::backend::TSU_CUDA_NS::throw_cuda(#call, cudaGetErrorString(tsu_err_), __FILE__, \
                                           __LINE__);                                   \
  } while (0)

// Kernels are launched through a function pointer so template kernels need no parentheses in
// the macro, and the emulator can take the same pointer.
#ifdef TSUMUGI_CUDA_EMULATION
#define TSU_LAUNCH(kernel_ptr, grid, block, smem, stream, ...) \
  ::emu::launch(kernel_ptr, dim3(grid), dim3(block), (smem), (stream), __VA_ARGS__)
#define TSU_DYNAMIC_SMEM(name) unsigned char* name = ::emu::dynamic_smem()
#else
#define TSU_LAUNCH(kernel_ptr, grid, block, smem, stream, ...)                   \
  do {                                                                           \
    (kernel_ptr)<<<(grid), (block), (smem), (stream)>>>(__VA_ARGS__);            \
    TSU_CUDA_CHECK(cudaGetLastError());                                          \
  } while (0)
#define TSU_DYNAMIC_SMEM(name) extern __shared__ __align__(128) unsigned char name[]
#endif

__device__ __forceinline__ float ld(const float* p) { return *p; }
__device__ __forceinline__ float ld(const bf16* p) { return __bfloat162float(*p); }
__device__ __forceinline__ void st(float* p, float v) { *p = v; }
__device__ __forceinline__ void st(bf16* p, float v) { *p = __float2bfloat16_rn(v); }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Grid size for grid-stride loops: enough blocks to fill the GPU, never more than the work.
inline unsigned grid_for(std::size_t n, unsigned threads, int sm_count) {
  std::size_t blocks = (n + threads - 1) / threads;
  std::size_t cap = static_cast<std::size_t>(sm_count > 0 ? sm_count : 1) * 32;
  if (blocks > cap) blocks = cap;
  if (blocks == 0) blocks = 1;
  return static_cast<unsigned>(blocks);
}

}  // namespace tsumugi::backend::TSU_CUDA_NS

namespace tsumugi::backend::TSU_CUDA_NS {

#define TSU_GRID_STRIDE(i, n)                                                          \
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; \
       i < (n); i += static_cast<std::size_t>(gridDim.x) * blockDim.x)

// Out-of-range token ids and targets become NaN so the bug shows in the loss, not as silent
// garbage.
__device__ __forceinline__ float quiet_nan() { return __int_as_float(0x7fc00000); }

inline std::size_t align_up(std::size_t n, std::size_t a) { return (n + a - 1) / a * a; }

constexpr float kLog2e = 1.4426950408889634f;  // exp(x) = exp2(x * kLog2e)

// 8 bf16 values as one 16-byte access: memory-bound kernels need wide loads to keep enough
// bytes in flight.
__device__ __forceinline__ void load8(const bf16* p, float* f) {
  const uint4 u = *reinterpret_cast<const uint4*>(p);
  const bf16* e = reinterpret_cast<const bf16*>(&u);
#pragma unroll
  for (int k = 0; k < 8; ++k) f[k] = __bfloat162float(e[k]);
}
__device__ __forceinline__ void store8(bf16* p, const float* f) {
  uint4 u;
  bf16* e = reinterpret_cast<bf16*>(&u);
#pragma unroll
  for (int k = 0; k < 8; ++k) e[k] = __float2bfloat16_rn(f[k]);
  *reinterpret_cast<uint4*>(p) = u;
}

// Whether n bf16 elements at each pointer can be processed as 16-byte vectors.
inline bool vec8_ok(std::size_t n, std::initializer_list<const void*> ptrs) {
  if (n % 8 != 0) return false;
  for (const void* p : ptrs)
    if (reinterpret_cast<std::uintptr_t>(p) % 16 != 0) return false;
  return true;
}

// Runs f(T{}) with T the C++ type of a floating-point storage type.
template <class F>
void with_float_type(DType d, F&& f) {
  if (d == DType::BF16)
    f(bf16{});
  else if (d == DType::F32)
    f(float{});
  else
    throw std::runtime_error("CUDA backend: expected a floating-point (bf16/fp32) buffer");
}

}  // namespace tsumugi::backend::TSU_CUDA_NS
