// Kernel timings of the CUDA backend at GPT-2 124M training shapes (12 layers, C=768, 12 heads,
// vocab 50304), and from them an estimate of one training step: a figure to compare against the
// trainer's own tokens/s and MFU, and a breakdown of where a step's time goes.
//
//   tsumugi_cuda_bench [B=16] [T=1024]
//
// Each op runs a few warm-up times, then `iters` times between two synchronizations.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"

using namespace tsumugi::backend;

namespace {

constexpr double kPeakBf16 = 989e12;  // H100 SXM dense bf16, the usual MFU denominator

double time_ms(Backend& be, const std::function<void()>& fn, int iters) {
  for (int i = 0; i < 2; ++i) fn();
  be.synchronize();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) fn();
  be.synchronize();
  const auto t1 = std::chrono::steady_clock::now();
  return std::chrono::duration<double, std::milli>(t1 - t0).count() / iters;
}

Buf filled(Backend& be, std::size_t n, Kind k, float scale, uint64_t seed) {
  std::vector<float> v(n);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.f, scale);
  for (auto& x : v) x = nd(rng);
  Buf b = be.alloc(n, k);
  be.upload(b, v.data(), n);
  return b;
}

struct Row {
  std::string name;
  double ms;
  double per_step;  // how many times one training step runs it
  double flops;     // per call (0: memory-bound op)
  double bytes;     // per call, for memory-bound ops
};

}  // namespace

int main(int argc, char** argv) {
  const int B = argc > 1 ? std::atoi(argv[1]) : 16;
  const int T = argc > 2 ? std::atoi(argv[2]) : 1024;
  const int L = 12, C = 768, H = 12, hd = 64, V = 50304, F = 4 * C;
  const int N = B * T;
  const double n_params = 124.475e6;  // GPT-2 124M with the vocab padded to 50304
  std::string why;
  auto be = make_cuda_backend(&why);
  if (!be) {
    std::fprintf(stderr, "tsumugi_cuda_bench: no CUDA backend: %s\n", why.c_str());
    return 1;
  }
  std::printf("%s, B=%d T=%d (GPT-2 124M shapes)\n", be->name().c_str(), B, T);
  Backend& g = *be;
  std::vector<Row> rows;
  const int iters = 10;

  Buf x = filled(g, static_cast<std::size_t>(N) * F, Kind::Activation, 1.f, 1);
  Buf y = filled(g, static_cast<std::size_t>(N) * F, Kind::Activation, 1.f, 2);
  Buf dy = filled(g, static_cast<std::size_t>(N) * F, Kind::Activation, 1.f, 3);
  Buf w = filled(g, static_cast<std::size_t>(F) * C, Kind::Param, 0.02f, 4);
  Buf bias = filled(g, F, Kind::Param, 0.02f, 5);
  Buf dw = g.alloc(static_cast<std::size_t>(F) * C, Kind::Grad);
  Buf db = g.alloc(F, Kind::Grad);

  struct Mm {
    const char* name;
    int IC, OC;
  };
  for (const Mm& mm : {Mm{"qkv", C, 3 * C}, Mm{"attn proj", C, C}, Mm{"mlp up", C, F},
                       Mm{"mlp down", F, C}}) {
    const double fl = 2.0 * N * mm.IC * mm.OC;
    // The MLP's up projection forward and down projection backward are counted in the GELU rows.
    rows.push_back({std::string("matmul fwd ") + mm.name,
                    time_ms(g, [&] { g.matmul_forward(y, x, w, bias, N, mm.IC, mm.OC); }, iters),
                    std::string(mm.name) == "mlp up" ? 0.0 : double(L), fl, 0});
    rows.push_back({std::string("matmul bwd ") + mm.name,
                    time_ms(g, [&] { g.matmul_backward(y, dw, db, dy, x, w, N, mm.IC, mm.OC, false); },
                            iters),
                    std::string(mm.name) == "mlp down" ? 0.0 : double(L), 2 * fl, 0});
  }
  {
    // What the model calls: the up projection with its GELU, and the down projection's backward
    // through the GELU; TSUMUGI_CUDA_GELU_FUSION decides whether each is one matmul or two ops.
    const char* fusion = std::getenv("TSUMUGI_CUDA_GELU_FUSION");
    const std::string tag = std::string(" (gelu fusion ") + (fusion && *fusion ? fusion : "0") + ")";
    Buf pre = g.alloc(static_cast<std::size_t>(N) * F, Kind::Activation);
    Buf xc = filled(g, static_cast<std::size_t>(N) * C, Kind::Activation, 1.f, 13);
    Buf dyc = filled(g, static_cast<std::size_t>(N) * C, Kind::Activation, 1.f, 14);
    Buf dbc = g.alloc(C, Kind::Grad);
    const double fl = 2.0 * N * C * F;
    g.matmul_forward(pre, xc, w, bias, N, C, F);
    rows.push_back({"matmul fwd mlp up + gelu" + tag,
                    time_ms(g, [&] { g.matmul_gelu_forward(y, pre, xc, w, bias, N, C, F); }, iters),
                    double(L), fl, 0});
    rows.push_back({"matmul bwd mlp down + gelu bwd" + tag,
                    time_ms(g, [&] { g.matmul_gelu_backward(dy, dw, dbc, dyc, y, w, pre, x, N, F, C); }, iters),
                    double(L), 2 * fl, 0});
    for (Buf* b : {&pre, &xc, &dyc, &dbc}) g.free(*b);
  }
  g.free(w);
  g.free(dw);
  {
    Buf wte = filled(g, static_cast<std::size_t>(V) * C, Kind::Param, 0.02f, 6);
    Buf dwte = g.alloc(static_cast<std::size_t>(V) * C, Kind::Grad);
    Buf logits = g.alloc(static_cast<std::size_t>(N) * V, Kind::Activation);
    const double fl = 2.0 * N * C * V;
    rows.push_back({"matmul fwd lm head", time_ms(g, [&] { g.matmul_forward(logits, x, wte, Buf{}, N, C, V); }, iters),
                    1, fl, 0});
    std::vector<int32_t> tg(N);
    std::mt19937 rng(7);
    for (auto& t : tg) t = static_cast<int32_t>(rng() % 50257);
    Buf targets = g.alloc(N, Kind::Int32);
    g.upload_ints(targets, tg.data(), N);
    Buf losses = g.alloc(N, Kind::Float32);
    // Forward only (dloss = 0) keeps the logits intact between iterations: read once.
    rows.push_back({"cross-entropy fwd (read)",
                    time_ms(g, [&] { g.cross_entropy_forward_backward(losses, logits, targets, N, V, 0.f); }, iters),
                    0, 0, 2.0 * N * V});
    rows.push_back({"cross-entropy fwd+bwd (read 2x, write)",
                    time_ms(g, [&] { g.cross_entropy_forward_backward(losses, logits, targets, N, V, 1.f / N); }, iters),
                    1, 0, 3 * 2.0 * N * V});
    rows.push_back({"matmul bwd lm head", time_ms(g, [&] { g.matmul_backward(y, dwte, Buf{}, logits, x, wte, N, C, V, false); }, iters),
                    1, 2 * fl, 0});
    rows.push_back({"embedding bwd (sorted, deterministic)",
                    time_ms(g, [&] { g.embedding_backward(dwte, Buf{}, dy, targets, B, T, C); }, iters), 1, 0,
                    4.0 * N * C});
    for (Buf* b : {&wte, &dwte, &logits, &targets, &losses}) g.free(*b);
  }
  {
    const AttentionShape s{B, T, H, H, hd};
    Buf qkv = filled(g, static_cast<std::size_t>(N) * 3 * C, Kind::Activation, 1.f, 8);
    Buf out = g.alloc(static_cast<std::size_t>(N) * C, Kind::Activation);
    Buf lse = g.alloc(static_cast<std::size_t>(B) * H * T, Kind::Float32);
    Buf dqkv = g.alloc(static_cast<std::size_t>(N) * 3 * C, Kind::Activation);
    // Causal: half of the T x T scores. Forward 2 products, backward 5 (the dq kernel recomputes
    // 2 more, not counted: this is the useful work).
    const double fl = 2.0 * 2.0 * B * H * double(T) * T * hd / 2;
    rows.push_back({"attention fwd", time_ms(g, [&] { g.attention_forward(out, lse, qkv, s); }, iters), double(L), fl, 0});
    rows.push_back({"attention bwd", time_ms(g, [&] { g.attention_backward(dqkv, y, qkv, out, lse, s); }, iters),
                    double(L), 2.5 * fl, 0});
    for (Buf* b : {&qkv, &out, &lse, &dqkv}) g.free(*b);
  }
  {
    Buf wln = filled(g, C, Kind::Param, 1.f, 9), bln = filled(g, C, Kind::Param, 0.f, 10);
    Buf mean = g.alloc(N, Kind::Float32), rstd = g.alloc(N, Kind::Float32);
    Buf dwl = g.alloc(C, Kind::Grad), dbl = g.alloc(C, Kind::Grad);
    const double nc2 = 2.0 * N * C;
    // Per step: ln_1 of each block and the final norm alone, ln_2 fused with the residual add
    // before it (the row below); the other residual add stays separate.
    rows.push_back({"layernorm fwd", time_ms(g, [&] { g.layernorm_forward(y, mean, rstd, x, wln, bln, N, C, 1e-5f); }, iters),
                    double(L) + 1, 0, 2 * nc2});
    rows.push_back({"residual add + layernorm fwd",
                    time_ms(g, [&] {
                      const std::size_t nc = static_cast<std::size_t>(N) * C;
                      g.add_layernorm_forward(g.view(y, nc, nc), y, mean, rstd, x, dy, wln, bln, N, C, 1e-5f);
                    }, iters),
                    double(L), 0, 4 * nc2});
    rows.push_back({"layernorm bwd", time_ms(g, [&] { g.layernorm_backward(y, dwl, dbl, dy, x, wln, mean, rstd, N, C); }, iters),
                    2.0 * L + 1, 0, 5 * nc2});
    rows.push_back({"residual add", time_ms(g, [&] { g.add(y, x, dy, static_cast<std::size_t>(N) * C); }, iters),
                    double(L), 0, 3 * nc2});
    // Counted in the "+ gelu" rows above.
    rows.push_back({"gelu fwd", time_ms(g, [&] { g.gelu_forward(y, x, static_cast<std::size_t>(N) * F); }, iters), 0,
                    0, 2.0 * N * F * 2});
    rows.push_back({"gelu bwd", time_ms(g, [&] { g.gelu_backward(y, x, dy, static_cast<std::size_t>(N) * F); }, iters),
                    0, 0, 3.0 * N * F * 2});
    for (Buf* b : {&wln, &bln, &mean, &rstd, &dwl, &dbl}) g.free(*b);
  }
  {
    const std::size_t P = static_cast<std::size_t>(n_params);
    Buf master = filled(g, P, Kind::Master, 0.02f, 11);
    Buf param = g.alloc(P, Kind::Param);
    Buf grad = filled(g, P, Kind::Grad, 0.01f, 12);
    Buf m = g.alloc(P, Kind::OptState), v = g.alloc(P, Kind::OptState);
    AdamWParams ap{6e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 1, 1.f};
    const double adamw_bytes = double(P) * (4 * 3 * 2 + 2 + 2);
    rows.push_back({"adamw (124M params, one buffer)",
                    time_ms(g, [&] { g.adamw_update(master, param, grad, m, v, P, ap); }, iters), 0, 0, adamw_bytes});
    // The trainer's call: GPT-2 124M's tensors in the checkpoint's order, weight decay on matrices.
    std::vector<AdamWSegment> segs;
    auto add = [&](std::size_t count, bool decay) {
      const std::size_t at = segs.empty() ? 0 : segs.back().offset + segs.back().count;
      segs.push_back({at, count, decay ? 0.1f : 0.0f});
    };
    add(std::size_t(V) * C, true);
    add(std::size_t(1024) * C, true);
    for (int l = 0; l < L; ++l) {
      for (std::size_t n : {std::size_t(C), std::size_t(C)}) add(n, false);
      add(std::size_t(3) * C * C, true);
      add(std::size_t(3) * C, false);
      add(std::size_t(C) * C, true);
      for (std::size_t n : {std::size_t(C), std::size_t(C), std::size_t(C)}) add(n, false);
      add(std::size_t(F) * C, true);
      add(std::size_t(F), false);
      add(std::size_t(C) * F, true);
      add(std::size_t(C), false);
    }
    add(C, false);
    add(C, false);
    if (segs.back().offset + segs.back().count <= P) {
      rows.push_back({"adamw, " + std::to_string(segs.size()) + " tensors, one call each",
                      time_ms(g, [&] {
                        AdamWParams q = ap;
                        for (const AdamWSegment& sg : segs) {
                          q.weight_decay = sg.weight_decay;
                          g.adamw_update(g.view(master, sg.offset, sg.count), g.view(param, sg.offset, sg.count),
                                         g.view(grad, sg.offset, sg.count), g.view(m, sg.offset, sg.count),
                                         g.view(v, sg.offset, sg.count), sg.count, q);
                        }
                      }, iters),
                      0, 0, adamw_bytes});
      rows.push_back({"adamw, " + std::to_string(segs.size()) + " tensors in one launch",
                      time_ms(g, [&] { g.adamw_update_segments(master, param, grad, m, v, segs, ap); }, iters), 1, 0,
                      adamw_bytes});
    }
    rows.push_back({"grad sum_squares (124M, syncs)", time_ms(g, [&] { (void)g.sum_squares(grad, P); }, iters), 1, 0,
                    double(P) * 2});
    for (Buf* b : {&master, &param, &grad, &m, &v}) g.free(*b);
  }
  for (Buf* b : {&x, &y, &dy, &bias, &db}) g.free(*b);

  double step_ms = 0, step_flops = 0;
  std::printf("\n%-42s %10s %12s %10s %8s\n", "op", "ms", "TFLOP/s", "GB/s", "x/step");
  for (const Row& r : rows) {
    const double tf = r.flops > 0 ? r.flops / (r.ms * 1e-3) / 1e12 : 0;
    const double gb = r.bytes > 0 ? r.bytes / (r.ms * 1e-3) / 1e9 : 0;
    std::printf("%-42s %10.3f %12.1f %10.0f %8.0f\n", r.name.c_str(), r.ms, tf, gb, r.per_step);
    step_ms += r.ms * r.per_step;
    step_flops += r.flops * r.per_step;
  }
  // The model FLOPs of a step the usual way (6 N per token plus attention), for MFU.
  const double tokens = double(N);
  const double model_flops = 6.0 * n_params * tokens + 6.0 * 2.0 * L * double(T) * C * tokens / 2;
  std::printf("\nestimated step (sum of the ops above, no launch gaps): %.1f ms, %.0f tokens/s, "
              "MFU %.1f%% of %.0f TFLOP/s (matmul+attention FLOPs counted: %.2f TFLOP)\n",
              step_ms, tokens / (step_ms * 1e-3), 100.0 * model_flops / (step_ms * 1e-3) / kPeakBf16,
              kPeakBf16 / 1e12, step_flops / 1e12);
  return 0;
}
