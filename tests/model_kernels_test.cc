// Every CPU kernel's backward against central finite differences of its forward.
// Scalar objective: L = sum(out * R) for a fixed random R, so dL/dout = R.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>

#include "backend/backend.h"

namespace tsumugi::backend {
namespace {

struct Fx {
  std::unique_ptr<Backend> be = make_cpu_backend(false);
  std::mt19937 rng{1234};
  std::vector<Buf> owned;
  ~Fx() {
    for (auto& b : owned) be->free(b);
  }
  Buf buf(std::size_t n, Kind k = Kind::Activation) {
    owned.push_back(be->alloc(n, k));
    return owned.back();
  }
  Buf rand(std::size_t n, float scale = 1.0f, float shift = 0.0f) {
    std::normal_distribution<float> nd(0.0f, scale);
    std::vector<float> h(n);
    for (auto& x : h) x = nd(rng) + shift;
    Buf b = buf(n);
    be->upload(b, h.data(), n);
    return b;
  }
  std::vector<float> get(const Buf& b, std::size_t n) {
    std::vector<float> h(n);
    be->download(h.data(), b, n);
    return h;
  }
  void set(Buf b, const std::vector<float>& h) { be->upload(b, h.data(), h.size()); }
};

// Checks analytic dL/dx (already computed into `grad`) against finite differences by perturbing
// `x` and re-running `objective`. Checks a sample of coordinates.
void check_grad(Fx& fx, Buf x, std::size_t n, const std::vector<float>& grad,
                const std::function<double()>& objective, const char* what, double tol = 2e-2) {
  std::vector<float> h = fx.get(x, n);
  std::size_t stride = std::max<std::size_t>(1, n / 40);
  double max_err = 0;
  for (std::size_t i = 0; i < n; i += stride) {
    const float eps = 1e-2f * std::max(1.0f, std::fabs(h[i]));
    float orig = h[i];
    h[i] = orig + eps;
    fx.set(x, h);
    double lp = objective();
    h[i] = orig - eps;
    fx.set(x, h);
    double lm = objective();
    h[i] = orig;
    fx.set(x, h);
    double fd = (lp - lm) / (2.0 * eps);
    double err = std::fabs(fd - grad[i]) / std::max(1.0, std::fabs(fd));
    max_err = std::max(max_err, err);
    EXPECT_LT(err, tol) << what << " coordinate " << i << ": finite difference " << fd << " vs analytic "
                        << grad[i];
  }
  ::testing::Test::RecordProperty(what, std::to_string(max_err));
}

double dot(Fx& fx, const Buf& out, const Buf& r, std::size_t n) {
  auto a = fx.get(out, n), b = fx.get(r, n);
  double s = 0;
  for (std::size_t i = 0; i < n; ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

TEST(CpuKernels, MatmulBackward) {
  Fx fx;
  const int N = 6, IC = 5, OC = 7;
  Buf x = fx.rand(N * IC), w = fx.rand(OC * IC), b = fx.rand(OC), out = fx.buf(N * OC), r = fx.rand(N * OC);
  Buf dx = fx.buf(N * IC), dw = fx.buf(OC * IC), db = fx.buf(OC);
  auto obj = [&] {
    fx.be->matmul_forward(out, x, w, b, N, IC, OC);
    return dot(fx, out, r, N * OC);
  };
  obj();
  fx.be->matmul_backward(dx, dw, db, r, x, w, N, IC, OC, false);
  check_grad(fx, x, N * IC, fx.get(dx, N * IC), obj, "dinp");
  check_grad(fx, w, OC * IC, fx.get(dw, OC * IC), obj, "dweight");
  check_grad(fx, b, OC, fx.get(db, OC), obj, "dbias");
  // Accumulation: a second backward doubles dweight/dbias and, with accumulate_dinp, dinp.
  auto dw1 = fx.get(dw, OC * IC), dx1 = fx.get(dx, N * IC);
  fx.be->matmul_backward(dx, dw, db, r, x, w, N, IC, OC, true);
  auto dw2 = fx.get(dw, OC * IC), dx2 = fx.get(dx, N * IC);
  for (int i = 0; i < OC * IC; ++i) EXPECT_NEAR(dw2[i], 2 * dw1[i], 1e-4);
  for (int i = 0; i < N * IC; ++i) EXPECT_NEAR(dx2[i], 2 * dx1[i], 1e-4);
}

TEST(CpuKernels, LayerNormBackward) {
  Fx fx;
  const int N = 5, C = 16;
  Buf x = fx.rand(N * C, 1.0f, 0.5f), w = fx.rand(C, 0.5f, 1.0f), b = fx.rand(C), out = fx.buf(N * C),
      r = fx.rand(N * C);
  Buf mean = fx.buf(N, Kind::Float32), rstd = fx.buf(N, Kind::Float32);
  Buf dx = fx.buf(N * C), dw = fx.buf(C), db = fx.buf(C);
  auto obj = [&] {
    fx.be->layernorm_forward(out, mean, rstd, x, w, b, N, C, 1e-5f);
    return dot(fx, out, r, N * C);
  };
  obj();
  fx.be->layernorm_backward(dx, dw, db, r, x, w, mean, rstd, N, C);
  check_grad(fx, x, N * C, fx.get(dx, N * C), obj, "dinp");
  check_grad(fx, w, C, fx.get(dw, C), obj, "dweight");
  check_grad(fx, b, C, fx.get(db, C), obj, "dbias");
}

TEST(CpuKernels, RmsNormBackward) {
  Fx fx;
  const int N = 5, C = 16;
  Buf x = fx.rand(N * C, 1.0f, 0.5f), w = fx.rand(C, 0.5f, 1.0f), out = fx.buf(N * C), r = fx.rand(N * C);
  Buf rstd = fx.buf(N, Kind::Float32), dx = fx.buf(N * C), dw = fx.buf(C);
  auto obj = [&] {
    fx.be->rmsnorm_forward(out, rstd, x, w, N, C, 1e-5f);
    return dot(fx, out, r, N * C);
  };
  obj();
  fx.be->rmsnorm_backward(dx, dw, r, x, w, rstd, N, C);
  check_grad(fx, x, N * C, fx.get(dx, N * C), obj, "dinp");
  check_grad(fx, w, C, fx.get(dw, C), obj, "dweight");
}

TEST(CpuKernels, GeluAndSwigluBackward) {
  Fx fx;
  const int N = 4, F = 9;
  Buf x = fx.rand(N * F, 2.0f), out = fx.buf(N * F), r = fx.rand(N * F), dx = fx.buf(N * F);
  auto obj = [&] {
    fx.be->gelu_forward(out, x, N * F);
    return dot(fx, out, r, N * F);
  };
  obj();
  fx.be->gelu_backward(dx, x, r, N * F);
  check_grad(fx, x, N * F, fx.get(dx, N * F), obj, "gelu");

  Buf gu = fx.rand(N * 2 * F, 2.0f), sout = fx.buf(N * F), dgu = fx.buf(N * 2 * F);
  auto sobj = [&] {
    fx.be->swiglu_forward(sout, gu, N, F);
    return dot(fx, sout, r, N * F);
  };
  sobj();
  fx.be->swiglu_backward(dgu, gu, r, N, F);
  check_grad(fx, gu, N * 2 * F, fx.get(dgu, N * 2 * F), sobj, "swiglu");
}

TEST(CpuKernels, RopeBackwardIsInverseRotation) {
  Fx fx;
  AttentionShape s{2, 5, 4, 2, 8};
  const std::size_t n = static_cast<std::size_t>(s.B) * s.T * (s.n_head + 2 * s.n_kv_head) * s.head_dim;
  Buf x = fx.rand(n), out = fx.buf(n), r = fx.rand(n), dx = fx.buf(n);
  auto obj = [&] {
    fx.be->rope_forward(out, x, s, 10000.0f);
    return dot(fx, out, r, n);
  };
  obj();
  fx.be->rope_backward(dx, r, s, 10000.0f);
  check_grad(fx, x, n, fx.get(dx, n), obj, "rope");
  // Position 0 is the identity.
  auto xo = fx.get(x, n), yo = fx.get(out, n);
  for (int i = 0; i < (s.n_head + 2 * s.n_kv_head) * s.head_dim; ++i) EXPECT_FLOAT_EQ(xo[i], yo[i]);
}

class Attention : public ::testing::TestWithParam<AttentionShape> {};

TEST_P(Attention, BackwardMatchesFiniteDifferences) {
  Fx fx;
  AttentionShape s = GetParam();
  const std::size_t row = (s.n_head + 2 * s.n_kv_head) * s.head_dim;
  const std::size_t n = static_cast<std::size_t>(s.B) * s.T * row;
  const std::size_t no = static_cast<std::size_t>(s.B) * s.T * s.n_head * s.head_dim;
  Buf qkv = fx.rand(n), out = fx.buf(no), r = fx.rand(no), dqkv = fx.buf(n);
  Buf lse = fx.buf(static_cast<std::size_t>(s.B) * s.n_head * s.T, Kind::Float32);
  auto obj = [&] {
    fx.be->attention_forward(out, lse, qkv, s);
    return dot(fx, out, r, no);
  };
  obj();
  fx.be->attention_backward(dqkv, r, qkv, out, lse, s);
  check_grad(fx, qkv, n, fx.get(dqkv, n), obj, "attention");
  // Causality: the first query attends only to itself, so its output is its own value vector.
  auto q = fx.get(qkv, n), o = fx.get(out, no);
  for (int h = 0; h < s.n_head; ++h) {
    int kvh = h / (s.n_head / s.n_kv_head);
    for (int i = 0; i < s.head_dim; ++i)
      EXPECT_NEAR(o[h * s.head_dim + i], q[(s.n_head + s.n_kv_head + kvh) * s.head_dim + i], 1e-6);
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, Attention,
                         ::testing::Values(AttentionShape{2, 7, 2, 2, 4}, AttentionShape{1, 9, 4, 2, 8},
                                           AttentionShape{2, 5, 4, 1, 6}));

TEST(CpuKernels, CrossEntropyGradientAndIgnoredTargets) {
  Fx fx;
  const int N = 4, V = 11;
  Buf logits = fx.rand(N * V, 2.0f), losses = fx.buf(N, Kind::Float32), t = fx.buf(N, Kind::Int32);
  std::vector<int32_t> targets = {3, -1, 0, 10};
  fx.be->upload_ints(t, targets.data(), N);
  auto base = fx.get(logits, N * V);
  auto obj = [&] {
    Buf tmp = fx.buf(N * V);
    fx.set(tmp, fx.get(logits, N * V));
    fx.be->cross_entropy_forward_backward(losses, tmp, t, N, V, 0.0f);
    return fx.be->sum(losses, N);
  };
  double total = obj();
  // reference loss
  double ref = 0;
  for (int n = 0; n < N; ++n) {
    if (targets[n] < 0) continue;
    double mx = -1e30, s = 0;
    for (int v = 0; v < V; ++v) mx = std::max(mx, static_cast<double>(base[n * V + v]));
    for (int v = 0; v < V; ++v) s += std::exp(base[n * V + v] - mx);
    ref += mx + std::log(s) - base[n * V + targets[n]];
  }
  EXPECT_NEAR(total, ref, 1e-4);
  Buf g = fx.buf(N * V);
  fx.set(g, base);
  fx.be->cross_entropy_forward_backward(losses, g, t, N, V, 1.0f);
  auto grad = fx.get(g, N * V);
  for (int v = 0; v < V; ++v) EXPECT_EQ(grad[1 * V + v], 0.0f);  // ignored row
  check_grad(fx, logits, N * V, grad, obj, "cross_entropy");
}

TEST(CpuKernels, EmbeddingBackwardAccumulatesRepeatedTokens) {
  Fx fx;
  const int B = 2, T = 3, C = 4, V = 5;
  Buf wte = fx.rand(V * C), wpe = fx.rand(T * C), out = fx.buf(B * T * C), tok = fx.buf(B * T, Kind::Int32);
  std::vector<int32_t> ids = {1, 1, 4, 0, 1, 2};
  fx.be->upload_ints(tok, ids.data(), ids.size());
  Buf r = fx.rand(B * T * C), dwte = fx.buf(V * C), dwpe = fx.buf(T * C);
  auto obj = [&] {
    fx.be->embedding_forward(out, tok, wte, wpe, B, T, C);
    return dot(fx, out, r, B * T * C);
  };
  obj();
  fx.be->embedding_backward(dwte, dwpe, r, tok, B, T, C);
  check_grad(fx, wte, V * C, fx.get(dwte, V * C), obj, "dwte");
  check_grad(fx, wpe, T * C, fx.get(dwpe, T * C), obj, "dwpe");
}

TEST(CpuKernels, AdamWMatchesClosedFormFirstStep) {
  Fx fx;
  const int n = 8;
  Buf w = fx.rand(n), g = fx.rand(n), m = fx.buf(n, Kind::OptState), v = fx.buf(n, Kind::OptState);
  auto w0 = fx.get(w, n), g0 = fx.get(g, n);
  AdamWParams p{1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 1, 0.5f};
  fx.be->adamw_update(w, w, g, m, v, n, p);
  auto w1 = fx.get(w, n);
  for (int i = 0; i < n; ++i) {
    // step 1: mhat = g, vhat = g^2  =>  update = sign(g) (up to eps)
    double gi = g0[i] * 0.5;
    double expect = w0[i] * (1 - 1e-2 * 0.1) - 1e-2 * gi / (std::fabs(gi) + 1e-8);
    EXPECT_NEAR(w1[i], expect, 1e-6);
  }
  EXPECT_NEAR(fx.be->sum_squares(g, n), [&] {
    double s = 0;
    for (float x : g0) s += static_cast<double>(x) * x;
    return s;
  }(), 1e-5);
}

// A matmul whose B is large is split into K panels (the vocabulary projection's input gradient);
// a small panel size sends a small problem down that path, ragged last panel included, in fp32
// and bf16, overwriting and accumulating, against a double-precision product.
TEST(CpuKernels, MatmulSplitIntoKPanelsMatchesReference) {
  setenv("TSUMUGI_GEMM_PANEL_KB", "4", 1);
  for (bool bf16 : {false, true}) {
    std::unique_ptr<Backend> be = make_cpu_backend(bf16);
    const int N = 5, IC = 24, OC = 3000;  // dinp[N,IC] = dout[N,OC] W[OC,IC]: K = OC, B = 288 KB
    std::mt19937 rng(7);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> d(N * OC), w(OC * IC), x0(N * IC);
    for (auto* v : {&d, &w, &x0})
      for (auto& e : *v) e = nd(rng);
    Buf dout = be->alloc(d.size(), Kind::Activation), wt = be->alloc(w.size(), Kind::Param),
        dx = be->alloc(x0.size(), Kind::Activation), none;
    be->upload(dout, d.data(), d.size());
    be->upload(wt, w.data(), w.size());
    // bf16 rounds both inputs, so compare against the product of rounded values
    auto round = [&](float f) {
      if (!bf16) return static_cast<double>(f);
      uint32_t u;
      std::memcpy(&u, &f, 4);
      u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
      float r;
      std::memcpy(&r, &u, 4);
      return static_cast<double>(r);
    };
    for (bool acc : {false, true}) {
      be->upload(dx, x0.data(), x0.size());
      be->matmul_backward(dx, none, none, dout, none, wt, N, IC, OC, acc);
      std::vector<float> got(x0.size());
      be->download(got.data(), dx, got.size());
      for (int n = 0; n < N; ++n)
        for (int i = 0; i < IC; ++i) {
          double ref = acc ? x0[n * IC + i] : 0.0;
          for (int o = 0; o < OC; ++o) ref += round(d[n * OC + o]) * round(w[o * IC + i]);
          EXPECT_NEAR(got[n * IC + i], ref, 2e-3) << (bf16 ? "bf16" : "fp32") << " acc " << acc << " at " << n << "," << i;
        }
    }
    be->free(dout);
    be->free(wt);
    be->free(dx);
  }
  unsetenv("TSUMUGI_GEMM_PANEL_KB");
}

// zero() on gradients is deferred in the CPU backend (the first weight gradient overwrites
// instead of adding); whatever a zeroed gradient held before must never show through, whichever
// kernel reads or writes it next, including a write that only partly covers a zeroed range.
TEST(CpuKernels, ZeroedGradientsNeverShowOldValues) {
  Fx fx;
  const int N = 9, IC = 6, OC = 5;
  const std::size_t nw = OC * IC, total = nw + OC + 2 * IC;
  Buf x = fx.rand(N * IC), dout = fx.rand(N * OC), w = fx.rand(nw), none;
  Buf g = fx.buf(total, Kind::Grad);
  const std::vector<float> junk(total, 7.0f);
  auto dw_of = [&](Buf gw) {  // weight and bias gradients into a view of g
    fx.be->matmul_backward(none, gw, fx.be->view(g, nw, OC), dout, x, w, N, IC, OC, false);
  };
  // reference: gradients into a buffer that was really zeroed
  Buf ref = fx.buf(total, Kind::Activation);
  fx.be->matmul_backward(none, fx.be->view(ref, 0, nw), fx.be->view(ref, nw, OC), dout, x, w, N, IC, OC, false);
  auto want = fx.get(ref, nw + OC);

  fx.set(g, junk);
  fx.be->zero(g, total);
  for (float v : fx.get(g, total)) ASSERT_EQ(v, 0.0f);  // a download sees zeros

  fx.set(g, junk);
  fx.be->zero(g, total);
  dw_of(fx.be->view(g, 0, nw));  // both overwrite their pending ranges
  auto got = fx.get(g, total);
  for (std::size_t i = 0; i < nw + OC; ++i) EXPECT_FLOAT_EQ(got[i], want[i]) << i;
  for (std::size_t i = nw + OC; i < total; ++i) EXPECT_EQ(got[i], 0.0f) << i;
  dw_of(fx.be->view(g, 0, nw));  // no longer pending: adds
  got = fx.get(g, nw + OC);
  for (std::size_t i = 0; i < nw + OC; ++i) EXPECT_NEAR(got[i], 2 * want[i], 1e-5) << i;

  // Part of the weight range written after the zeroing: the gradient must add to it.
  fx.set(g, junk);
  fx.be->zero(g, total);
  fx.be->copy(fx.be->view(g, 3, 4), fx.be->view(ref, 3, 4), 4);  // g[3..7) = want[3..7)
  dw_of(fx.be->view(g, 0, nw));
  got = fx.get(g, nw);
  for (std::size_t i = 0; i < nw; ++i) EXPECT_NEAR(got[i], (i >= 3 && i < 7 ? 2 : 1) * want[i], 1e-5) << i;

  // Norm statistics' gradients, and an element-wise kernel reading a zeroed gradient.
  fx.set(g, junk);
  fx.be->zero(g, total);
  Buf mean = fx.buf(N, Kind::Float32), rstd = fx.buf(N, Kind::Float32), y = fx.buf(N * IC), dx = fx.buf(N * IC);
  Buf lw = fx.rand(IC), lb = fx.rand(IC), dy = fx.rand(N * IC);
  fx.be->layernorm_forward(y, mean, rstd, x, lw, lb, N, IC, 1e-5f);
  fx.be->layernorm_backward(dx, fx.be->view(g, nw + OC, IC), fx.be->view(g, nw + OC + IC, IC), dy, x, lw, mean, rstd, N, IC);
  Buf lref = fx.buf(2 * IC);
  fx.be->layernorm_backward(dx, fx.be->view(lref, 0, IC), fx.be->view(lref, IC, IC), dy, x, lw, mean, rstd, N, IC);
  auto lwant = fx.get(lref, 2 * IC);
  got = fx.get(g, total);
  for (int i = 0; i < 2 * IC; ++i) EXPECT_FLOAT_EQ(got[nw + OC + i], lwant[i]) << i;
  fx.set(g, junk);
  fx.be->zero(g, total);
  Buf acc = fx.rand(total);
  auto acc0 = fx.get(acc, total);
  fx.be->accumulate(acc, g, total);
  EXPECT_EQ(fx.get(acc, total), acc0);
}

// bf16 matmuls: both gradients of one backward call (they share the rounded dout) against a
// double-precision product of the bf16-rounded inputs.
TEST(CpuKernels, Bf16MatmulBackwardMatchesRoundedReference) {
  auto be = make_cpu_backend(true);
  const int N = 7, IC = 9, OC = 11;
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> d(N * OC), w(OC * IC), x(N * IC);
  for (auto* v : {&d, &w, &x})
    for (auto& e : *v) e = nd(rng);
  auto r = [](float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    std::memcpy(&f, &u, 4);
    return static_cast<double>(f);
  };
  Buf dout = be->alloc(d.size(), Kind::Activation), wt = be->alloc(w.size(), Kind::Param),
      inp = be->alloc(x.size(), Kind::Activation), dx = be->alloc(x.size(), Kind::Activation),
      dw = be->alloc(w.size(), Kind::Grad), none;
  be->upload(dout, d.data(), d.size());
  be->upload(wt, w.data(), w.size());
  be->upload(inp, x.data(), x.size());
  be->matmul_backward(dx, dw, none, dout, inp, wt, N, IC, OC, false);
  std::vector<float> gx(x.size()), gw(w.size());
  be->download(gx.data(), dx, gx.size());
  be->download(gw.data(), dw, gw.size());
  for (int n = 0; n < N; ++n)
    for (int i = 0; i < IC; ++i) {
      double ref = 0;
      for (int o = 0; o < OC; ++o) ref += r(d[n * OC + o]) * r(w[o * IC + i]);
      EXPECT_NEAR(gx[n * IC + i], ref, 1e-4) << "dinp " << n << "," << i;
    }
  for (int o = 0; o < OC; ++o)
    for (int i = 0; i < IC; ++i) {
      double ref = 0;
      for (int n = 0; n < N; ++n) ref += r(d[n * OC + o]) * r(x[n * IC + i]);
      EXPECT_NEAR(gw[o * IC + i], ref, 1e-4) << "dweight " << o << "," << i;
    }
  for (Buf* b : {&dout, &wt, &inp, &dx, &dw}) be->free(*b);
}

// The gradient norm: several 64Ki chunks plus a ragged tail (not a multiple of the 16 partial
// sums), against a long-double sum, and the same bits with one thread as with two (resume and
// ranks depend on it).
TEST(CpuKernels, SumSquaresIsExactEnoughAndThreadCountFree) {
  Fx fx;
  const std::size_t n = 3 * (1 << 16) + 1000 + 7;
  Buf g = fx.rand(n, 2.0f, 0.5f);
  auto h = fx.get(g, n);
  long double ref = 0;
  for (float x : h) ref += static_cast<long double>(x) * x;
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const double one = fx.be->sum_squares(g, n);
  omp_set_num_threads(2);
  const double two = fx.be->sum_squares(g, n);
  omp_set_num_threads(threads);
  EXPECT_NEAR(one, static_cast<double>(ref), 1e-12 * static_cast<double>(ref));
  EXPECT_EQ(one, two);
  EXPECT_NEAR(fx.be->sum_squares(g, 5), static_cast<double>(h[0]) * h[0] + static_cast<double>(h[1]) * h[1] +
                                            static_cast<double>(h[2]) * h[2] + static_cast<double>(h[3]) * h[3] +
                                            static_cast<double>(h[4]) * h[4], 1e-9);
}

// The bias gradient sums dout's rows per column on top of what dbias held; odd widths split
// unevenly across threads.
TEST(CpuKernels, BiasGradientSumsRowsAndAccumulates) {
  Fx fx;
  for (int OC : {1, 7, 130}) {
    const int N = 37;
    Buf dout = fx.rand(static_cast<std::size_t>(N) * OC), db = fx.rand(OC);
    auto d = fx.get(dout, static_cast<std::size_t>(N) * OC), db0 = fx.get(db, OC);
    Buf none;
    fx.be->matmul_backward(none, none, db, dout, none, none, N, 3, OC, false);
    auto db1 = fx.get(db, OC);
    for (int o = 0; o < OC; ++o) {
      double s = db0[o];
      for (int r = 0; r < N; ++r) s += d[static_cast<std::size_t>(r) * OC + o];
      EXPECT_NEAR(db1[o], s, 1e-5) << "OC " << OC << " column " << o;
    }
  }
}

}  // namespace
}  // namespace tsumugi::backend
