// The OpenAI-compatible request and response shapes: parsing a /v1/completions or
// /v1/chat/completions body into a generation (every field checked, errors naming it) and the
// JSON for responses, stream chunks and errors.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "infer/engine.h"
#include "serve/chat_template.h"
#include "util/error.h"

namespace tsumugi::serve {

// An error reported to the client as {"error": {"message", "type", "param", "code"}}.
class ApiError : public Error {
 public:
  ApiError(int status, const std::string& message, std::string param = {}, std::string code = {},
           std::string type = "invalid_request_error")
      : Error(message), status(status), type(std::move(type)), param(std::move(param)), code(std::move(code)) {}
  int status;
  std::string type, param, code;  // empty param/code are sent as null
};

nlohmann::json error_body(const ApiError& e);

enum class Endpoint { completions, chat_completions };

struct GenerationRequest {
  Endpoint endpoint = Endpoint::completions;
  std::vector<int32_t> prompt;  // token ids
  infer::Sampling sampling;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
};

struct ParseContext {
  const infer::Engine& engine;
  const std::string& model_name;  // the id /v1/models reports
  const ChatTemplate& chat_template;
};

// Parses and checks a request body. Throws ApiError: 400 (malformed JSON, a wrong type or value,
// naming the field; empty prompt or messages; n != 1; context_length_exceeded), 404
// (model_not_found).
GenerationRequest parse_generation_request(Endpoint endpoint, const std::string& body, const ParseContext& ctx);

// Response bodies. `id` is cmpl-… or chatcmpl-…; `created` is Unix seconds.
struct ResponseInfo {
  std::string id, model;
  int64_t created = 0;
};
nlohmann::json usage_json(int prompt_tokens, int completion_tokens);
nlohmann::json completion_response(Endpoint endpoint, const ResponseInfo& info, const infer::Completion& c);
// One streamed chunk: `delta` text (chat: the first chunk carries the assistant role), or the
// final chunk with `finish_reason`.
nlohmann::json stream_chunk(Endpoint endpoint, const ResponseInfo& info, const std::string& delta, bool first,
                            const std::string& finish_reason);
// The last chunk when stream_options.include_usage is set: no choices, the usage.
nlohmann::json usage_chunk(Endpoint endpoint, const ResponseInfo& info, int prompt_tokens, int completion_tokens);

// A JSON dump that never throws on invalid UTF-8 in generated text (it becomes U+FFFD).
std::string dump_json(const nlohmann::json& j);

}  // namespace tsumugi::serve
