// The HTTP API of `tsumugi serve`, in process on a tiny model: OpenAI response shapes, greedy
// output equal to Engine::complete, streaming, errors with the right status and JSON, the
// admission gate (queueing and 503), API keys, metrics, and cancellation on disconnect.
#include <gtest/gtest.h>

#include <condition_variable>
#include <future>

#include "infer/engine.h"
#include "serve/server_harness.h"
#include "serve/tiny_model.h"

using namespace tsumugi;
using nlohmann::json;
using tsumugi::testing::RunningServer;
using tsumugi::testing::sse_events;
using tsumugi::testing::tiny_engine;
using tsumugi::testing::tiny_model_dir;

namespace {

std::vector<int32_t> encode(const std::string& text) {
  std::vector<int32_t> ids;
  tiny_engine().tokenizer().encode(text, ids);
  return ids;
}

infer::Completion greedy(const std::vector<int32_t>& prompt, int max_tokens, std::vector<std::string> stop = {}) {
  infer::Sampling s;
  s.temperature = 0;
  s.max_tokens = max_tokens;
  s.stop = std::move(stop);
  return tiny_engine().complete(prompt, s);
}

json post_json(httplib::Client& c, const std::string& path, const json& body, int expect_status) {
  auto r = c.Post(path, body.dump(), "application/json");
  if (!r) {
    ADD_FAILURE() << "no response from " << path;
    return {};
  }
  EXPECT_EQ(r->status, expect_status) << r->body;
  EXPECT_EQ(r->get_header_value("Content-Type"), "application/json") << path;
  return json::parse(r->body);
}

// Checks the OpenAI error shape and returns the error object.
json expect_error(httplib::Client& c, const std::string& path, const std::string& raw_body, int status) {
  auto r = c.Post(path, raw_body, "application/json");
  if (!r) {
    ADD_FAILURE() << "no response";
    return {};
  }
  EXPECT_EQ(r->status, status) << raw_body.substr(0, 200) << " -> " << r->body;
  const json j = json::parse(r->body);
  EXPECT_TRUE(j.contains("error")) << r->body;
  const json& e = j["error"];
  for (const char* k : {"message", "type", "param", "code"}) EXPECT_TRUE(e.contains(k)) << k << " in " << r->body;
  EXPECT_TRUE(e["message"].is_string() && !e["message"].get<std::string>().empty());
  return e;
}

TEST(ServeApi, HealthModelsTokenizeAndPages) {
  RunningServer srv(tiny_engine(), {});
  auto c = srv.client();
  auto h = c.Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(json::parse(h->body)["status"], "ok");
  auto m = c.Get("/v1/models");
  ASSERT_TRUE(m);
  const json models = json::parse(m->body);
  EXPECT_EQ(models["object"], "list");
  ASSERT_EQ(models["data"].size(), 1u);
  EXPECT_EQ(models["data"][0]["id"], "tiny-chat");
  EXPECT_EQ(models["data"][0]["object"], "model");
  EXPECT_EQ(models["data"][0]["context_length"], tsumugi::testing::kTinyContext);
  EXPECT_EQ(c.Get("/v1/models/tiny-chat")->status, 200);
  EXPECT_EQ(c.Get("/v1/models/other")->status, 404);

  const std::string text = "吾輩は猫である。\n名前はまだ無い。";
  const json tok = post_json(c, "/tokenize", {{"text", text}}, 200);
  EXPECT_EQ(tok["tokens"].get<std::vector<int32_t>>(), encode(text));
  ASSERT_EQ(tok["pieces"].size(), tok["tokens"].size());
  EXPECT_EQ(tok["pieces"][0], tiny_engine().tokenizer().id_to_piece(encode(text)[0]));
  EXPECT_EQ(post_json(c, "/tokenize", {{"content", text}}, 200)["tokens"], tok["tokens"]);
  EXPECT_EQ(post_json(c, "/detokenize", {{"tokens", tok["tokens"]}}, 200)["text"],
            tiny_engine().tokenizer().decode(encode(text)));
  expect_error(c, "/detokenize", R"({"tokens": [1, 99999]})", 400);

  auto page = c.Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_NE(page->get_header_value("Content-Type").find("text/html"), std::string::npos);
  EXPECT_NE(page->body.find("/chat.js"), std::string::npos);
  auto js = c.Get("/chat.js");
  ASSERT_TRUE(js);
  EXPECT_NE(js->body.find("/v1/chat/completions"), std::string::npos);
  EXPECT_NE(js->get_header_value("Content-Type").find("javascript"), std::string::npos);
}

TEST(ServeApi, GreedyCompletionEqualsEngine) {
  RunningServer srv(tiny_engine(), {});
  auto c = srv.client();
  const std::string prompt = "今日は良い天気";
  const infer::Completion want = greedy(encode(prompt), 24);
  const json r = post_json(c, "/v1/completions",
                           {{"model", "tiny-chat"}, {"prompt", prompt}, {"max_tokens", 24}, {"temperature", 0}}, 200);
  EXPECT_EQ(r["object"], "text_completion");
  EXPECT_EQ(r["id"].get<std::string>().rfind("cmpl-", 0), 0u);
  EXPECT_TRUE(r["created"].is_number_integer());
  EXPECT_EQ(r["model"], "tiny-chat");
  EXPECT_EQ(r["choices"][0]["text"], want.text);
  EXPECT_EQ(r["choices"][0]["finish_reason"], want.finish_reason);
  EXPECT_EQ(r["usage"]["prompt_tokens"], want.prompt_tokens);
  EXPECT_EQ(r["usage"]["completion_tokens"], want.completion_tokens);
  EXPECT_EQ(r["usage"]["total_tokens"], want.prompt_tokens + want.completion_tokens);
  // Token ids as the prompt, and max_completion_tokens.
  const auto ids = encode(prompt);
  const json r2 =
      post_json(c, "/v1/completions", {{"prompt", ids}, {"max_completion_tokens", 24}, {"temperature", 0}}, 200);
  EXPECT_EQ(r2["choices"][0]["text"], want.text);
  // A seeded sample repeats.
  const json sampled = {{"prompt", prompt}, {"max_tokens", 16}, {"temperature", 1.0}, {"top_p", 0.9}, {"seed", 42}};
  EXPECT_EQ(post_json(c, "/v1/completions", sampled, 200)["choices"][0]["text"],
            post_json(c, "/v1/completions", sampled, 200)["choices"][0]["text"]);
}

// Concurrent requests share the engine's decoding steps; each still gets exactly the greedy text
// it gets alone, and /metrics counts the steps and the tokens they carried.
TEST(ServeApi, ConcurrentGreedyCompletionsEqualTheEngineAlone) {
  serve::ServerOptions so;
  so.parallel = 4;
  RunningServer srv(tiny_engine(), so);
  const std::vector<std::string> prompts = {"今日は良い天気", "The quick brown", "東京都", "int main(void) {"};
  std::vector<infer::Completion> want;
  for (const auto& p : prompts) want.push_back(greedy(encode(p), 20));
  for (int round = 0; round < 3; ++round) {
    std::vector<std::future<json>> got;
    for (const auto& p : prompts)
      got.push_back(std::async(std::launch::async, [&srv, p] {
        auto c = srv.client();
        return post_json(c, "/v1/completions", {{"prompt", p}, {"max_tokens", 20}, {"temperature", 0}}, 200);
      }));
    for (std::size_t i = 0; i < prompts.size(); ++i) {
      const json r = got[i].get();
      EXPECT_EQ(r["choices"][0]["text"], want[i].text) << prompts[i];
      EXPECT_EQ(r["usage"]["completion_tokens"], want[i].completion_tokens) << prompts[i];
    }
  }
  auto c = srv.client();
  const auto m = c.Get("/metrics");
  ASSERT_TRUE(m);
  auto counter = [&](const std::string& name) {
    const std::size_t at = m->body.find("\n" + name + " ");
    EXPECT_NE(at, std::string::npos) << name << " in " << m->body;
    return at == std::string::npos ? 0.0 : std::stod(m->body.substr(at + name.size() + 2));
  };
  const double steps = counter("tsumugi_decode_steps_total"), tokens = counter("tsumugi_decode_step_tokens_total");
  EXPECT_GT(steps, 0);
  EXPECT_GE(tokens, steps);
}

TEST(ServeApi, ChatUsesTheTemplateAndItsStop) {
  RunningServer srv(tiny_engine(), {});
  auto c = srv.client();
  const std::vector<serve::ChatMessage> msgs = {{"user", "こんにちは"}, {"assistant", "はい"}, {"user", "東京は？"}};
  const std::string prompt = serve::ChatTemplate::llm_jp().render(msgs);
  const infer::Completion want = greedy(encode(prompt), 30, {"\n\n### 指示:"});
  json messages = json::array();
  for (const auto& m : msgs) messages.push_back({{"role", m.role}, {"content", m.content}});
  const json r =
      post_json(c, "/v1/chat/completions", {{"messages", messages}, {"max_tokens", 30}, {"temperature", 0}}, 200);
  EXPECT_EQ(r["object"], "chat.completion");
  EXPECT_EQ(r["id"].get<std::string>().rfind("chatcmpl-", 0), 0u);
  EXPECT_EQ(r["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(r["choices"][0]["message"]["content"], want.text);
  EXPECT_EQ(r["usage"]["prompt_tokens"], static_cast<int>(encode(prompt).size()));
  EXPECT_EQ(r["usage"]["completion_tokens"], want.completion_tokens);
  // Content given as text parts renders the same.
  messages[2]["content"] = json::array({{{"type", "text"}, {"text", "東京"}}, {{"type", "text"}, {"text", "は？"}}});
  EXPECT_EQ(post_json(c, "/v1/chat/completions", {{"messages", messages}, {"max_tokens", 30}, {"temperature", 0}},
                      200)["choices"][0]["message"]["content"],
            want.text);
}

TEST(ServeApi, StreamingEqualsNonStreaming) {
  RunningServer srv(tiny_engine(), {});
  auto c = srv.client();
  for (const char* path : {"/v1/completions", "/v1/chat/completions"}) {
    const bool chat = std::string(path).find("chat") != std::string::npos;
    json body = {{"max_tokens", 40}, {"temperature", 0}, {"ignore_eos", true}};
    if (chat)
      body["messages"] = json::array({{{"role", "user"}, {"content", "猫について"}}});
    else
      body["prompt"] = "猫について";
    const json plain = post_json(c, path, body, 200);
    body["stream"] = true;
    body["stream_options"] = {{"include_usage", true}};
    auto r = c.Post(path, body.dump(), "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->get_header_value("Content-Type"), "text/event-stream");
    bool done = false;
    const auto events = sse_events(r->body, &done);
    EXPECT_TRUE(done) << r->body.substr(r->body.size() > 200 ? r->body.size() - 200 : 0);
    ASSERT_GE(events.size(), 3u);
    std::string text, finish;
    json usage;
    for (const auto& e : events) {
      EXPECT_EQ(e["object"], chat ? "chat.completion.chunk" : "text_completion");
      EXPECT_EQ(e["id"], events[0]["id"]);
      if (e.contains("usage")) usage = e["usage"];
      for (const auto& ch : e["choices"]) {
        if (chat && ch["delta"].contains("content")) text += ch["delta"]["content"].get<std::string>();
        if (!chat) text += ch["text"].get<std::string>();
        if (!ch["finish_reason"].is_null()) finish = ch["finish_reason"];
      }
    }
    if (chat) EXPECT_EQ(events[0]["choices"][0]["delta"]["role"], "assistant");
    EXPECT_EQ(text, chat ? plain["choices"][0]["message"]["content"] : plain["choices"][0]["text"]) << path;
    EXPECT_EQ(finish, "length");
    EXPECT_EQ(usage, plain["usage"]);
    EXPECT_TRUE(events.back()["choices"].empty());  // the usage chunk comes last, without choices
  }
}

TEST(ServeApi, BadRequestsGetOpenAIErrorsAndTheServerKeepsServing) {
  serve::ServerOptions opt;
  opt.max_body_bytes = 64 * 1024;
  RunningServer srv(tiny_engine(), opt);
  auto c = srv.client();
  const std::string chat = "/v1/chat/completions", cmpl = "/v1/completions";
  const std::string ok_messages = R"("messages": [{"role": "user", "content": "hi"}])";
  auto param_of = [](const json& e) { return e["param"].is_null() ? std::string() : e["param"].get<std::string>(); };

  json e = expect_error(c, chat, "{\"messages\": [", 400);
  EXPECT_NE(e["message"].get<std::string>().find("not valid JSON"), std::string::npos);
  EXPECT_EQ(e["type"], "invalid_request_error");
  expect_error(c, chat, "[1, 2]", 400);
  e = expect_error(c, chat, "{" + ok_messages + R"(, "temperature": "hot"})", 400);
  EXPECT_EQ(param_of(e), "temperature");
  e = expect_error(c, chat, "{" + ok_messages + R"(, "max_tokens": 1.5})", 400);
  EXPECT_EQ(param_of(e), "max_tokens");
  e = expect_error(c, chat, "{" + ok_messages + R"(, "stop": [1]})", 400);
  EXPECT_EQ(param_of(e), "stop[0]");
  e = expect_error(c, chat, R"({"messages": "hi"})", 400);
  EXPECT_EQ(param_of(e), "messages");
  e = expect_error(c, chat, R"({"messages": [{"role": "user", "content": 5}]})", 400);
  EXPECT_EQ(param_of(e), "messages[0].content");
  e = expect_error(c, chat, R"({"messages": [{"role": "robot", "content": "x"}]})", 400);
  EXPECT_EQ(param_of(e), "messages");
  e = expect_error(c, chat, R"({"messages": []})", 400);
  EXPECT_EQ(param_of(e), "messages");
  e = expect_error(c, cmpl, R"({"prompt": ""})", 400);
  EXPECT_EQ(param_of(e), "prompt");
  e = expect_error(c, cmpl, R"({"prompt": [1, -3]})", 400);
  EXPECT_EQ(param_of(e), "prompt[1]");
  e = expect_error(c, chat, "{" + ok_messages + R"(, "n": 2})", 400);
  EXPECT_EQ(param_of(e), "n");
  e = expect_error(c, chat, "{" + ok_messages + R"(, "model": "gpt-4"})", 404);
  EXPECT_EQ(e["code"], "model_not_found");
  // Longer than the context (192 tokens).
  std::string long_prompt;
  for (int i = 0; i < 200; ++i) long_prompt += "吾輩は猫である。";
  e = expect_error(c, cmpl, json{{"prompt", long_prompt}}.dump(), 400);
  EXPECT_EQ(e["code"], "context_length_exceeded");
  EXPECT_EQ(param_of(e), "prompt");
  // Larger than --max-body-bytes.
  e = expect_error(c, cmpl, json{{"prompt", std::string(100 * 1024, 'a')}}.dump(), 413);
  auto nf = c.Get("/v1/nothing");
  ASSERT_TRUE(nf);
  EXPECT_EQ(nf->status, 404);
  EXPECT_TRUE(json::parse(nf->body).contains("error"));

  // Still serving, on the same connection and a new one.
  EXPECT_EQ(post_json(c, chat, json::parse("{" + ok_messages + R"(, "max_tokens": 4})"), 200)["object"],
            "chat.completion");
  auto c2 = srv.client();
  EXPECT_EQ(post_json(c2, cmpl, {{"prompt", "猫"}, {"max_tokens", 4}}, 200)["object"], "text_completion");
  auto metrics = c2.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find("tsumugi_requests_total{endpoint=\"/v1/chat/completions\",status=\"400\"}"),
            std::string::npos)
      << metrics->body;
  EXPECT_NE(metrics->body.find("tsumugi_requests_total{endpoint=\"/v1/completions\",status=\"413\"}"),
            std::string::npos)
      << metrics->body;
}

TEST(ServeApi, ApiKeyIsRequiredWhenSet) {
  serve::ServerOptions opt;
  opt.api_key = "sesame";
  RunningServer srv(tiny_engine(), opt);
  auto c = srv.client();
  EXPECT_EQ(c.Get("/health")->status, 200);  // health and pages stay open
  EXPECT_EQ(c.Get("/")->status, 200);
  auto r = c.Get("/v1/models");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(json::parse(r->body)["error"]["code"], "invalid_api_key");
  expect_error(c, "/v1/completions", R"({"prompt": "a", "max_tokens": 2})", 401);
  c.set_bearer_token_auth("wrong");
  EXPECT_EQ(c.Get("/v1/models")->status, 401);
  c.set_bearer_token_auth("sesame");
  EXPECT_EQ(c.Get("/v1/models")->status, 200);
  EXPECT_EQ(post_json(c, "/v1/completions", {{"prompt", "a"}, {"max_tokens", 2}}, 200)["object"], "text_completion");
}

// Wraps the tiny engine with decoders that wait for a signal or go slowly, to hold generations
// in flight while the test looks at the server.
class ThrottledEngine : public infer::Engine {
 public:
  explicit ThrottledEngine(infer::Engine& inner) : inner_(inner) {
    cfg_ = inner.config();
    init_common(tiny_model_dir());
  }
  std::unique_ptr<infer::Decoder> new_decoder() override { return std::make_unique<Dec>(*this, inner_.new_decoder()); }
  void open() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }
  std::atomic<int> appends{0};
  std::chrono::milliseconds per_token{0};

 private:
  struct Dec : infer::Decoder {
    Dec(ThrottledEngine& e, std::unique_ptr<infer::Decoder> d) : e(e), d(std::move(d)) {}
    void append(const int32_t* ids, int n, float* logits) override {
      ++e.appends;
      {
        std::unique_lock<std::mutex> lock(e.mu_);
        e.cv_.wait(lock, [&] { return e.open_; });
      }
      std::this_thread::sleep_for(e.per_token);
      d->append(ids, n, logits);
    }
    int length() const override { return d->length(); }
    ThrottledEngine& e;
    std::unique_ptr<infer::Decoder> d;
  };
  infer::Engine& inner_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

template <typename F>
bool eventually(F f, int ms = 5000) {
  for (int i = 0; i < ms / 10; ++i) {
    if (f()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return f();
}

TEST(ServeApi, AdmissionQueuesThenRefusesWith503) {
  ThrottledEngine engine(tiny_engine());
  serve::ServerOptions opt;
  opt.parallel = 1;
  opt.max_queue = 1;
  RunningServer srv(engine, opt);
  const std::string body = json{{"prompt", "猫"}, {"max_tokens", 3}}.dump();
  auto call = [&] {
    auto c = srv.client();
    auto r = c.Post("/v1/completions", body, "application/json");
    return r ? r->status : -1;
  };
  auto running = std::async(std::launch::async, call);
  ASSERT_TRUE(eventually([&] { return engine.appends.load() == 1; }));  // holds the one slot
  auto queued = std::async(std::launch::async, call);
  auto c = srv.client();
  ASSERT_TRUE(eventually([&] {
    auto m = c.Get("/metrics");
    return m && m->body.find("tsumugi_requests_queued 1") != std::string::npos &&
           m->body.find("tsumugi_requests_in_flight 1") != std::string::npos;
  }));
  const json e = expect_error(c, "/v1/completions", body, 503);
  EXPECT_EQ(e["code"], "server_overloaded");
  engine.open();
  EXPECT_EQ(running.get(), 200);
  EXPECT_EQ(queued.get(), 200);
  EXPECT_EQ(call(), 200);
}

// A raw loopback socket to the server (so a test can hang up mid-answer or speak HTTP/1.0), with
// a POST of `body` to /v1/completions already sent; -1 after a test failure.
int raw_post(int port, const std::string& http_version, const json& body) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) {
    ADD_FAILURE() << "socket";
    return -1;
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const std::string text = body.dump();
  const std::string req = "POST /v1/completions " + http_version +
                          "\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
                          std::to_string(text.size()) + "\r\n\r\n" + text;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size())) {
    ADD_FAILURE() << "cannot send the request";
    close(fd);
    return -1;
  }
  return fd;
}

// Reads until `marker` has arrived (an empty marker: until the server closes).
std::string read_until(int fd, const std::string& marker) {
  std::string got;
  char buf[4096];
  while (marker.empty() || got.find(marker) == std::string::npos) {
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) break;
    got.append(buf, n);
  }
  return got;
}

// A client asks for 80 tokens, 20 ms each, and hangs up once the answer has begun: the
// generation stops within a few tokens instead of running to 80 (1.6 s).
void expect_hang_up_stops_generation(bool stream) {
  ThrottledEngine engine(tiny_engine());
  engine.per_token = std::chrono::milliseconds(20);
  engine.open();
  RunningServer srv(engine, {});
  const json request = {{"prompt", "猫"}, {"max_tokens", 80}, {"ignore_eos", true}, {"stream", stream}};
  const int fd = raw_post(srv.port(), "HTTP/1.1", request);
  ASSERT_GE(fd, 0);
  // Streamed: the first event; not streamed: the headers, sent before generation, then a few tokens.
  const std::string marker = stream ? "data: " : "\r\n\r\n";
  ASSERT_NE(read_until(fd, marker).find(marker), std::string::npos);
  if (!stream) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  close(fd);
  auto c = srv.client();
  ASSERT_TRUE(eventually([&] {
    auto m = c.Get("/metrics");
    return m && m->body.find("tsumugi_requests_in_flight 0") != std::string::npos &&
           m->body.find("\ntsumugi_generated_tokens_total ") != std::string::npos &&
           m->body.find("tsumugi_generated_tokens_total 0\n") == std::string::npos;
  }));
  auto m = c.Get("/metrics");
  const std::string key = "\ntsumugi_generated_tokens_total ";
  const int generated = std::stoi(m->body.substr(m->body.find(key) + key.size()));
  EXPECT_GT(generated, 0);
  EXPECT_LT(generated, 40) << m->body;
  EXPECT_LT(engine.appends.load(), 41);
}

TEST(ServeApi, ClientDisconnectCancelsAStreamingGeneration) { expect_hang_up_stops_generation(true); }

TEST(ServeApi, ClientDisconnectCancelsANonStreamingGeneration) { expect_hang_up_stops_generation(false); }

// An HTTP/1.0 client cannot read chunked encoding: its non-streamed answer comes whole, with a
// Content-Length, and equals what an HTTP/1.1 client gets.
TEST(ServeApi, Http10ClientGetsTheAnswerWithAContentLength) {
  RunningServer srv(tiny_engine(), {});
  const json request = {{"prompt", "猫"}, {"max_tokens", 8}, {"temperature", 0}};
  const int fd = raw_post(srv.port(), "HTTP/1.0", request);
  ASSERT_GE(fd, 0);
  const std::string got = read_until(fd, "");  // HTTP/1.0: the server closes at the end
  close(fd);
  const std::size_t head_end = got.find("\r\n\r\n");
  ASSERT_NE(head_end, std::string::npos) << got;
  const std::string head = got.substr(0, head_end);
  EXPECT_NE(head.find(" 200 "), std::string::npos) << head;
  EXPECT_NE(head.find("Content-Length: "), std::string::npos) << head;
  EXPECT_EQ(head.find("chunked"), std::string::npos) << head;
  auto c = srv.client();
  const json want = post_json(c, "/v1/completions", request, 200);
  EXPECT_EQ(json::parse(got.substr(head_end + 4))["choices"][0]["text"], want["choices"][0]["text"]);
}

TEST(ServeApi, AdmissionGateCountsAndCloses) {
  serve::AdmissionGate gate(2, 1);
  auto a = gate.enter(), b = gate.enter();
  ASSERT_TRUE(a && b);
  EXPECT_EQ(gate.running(), 2);
  auto waiter = std::async(std::launch::async, [&] { return gate.enter() != nullptr; });
  ASSERT_TRUE(eventually([&] { return gate.waiting() == 1; }));
  EXPECT_EQ(gate.enter(), nullptr);  // queue full
  a.reset();
  EXPECT_TRUE(waiter.get());  // took a's slot (and released it again when its pointer died)
  auto c = gate.enter();
  ASSERT_TRUE(c);
  EXPECT_EQ(gate.running(), 2);
  auto blocked = std::async(std::launch::async, [&] { return gate.enter() != nullptr; });
  ASSERT_TRUE(eventually([&] { return gate.waiting() == 1; }));
  gate.close();
  EXPECT_FALSE(blocked.get());
  EXPECT_EQ(gate.enter(), nullptr);
}

}  // namespace
