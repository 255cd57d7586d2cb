// CPU backend kernels at the GPT-2 124M training shape of the llm.c comparison (B=4, T=64):
// where a training step's time goes. Matmul rates are GFLOP/s (items = flops).
#include <benchmark/benchmark.h>

#include <memory>
#include <vector>

#include "backend/backend.h"

using namespace tsumugi::backend;

namespace {

constexpr int B = 4, T = 64, N = B * T, C = 768, V = 50304, H = 12;

struct Env {
  std::unique_ptr<Backend> be;
  std::vector<Buf> bufs;
  explicit Env(bool bf16) : be(make_cpu_backend(bf16)) {}
  ~Env() {
    for (auto& b : bufs) be->free(b);
  }
  Buf get(std::size_t n, Kind k = Kind::Activation) {
    bufs.push_back(be->alloc(n, k));
    std::vector<float> h(n);
    for (std::size_t i = 0; i < n; ++i) h[i] = static_cast<float>((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
    if (k != Kind::Int32) be->upload(bufs.back(), h.data(), n);
    return bufs.back();
  }
};

void MatmulForward(benchmark::State& st) {
  const int IC = st.range(0), OC = st.range(1);
  Env e(st.range(2));
  Buf x = e.get(static_cast<std::size_t>(N) * IC), w = e.get(static_cast<std::size_t>(OC) * IC, Kind::Param),
      o = e.get(static_cast<std::size_t>(N) * OC), none;
  for (auto _ : st) e.be->matmul_forward(o, x, w, none, N, IC, OC);
  st.SetItemsProcessed(st.iterations() * 2ll * N * IC * OC);
}

void MatmulBackward(benchmark::State& st) {
  const int IC = st.range(0), OC = st.range(1);
  Env e(st.range(2));
  Buf x = e.get(static_cast<std::size_t>(N) * IC), w = e.get(static_cast<std::size_t>(OC) * IC, Kind::Param),
      d = e.get(static_cast<std::size_t>(N) * OC), dx = e.get(static_cast<std::size_t>(N) * IC),
      dw = e.get(static_cast<std::size_t>(OC) * IC, Kind::Grad), none;
  for (auto _ : st) e.be->matmul_backward(dx, dw, none, d, x, w, N, IC, OC, false);
  st.SetItemsProcessed(st.iterations() * 4ll * N * IC * OC);
}

// The four GPT-2 block matmuls and the tied LM head, fp32 (0) and bf16 (1).
#define SHAPES(fn)                                                                                          \
  BENCHMARK(fn)->Args({C, 3 * C, 0})->Args({C, C, 0})->Args({C, 4 * C, 0})->Args({4 * C, C, 0})->Args({C, V, 0}) \
      ->Args({C, 3 * C, 1})->Args({C, V, 1})->Unit(benchmark::kMillisecond)
SHAPES(MatmulForward);
SHAPES(MatmulBackward);

void Attention(benchmark::State& st) {
  Env e(false);
  AttentionShape s{B, T, H, H, C / H};
  Buf qkv = e.get(static_cast<std::size_t>(N) * 3 * C), out = e.get(static_cast<std::size_t>(N) * C),
      lse = e.get(static_cast<std::size_t>(B) * H * T, Kind::Float32), dq = e.get(static_cast<std::size_t>(N) * 3 * C);
  for (auto _ : st) {
    e.be->attention_forward(out, lse, qkv, s);
    e.be->attention_backward(dq, out, qkv, out, lse, s);
  }
}
BENCHMARK(Attention)->Unit(benchmark::kMillisecond);

void LayerNormGelu(benchmark::State& st) {
  Env e(false);
  Buf x = e.get(static_cast<std::size_t>(N) * 4 * C), y = e.get(static_cast<std::size_t>(N) * 4 * C), w = e.get(C),
      b = e.get(C), m = e.get(N, Kind::Float32), r = e.get(N, Kind::Float32);
  for (auto _ : st) {
    e.be->layernorm_forward(y, m, r, x, w, b, N, C, 1e-5f);
    e.be->layernorm_backward(x, w, b, y, x, w, m, r, N, C);
    e.be->gelu_forward(y, x, static_cast<std::size_t>(N) * 4 * C);
    e.be->gelu_backward(y, x, x, static_cast<std::size_t>(N) * 4 * C);
  }
}
BENCHMARK(LayerNormGelu)->Unit(benchmark::kMillisecond);

void CrossEntropy(benchmark::State& st) {
  Env e(false);
  Buf logits = e.get(static_cast<std::size_t>(N) * V), loss = e.get(N, Kind::Float32), t = e.get(N, Kind::Int32);
  std::vector<int32_t> ids(N, 3);
  e.be->upload_ints(t, ids.data(), N);
  for (auto _ : st) e.be->cross_entropy_forward_backward(loss, logits, t, N, V, 1.0f / N);
}
BENCHMARK(CrossEntropy)->Unit(benchmark::kMillisecond);

// The memory-bound optimizer work of one step over 124M parameters.
void OptimizerStep124M(benchmark::State& st) {
  Env e(false);
  const std::size_t n = 124475904;
  Buf w = e.get(n, Kind::Master), g = e.get(n, Kind::Grad), m = e.get(n, Kind::OptState), v = e.get(n, Kind::OptState);
  AdamWParams p{1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 1, 1.0f};
  for (auto _ : st) {
    benchmark::DoNotOptimize(e.be->sum_squares(g, n));
    e.be->adamw_update(w, w, g, m, v, n, p);
    e.be->zero(g, n);
  }
}
BENCHMARK(OptimizerStep124M)->Unit(benchmark::kMillisecond);

}  // namespace
