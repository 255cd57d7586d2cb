// `tsumugi sft` end to end on a tiny model: LoRA and full tuning lower the response-only loss on
// held-out instructions, checkpoints have the PEFT layout (or a full one), --resume is bit-exact,
// `sft merge` writes a checkpoint `generate` runs, and bad input fails naming the file and line.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>

#include "backend/backend.h"
#include "formats/safetensors.h"
#include "model/model.h"
#include "test_util.h"
#include "train/checkpoint.h"
#include "util/io.h"

using namespace tsumugi;
using tsumugi::testing::read_lines;
using tsumugi::testing::run_command;
using tsumugi::testing::run_metrics;
using tsumugi::testing::run_tsumugi;
using tsumugi::testing::tsumugi_binary;
using tsumugi::testing::TempDir;
using tsumugi::testing::write_bytes;
namespace fs = std::filesystem;

namespace {

class SftCli : public ::testing::Test {
 protected:
  // A tokenizer and a small random GPT-2 base, shared by the suite; instruction data from the
  // bundled set (a slice, to stay quick).
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    const auto train = read_lines(std::string(TSUMUGI_SOURCE_DIR) + "/data/sft/train.jsonl");
    const auto valid = read_lines(std::string(TSUMUGI_SOURCE_DIR) + "/data/sft/valid.jsonl");
    std::string t, v;
    for (int i = 0; i < 240; ++i) t += train[i] + "\n";
    for (int i = 0; i < 24; ++i) v += valid[i] + "\n";
    write_bytes(dir_->file("train.jsonl"), t);
    write_bytes(dir_->file("valid.jsonl"), v);
    write_bytes(dir_->file("tok_in.txt"), t);  // plain text: the records as they are
    std::string out;
    ASSERT_EQ(run_command(tsumugi_binary() + " tokenizer train --input " + dir_->file("tok_in.txt") +
                              " --vocab-size 1000 --model-type unigram --byte-fallback true --character-coverage 0.995"
                              " --control-symbols '<EOD>' -o " + dir_->file("tok") + " 2>&1",
                          out),
              0)
        << out;
    model::ModelConfig c;
    c.family = model::Family::GPT2;
    c.n_layer = 2;
    c.n_head = 2;
    c.n_kv_head = 2;
    c.d_model = 32;
    c.d_ff = 128;
    c.vocab_size = 1024;
    c.max_seq = 128;
    auto be = backend::make_cpu_backend(false);
    model::Model m(c, *be);
    m.init_weights(1);
    // Token embeddings (tied to the output) 10x the init's scale: with the usual 0.02 a frozen
    // random base caps every logit near 0, and no adapter could move the loss.
    std::vector<float> w = m.get_parameters();
    for (uint64_t i = 0; i < m.layout()[0].size; ++i) w[i] *= 10.0f;
    train::save_checkpoint(dir_->file("base"), c, w, {}, {}, {}, dir_->file("tok.model"), 7, 7);
    write_bytes(dir_->file("sft.toml"),
                "backend = 'cpu'\nmodel = '" + dir_->file("base") + "'\n"
                "[data]\ntrain = ['" + dir_->file("train.jsonl") + "']\nvalid = ['" + dir_->file("valid.jsonl") + "']\n"
                "[lora]\nr = 8\nalpha = 16\ndropout = 0.05\n"
                "[train]\nsteps = 12\nbatch_size = 8\nmicro_batch_size = 4\nseq_len = 128\nlr = 3e-2\nwarmup_steps = 2\n"
                "schedule = 'constant'\neval_interval = 6\ncheckpoint_interval = 6\nkeep_checkpoints = 3\n"
                "log_interval = 6\nreport_interval = 0\nsample_tokens = 0\n");
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::vector<double> val_losses(const std::string& run_dir) {
    std::vector<double> v;
    for (const auto& j : run_metrics(run_dir))
      if (j.contains("val_loss")) v.push_back(j["val_loss"].get<double>());
    return v;
  }
  static TempDir* dir_;
};
TempDir* SftCli::dir_ = nullptr;

}  // namespace

TEST_F(SftCli, LoraLowersHeldOutResponseLossAndWritesPeftCheckpoints) {
  const std::string out_dir = dir_->file("lora");
  std::string log = run_tsumugi("sft --config " + dir_->file("sft.toml") + " --set out_dir=" + out_dir);
  auto vl = val_losses(out_dir);
  ASSERT_EQ(vl.size(), 3u) << log;  // step 0 (the base), 6, 12
  EXPECT_EQ(run_metrics(out_dir).front()["step"], 0);
  EXPECT_LT(vl.back(), vl.front() - 0.3) << log;
  EXPECT_NE(log.find("LoRA: r=8"), std::string::npos) << log;
  const std::string ck = out_dir + "/checkpoints/step_00000012";
  for (const char* f : {"adapter_config.json", "adapter_model.safetensors", "optimizer.safetensors",
                        "trainer_state.json", "tokenizer.model"})
    EXPECT_TRUE(fs::exists(ck + "/" + f)) << f;
  EXPECT_FALSE(fs::exists(ck + "/model.safetensors"));  // the base is not copied
  auto cfg = nlohmann::json::parse(read_file(ck + "/adapter_config.json"));
  EXPECT_EQ(cfg["base_model_name_or_path"], fs::absolute(dir_->file("base")).string());
  EXPECT_EQ(cfg["target_modules"], nlohmann::json({"c_attn", "c_proj", "c_fc"}));
  formats::SafetensorsFile st(ck + "/adapter_model.safetensors");
  EXPECT_EQ(st.tensors().size(), 2u * 4 * 2);  // A and B, 4 modules, 2 layers
  // merge, then generate from the merged checkpoint
  run_tsumugi("sft merge --model " + dir_->file("base") + " --adapter " + ck + " -o " + dir_->file("merged"));
  std::string g = run_tsumugi("generate --model " + dir_->file("merged") + " --prompt-ids '5 6 7' --max-tokens 4 --output-format ids");
  EXPECT_FALSE(g.empty());
}

TEST_F(SftCli, FullFineTuningWritesFullCheckpoints) {
  const std::string out_dir = dir_->file("full");
  std::string log = run_tsumugi("sft --config " + dir_->file("sft.toml") + " --set out_dir=" + out_dir +
                        " --set lora.r=0 --set train.lr=3e-3");
  auto vl = val_losses(out_dir);
  ASSERT_EQ(vl.size(), 3u) << log;
  EXPECT_LT(vl.back(), vl.front() - 0.5) << log;
  const std::string ck = out_dir + "/checkpoints/step_00000012";
  EXPECT_TRUE(fs::exists(ck + "/model.safetensors"));
  EXPECT_FALSE(fs::exists(ck + "/adapter_config.json"));
  train::LoadedCheckpoint c = train::load_checkpoint(ck, true);
  EXPECT_EQ(c.state.step, 12);
}

TEST_F(SftCli, ResumeIsBitExact) {
  const std::string a = dir_->file("ra"), b = dir_->file("rb");
  const std::string short_run = " --set train.steps=4 --set train.eval_interval=2 --set train.checkpoint_interval=2";
  run_tsumugi("sft --config " + dir_->file("sft.toml") + short_run + " --set out_dir=" + a);
  run_tsumugi("sft --config " + dir_->file("sft.toml") + short_run + " --set out_dir=" + b + " --set train.stop_after=2");
  run_tsumugi("sft --config " + dir_->file("sft.toml") + short_run + " --set out_dir=" + b + " --resume");
  EXPECT_EQ(read_file(a + "/checkpoints/step_00000004/adapter_model.safetensors"),
            read_file(b + "/checkpoints/step_00000004/adapter_model.safetensors"));
  EXPECT_EQ(read_file(a + "/checkpoints/step_00000004/optimizer.safetensors"),
            read_file(b + "/checkpoints/step_00000004/optimizer.safetensors"));
  auto ma = run_metrics(a), mb = run_metrics(b);
  ASSERT_EQ(ma.size(), mb.size());
  for (std::size_t i = 0; i < ma.size(); ++i)
    if (ma[i].contains("loss")) EXPECT_EQ(ma[i]["loss"], mb[i]["loss"]) << i;
}

TEST_F(SftCli, BadInputFailsNamingTheFile) {
  int st = 0;
  write_bytes(dir_->file("bad.jsonl"), "{\"instruction\": \"q\", \"output\": \"a\"}\n{\"instruction\": \"q\"}\n");
  std::string out = run_tsumugi("sft --config " + dir_->file("sft.toml") + " --set out_dir=" + dir_->file("bad") +
                            " --set data.train=" + dir_->file("bad.jsonl"),
                        &st);
  EXPECT_NE(st, 0);
  EXPECT_NE(out.find(dir_->file("bad.jsonl") + ":2: field 'output' is missing"), std::string::npos) << out;
  out = run_tsumugi("sft --config " + dir_->file("sft.toml") + " --set 'template.prompt={instruction} A:'", &st);
  EXPECT_NE(st, 0);
  EXPECT_NE(out.find("template.prompt does not end with the response marker"), std::string::npos) << out;
  out = run_tsumugi("sft --config " + dir_->file("sft.toml") + " --set lora.target_modules=q_proj --set out_dir=" +
                dir_->file("bad2"),
            &st);
  EXPECT_NE(st, 0);
  EXPECT_NE(out.find("'q_proj' matches no linear layer"), std::string::npos) << out;
  out = run_tsumugi("sft merge --model " + dir_->file("base") + " --adapter " + dir_->file("nowhere") + " -o " +
                dir_->file("m2"),
            &st);
  EXPECT_NE(st, 0);
  EXPECT_NE(out.find("no adapter_config.json"), std::string::npos) << out;
}

TEST_F(SftCli, HelpTeaches) {
  std::string h = run_tsumugi("sft --help");
  EXPECT_NE(h.find("Examples:"), std::string::npos);
  EXPECT_NE(h.find("--set"), std::string::npos);
  std::string k = run_tsumugi("sft --list-keys");
  for (const char* key : {"lora.r", "lora.alpha", "lora.dropout", "lora.target_modules", "template.prompt",
                          "template.response_marker", "data.packing", "model "})
    EXPECT_NE(k.find(key), std::string::npos) << key;
  EXPECT_EQ(k.find("model.n_layer"), std::string::npos);
  std::string m = run_tsumugi("sft merge --help");
  EXPECT_NE(m.find("--adapter"), std::string::npos);
}

// Data parallelism: 2 MPI ranks (ZeRO-1) see the same sequences, the same dropout masks (keyed by
// the global row) and the same per-step response-token count as 1 rank, so the curves agree.
TEST_F(SftCli, TwoRanksMatchOneRank) {
  std::string probe;
  if (run_command("command -v mpirun >/dev/null 2>&1", probe) != 0) GTEST_SKIP() << "mpirun (openmpi-bin) is not installed";
  const std::string sets = " --set train.steps=4 --set train.eval_interval=2 --set train.checkpoint_interval=4";
  const std::string one = dir_->file("mpi1"), two = dir_->file("mpi2");
  run_tsumugi("sft --config " + dir_->file("sft.toml") + sets + " --set out_dir=" + one);
  std::string out;
  int st = run_command("ASAN_OPTIONS=detect_leaks=0 OMP_NUM_THREADS=1 timeout 300 mpirun --allow-run-as-root "
                       "--oversubscribe -np 2 " + tsumugi_binary() + " sft --config " + dir_->file("sft.toml") + sets +
                           " --set out_dir=" + two + " 2>&1",
                       out);
  ASSERT_EQ(st, 0) << out;
  EXPECT_NE(out.find("data parallel over 2 MPI ranks"), std::string::npos) << out;
  auto a = run_metrics(one), b = run_metrics(two);
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i)
    for (const char* k : {"loss", "val_loss"})
      if (a[i].contains(k)) EXPECT_NEAR(a[i][k].get<double>(), b[i][k].get<double>(), 2e-5 * a[i][k].get<double>()) << k << " " << i;
}
