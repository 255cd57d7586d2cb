// `tsumugi serve` from the outside: the official OpenAI Python client, many concurrent streaming
// clients (with the server's memory checked), and the chat page in headless Chromium.
// The Python drivers live in tests/serve/ and run under /usr/bin/python3 (openai, selenium).
#include <gtest/gtest.h>
#include <unistd.h>

#include "infer/engine.h"
#include "serve/server_harness.h"
#include "serve/tiny_model.h"
#include "util/log.h"

using namespace tsumugi;
using nlohmann::json;
using tsumugi::testing::RunningServer;
using tsumugi::testing::tiny_engine;
using tsumugi::testing::tiny_model_dir;

namespace {

std::string greedy_text(const std::string& prompt, int max_tokens, std::vector<std::string> stop = {}) {
  std::vector<int32_t> ids;
  tiny_engine().tokenizer().encode(prompt, ids);
  infer::Sampling s;
  s.temperature = 0;
  s.max_tokens = max_tokens;
  s.stop = std::move(stop);
  return tiny_engine().complete(ids, s).text;
}

// Runs a driver; its last output line is its JSON result. A missing Python package fails the
// test with the driver's message naming what to install.
json run_driver(const std::string& script, const std::string& args) {
  std::string out;
  const int status = tsumugi::testing::run_command(
      "/usr/bin/python3 " + std::string(TSUMUGI_SOURCE_DIR) + "/tests/serve/" + script + " " + args, out);
  EXPECT_EQ(status, 0) << out;
  const std::size_t start = out.rfind('\n', out.size() >= 2 ? out.size() - 2 : 0);
  const std::string last = out.substr(start == std::string::npos ? 0 : start + 1);
  try {
    return json::parse(last);
  } catch (const std::exception& e) {
    ADD_FAILURE() << script << " printed no JSON result:\n" << out;
    return json::object();
  }
}

#if defined(__SANITIZE_ADDRESS__)
// AddressSanitizer holds freed memory in a quarantine (256 MB by default) before reusing it, so
// RSS grows by up to that much without a leak; leaks themselves are LeakSanitizer's to report.
constexpr long kQuarantineKb = 256 * 1024;
#else
constexpr long kQuarantineKb = 0;
#endif

class ServePython : public ::testing::Test {
 protected:
  void SetUp() override { log::set_level(log::Level::warn); }  // no access log lines for every request
  void TearDown() override { log::set_level(log::Level::info); }
};

TEST_F(ServePython, OpenAIClientWorksAndGreedyEqualsEngine) {
  RunningServer srv(tiny_engine(), {});
  const std::string prompt = "吾輩は猫である。名前は", message = "日本の首都はどこですか？";
  const json r = run_driver("openai_client.py", srv.base_url() + " '" + prompt + "' '" + message + "'");
  ASSERT_TRUE(r.contains("chat_stream")) << r.dump();
  EXPECT_EQ(r["models"], json::array({"tiny-chat"}));
  const std::string want_completion = greedy_text(prompt, 20);
  EXPECT_EQ(r["completion"]["text"], want_completion);
  EXPECT_EQ(r["completion"]["object"], "text_completion");
  EXPECT_EQ(r["completion_stream"]["text"], want_completion);
  EXPECT_EQ(r["completion_stream"]["usage"], r["completion"]["usage"]);
  EXPECT_EQ(
      r["completion"]["usage"]["total_tokens"].get<int>(),
      r["completion"]["usage"]["prompt_tokens"].get<int>() + r["completion"]["usage"]["completion_tokens"].get<int>());
  const std::string chat_prompt = serve::ChatTemplate::llm_jp().render({{"user", message}});
  const std::string want_chat = greedy_text(chat_prompt, 20, {"\n\n### 指示:"});
  EXPECT_EQ(r["chat"]["text"], want_chat);
  EXPECT_EQ(r["chat"]["role"], "assistant");
  EXPECT_EQ(r["chat"]["object"], "chat.completion");
  EXPECT_EQ(r["chat_stream"]["text"], want_chat);
  EXPECT_EQ(r["chat_stream"]["roles"], json::array({"assistant"}));
  EXPECT_EQ(r["chat_stream"]["usage"], r["chat"]["usage"]);
  EXPECT_EQ(r["chat_stream"]["finish_reason"], r["chat"]["finish_reason"]);
  EXPECT_EQ(r["not_found"], "model_not_found");
  EXPECT_EQ(r["bad_request"], 400);
}

TEST_F(ServePython, ManyConcurrentStreamingClientsWithBoundedMemory) {
  serve::ServerOptions opt;
  opt.parallel = 4;
  RunningServer srv(tiny_engine(), opt);
  const int clients = 16, rounds = 3;
  const json r = run_driver("concurrent_streams.py", srv.base_url() + " " + std::to_string(clients) + " " +
                                                         std::to_string(rounds) + " " + std::to_string(getpid()));
  ASSERT_EQ(r.value("rounds", json::array()).size(), static_cast<std::size_t>(rounds)) << r.dump();
  for (const auto& round : r["rounds"]) {
    EXPECT_EQ(round["ok"], clients) << round.dump();
    EXPECT_TRUE(round["errors"].empty()) << round.dump();
  }
  // The first round warms the thread pool, allocator arenas and caches; 32 more streams must not
  // leave memory behind (a leaked activation buffer or response per stream would show as MBs).
  const long after_first = r["rss_kb"][0], after_last = r["rss_kb"][rounds - 1];
  EXPECT_GT(after_first, 0);
  EXPECT_LT(after_last - after_first, 16 * 1024 + kQuarantineKb) << "RSS grew from " << after_first << " kB to " << after_last << " kB";
  auto c = srv.client();
  auto m = c.Get("/metrics");
  ASSERT_TRUE(m);
  EXPECT_NE(m->body.find("tsumugi_requests_total{endpoint=\"/v1/chat/completions\",status=\"200\"} 48"),
            std::string::npos)
      << m->body;
  EXPECT_NE(m->body.find("tsumugi_requests_in_flight 0"), std::string::npos);
}

TEST_F(ServePython, ChatPageStreamsAnAnswerInHeadlessChromium) {
  RunningServer srv(tiny_engine(), {});
  const std::string message = "こんにちは、元気ですか";
  const int max_tokens = 24;
  const json r = run_driver("chat_page.py", srv.base_url() + " '" + message + "' " + std::to_string(max_tokens));
  ASSERT_TRUE(r.contains("answer")) << r.dump();
  EXPECT_EQ(r["user"], message);
  const std::string want =
      greedy_text(serve::ChatTemplate::llm_jp().render({{"user", message}}), max_tokens, {"\n\n### 指示:"});
  EXPECT_FALSE(want.empty());
  EXPECT_EQ(want.find("\xEF\xBF\xBD"), std::string::npos) << "the tiny model should write real characters";
  EXPECT_EQ(r["answer"], want);
  EXPECT_GT(r["pieces"].get<int>(), 1) << "the answer should arrive in several streamed pieces";
  EXPECT_NE(r["meta"].get<std::string>().find("completion tokens"), std::string::npos) << r.dump();
  EXPECT_FALSE(r["error_shown"].get<bool>()) << r.dump();
  EXPECT_TRUE(r["console"].empty()) << r.dump();
  EXPECT_NE(r["refused_error"].get<std::string>().find("400: 'max_tokens' must be between 1"), std::string::npos)
      << r.dump();
}

}  // namespace
