// `tsumugi serve`: an HTTP server (cpp-httplib) with the OpenAI-compatible API over one loaded
// model, the chat page, /health, /metrics and /tokenize.
//
// Concurrency: connections are handled by a thread pool; generations pass an admission gate that
// lets `parallel` run at once and `max_queue` wait, and answers 503 beyond that. A streaming
// generation stops when the client goes away (the next write fails) or the server stops.
//
// More pages and endpoints can be added before run(): add_page() for an embedded resource,
// routes() for any handler, send_error() for errors in the API's shape.
#pragma once

#include <httplib.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "infer/engine.h"
#include "serve/chat_template.h"
#include "serve/metrics.h"
#include "serve/openai.h"

namespace tsumugi::serve {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                        // 0 = any free port (see Server::bind)
  int parallel = 2;                       // generations running at once
  int max_queue = 64;                     // generations waiting for a slot; more get 503
  std::string api_key;                    // when set, API calls need "Authorization: Bearer KEY"
  std::size_t max_body_bytes = 4u << 20;  // larger bodies get 413
  std::string model_name;                 // the id in /v1/models; empty = the engine's directory name
  ChatTemplate chat_template = ChatTemplate::llm_jp();
};

// Lets `parallel` holders in and `max_queue` wait; the rest are turned away.
class AdmissionGate {
 public:
  AdmissionGate(int parallel, int max_queue) : parallel_(parallel), max_queue_(max_queue) {}
  // Waits for a slot. Null when the queue is full or the gate is closed. The slot is released when
  // the returned pointer (and its copies) are gone.
  std::shared_ptr<void> enter();
  void close();  // wakes everyone waiting (they get null) and refuses new entries
  int running() const;
  int waiting() const;

 private:
  void leave();
  mutable std::mutex mu_;
  std::condition_variable cv_;
  int parallel_, max_queue_;
  int running_ = 0, waiting_ = 0;
  bool closed_ = false;
};

class Server {
 public:
  Server(infer::Engine& engine, ServerOptions opt);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds the listening socket; returns the port (the chosen one when options.port is 0).
  int bind();
  // Serves until stop(); bind() first.
  void run();
  // Stops accepting, cancels running generations, wakes queued ones; run() returns once the
  // in-flight requests have finished. Safe from any thread.
  void stop();

  const std::string& model_name() const { return model_name_; }
  Metrics& metrics() { return metrics_; }

  // Serves embedded resource `resource` (e.g. "web/chat.html") at `path`.
  void add_page(const std::string& path, const std::string& resource);
  // Adds API endpoints (httplib path patterns) with the API key checked and ApiError answered as
  // the JSON error, like the built-in ones.
  using Handler = std::function<void(const httplib::Request&, httplib::Response&)>;
  void add_api_get(const std::string& pattern, Handler h) { http_.Get(pattern, guarded(std::move(h))); }
  void add_api_post(const std::string& pattern, Handler h) { http_.Post(pattern, guarded(std::move(h))); }
  httplib::Server& routes() { return http_; }
  static void send_error(httplib::Response& res, const ApiError& e);

 private:
  void install_routes();
  Handler guarded(Handler h);
  bool authorized(const httplib::Request& req) const;
  void handle_generation(Endpoint endpoint, const httplib::Request& req, httplib::Response& res);
  void handle_tokenize(const httplib::Request& req, httplib::Response& res);
  void handle_detokenize(const httplib::Request& req, httplib::Response& res);
  std::string new_id(const char* prefix);

  infer::Engine& engine_;
  ServerOptions opt_;
  std::string model_name_;
  httplib::Server http_;
  AdmissionGate gate_;
  Metrics metrics_;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> next_id_{0};
  uint64_t id_salt_;
  int64_t started_at_;
};

}  // namespace tsumugi::serve
