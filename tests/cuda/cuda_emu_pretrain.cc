// `tsumugi pretrain` on the CUDA emulator: the trainer with the emulated CUDA backend, so that
// under mpirun it takes the GPU data-parallel path (gradients summed through backend::DeviceComm,
// i.e. nccl_comm.cu over the MPI-backed NCCL stand-in). Used by cuda_emu_pretrain_test.cc; not a
// user tool. Arguments: --config FILE [--set key=value]... [--resume]
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "train/collective.h"
#include "train/run_config.h"
#include "train/trainer.h"
#include "util/error.h"
#include "util/log.h"

namespace tsumugi::backend {
std::unique_ptr<Backend> make_emulated_cuda_backend(std::string* why);
}

int main(int argc, char** argv) {
  using namespace tsumugi;
  std::string config;
  std::vector<std::string> sets;
  bool resume = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--config") && i + 1 < argc) config = argv[++i];
    else if (!std::strcmp(argv[i], "--set") && i + 1 < argc) sets.push_back(argv[++i]);
    else if (!std::strcmp(argv[i], "--resume")) resume = true;
    else {
      std::fprintf(stderr, "usage: %s --config FILE [--set key=value]... [--resume]\n", argv[0]);
      return 2;
    }
  }
  auto comm = train::make_collective();
  try {
    train::RunConfig cfg = train::load_run_config(config, sets);
    train::PretrainOptions opt;
    opt.resume = resume;
    opt.comm = comm.get();
    opt.make_backend = [](const std::string& name) {
      if (name != "cuda") fail("the emulator runs backend = 'cuda' only, not '{}'", name);
      std::string why;
      auto be = backend::make_emulated_cuda_backend(&why);
      if (!be) fail("the emulated CUDA backend failed: {}", why);
      return be;
    };
    if (comm->rank() != 0) log::set_level(log::Level::warn);
    if (comm->size() > 1 && comm->rank() == 0) log::info("data parallel over {} {} ranks", comm->size(), comm->kind());
    return train::run_pretrain(cfg, opt);
  } catch (const std::exception& e) {
    if (comm->size() > 1) comm->abort(e.what());
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
