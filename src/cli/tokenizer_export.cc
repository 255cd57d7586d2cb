// `tsumugi tokenizer export-hf`: a SentencePiece model as a Hugging Face tokenizer directory
// (tokenizer.json, tokenizer_config.json, special_tokens_map.json).
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "tokenizer/hf_export.h"
#include "tokenizer/tokenizer.h"

namespace tsumugi::cli {

void register_tokenizer_export(CLI::App& tokenizer_cmd) {
  struct Args {
    std::string model, output;
    tokenizer::HfExportOptions options;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = tokenizer_cmd.add_subcommand(
      "export-hf", "Write a model as a Hugging Face tokenizer (tokenizer.json, tokenizer_config.json)");
  cmd->description(
      "Write a SentencePiece unigram or BPE model as a Hugging Face `tokenizers` tokenizer: DIR/tokenizer.json\n"
      "(normalizer, model, decoder, added tokens), DIR/tokenizer_config.json (PreTrainedTokenizerFast) and\n"
      "DIR/special_tokens_map.json, each written atomically. Loaded with tokenizers.Tokenizer.from_file or\n"
      "transformers.AutoTokenizer.from_pretrained(DIR), it encodes text as spm_encode does (tokenizers >= 0.20).");
  cmd->add_option("-m,--model", a->model, "SentencePiece model file (.model)")->required();
  cmd->add_option("-o,--output", a->output, "Output directory (created if missing)")->required();
  cmd->add_flag("--add-bos", a->options.add_bos, "Post-processor prepends the bos piece (<s>) when encoding");
  cmd->add_flag("--add-eos", a->options.add_eos, "Post-processor appends the eos piece (</s>) when encoding");
  cmd->add_option("--model-max-length", a->options.model_max_length, "model_max_length in tokenizer_config.json")
      ->capture_default_str();
  cmd->footer(
      "Examples:\n"
      "  tsumugi tokenizer export-hf --model ja.model -o hf-tokenizer/\n"
      "  tsumugi tokenizer export-hf --model ja.model -o hf/ --add-bos --model-max-length 2048\n"
      "  python3 -c \"import tokenizers; print(tokenizers.Tokenizer.from_file('hf/tokenizer.json').encode('こんにちは').ids)\"");
  cmd->callback([a] {
    set_action([a] {
      // Loading through Tokenizer validates the model (unk piece, byte pieces, ...).
      const tokenizer::Tokenizer t = tokenizer::Tokenizer::load(a->model);
      tokenizer::export_hf(t.model(), a->output, a->options);
      std::fprintf(stderr, "wrote %s/tokenizer.json, tokenizer_config.json, special_tokens_map.json (%d pieces)\n",
                   a->output.c_str(), t.vocab_size());
      return 0;
    });
  });
}

}  // namespace tsumugi::cli
