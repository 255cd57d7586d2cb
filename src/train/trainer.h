// `tsumugi pretrain`: the training loop over the model engine.
#pragma once

#include <functional>
#include <string>

#include "train/run_config.h"

namespace tsumugi::train {

struct PretrainOptions {
  bool resume = false;
  // Data parallelism: this process's rank among `world` ranks, and a gradient all-reduce (sum)
  // over a host fp32 buffer. world == 1 needs no all-reduce.
  int rank = 0, world = 1;
  std::function<void(float* data, std::size_t n)> allreduce_sum;
};

// Runs (or resumes) the configured run. Returns the process exit code: 0 done, 130 interrupted
// (a checkpoint was written). Throws Error on bad configuration, data or a non-finite loss.
int run_pretrain(const RunConfig& cfg, const PretrainOptions& opt);

// Learning rate at `step` (1-based) for the schedule in `t`.
double learning_rate(const TrainOptions& t, int64_t step);

}  // namespace tsumugi::train
