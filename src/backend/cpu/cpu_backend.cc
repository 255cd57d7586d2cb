// The CPU backend: fp32 reference kernels (OpenMP over all cores) with matmuls through oneDNN.
// Every kernel here is also the oracle the CUDA backend is tested against, so clarity wins over
// cleverness except in the few places that dominate time (matmul, attention, cross-entropy).
#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <dnnl.hpp>
#include <map>
#include <mutex>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "backend/backend.h"
#include "util/error.h"
#include "util/fast_math.h"
#include "util/log.h"

namespace tsumugi::backend {
namespace {

using util::fast_exp;
using util::fast_sigmoid;
using util::fast_tanh;

float* F(const Buf& b) { return static_cast<float*>(b.ptr); }
const int32_t* I(const Buf& b) { return static_cast<const int32_t*>(b.ptr); }

// Round-to-nearest-even fp32 -> bf16 (as the bit pattern), the rounding the hardware uses.
inline uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}


class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(bool bf16) : bf16_(bf16), engine_(dnnl::engine::kind::cpu, 0), stream_(engine_) {}

  std::string name() const override { return bf16_ ? "cpu-bf16" : "cpu"; }
  std::size_t element_size(Kind) const override { return 4; }

  Buf alloc(std::size_t count, Kind kind) override {
    Buf b;
    b.count = count;
    b.kind = kind;
    std::size_t bytes = std::max<std::size_t>(64, (count * 4 + 63) / 64 * 64);
    b.ptr = std::aligned_alloc(64, bytes);
    if (!b.ptr) fail("out of memory allocating {} MiB on the CPU", bytes >> 20);
    weights_written(b);
    std::memset(b.ptr, 0, bytes);
    return b;
  }
  void free(Buf& b) override {
    weights_written(b, nullptr, true);
    drop_pending(b);
    std::free(b.ptr);
    b.ptr = nullptr;
    b.count = 0;
  }
  void upload(Buf dst, const float* src, std::size_t n) override {
    touch(dst);
    weights_written(dst);
    std::memcpy(dst.ptr, src, n * 4);
  }
  void upload_ints(Buf dst, const int32_t* src, std::size_t n) override {
    touch(dst);
    std::memcpy(dst.ptr, src, n * 4);
  }
  void download(float* dst, const Buf& src, std::size_t n) override {
    touch(src);
    std::memcpy(dst, src.ptr, n * 4);
  }
  void zero(Buf b, std::size_t n) override {
    if (b.kind == Kind::Grad) {  // deferred: see `pending_`
      const auto lo = reinterpret_cast<std::uintptr_t>(b.ptr);
      drop_pending(lo, lo + n * 4);
      pending_.emplace(lo, lo + n * 4);
      return;
    }
    weights_written(b);
    std::memset(b.ptr, 0, n * 4);
  }
  void copy(Buf dst, const Buf& src, std::size_t n) override {
    touch(dst, src);
    weights_written(dst);
    if (dst.ptr != src.ptr) std::memcpy(dst.ptr, src.ptr, n * 4);
  }

  // ---------------------------------------------------------------- embeddings
  void embedding_forward(Buf out, const Buf& tokens, const Buf& wte, const Buf& wpe, int B, int T,
                         int C) override {
    touch(out, tokens, wte, wpe);
    float* o = F(out);
    const float* e = F(wte);
    const float* p = wpe ? F(wpe) : nullptr;
#pragma omp parallel for schedule(static)
    for (long n = 0; n < static_cast<long>(B) * T; ++n) {
      const float* row = e + static_cast<std::size_t>(I(tokens)[n]) * C;
      float* dst = o + n * C;
      if (p) {
        const float* pos = p + (n % T) * static_cast<std::size_t>(C);
        for (int c = 0; c < C; ++c) dst[c] = row[c] + pos[c];
      } else {
        std::memcpy(dst, row, C * 4);
      }
    }
  }

  void embedding_backward(Buf dwte, Buf dwpe, const Buf& dout, const Buf& tokens, int B, int T,
                          int C) override {
    touch(dwte, dwpe, dout, tokens);
    const float* d = F(dout);
    // Split the channels across threads: every thread walks all rows in order, so the result is
    // deterministic and there are no races on repeated tokens.
#pragma omp parallel
    {
      int nt = omp_get_num_threads(), id = omp_get_thread_num();
      int c0 = static_cast<int>(static_cast<long>(C) * id / nt);
      int c1 = static_cast<int>(static_cast<long>(C) * (id + 1) / nt);
      for (long n = 0; n < static_cast<long>(B) * T; ++n) {
        float* w = F(dwte) + static_cast<std::size_t>(I(tokens)[n]) * C;
        const float* src = d + n * C;
        for (int c = c0; c < c1; ++c) w[c] += src[c];
        if (dwpe) {
          float* pw = F(dwpe) + (n % T) * static_cast<std::size_t>(C);
          for (int c = c0; c < c1; ++c) pw[c] += src[c];
        }
      }
    }
  }

  // ---------------------------------------------------------------- matmul (oneDNN)
  void matmul_forward(Buf out, const Buf& inp, const Buf& weight, const Buf& bias, int N, int IC,
                      int OC) override {
    touch(out, inp, weight, bias);
    // out[N,OC] = inp[N,IC] * W^T, W stored [OC,IC]: the weights matrix is W viewed with strides.
    gemm(F(inp), {N, IC}, {IC, 1}, F(weight), {IC, OC}, {1, IC}, F(out), {N, OC}, bias ? F(bias) : nullptr,
         false, weights_bf16(weight, static_cast<std::size_t>(IC) * OC));
  }

  void matmul_backward(Buf dinp, Buf dweight, Buf dbias, const Buf& dout, const Buf& inp,
                       const Buf& weight, int N, int IC, int OC, bool accumulate_dinp) override {
    touch(dinp, dout, inp, weight);
    const bool dw_fresh = dweight && claim(dweight, static_cast<std::size_t>(OC) * IC);
    const bool db_fresh = dbias && claim(dbias, OC);
    // bf16: both products read dout (as itself and transposed, the same block), so it is rounded
    // once here rather than in each (the vocabulary projection's is 12.9M values at 124M).
    const uint16_t* dout_bf16 = nullptr;
    if (bf16_ && dinp && dweight) {
      std::lock_guard<std::mutex> lock(mu_);
      dout_bf16 = static_cast<const uint16_t*>(convert(F(dout), {N, OC}, {OC, 1}, scratch_dout_));
    }
    if (dinp) {  // dinp[N,IC] = dout[N,OC] W[OC,IC]
      gemm(F(dout), {N, OC}, {OC, 1}, F(weight), {OC, IC}, {IC, 1}, F(dinp), {N, IC}, nullptr,
           accumulate_dinp, weights_bf16(weight, static_cast<std::size_t>(IC) * OC), dout_bf16);
    }
    // dW[OC,IC] += dout^T[OC,N] inp[N,IC]  (no dweight: a frozen weight, e.g. under LoRA)
    if (dweight)
      gemm(F(dout), {OC, N}, {1, OC}, F(inp), {N, IC}, {IC, 1}, F(dweight), {OC, IC}, nullptr, !dw_fresh, nullptr,
           dout_bf16);
    if (dbias) {
      const float* d = F(dout);
      float* db = F(dbias);
      // Each thread owns a block of columns and walks the rows in order: contiguous (vector)
      // reads instead of one strided pass per column, and each column's sum keeps its order.
#pragma omp parallel
      {
        const int nt = omp_get_num_threads(), id = omp_get_thread_num();
        const int o0 = static_cast<int>(static_cast<long>(OC) * id / nt);
        const int o1 = static_cast<int>(static_cast<long>(OC) * (id + 1) / nt);
        std::vector<double> s(static_cast<std::size_t>(o1 - o0), 0.0);
        double* sp = s.data();
        for (int n = 0; n < N; ++n) {
          const float* row = d + static_cast<std::size_t>(n) * OC + o0;
#pragma omp simd
          for (int o = 0; o < o1 - o0; ++o) sp[o] += row[o];
        }
        for (int o = o0; o < o1; ++o) db[o] = (db_fresh ? 0.0f : db[o]) + static_cast<float>(sp[o - o0]);
      }
    }
  }

  // ---------------------------------------------------------------- norms
  void layernorm_forward(Buf out, Buf mean, Buf rstd, const Buf& inp, const Buf& weight,
                         const Buf& bias, int N, int C, float eps) override {
    touch(out, mean, rstd, inp, weight, bias);
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; ++n) {
      const float* x = F(inp) + static_cast<std::size_t>(n) * C;
      float* y = F(out) + static_cast<std::size_t>(n) * C;
      float m = 0;
#pragma omp simd reduction(+ : m)
      for (int c = 0; c < C; ++c) m += x[c];
      m /= C;
      float v = 0;
#pragma omp simd reduction(+ : v)
      for (int c = 0; c < C; ++c) v += (x[c] - m) * (x[c] - m);
      v /= C;
      float s = 1.0f / std::sqrt(v + eps);
      const float* w = F(weight);
      const float* b = F(bias);
      for (int c = 0; c < C; ++c) y[c] = (x[c] - m) * s * w[c] + b[c];
      F(mean)[n] = m;
      F(rstd)[n] = s;
    }
  }

  void layernorm_backward(Buf dinp, Buf dweight, Buf dbias, const Buf& dout, const Buf& inp,
                          const Buf& weight, const Buf& mean, const Buf& rstd, int N,
                          int C) override {
    touch(dinp, dout, inp, weight, mean, rstd);
    const bool dw_fresh = dweight && claim(dweight, C), db_fresh = dbias && claim(dbias, C);
    const float* w = F(weight);
    // Per-thread partial sums for dweight/dbias, reduced in a fixed order (deterministic).
    int nt = omp_get_max_threads();
    std::vector<float> part(static_cast<std::size_t>(nt) * 2 * C, 0.0f);
#pragma omp parallel
    {
      int id = omp_get_thread_num();
      float* pw = part.data() + static_cast<std::size_t>(id) * 2 * C;
      float* pb = pw + C;
#pragma omp for schedule(static)
      for (int n = 0; n < N; ++n) {
        const float* x = F(inp) + static_cast<std::size_t>(n) * C;
        const float* dy = F(dout) + static_cast<std::size_t>(n) * C;
        float* dx = F(dinp) + static_cast<std::size_t>(n) * C;
        float m = F(mean)[n], s = F(rstd)[n];
        float sum_dn = 0, sum_dn_xhat = 0;
        for (int c = 0; c < C; ++c) {
          float xhat = (x[c] - m) * s;
          float dn = dy[c] * w[c];
          sum_dn += dn;
          sum_dn_xhat += dn * xhat;
          pw[c] += dy[c] * xhat;
          pb[c] += dy[c];
        }
        sum_dn /= C;
        sum_dn_xhat /= C;
        for (int c = 0; c < C; ++c) {
          float xhat = (x[c] - m) * s;
          dx[c] += (dy[c] * w[c] - sum_dn - xhat * sum_dn_xhat) * s;
        }
      }
    }
    reduce_parts(part, nt, 2 * C, [&](int c, float v) {
      if (c < C) {
        if (dweight) F(dweight)[c] = (dw_fresh ? 0.0f : F(dweight)[c]) + v;
      } else if (dbias) {
        F(dbias)[c - C] = (db_fresh ? 0.0f : F(dbias)[c - C]) + v;
      }
    });
  }

  void rmsnorm_forward(Buf out, Buf rstd, const Buf& inp, const Buf& weight, int N, int C,
                       float eps) override {
    touch(out, rstd, inp, weight);
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; ++n) {
      const float* x = F(inp) + static_cast<std::size_t>(n) * C;
      float* y = F(out) + static_cast<std::size_t>(n) * C;
      float ss = 0;
#pragma omp simd reduction(+ : ss)
      for (int c = 0; c < C; ++c) ss += x[c] * x[c];
      float s = 1.0f / std::sqrt(ss / C + eps);
      const float* w = F(weight);
      for (int c = 0; c < C; ++c) y[c] = x[c] * s * w[c];
      F(rstd)[n] = s;
    }
  }

  void rmsnorm_backward(Buf dinp, Buf dweight, const Buf& dout, const Buf& inp, const Buf& weight,
                        const Buf& rstd, int N, int C) override {
    touch(dinp, dout, inp, weight, rstd);
    const bool dw_fresh = dweight && claim(dweight, C);
    const float* w = F(weight);
    int nt = omp_get_max_threads();
    std::vector<float> part(static_cast<std::size_t>(nt) * C, 0.0f);
#pragma omp parallel
    {
      float* pw = part.data() + static_cast<std::size_t>(omp_get_thread_num()) * C;
#pragma omp for schedule(static)
      for (int n = 0; n < N; ++n) {
        const float* x = F(inp) + static_cast<std::size_t>(n) * C;
        const float* dy = F(dout) + static_cast<std::size_t>(n) * C;
        float* dx = F(dinp) + static_cast<std::size_t>(n) * C;
        float s = F(rstd)[n];
        float dot = 0;
        for (int c = 0; c < C; ++c) {
          dot += dy[c] * w[c] * x[c];
          pw[c] += dy[c] * x[c] * s;
        }
        float k = dot * s * s / C;
        for (int c = 0; c < C; ++c) dx[c] += (dy[c] * w[c] - x[c] * k) * s;
      }
    }
    if (dweight) reduce_parts(part, nt, C, [&](int c, float v) { F(dweight)[c] = (dw_fresh ? 0.0f : F(dweight)[c]) + v; });
  }

  // ---------------------------------------------------------------- elementwise
  void add(Buf out, const Buf& a, const Buf& b, std::size_t n) override {
    touch(out, a, b);
    float* o = F(out);
    const float *x = F(a), *y = F(b);
#pragma omp parallel for schedule(static)
    for (std::size_t i = 0; i < n; ++i) o[i] = x[i] + y[i];
  }
  void accumulate(Buf dst, const Buf& src, std::size_t n) override {
    touch(dst, src);
    float* o = F(dst);
    const float* x = F(src);
#pragma omp parallel for schedule(static)
    for (std::size_t i = 0; i < n; ++i) o[i] += x[i];
  }

  static constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2/pi)

  void gelu_forward(Buf out, const Buf& inp, std::size_t n) override {
    touch(out, inp);
    float* o = F(out);
    const float* x = F(inp);
#pragma omp parallel for simd schedule(static)
    for (std::size_t i = 0; i < n; ++i) {
      float v = x[i];
      o[i] = 0.5f * v * (1.0f + fast_tanh(kGeluScale * (v + 0.044715f * v * v * v)));
    }
  }
  void gelu_backward(Buf dinp, const Buf& inp, const Buf& dout, std::size_t n) override {
    touch(dinp, inp, dout);
    float* dx = F(dinp);
    const float *x = F(inp), *dy = F(dout);
#pragma omp parallel for simd schedule(static)
    for (std::size_t i = 0; i < n; ++i) {
      float v = x[i];
      float u = kGeluScale * (v + 0.044715f * v * v * v);
      float t = fast_tanh(u);
      float du = kGeluScale * (1.0f + 3.0f * 0.044715f * v * v);
      dx[i] = dy[i] * (0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * du);
    }
  }

  void swiglu_forward(Buf out, const Buf& inp, int N, int F_) override {
    touch(out, inp);
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; ++n) {
      const float* g = F(inp) + static_cast<std::size_t>(n) * 2 * F_;
      const float* u = g + F_;
      float* o = F(out) + static_cast<std::size_t>(n) * F_;
#pragma omp simd
      for (int f = 0; f < F_; ++f) o[f] = g[f] * fast_sigmoid(g[f]) * u[f];
    }
  }
  void swiglu_backward(Buf dinp, const Buf& inp, const Buf& dout, int N, int F_) override {
    touch(dinp, inp, dout);
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; ++n) {
      const float* g = F(inp) + static_cast<std::size_t>(n) * 2 * F_;
      const float* u = g + F_;
      const float* dy = F(dout) + static_cast<std::size_t>(n) * F_;
      float* dg = F(dinp) + static_cast<std::size_t>(n) * 2 * F_;
      float* du = dg + F_;
#pragma omp simd
      for (int f = 0; f < F_; ++f) {
        float sig = fast_sigmoid(g[f]);
        float silu = g[f] * sig;
        du[f] = dy[f] * silu;
        dg[f] = dy[f] * u[f] * sig * (1.0f + g[f] * (1.0f - sig));
      }
    }
  }

  // ---------------------------------------------------------------- rope
  void rope_forward(Buf out, const Buf& qkv, const AttentionShape& s, float theta) override {
    touch(out, qkv);
    rope(F(out), F(qkv), s, theta, 1.0f);
  }
  void rope_backward(Buf dqkv, const Buf& dout, const AttentionShape& s, float theta) override {
    touch(dqkv, dout);
    rope(F(dqkv), F(dout), s, theta, -1.0f);  // the inverse rotation is the transpose
  }

  // ---------------------------------------------------------------- attention
  void attention_forward(Buf out, Buf lse, const Buf& qkv, const AttentionShape& s) override {
    touch(out, lse, qkv);
    const int B = s.B, T = s.T, H = s.n_head, KV = s.n_kv_head, hd = s.head_dim;
    const int row = (H + 2 * KV) * hd;
    const int group = H / KV;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
#pragma omp parallel
    {
      std::vector<float> scores(T);
#pragma omp for collapse(2) schedule(dynamic, 4)
      for (int bh = 0; bh < B * H; ++bh) {
        for (int t = 0; t < T; ++t) {
          int b = bh / H, h = bh % H, kvh = h / group;
          const float* base = F(qkv) + static_cast<std::size_t>(b) * T * row;
          const float* q = base + static_cast<std::size_t>(t) * row + h * hd;
          float mx = -INFINITY;
          for (int j = 0; j <= t; ++j) {
            const float* k = base + static_cast<std::size_t>(j) * row + (H + kvh) * hd;
            float d = 0;
#pragma omp simd reduction(+ : d)
            for (int i = 0; i < hd; ++i) d += q[i] * k[i];
            d *= scale;
            scores[j] = d;
            mx = std::max(mx, d);
          }
          float sum = 0;
          for (int j = 0; j <= t; ++j) {
            scores[j] = fast_exp(scores[j] - mx);
            sum += scores[j];
          }
          float* o = F(out) + (static_cast<std::size_t>(b) * T + t) * H * hd + h * hd;
          std::fill(o, o + hd, 0.0f);
          float inv = 1.0f / sum;
          for (int j = 0; j <= t; ++j) {
            const float* v = base + static_cast<std::size_t>(j) * row + (H + KV + kvh) * hd;
            float p = scores[j] * inv;
#pragma omp simd
            for (int i = 0; i < hd; ++i) o[i] += p * v[i];
          }
          F(lse)[static_cast<std::size_t>(bh) * T + t] = mx + std::log(sum);
        }
      }
    }
  }

  void attention_backward(Buf dqkv, const Buf& dout, const Buf& qkv, const Buf& out,
                          const Buf& lse, const AttentionShape& s) override {
    touch(dqkv, dout, qkv, out, lse);
    const int B = s.B, T = s.T, H = s.n_head, KV = s.n_kv_head, hd = s.head_dim;
    const int row = (H + 2 * KV) * hd;
    const int group = H / KV;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    zero(dqkv, static_cast<std::size_t>(B) * T * row);
    // One task per (batch, kv head): it owns dK/dV of that head and dQ of its query heads, so
    // no two threads write the same gradient.
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; ++b) {
      for (int kvh = 0; kvh < KV; ++kvh) {
        const float* base = F(qkv) + static_cast<std::size_t>(b) * T * row;
        float* dbase = F(dqkv) + static_cast<std::size_t>(b) * T * row;
        for (int h = kvh * group; h < (kvh + 1) * group; ++h) {
          for (int t = 0; t < T; ++t) {
            const float* q = base + static_cast<std::size_t>(t) * row + h * hd;
            float* dq = dbase + static_cast<std::size_t>(t) * row + h * hd;
            std::size_t orow = (static_cast<std::size_t>(b) * T + t) * H * hd + h * hd;
            const float* o = F(out) + orow;
            const float* dy = F(dout) + orow;
            float D = 0;
#pragma omp simd reduction(+ : D)
            for (int i = 0; i < hd; ++i) D += dy[i] * o[i];
            float l = F(lse)[(static_cast<std::size_t>(b) * H + h) * T + t];
            for (int j = 0; j <= t; ++j) {
              const float* k = base + static_cast<std::size_t>(j) * row + (H + kvh) * hd;
              const float* v = k + KV * hd;
              float* dk = dbase + static_cast<std::size_t>(j) * row + (H + kvh) * hd;
              float* dv = dk + KV * hd;
              float sc = 0, dp = 0;
#pragma omp simd reduction(+ : sc, dp)
              for (int i = 0; i < hd; ++i) {
                sc += q[i] * k[i];
                dp += dy[i] * v[i];
              }
              float p = fast_exp(sc * scale - l);
              float ds = p * (dp - D) * scale;
#pragma omp simd
              for (int i = 0; i < hd; ++i) {
                dq[i] += ds * k[i];
                dk[i] += ds * q[i];
                dv[i] += p * dy[i];
              }
            }
          }
        }
      }
    }
  }

  // ---------------------------------------------------------------- loss
  void cross_entropy_forward_backward(Buf losses, Buf logits, const Buf& targets, int N, int V,
                                      float dloss) override {
    touch(losses, logits, targets);
    // Checked before the parallel loop: an exception must not leave an OpenMP region.
    for (int n = 0; n < N; ++n)
      if (I(targets)[n] >= V) fail("target id {} is outside the vocabulary ({})", I(targets)[n], V);
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; ++n) {
      float* z = F(logits) + static_cast<std::size_t>(n) * V;
      int tgt = I(targets)[n];
      if (tgt < 0) {
        F(losses)[n] = 0;
        if (dloss != 0) std::memset(z, 0, static_cast<std::size_t>(V) * 4);
        continue;
      }
      float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
      for (int v = 0; v < V; ++v) mx = std::max(mx, z[v]);
      const float target_logit = z[tgt];
      float sum = 0;
      if (dloss != 0) {
        // exp once, kept in place, then scaled: the row is read twice instead of three times
#pragma omp simd reduction(+ : sum)
        for (int v = 0; v < V; ++v) sum += (z[v] = fast_exp(z[v] - mx));
        const float k = dloss / sum;
#pragma omp simd
        for (int v = 0; v < V; ++v) z[v] *= k;
        z[tgt] -= dloss;
      } else {
#pragma omp simd reduction(+ : sum)
        for (int v = 0; v < V; ++v) sum += fast_exp(z[v] - mx);
      }
      F(losses)[n] = mx + std::log(sum) - target_logit;
    }
  }

  // ---------------------------------------------------------------- optimizer
  void adamw_update(Buf master, Buf param, const Buf& grad, Buf m, Buf v, std::size_t n,
                    const AdamWParams& p) override {
    touch(master, param, grad, m, v);
    // Same operation order as torch.optim.AdamW, so 10 steps agree to rounding.
    const float bc1 = 1.0f - std::pow(p.beta1, static_cast<float>(p.step));
    const float bc2 = 1.0f - std::pow(p.beta2, static_cast<float>(p.step));
    const float step_size = p.lr / bc1;
    const float bc2_sqrt = std::sqrt(bc2);
    const float decay = 1.0f - p.lr * p.weight_decay;
    // A weight matrix with a bf16 copy gets the copy written here, while each weight is in a
    // register, instead of a second pass over the matrix at its next matmul.
    uint16_t* bf = nullptr;
    if (bf16_ && param.kind == Kind::Param) {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = weight_cache_.find(param.ptr);
      if (it != weight_cache_.end() && it->second.data.size() == n) bf = it->second.data.data();
    }
    weights_written(param, bf ? param.ptr : nullptr);
    weights_written(master, bf ? param.ptr : nullptr);
    float *w = F(master), *mm = F(m), *vv = F(v), *pc = F(param);
    const float* g = F(grad);
    auto update = [&](std::size_t i) {
      float gi = g[i] * p.grad_scale;
      mm[i] = mm[i] * p.beta1 + (1.0f - p.beta1) * gi;
      vv[i] = vv[i] * p.beta2 + (1.0f - p.beta2) * gi * gi;
      float wi = w[i] * decay;
      wi -= step_size * mm[i] / (std::sqrt(vv[i]) / bc2_sqrt + p.eps);
      w[i] = wi;
      if (pc != w) pc[i] = wi;
      return wi;
    };
    if (bf) {
#pragma omp parallel for simd schedule(static)
      for (std::size_t i = 0; i < n; ++i) bf[i] = to_bf16(update(i));
    } else {
#pragma omp parallel for simd schedule(static)
      for (std::size_t i = 0; i < n; ++i) update(i);
    }
  }

  double sum_squares(const Buf& b, std::size_t n) override {
    touch(b);
    // Fixed chunks combined in order: the same bits for any thread count (resume is bitwise).
    const float* x = F(b);
    const std::size_t chunk = 1 << 16, nchunks = (n + chunk - 1) / chunk;
    std::vector<double> part(nchunks, 0.0);
#pragma omp parallel for schedule(static)
    for (std::size_t c = 0; c < nchunks; ++c) {
      // 16 interleaved partial sums (element i goes to lane i % 16): the loop vectorizes and is
      // no longer one long chain of dependent double adds, and the order is still fixed.
      constexpr int kLanes = 16;
      double acc[kLanes] = {};
      const std::size_t lo = c * chunk, hi = std::min(n, (c + 1) * chunk);
      std::size_t i = lo;
      for (; i + kLanes <= hi; i += kLanes) {
#pragma omp simd
        for (int j = 0; j < kLanes; ++j) acc[j] += static_cast<double>(x[i + j]) * x[i + j];
      }
      for (int j = 0; i < hi; ++i, ++j) acc[j] += static_cast<double>(x[i]) * x[i];
      double s = 0;
      for (double a : acc) s += a;
      part[c] = s;
    }
    double s = 0;
    for (double p : part) s += p;
    return s;
  }
  void dropout_scale(Buf out, const Buf& inp, int N, int C, float p, uint64_t seed, uint64_t first_row,
                     float scale) override {
    touch(out, inp);
    const float* x = F(inp);
    float* y = F(out);
    const float keep_scale = p > 0.0f ? scale / (1.0f - p) : scale;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; ++n) {
      const std::size_t row = static_cast<std::size_t>(n) * C;
      for (int c = 0; c < C; ++c) {
        const bool keep = p <= 0.0f || dropout_uniform(seed, first_row + n, C, c) >= p;
        y[row + c] = keep ? x[row + c] * keep_scale : 0.0f;
      }
    }
  }
  void copy_strided(Buf dst, int dst_stride, const Buf& src, int src_stride, int N, int C,
                    bool accumulate) override {
    touch(dst, src);
    const float* x = F(src);
    float* y = F(dst);
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; ++n) {
      float* d = y + static_cast<std::size_t>(n) * dst_stride;
      const float* s = x + static_cast<std::size_t>(n) * src_stride;
      if (accumulate)
        for (int c = 0; c < C; ++c) d[c] += s[c];
      else
        for (int c = 0; c < C; ++c) d[c] = s[c];
    }
  }

  double sum(const Buf& b, std::size_t n) override {
    touch(b);
    const float* x = F(b);
    double s = 0;
    for (std::size_t i = 0; i < n; ++i) s += x[i];  // serial: order fixed for determinism
    return s;
  }

  // See cpu_matmul_bf16 (bf16_ must be on: the inputs are taken as they are).
  void matmul_bf16_inputs(const uint16_t* a, int M, int K, const uint16_t* w, int N, float* c) {
    gemm(nullptr, {M, K}, {K, 1}, nullptr, {K, N}, {1, K}, c, {M, N}, nullptr, false, w, a);
  }

 private:
  // Deferred gradient zeroing. zero() on a Grad buffer (the trainer's zero_grad of all weights
  // every step) only records the range here. The first weight/bias gradient written into a
  // whole pending range then overwrites it instead of adding (claim): a matmul without oneDNN's
  // sum post-op, which measured 15-20% faster for the weight gradients (K = tokens is short, so
  // reading C back is a large share), and no separate 0.5 GB memset at 124M. Every other kernel
  // first writes real zeros into the pending parts of any Grad buffer it is given (touch), so
  // nothing ever reads a stale gradient. Ranges are [lo, hi) byte addresses, disjoint.
  std::map<std::uintptr_t, std::uintptr_t> pending_;

  static std::pair<std::uintptr_t, std::uintptr_t> range(const Buf& b, std::size_t n) {
    const auto lo = reinterpret_cast<std::uintptr_t>(b.ptr);
    return {lo, lo + n * 4};
  }
  // Removes [lo, hi) from the pending set; with `fill`, writes zeros there first.
  void drop_pending(std::uintptr_t lo, std::uintptr_t hi, bool fill = false) {
    if (pending_.empty() || lo >= hi) return;
    auto it = pending_.upper_bound(lo);
    if (it != pending_.begin()) --it;
    while (it != pending_.end() && it->first < hi) {
      const std::uintptr_t a = it->first, b = it->second;
      if (b <= lo) {
        ++it;
        continue;
      }
      const std::uintptr_t x = std::max(a, lo), y = std::min(b, hi);
      if (fill) std::memset(reinterpret_cast<void*>(x), 0, y - x);
      it = pending_.erase(it);
      if (a < x) pending_.emplace(a, x);
      if (y < b) it = pending_.emplace(y, b).first, ++it;
    }
  }
  void drop_pending(const Buf& b) {
    auto [lo, hi] = range(b, b.count);
    drop_pending(lo, hi);
  }
  template <typename... B>
  void touch(const B&... b) {
    if (pending_.empty()) return;
    for (const Buf* x : {&b...}) {
      if (x->ptr && x->kind == Kind::Grad) {
        auto [lo, hi] = range(*x, x->count);
        drop_pending(lo, hi, true);
      }
    }
  }
  // True when all of b[0, n) is pending zero: the caller then overwrites it (and it is no longer
  // pending). Otherwise the pending parts are zeroed and the caller adds as usual.
  bool claim(const Buf& b, std::size_t n) {
    if (pending_.empty() || b.kind != Kind::Grad) return false;
    auto [lo, hi] = range(b, n);
    auto it = pending_.upper_bound(lo);
    const bool whole = it != pending_.begin() && std::prev(it)->second >= hi;
    drop_pending(lo, hi, !whole);
    return whole;
  }

  template <typename Fn>
  static void reduce_parts(const std::vector<float>& part, int nt, int width, Fn&& apply) {
    for (int c = 0; c < width; ++c) {
      float s = 0;
      for (int t = 0; t < nt; ++t) s += part[static_cast<std::size_t>(t) * width + c];
      apply(c, s);
    }
  }

  static void rope(float* out, const float* in, const AttentionShape& s, float theta, float sign) {
    const int H = s.n_head, KV = s.n_kv_head, hd = s.head_dim, half = hd / 2;
    const int row = (H + 2 * KV) * hd;
    const long N = static_cast<long>(s.B) * s.T;
    std::vector<float> inv_freq(half);
    for (int i = 0; i < half; ++i)
      inv_freq[i] = 1.0f / std::pow(theta, static_cast<float>(2 * i) / static_cast<float>(hd));
#pragma omp parallel for schedule(static)
    for (long n = 0; n < N; ++n) {
      const float pos = static_cast<float>(n % s.T);
      const float* x = in + n * row;
      float* y = out + n * row;
      for (int h = 0; h < H + KV; ++h) {  // q heads then k heads
        const float* xh = x + h * hd;
        float* yh = y + h * hd;
        for (int i = 0; i < half; ++i) {
          float ang = pos * inv_freq[i];
          float c = std::cos(ang), sn = sign * std::sin(ang);
          float a = xh[i], b = xh[i + half];
          yh[i] = a * c - b * sn;
          yh[i + half] = b * c + a * sn;
        }
      }
      if (out != in) std::memcpy(y + (H + KV) * hd, x + (H + KV) * hd, KV * hd * 4);
    }
  }

  // C[M,N] (+)= A[M,K] * B[K,N] with arbitrary strides; optional bias[N].
  using Dims = std::array<long, 2>;
  // `b_bf16` / `a_bf16`: that input already rounded to bf16 in its layout (a cached weight, a
  // gradient used twice), used instead of converting b / a.
  void gemm(const float* a, Dims ad, Dims as, const float* b, Dims bd, Dims bs, float* c, Dims cd,
            const float* bias, bool accumulate, const uint16_t* b_bf16 = nullptr, const uint16_t* a_bf16 = nullptr) {
    std::lock_guard<std::mutex> lock(mu_);
    const char* ap = reinterpret_cast<const char*>(a);
    const char* bp = reinterpret_cast<const char*>(b);
    if (bf16_) {  // round inputs to bf16, keeping the strides the descriptors are built with
      ap = a_bf16 ? reinterpret_cast<const char*>(a_bf16) : static_cast<const char*>(convert(a, ad, as, scratch_a_));
      bp = b_bf16 ? reinterpret_cast<const char*>(b_bf16) : static_cast<const char*>(convert(b, bd, bs, scratch_b_));
    }
    const long M = ad[0], K = ad[1], N = bd[1], esz = bf16_ ? 2 : 4;
    // A B matrix far larger than the cache (the vocabulary projection's input gradient reads all
    // 154 MB of the 124M model's embedding) is streamed from memory once per block of A's rows:
    // that matmul ran at ~65% of the layers' rate. Splitting K into panels of B that stay in the
    // cache (each accumulating into C) keeps B's traffic to one pass. Splitting N instead (the
    // forward's shape) measured no faster, so only K is split.
    const long b_bytes = K * N * esz;
    if (K > N && b_bytes > 4 * gemm_panel_bytes_) {
      const long panels = (b_bytes + gemm_panel_bytes_ - 1) / gemm_panel_bytes_;
      const long kc = ((K + panels - 1) / panels + 63) / 64 * 64;
      for (long k0 = 0; k0 < K; k0 += kc) {
        const long kn = std::min(kc, K - k0);
        const char* a_panel = ap + k0 * as[1] * esz;
        Dims a_strides = as;
        if (as[1] == 1) {
          // A row-major: its panel is strided, which sends oneDNN to a gemm that runs 4x slower
          // with two threads than with one; a dense copy of the panel keeps it on brgemm.
          panel_a_.resize(static_cast<std::size_t>(M * kn * esz));
          char* dst = panel_a_.data();
#pragma omp parallel for schedule(static)
          for (long m = 0; m < M; ++m) std::memcpy(dst + m * kn * esz, a_panel + m * as[0] * esz, kn * esz);
          a_panel = dst;
          a_strides = {kn, 1};
        }
        gemm_run(a_panel, {M, kn}, a_strides, bp + k0 * bs[0] * esz, {kn, N}, bs, c, {M, N},
                 k0 == 0 ? bias : nullptr, accumulate || k0 > 0);
      }
    } else {
      gemm_run(ap, {M, K}, as, bp, {K, N}, bs, c, {M, N}, bias, accumulate);
    }
  }

  // One oneDNN matmul, dense C[M,N]; a and b already in the matmul's input type.
  void gemm_run(const void* a, Dims ad, Dims as, const void* b, Dims bd, Dims bs, float* c, Dims cd,
                const float* bias, bool accumulate) {
    using dt = dnnl::memory::data_type;
    const dt in_type = bf16_ ? dt::bf16 : dt::f32;
    Key key{ad[0], ad[1], bd[1], as[0], as[1], bs[0], bs[1], bias != nullptr, accumulate};
    auto it = cache_.find(key);
    if (it == cache_.end()) {
      dnnl::memory::desc amd({ad[0], ad[1]}, in_type, {as[0], as[1]});
      dnnl::memory::desc bmd({bd[0], bd[1]}, in_type, {bs[0], bs[1]});
      dnnl::memory::desc cmd({cd[0], cd[1]}, dt::f32, {cd[1], 1});
      dnnl::primitive_attr attr;
      if (accumulate) {
        dnnl::post_ops po;
        po.append_sum(1.0f);
        attr.set_post_ops(po);
      }
      dnnl::memory::desc biasmd;
      if (bias) biasmd = dnnl::memory::desc({1, cd[1]}, dt::f32, {cd[1], 1});
      dnnl::matmul::primitive_desc pd;
      try {
        pd = bias ? dnnl::matmul::primitive_desc(dnnl::matmul::desc(amd, bmd, biasmd, cmd), attr, engine_)
                  : dnnl::matmul::primitive_desc(dnnl::matmul::desc(amd, bmd, cmd), attr, engine_);
      } catch (const dnnl::error& e) {
        fail("oneDNN cannot build a {} matmul {}x{}x{}: {}", bf16_ ? "bf16" : "fp32", ad[0], ad[1],
             bd[1], e.what());
      }
      it = cache_.emplace(key, Prim{pd, dnnl::matmul(pd)}).first;
    }
    Prim& p = it->second;
    dnnl::memory am(p.pd.src_desc(), engine_, const_cast<void*>(a));
    dnnl::memory bm(p.pd.weights_desc(), engine_, const_cast<void*>(b));
    dnnl::memory cm(p.pd.dst_desc(), engine_, c);
    std::unordered_map<int, dnnl::memory> args{
        {DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}};
    if (bias) args.emplace(DNNL_ARG_BIAS, dnnl::memory(p.pd.bias_desc(), engine_, const_cast<float*>(bias)));
    p.prim.execute(stream_, args);
    stream_.wait();
  }

  // Converts a strided fp32 matrix to bf16 in the same layout (the strides describe a dense block).
  static const void* convert(const float* src, Dims d, Dims s, std::vector<uint16_t>& buf) {
    std::size_t n = static_cast<std::size_t>(d[0]) * d[1];
    (void)s;
    if (buf.size() < n) buf.resize(n);
    uint16_t* o = buf.data();
#pragma omp parallel for schedule(static)
    for (std::size_t i = 0; i < n; ++i) o[i] = to_bf16(src[i]);
    return o;
  }

  // The bf16 matmul path rounds each weight matrix once per change instead of on every matmul
  // that reads it (forward and the input gradient read the same weights; with gradient
  // accumulation, every micro-batch does): rounding costs about as much as the matmul itself at
  // small batches. Any backend call that may write a Param buffer invalidates the copies of the
  // matrices it overlaps; parameters only change through the backend (the optimizer update,
  // uploads of gathered ZeRO shards or loaded checkpoints). The optimizer refreshes a copy that
  // covers exactly the tensor it updates (`refreshed`) instead of invalidating it.
  void weights_written(const Buf& b, const void* refreshed = nullptr, bool freed = false) {
    if (b.kind != Kind::Param && b.kind != Kind::Master) return;
    std::lock_guard<std::mutex> lock(mu_);
    const auto lo = reinterpret_cast<std::uintptr_t>(b.ptr), hi = lo + b.count * 4;
    for (auto it = weight_cache_.begin(); it != weight_cache_.end();) {
      const auto clo = reinterpret_cast<std::uintptr_t>(it->first), chi = clo + it->second.data.size() * 4;
      const bool overlaps = clo < hi && lo < chi;
      if (overlaps && freed) {
        it = weight_cache_.erase(it);
        continue;
      }
      if (overlaps && it->first != refreshed) it->second.valid = false;
      ++it;
    }
  }
  const uint16_t* weights_bf16(const Buf& w, std::size_t n) {
    if (!bf16_ || w.kind != Kind::Param) return nullptr;
    std::lock_guard<std::mutex> lock(mu_);
    CachedWeights& c = weight_cache_[w.ptr];
    if (!c.valid || c.data.size() != n) {
      c.data.resize(n);
      const float* src = static_cast<const float*>(w.ptr);
      uint16_t* o = c.data.data();
#pragma omp parallel for schedule(static)
      for (std::size_t i = 0; i < n; ++i) o[i] = to_bf16(src[i]);
      c.valid = true;
    }
    return c.data.data();
  }
  struct CachedWeights {
    bool valid = false;
    std::vector<uint16_t> data;
  };

  struct Key {
    long m, k, n, as0, as1, bs0, bs1;
    bool bias, acc;
    bool operator<(const Key& o) const {
      return std::tie(m, k, n, as0, as1, bs0, bs1, bias, acc) <
             std::tie(o.m, o.k, o.n, o.as0, o.as1, o.bs0, o.bs1, o.bias, o.acc);
    }
  };
  struct Prim {
    dnnl::matmul::primitive_desc pd;
    dnnl::matmul prim;
  };

  bool bf16_;
  dnnl::engine engine_;
  dnnl::stream stream_;
  std::mutex mu_;
  std::map<Key, Prim> cache_;
  std::vector<uint16_t> scratch_a_, scratch_b_, scratch_dout_;
  std::vector<char> panel_a_;
  // Bytes of B per K panel when a matmul's B is split (see gemm); TSUMUGI_GEMM_PANEL_KB sets it
  // for tuning, and lets the tests reach the split path with small matrices.
  long gemm_panel_bytes_ = [] {
    const char* kb = std::getenv("TSUMUGI_GEMM_PANEL_KB");
    return kb && std::atol(kb) > 0 ? std::atol(kb) * 1024 : 8l << 20;
  }();
  std::unordered_map<const void*, CachedWeights> weight_cache_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(bool bf16_matmul) {
  if (bf16_matmul && !__builtin_cpu_supports("avx512bf16"))
    log::warn("this CPU has no AVX512-BF16: bf16 matmuls will be emulated by oneDNN and slow");
  return std::make_unique<CpuBackend>(bf16_matmul);
}

void cpu_matmul_bf16(const uint16_t* a, int M, int K, const uint16_t* w, int N, float* c) {
  static CpuBackend be(true);  // its primitive cache is shared by all callers (gemm locks)
  be.matmul_bf16_inputs(a, M, K, w, N, c);
}

}  // namespace tsumugi::backend
