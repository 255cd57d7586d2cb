// `tsumugi tokenizer train`: trains a SentencePiece-compatible unigram or BPE model and writes
// PREFIX.model and PREFIX.vocab (as spm_train does).
#include <memory>

#include "cli/commands.h"
#include "tokenizer/recipe_llmjp.h"
#include "tokenizer/trainer.h"
#include "util/error.h"
#include "util/interrupt.h"
#include "util/log.h"

namespace tsumugi::cli {

void register_tokenizer_train(CLI::App& tokenizer_cmd) {
  auto o = std::make_shared<tokenizer::TrainOptions>();
  auto prefix = std::make_shared<std::string>();
  auto type = std::make_shared<std::string>("unigram");
  auto recipe = std::make_shared<std::string>();
  auto r = std::make_shared<tokenizer::LlmjpRecipeOptions>();
  auto keep_domains = std::make_shared<bool>(false);
  auto* cmd = tokenizer_cmd.add_subcommand("train", "Train a SentencePiece-compatible unigram or BPE model");
  cmd->add_option("--input,-i", o->inputs,
                  "Input files (globs allowed): one sentence a line, or .jsonl[.gz|.zst] (text field split into lines)")
      ;
  cmd->add_option("-o,--output,--model-prefix", *prefix, "Writes PREFIX.model and PREFIX.vocab")->required();
  cmd->add_option("--vocab-size", o->vocab_size, "Vocabulary size, meta pieces included")->capture_default_str();
  cmd->add_option("--model-type", *type, "unigram or bpe")
      ->check(CLI::IsMember({"unigram", "bpe"}))
      ->capture_default_str();
  cmd->add_option("--text-field", o->text_field, "JSONL field holding the text")->capture_default_str();
  cmd->add_option("--character-coverage", o->character_coverage, "Share of characters the alphabet covers")
      ->capture_default_str();
  cmd->add_option("--input-sentence-size", o->input_sentence_size, "Sample this many sentences (0: all)")
      ->capture_default_str();
  cmd->add_option("--shuffle-input-sentence", o->shuffle_input_sentence,
                  "Reservoir-sample (true) or take the first --input-sentence-size (false)")
      ->capture_default_str();
  cmd->add_option("--seed", o->seed, "Seed of the sentence sampling")->capture_default_str();
  cmd->add_option("--max-sentencepiece-length", o->max_sentencepiece_length, "Longest piece, in characters")
      ->capture_default_str();
  cmd->add_option("--max-sentence-length", o->max_sentence_length, "Longer lines (bytes) are skipped")
      ->capture_default_str();
  cmd->add_option("--num-threads", o->num_threads, "Worker threads")->capture_default_str();
  cmd->add_option("--seed-sentencepiece-size", o->seed_sentencepiece_size, "Unigram seed pieces")
      ->capture_default_str();
  cmd->add_option("--shrinking-factor", o->shrinking_factor, "Unigram pruning keeps this share each round")
      ->capture_default_str();
  cmd->add_option("--num-sub-iterations", o->num_sub_iterations, "EM iterations per pruning round")
      ->capture_default_str();
  cmd->add_option("--split-by-unicode-script", o->split_by_unicode_script)->capture_default_str();
  cmd->add_option("--split-by-number", o->split_by_number)->capture_default_str();
  cmd->add_option("--split-by-whitespace", o->split_by_whitespace)->capture_default_str();
  cmd->add_option("--split-digits", o->split_digits, "Every digit a piece of its own")->capture_default_str();
  cmd->add_option("--byte-fallback", o->byte_fallback, "Add <0x00>..<0xFF> for characters outside the vocabulary")
      ->capture_default_str();
  cmd->add_option("--hard-vocab-limit", o->hard_vocab_limit)->capture_default_str();
  cmd->add_option("--vocabulary-output-piece-score", o->vocabulary_output_piece_score)->capture_default_str();
  cmd->add_option("--control-symbols", o->control_symbols, "Control symbols (comma-separated)")->delimiter(',');
  cmd->add_option("--user-defined-symbols", o->user_defined_symbols, "User-defined symbols (comma-separated)")
      ->delimiter(',');
  cmd->add_option("--required-chars", o->required_chars, "Characters always in the vocabulary");
  cmd->add_option("--normalization-rule-name", o->normalization_rule_name,
                  "identity, nfkc or nmt_nfkc (spm_train's default); the model carries the map")
      ->capture_default_str();
  cmd->add_option("--add-dummy-prefix", o->add_dummy_prefix)->capture_default_str();
  cmd->add_option("--remove-extra-whitespaces", o->remove_extra_whitespaces)->capture_default_str();
  cmd->add_option("--unk-id", o->unk_id)->capture_default_str();
  cmd->add_option("--bos-id", o->bos_id)->capture_default_str();
  cmd->add_option("--eos-id", o->eos_id)->capture_default_str();
  cmd->add_option("--pad-id", o->pad_id)->capture_default_str();
  cmd->add_option("--unk-piece", o->unk_piece)->capture_default_str();
  cmd->add_option("--bos-piece", o->bos_piece)->capture_default_str();
  cmd->add_option("--eos-piece", o->eos_piece)->capture_default_str();
  cmd->add_option("--pad-piece", o->pad_piece)->capture_default_str();
  cmd->add_flag("--mecab", o->mecab,
               "Pre-split the text into MeCab words so that no piece spans two words (with --recipe llm-jp: "
               "the Japanese model only); needs libmecab and a dictionary (apt-get install mecab mecab-ipadic-utf8)");
  cmd->add_option("--mecab-args", o->mecab_args,
                  "MeCab options, e.g. '-d /var/lib/mecab/dic/juman-utf8' (default: the system dictionary)");
  cmd->add_option("--recipe", *recipe,
                  "llm-jp: per-domain unigram models (code/en/ja) merged and re-estimated, LLM-jp v2.1 specials "
                  "(uses --code-input/--en-input/--ja-input instead of --input)")
      ->check(CLI::IsMember({"llm-jp"}));
  cmd->add_option("--code-input", r->code_inputs, "llm-jp recipe: code inputs");
  cmd->add_option("--en-input", r->en_inputs, "llm-jp recipe: English inputs");
  cmd->add_option("--ja-input", r->ja_inputs, "llm-jp recipe: Japanese inputs");
  cmd->add_option("--code-vocab-size", r->code_vocab_size, "llm-jp recipe: code model size")->capture_default_str();
  cmd->add_option("--en-vocab-size", r->en_vocab_size, "llm-jp recipe: English model size")->capture_default_str();
  cmd->add_option("--ja-vocab-size", r->ja_vocab_size, "llm-jp recipe: Japanese model size")->capture_default_str();
  cmd->add_option("--em-iterations", r->em_iterations, "llm-jp recipe: EM rounds re-estimating the merged scores")
      ->capture_default_str();
  cmd->add_option("--max-whitespace-run", r->max_whitespace_run, "llm-jp recipe: longest whitespace-run piece")
      ->capture_default_str();
  cmd->add_option("--keep-domain-models", *keep_domains, "llm-jp recipe: also write PREFIX.{code,en,ja}.model")
      ->capture_default_str();
  cmd->footer(
      "Examples:\n"
      "  tsumugi tokenizer train --input corpus.txt --vocab-size 32000 --model-type unigram -o ja\n"
      "  tsumugi tokenizer train --input 'clean/*.jsonl.zst' --vocab-size 50000 --model-type bpe \\\n"
      "      --byte-fallback true --split-digits true --user-defined-symbols '<mask>,<sep>' -o llmjp\n"
      "  tsumugi tokenizer train --recipe llm-jp --code-input code.jsonl.gz --en-input en.jsonl.gz \\\n"
      "      --ja-input ja.jsonl.gz --code-vocab-size 10000 --en-vocab-size 20000 --ja-vocab-size 30000 -o llmjp\n"
      "  tsumugi tokenizer train --recipe llm-jp --mecab --code-input code.txt --en-input en.txt --ja-input ja.txt -o llmjp");
  cmd->callback([o, prefix, type, recipe, r, keep_domains] {
    set_action([o, prefix, type, recipe, r, keep_domains] {
      install_interrupt_handler();
      if (!recipe->empty()) {
        if (!o->inputs.empty()) fail("--recipe llm-jp takes --code-input/--en-input/--ja-input, not --input");
        r->text_field = o->text_field;
        r->input_sentence_size = o->input_sentence_size;
        r->seed = o->seed;
        r->num_threads = o->num_threads;
        r->character_coverage = o->character_coverage;
        r->mecab = o->mecab;
        r->mecab_args = o->mecab_args;
        tokenizer::LlmjpRecipeStats st;
        tokenizer::train_llmjp_and_save(*r, *prefix, &st, *keep_domains);
        log::info("wrote {}.model and {}.vocab (vocab {}: {} merged pieces from code {} / en {} / ja {}; {:.1f} s)",
                  *prefix, *prefix, st.vocab_size, st.merged_pieces, st.code_pieces, st.en_pieces, st.ja_pieces,
                  st.seconds);
        return 0;
      }
      if (o->inputs.empty()) fail("no input files (give --input FILE...)");
      o->model_type = *type == "bpe" ? tokenizer::ModelType::bpe : tokenizer::ModelType::unigram;
      tokenizer::TrainStats stats;
      tokenizer::train_and_save(*o, *prefix, &stats);
      log::info("wrote {}.model and {}.vocab ({} sentences, {:.1f} s)", *prefix, *prefix, stats.sentences,
                stats.seconds);
      return 0;
    });
  });
}

}  // namespace tsumugi::cli
