#include "sft/run.h"

#include <fmt/format.h>

#include <cmath>
#include <filesystem>

#include "model/lora.h"
#include "tokenizer/tokenizer.h"
#include "train/checkpoint.h"
#include "train/trainer.h"
#include "util/error.h"
#include "util/io.h"
#include "util/log.h"

namespace tsumugi::sft {
namespace fs = std::filesystem;

namespace {

void log_stats(const char* what, const LoadStats& s, const Sequences& seq, bool packing) {
  log::info("{} data: {} records -> {} sequences of {} tokens ({}), {} tokens of which {} are trained on "
            "(responses + EOD)",
            what, s.records, seq.count(), seq.seq_len, packing ? "packed" : "one example each, padded", s.tokens,
            s.target_tokens);
  if (s.truncated || s.dropped)
    log::warn("{} data: {} examples longer than train.seq_len + 1 tokens were truncated, {} dropped", what,
              s.truncated, s.dropped);
}

}  // namespace

std::unique_ptr<SftBatches> make_sft_batches(const train::RunConfig& cfg, const tokenizer::Tokenizer& tok,
                                             int32_t eod, LoadStats* train_stats, LoadStats* valid_stats) {
  LoadStats ts, vs;
  std::vector<Example> train = load_examples(cfg.train_data, cfg.sft.prompt, tok, eod, &ts);
  std::vector<Example> valid;
  if (!cfg.valid_data.empty()) {
    valid = load_examples(cfg.valid_data, cfg.sft.prompt, tok, eod, &vs);
  } else if (cfg.valid_fraction > 0 && train.size() > 1) {
    std::size_t held = static_cast<std::size_t>(std::ceil(cfg.valid_fraction * static_cast<double>(train.size())));
    held = std::min(held, train.size() - 1);
    valid.assign(std::make_move_iterator(train.end() - static_cast<std::ptrdiff_t>(held)),
                 std::make_move_iterator(train.end()));
    train.resize(train.size() - held);
    vs.records = held;
    ts.records -= held;
  }
  PackOptions po;
  po.seq_len = cfg.train.seq_len;
  po.packing = cfg.sft.packing;
  po.drop_overflow = cfg.sft.overflow == "drop";
  po.pad = eod;
  Sequences tseq = pack(train, po, &ts);
  Sequences vseq = pack(valid, po, &vs);
  log_stats("training", ts, tseq, po.packing);
  if (!valid.empty()) log_stats("held-out", vs, vseq, po.packing);
  if (train_stats) *train_stats = ts;
  if (valid_stats) *valid_stats = vs;
  return std::make_unique<SftBatches>(std::move(tseq), std::move(vseq), cfg.train.seed);
}

int run_sft(const train::RunConfig& cfg, bool resume, train::Collective* comm) {
  if (cfg.kind != train::RunKind::Sft) fail("internal: run_sft needs an sft configuration");
  train::PretrainOptions opt;
  opt.resume = resume;
  opt.comm = comm;
  opt.make_data = [](const train::RunConfig& c, const tokenizer::Tokenizer* tok,
                     int eod) -> std::unique_ptr<train::BatchSource> {
    if (!tok) fail("{}: instruction tuning needs the tokenizer (none in the checkpoint or the config)", c.config_path);
    if (eod < 0) fail("{}: the tokenizer has neither <EOD> nor an eos piece to end responses with", c.tokenizer);
    return make_sft_batches(c, *tok, eod);
  };
  const Template tmpl = cfg.sft.prompt;
  opt.render_sample_prompt = [tmpl](const std::string& instruction) { return render_prompt(tmpl, instruction); };
  return train::run_training(cfg, opt);
}

void merge_adapter(const std::string& base_dir, const std::string& adapter_dir, const std::string& out_dir) {
  train::LoadedCheckpoint base = train::load_checkpoint(base_dir, false);
  model::LoadedAdapter ad = model::load_peft_adapter(adapter_dir, base.config);
  model::merge_lora(base.config, ad.lora, ad.weights, base.weights);
  // Keep the base's special-token ids in config.json.
  int bos = -1, eos = -1;
  try {
    auto cj = nlohmann::json::parse(read_file((fs::path(base_dir) / "config.json").string()));
    if (cj.contains("bos_token_id") && cj["bos_token_id"].is_number_integer()) bos = cj["bos_token_id"].get<int>();
    if (cj.contains("eos_token_id") && cj["eos_token_id"].is_number_integer()) eos = cj["eos_token_id"].get<int>();
  } catch (const nlohmann::json::exception&) {
    // load_checkpoint already parsed it; ids stay unset
  }
  std::string tok = base.tokenizer_path;
  if (fs::exists(fs::path(adapter_dir) / "tokenizer.model")) tok = (fs::path(adapter_dir) / "tokenizer.model").string();
  train::CheckpointState st;
  st.run_config = {{"merged", {{"base", base_dir}, {"adapter", adapter_dir}, {"r", ad.lora.r},
                               {"lora_alpha", ad.lora.alpha}}}};
  fs::path out(out_dir);
  if (out.has_parent_path()) fs::create_directories(out.parent_path());
  train::save_checkpoint(out_dir, base.config, base.weights, {}, {}, st, tok, bos, eos);
}

}  // namespace tsumugi::sft
