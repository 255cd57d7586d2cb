#include "backend/backend.h"

#include "util/error.h"
#include "util/log.h"

namespace tsumugi::backend {

#ifndef TSUMUGI_HAVE_CUDA
std::unique_ptr<Backend> make_cuda_backend(std::string* why) {
  if (why) *why = "this binary was built without the CUDA backend (no nvcc at configure time, or -DTSUMUGI_WITH_CUDA=OFF)";
  return nullptr;
}
#endif

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
