// Greedy decoding with llama.cpp's library on a GGUF file, for bench/llamacpp_check.sh: prints
// how llama.cpp tokenizes the prompt text, then the ids it generates after the prompt ids we give
// (so the comparison with tsumugi does not depend on the two tokenizers agreeing).
// Built by the script against LLAMA_CPP_DIR; not part of the tsumugi build (CI has no llama.cpp).
//
//   llamacpp_greedy MODEL.gguf N_PREDICT "PROMPT TEXT" ID ID ...
#include <llama.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s MODEL.gguf N_PREDICT PROMPT_TEXT ID...\n", argv[0]);
    return 2;
  }
  const int n_predict = std::atoi(argv[2]);
  const std::string text = argv[3];
  std::vector<llama_token> prompt;
  for (int i = 4; i < argc; ++i) prompt.push_back(std::atoi(argv[i]));
  llama_log_set([](ggml_log_level level, const char* msg, void*) {
    if (level >= GGML_LOG_LEVEL_ERROR) std::fputs(msg, stderr);
  }, nullptr);
  llama_backend_init();
  llama_model_params mp = llama_model_default_params();
  llama_model* model = llama_model_load_from_file(argv[1], mp);
  if (!model) {
    std::fprintf(stderr, "llama.cpp could not load %s\n", argv[1]);
    return 1;
  }
  const llama_vocab* vocab = llama_model_get_vocab(model);

  std::vector<llama_token> tok(text.size() + 8);
  const int n_tok = llama_tokenize(vocab, text.c_str(), int(text.size()), tok.data(), int(tok.size()), true, false);
  std::printf("tokenized:");
  for (int i = 0; i < n_tok; ++i) std::printf(" %d", tok[i]);
  std::printf("\n");

  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = uint32_t(prompt.size() + n_predict + 8);
  cp.n_batch = cp.n_ctx;
  cp.n_threads = cp.n_threads_batch = 2;
  llama_context* ctx = llama_init_from_model(model, cp);
  if (!ctx) {
    std::fprintf(stderr, "llama.cpp could not create a context\n");
    return 1;
  }
  const int n_vocab = llama_vocab_n_tokens(vocab);
  std::vector<llama_token> pending = prompt;
  std::printf("generated:");
  for (int step = 0; step < n_predict; ++step) {
    if (llama_decode(ctx, llama_batch_get_one(pending.data(), int32_t(pending.size()))) != 0) {
      std::fprintf(stderr, "llama_decode failed\n");
      return 1;
    }
    const float* logits = llama_get_logits_ith(ctx, -1);
    llama_token best = 0;
    for (llama_token t = 1; t < n_vocab; ++t)
      if (logits[t] > logits[best]) best = t;
    if (llama_vocab_is_eog(vocab, best)) break;
    std::printf(" %d", best);
    pending.assign(1, best);
  }
  std::printf("\n");
  llama_free(ctx);
  llama_model_free(model);
  return 0;
}
