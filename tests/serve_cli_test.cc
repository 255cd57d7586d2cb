// `tsumugi chat` through a pipe and `tsumugi serve` as a process: start, answer, stop on SIGTERM.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <thread>

#include "serve/chat_template.h"
#include "serve/terminal_chat.h"
#include "serve/tiny_model.h"
#include "test_util.h"
#include "util/io.h"

using namespace tsumugi;
using tsumugi::testing::run_command;
using tsumugi::testing::TempDir;
using tsumugi::testing::tiny_engine;
using tsumugi::testing::tiny_model_dir;
using tsumugi::testing::write_bytes;

namespace {

const std::string kBin = TSUMUGI_BINARY;

std::string greedy_answer(const std::vector<serve::ChatMessage>& history, int max_tokens) {
  std::vector<int32_t> ids;
  tiny_engine().tokenizer().encode(serve::ChatTemplate::llm_jp().render(history), ids);
  infer::Sampling s;
  s.temperature = 0;
  s.max_tokens = max_tokens;
  s.stop = {"\n\n### 指示:"};
  return tiny_engine().complete(ids, s).text;
}

TEST(ServeCli, ChatThroughAPipeKeepsTheConversationAndResets) {
  TempDir dir;
  const std::string input = dir.file("in.txt");
  write_bytes(input, "こんにちは\n\n猫は好きですか\n/reset\n東京について\n/exit\nこの行は読まれない\n");
  std::string out;
  // One OpenMP thread, as tiny_engine() decodes, so the logits are bit-identical.
  const int status = run_command("{ OMP_NUM_THREADS=1 " + kBin + " chat --model " + tiny_model_dir() +
                                     " --temperature 0 --max-tokens 12 < " + input + " 2>/dev/null; }",
                                 out);
  ASSERT_EQ(status, 0) << out;
  const std::string a1 = greedy_answer({{"user", "こんにちは"}}, 12);
  const std::string a2 = greedy_answer({{"user", "こんにちは"}, {"assistant", a1}, {"user", "猫は好きですか"}}, 12);
  const std::string a3 = greedy_answer({{"user", "東京について"}}, 12);
  EXPECT_NE(a2, greedy_answer({{"user", "猫は好きですか"}}, 12)) << "the history should change the answer";
  EXPECT_EQ(out, a1 + "\n" + a2 + "\n" + a3 + "\n");
}

// An engine whose decoders raise the chat's cancel flag at the 4th token, as Ctrl-C would.
class InterruptingEngine : public infer::Engine {
 public:
  explicit InterruptingEngine(std::atomic<bool>& flag) : flag_(flag) {
    cfg_ = tiny_engine().config();
    init_common(tiny_model_dir());
  }
  std::unique_ptr<infer::Decoder> new_decoder() override {
    struct Dec : infer::Decoder {
      Dec(std::atomic<bool>& f, int& appends, std::unique_ptr<infer::Decoder> d)
          : flag(f), appends(appends), d(std::move(d)) {}
      void append(const int32_t* ids, int n, float* logits) override {
        if (++appends == 4) flag.store(true);
        d->append(ids, n, logits);
      }
      int length() const override { return d->length(); }
      std::atomic<bool>& flag;
      int& appends;
      std::unique_ptr<infer::Decoder> d;
    };
    appends.push_back(0);
    return std::make_unique<Dec>(flag_, appends.back(), tiny_engine().new_decoder());
  }
  std::deque<int> appends;  // per answer: prompt + tokens fed to its decoder

 private:
  std::atomic<bool>& flag_;
};

TEST(ServeCli, InterruptStopsTheAnswerNotTheConversation) {
  std::atomic<bool> cancel{false};
  InterruptingEngine engine(cancel);
  serve::TerminalChatOptions opt;
  opt.sampling.temperature = 0;
  opt.sampling.max_tokens = 20;
  opt.sampling.ignore_eos = true;
  opt.cancel = &cancel;
  std::istringstream in("一つ目\n二つ目\n");
  std::ostringstream out;
  EXPECT_EQ(serve::run_terminal_chat(engine, opt, in, out), 2);
  // Each answer is cut a few tokens in (the flag is cleared before every answer), and the
  // conversation goes on.
  const std::string text = out.str();
  const std::size_t first = text.find(" [stopped]\n");
  ASSERT_NE(first, std::string::npos) << text;
  EXPECT_NE(text.find(" [stopped]\n", first + 1), std::string::npos) << text;
  ASSERT_EQ(engine.appends.size(), 2u);
  for (int n : engine.appends) {
    EXPECT_GE(n, 4) << "an answer was cancelled before the interrupt (the flag was not cleared)";
    EXPECT_LT(n, 21) << "the interrupt did not stop the answer";
  }
}

TEST(ServeCli, HelpTeachesAndBadOptionsAreNamed) {
  std::string out;
  ASSERT_EQ(run_command(kBin + " serve --help", out), 0);
  for (const char* s : {"--model", "--host", "--port", "--parallel", "--api-key", "--chat-template", "--max-body-bytes",
                        "--model-name", "--adapter", "--dtype", "--threads", "Examples:", "127.0.0.1", "8080"})
    EXPECT_NE(out.find(s), std::string::npos) << s << "\n" << out;
  ASSERT_EQ(run_command(kBin + " chat --help", out), 0);
  for (const char* s : {"/reset", "/exit", "Ctrl-C", "--temperature", "--system", "Examples:"})
    EXPECT_NE(out.find(s), std::string::npos) << s << "\n" << out;
  EXPECT_NE(run_command(kBin + " chat --model " + tiny_model_dir() + " --chat-template /no/such.json < /dev/null", out),
            0);
  EXPECT_NE(out.find("/no/such.json"), std::string::npos) << out;
  EXPECT_NE(run_command(kBin + " serve --model /no/such/model --port 0", out), 0);
  EXPECT_NE(out.find("/no/such/model"), std::string::npos) << out;
}

TEST(ServeCli, ServeAnswersAndStopsGracefullyOnSigterm) {
  TempDir dir;
  const std::string log = dir.file("serve.log");
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const std::string cmd = "OMP_NUM_THREADS=1 exec " + kBin + " serve --model " + tiny_model_dir() +
                            " --port 0 --model-name tiny --api-key k 2> " + log;
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  int port = 0;
  std::string text;
  for (int i = 0; i < 500 && port == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    text = file_size_or_zero(log) ? read_file(log) : "";
    std::smatch m;
    if (std::regex_search(text, m, std::regex("http://127\\.0\\.0\\.1:(\\d+)/"))) port = std::stoi(m[1]);
  }
  ASSERT_GT(port, 0) << text;
  httplib::Client c("127.0.0.1", port);
  c.set_bearer_token_auth("k");
  auto models = c.Get("/v1/models");
  ASSERT_TRUE(models);
  EXPECT_EQ(nlohmann::json::parse(models->body)["data"][0]["id"], "tiny");
  auto r = c.Post("/v1/completions", R"({"model": "tiny", "prompt": "猫", "max_tokens": 5, "temperature": 0})",
                  "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  kill(pid, SIGTERM);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  text = read_file(log);
  EXPECT_NE(text.find("\"POST /v1/completions\" 200"), std::string::npos) << text;  // the access log
  EXPECT_NE(text.find("stopped"), std::string::npos) << text;
}

}  // namespace
