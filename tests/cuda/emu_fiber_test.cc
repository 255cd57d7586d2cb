// The CUDA emulator's own contract (src/backend/cuda/emu.h), which every emulated kernel test
// leans on: a block's threads are fibers that really interleave at barriers and shuffles, in
// every fiber order (forward, reverse, shuffled, one warp at a time), keep their registers and
// floating-point state across switches, and a barrier that not every thread reaches ends the run
// with a message.
#include <gtest/gtest.h>

#include <cfenv>
#include <cmath>
#include <vector>

#include "backend/cuda/emu.h"

namespace {

constexpr int kThreads = 256;

// out[i] = in[n - 1 - i] through shared memory; with `sync` false the barrier that makes this
// correct is missing. Each thread also carries a double across four barriers, in registers the
// compiler keeps over the switch calls.
__global__ void reverse_kernel(const float* in, float* out, double* carried, bool sync) {
  __shared__ float tile[kThreads];
  const int t = threadIdx.x;
  tile[t] = in[t];
  double acc = in[t];
  for (int k = 0; k < 4; ++k) {
    if (sync) __syncthreads();
    acc = acc * 1.5 + k;
  }
  out[t] = tile[kThreads - 1 - t];
  carried[t] = acc;
}

// Sum of a warp's values by butterfly shuffles, one result per lane.
__global__ void warp_sum_kernel(const float* in, float* out) {
  float v = in[threadIdx.x];
  for (int m = 16; m > 0; m >>= 1) v += __shfl_xor_sync(0xffffffffu, v, m);
  out[threadIdx.x] = v;
}

// Each thread sets its own rounding mode, then meets the others at a barrier: a fiber switch
// must not hand one thread's mode to another.
__global__ void rounding_kernel(float* out) {
  const int modes[2] = {FE_UPWARD, FE_DOWNWARD};
  std::fesetround(modes[threadIdx.x % 2]);
  __syncthreads();
  volatile float one = 1.0f, three = 3.0f;
  out[threadIdx.x] = one / three;
  std::fesetround(FE_TONEAREST);
}

// Every warp publishes a value in its slot and every thread sums the slots; then each warp
// overwrites its slot for a next round. Without the trailing barrier a warp that runs ahead
// overwrites its slot before slower warps have summed it.
__global__ void slot_reuse_kernel(float* out, bool trailing_sync) {
  __shared__ float slot[kThreads / 32];
  const int warp = threadIdx.x / 32;
  if (threadIdx.x % 32 == 0) slot[warp] = warp + 1;
  __syncthreads();
  float s = 0.f;
  for (int w = 0; w < kThreads / 32; ++w) s += slot[w];
  if (trailing_sync) __syncthreads();
  s = __shfl_xor_sync(0xffffffffu, s, 1);
  if (threadIdx.x % 32 == 0) slot[warp] = -1.f;
  out[threadIdx.x] = s;
}

__global__ void divergent_barrier_kernel() {
  if (threadIdx.x < 32) return;
  __syncthreads();
}

class EmuFibers : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    saved_order_ = emu::rt().order;
    emu::rt().order = GetParam();
  }
  void TearDown() override { emu::rt().order = saved_order_; }
  int saved_order_ = 0;
};

TEST_P(EmuFibers, BarrierOrdersSharedMemoryAndRegistersSurviveSwitches) {
  std::vector<float> in(kThreads), out(kThreads);
  std::vector<double> carried(kThreads);
  for (int i = 0; i < kThreads; ++i) in[i] = static_cast<float>(i * 3 + 1);
  for (int rep = 0; rep < 3; ++rep) {  // fresh fibers each launch
    emu::launch(reverse_kernel, dim3(1), dim3(kThreads), 0, nullptr, in.data(), out.data(), carried.data(), true);
    for (int i = 0; i < kThreads; ++i) {
      ASSERT_EQ(out[i], in[kThreads - 1 - i]) << "thread " << i;
      double want = in[i];
      for (int k = 0; k < 4; ++k) want = want * 1.5 + k;
      ASSERT_EQ(carried[i], want) << "thread " << i;
    }
  }
}

TEST_P(EmuFibers, MissingBarrierReadsUnwrittenSharedMemory) {
  // Without the barrier a thread runs to its end before the threads after it (forward order) or
  // before it (reverse) start, so half the reads find shared memory no thread has written yet.
  if (GetParam() == 2) GTEST_SKIP() << "a shuffled order may happen to be right for some threads";
  std::vector<float> in(kThreads), out(kThreads, 0.0f);
  std::vector<double> carried(kThreads);
  // Values no earlier launch left in the (static) shared array.
  for (int i = 0; i < kThreads; ++i) in[i] = static_cast<float>(i + 1 + 1000 * (GetParam() + 1));
  emu::launch(reverse_kernel, dim3(1), dim3(kThreads), 0, nullptr, in.data(), out.data(), carried.data(), false);
  int wrong = 0;
  for (int i = 0; i < kThreads; ++i) wrong += out[i] != in[kThreads - 1 - i];
  EXPECT_EQ(wrong, kThreads / 2);
}

TEST_P(EmuFibers, ShufflesExchangeAcrossTheWarp) {
  std::vector<float> in(128), out(128);
  for (int i = 0; i < 128; ++i) in[i] = static_cast<float>(i);
  emu::launch(warp_sum_kernel, dim3(1), dim3(128), 0, nullptr, in.data(), out.data());
  for (int i = 0; i < 128; ++i) {
    const int w = i / 32;
    const float want = static_cast<float>(32 * 32 * w + 31 * 32 / 2);  // sum of 32w .. 32w + 31
    ASSERT_EQ(out[i], want) << "lane " << i;
  }
}

TEST_P(EmuFibers, EachFiberKeepsItsRoundingMode) {
  std::vector<float> out(64);
  emu::launch(rounding_kernel, dim3(1), dim3(64), 0, nullptr, out.data());
  ASSERT_EQ(std::fegetround(), FE_TONEAREST);
  for (int i = 0; i < 64; ++i) {
    if (i % 2 == 0) {
      EXPECT_GT(out[i], 1.0 / 3.0) << "thread " << i << " rounds up";
    } else {
      EXPECT_LT(out[i], 1.0 / 3.0) << "thread " << i << " rounds down";
    }
  }
}

TEST_P(EmuFibers, OnlyTheWarpOrderSeesASharedSlotReusedTooEarly) {
  // In the thread orders every thread runs to its next warp barrier (the shuffle) before any warp
  // passes one, so all reads of the slots come before any overwrite; one warp at a time lets
  // warp 0 overwrite its slot before warp 1 has read it, as a GPU may.
  std::vector<float> out(kThreads);
  const float want = kThreads / 32 * (kThreads / 32 + 1) / 2;
  for (bool sync : {true, false}) {
    emu::launch(slot_reuse_kernel, dim3(1), dim3(kThreads), 0, nullptr, out.data(), sync);
    int wrong = 0;
    for (float v : out) wrong += v != want;
    if (sync || GetParam() != 3) {
      EXPECT_EQ(wrong, 0) << (sync ? "with" : "without") << " the trailing barrier";
    } else {
      EXPECT_EQ(wrong, kThreads - 32) << "every warp after the first reads an overwritten slot";
    }
  }
}

std::string order_name(const ::testing::TestParamInfo<int>& info) {
  const char* names[] = {"forward", "reverse", "shuffle", "warps"};
  return names[info.param];
}
INSTANTIATE_TEST_SUITE_P(Orders, EmuFibers, ::testing::Values(0, 1, 2, 3), order_name);

TEST(EmuFibersDeathTest, BarrierAfterSomeThreadsReturnedEndsTheRun) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(emu::launch(divergent_barrier_kernel, dim3(1), dim3(64), 0, nullptr),
               "__syncthreads reached after 32 threads returned");
}

}  // namespace
