// A CPU emulation of the small part of CUDA, cuBLASLt, cuBLAS, WMMA and CUB that the CUDA
// backend uses. Built only into the test `tsumugi_cuda_emu_tests` (TSUMUGI_CUDA_EMULATION), it
// runs the backend's real kernel code on machines without a GPU:
//  * every GPU thread of a block is a fiber with its own stack (see switch_fiber); __syncthreads,
//    __syncwarp and shuffles switch fibers, so barrier-dependent code runs with CUDA's
//    semantics. A barrier that not every thread reaches (divergent sync, sync after some threads
//    returned) aborts with a message, as do launch configurations a real GPU rejects (block
//    size, grid limits, dynamic shared memory above 48 KiB without cudaFuncSetAttribute, or
//    above the A100's 163 KiB).
//  * WMMA fragments hold the whole 16x16 tile in every lane; loads check the 32-byte pointer
//    and ldm alignment rules. Each lane computes the full product (redundant, but exact). Loads
//    and stores are warp barriers (all lanes read before any lane writes), as the collective
//    *_sync operations behave on hardware, where each lane moves only its own elements.
//  * mma.sync (m16n8k16 bf16), ldmatrix and cp.async follow the PTX ISA's per-lane fragment
//    layouts exactly (a wrong lane mapping gives wrong numbers, not just slow ones); each is a
//    warp barrier. cp.async copies land only when cp.async.wait_group retires their group, so a
//    read before the wait sees stale shared memory.
//  * device memory is host memory with guard bytes after each allocation; a kernel that writes
//    past the end of a buffer is reported after its launch.
//  * cuBLASLt / cublasGemmEx compute column-major GEMMs by definition, with bias epilogue.
// Fiber order between barriers follows TSU_EMU_ORDER (forward, reverse, shuffle, or warps: each
// warp as far as it gets before the next) so tests can shake out missing barriers.
#pragma once

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

// ---- qualifiers and built-in types -----------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) alignas(n)

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 {
  unsigned x = 0, y = 0, z = 0;
};
struct alignas(16) uint4 {
  unsigned x, y, z, w;
};
inline uint4 make_uint4(unsigned a, unsigned b, unsigned c, unsigned d) { return uint4{a, b, c, d}; }

inline uint3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline float __int_as_float(int i) {
  float f;
  std::memcpy(&f, &i, 4);
  return f;
}

struct __nv_bfloat16 {
  uint16_t x;
};
inline float __bfloat162float(__nv_bfloat16 h) {
  const uint32_t u = static_cast<uint32_t>(h.x) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return __nv_bfloat16{static_cast<uint16_t>((u >> 16) | 0x40u)};
  u += 0x7fffu + ((u >> 16) & 1u);
  return __nv_bfloat16{static_cast<uint16_t>(u >> 16)};
}

namespace emu {

[[noreturn]] inline void fatal(const std::string& msg) {
  std::fprintf(stderr, "CUDA emulator: %s\n", msg.c_str());
  std::fflush(stderr);
  std::abort();
}

// ---- fibers ------------------------------------------------------------------------------------
enum State { kRunnable, kWaitBlock, kWaitWarp, kDone };

// Switching fibers. glibc's swapcontext saves and restores the signal mask with a system call on
// every switch, which made it ~85% of an emulated training step (every barrier and shuffle is a
// switch per thread). On x86-64 a switch is instead a few instructions: push the callee-saved
// registers and the SSE/x87 control words, swap stack pointers, pop. Elsewhere, ucontext.
// (A fiber starts by "returning" into fiber_start, which a CET shadow stack would refuse; glibc
// enables those only on request, and this header is built into the emulator tests alone.)
#if defined(__x86_64__)
// tsu_emu_swap(&save_sp, load_sp): defined once per translation unit that includes this header,
// weak so the linker keeps one.
asm(R"(
  .pushsection .text
  .weak tsu_emu_swap
  .hidden tsu_emu_swap
  .type tsu_emu_swap, @function
tsu_emu_swap:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size tsu_emu_swap, .-tsu_emu_swap
  .popsection
)");
extern "C" void tsu_emu_swap(void** save_sp, void* load_sp);
using FiberContext = void*;  // the saved stack pointer
#else
using FiberContext = ucontext_t;
#endif

struct Runtime {
  std::vector<FiberContext> ctx;
  std::vector<State> state;
  std::vector<char*> stacks;
  std::size_t stack_size = 512 * 1024;
  FiberContext main_ctx;
  int current = -1;
  int nthreads = 0;
  std::vector<unsigned char> shfl;
  std::vector<unsigned char> xchg;  // per-thread 64-byte slots for warp-wide exchanges
  // cp.async state per thread: copies issued since the last commit, then committed groups
  // (oldest first). A copy lands only when a wait retires its group.
  struct AsyncCopy {
    void* dst;
    const void* src;
    bool fill;  // false: zero-fill (src-size 0)
  };
  std::vector<std::vector<AsyncCopy>> cp_open;
  std::vector<std::vector<std::vector<AsyncCopy>>> cp_groups;
  std::function<void()> body;
  unsigned char* smem = nullptr;
  std::size_t smem_cap = 0;
  std::map<const void*, int> smem_attr;
  std::string kernel;
  int order = 0;  // 0 forward, 1 reverse, 2 shuffle, 3 warps (one warp at a time)
  std::mt19937 rng{12345};
  Runtime() {
    const char* o = std::getenv("TSU_EMU_ORDER");
    if (o && std::string(o) == "reverse") order = 1;
    if (o && std::string(o) == "shuffle") order = 2;
    if (o && std::string(o) == "warps") order = 3;
  }
};
inline Runtime& rt() {
  static Runtime r;
  return r;
}

inline void set_thread_index(int t) {
  threadIdx.x = t % blockDim.x;
  threadIdx.y = (t / blockDim.x) % blockDim.y;
  threadIdx.z = t / (blockDim.x * blockDim.y);
}

inline void switch_fiber(FiberContext& save, FiberContext& load) {
#if defined(__x86_64__)
  tsu_emu_swap(&save, load);
#else
  swapcontext(&save, &load);
#endif
}

inline void block_until(State s) {
  Runtime& r = rt();
  const int me = r.current;
  r.state[me] = s;
  switch_fiber(r.ctx[me], r.main_ctx);
}

// A fiber's first function; it never returns (the block loop does not resume a finished fiber).
inline void fiber_entry(int idx) {
  Runtime& r = rt();
  r.body();
  r.state[idx] = kDone;
  switch_fiber(r.ctx[idx], r.main_ctx);
}
inline void fiber_start() { fiber_entry(rt().current); }

// Makes fiber i start in fiber_entry(i) on its own stack at the next switch to it.
inline void init_fiber(int i) {
  Runtime& r = rt();
#if defined(__x86_64__)
  // The frame tsu_emu_swap pops: control words, r15..rbp (zero), then fiber_start as the return
  // address. Above it a zero "return address" of fiber_start itself, which leaves rsp at
  // 8 mod 16 on entry, as after a call.
  auto* top = reinterpret_cast<uint64_t*>(
      (reinterpret_cast<std::uintptr_t>(r.stacks[i]) + r.stack_size) & ~std::uintptr_t{15});
  uint64_t* sp = top - 9;
  uint32_t mxcsr = 0;
  uint16_t fcw = 0;
  asm volatile("stmxcsr %0\n\tfnstcw %1" : "=m"(mxcsr), "=m"(fcw));
  sp[0] = mxcsr | (uint64_t{fcw} << 32);
  for (int k = 1; k <= 6; ++k) sp[k] = 0;
  sp[7] = reinterpret_cast<uint64_t>(&fiber_start);
  sp[8] = 0;
  r.ctx[i] = sp;
#else
  getcontext(&r.ctx[i]);
  r.ctx[i].uc_stack.ss_sp = r.stacks[i];
  r.ctx[i].uc_stack.ss_size = r.stack_size;
  r.ctx[i].uc_link = nullptr;
  makecontext(&r.ctx[i], reinterpret_cast<void (*)()>(&fiber_entry), 1, i);
#endif
}

inline void run_block() {
  Runtime& r = rt();
  const int n = r.nthreads;
  if (static_cast<int>(r.stacks.size()) < n) {
    while (static_cast<int>(r.stacks.size()) < n)
      r.stacks.push_back(static_cast<char*>(std::malloc(r.stack_size)));
  }
  r.ctx.assign(n, FiberContext{});
  r.state.assign(n, kRunnable);
  r.shfl.assign(static_cast<std::size_t>(n) * 8, 0);
  r.xchg.assign(static_cast<std::size_t>(n) * 64, 0);
  r.cp_open.assign(n, {});
  r.cp_groups.assign(n, {});
  for (int i = 0; i < n; ++i) init_fiber(i);
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  if (r.order == 1) std::reverse(order.begin(), order.end());
  auto run = [&](int i) {
    r.current = i;
    set_thread_index(i);
    switch_fiber(r.main_ctx, r.ctx[i]);
  };
  // Lets warp w past its warp barrier once every lane waits there; false if none waits.
  auto release_warp = [&](int w) {
    int waiting = 0, lanes = 0;
    for (int i = w * 32; i < std::min(n, w * 32 + 32); ++i, ++lanes) waiting += r.state[i] == kWaitWarp;
    if (waiting == 0) return false;
    if (waiting != lanes)
      fatal(r.kernel + ": warp " + std::to_string(w) + " reached __syncwarp/shuffle with only " +
            std::to_string(waiting) + " of " + std::to_string(lanes) + " lanes");
    for (int i = w * 32; i < std::min(n, w * 32 + 32); ++i) r.state[i] = kRunnable;
    return true;
  };
  for (;;) {
    if (r.order == 3) {
      // One warp at a time, as far as it gets before a block barrier: the most any warp can run
      // ahead of the others on a GPU. A warp that reuses shared memory other warps have yet to
      // read (a missing trailing __syncthreads) is seen only here; in the other orders every
      // thread runs to its next warp barrier before any warp passes one.
      for (int w = 0; w * 32 < n; ++w) {
        do {
          for (int i = w * 32; i < std::min(n, w * 32 + 32); ++i)
            if (r.state[i] == kRunnable) run(i);
        } while (release_warp(w));
      }
    } else {
      if (r.order == 2) std::shuffle(order.begin(), order.end(), r.rng);
      for (int i : order)
        if (r.state[i] == kRunnable) run(i);
    }
    r.current = -1;
    int done = 0;
    for (int i = 0; i < n; ++i) done += r.state[i] == kDone;
    if (done == n) return;
    bool released = false;
    for (int w = 0; w * 32 < n; ++w) released |= release_warp(w);
    if (released) continue;
    int at_block = 0;
    for (int i = 0; i < n; ++i) at_block += r.state[i] == kWaitBlock;
    if (at_block > 0 && done > 0)
      fatal(r.kernel + ": __syncthreads reached after " + std::to_string(done) +
            " threads returned");
    if (at_block + done != n) fatal(r.kernel + ": deadlock");
    for (int i = 0; i < n; ++i)
      if (r.state[i] == kWaitBlock) r.state[i] = kRunnable;
  }
}

inline unsigned char* dynamic_smem() { return rt().smem; }

// ---- device memory with guards -------------------------------------------------------------
constexpr std::size_t kGuard = 256;
constexpr unsigned char kGuardByte = 0xA5;
struct Allocation {
  std::size_t bytes;
};
inline std::map<char*, Allocation>& allocations() {
  static std::map<char*, Allocation> a;
  return a;
}
inline void check_guards(const std::string& after) {
  for (auto& [p, a] : allocations()) {
    for (std::size_t i = 0; i < kGuard; ++i)
      if (static_cast<unsigned char>(p[a.bytes + i]) != kGuardByte)
        fatal("write past the end of a " + std::to_string(a.bytes) + "-byte buffer, found after " +
              after);
  }
}

}  // namespace emu

inline void __syncthreads() { emu::block_until(emu::kWaitBlock); }
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  if (mask != 0xffffffffu) emu::fatal("partial __syncwarp masks are not emulated");
  emu::block_until(emu::kWaitWarp);
}
template <class T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask) {
  static_assert(sizeof(T) <= 8, "shuffle of a wide type");
  if (mask != 0xffffffffu) emu::fatal("partial shuffle masks are not emulated");
  emu::Runtime& r = emu::rt();
  const int t = r.current;
  std::memcpy(&r.shfl[static_cast<std::size_t>(t) * 8], &v, sizeof(T));
  __syncwarp();
  const int src = (t & ~31) | ((t & 31) ^ lane_mask);
  T out;
  std::memcpy(&out, &r.shfl[static_cast<std::size_t>(src) * 8], sizeof(T));
  __syncwarp();  // nobody overwrites its slot before everyone has read
  return out;
}

// ---- warp-level matrix instructions and cp.async (PTX ISA, sm_80+) --------------------------
namespace emu {
// Every lane of the calling warp contributes `bytes` (<= 64); out receives lane i's bytes at
// out + i * bytes. A warp barrier on both sides, like the collective instructions it models.
inline void warp_gather(const void* mine, std::size_t bytes, unsigned char* out) {
  Runtime& r = rt();
  const int t = r.current;
  std::memcpy(&r.xchg[static_cast<std::size_t>(t) * 64], mine, bytes);
  __syncwarp();
  const int base = t & ~31;
  for (int i = 0; i < 32; ++i)
    std::memcpy(out + i * bytes, &r.xchg[static_cast<std::size_t>(base + i) * 64], bytes);
  __syncwarp();
}
inline float bf16_lo(uint32_t v) { return __bfloat162float(__nv_bfloat16{static_cast<uint16_t>(v & 0xffffu)}); }
inline float bf16_hi(uint32_t v) { return __bfloat162float(__nv_bfloat16{static_cast<uint16_t>(v >> 16)}); }

// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32: D = A (16x16) B (16x8) + C. With
// g = lane / 4 and t = lane % 4 (PTX ISA, "Matrix Fragments for mma.m16n8k16"):
//   a0: A[g][2t, 2t+1]  a1: A[g+8][2t, 2t+1]  a2: A[g][2t+8, 2t+9]  a3: A[g+8][2t+8, 2t+9]
//   b0: B[2t, 2t+1][g]  b1: B[2t+8, 2t+9][g]
//   c0, c1: C[g][2t, 2t+1]  c2, c3: C[g+8][2t, 2t+1]
// each 32-bit register holding its lower-indexed bf16 in the low half.
inline void mma_m16n8k16_bf16(float* d, const uint32_t* a, const uint32_t* b, const float* c) {
  struct Lane {
    uint32_t a[4], b[2];
  } me, all[32];
  std::memcpy(me.a, a, 16);
  std::memcpy(me.b, b, 8);
  const float acc[4] = {c[0], c[1], c[2], c[3]};  // d may be c
  warp_gather(&me, sizeof(Lane), reinterpret_cast<unsigned char*>(all));
  // This lane's outputs are D[g][2t..2t+1] and D[g+8][2t..2t+1] (its own C elements), so it
  // needs only A's rows g and g+8, held by lanes 4g..4g+3, and B's columns 2t and 2t+1, held by
  // lanes 8t..8t+7 (lane l holds A row l/4 and B column l/4, at k = 2(l%4), +1, +8, +9).
  const int lane = rt().current & 31, g = lane >> 2, t = lane & 3;
  float A[2][16], B[2][16];
  for (int q = 0; q < 4; ++q) {
    const Lane& x = all[4 * g + q];
    A[0][2 * q] = bf16_lo(x.a[0]), A[0][2 * q + 1] = bf16_hi(x.a[0]);
    A[1][2 * q] = bf16_lo(x.a[1]), A[1][2 * q + 1] = bf16_hi(x.a[1]);
    A[0][2 * q + 8] = bf16_lo(x.a[2]), A[0][2 * q + 9] = bf16_hi(x.a[2]);
    A[1][2 * q + 8] = bf16_lo(x.a[3]), A[1][2 * q + 9] = bf16_hi(x.a[3]);
    for (int col = 0; col < 2; ++col) {
      const Lane& y = all[4 * (2 * t + col) + q];
      B[col][2 * q] = bf16_lo(y.b[0]), B[col][2 * q + 1] = bf16_hi(y.b[0]);
      B[col][2 * q + 8] = bf16_lo(y.b[1]), B[col][2 * q + 9] = bf16_hi(y.b[1]);
    }
  }
  for (int e = 0; e < 4; ++e) {
    const float* arow = A[e >> 1];
    const float* bcol = B[e & 1];
    float s = acc[e];
    for (int k = 0; k < 16; ++k) s += arow[k] * bcol[k];
    d[e] = s;
  }
}

// ldmatrix.sync.aligned.m8n8.xN{.trans}.shared.b16: lanes 8j..8j+7 give the 16-byte-aligned row
// addresses of 8x8 matrix j (j < N). Register j of lane l receives matrix j's row l/4, columns
// 2(l%4) and 2(l%4)+1; with .trans, column l/4, rows 2(l%4) and 2(l%4)+1.
template <int N, bool Trans>
void ldmatrix(uint32_t* regs, const void* row) {
  static_assert(N == 1 || N == 2 || N == 4, "ldmatrix .x1/.x2/.x4");
  if (reinterpret_cast<std::uintptr_t>(row) % 16 != 0 && (rt().current & 31) < 8 * N)
    fatal(rt().kernel + ": ldmatrix row address not 16-byte aligned");
  const void* rows[32];
  warp_gather(&row, sizeof(row), reinterpret_cast<unsigned char*>(rows));
  const int lane = rt().current & 31, g = lane >> 2, t = lane & 3;
  for (int j = 0; j < N; ++j) {
    const uint16_t* m[8];
    for (int i = 0; i < 8; ++i) m[i] = static_cast<const uint16_t*>(rows[8 * j + i]);
    const uint16_t lo = Trans ? m[2 * t][g] : m[g][2 * t];
    const uint16_t hi = Trans ? m[2 * t + 1][g] : m[g][2 * t + 1];
    regs[j] = static_cast<uint32_t>(lo) | (static_cast<uint32_t>(hi) << 16);
  }
  __syncwarp();  // as a collective, no lane runs ahead and writes before all have read
}

// cp.async.cg.shared.global [dst], [src], 16, src-size (16 or 0: zero-fill). The copy happens
// only when cp.async.wait_group retires its group, so reading the destination too early sees
// the old contents, as it may on hardware.
inline void cp_async16(void* dst, const void* src, bool fill) {
  if (reinterpret_cast<std::uintptr_t>(dst) % 16 || reinterpret_cast<std::uintptr_t>(src) % 16)
    fatal(rt().kernel + ": cp.async 16-byte copy not 16-byte aligned");
  rt().cp_open[rt().current].push_back({dst, src, fill});
}
// cp.async.commit_group: the copies issued since the last commit become one group.
inline void cp_async_commit() {
  Runtime& r = rt();
  r.cp_groups[r.current].push_back(std::move(r.cp_open[r.current]));
  r.cp_open[r.current].clear();
}
// cp.async.wait_group n: waits until at most n of this thread's committed groups are pending.
inline void cp_async_wait(int n) {
  Runtime& r = rt();
  auto& groups = r.cp_groups[r.current];
  while (static_cast<int>(groups.size()) > n) {
    for (const auto& c : groups.front()) {
      if (c.fill)
        std::memcpy(c.dst, c.src, 16);
      else
        std::memset(c.dst, 0, 16);
    }
    groups.erase(groups.begin());
  }
}
}  // namespace emu

// ---- runtime API ---------------------------------------------------------------------------
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorNotReady = 600
};
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4
};
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
constexpr unsigned cudaStreamNonBlocking = 1;
constexpr unsigned cudaEventDefault = 0;
constexpr unsigned cudaEventDisableTiming = 2;
struct CUstream_st {};
// Kernels run to completion when launched here, so an event is the host time it was recorded at.
struct CUevent_st {
  std::chrono::steady_clock::time_point at{};
};
using cudaStream_t = CUstream_st*;
using cudaEvent_t = CUevent_st*;
struct cudaDeviceProp {
  char name[256];
  int major, minor, multiProcessorCount;
  std::size_t sharedMemPerBlockOptin, totalGlobalMem;
};

inline const char* cudaGetErrorString(cudaError_t e) {
  return e == cudaSuccess ? "no error" : "emulated CUDA error";
}
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline cudaError_t cudaGetDeviceCount(int* n) {
  *n = 1;
  return cudaSuccess;
}
inline cudaError_t cudaSetDevice(int) { return cudaSuccess; }
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int) {
  std::memset(p, 0, sizeof(*p));
  std::snprintf(p->name, sizeof(p->name), "CPU emulation");
  p->major = 9;
  p->minor = 0;
  p->multiProcessorCount = 3;  // few, so chunked reductions use several chunks on small tests
  p->sharedMemPerBlockOptin = 166912;  // the A100's limit, the smallest of the targets
  p->totalGlobalMem = std::size_t{1} << 34;
  return cudaSuccess;
}
inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) {
  *s = new CUstream_st;
  return cudaSuccess;
}
inline cudaError_t cudaStreamDestroy(cudaStream_t s) {
  delete s;
  return cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
// Work runs at launch, so a stream is always idle.
inline cudaError_t cudaStreamQuery(cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
inline cudaError_t cudaMalloc(void** p, std::size_t bytes) {
  const std::size_t total = (bytes + emu::kGuard + 255) / 256 * 256;
  char* m = static_cast<char*>(std::aligned_alloc(256, total));
  if (!m) return cudaErrorMemoryAllocation;
  std::memset(m, 0xCD, bytes);  // uninitialised device memory is not zero
  std::memset(m + bytes, emu::kGuardByte, emu::kGuard);
  emu::allocations()[m] = emu::Allocation{bytes};
  *p = m;
  return cudaSuccess;
}
template <class T>
cudaError_t cudaMalloc(T** p, std::size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(p), bytes);
}
inline cudaError_t cudaFree(void* p) {
  if (!p) return cudaSuccess;
  auto it = emu::allocations().find(static_cast<char*>(p));
  if (it == emu::allocations().end()) emu::fatal("cudaFree of a pointer that cudaMalloc did not return");
  emu::check_guards("cudaFree");
  emu::allocations().erase(it);
  std::free(p);
  return cudaSuccess;
}
inline cudaError_t cudaMallocHost(void** p, std::size_t bytes) {
  *p = std::malloc(bytes);
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
template <class T>
cudaError_t cudaMallocHost(T** p, std::size_t bytes) {
  return cudaMallocHost(reinterpret_cast<void**>(p), bytes);
}
inline cudaError_t cudaFreeHost(void* p) {
  std::free(p);
  return cudaSuccess;
}
inline cudaError_t cudaMemsetAsync(void* p, int v, std::size_t n, cudaStream_t = nullptr) {
  std::memset(p, v, n);
  emu::check_guards("cudaMemsetAsync");
  return cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void* d, const void* s, std::size_t n, cudaMemcpyKind,
                                   cudaStream_t = nullptr) {
  std::memmove(d, s, n);
  emu::check_guards("cudaMemcpyAsync");
  return cudaSuccess;
}
inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) {
  *e = new CUevent_st;
  return cudaSuccess;
}
inline cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}
inline cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t = nullptr) {
  e->at = std::chrono::steady_clock::now();
  return cudaSuccess;
}
inline cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  *ms = std::chrono::duration<float, std::milli>(end->at - start->at).count();
  return cudaSuccess;
}
inline cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
template <class F>
cudaError_t cudaFuncSetAttribute(F* f, cudaFuncAttribute, int value) {
  emu::rt().smem_attr[reinterpret_cast<const void*>(f)] = value;
  return cudaSuccess;
}

namespace emu {

// Runs kernel k over the grid, block by block, each block's threads as fibers.
template <class... P, class... A>
void launch(void (*k)(P...), dim3 grid, dim3 block, std::size_t smem, cudaStream_t,
            A&&... args) {
  Runtime& r = rt();
  char name[64];
  std::snprintf(name, sizeof(name), "kernel %p", reinterpret_cast<const void*>(k));
  r.kernel = name;
  const unsigned threads = block.x * block.y * block.z;
  if (threads == 0 || threads > 1024) fatal(r.kernel + ": block of " + std::to_string(threads) + " threads");
  if (threads % 32 != 0) fatal(r.kernel + ": block size not a multiple of the warp size");
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535 ||
      grid.x > 2147483647u)
    fatal(r.kernel + ": bad grid");
  int allowed = 48 * 1024;
  auto it = r.smem_attr.find(reinterpret_cast<const void*>(k));
  if (it != r.smem_attr.end()) allowed = std::max(allowed, it->second);
  if (smem > static_cast<std::size_t>(allowed))
    fatal(r.kernel + ": " + std::to_string(smem) + " bytes of dynamic shared memory without the attribute");
  if (smem > 166912) fatal(r.kernel + ": dynamic shared memory above the A100's limit");
  std::tuple<std::decay_t<P>...> targs(static_cast<P>(std::forward<A>(args))...);
  r.body = [&] { std::apply(k, targs); };
  if (smem > r.smem_cap) {
    std::free(r.smem);
    r.smem = static_cast<unsigned char*>(std::aligned_alloc(128, (smem + 127) / 128 * 128));
    r.smem_cap = smem;
  }
  gridDim = grid;
  blockDim = block;
  r.nthreads = static_cast<int>(threads);
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        if (smem) std::memset(r.smem, 0xFF, smem);  // garbage (NaN) like real shared memory
        blockIdx.x = x;
        blockIdx.y = y;
        blockIdx.z = z;
        run_block();
      }
  check_guards(r.kernel);
}

// ---- WMMA ----------------------------------------------------------------------------------
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
  static_assert(M == 16 && N == 16 && K == 16, "only 16x16x16 is emulated");
  float v[256];  // the whole tile, row-major (row, col) of the matrix
};

inline void check_ptr(const void* p, unsigned ldm, unsigned elem_bytes) {
  if (reinterpret_cast<std::uintptr_t>(p) % 32 != 0) fatal("WMMA pointer not 32-byte aligned");
  if ((ldm * elem_bytes) % 16 != 0) fatal("WMMA ldm not a multiple of 16 bytes");
}

template <class Use, class Layout>
void load_matrix_sync(fragment<Use, 16, 16, 16, __nv_bfloat16, Layout>& f, const __nv_bfloat16* p,
                      unsigned ldm) {
  check_ptr(p, ldm, 2);
  __syncwarp();
  constexpr bool row = std::is_same_v<Layout, row_major>;
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c)
      f.v[r * 16 + c] = __bfloat162float(row ? p[r * ldm + c] : p[c * ldm + r]);
  __syncwarp();
}
inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float>& f, const float* p,
                             unsigned ldm, layout_t l) {
  check_ptr(p, ldm, 4);
  __syncwarp();
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c) f.v[r * 16 + c] = l == mem_row_major ? p[r * ldm + c] : p[c * ldm + r];
  __syncwarp();
}
inline void store_matrix_sync(float* p, const fragment<accumulator, 16, 16, 16, float>& f,
                              unsigned ldm, layout_t l) {
  check_ptr(p, ldm, 4);
  __syncwarp();
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c) (l == mem_row_major ? p[r * ldm + c] : p[c * ldm + r]) = f.v[r * 16 + c];
  __syncwarp();
}
template <class Use, class T, class Layout>
void fill_fragment(fragment<Use, 16, 16, 16, T, Layout>& f, float x) {
  for (float& e : f.v) e = x;
}
template <class LA, class LB>
void mma_sync(fragment<accumulator, 16, 16, 16, float>& d,
              const fragment<matrix_a, 16, 16, 16, __nv_bfloat16, LA>& a,
              const fragment<matrix_b, 16, 16, 16, __nv_bfloat16, LB>& b,
              const fragment<accumulator, 16, 16, 16, float>& c) {
  float out[256];
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j) {
      float s = c.v[i * 16 + j];
      for (int k = 0; k < 16; ++k) s += a.v[i * 16 + k] * b.v[k * 16 + j];
      out[i * 16 + j] = s;
    }
  std::memcpy(d.v, out, sizeof(out));
}
}  // namespace wmma

}  // namespace emu

// ---- cuBLAS / cuBLASLt ---------------------------------------------------------------------
enum cublasStatus_t {
  CUBLAS_STATUS_SUCCESS = 0,
  CUBLAS_STATUS_INVALID_VALUE = 7,
  CUBLAS_STATUS_NOT_SUPPORTED = 15
};
inline const char* cublasGetStatusString(cublasStatus_t s) {
  return s == CUBLAS_STATUS_SUCCESS ? "CUBLAS_STATUS_SUCCESS" : "emulated cuBLAS error";
}
enum cublasOperation_t { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 };
enum cudaDataType { CUDA_R_32F = 0, CUDA_R_16BF = 14 };
enum cublasComputeType_t { CUBLAS_COMPUTE_32F = 68 };
enum cublasGemmAlgo_t { CUBLAS_GEMM_DEFAULT = -1 };
enum cublasLtEpilogue_t : uint32_t {
  CUBLASLT_EPILOGUE_DEFAULT = 1,
  CUBLASLT_EPILOGUE_BIAS = 4,
  CUBLASLT_EPILOGUE_GELU_AUX = 32 | 128,
  CUBLASLT_EPILOGUE_GELU_AUX_BIAS = 32 | 128 | 4,
  CUBLASLT_EPILOGUE_DGELU = 64 | 128,
  CUBLASLT_EPILOGUE_BGRADB = 512
};
enum cublasLtMatmulDescAttributes_t {
  CUBLASLT_MATMUL_DESC_TRANSA = 3,
  CUBLASLT_MATMUL_DESC_TRANSB = 4,
  CUBLASLT_MATMUL_DESC_EPILOGUE = 7,
  CUBLASLT_MATMUL_DESC_BIAS_POINTER = 8,
  CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER = 11,
  CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD = 12,
  CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE = 26
};
enum cublasLtMatmulPreferenceAttributes_t {
  CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES = 5,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES = 6,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES = 7,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES = 8
};

namespace emu {
struct LtDesc {
  cublasOperation_t ta = CUBLAS_OP_N, tb = CUBLAS_OP_N;
  cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  const void* bias = nullptr;
  int bias_type = -1;
  void* aux = nullptr;  // GELU input: written by GELU_AUX(_BIAS), read by DGELU; D's type
  int64_t aux_ld = 0;
};
struct LtLayout {
  cudaDataType type;
  uint64_t rows, cols;
  int64_t ld;
};
struct LtPref {
  uint64_t workspace = 0;
};

inline float load_as_float(const void* p, cudaDataType t, std::size_t i) {
  if (t == CUDA_R_16BF) return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
  return static_cast<const float*>(p)[i];
}
inline void store_from_float(void* p, cudaDataType t, std::size_t i, float v) {
  if (t == CUDA_R_16BF)
    static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v);
  else
    static_cast<float*>(p)[i] = v;
}

// The GELU epilogues, tanh approximation (the form cuBLASLt's GELU epilogues compute).
enum class GeluEpi { None, Aux, Grad };
inline float gelu_tanh(float x) {
  return 0.5f * x * (1.f + std::tanh(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}
inline float gelu_tanh_grad(float x) {
  const float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
  const float t = std::tanh(u);
  return 0.5f * (1.f + t) +
         0.5f * x * (1.f - t * t) * 0.7978845608028654f * (1.f + 3.f * 0.044715f * x * x);
}

// Column-major D[m,n] = alpha op(A) op(B) + beta C (+ bias[m]); C is not read when beta == 0.
// GeluEpi::Aux stores that value in aux (C's type, leading dimension aux_ld) and gelu of it in
// D; GeluEpi::Grad multiplies it by gelu'(aux) instead.
inline void gemm(bool ta, bool tb, int m, int n, int k, float alpha, const void* A,
                 cudaDataType at, long lda, const void* B, cudaDataType bt, long ldb, float beta,
                 void* C, cudaDataType ct, long ldc, const void* bias, cudaDataType biast,
                 GeluEpi epi = GeluEpi::None, void* aux = nullptr, long aux_ld = 0) {
  if (lda < (ta ? k : m) || ldb < (tb ? n : k) || ldc < m) fatal("gemm: leading dimension too small");
  // op(A) rows and op(B) columns as contiguous fp32 vectors, converted once; every output is then
  // the same in-order fp32 sum over l as a plain triple loop, four rows at a time (independent
  // chains) so the emulated trainer is not held up by one dependent add per cycle.
  const std::size_t K = static_cast<std::size_t>(k);
  std::vector<float> arow(static_cast<std::size_t>(m) * K), bcol(static_cast<std::size_t>(n) * K);
  for (int i = 0; i < m; ++i)
    for (int l = 0; l < k; ++l)
      arow[i * K + l] = load_as_float(A, at, ta ? l + static_cast<std::size_t>(i) * lda
                                                : i + static_cast<std::size_t>(l) * lda);
  for (int j = 0; j < n; ++j)
    for (int l = 0; l < k; ++l)
      bcol[j * K + l] = load_as_float(B, bt, tb ? j + static_cast<std::size_t>(l) * ldb
                                                : l + static_cast<std::size_t>(j) * ldb);
  std::vector<float> dots(static_cast<std::size_t>(m));
  for (int j = 0; j < n; ++j) {
    const float* b = bcol.data() + j * K;
    int i = 0;
    for (; i + 4 <= m; i += 4) {
      const float *a0 = arow.data() + i * K, *a1 = a0 + K, *a2 = a1 + K, *a3 = a2 + K;
      float s0 = 0.f, s1 = 0.f, s2 = 0.f, s3 = 0.f;
      for (std::size_t l = 0; l < K; ++l) {
        s0 += a0[l] * b[l];
        s1 += a1[l] * b[l];
        s2 += a2[l] * b[l];
        s3 += a3[l] * b[l];
      }
      dots[i] = s0, dots[i + 1] = s1, dots[i + 2] = s2, dots[i + 3] = s3;
    }
    for (; i < m; ++i) {
      float s = 0.f;
      for (std::size_t l = 0; l < K; ++l) s += arow[i * K + l] * b[l];
      dots[i] = s;
    }
    for (i = 0; i < m; ++i) {
      const float acc = dots[i];
      const std::size_t ci = i + static_cast<std::size_t>(j) * ldc;
      float v = alpha * acc;
      if (beta != 0.f) v += beta * load_as_float(C, ct, ci);
      if (bias) v += load_as_float(bias, biast, i);
      const std::size_t ai = i + static_cast<std::size_t>(j) * aux_ld;
      if (epi == GeluEpi::Aux) {
        store_from_float(aux, ct, ai, v);
        v = gelu_tanh(v);
      } else if (epi == GeluEpi::Grad) {
        v *= gelu_tanh_grad(load_as_float(aux, ct, ai));
      }
      store_from_float(C, ct, ci, v);
    }
  }
  check_guards("gemm");
}
}  // namespace emu

struct cublasContext {};
using cublasHandle_t = cublasContext*;
inline cublasStatus_t cublasCreate(cublasHandle_t* h) {
  *h = new cublasContext;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasDestroy(cublasHandle_t h) {
  delete h;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasSetStream(cublasHandle_t, cudaStream_t) { return CUBLAS_STATUS_SUCCESS; }
inline cublasStatus_t cublasSetWorkspace(cublasHandle_t, void*, std::size_t) {
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasGemmEx(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb,
                                   int m, int n, int k, const void* alpha, const void* A,
                                   cudaDataType at, int lda, const void* B, cudaDataType bt,
                                   int ldb, const void* beta, void* C, cudaDataType ct, int ldc,
                                   cublasComputeType_t, cublasGemmAlgo_t) {
  emu::gemm(ta == CUBLAS_OP_T, tb == CUBLAS_OP_T, m, n, k, *static_cast<const float*>(alpha), A,
            at, lda, B, bt, ldb, *static_cast<const float*>(beta), C, ct, ldc, nullptr, ct);
  return CUBLAS_STATUS_SUCCESS;
}

struct cublasLtContext {};
using cublasLtHandle_t = cublasLtContext*;
using cublasLtMatmulDesc_t = emu::LtDesc*;
using cublasLtMatrixLayout_t = emu::LtLayout*;
using cublasLtMatmulPreference_t = emu::LtPref*;
struct cublasLtMatmulAlgo_t {
  uint64_t data[8];
};
struct cublasLtMatmulHeuristicResult_t {
  cublasLtMatmulAlgo_t algo;
  std::size_t workspaceSize;
  cublasStatus_t state;
  float wavesCount;
  int reserved[4];
};

inline cublasStatus_t cublasLtCreate(cublasLtHandle_t* h) {
  *h = new cublasLtContext;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) {
  delete h;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* d, cublasComputeType_t,
                                               cudaDataType) {
  *d = new emu::LtDesc;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
  delete d;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d,
                                                     cublasLtMatmulDescAttributes_t a,
                                                     const void* buf, std::size_t size) {
  switch (a) {
    case CUBLASLT_MATMUL_DESC_TRANSA:
      if (size != sizeof(int32_t)) return CUBLAS_STATUS_INVALID_VALUE;
      std::memcpy(&d->ta, buf, size);
      break;
    case CUBLASLT_MATMUL_DESC_TRANSB:
      if (size != sizeof(int32_t)) return CUBLAS_STATUS_INVALID_VALUE;
      std::memcpy(&d->tb, buf, size);
      break;
    case CUBLASLT_MATMUL_DESC_EPILOGUE:
      if (size != sizeof(uint32_t)) return CUBLAS_STATUS_INVALID_VALUE;
      std::memcpy(&d->epilogue, buf, size);
      break;
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER:
      if (size != sizeof(void*)) return CUBLAS_STATUS_INVALID_VALUE;
      std::memcpy(&d->bias, buf, size);
      break;
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER:
      if (size != sizeof(void*)) return CUBLAS_STATUS_INVALID_VALUE;
      std::memcpy(&d->aux, buf, size);
      break;
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD:
      if (size != sizeof(int64_t)) return CUBLAS_STATUS_INVALID_VALUE;
      std::memcpy(&d->aux_ld, buf, size);
      break;
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE:
      if (size != sizeof(int32_t)) return CUBLAS_STATUS_INVALID_VALUE;
      std::memcpy(&d->bias_type, buf, size);
      break;
    default:
      return CUBLAS_STATUS_INVALID_VALUE;
  }
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* l, cudaDataType t,
                                                 uint64_t rows, uint64_t cols, int64_t ld) {
  if (ld < static_cast<int64_t>(rows)) return CUBLAS_STATUS_INVALID_VALUE;
  *l = new emu::LtLayout{t, rows, cols, ld};
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
  delete l;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* p) {
  *p = new emu::LtPref;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
  delete p;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                           cublasLtMatmulPreferenceAttributes_t a,
                                                           const void* buf, std::size_t size) {
  if (a == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES) {
    if (size != sizeof(uint64_t)) return CUBLAS_STATUS_INVALID_VALUE;
    std::memcpy(&p->workspace, buf, size);
  } else if (size != sizeof(uint32_t)) {
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  return CUBLAS_STATUS_SUCCESS;
}

namespace emu {
// The shapes the layouts imply must agree with each other, as cuBLASLt requires.
inline bool lt_shapes_ok(const LtDesc* d, const LtLayout* A, const LtLayout* B, const LtLayout* C,
                         const LtLayout* D) {
  const uint64_t m = D->rows, n = D->cols;
  const uint64_t am = d->ta == CUBLAS_OP_T ? A->cols : A->rows;
  const uint64_t k = d->ta == CUBLAS_OP_T ? A->rows : A->cols;
  const uint64_t bk = d->tb == CUBLAS_OP_T ? B->cols : B->rows;
  const uint64_t bn = d->tb == CUBLAS_OP_T ? B->rows : B->cols;
  return am == m && bk == k && bn == n && C->rows == m && C->cols == n && A->type == CUDA_R_16BF &&
         B->type == CUDA_R_16BF && C->type == D->type;
}
}  // namespace emu

namespace emu {
// The documented requirements of the epilogues emulated: the GELU ones need the aux buffer with a
// leading dimension divisible by 8 and no less than D's rows.
inline bool lt_epilogue_ok(const LtDesc* d, const LtLayout* D) {
  switch (d->epilogue) {
    case CUBLASLT_EPILOGUE_DEFAULT:
      return true;
    case CUBLASLT_EPILOGUE_BIAS:
    case CUBLASLT_EPILOGUE_BGRADB:
      return d->bias != nullptr;
    case CUBLASLT_EPILOGUE_GELU_AUX_BIAS:
      if (!d->bias) return false;
      [[fallthrough]];
    case CUBLASLT_EPILOGUE_GELU_AUX:
    case CUBLASLT_EPILOGUE_DGELU:
      return d->aux && d->aux_ld % 8 == 0 && d->aux_ld >= static_cast<int64_t>(D->rows);
  }
  return false;
}
}  // namespace emu

inline cublasStatus_t cublasLtMatmulAlgoGetHeuristic(
    cublasLtHandle_t, cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t A, cublasLtMatrixLayout_t B,
    cublasLtMatrixLayout_t C, cublasLtMatrixLayout_t D, cublasLtMatmulPreference_t, int requested,
    cublasLtMatmulHeuristicResult_t* results, int* returned) {
  *returned = 0;
  if (!emu::lt_shapes_ok(d, A, B, C, D)) return CUBLAS_STATUS_INVALID_VALUE;
  if (!emu::lt_epilogue_ok(d, D)) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (requested < 1) return CUBLAS_STATUS_INVALID_VALUE;
  std::memset(&results[0], 0, sizeof(results[0]));
  *returned = 1;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmul(cublasLtHandle_t, cublasLtMatmulDesc_t d, const void* alpha,
                                     const void* A, cublasLtMatrixLayout_t Al, const void* B,
                                     cublasLtMatrixLayout_t Bl, const void* beta, const void* C,
                                     cublasLtMatrixLayout_t Cl, void* D,
                                     cublasLtMatrixLayout_t Dl, const cublasLtMatmulAlgo_t*,
                                     void*, std::size_t, cudaStream_t) {
  if (!emu::lt_shapes_ok(d, Al, Bl, Cl, Dl)) return CUBLAS_STATUS_INVALID_VALUE;
  if (C != D) return CUBLAS_STATUS_NOT_SUPPORTED;  // not emulated: the backend passes C == D
  const bool ta = d->ta == CUBLAS_OP_T, tb = d->tb == CUBLAS_OP_T;
  const int m = static_cast<int>(Dl->rows), n = static_cast<int>(Dl->cols);
  const int k = static_cast<int>(ta ? Al->rows : Al->cols);
  if (!emu::lt_epilogue_ok(d, Dl)) return CUBLAS_STATUS_INVALID_VALUE;
  const bool with_bias =
      d->epilogue == CUBLASLT_EPILOGUE_BIAS || d->epilogue == CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
  const void* bias = with_bias ? d->bias : nullptr;
  if (d->epilogue == CUBLASLT_EPILOGUE_BGRADB) {
    // The bias gradient: for each column j of D, the sum of op(B)[l, j] over l < k, in D's type,
    // from B as it is before the product (D may be C, and C is not B).
    const bool tbb = d->tb == CUBLAS_OP_T;
    const int kk = static_cast<int>(ta ? Al->rows : Al->cols);
    for (uint64_t j = 0; j < Dl->cols; ++j) {
      float acc = 0.f;
      for (int l = 0; l < kk; ++l)
        acc += emu::load_as_float(B, Bl->type, tbb ? j + static_cast<std::size_t>(l) * Bl->ld
                                                    : l + static_cast<std::size_t>(j) * Bl->ld);
      emu::store_from_float(const_cast<void*>(d->bias), Dl->type, j, acc);
    }
  }
  emu::GeluEpi epi = emu::GeluEpi::None;
  if (d->epilogue == CUBLASLT_EPILOGUE_GELU_AUX || d->epilogue == CUBLASLT_EPILOGUE_GELU_AUX_BIAS)
    epi = emu::GeluEpi::Aux;
  if (d->epilogue == CUBLASLT_EPILOGUE_DGELU) epi = emu::GeluEpi::Grad;
  const cudaDataType bt = d->bias_type < 0 ? Dl->type : static_cast<cudaDataType>(d->bias_type);
  emu::gemm(ta, tb, m, n, k, *static_cast<const float*>(alpha), A, Al->type, Al->ld, B, Bl->type,
            Bl->ld, *static_cast<const float*>(beta), D, Dl->type, Dl->ld, bias, bt, epi, d->aux,
            static_cast<long>(d->aux_ld));
  return CUBLAS_STATUS_SUCCESS;
}

// ---- CUB ----------------------------------------------------------------------------------
namespace cub {
struct DeviceRadixSort {
  template <class K, class V, class N>
  static cudaError_t SortPairs(void* temp, std::size_t& temp_bytes, const K* keys_in, K* keys_out,
                               const V* vals_in, V* vals_out, N n, int = 0,
                               int = static_cast<int>(sizeof(K) * 8), cudaStream_t = nullptr) {
    if (!temp) {
      temp_bytes = 16;
      return cudaSuccess;
    }
    std::vector<std::pair<K, V>> kv(static_cast<std::size_t>(n));
    for (std::size_t i = 0; i < kv.size(); ++i) kv[i] = {keys_in[i], vals_in[i]};
    std::stable_sort(kv.begin(), kv.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    for (std::size_t i = 0; i < kv.size(); ++i) {
      keys_out[i] = kv[i].first;
      vals_out[i] = kv[i].second;
    }
    emu::check_guards("cub::DeviceRadixSort::SortPairs");
    return cudaSuccess;
  }
};
}  // namespace cub
