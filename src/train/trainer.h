// `tsumugi pretrain`: the training loop over the model engine.
#pragma once

#include <string>

#include "train/run_config.h"

namespace tsumugi::train {

class Collective;

struct PretrainOptions {
  bool resume = false;
  // The ranks of a data-parallel job; nullptr = one process.
  Collective* comm = nullptr;
};

// Runs (or resumes) the configured run. Returns the process exit code: 0 done, 130 interrupted
// (a checkpoint was written). Throws Error on bad configuration, data or a non-finite loss.
int run_pretrain(const RunConfig& cfg, const PretrainOptions& opt);

// Learning rate at `step` (1-based) for the schedule in `t`.
double learning_rate(const TrainOptions& t, int64_t step);

}  // namespace tsumugi::train
