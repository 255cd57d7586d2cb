// Warp-level tensor-core primitives for sm_80+: mma.sync m16n8k16 (bf16 in, fp32 accumulate),
// ldmatrix and cp.async. With TSUMUGI_CUDA_EMULATION they map onto emu.h's models of the same
// PTX instructions, so kernels written against these run on the CPU in tests.
#pragma once

#include <cstdint>

#include "backend/cuda/common.cuh"

namespace tsumugi::backend::TSU_CUDA_NS {

// d (16x8 fp32 fragment) += a (16x16 bf16, row) * b (16x8 bf16, col); fragment layouts as in
// the PTX ISA ("Matrix Fragments for mma.m16n8k16").
__device__ __forceinline__ void mma_bf16_16816(float* d, const uint32_t* a, uint32_t b0,
                                               uint32_t b1) {
#ifdef TSUMUGI_CUDA_EMULATION
  const uint32_t b[2] = {b0, b1};
  emu::mma_m16n8k16_bf16(d, a, b, d);
#else
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

// Four 8x8 bf16 matrices; lanes 8j..8j+7 give the row addresses of matrix j.
__device__ __forceinline__ void ldsm_x4(uint32_t* r, const bf16* row) {
#ifdef TSUMUGI_CUDA_EMULATION
  emu::ldmatrix<4, false>(r, row);
#else
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
#endif
}
__device__ __forceinline__ void ldsm_x4_trans(uint32_t* r, const bf16* row) {
#ifdef TSUMUGI_CUDA_EMULATION
  emu::ldmatrix<4, true>(r, row);
#else
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
#endif
}

// 16 bytes global -> shared without passing through registers; fill = false writes zeros
// (src must still be a valid address).
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool fill) {
#ifdef TSUMUGI_CUDA_EMULATION
  emu::cp_async16(dst, src, fill);
#else
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(addr), "l"(src),
               "r"(fill ? 16 : 0));
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#ifdef TSUMUGI_CUDA_EMULATION
  emu::cp_async_commit();
#else
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}
// Waits until at most N of this thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
#ifdef TSUMUGI_CUDA_EMULATION
  emu::cp_async_wait(N);
#else
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#endif
}

// Two floats as a bf16 pair (lo in the low half), the operand format of mma's A/B registers.
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
#ifdef TSUMUGI_CUDA_EMULATION
  return static_cast<uint32_t>(__float2bfloat16_rn(lo).x) |
         (static_cast<uint32_t>(__float2bfloat16_rn(hi).x) << 16);
#else
  const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
#endif
}

}  // namespace tsumugi::backend::TSU_CUDA_NS
