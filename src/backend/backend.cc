#include "backend/backend.h"

#include <vector>

#include "util/error.h"
#include "util/log.h"

namespace tsumugi::backend {

#ifndef TSUMUGI_HAVE_CUDA
std::unique_ptr<Backend> make_cuda_backend(std::string* why) {
  if (why) *why = "this binary was built without the CUDA backend (no nvcc at configure time, or -DTSUMUGI_WITH_CUDA=OFF)";
  return nullptr;
}
#endif

void Backend::dropout_scale(Buf out, const Buf& inp, int N, int C, float p, uint64_t seed, uint64_t first_row,
                            float scale) {
  const std::size_t n = static_cast<std::size_t>(N) * C;
  std::vector<float> h(n);
  download(h.data(), inp, n);
  const float keep_scale = p > 0.0f ? scale / (1.0f - p) : scale;
  for (int r = 0; r < N; ++r)
    for (int c = 0; c < C; ++c) {
      float& v = h[static_cast<std::size_t>(r) * C + c];
      v = (p <= 0.0f || dropout_uniform(seed, first_row + r, C, c) >= p) ? v * keep_scale : 0.0f;
    }
  upload(out, h.data(), n);
}

void Backend::add_layernorm_forward(Buf sum, Buf out, Buf mean, Buf rstd, const Buf& a, const Buf& b,
                                    const Buf& weight, const Buf& bias, int N, int C, float eps) {
  add(sum, a, b, static_cast<std::size_t>(N) * C);
  layernorm_forward(out, mean, rstd, sum, weight, bias, N, C, eps);
}

void Backend::matmul_gelu_forward(Buf out, Buf pre, const Buf& inp, const Buf& weight, const Buf& bias, int N, int IC,
                                  int OC) {
  matmul_forward(pre, inp, weight, bias, N, IC, OC);
  gelu_forward(out, pre, static_cast<std::size_t>(N) * OC);
}

void Backend::matmul_gelu_backward(Buf dpre, Buf dweight, Buf dbias, const Buf& dout, const Buf& act, const Buf& weight,
                                   const Buf& pre, Buf dact, int N, int IC, int OC) {
  matmul_backward(dact, dweight, dbias, dout, act, weight, N, IC, OC, false);
  gelu_backward(dpre, pre, dact, static_cast<std::size_t>(N) * IC);
}

void Backend::adamw_update_segments(Buf master, Buf param, const Buf& grad, Buf m, Buf v,
                                    const std::vector<AdamWSegment>& segments, const AdamWParams& p) {
  AdamWParams q = p;
  for (const AdamWSegment& s : segments) {
    if (s.count == 0) continue;
    q.weight_decay = s.weight_decay;
    adamw_update(view(master, s.offset, s.count), param ? view(param, s.offset, s.count) : Buf{},
                 view(grad, s.offset, s.count), view(m, s.offset, s.count), view(v, s.offset, s.count), s.count, q);
  }
}

void Backend::copy_strided(Buf dst, int dst_stride, const Buf& src, int src_stride, int N, int C, bool accumulate) {
  if (N <= 0 || C <= 0) return;
  const std::size_t dn = static_cast<std::size_t>(N - 1) * dst_stride + C;
  const std::size_t sn = static_cast<std::size_t>(N - 1) * src_stride + C;
  std::vector<float> d(dn), s(sn);
  download(s.data(), src, sn);
  download(d.data(), dst, dn);
  for (int r = 0; r < N; ++r)
    for (int c = 0; c < C; ++c) {
      float& o = d[static_cast<std::size_t>(r) * dst_stride + c];
      const float v = s[static_cast<std::size_t>(r) * src_stride + c];
      o = accumulate ? o + v : v;
    }
  upload(dst, d.data(), dn);
}

std::unique_ptr<Backend> make_backend(const std::string& name) {
  if (name == "cpu") return make_cpu_backend(false);
  if (name == "cpu-bf16") return make_cpu_backend(true);
  if (name == "cuda" || name == "auto") {
    std::string why;
    auto cuda = make_cuda_backend(&why);
    if (cuda) return cuda;
    if (name == "cuda") fail("backend 'cuda' is not available: {}", why);
    log::info("no GPU backend ({}); running on the CPU", why);
    return make_cpu_backend(false);
  }
  fail("unknown backend '{}' (expected auto, cpu, cpu-bf16 or cuda)", name);
}

}  // namespace tsumugi::backend
