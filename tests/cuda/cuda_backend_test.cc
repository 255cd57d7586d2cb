// Every CUDA backend op against the CPU backend (the fp32 reference) on random inputs.
//
// Inputs are rounded to bf16 before they go to either backend, so both start from the same
// numbers and the differences are the GPU's bf16 outputs and intermediates. Each comparison
// prints its largest absolute error and that error relative to the largest reference value, and
// passes when every element satisfies |gpu - cpu| <= atol * max|cpu| + rtol * |cpu|.
//
// The same file builds twice: tsumugi_cuda_tests runs it on a GPU (skipping without one), and
// tsumugi_cuda_emu_tests runs it against the CPU emulation of the CUDA sources (smaller shapes).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "backend/backend.h"
#include "model/config.h"
#include "model/model.h"

#ifndef TSUMUGI_CUDA_EMULATION
#include <cuda_runtime_api.h>
#endif

namespace tsumugi::backend {
#ifdef TSUMUGI_CUDA_EMULATION
std::unique_ptr<Backend> make_emulated_cuda_backend(std::string* why);
#endif
}  // namespace tsumugi::backend

namespace {

using namespace tsumugi::backend;

#ifdef TSUMUGI_CUDA_EMULATION
constexpr bool kEmu = true;
std::unique_ptr<Backend> make_gpu(std::string* why) { return make_emulated_cuda_backend(why); }
#else
constexpr bool kEmu = false;
std::unique_ptr<Backend> make_gpu(std::string* why) { return make_cuda_backend(why); }
#endif

// Realistic shapes on a GPU, small ones under the (slow) emulator.
int pick(int gpu, int emu) { return kEmu ? emu : gpu; }

float bf16_round(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  u &= 0xffff0000u;
  std::memcpy(&f, &u, 4);
  return f;
}

std::vector<float> randn(std::size_t n, float scale, uint64_t seed, float shift = 0.f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = bf16_round(shift + scale * nd(rng));
  return v;
}

struct Tol {
  double rtol, atol;  // atol is a fraction of max|reference|
  double floor = 0;   // absolute slack, for results that are exactly zero in fp32
};

void expect_close(const std::string& what, const std::vector<float>& ref,
                  const std::vector<float>& got, Tol tol) {
  ASSERT_EQ(ref.size(), got.size()) << what;
  double maxref = 0;
  for (float r : ref) maxref = std::max(maxref, static_cast<double>(std::fabs(r)));
  double max_abs = 0;
  std::size_t bad = 0, first_bad = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - ref[i]);
    const bool ok = std::isfinite(got[i]) &&
                    err <= tol.atol * maxref + tol.rtol * std::fabs(ref[i]) + tol.floor;
    if (!ok && bad++ == 0) first_bad = i;
    if (std::isfinite(err)) max_abs = std::max(max_abs, err);
    else max_abs = INFINITY;
  }
  std::printf("  %-44s n=%-9zu max|ref|=%-10.4g max_abs_err=%-10.3g max_rel_err=%-10.3g %s\n",
              what.c_str(), ref.size(), maxref, max_abs, maxref > 0 ? max_abs / maxref : max_abs,
              bad ? "FAIL" : "ok");
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " elements out of tolerance (rtol " << tol.rtol
                     << ", atol " << tol.atol << " x max|ref|); first at " << first_bad
                     << ": cpu " << ref[first_bad] << " gpu " << got[first_bad];
}

constexpr Tol kBf16Out{1e-2, 2e-3};      // one bf16 rounding of an fp32 result
constexpr Tol kMatmul{1e-2, 5e-3};       // bf16 output of an fp32-accumulated product
constexpr Tol kFp32{1e-4, 1e-5};         // fp32 statistics
constexpr Tol kAttnFwd{2e-2, 1e-2};      // P rounded to bf16 before P V
constexpr Tol kAttnBwd{3e-2, 2e-2, 1e-5};  // P and dS rounded to bf16 before the products
constexpr Tol kLse{1e-3, 1e-4};

class CudaOps : public ::testing::Test {
 protected:
  struct Twin {
    Buf c, g;
    std::size_t n = 0;
  };

  void SetUp() override {
    std::string why;
    gpu_ = make_gpu(&why);
    if (!gpu_) GTEST_SKIP() << "no CUDA backend here: " << why;
    cpu_ = make_cpu_backend(false);
    std::printf("  [%s vs %s]\n", gpu_->name().c_str(), cpu_->name().c_str());
  }
  void TearDown() override {
    for (auto& t : twins_) {
      if (t.c) cpu_->free(t.c);
      if (t.g) gpu_->free(t.g);
    }
    twins_.clear();
  }

  // The same contents on both backends.
  Twin& twin(const std::vector<float>& v, Kind k) {
    Twin t;
    t.n = v.size();
    t.c = cpu_->alloc(v.size(), k);
    t.g = gpu_->alloc(v.size(), k);
    cpu_->upload(t.c, v.data(), v.size());
    gpu_->upload(t.g, v.data(), v.size());
    twins_.push_back(t);
    return twins_.back();
  }
  Twin& twin_zero(std::size_t n, Kind k) { return twin(std::vector<float>(n, 0.f), k); }
  Twin& twin_ints(const std::vector<int32_t>& v) {
    Twin t;
    t.n = v.size();
    t.c = cpu_->alloc(v.size(), Kind::Int32);
    t.g = gpu_->alloc(v.size(), Kind::Int32);
    cpu_->upload_ints(t.c, v.data(), v.size());
    gpu_->upload_ints(t.g, v.data(), v.size());
    twins_.push_back(t);
    return twins_.back();
  }
  static std::vector<float> get(Backend& b, const Buf& x, std::size_t n) {
    std::vector<float> v(n);
    b.download(v.data(), x, n);
    return v;
  }
  void compare(const std::string& what, const Twin& t, Tol tol) {
    expect_close(what, get(*cpu_, t.c, t.n), get(*gpu_, t.g, t.n), tol);
  }

  // Runs body with gpu_ replaced by a backend started under these environment settings (the CUDA
  // backend reads them when it starts), then frees what body allocated there and puts gpu_ back.
  void with_gpu_env(std::initializer_list<std::pair<const char*, const char*>> env,
                    const std::function<void()>& body) {
    for (const auto& [name, value] : env) setenv(name, value, 1);
    std::string why;
    auto alt = make_gpu(&why);
    for (const auto& [name, value] : env) unsetenv(name);
    ASSERT_TRUE(alt) << why;
    std::swap(gpu_, alt);
    body();
    TearDown();  // free on the backend that allocated them
    std::swap(gpu_, alt);
  }

  std::unique_ptr<Backend> cpu_, gpu_;
  std::unique_ptr<Backend> alt_;  // a second GPU backend (other env settings) while a test swaps
  std::deque<Twin> twins_;        // a deque: references stay valid as twins are added
};

// ---------------------------------------------------------------------------- memory
TEST_F(CudaOps, KindsAndRoundTrips) {
  EXPECT_EQ(gpu_->element_size(Kind::Param), 2u);
  EXPECT_EQ(gpu_->element_size(Kind::Grad), 2u);
  EXPECT_EQ(gpu_->element_size(Kind::Activation), 2u);
  EXPECT_EQ(gpu_->element_size(Kind::Master), 4u);
  EXPECT_EQ(gpu_->element_size(Kind::OptState), 4u);
  EXPECT_EQ(gpu_->element_size(Kind::Float32), 4u);
  EXPECT_EQ(gpu_->element_size(Kind::Int32), 4u);

  const std::size_t n = pick(5'000'003, 1003);  // > one staging chunk on a GPU
  std::vector<float> v(n);
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.f, 3.f);
  for (auto& x : v) x = nd(rng);
  Buf m = gpu_->alloc(n, Kind::Master);
  Buf p = gpu_->alloc(n, Kind::Param);
  // alloc is zero-initialised
  std::vector<float> z(n, 1.f);
  gpu_->download(z.data(), p, n);
  EXPECT_TRUE(std::all_of(z.begin(), z.end(), [](float x) { return x == 0.f; }));
  gpu_->upload(m, v.data(), n);
  std::vector<float> back(n);
  gpu_->download(back.data(), m, n);
  EXPECT_EQ(std::memcmp(back.data(), v.data(), n * 4), 0) << "fp32 upload/download is exact";
  gpu_->copy(p, m, n);  // Master -> Param converts to bf16 (round to nearest even)
  gpu_->download(back.data(), p, n);
  std::size_t mismatches = 0;
  for (std::size_t i = 0; i < n; ++i) mismatches += back[i] != bf16_round(v[i]);
  EXPECT_EQ(mismatches, 0u) << "device fp32->bf16 conversion must equal host rounding";
  gpu_->upload(p, v.data(), n);
  gpu_->download(back.data(), p, n);
  mismatches = 0;
  for (std::size_t i = 0; i < n; ++i) mismatches += back[i] != bf16_round(v[i]);
  EXPECT_EQ(mismatches, 0u) << "host fp32->bf16 upload rounding";
  // bf16 -> fp32 copy is exact; views address the right elements
  Buf m2 = gpu_->alloc(n, Kind::Float32);
  gpu_->copy(m2, p, n);
  std::vector<float> back2(n);
  gpu_->download(back2.data(), m2, n);
  EXPECT_EQ(std::memcmp(back.data(), back2.data(), n * 4), 0);
  Buf tail = gpu_->view(p, n - 7, 7);
  std::vector<float> t7(7);
  gpu_->download(t7.data(), tail, 7);
  for (int i = 0; i < 7; ++i) EXPECT_EQ(t7[i], back[n - 7 + i]);
  gpu_->zero(gpu_->view(p, 1, 2), 2);
  gpu_->download(t7.data(), gpu_->view(p, 0, 4), 4);
  EXPECT_EQ(t7[1], 0.f);
  EXPECT_EQ(t7[2], 0.f);
  EXPECT_EQ(t7[3], back[3]);
  std::vector<int32_t> ints = {3, -1, 7, 1 << 20};
  Buf ib = gpu_->alloc(4, Kind::Int32);
  gpu_->upload_ints(ib, ints.data(), 4);
  gpu_->download(t7.data(), ib, 4);
  EXPECT_EQ(t7[0], 3.f);
  EXPECT_EQ(t7[1], -1.f);
  EXPECT_EQ(t7[3], static_cast<float>(1 << 20));
  for (Buf* b : {&m, &p, &m2, &ib}) gpu_->free(*b);
  EXPECT_FALSE(m);
}

TEST_F(CudaOps, PeakMemoryCountsTheBackendsAllocations) {
  const uint64_t base = gpu_->peak_memory_bytes();
  EXPECT_GE(base, 32u << 20) << "cuBLASLt's workspace is allocated at start-up";
  Buf a = gpu_->alloc(1 << 20, Kind::Master);      // 4 MiB
  Buf b = gpu_->alloc(1 << 20, Kind::Activation);  // 2 MiB
  EXPECT_EQ(gpu_->peak_memory_bytes(), base + (6u << 20));
  gpu_->free(a);
  gpu_->free(b);
  Buf c = gpu_->alloc(1 << 20, Kind::Grad);  // 2 MiB after freeing 6: the peak stays
  EXPECT_EQ(gpu_->peak_memory_bytes(), base + (6u << 20));
  gpu_->free(c);
  Buf d = gpu_->alloc(2 << 20, Kind::OptState);  // 8 MiB: a new peak
  EXPECT_EQ(gpu_->peak_memory_bytes(), base + (8u << 20));
  gpu_->free(d);
  EXPECT_EQ(cpu_->peak_memory_bytes(), 0u) << "the CPU backend leaves memory to the process's RSS";
}

TEST_F(CudaOps, RejectsWrongKindsWithAClearError) {
  Buf f = gpu_->alloc(16, Kind::Float32), a = gpu_->alloc(16, Kind::Activation);
  Buf w = gpu_->alloc(16, Kind::Param);
  try {
    gpu_->matmul_forward(a, f, w, Buf{}, 4, 4, 4);  // inp must be bf16
    ADD_FAILURE() << "no error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("inp is fp32"), std::string::npos) << e.what();
  }
  EXPECT_THROW(gpu_->add(a, a, a, 17), std::exception);  // too few elements
  gpu_->free(f);
  gpu_->free(a);
  gpu_->free(w);
}

// ---------------------------------------------------------------------------- elementwise
TEST_F(CudaOps, Elementwise) {
  // A multiple of 8 takes the 16-byte vector kernels, the other size the scalar ones.
  for (std::size_t n : {std::size_t(pick(1 << 20, 800)), std::size_t(pick((1 << 20) + 3, 777))}) {
    const std::string tag = " n=" + std::to_string(n);
    auto& a = twin(randn(n, 1.f, 1), Kind::Activation);
    auto& b = twin(randn(n, 1.f, 2), Kind::Activation);
    auto& out = twin_zero(n, Kind::Activation);
    cpu_->add(out.c, a.c, b.c, n);
    gpu_->add(out.g, a.g, b.g, n);
    compare("add" + tag, out, kBf16Out);
    cpu_->accumulate(out.c, a.c, n);
    gpu_->accumulate(out.g, a.g, n);
    compare("accumulate" + tag, out, kBf16Out);
    auto& accf = twin(randn(n, 1.f, 3), Kind::Float32);  // fp32 += bf16
    cpu_->accumulate(accf.c, b.c, n);
    gpu_->accumulate(accf.g, b.g, n);
    compare("accumulate fp32 += bf16" + tag, accf, kFp32);

    auto& x = twin(randn(n, 2.f, 4), Kind::Activation);
    auto& y = twin_zero(n, Kind::Activation);
    cpu_->gelu_forward(y.c, x.c, n);
    gpu_->gelu_forward(y.g, x.g, n);
    compare("gelu_forward" + tag, y, kBf16Out);
    auto& dy = twin(randn(n, 1.f, 5), Kind::Activation);
    auto& dx = twin(randn(n, 1.f, 6), Kind::Activation);  // overwritten
    cpu_->gelu_backward(dx.c, x.c, dy.c, n);
    gpu_->gelu_backward(dx.g, x.g, dy.g, n);
    compare("gelu_backward" + tag, dx, kBf16Out);
  }

  const int N = pick(1000, 13), F = pick(1536, 40);
  auto& gu = twin(randn(static_cast<std::size_t>(N) * 2 * F, 2.f, 7), Kind::Activation);
  auto& so = twin_zero(static_cast<std::size_t>(N) * F, Kind::Activation);
  cpu_->swiglu_forward(so.c, gu.c, N, F);
  gpu_->swiglu_forward(so.g, gu.g, N, F);
  compare("swiglu_forward", so, kBf16Out);
  auto& sdy = twin(randn(static_cast<std::size_t>(N) * F, 1.f, 8), Kind::Activation);
  auto& sdx = twin(randn(static_cast<std::size_t>(N) * 2 * F, 1.f, 9), Kind::Activation);
  cpu_->swiglu_backward(sdx.c, gu.c, sdy.c, N, F);
  gpu_->swiglu_backward(sdx.g, gu.g, sdy.g, N, F);
  compare("swiglu_backward", sdx, kBf16Out);
}

// ---------------------------------------------------------------------------- LoRA helpers
std::vector<uint32_t> bits(const std::vector<float>& v) {
  std::vector<uint32_t> b(v.size());
  std::memcpy(b.data(), v.data(), v.size() * 4);
  return b;
}

TEST_F(CudaOps, DropoutScaleDrawsTheCpuMask) {
  const int N = pick(1000, 37), C = pick(768, 24);
  const std::size_t n = static_cast<std::size_t>(N) * C;
  const uint64_t seed = 0x1234abcdull, first_row = 1000003;  // a row offset, as ranks pass
  // No input element is zero, so a zero output means exactly "dropped".
  std::vector<float> in = randn(n, 1.f, 21, 0.f);
  for (auto& x : in)
    if (x == 0.f) x = 0.5f;
  for (Kind k : {Kind::Float32, Kind::Activation}) {
    const std::string tag = k == Kind::Float32 ? " fp32" : " bf16";
    auto& x = twin(in, k);
    auto& y = twin_zero(n, k);
    cpu_->dropout_scale(y.c, x.c, N, C, 0.3f, seed, first_row, 2.0f);
    gpu_->dropout_scale(y.g, x.g, N, C, 0.3f, seed, first_row, 2.0f);
    const std::vector<float> yc = get(*cpu_, y.c, n), yg = get(*gpu_, y.g, n);
    std::size_t dropped = 0, mask_diff = 0;
    for (std::size_t i = 0; i < n; ++i) {
      dropped += yc[i] == 0.f;
      mask_diff += (yc[i] == 0.f) != (yg[i] == 0.f);
    }
    EXPECT_EQ(mask_diff, 0u) << "dropout masks differ" << tag;
    // About 30% dropped: the mask is a real draw, not all-keep or all-drop.
    EXPECT_GT(dropped, n / 5) << tag;
    EXPECT_LT(dropped, n * 2 / 5) << tag;
    if (k == Kind::Float32)
      EXPECT_EQ(bits(yg), bits(yc)) << "fp32 dropout_scale is one identical multiply";
    else
      compare("dropout_scale" + tag, y, kBf16Out);
    // In place, and p = 0 as a plain scale (LoRA's alpha/r).
    cpu_->dropout_scale(x.c, x.c, N, C, 0.0f, seed, 0, 0.25f);
    gpu_->dropout_scale(x.g, x.g, N, C, 0.0f, seed, 0, 0.25f);
    compare("dropout_scale p=0 in place" + tag, x, k == Kind::Float32 ? kFp32 : kBf16Out);
  }
}

TEST_F(CudaOps, CopyStridedIsExact) {
  // One column block of a fused [N, 3C] projection (LLaMA's q/k/v) in and out.
  const int N = pick(512, 19), C = pick(256, 12), fused = 3 * C;
  for (Kind k : {Kind::Float32, Kind::Activation}) {
    const std::string tag = k == Kind::Float32 ? " fp32" : " bf16";
    auto& wide = twin(randn(static_cast<std::size_t>(N) * fused, 1.f, 31), k);
    auto& block = twin(randn(static_cast<std::size_t>(N) * C, 1.f, 32), k);
    // Column block 1 out of the wide rows: a bitwise copy on both backends.
    cpu_->copy_strided(block.c, C, cpu_->view(wide.c, C, wide.n - C), fused, N, C, false);
    gpu_->copy_strided(block.g, C, gpu_->view(wide.g, C, wide.n - C), fused, N, C, false);
    EXPECT_EQ(bits(get(*gpu_, block.g, block.n)), bits(get(*cpu_, block.c, block.n))) << "gather" << tag;
    // Into column block 2, accumulating: the other columns must stay as they were.
    auto& add = twin(randn(static_cast<std::size_t>(N) * C, 1.f, 33), k);
    cpu_->copy_strided(cpu_->view(wide.c, 2 * C, wide.n - 2 * C), fused, add.c, C, N, C, true);
    gpu_->copy_strided(gpu_->view(wide.g, 2 * C, wide.n - 2 * C), fused, add.g, C, N, C, true);
    if (k == Kind::Float32)
      EXPECT_EQ(bits(get(*gpu_, wide.g, wide.n)), bits(get(*cpu_, wide.c, wide.n))) << "scatter-add" << tag;
    else
      compare("copy_strided accumulate" + tag, wide, kBf16Out);
    // Overwriting column block 0.
    cpu_->copy_strided(wide.c, fused, add.c, C, N, C, false);
    gpu_->copy_strided(wide.g, fused, add.g, C, N, C, false);
    const std::vector<float> wc = get(*cpu_, wide.c, wide.n), wg = get(*gpu_, wide.g, wide.n);
    for (int r = 0; r < N; ++r)
      for (int c = 0; c < C; ++c) {
        const std::size_t i = static_cast<std::size_t>(r) * fused + c;
        ASSERT_EQ(bits({wg[i]}), bits({wc[i]})) << "scatter" << tag << " row " << r << " col " << c;
      }
  }
}

// ---------------------------------------------------------------------------- embeddings
TEST_F(CudaOps, Embedding) {
  const int B = 2, T = pick(1024, 24), C = pick(768, 40), V = pick(2000, 30);
  const std::size_t N = static_cast<std::size_t>(B) * T;
  std::vector<int32_t> tok(N);
  std::mt19937 rng(11);
  // Skewed ids so many rows share a token (the backward's summation path).
  for (auto& t : tok) t = static_cast<int32_t>(std::min<unsigned>(rng() % V, rng() % V));
  auto& tokens = twin_ints(tok);
  auto& wte = twin(randn(static_cast<std::size_t>(V) * C, 0.5f, 12), Kind::Param);
  auto& wpe = twin(randn(static_cast<std::size_t>(T) * C, 0.5f, 13), Kind::Param);
  auto& out = twin_zero(N * C, Kind::Activation);
  cpu_->embedding_forward(out.c, tokens.c, wte.c, wpe.c, B, T, C);
  gpu_->embedding_forward(out.g, tokens.g, wte.g, wpe.g, B, T, C);
  compare("embedding_forward (wte + wpe)", out, kBf16Out);
  cpu_->embedding_forward(out.c, tokens.c, wte.c, Buf{}, B, T, C);
  gpu_->embedding_forward(out.g, tokens.g, wte.g, Buf{}, B, T, C);
  compare("embedding_forward (wte only)", out, kBf16Out);

  auto& dout = twin(randn(N * C, 1.f, 14), Kind::Activation);
  auto& dwte = twin(randn(static_cast<std::size_t>(V) * C, 1.f, 15), Kind::Grad);  // +=
  auto& dwpe = twin(randn(static_cast<std::size_t>(T) * C, 1.f, 16), Kind::Grad);
  cpu_->embedding_backward(dwte.c, dwpe.c, dout.c, tokens.c, B, T, C);
  gpu_->embedding_backward(dwte.g, dwpe.g, dout.g, tokens.g, B, T, C);
  compare("embedding_backward dwte +=", dwte, kMatmul);
  compare("embedding_backward dwpe +=", dwpe, kMatmul);

  // Deterministic: the same inputs give the same bits.
  Buf d2 = gpu_->alloc(static_cast<std::size_t>(V) * C, Kind::Grad);
  Buf d3 = gpu_->alloc(static_cast<std::size_t>(V) * C, Kind::Grad);
  gpu_->embedding_backward(d2, Buf{}, dout.g, tokens.g, B, T, C);
  gpu_->embedding_backward(d3, Buf{}, dout.g, tokens.g, B, T, C);
  auto v2 = get(*gpu_, d2, d2.count), v3 = get(*gpu_, d3, d3.count);
  EXPECT_EQ(std::memcmp(v2.data(), v3.data(), v2.size() * 4), 0);
  gpu_->free(d2);
  gpu_->free(d3);
}

// ---------------------------------------------------------------------------- matmul
struct MatmulCase {
  int N, IC, OC;
  bool bias;
};

TEST_F(CudaOps, Matmul) {
  std::vector<MatmulCase> cases;
  if (kEmu) {
    cases = {{70, 48, 40, true}, {33, 20, 17, true}, {30, 16, 24, false}};
  } else {
    cases = {{2048, 768, 2304, true},  // GPT-2 qkv
             {2048, 3072, 768, true},  // MLP down
             {1024, 768, 8192, false}, // lm head-like, no bias
             {77, 130, 50, true}};     // odd sizes: unaligned leading dimensions
  }
  for (const auto& mc : cases) {
    const std::string tag = "N=" + std::to_string(mc.N) + " IC=" + std::to_string(mc.IC) +
                            " OC=" + std::to_string(mc.OC) + (mc.bias ? " +bias" : "");
    const std::size_t N = mc.N, IC = mc.IC, OC = mc.OC;
    auto& inp = twin(randn(N * IC, 1.f, 21), Kind::Activation);
    auto& w = twin(randn(OC * IC, 0.05f, 22), Kind::Param);
    auto& b = twin(randn(OC, 0.5f, 23), Kind::Param);
    auto& out = twin_zero(N * OC, Kind::Activation);
    const Buf bc = mc.bias ? b.c : Buf{}, bg = mc.bias ? b.g : Buf{};
    cpu_->matmul_forward(out.c, inp.c, w.c, bc, mc.N, mc.IC, mc.OC);
    gpu_->matmul_forward(out.g, inp.g, w.g, bg, mc.N, mc.IC, mc.OC);
    compare("matmul_forward " + tag, out, kMatmul);

    auto& dout = twin(randn(N * OC, 1.f, 24), Kind::Activation);
    auto& dinp = twin(randn(N * IC, 1.f, 25), Kind::Activation);
    auto& dw = twin(randn(OC * IC, 1.f, 26), Kind::Grad);
    auto& db = twin(randn(OC, 1.f, 27), Kind::Grad);
    cpu_->matmul_backward(dinp.c, dw.c, mc.bias ? db.c : Buf{}, dout.c, inp.c, w.c, mc.N, mc.IC,
                          mc.OC, false);
    gpu_->matmul_backward(dinp.g, dw.g, mc.bias ? db.g : Buf{}, dout.g, inp.g, w.g, mc.N, mc.IC,
                          mc.OC, false);
    compare("matmul_backward dinp = " + tag, dinp, kMatmul);
    compare("matmul_backward dweight += " + tag, dw, kMatmul);
    if (mc.bias) compare("matmul_backward dbias += " + tag, db, kMatmul);
    cpu_->matmul_backward(dinp.c, dw.c, Buf{}, dout.c, inp.c, w.c, mc.N, mc.IC, mc.OC, true);
    gpu_->matmul_backward(dinp.g, dw.g, Buf{}, dout.g, inp.g, w.g, mc.N, mc.IC, mc.OC, true);
    compare("matmul_backward dinp += " + tag, dinp, kMatmul);
    compare("matmul_backward dweight += (2nd) " + tag, dw, kMatmul);
  }
}

// The GELU MLP ops with cuBLASLt's GELU epilogues (TSUMUGI_CUDA_GELU_FUSION=2) and without, against
// the CPU backend's two separate ops; an odd width (no epilogue: leading dimension not divisible
// by 8) takes the unfused path inside the fused backend.
TEST_F(CudaOps, MatmulGeluFusedAndApart) {
  for (const char* fusion : {"2", "0"}) {
    with_gpu_env({{"TSUMUGI_CUDA_GELU_FUSION", fusion}}, [&] {
      for (const MatmulCase& mc : {MatmulCase{pick(1024, 24), pick(768, 16), pick(3072, 64), true},
                                   MatmulCase{pick(300, 20), pick(256, 24), pick(1000, 40), false},
                                   MatmulCase{pick(77, 9), pick(64, 16), pick(130, 18), true}}) {
        const std::string tag = std::string("fusion ") + fusion + " N=" + std::to_string(mc.N) +
                                " C=" + std::to_string(mc.IC) + " F=" + std::to_string(mc.OC);
        const std::size_t N = mc.N, C = mc.IC, F = mc.OC;
        auto& x = twin(randn(N * C, 1.f, 31), Kind::Activation);
        auto& w_up = twin(randn(F * C, 0.05f, 32), Kind::Param);
        auto& b_up = twin(randn(F, 0.5f, 33), Kind::Param);
        auto& pre = twin_zero(N * F, Kind::Activation);
        auto& act = twin_zero(N * F, Kind::Activation);
        const Buf bc = mc.bias ? b_up.c : Buf{}, bg = mc.bias ? b_up.g : Buf{};
        cpu_->matmul_gelu_forward(act.c, pre.c, x.c, w_up.c, bc, mc.N, mc.IC, mc.OC);
        gpu_->matmul_gelu_forward(act.g, pre.g, x.g, w_up.g, bg, mc.N, mc.IC, mc.OC);
        compare("matmul_gelu_forward pre " + tag, pre, kMatmul);
        compare("matmul_gelu_forward act " + tag, act, kMatmul);
        // The down projection [C, F] and its backward through the GELU.
        auto& w_dn = twin(randn(C * F, 0.05f, 34), Kind::Param);
        auto& dout = twin(randn(N * C, 1.f, 35), Kind::Activation);
        auto& dpre = twin_zero(N * F, Kind::Activation);
        auto& dact = twin_zero(N * F, Kind::Activation);
        auto& dw = twin(randn(C * F, 1.f, 36), Kind::Grad);
        auto& db = twin(randn(C, 1.f, 37), Kind::Grad);
        cpu_->matmul_gelu_backward(dpre.c, dw.c, db.c, dout.c, act.c, w_dn.c, pre.c, dact.c, mc.N, mc.OC, mc.IC);
        gpu_->matmul_gelu_backward(dpre.g, dw.g, db.g, dout.g, act.g, w_dn.g, pre.g, dact.g, mc.N, mc.OC, mc.IC);
        // dpre = (dout W) * gelu'(pre): one more rounding on the unfused path (dact in bf16).
        compare("matmul_gelu_backward dpre " + tag, dpre, Tol{2e-2, 5e-3});
        compare("matmul_gelu_backward dweight += " + tag, dw, kMatmul);
        compare("matmul_gelu_backward dbias += " + tag, db, kMatmul);
        // The fused backward never needs the activation's gradient, so dact shows which path ran.
        // The emulator offers every epilogue cuBLASLt documents; a real cuBLASLt may have no
        // algorithm for a shape and the ops then run apart, which is also correct.
        const std::vector<float> dact_g = get(*gpu_, dact.g, N * F);
        const bool untouched = std::all_of(dact_g.begin(), dact_g.end(), [](float v) { return v == 0.f; });
        std::printf("  %s: GELU backward %s\n", tag.c_str(), untouched ? "fused (DGELU)" : "apart");
        if (kEmu) {
          EXPECT_EQ(untouched, fusion[0] == '2' && F % 8 == 0) << tag;
        } else if (fusion[0] != '2' || F % 8 != 0) {
          EXPECT_FALSE(untouched) << tag;
        }
      }
    });
  }
}

// TSUMUGI_CUDA_BGRAD_FUSION=1: the bias gradient from the weight-gradient matmul's BGRADB
// epilogue (in the weight gradient's type, then added to dbias, which accumulates; an fp32 dbias
// too), against the CPU.
TEST_F(CudaOps, MatmulBiasGradientFromTheEpilogue) {
  with_gpu_env({{"TSUMUGI_CUDA_BGRAD_FUSION", "1"}}, [&] {
    for (const MatmulCase& mc : {MatmulCase{pick(2048, 40), pick(768, 24), pick(2304, 48), true},
                                 MatmulCase{pick(77, 9), pick(130, 20), pick(50, 17), true}}) {
      const std::string tag = "N=" + std::to_string(mc.N) + " IC=" + std::to_string(mc.IC) +
                              " OC=" + std::to_string(mc.OC);
      const std::size_t N = mc.N, IC = mc.IC, OC = mc.OC;
      auto& inp = twin(randn(N * IC, 1.f, 121), Kind::Activation);
      auto& w = twin(randn(OC * IC, 0.05f, 122), Kind::Param);
      auto& dout = twin(randn(N * OC, 1.f, 123), Kind::Activation);
      auto& dinp = twin_zero(N * IC, Kind::Activation);
      auto& dw = twin(randn(OC * IC, 1.f, 124), Kind::Grad);
      auto& db = twin(randn(OC, 1.f, 125), Kind::Grad);
      auto& db32 = twin(randn(OC, 1.f, 126), Kind::Float32);
      for (int rep = 0; rep < 2; ++rep) {  // the second one accumulates onto the first
        cpu_->matmul_backward(dinp.c, dw.c, db.c, dout.c, inp.c, w.c, mc.N, mc.IC, mc.OC, false);
        gpu_->matmul_backward(dinp.g, dw.g, db.g, dout.g, inp.g, w.g, mc.N, mc.IC, mc.OC, false);
      }
      compare("bgrad fusion: dinp " + tag, dinp, kMatmul);
      compare("bgrad fusion: dweight += (2x) " + tag, dw, kMatmul);
      compare("bgrad fusion: dbias += (2x) " + tag, db, kMatmul);
      cpu_->matmul_backward(Buf{}, dw.c, db32.c, dout.c, inp.c, w.c, mc.N, mc.IC, mc.OC, false);
      gpu_->matmul_backward(Buf{}, dw.g, db32.g, dout.g, inp.g, w.g, mc.N, mc.IC, mc.OC, false);
      compare("bgrad fusion: fp32 dbias += " + tag, db32, kMatmul);
    }
  });
}

TEST_F(CudaOps, MatmulOnOffsetViewsAndFp32Bias) {
  // Parameters usually live in one buffer; a view at an odd offset is only 2-byte aligned.
  const int N = pick(300, 20), IC = pick(256, 24), OC = pick(384, 16);
  const std::size_t wn = static_cast<std::size_t>(OC) * IC;
  auto& params = twin(randn(wn + OC + 3, 0.05f, 31), Kind::Param);
  auto& inp = twin(randn(static_cast<std::size_t>(N) * IC, 1.f, 32), Kind::Activation);
  auto& out = twin_zero(static_cast<std::size_t>(N) * OC, Kind::Activation);
  auto& bias32 = twin(randn(OC, 1.f, 33), Kind::Float32);
  for (std::size_t off : {std::size_t{0}, std::size_t{3}}) {
    Buf wc = cpu_->view(params.c, off, wn), wg = gpu_->view(params.g, off, wn);
    Buf bc = cpu_->view(params.c, off + wn, OC), bg = gpu_->view(params.g, off + wn, OC);
    cpu_->matmul_forward(out.c, inp.c, wc, bc, N, IC, OC);
    gpu_->matmul_forward(out.g, inp.g, wg, bg, N, IC, OC);
    compare("matmul_forward on views, offset " + std::to_string(off), out, kMatmul);
  }
  cpu_->matmul_forward(out.c, inp.c, cpu_->view(params.c, 0, wn), bias32.c, N, IC, OC);
  gpu_->matmul_forward(out.g, inp.g, gpu_->view(params.g, 0, wn), bias32.g, N, IC, OC);
  compare("matmul_forward with an fp32 bias", out, kMatmul);
}

TEST_F(CudaOps, MatmulThroughCublasGemmEx) {
  with_gpu_env({{"TSUMUGI_CUDA_MATMUL", "cublas"}}, [&] {
    const int N = pick(512, 20), IC = pick(768, 24), OC = pick(1024, 16);
    auto& inp = twin(randn(static_cast<std::size_t>(N) * IC, 1.f, 41), Kind::Activation);
    auto& w = twin(randn(static_cast<std::size_t>(OC) * IC, 0.05f, 42), Kind::Param);
    auto& b = twin(randn(OC, 0.5f, 43), Kind::Param);
    auto& out = twin_zero(static_cast<std::size_t>(N) * OC, Kind::Activation);
    cpu_->matmul_forward(out.c, inp.c, w.c, b.c, N, IC, OC);
    gpu_->matmul_forward(out.g, inp.g, w.g, b.g, N, IC, OC);
    compare("cublasGemmEx matmul_forward +bias", out, kMatmul);
    auto& dout = twin(randn(static_cast<std::size_t>(N) * OC, 1.f, 44), Kind::Activation);
    auto& dinp = twin_zero(static_cast<std::size_t>(N) * IC, Kind::Activation);
    auto& dw = twin(randn(static_cast<std::size_t>(OC) * IC, 1.f, 45), Kind::Grad);
    cpu_->matmul_backward(dinp.c, dw.c, Buf{}, dout.c, inp.c, w.c, N, IC, OC, false);
    gpu_->matmul_backward(dinp.g, dw.g, Buf{}, dout.g, inp.g, w.g, N, IC, OC, false);
    compare("cublasGemmEx matmul_backward dinp", dinp, kMatmul);
    compare("cublasGemmEx matmul_backward dweight +=", dw, kMatmul);
  });
}

// ---------------------------------------------------------------------------- norms
TEST_F(CudaOps, LayerNorm) {
  // The backward runs in one pass for C % 8 == 0 up to 1024 (1..4 vectors of 8 per lane, the
  // last one partly past C at 520), else (and with TSUMUGI_CUDA_LN=two_pass) as column sums and a
  // row kernel, vectorised or scalar (odd C).
  for (const char* mode : {"", "two_pass"}) {
    with_gpu_env({{"TSUMUGI_CUDA_LN", mode}}, [&] {
      for (int C : {pick(768, 96), pick(1024, 520), pick(2048, 1032), pick(1001, 50)}) {
        const int N = pick(1000, 300);
        const std::string tag = " C=" + std::to_string(C) + (*mode ? " two_pass" : "");
        const std::size_t NC = static_cast<std::size_t>(N) * C;
        auto& x = twin(randn(NC, 2.f, 51, 0.5f), Kind::Activation);
        auto& w = twin(randn(C, 0.3f, 52, 1.f), Kind::Param);
        auto& b = twin(randn(C, 0.3f, 53), Kind::Param);
        auto& out = twin_zero(NC, Kind::Activation);
        auto& mean = twin_zero(N, Kind::Float32);
        auto& rstd = twin_zero(N, Kind::Float32);
        cpu_->layernorm_forward(out.c, mean.c, rstd.c, x.c, w.c, b.c, N, C, 1e-5f);
        gpu_->layernorm_forward(out.g, mean.g, rstd.g, x.g, w.g, b.g, N, C, 1e-5f);
        compare("layernorm_forward out" + tag, out, kBf16Out);
        compare("layernorm_forward mean" + tag, mean, kFp32);
        compare("layernorm_forward rstd" + tag, rstd, kFp32);
        auto& dout = twin(randn(NC, 1.f, 54), Kind::Activation);
        auto& dx = twin(randn(NC, 1.f, 55), Kind::Activation);  // +=
        auto& dw = twin(randn(C, 1.f, 56), Kind::Grad);
        auto& db = twin(randn(C, 1.f, 57), Kind::Grad);
        cpu_->layernorm_backward(dx.c, dw.c, db.c, dout.c, x.c, w.c, mean.c, rstd.c, N, C);
        gpu_->layernorm_backward(dx.g, dw.g, db.g, dout.g, x.g, w.g, mean.g, rstd.g, N, C);
        compare("layernorm_backward dinp +=" + tag, dx, kBf16Out);
        compare("layernorm_backward dweight +=" + tag, dw, kMatmul);
        compare("layernorm_backward dbias +=" + tag, db, kMatmul);

        // The residual add fused with the norm equals add then layernorm_forward, bit for bit, and
        // the CPU's two ops within bf16 rounding.
        auto& r = twin(randn(NC, 1.f, 58), Kind::Activation);
        auto& sum = twin_zero(NC, Kind::Activation);
        auto& out2 = twin_zero(NC, Kind::Activation);
        auto& mean2 = twin_zero(N, Kind::Float32);
        auto& rstd2 = twin_zero(N, Kind::Float32);
        cpu_->add_layernorm_forward(sum.c, out2.c, mean2.c, rstd2.c, x.c, r.c, w.c, b.c, N, C, 1e-5f);
        gpu_->add_layernorm_forward(sum.g, out2.g, mean2.g, rstd2.g, x.g, r.g, w.g, b.g, N, C, 1e-5f);
        compare("add_layernorm_forward sum" + tag, sum, kBf16Out);
        compare("add_layernorm_forward out" + tag, out2, kBf16Out);
        gpu_->add(sum.g, x.g, r.g, NC);
        gpu_->layernorm_forward(out.g, mean.g, rstd.g, sum.g, w.g, b.g, N, C, 1e-5f);
        // Bit for bit under the emulator; nvcc could contract a multiply-add differently in the two
        // kernels, so on a GPU within one bf16 rounding.
        for (auto [fused, apart, n, what] :
             {std::tuple{&out2, &out, NC, "out"}, {&mean2, &mean, std::size_t(N), "mean"},
              {&rstd2, &rstd, std::size_t(N), "rstd"}}) {
          const std::vector<float> f = get(*gpu_, fused->g, n), s2 = get(*gpu_, apart->g, n);
          if (kEmu) {
            EXPECT_EQ(std::memcmp(f.data(), s2.data(), n * sizeof(float)), 0) << what << tag;
          } else {
            expect_close(std::string("add_layernorm_forward = add + layernorm_forward ") + what + tag, s2, f,
                         Tol{8e-3, 1e-6});
          }
        }
      }
    });
  }
}

TEST_F(CudaOps, RmsNorm) {
  const int N = pick(1000, 29), C = pick(2048, 72);
  const std::size_t NC = static_cast<std::size_t>(N) * C;
  auto& x = twin(randn(NC, 2.f, 61), Kind::Activation);
  auto& w = twin(randn(C, 0.3f, 62, 1.f), Kind::Param);
  auto& out = twin_zero(NC, Kind::Activation);
  auto& rstd = twin_zero(N, Kind::Float32);
  cpu_->rmsnorm_forward(out.c, rstd.c, x.c, w.c, N, C, 1e-6f);
  gpu_->rmsnorm_forward(out.g, rstd.g, x.g, w.g, N, C, 1e-6f);
  compare("rmsnorm_forward out", out, kBf16Out);
  compare("rmsnorm_forward rstd", rstd, kFp32);
  auto& dout = twin(randn(NC, 1.f, 63), Kind::Activation);
  auto& dx = twin(randn(NC, 1.f, 64), Kind::Activation);
  auto& dw = twin(randn(C, 1.f, 65), Kind::Grad);
  cpu_->rmsnorm_backward(dx.c, dw.c, dout.c, x.c, w.c, rstd.c, N, C);
  gpu_->rmsnorm_backward(dx.g, dw.g, dout.g, x.g, w.g, rstd.g, N, C);
  compare("rmsnorm_backward dinp +=", dx, kBf16Out);
  compare("rmsnorm_backward dweight +=", dw, kMatmul);
}

// ---------------------------------------------------------------------------- rope
TEST_F(CudaOps, Rope) {
  const AttentionShape s{2, pick(300, 20), 8, 2, pick(128, 64)};
  const std::size_t n = static_cast<std::size_t>(s.B) * s.T * (s.n_head + 2 * s.n_kv_head) * s.head_dim;
  auto& qkv = twin(randn(n, 1.f, 71), Kind::Activation);
  auto& out = twin_zero(n, Kind::Activation);
  cpu_->rope_forward(out.c, qkv.c, s, 10000.f);
  gpu_->rope_forward(out.g, qkv.g, s, 10000.f);
  compare("rope_forward", out, kBf16Out);
  auto& dout = twin(randn(n, 1.f, 72), Kind::Activation);
  auto& dqkv = twin_zero(n, Kind::Activation);
  cpu_->rope_backward(dqkv.c, dout.c, s, 500000.f);
  gpu_->rope_backward(dqkv.g, dout.g, s, 500000.f);
  compare("rope_backward", dqkv, kBf16Out);
}

// ---------------------------------------------------------------------------- attention
struct AttnCase {
  AttentionShape s;
  const char* mode;  // TSUMUGI_CUDA_ATTENTION for this case ("" = the default kernels)
};

void PrintTo(const AttnCase& c, std::ostream* os) {
  *os << "B" << c.s.B << "_T" << c.s.T << "_H" << c.s.n_head << "_KV" << c.s.n_kv_head << "_hd"
      << c.s.head_dim << (*c.mode ? "_" : "") << c.mode;
}

class CudaAttention : public CudaOps, public ::testing::WithParamInterface<AttnCase> {};

TEST_P(CudaAttention, ForwardBackward) {
  const AttnCase& ac = GetParam();
  const AttentionShape s = ac.s;
  if (*ac.mode) {
    setenv("TSUMUGI_CUDA_ATTENTION", ac.mode, 1);
    std::string why;
    auto alt = make_gpu(&why);
    unsetenv("TSUMUGI_CUDA_ATTENTION");
    ASSERT_TRUE(alt) << why;
    gpu_.swap(alt);
    alt_ = std::move(alt);
  }
  const std::size_t N = static_cast<std::size_t>(s.B) * s.T;
  const std::size_t nqkv = N * (s.n_head + 2 * s.n_kv_head) * s.head_dim;
  const std::size_t nout = N * s.n_head * s.head_dim;
  auto& qkv = twin(randn(nqkv, 1.f, 81), Kind::Activation);
  auto& out = twin_zero(nout, Kind::Activation);
  auto& lse = twin_zero(static_cast<std::size_t>(s.B) * s.n_head * s.T, Kind::Float32);
  cpu_->attention_forward(out.c, lse.c, qkv.c, s);
  gpu_->attention_forward(out.g, lse.g, qkv.g, s);
  compare("attention_forward out", out, kAttnFwd);
  compare("attention_forward lse", lse, kLse);
  // Backward from each backend's own forward results (as in training).
  auto& dout = twin(randn(nout, 1.f, 82), Kind::Activation);
  auto& dqkv = twin(randn(nqkv, 1.f, 83), Kind::Activation);  // overwritten
  cpu_->attention_backward(dqkv.c, dout.c, qkv.c, out.c, lse.c, s);
  gpu_->attention_backward(dqkv.g, dout.g, qkv.g, out.g, lse.g, s);
  // Compare q, k and v parts separately: each has its own scale.
  const auto ref = get(*cpu_, dqkv.c, nqkv), got = get(*gpu_, dqkv.g, nqkv);
  const int hd = s.head_dim, Hq = s.n_head * hd, Hk = s.n_kv_head * hd, row = Hq + 2 * Hk;
  const char* names[3] = {"attention_backward dq", "attention_backward dk", "attention_backward dv"};
  const int begin[3] = {0, Hq, Hq + Hk}, width[3] = {Hq, Hk, Hk};
  for (int part = 0; part < 3; ++part) {
    std::vector<float> r, g;
    for (std::size_t n = 0; n < N; ++n)
      for (int c = 0; c < width[part]; ++c) {
        r.push_back(ref[n * row + begin[part] + c]);
        g.push_back(got[n * row + begin[part] + c]);
      }
    expect_close(names[part], r, g, kAttnBwd);
  }
  // Deterministic backward.
  Buf again = gpu_->alloc(nqkv, Kind::Activation);
  gpu_->attention_backward(again, dout.g, qkv.g, out.g, lse.g, s);
  const auto got2 = get(*gpu_, again, nqkv);
  EXPECT_EQ(std::memcmp(got.data(), got2.data(), nqkv * 4), 0) << "attention_backward is deterministic";
  gpu_->free(again);
  if (alt_) {
    TearDown();
    gpu_.swap(alt_);
    alt_.reset();
  }
}

std::vector<AttnCase> attention_cases() {
  if (kEmu) {
    return {
        {{1, 100, 4, 2, 64}, ""},   // GQA, T not a multiple of 64
        {{1, 70, 2, 1, 128}, ""},   // MQA, head_dim 128
        {{2, 33, 2, 2, 32}, ""},
        {{1, 65, 2, 2, 80}, ""},
        {{1, 131, 3, 3, 96}, ""},   // three query tiles, the last one of 3 rows
        {{1, 192, 2, 2, 64}, ""},   // T a multiple of the tile: no partial tile
        {{1, 129, 6, 2, 64}, ""},   // GQA with 3 heads per group, odd T
        {{1, 300, 2, 1, 64}, ""},   // MQA, three 128-row forward tiles, the last partial
        {{1, 40, 3, 1, 72}, ""},    // head_dim 72: plain kernels
        {{1, 50, 2, 2, 64}, "simple"},
        {{1, 100, 4, 2, 64}, "wmma"},  // the older tensor-core kernels
        {{1, 300, 4, 2, 64}, "fa2_q64"},  // FA2 with 64-query forward and dQ blocks
        {{2, 1, 2, 1, 64}, ""},     // T = 1
    };
  }
  return {
      {{2, 1024, 12, 12, 64}, ""},  // GPT-2 124M
      {{2, 1024, 12, 12, 64}, "wmma"},
      {{2, 1024, 12, 12, 64}, "fa2_q64"},
      {{1, 999, 6, 2, 64}, "fa2_q64"},
      {{2, 300, 8, 2, 128}, ""},    // GQA, T not a multiple of 64
      {{2, 300, 8, 2, 128}, "wmma"},
      {{1, 257, 4, 1, 96}, ""},     // MQA
      {{2, 200, 4, 4, 80}, ""},
      {{3, 130, 6, 3, 32}, ""},
      {{1, 999, 6, 2, 64}, ""},     // GQA, odd T
      {{2, 150, 6, 3, 72}, ""},     // head_dim 72: plain kernels
      {{2, 300, 8, 2, 128}, "simple"},
      {{2, 1, 4, 2, 64}, ""},       // T = 1
  };
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaAttention, ::testing::ValuesIn(attention_cases()),
                         [](const ::testing::TestParamInfo<AttnCase>& info) {
                           std::ostringstream os;
                           PrintTo(info.param, &os);
                           return os.str();
                         });

// ---------------------------------------------------------------------------- loss
TEST_F(CudaOps, CrossEntropy) {
  // V % 8 == 0 keeps the row in shared memory (TSUMUGI_CUDA_CE=two_pass: the two-pass vector
  // kernel, which also serves vocabularies too large for shared memory); odd V the scalar kernel.
  for (const char* mode : {"", "two_pass"}) {
    with_gpu_env({{"TSUMUGI_CUDA_CE", mode}}, [&] {
      for (int V : {pick(50304, 1000), pick(50257, 999)}) {
        const int N = pick(64, 5);
        const std::size_t NV = static_cast<std::size_t>(N) * V;
        auto& logits = twin(randn(NV, 3.f, 91), Kind::Activation);
        std::vector<int32_t> t(N);
        for (int i = 0; i < N; ++i) t[i] = (i * 7919) % V;
        t[1] = -1;  // ignored
        auto& targets = twin_ints(t);
        auto& losses = twin(randn(N, 1.f, 92), Kind::Float32);
        const std::string tag = " V=" + std::to_string(V);
        // dloss = 0: losses only, logits untouched
        cpu_->cross_entropy_forward_backward(losses.c, logits.c, targets.c, N, V, 0.f);
        gpu_->cross_entropy_forward_backward(losses.g, logits.g, targets.g, N, V, 0.f);
        compare("cross_entropy losses (forward only)" + tag, losses, Tol{1e-4, 1e-4});
        compare("cross_entropy logits untouched" + tag, logits, Tol{0, 0});
        const float dloss = 1.f / N;
        cpu_->cross_entropy_forward_backward(losses.c, logits.c, targets.c, N, V, dloss);
        gpu_->cross_entropy_forward_backward(losses.g, logits.g, targets.g, N, V, dloss);
        compare("cross_entropy losses" + tag, losses, Tol{1e-4, 1e-4});
        compare("cross_entropy dlogits" + tag, logits, kBf16Out);
        const double lc = cpu_->sum(losses.c, N), lg = gpu_->sum(losses.g, N);
        EXPECT_NEAR(lg, lc, 1e-4 * std::fabs(lc));
      }
      // A NaN logit gives a NaN loss on its row only.
      {
        const int V = pick(50304, 1000), N = 3;
        std::vector<float> x = randn(static_cast<std::size_t>(N) * V, 1.f, 93);
        x[V + 17] = NAN;
        auto& logits = twin(x, Kind::Activation);
        auto& targets = twin_ints({1, 2, 3});
        auto& losses = twin_zero(N, Kind::Float32);
        gpu_->cross_entropy_forward_backward(losses.g, logits.g, targets.g, N, V, 1.f);
        const std::vector<float> l = get(*gpu_, losses.g, N);
        EXPECT_TRUE(std::isfinite(l[0]) && std::isnan(l[1]) && std::isfinite(l[2]))
            << mode << ": " << l[0] << " " << l[1] << " " << l[2];
      }
    });
  }
}

// ---------------------------------------------------------------------------- optimizer
TEST_F(CudaOps, AdamW) {
  const std::size_t n = pick(1'000'003, 1001);
  auto& master = twin(randn(n, 0.02f, 101), Kind::Master);
  auto& param = twin(randn(n, 0.02f, 101), Kind::Param);
  auto& m = twin_zero(n, Kind::OptState);
  auto& v = twin_zero(n, Kind::OptState);
  for (int step = 1; step <= 3; ++step) {
    auto& grad = twin(randn(n, 0.01f, 102 + step), Kind::Grad);
    AdamWParams p{3e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, step, 0.5f};
    // The CPU keeps one fp32 buffer for both; the GPU refreshes the bf16 compute copy.
    cpu_->adamw_update(master.c, master.c, grad.c, m.c, v.c, n, p);
    gpu_->adamw_update(master.g, param.g, grad.g, m.g, v.g, n, p);
  }
  compare("adamw master (3 steps)", master, Tol{1e-5, 1e-5});
  compare("adamw m", m, Tol{1e-5, 1e-6});
  compare("adamw v", v, Tol{1e-5, 1e-6});
  expect_close("adamw bf16 compute copy", get(*cpu_, master.c, n), get(*gpu_, param.g, n),
               kBf16Out);
}

// One launch for many tensors must give exactly what one call per tensor gives, leave elements
// outside every segment alone, and rebuild its table when the segments change.
TEST_F(CudaOps, AdamWSegmentsEqualOneCallPerTensor) {
  const std::size_t n = pick(200'000, 40'000);
  // Uneven sizes, one spanning several chunks, a gap at [100, 130) and one empty segment.
  const std::vector<AdamWSegment> first = {{0, 100, 0.1f},
                                           {130, 7, 0.0f},
                                           {137, 0, 0.5f},
                                           {137, n - 137 - 2000, 0.1f},
                                           {n - 2000, 2000, 0.0f}};
  const std::vector<AdamWSegment> second = {{0, n / 2, 0.0f}, {n / 2, n - n / 2, 0.01f}};
  Backend& g = *gpu_;
  auto fill = [&](Kind k, float scale, uint64_t seed) {
    Buf b = g.alloc(n, k);
    const std::vector<float> x = randn(n, scale, seed);
    g.upload(b, x.data(), n);
    return b;
  };
  Buf master[2], param[2], m[2], v[2];
  for (int i = 0; i < 2; ++i) {
    master[i] = fill(Kind::Master, 0.02f, 201);
    param[i] = fill(Kind::Param, 0.02f, 201);
    m[i] = fill(Kind::OptState, 0.001f, 202);
    v[i] = g.alloc(n, Kind::OptState);
  }
  for (int step = 1; step <= 3; ++step) {
    Buf grad = fill(Kind::Grad, 0.01f, 203 + step);
    const auto& segs = step < 3 ? first : second;
    const AdamWParams p{3e-4f * step, 0.9f, 0.95f, 1e-8f, 99.f, step, 0.5f};
    g.adamw_update_segments(master[0], param[0], grad, m[0], v[0], segs, p);
    for (const AdamWSegment& s : segs) {
      if (!s.count) continue;
      AdamWParams q = p;
      q.weight_decay = s.weight_decay;
      g.adamw_update(g.view(master[1], s.offset, s.count), g.view(param[1], s.offset, s.count),
                     g.view(grad, s.offset, s.count), g.view(m[1], s.offset, s.count),
                     g.view(v[1], s.offset, s.count), s.count, q);
    }
    g.free(grad);
    if (step == 2) {  // the gap [100, 130) is in no segment of the first two steps
      const std::vector<float> m_now = get(g, m[0], n), m_init = randn(n, 0.001f, 202);
      const std::vector<float> w_now = get(g, master[0], n), w_init = randn(n, 0.02f, 201);
      for (std::size_t i = 100; i < 130; ++i) {
        EXPECT_EQ(m_now[i], m_init[i]) << i;
        EXPECT_EQ(w_now[i], w_init[i]) << i;
      }
      EXPECT_NE(m_now[99], m_init[99]);
      EXPECT_NE(m_now[130], m_init[130]);
    }
    for (auto* b : {master, param, m, v}) {
      const std::vector<float> one = get(g, b[0], n), each = get(g, b[1], n);
      std::size_t differ = 0;
      for (std::size_t i = 0; i < n; ++i) differ += std::memcmp(&one[i], &each[i], 4) != 0;
      EXPECT_EQ(differ, 0u) << "step " << step;
    }
  }
  for (int i = 0; i < 2; ++i)
    for (Buf* b : {&master[i], &param[i], &m[i], &v[i]}) g.free(*b);
  // Overlapping segments are refused.
  Buf x = g.alloc(100, Kind::Master), y = g.alloc(100, Kind::OptState), z = g.alloc(100, Kind::OptState);
  Buf gr = g.alloc(100, Kind::Grad);
  const AdamWParams p{1e-3f, 0.9f, 0.95f, 1e-8f, 0.f, 1, 1.f};
  try {
    g.adamw_update_segments(x, Buf{}, gr, y, z, {{0, 60, 0.f}, {50, 50, 0.1f}}, p);
    ADD_FAILURE() << "overlapping segments were accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("overlap"), std::string::npos) << e.what();
  }
  try {
    g.adamw_update_segments(x, Buf{}, gr, y, z, {{0, 50, NAN}, {50, 50, 0.1f}}, p);
    ADD_FAILURE() << "a NaN weight decay was accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("not a finite number"), std::string::npos) << e.what();
  }
  for (Buf* b : {&x, &y, &z, &gr}) g.free(*b);
}

TEST_F(CudaOps, Reductions) {
  const std::size_t n = pick(3'000'001, 2003);  // not a multiple of the 16-byte vectors
  auto& g = twin(randn(n, 0.1f, 111), Kind::Grad);
  auto& f = twin(randn(n, 1.f, 112, 0.25f), Kind::Float32);
  const double sc = cpu_->sum_squares(g.c, n), sg = gpu_->sum_squares(g.g, n);
  std::printf("  sum_squares cpu %.10g gpu %.10g\n", sc, sg);
  EXPECT_NEAR(sg, sc, 1e-9 * sc);
  // A view one element in is only 2-byte aligned: the scalar path.
  const double vc = cpu_->sum_squares(cpu_->view(g.c, 1, n - 1), n - 1);
  const double vg = gpu_->sum_squares(gpu_->view(g.g, 1, n - 1), n - 1);
  EXPECT_NEAR(vg, vc, 1e-9 * vc);
  EXPECT_NEAR(sg - vg, static_cast<double>(get(*cpu_, g.c, 1)[0]) * get(*cpu_, g.c, 1)[0], 1e-9 * sc);
  const double fc = cpu_->sum(f.c, n), fg = gpu_->sum(f.g, n);
  std::printf("  sum cpu %.10g gpu %.10g\n", fc, fg);
  EXPECT_NEAR(fg, fc, 1e-9 * n);
  EXPECT_EQ(gpu_->sum(f.g, 0), 0.0);
  EXPECT_EQ(gpu_->sum_squares(g.g, n), sg) << "deterministic";
}

// TSUMUGI_CUDA_PROFILE=1 prints each op's calls and GPU time when the backend goes away; a fused
// op's fallback pieces count as that op.
TEST(CudaProfile, CountsEveryOuterOpOnce) {
  setenv("TSUMUGI_CUDA_PROFILE", "1", 1);
  std::string why;
  auto g = make_gpu(&why);
  unsetenv("TSUMUGI_CUDA_PROFILE");
  if (!g) GTEST_SKIP() << "no CUDA backend here: " << why;
  const int N = 24, C = 16, F = 40;
  Buf x = g->alloc(N * C, Kind::Activation), w = g->alloc(F * C, Kind::Param);
  Buf pre = g->alloc(N * F, Kind::Activation), act = g->alloc(N * F, Kind::Activation);
  for (int i = 0; i < 3; ++i) g->matmul_forward(pre, x, w, Buf{}, N, C, F);
  g->matmul_gelu_forward(act, pre, x, w, Buf{}, N, C, F);  // fusion off: matmul + gelu inside
  (void)g->sum_squares(act, N * F);
  g->synchronize();
  for (Buf* b : {&x, &w, &pre, &act}) g->free(*b);
  ::testing::internal::CaptureStderr();
  g.reset();
  const std::string report = ::testing::internal::GetCapturedStderr();
  std::printf("%s", report.c_str());
  auto calls = [&](const std::string& op) {
    const std::size_t at = report.find("  " + op + " ");
    if (at == std::string::npos) return -1L;
    return std::strtol(report.c_str() + at + 2 + 44, nullptr, 10);
  };
  EXPECT_EQ(calls("matmul_forward 16->40"), 3);
  EXPECT_EQ(calls("matmul_gelu_forward 16->40"), 1);
  EXPECT_EQ(calls("gelu_forward"), -1) << "counted inside matmul_gelu_forward";
  EXPECT_EQ(calls("sum_squares"), 1);
  EXPECT_EQ(calls("gaps under 1 ms (idle, or untimed: NCCL)") + calls("gaps of 1 ms or more (idle, or NCCL)"), 4)
      << "between 5 ops";
}

// ---------------------------------------------------------------------------- whole model
// The model code (src/model) on both backends: same bf16-representable weights and tokens, one
// forward/backward. bf16 activations on the GPU make this a looser check than the op tests;
// it catches integration mistakes (kinds, views, op order) that single ops cannot.
class CudaModel : public ::testing::TestWithParam<std::string> {};

// "<preset>+fusions": the GPT-2 MLP with its GELU in the matmul epilogues and every bias
// gradient from the weight-gradient matmul (TSUMUGI_CUDA_GELU_FUSION=2, TSUMUGI_CUDA_BGRAD_FUSION=1).
TEST_P(CudaModel, LossAndGradientsMatchCpu) {
  std::string preset = GetParam();
  const std::size_t plus = preset.find('+');
  if (plus != std::string::npos) {
    ASSERT_EQ(preset.substr(plus), "+fusions");
    preset.resize(plus);
    setenv("TSUMUGI_CUDA_GELU_FUSION", "2", 1);
    setenv("TSUMUGI_CUDA_BGRAD_FUSION", "1", 1);
  }
  std::string why;
  auto gpu = make_gpu(&why);
  unsetenv("TSUMUGI_CUDA_GELU_FUSION");
  unsetenv("TSUMUGI_CUDA_BGRAD_FUSION");
  if (!gpu) GTEST_SKIP() << "no CUDA backend here: " << why;
  auto cpu = make_cpu_backend(false);
  using tsumugi::model::Model;
  tsumugi::model::ModelConfig cfg = tsumugi::model::model_preset(preset);
  cfg.n_layer = 2;
  cfg.vocab_size = 384;
  cfg.max_seq = 128;
  const int B = 2, T = pick(100, 40), N = B * T;
  Model mc(cfg, *cpu), mg(cfg, *gpu);
  mc.init_weights(7);
  std::vector<float> w = mc.get_parameters();
  for (auto& x : w) x = bf16_round(x);
  mc.set_parameters(w);
  mg.set_parameters(w);
  std::vector<int32_t> tok(N), tgt(N);
  std::mt19937 rng(5);
  int counted = 0;
  for (int i = 0; i < N; ++i) {
    tok[i] = static_cast<int32_t>(rng() % cfg.vocab_size);
    tgt[i] = i % 7 == 3 ? -1 : static_cast<int32_t>(rng() % cfg.vocab_size);
    counted += tgt[i] >= 0;
  }
  mc.zero_grad();
  mg.zero_grad();
  const double lc = mc.forward_backward(tok.data(), tgt.data(), B, T, 1.f / counted);
  const double lg = mg.forward_backward(tok.data(), tgt.data(), B, T, 1.f / counted);
  std::printf("  %s: mean loss cpu %.6f gpu %.6f\n", GetParam().c_str(), lc / counted, lg / counted);
  EXPECT_NEAR(lg, lc, 1e-2 * std::fabs(lc));
  const std::vector<float> gc = mc.get_gradients(), gg = mg.get_gradients();
  ASSERT_EQ(gc.size(), gg.size());
  double worst = 0;
  std::string worst_name;
  for (const auto& p : mc.layout()) {
    double num = 0, den = 0;
    for (uint64_t i = p.offset; i < p.offset + p.size; ++i) {
      num += (double(gg[i]) - gc[i]) * (double(gg[i]) - gc[i]);
      den += double(gc[i]) * gc[i];
    }
    const double rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
    if (rel > worst) {
      worst = rel;
      worst_name = p.name;
    }
  }
  double num = 0, den = 0;
  for (std::size_t i = 0; i < gc.size(); ++i) {
    num += (double(gg[i]) - gc[i]) * (double(gg[i]) - gc[i]);
    den += double(gc[i]) * gc[i];
  }
  std::printf("  gradients: relative L2 error %.4g overall, worst tensor %s %.4g\n",
              std::sqrt(num / den), worst_name.c_str(), worst);
  EXPECT_LT(std::sqrt(num / den), 2e-2);
  EXPECT_LT(worst, 5e-2) << worst_name;
}

INSTANTIATE_TEST_SUITE_P(Families, CudaModel,
                         ::testing::Values("gpt2-tiny", "llama-tiny", "gpt2-tiny+fusions"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string n = info.param;
                           for (auto& ch : n) if (ch == '-' || ch == '+') ch = '_';
                           return n;
                         });

// ---------------------------------------------------------------------------- factory
#ifndef TSUMUGI_CUDA_EMULATION
TEST(CudaFactory, SaysWhyWhenThereIsNoGpu) {
  int count = 0;
  const bool has_gpu = cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
  std::string why;
  auto be = make_cuda_backend(&why);
  if (has_gpu) {
    ASSERT_TRUE(be) << why;
    std::printf("  %s\n", be->name().c_str());
  } else {
    EXPECT_FALSE(be);
    EXPECT_FALSE(why.empty());
    std::printf("  no GPU: %s\n", why.c_str());
    // make_backend("auto") falls back to the CPU.
    auto fallback = make_backend("auto");
    ASSERT_TRUE(fallback);
    EXPECT_EQ(fallback->name(), "cpu");
  }
}
#endif

}  // namespace
