// `tsumugi serve` (OpenAI-compatible HTTP API and chat page) and `tsumugi chat` (terminal).
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <thread>

#include "cli/commands.h"
#include "index/suffix_index.h"
#include "infer/engine.h"
#include "serve/chat_template.h"
#include "serve/search_routes.h"
#include "serve/server.h"
#include "serve/terminal_chat.h"
#include "util/error.h"
#include "util/interrupt.h"
#include "util/log.h"

namespace tsumugi::cli {

namespace {

struct ModelArgs {
  std::string model, dtype = "auto", adapter, chat_template = "llm-jp", kv_cache = "auto";
  bool mmap = false;
  int threads = 0;
  infer::LoadOptions load_options() const {
    infer::LoadOptions o;
    o.dtype = dtype;
    o.threads = threads;
    o.adapter = adapter;
    o.kv_cache = kv_cache;
    o.keep_mapped = mmap;
    return o;
  }
};

void add_model_options(CLI::App* cmd, ModelArgs& a) {
  cmd->add_option("--model", a.model, "Model directory (tsumugi checkpoint or Hugging Face layout)")->required();
  cmd->add_option("--dtype", a.dtype, "Weights for decoding: auto | f32 | bf16 | f16 | q8_0")->capture_default_str();
  cmd->add_flag("--mmap", a.mmap, "Decode weights stored in the decoding type straight from the file mapping (instant start, shared page cache) instead of copying them into huge pages (faster decoding)");
  cmd->add_option("--kv-cache", a.kv_cache, "KV cache: auto (f16 with bf16/f16/q8_0 weights, f32 with f32) | f32 | f16")->capture_default_str();
  cmd->add_option("--threads", a.threads, "Compute threads (0 = all cores)")->capture_default_str();
  cmd->add_option("--adapter", a.adapter, "PEFT LoRA adapter directory merged into the weights at load");
  cmd->add_option("--chat-template", a.chat_template,
                  "llm-jp | plain | a JSON template file (see docs/architecture.md, Serving)")
      ->capture_default_str();
}

struct ServeArgs {
  ModelArgs m;
  serve::ServerOptions so;
  std::string index;
};

int run_serve(ServeArgs& a) {
  a.so.chat_template = serve::ChatTemplate::load(a.m.chat_template);
  if (a.so.api_key.empty())
    if (const char* env = std::getenv("TSUMUGI_API_KEY")) a.so.api_key = env;
  std::unique_ptr<index::Index> idx;
  if (!a.index.empty()) idx = std::make_unique<index::Index>(index::Index::open(a.index));
  auto engine = infer::Engine::load(a.m.model, a.m.load_options());
  serve::Server server(*engine, a.so);
  if (idx) serve::add_search(server, *idx);
  const int port = server.bind();
  // Writing to a client that went away must fail the write, not kill the process.
  signal(SIGPIPE, SIG_IGN);
  install_interrupt_handler();
  log::info("serving {} ({} tokens of context, template {}) on http://{}:{}/ — {} generations at once, {} may wait{}",
            server.model_name(), engine->context_length(), a.so.chat_template.name(), a.so.host, port, a.so.parallel,
            a.so.max_queue, a.so.api_key.empty() ? "" : ", API key required");
  std::atomic<bool> done{false};
  // A signal handler may only set a flag; this thread turns it into a graceful stop.
  std::thread watcher([&] {
    while (!done) {
      if (interrupted()) {
        log::info("stopping: finishing the requests in flight");
        server.stop();
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  server.run();
  done = true;
  watcher.join();
  log::info("stopped");
  return 0;
}

std::atomic<bool> g_stop_answer{false};
extern "C" void on_chat_sigint(int) { g_stop_answer.store(true); }

struct ChatArgs {
  ModelArgs m;
  infer::Sampling s;
  std::string system;
};

int run_chat(ChatArgs& a) {
  serve::TerminalChatOptions opt;
  opt.chat_template = serve::ChatTemplate::load(a.m.chat_template);
  opt.sampling = a.s;
  opt.system = a.system;
  opt.interactive = isatty(STDIN_FILENO) != 0;
  opt.cancel = &g_stop_answer;
  infer::validate(a.s);
  auto engine = infer::Engine::load(a.m.model, a.m.load_options());
  // Ctrl-C stops the answer being generated, not the program (/exit or Ctrl-D quits).
  struct sigaction sa = {};
  sa.sa_handler = on_chat_sigint;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  serve::run_terminal_chat(*engine, opt, std::cin, std::cout);
  return 0;
}

}  // namespace

void register_serving(CLI::App& app) {
  auto s = std::make_shared<ServeArgs>();
  auto* serve_cmd = app.add_subcommand("serve", "Serve a model over an OpenAI-compatible HTTP API with a chat page");
  serve_cmd->description(
      "Load a model and serve it over HTTP: /v1/models, /v1/completions and /v1/chat/completions in\n"
      "OpenAI's shapes (streaming as server-sent events with `data: [DONE]`, usage counts), /health,\n"
      "/metrics (Prometheus text), /tokenize and /detokenize, and a chat page at /. Chat messages\n"
      "become a prompt through the chat template (LLM-jp's instruction format by default). --parallel\n"
      "generations run at once, --max-queue more wait, beyond that the server answers 503. The running\n"
      "generations share decoding steps (the weights are read once per step for all of them, each\n"
      "gets the tokens it would get alone), so more of them raise throughput at the cost of KV-cache\n"
      "memory. Errors are OpenAI-style JSON. Ctrl-C or SIGTERM stops after the requests in flight.");
  add_model_options(serve_cmd, s->m);
  serve_cmd->add_option("--host", s->so.host, "Address to listen on")->capture_default_str();
  serve_cmd->add_option("--port", s->so.port, "Port to listen on (0 = any free port, printed at start)")
      ->capture_default_str();
  serve_cmd->add_option("--parallel", s->so.parallel, "Generations running at once (sharing decoding steps)")
      ->capture_default_str();
  serve_cmd->add_option("--max-queue", s->so.max_queue, "Generations that may wait for a slot before 503")
      ->capture_default_str();
  serve_cmd->add_option("--api-key", s->so.api_key,
                        "Require 'Authorization: Bearer KEY' (default: env TSUMUGI_API_KEY)");
  serve_cmd->add_option("--max-body-bytes", s->so.max_body_bytes, "Largest request body (413 beyond)")
      ->capture_default_str();
  serve_cmd->add_option("--model-name", s->so.model_name, "Model id in /v1/models (default: the directory name)");
  serve_cmd->add_option("--index", s->index,
                        "A `tsumugi index` directory: corpus search at /search and /v1/search/{info,count,docs,next,"
                        "prob,trace}");
  serve_cmd->footer(
      "Examples:\n"
      "  tsumugi serve --model runs/tiny/checkpoints/step_00000300\n"
      "  tsumugi serve --model llm-jp-13b-v1.0 --host 0.0.0.0 --port 8000 --parallel 4 --api-key secret\n"
      "  tsumugi serve --model CKPT --index corpus.idx      # and open http://127.0.0.1:8080/search\n"
      "  curl http://127.0.0.1:8080/v1/chat/completions -H 'Content-Type: application/json' \\\n"
      "       -d '{\"messages\":[{\"role\":\"user\",\"content\":\"日本の首都は？\"}],\"max_tokens\":64}'\n"
      "  python3 -c 'import openai; c = openai.OpenAI(base_url=\"http://127.0.0.1:8080/v1\", api_key=\"x\");\n"
      "              print(c.completions.create(model=\"step_00000300\", prompt=\"吾輩は\").choices[0].text)'");
  serve_cmd->callback([s] { set_action([s] { return run_serve(*s); }); });

  auto c = std::make_shared<ChatArgs>();
  c->s.max_tokens = 512;
  c->s.temperature = 0.7f;
  auto* chat_cmd = app.add_subcommand("chat", "Chat with a model in the terminal");
  chat_cmd->description(
      "An interactive conversation: type a message, the answer streams as it is generated and the\n"
      "conversation is kept (the oldest turns are dropped when it outgrows the context). /reset\n"
      "starts over, /exit or Ctrl-D quits, Ctrl-C stops the current answer. With piped input each\n"
      "line is a message and each answer is printed on its own line.");
  add_model_options(chat_cmd, c->m);
  chat_cmd->add_option("--system", c->system, "System message (default: the template's)");
  chat_cmd->add_option("--max-tokens", c->s.max_tokens, "Longest answer in tokens")->capture_default_str();
  chat_cmd->add_option("--temperature", c->s.temperature, "Sampling temperature (0 = greedy)")->capture_default_str();
  chat_cmd->add_option("--top-k", c->s.top_k, "Sample from the k most likely tokens (0 = all)")->capture_default_str();
  chat_cmd->add_option("--top-p", c->s.top_p, "Nucleus sampling mass (1 = off)")->capture_default_str();
  chat_cmd->add_option("--min-p", c->s.min_p, "Drop tokens below min-p x the top probability (0 = off)")
      ->capture_default_str();
  chat_cmd->add_option("--repetition-penalty", c->s.repetition_penalty, "CTRL-style penalty (1 = off)")
      ->capture_default_str();
  chat_cmd->add_option("--seed", c->s.seed, "Sampling seed")->capture_default_str();
  chat_cmd->footer(
      "Examples:\n"
      "  tsumugi chat --model runs/sft/checkpoints/step_00001000\n"
      "  tsumugi chat --model base-model --chat-template plain --temperature 0\n"
      "  printf 'こんにちは\\n自己紹介して\\n' | tsumugi chat --model CKPT --temperature 0");
  chat_cmd->callback([c] { set_action([c] { return run_chat(*c); }); });
}

}  // namespace tsumugi::cli
