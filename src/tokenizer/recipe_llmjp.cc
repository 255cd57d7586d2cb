#include "tokenizer/recipe_llmjp.h"

#include <chrono>
#include <unordered_set>

#include "tokenizer/train_common.h"
#include "tokenizer/trainer.h"
#include "util/error.h"
#include "util/log.h"

namespace tsumugi::tokenizer {

namespace {

const std::string kWs = "\xE2\x96\x81";  // U+2581

TrainOptions domain_options(const LlmjpRecipeOptions& r, const std::vector<std::string>& inputs, int32_t vocab) {
  TrainOptions o;
  o.inputs = inputs;
  o.text_field = r.text_field;
  o.model_type = ModelType::unigram;
  o.vocab_size = vocab;
  o.character_coverage = r.character_coverage;
  o.input_sentence_size = r.input_sentence_size;
  o.seed = r.seed;
  o.num_threads = r.num_threads;
  o.normalization_rule_name = "identity";
  o.byte_fallback = true;
  o.split_digits = true;
  o.add_dummy_prefix = true;
  o.remove_extra_whitespaces = false;
  o.model_prefix = r.model_prefix;
  return o;
}

// The final model's options: specials, "\n", byte fallback; vocab_size set by the caller.
TrainOptions final_options(const LlmjpRecipeOptions& r) {
  std::vector<std::string> inputs;
  for (const auto* v : {&r.code_inputs, &r.en_inputs, &r.ja_inputs}) inputs.insert(inputs.end(), v->begin(), v->end());
  TrainOptions o = domain_options(r, inputs, 1);
  o.unk_id = 0;
  o.bos_id = 1;
  o.eos_id = 2;
  o.pad_id = 4;
  o.user_defined_symbols = {"<mask>", "<CLS>", "<SEP>", "<EOD>", "\n"};  // ids 3, 5, 6, 7, 8
  return o;
}

}  // namespace

const std::vector<std::string>& llmjp_special_pieces() {
  static const std::vector<std::string> v = {"<unk>", "<s>", "</s>", "<mask>", "<pad>", "<CLS>", "<SEP>", "<EOD>"};
  return v;
}

ModelProto train_llmjp(const LlmjpRecipeOptions& r, LlmjpRecipeStats* stats, std::vector<ModelProto>* domain_models) {
  const auto t0 = std::chrono::steady_clock::now();
  if (r.code_inputs.empty() || r.en_inputs.empty() || r.ja_inputs.empty())
    fail("the llm-jp recipe needs --code-input, --en-input and --ja-input");
  if (r.em_iterations < 0) fail("--em-iterations must be >= 0");

  // 1. per-domain models; 2. union of their normal pieces.
  std::vector<std::pair<std::string, float>> merged;
  std::unordered_set<std::string> seen;
  const struct {
    const char* name;
    const std::vector<std::string>* inputs;
    int32_t vocab;
    size_t* count;
  } domains[] = {{"code", &r.code_inputs, r.code_vocab_size, stats ? &stats->code_pieces : nullptr},
                 {"en", &r.en_inputs, r.en_vocab_size, stats ? &stats->en_pieces : nullptr},
                 {"ja", &r.ja_inputs, r.ja_vocab_size, stats ? &stats->ja_pieces : nullptr}};
  for (const auto& d : domains) {
    TrainOptions o = domain_options(r, *d.inputs, d.vocab);
    o.mecab = r.mecab && d.inputs == &r.ja_inputs;
    o.mecab_args = r.mecab_args;
    log::info("llm-jp recipe: training the {} model (vocab {}{})", d.name, d.vocab,
              o.mecab ? ", MeCab pre-split" : "");
    const ModelProto m = train_model(o);
    size_t n = 0;
    for (const auto& p : m.pieces) {
      if (p.type_or_default() != PieceType::normal) continue;
      ++n;
      if (seen.insert(p.piece).second) merged.emplace_back(p.piece, p.score_or_default());
    }
    if (d.count) *d.count = n;
    if (domain_models) domain_models->push_back(m);
  }
  for (int32_t k = 2; k <= r.max_whitespace_run; ++k) {
    std::string run;
    for (int32_t i = 0; i < k; ++i) run += kWs;
    if (seen.insert(run).second) merged.emplace_back(run, merged.empty() ? 0.0f : merged.back().second);
  }

  // 3. re-estimation over the joint corpus (normalized as the final model normalizes).
  TrainOptions fo = final_options(r);
  fo.vocab_size = int32_t(merged.size()) + 9 + 256 + 1;  // room for load_corpus's checks
  train::Corpus corpus = train::load_corpus(fo, nullptr);
  log::info("llm-jp recipe: {} merged pieces, EM over {} sentences", merged.size(), corpus.sentences.size());
  std::vector<std::pair<std::string, float>> pieces =
      reestimate_unigram_scores(corpus.sentences, merged, r.em_iterations, r.num_threads);

  // 4. final model: meta pieces, then every merged piece by score.
  std::unordered_set<std::string> meta;
  for (const auto& [id, p] : corpus.meta_pieces) meta.insert(p.first);
  std::erase_if(pieces, [&](const auto& p) { return meta.count(p.first) > 0; });
  train::sort_by_value(pieces);
  fo.vocab_size = int32_t(corpus.meta_pieces.size() + pieces.size());
  ModelProto m = train::make_model_proto(fo, corpus, pieces);
  if (stats) {
    stats->merged_pieces = merged.size();
    stats->vocab_size = fo.vocab_size;
    stats->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  return m;
}

void train_llmjp_and_save(const LlmjpRecipeOptions& options, const std::string& prefix, LlmjpRecipeStats* stats,
                          bool keep_domain_models) {
  if (prefix.empty()) fail("no output prefix (-o PREFIX)");
  LlmjpRecipeOptions o = options;
  if (o.model_prefix.empty()) o.model_prefix = prefix;
  std::vector<ModelProto> domains;
  const ModelProto m = train_llmjp(o, stats, keep_domain_models ? &domains : nullptr);
  const char* names[] = {"code", "en", "ja"};
  for (size_t i = 0; i < domains.size(); ++i) {
    save_model_proto(domains[i], prefix + "." + names[i] + ".model");
    save_vocab(domains[i], prefix + "." + names[i] + ".vocab");
  }
  save_model_proto(m, prefix + ".model");
  save_vocab(m, prefix + ".vocab");
}

}  // namespace tsumugi::tokenizer
