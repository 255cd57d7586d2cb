#include "serve/server.h"

#include <fmt/format.h>

#include <chrono>
#include <ctime>
#include <random>
#include <utility>

#include "util/log.h"
#include "util/resources.h"

namespace tsumugi::serve {

using nlohmann::json;
using clock_type = std::chrono::steady_clock;

// ---- AdmissionGate -------------------------------------------------------------------------

std::shared_ptr<void> AdmissionGate::enter() {
  std::unique_lock<std::mutex> lock(mu_);
  if (closed_) return nullptr;
  if (running_ >= parallel_) {
    if (waiting_ >= max_queue_) return nullptr;
    ++waiting_;
    cv_.wait(lock, [&] { return closed_ || running_ < parallel_; });
    --waiting_;
    if (closed_) return nullptr;
  }
  ++running_;
  return std::shared_ptr<void>(this, [](AdmissionGate* g) { g->leave(); });
}

void AdmissionGate::leave() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    --running_;
  }
  cv_.notify_one();
}

void AdmissionGate::close() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
  }
  cv_.notify_all();
}

int AdmissionGate::running() const {
  std::lock_guard<std::mutex> lock(mu_);
  return running_;
}

int AdmissionGate::waiting() const {
  std::lock_guard<std::mutex> lock(mu_);
  return waiting_;
}

// ---- Server --------------------------------------------------------------------------------

namespace {

// Set when routing starts, cleared once logged: requests httplib refuses before routing (413, a bad
// request line) have no start time and are logged without a duration.
thread_local clock_type::time_point t_request_start;

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

std::string content_type_for(const std::string& name) {
  auto ends = [&](const char* ext) {
    const std::string e(ext);
    return name.size() >= e.size() && name.compare(name.size() - e.size(), e.size(), e) == 0;
  };
  if (ends(".html")) return "text/html; charset=utf-8";
  if (ends(".js")) return "text/javascript; charset=utf-8";
  if (ends(".css")) return "text/css; charset=utf-8";
  if (ends(".json")) return "application/json";
  return "application/octet-stream";
}

json parse_object_body(const std::string& body) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::parse_error& e) {
    throw ApiError(400, fmt::format("the request body is not valid JSON (at byte {})", e.byte));
  }
  if (!j.is_object()) throw ApiError(400, "the request body must be a JSON object");
  return j;
}

}  // namespace

Server::Server(infer::Engine& engine, ServerOptions opt)
    : engine_(engine), opt_(std::move(opt)), gate_(std::max(1, opt_.parallel), std::max(0, opt_.max_queue)) {
  if (opt_.parallel < 1) fail("--parallel must be at least 1 (got {})", opt_.parallel);
  if (opt_.max_queue < 0) fail("--max-queue must not be negative (got {})", opt_.max_queue);
  if (opt_.max_body_bytes < 1024) fail("--max-body-bytes must be at least 1024 (got {})", opt_.max_body_bytes);
  model_name_ = opt_.model_name.empty() ? engine_.name() : opt_.model_name;
  id_salt_ = std::random_device{}() ^ (static_cast<uint64_t>(std::random_device{}()) << 32);
  started_at_ = static_cast<int64_t>(std::time(nullptr));
  // Every queued generation holds a connection thread while it waits, and a few more threads keep
  // /health, /metrics and the pages answering when all generation slots are busy.
  const std::size_t threads = static_cast<std::size_t>(opt_.parallel + opt_.max_queue + 8);
  http_.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  http_.set_payload_max_length(opt_.max_body_bytes);
  http_.set_keep_alive_timeout(5);
  http_.set_read_timeout(30);
  http_.set_write_timeout(30);
  http_.set_pre_routing_handler([](const httplib::Request&, httplib::Response&) {
    t_request_start = clock_type::now();
    return httplib::Server::HandlerResponse::Unhandled;
  });
  // Errors httplib produces itself (unknown path, body too large, bad request line) get the API's
  // JSON error shape too.
  http_.set_error_handler(
      httplib::Server::HandlerWithResponse([this](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        if (res.status == 413)
          send_error(res, ApiError(413, fmt::format("the request body is larger than {} bytes", opt_.max_body_bytes)));
        else if (res.status == 404)
          send_error(res, ApiError(404, fmt::format("no such endpoint: {} {}", req.method, req.path), "", "not_found"));
        else
          send_error(res, ApiError(res.status, fmt::format("HTTP {}", res.status)));
        return httplib::Server::HandlerResponse::Handled;
      }));
  http_.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "internal error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_error(res, ApiError(500, what, "", "", "server_error"));
  });
  http_.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    std::string took = "-";
    if (t_request_start != clock_type::time_point{})
      took = fmt::format("{:.1f}ms",
                         std::chrono::duration<double, std::milli>(clock_type::now() - t_request_start).count());
    t_request_start = {};
    log::info("{} \"{} {}\" {} {}", req.remote_addr, req.method, req.path, res.status, took);
    static const char* known[] = {"/v1/models", "/v1/completions", "/v1/chat/completions", "/health",
                                  "/metrics",   "/tokenize",       "/detokenize"};
    std::string endpoint = "other";
    for (const char* k : known)
      if (req.path == k) endpoint = k;
    if (req.method == "GET" && res.status == 200 && endpoint == "other") endpoint = "page";
    metrics_.count_request(endpoint, res.status);
  });
  install_routes();
}

Server::~Server() { stop(); }

void Server::send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  res.set_content(dump_json(error_body(e)), "application/json");
}

bool Server::authorized(const httplib::Request& req) const {
  if (opt_.api_key.empty()) return true;
  const std::string expected = "Bearer " + opt_.api_key;
  const std::string got = req.get_header_value("Authorization");
  // Compare in time independent of where the strings differ.
  unsigned diff = got.size() != expected.size();
  for (std::size_t i = 0; i < expected.size(); ++i)
    diff |= static_cast<unsigned>(i < got.size() ? got[i] ^ expected[i] : 1);
  return diff == 0;
}

std::string Server::new_id(const char* prefix) {
  const uint64_t n = next_id_.fetch_add(1);
  return fmt::format("{}{:016x}{:08x}", prefix, splitmix64(id_salt_ + n), static_cast<uint32_t>(n));
}

void Server::add_page(const std::string& path, const std::string& resource) {
  auto bytes = resources::find(resource);
  if (!bytes) fail("no embedded resource '{}'", resource);
  const std::string type = content_type_for(resource);
  const std::string_view body = *bytes;
  http_.Get(path, [body, type](const httplib::Request&, httplib::Response& res) {
    res.set_content(body.data(), body.size(), type.c_str());
  });
}

// An API handler: checks the key first, turns ApiError into the JSON error.
Server::Handler Server::guarded(Handler fn) {
  return [this, fn = std::move(fn)](const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req)) {
      send_error(res, ApiError(401, "Incorrect or missing API key: send the header 'Authorization: Bearer KEY'", "",
                               "invalid_api_key"));
      return;
    }
    try {
      fn(req, res);
    } catch (const ApiError& e) {
      send_error(res, e);
    }
  };
}

void Server::install_routes() {
  auto api = [this](Handler fn) { return guarded(std::move(fn)); };
  http_.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    if (stopping_) res.status = 503;
    res.set_content(dump_json(json{{"status", stopping_ ? "stopping" : "ok"}, {"model", model_name_}}),
                    "application/json");
  });
  http_.Get("/metrics", api([this](const httplib::Request&, httplib::Response& res) {
              metrics_.set_queue(gate_.running(), gate_.waiting());
              const infer::Engine::DecodeCounters dc = engine_.decode_counters();
              metrics_.set_decode_steps(dc.steps, dc.tokens);
              res.set_content(metrics_.render(), "text/plain; version=0.0.4");
            }));
  auto model_json = [this] {
    return json{{"id", model_name_},
                {"object", "model"},
                {"created", started_at_},
                {"owned_by", "tsumugi"},
                {"context_length", engine_.context_length()}};
  };
  http_.Get(
      "/v1/models", api([model_json](const httplib::Request&, httplib::Response& res) {
        res.set_content(dump_json(json{{"object", "list"}, {"data", json::array({model_json()})}}), "application/json");
      }));
  http_.Get("/v1/models/(.+)", api([this, model_json](const httplib::Request& req, httplib::Response& res) {
              if (req.matches[1] != model_name_)
                throw ApiError(404, fmt::format("The model '{}' does not exist", req.matches[1].str()), "model",
                               "model_not_found");
              res.set_content(dump_json(model_json()), "application/json");
            }));
  http_.Post("/v1/completions", api([this](const httplib::Request& req, httplib::Response& res) {
               handle_generation(Endpoint::completions, req, res);
             }));
  http_.Post("/v1/chat/completions", api([this](const httplib::Request& req, httplib::Response& res) {
               handle_generation(Endpoint::chat_completions, req, res);
             }));
  http_.Post("/tokenize",
             api([this](const httplib::Request& req, httplib::Response& res) { handle_tokenize(req, res); }));
  http_.Post("/detokenize",
             api([this](const httplib::Request& req, httplib::Response& res) { handle_detokenize(req, res); }));
  // The web pages: web/NAME at /NAME, the chat page also at /.
  for (const auto& [name, bytes] : resources::all()) {
    if (name.substr(0, 4) != "web/") continue;
    add_page("/" + std::string(name.substr(4)), std::string(name));
  }
  if (resources::find("web/chat.html")) add_page("/", "web/chat.html");
}

void Server::handle_tokenize(const httplib::Request& req, httplib::Response& res) {
  const json body = parse_object_body(req.body);
  const json* text = nullptr;
  for (const char* key : {"text", "content"})
    if (body.contains(key)) text = &body[key];
  if (!text) throw ApiError(400, "'text' (or 'content') is required", "text");
  if (!text->is_string()) throw ApiError(400, "'text' must be a string", "text");
  if (!engine_.has_tokenizer()) throw ApiError(400, "the model has no tokenizer");
  const auto& tok = engine_.tokenizer();
  std::vector<int32_t> ids;
  tok.encode(text->get<std::string>(), ids);
  json pieces = json::array();
  for (int32_t id : ids) pieces.push_back(tok.id_to_piece(id));
  res.set_content(dump_json(json{{"tokens", ids}, {"pieces", pieces}, {"count", ids.size()}}), "application/json");
}

void Server::handle_detokenize(const httplib::Request& req, httplib::Response& res) {
  const json body = parse_object_body(req.body);
  if (!body.contains("tokens") || !body["tokens"].is_array())
    throw ApiError(400, "'tokens' must be an array of token ids", "tokens");
  if (!engine_.has_tokenizer()) throw ApiError(400, "the model has no tokenizer");
  const auto& tok = engine_.tokenizer();
  std::vector<int32_t> ids;
  const json& arr = body["tokens"];
  for (std::size_t i = 0; i < arr.size(); ++i) {
    if (!arr[i].is_number_integer() || arr[i].get<int64_t>() < 0 || arr[i].get<int64_t>() >= tok.vocab_size())
      throw ApiError(400, fmt::format("'tokens[{}]' must be a token id in [0, {})", i, tok.vocab_size()),
                     fmt::format("tokens[{}]", i));
    ids.push_back(static_cast<int32_t>(arr[i].get<int64_t>()));
  }
  res.set_content(dump_json(json{{"text", tok.decode(ids)}}), "application/json");
}

void Server::handle_generation(Endpoint endpoint, const httplib::Request& req, httplib::Response& res) {
  GenerationRequest g;
  try {
    g = parse_generation_request(endpoint, req.body, ParseContext{engine_, model_name_, opt_.chat_template});
  } catch (const ApiError&) {
    throw;
  } catch (const Error& e) {  // e.g. the tokenizer refusing the text
    throw ApiError(400, e.what());
  }
  std::shared_ptr<void> slot = gate_.enter();
  if (!slot) {
    if (stopping_) throw ApiError(503, "the server is shutting down", "", "server_shutting_down", "server_error");
    throw ApiError(503,
                   fmt::format("the server is busy ({} generations running, {} waiting); retry later", opt_.parallel,
                               opt_.max_queue),
                   "", "server_overloaded", "server_error");
  }
  const bool chat = endpoint == Endpoint::chat_completions;
  const ResponseInfo info{new_id(chat ? "chatcmpl-" : "cmpl-"), model_name_, static_cast<int64_t>(std::time(nullptr))};
  const auto admitted = clock_type::now();
  bool first_token = true;
  auto on_token = [this, admitted, first_token](int32_t) mutable {
    if (first_token) metrics_.observe_ttft(std::chrono::duration<double>(clock_type::now() - admitted).count());
    first_token = false;
  };
  auto record = [this](const infer::Completion& c) {
    metrics_.add_tokens(c.prompt_tokens, c.completion_tokens);
    if (c.completion_tokens > 0 && c.decode_seconds > 0)
      metrics_.observe_decode_rate(c.completion_tokens / c.decode_seconds);
  };

  if (!g.stream && req.version == "HTTP/1.0") {  // no chunked encoding: generated before answering
    infer::Completion c = engine_.complete(
        g.prompt, g.sampling, [this](const std::string&) { return !stopping_.load(); }, on_token);
    record(c);
    res.set_content(dump_json(completion_response(endpoint, info, c)), "application/json");
    return;
  }
  if (!g.stream) {
    // Generated inside a content provider, whose sink says when the client has hung up (the
    // request handler has no view of the connection in this cpp-httplib), so a client that gives
    // up stops its generation as a streaming one does (one that half-closes its side after the
    // request counts as gone). The status line goes out first: a failure during generation (never
    // from the request's content, which was checked above) is reported in the body, with OpenAI's
    // error shape.
    res.set_chunked_content_provider("application/json", [this, g, info, slot, endpoint, on_token, record,
                                                          ran = false](std::size_t, httplib::DataSink& sink) mutable {
      if (std::exchange(ran, true)) return false;  // one generation per request, whatever httplib does
      std::string body;
      try {
        infer::Completion c = engine_.complete(
            g.prompt, g.sampling, [&](const std::string&) { return !stopping_.load() && sink.is_writable(); },
            on_token);
        record(c);
        body = dump_json(completion_response(endpoint, info, c));
      } catch (const std::exception& e) {
        body = dump_json(error_body(ApiError(500, e.what(), "", "", "server_error")));
      }
      slot.reset();  // free the generation slot before the connection is torn down
      if (!sink.write(body.data(), body.size())) return false;  // the client has gone
      sink.done();
      return true;
    });
    return;
  }
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  res.set_chunked_content_provider("text/event-stream", [this, g, info, slot, endpoint, on_token, record](
                                                            std::size_t, httplib::DataSink& sink) mutable {
    bool alive = true;
    auto send = [&](const json& j) {
      const std::string event = "data: " + dump_json(j) + "\n\n";
      alive = alive && sink.write(event.data(), event.size());
      return alive;
    };
    const bool chat = endpoint == Endpoint::chat_completions;
    if (chat) send(stream_chunk(endpoint, info, "", true, ""));
    try {
      infer::Completion c = engine_.complete(
          g.prompt, g.sampling,
          [&](const std::string& delta) {
            if (stopping_ || !alive) return false;
            return delta.empty() || send(stream_chunk(endpoint, info, delta, false, ""));
          },
          on_token);
      record(c);
      if (c.finish_reason != "cancelled") {
        send(stream_chunk(endpoint, info, "", false, c.finish_reason));
        if (g.include_usage) send(usage_chunk(endpoint, info, c.prompt_tokens, c.completion_tokens));
      }
    } catch (const std::exception& e) {
      send(error_body(ApiError(500, e.what(), "", "", "server_error")));
    }
    if (alive) {
      static const char kDone[] = "data: [DONE]\n\n";
      alive = sink.write(kDone, sizeof(kDone) - 1);
    }
    slot.reset();  // free the generation slot before the connection is torn down
    if (!alive) return false;
    sink.done();
    return true;
  });
}

int Server::bind() {
  int port = opt_.port;
  if (port == 0) {
    port = http_.bind_to_any_port(opt_.host);
    if (port < 0) fail("cannot listen on {} (no free port, or the address is not this machine's)", opt_.host);
  } else if (!http_.bind_to_port(opt_.host, port)) {
    fail("cannot listen on {}:{} (in use, or the address is not this machine's)", opt_.host, port);
  }
  return port;
}

void Server::run() {
  if (stopping_) return;
  http_.listen_after_bind();
}

void Server::stop() {
  stopping_ = true;
  gate_.close();
  http_.stop();
}

}  // namespace tsumugi::serve
