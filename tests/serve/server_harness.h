// Runs a serve::Server in the test process on a free loopback port, with helpers to call it.
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "serve/server.h"

namespace tsumugi::testing {

class RunningServer {
 public:
  // `setup` adds routes (e.g. serve::add_search) before the server starts listening.
  RunningServer(infer::Engine& engine, serve::ServerOptions opt,
                const std::function<void(serve::Server&)>& setup = {}) {
    opt.host = "127.0.0.1";
    opt.port = 0;
    server_ = std::make_unique<serve::Server>(engine, std::move(opt));
    if (setup) setup(*server_);
    port_ = server_->bind();
    thread_ = std::thread([this] { server_->run(); });
    // Ready when /health answers.
    for (int i = 0; i < 200; ++i) {
      httplib::Client c("127.0.0.1", port_);
      if (auto r = c.Get("/health"); r && r->status == 200) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ADD_FAILURE() << "the server did not answer /health";
  }
  ~RunningServer() {
    server_->stop();
    thread_.join();
  }
  int port() const { return port_; }
  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  serve::Server& server() { return *server_; }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(30);
    return c;
  }

 private:
  std::unique_ptr<serve::Server> server_;
  int port_ = 0;
  std::thread thread_;
};

// The JSON events of a server-sent-event body ("data: {...}\n\n" ... "data: [DONE]\n\n");
// `done` tells whether the stream ended with [DONE].
inline std::vector<nlohmann::json> sse_events(const std::string& body, bool* done) {
  std::vector<nlohmann::json> out;
  *done = false;
  std::size_t pos = 0;
  while (pos < body.size()) {
    const std::size_t end = body.find("\n\n", pos);
    if (end == std::string::npos) break;
    std::string event = body.substr(pos, end - pos);
    pos = end + 2;
    if (event.rfind("data: ", 0) != 0) continue;
    event = event.substr(6);
    if (event == "[DONE]") {
      *done = true;
      break;
    }
    out.push_back(nlohmann::json::parse(event));
  }
  return out;
}

}  // namespace tsumugi::testing
