// `tsumugi pretrain` / `tsumugi generate` end to end on a small synthetic Megatron dataset:
// bitwise resume, outputs of a run, interruption, non-finite loss, bad data and bad configs.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <random>
#include <thread>

#include "data/indexed_dataset.h"
#include "formats/safetensors.h"
#include "test_util.h"
#include "train/checkpoint.h"
#include "util/io.h"

using namespace tsumugi;
using tsumugi::testing::run_metrics;
using tsumugi::testing::run_tsumugi;
using tsumugi::testing::tsumugi_binary;
using tsumugi::testing::TempDir;
using tsumugi::testing::write_bytes;
namespace fs = std::filesystem;

namespace {

// Documents with a learnable structure (repeating ramps) so the loss visibly falls.
void write_dataset(const std::string& prefix, int docs, uint64_t seed) {
  data::IndexedDatasetWriter w(prefix, data::DType::uint16);
  std::mt19937 rng(seed);
  for (int d = 0; d < docs; ++d) {
    std::vector<int32_t> t;
    int start = rng() % 200, len = 20 + rng() % 60;
    for (int i = 0; i < len; ++i) t.push_back(8 + (start + i * 3) % 240);
    t.push_back(7);  // EOD
    w.add_document(t);
  }
  w.finish();
}

class PretrainCli : public ::testing::Test {
 protected:
  void SetUp() override {
    data_ = dir_.file("tokens");
    write_dataset(data_, 400, 5);
    config_ = dir_.file("run.toml");
    write_bytes(config_,
                "backend = 'cpu'\n"
                "[data]\ntrain = ['" + data_ + "']\nvalid_fraction = 0.05\n"
                "[model]\npreset = 'gpt2-tiny'\nn_layer = 2\nd_model = 32\nn_head = 2\nvocab_size = 256\nmax_seq = 32\n"
                "[train]\nsteps = 8\nbatch_size = 4\nmicro_batch_size = 2\nseq_len = 32\nlr = 1e-2\nwarmup_steps = 2\n"
                "eval_interval = 4\neval_batches = 2\ncheckpoint_interval = 4\nkeep_checkpoints = 3\nlog_interval = 4\n"
                "report_interval = 2\nsample_tokens = 0\n");
  }
  TempDir dir_;
  std::string data_, config_;
};

TEST_F(PretrainCli, RunWritesMetricsCheckpointsReportAndTensorBoard) {
  std::string out_dir = dir_.file("a");
  run_tsumugi("pretrain --config " + config_ + " --set out_dir=" + out_dir);
  auto m = run_metrics(out_dir);
  ASSERT_EQ(m.size(), 8u);
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(m[i]["step"], i + 1);
    for (const char* k : {"loss", "lr", "grad_norm", "tokens_per_s", "mfu", "mem_bytes"}) EXPECT_TRUE(m[i].contains(k)) << k;
  }
  EXPECT_TRUE(m[3].contains("val_loss"));
  EXPECT_LT(m[7]["loss"].get<double>(), m[0]["loss"].get<double>() - 0.2) << m[0].dump() << "\n" << m[7].dump();
  auto cks = train::list_checkpoints(out_dir);
  ASSERT_EQ(cks.size(), 2u);  // steps 4 and 8
  for (const char* f : {"model.safetensors", "config.json", "optimizer.safetensors", "trainer_state.json"})
    EXPECT_TRUE(fs::exists(fs::path(cks[1]) / f)) << f;
  formats::SafetensorsFile st(cks[1] + "/model.safetensors");
  EXPECT_EQ(st.at("transformer.h.0.attn.c_attn.weight").shape, (std::vector<int64_t>{32, 96}));  // Conv1D [in, out]
  EXPECT_TRUE(fs::exists(out_dir + "/report.html"));
  bool tb = false;
  for (auto& e : fs::directory_iterator(out_dir + "/tensorboard"))
    tb |= e.path().filename().string().rfind("events.out.tfevents.", 0) == 0;
  EXPECT_TRUE(tb);
  // generate: greedy decoding is deterministic and ids stay inside the vocabulary.
  std::string g1 = run_tsumugi("generate --model " + cks[1] + " --prompt-ids '7 20 23' --max-tokens 5 --output-format ids");
  std::string g2 = run_tsumugi("generate --model " + cks[1] + " --prompt-ids '7 20 23' --max-tokens 5 --output-format ids");
  EXPECT_EQ(g1, g2);
  std::istringstream ids(g1);
  int id, count = 0;
  while (ids >> id) {
    EXPECT_GE(id, 0);
    EXPECT_LT(id, 256);
    ++count;
  }
  EXPECT_EQ(count, 5);
}

TEST_F(PretrainCli, ResumeIsBitwiseIdentical) {
  std::string straight = dir_.file("straight"), split = dir_.file("split");
  run_tsumugi("pretrain --config " + config_ + " --set out_dir=" + straight);
  // Same run, stopped after 4 of its 8 steps (same schedule), then continued.
  run_tsumugi("pretrain --config " + config_ + " --set out_dir=" + split + " --set train.stop_after=4");
  run_tsumugi("pretrain --config " + config_ + " --set out_dir=" + split + " --resume");
  auto a = run_metrics(straight), b = run_metrics(split);
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i]["loss"].get<double>(), b[i]["loss"].get<double>()) << "step " << i + 1;
    EXPECT_EQ(a[i]["grad_norm"].get<double>(), b[i]["grad_norm"].get<double>()) << "step " << i + 1;
  }
  std::string wa = read_file(straight + "/checkpoints/step_00000008/model.safetensors");
  std::string wb = read_file(split + "/checkpoints/step_00000008/model.safetensors");
  EXPECT_TRUE(wa == wb) << "final weights differ";
  std::string oa = read_file(straight + "/checkpoints/step_00000008/optimizer.safetensors");
  std::string ob = read_file(split + "/checkpoints/step_00000008/optimizer.safetensors");
  EXPECT_TRUE(oa == ob) << "optimizer state differs";
}

// Hidden dropout and activation recomputation: masks keyed by (seed, step, global row), so a
// resumed run is still bitwise the straight one; recomputation leaves the numbers as they were.
TEST_F(PretrainCli, DropoutAndRecomputationResumeBitwise) {
  const std::string sets = " --set train.dropout=0.1 --set train.recompute=true";
  std::string straight = dir_.file("d-straight"), split = dir_.file("d-split"), keep = dir_.file("d-keep");
  run_tsumugi("pretrain --config " + config_ + sets + " --set out_dir=" + straight);
  run_tsumugi("pretrain --config " + config_ + sets + " --set out_dir=" + split + " --set train.stop_after=4");
  run_tsumugi("pretrain --config " + config_ + sets + " --set out_dir=" + split + " --resume");
  run_tsumugi("pretrain --config " + config_ + " --set train.dropout=0.1 --set out_dir=" + keep);
  auto a = run_metrics(straight), b = run_metrics(split), c = run_metrics(keep);
  ASSERT_EQ(a.size(), 8u);
  ASSERT_EQ(b.size(), 8u);
  ASSERT_EQ(c.size(), 8u);
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i]["loss"].get<double>(), b[i]["loss"].get<double>()) << "step " << i + 1;
    EXPECT_EQ(a[i]["loss"].get<double>(), c[i]["loss"].get<double>()) << "step " << i + 1 << " (recompute vs keep)";
  }
  EXPECT_TRUE(read_file(straight + "/checkpoints/step_00000008/model.safetensors") ==
              read_file(split + "/checkpoints/step_00000008/model.safetensors"));
  // And dropout did change the run.
  auto plain = dir_.file("d-plain");
  run_tsumugi("pretrain --config " + config_ + " --set out_dir=" + plain);
  EXPECT_NE(run_metrics(plain)[0]["loss"].get<double>(), a[0]["loss"].get<double>());
  int st = 0;
  const std::string out = run_tsumugi("pretrain --config " + config_ + " --set train.dropout=1 --set out_dir=" + dir_.file("bad"), &st);
  EXPECT_NE(out.find("train.dropout must be in [0, 1)"), std::string::npos) << out;
}

TEST_F(PretrainCli, LlamaFamilyTrainsAndResumes) {
  std::string out_dir = dir_.file("llama");
  std::string sets = " --set model.preset=llama-tiny --set model.n_layer=2 --set model.d_model=32 --set model.n_head=4 "
                     "--set model.n_kv_head=2 --set model.d_ff=64 --set model.vocab_size=256 --set model.max_seq=32 --set out_dir=" +
                     out_dir;
  run_tsumugi("pretrain --config " + config_ + sets + " --set train.stop_after=4");
  run_tsumugi("pretrain --config " + config_ + sets + " --resume");
  auto m = run_metrics(out_dir);
  ASSERT_EQ(m.size(), 8u);
  EXPECT_LT(m[7]["loss"].get<double>(), m[0]["loss"].get<double>());
  formats::SafetensorsFile st(train::list_checkpoints(out_dir).back() + "/model.safetensors");
  EXPECT_TRUE(st.contains("lm_head.weight"));
  EXPECT_EQ(st.at("model.layers.1.self_attn.k_proj.weight").shape, (std::vector<int64_t>{16, 32}));
}

TEST_F(PretrainCli, NonFiniteLossStopsAndKeepsLastGoodCheckpoint) {
  std::string out_dir = dir_.file("nan");
  int st = 0;
  // An absurd learning rate blows the weights up within a few steps.
  std::string out = run_tsumugi("pretrain --config " + config_ + " --set out_dir=" + out_dir +
                            " --set train.lr=1e30 --set train.warmup_steps=0 --set train.grad_clip=0 "
                            "--set train.checkpoint_interval=1 --set train.steps=50",
                        &st);
  EXPECT_NE(st, 0) << out;
  EXPECT_NE(out.find("the loss became"), std::string::npos) << out;
  EXPECT_NE(out.find("last good checkpoint"), std::string::npos) << out;
  EXPECT_FALSE(train::list_checkpoints(out_dir).empty());
}

TEST_F(PretrainCli, InterruptWritesCheckpointAndExits) {
  std::string out_dir = dir_.file("int");
  pid_t pid = fork();
  if (pid == 0) {
    std::string cfg = "--config=" + config_, od = "--set=out_dir=" + out_dir;
    execl(tsumugi_binary().c_str(), tsumugi_binary().c_str(), "-q", "pretrain", cfg.c_str(), od.c_str(), "--set=train.steps=100000",
          "--set=train.checkpoint_interval=0", static_cast<char*>(nullptr));
    _exit(127);
  }
  // Wait for the first logged step, then Ctrl-C.
  for (int i = 0; i < 600 && !fs::exists(out_dir + "/metrics.jsonl"); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  for (int i = 0; i < 600 && file_size_or_zero(out_dir + "/metrics.jsonl") == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  kill(pid, SIGINT);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 130);
  auto cks = train::list_checkpoints(out_dir);
  ASSERT_EQ(cks.size(), 1u);
  auto m = run_metrics(out_dir);
  auto ck = train::load_checkpoint(cks[0], true);
  EXPECT_EQ(ck.state.step, m.back()["step"].get<int64_t>());
}

TEST_F(PretrainCli, BadDataAndConfigAreClearErrors) {
  int st = 0;
  std::string out = run_tsumugi("pretrain --config " + config_ + " --set data.train=" + dir_.file("missing"), &st);
  EXPECT_NE(st, 0);
  EXPECT_NE(out.find("no Megatron dataset here"), std::string::npos) << out;

  // Truncated .bin: the index promises more tokens than the file holds.
  fs::copy_file(data_ + ".idx", dir_.file("cut.idx"));
  std::string bin = read_file(data_ + ".bin");
  write_bytes(dir_.file("cut.bin"), bin.substr(0, bin.size() / 2));
  out = run_tsumugi("pretrain --config " + config_ + " --set data.train=" + dir_.file("cut"), &st);
  EXPECT_NE(st, 0);
  EXPECT_NE(out.find("cut"), std::string::npos) << out;

  out = run_tsumugi("pretrain --config " + config_ + " --set model.vocab_size=128", &st);  // tokens up to 247
  EXPECT_NE(st, 0);
  EXPECT_NE(out.find("outside the model's vocabulary"), std::string::npos) << out;

  out = run_tsumugi("pretrain --config " + config_ + " --set train.micro_batch_size=3", &st);
  EXPECT_NE(st, 0);
  EXPECT_NE(out.find("must divide"), std::string::npos) << out;

  out = run_tsumugi("pretrain --config " + config_ + " --set model.n_head=3", &st);
  EXPECT_NE(st, 0);
  EXPECT_NE(out.find("must divide model.d_model"), std::string::npos) << out;

  // Resuming with a different shape refuses instead of loading the wrong tensors.
  std::string od = dir_.file("shape");
  run_tsumugi("pretrain --config " + config_ + " --set out_dir=" + od + " --set train.steps=4");
  out = run_tsumugi("pretrain --config " + config_ + " --set out_dir=" + od + " --set model.n_layer=3 --resume", &st);
  EXPECT_NE(st, 0);
  EXPECT_NE(out.find("--resume"), std::string::npos) << out;
}

}  // namespace
