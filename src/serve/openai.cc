#include "serve/openai.h"

#include <cmath>
#include <limits>
#include <random>

namespace tsumugi::serve {

using nlohmann::json;

json error_body(const ApiError& e) {
  json err = {{"message", e.what()}, {"type", e.type}, {"param", nullptr}, {"code", nullptr}};
  if (!e.param.empty()) err["param"] = e.param;
  if (!e.code.empty()) err["code"] = e.code;
  return json{{"error", err}};
}

std::string dump_json(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

namespace {

[[noreturn]] void bad_field(const std::string& field, const std::string& what) {
  throw ApiError(400, "'" + field + "' " + what, field);
}

const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::string:
      return "a string";
    case json::value_t::array:
      return "an array";
    case json::value_t::object:
      return "an object";
    default:
      return "a number";
  }
}

// The field's value if present and not null.
const json* field(const json& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

double number_field(const json& body, const char* name, double lo, double hi, double fallback) {
  const json* v = field(body, name);
  if (!v) return fallback;
  if (!v->is_number()) bad_field(name, std::string("must be a number, not ") + type_name(*v));
  const double x = v->get<double>();
  if (!(x >= lo && x <= hi)) bad_field(name, fmt::format("must be between {} and {} (got {})", lo, hi, x));
  return x;
}

int64_t integer_field(const json& body, const char* name, int64_t lo, int64_t hi, int64_t fallback) {
  const json* v = field(body, name);
  if (!v) return fallback;
  if (!v->is_number_integer()) bad_field(name, std::string("must be an integer, not ") + type_name(*v));
  const int64_t x =
      v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX : v->get<int64_t>();
  if (x < lo || x > hi) bad_field(name, fmt::format("must be between {} and {} (got {})", lo, hi, x));
  return x;
}

bool bool_field(const json& body, const char* name, bool fallback) {
  const json* v = field(body, name);
  if (!v) return fallback;
  if (!v->is_boolean()) bad_field(name, std::string("must be a boolean, not ") + type_name(*v));
  return v->get<bool>();
}

std::vector<int32_t> encode(const infer::Engine& engine, const std::string& text) {
  if (!engine.has_tokenizer())
    throw ApiError(400, "the model has no tokenizer; send the prompt as token ids", "prompt");
  std::vector<int32_t> ids;
  engine.tokenizer().encode(text, ids);
  return ids;
}

std::vector<int32_t> parse_prompt(const json& body, const infer::Engine& engine) {
  const json* p = field(body, "prompt");
  if (!p) bad_field("prompt", "is required");
  auto ids_from = [&](const json& arr, const std::string& where) {
    std::vector<int32_t> ids;
    for (std::size_t i = 0; i < arr.size(); ++i) {
      const json& t = arr[i];
      if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= engine.config().vocab_size)
        bad_field(fmt::format("{}[{}]", where, i),
                  fmt::format("must be a token id in [0, {})", engine.config().vocab_size));
      ids.push_back(static_cast<int32_t>(t.get<int64_t>()));
    }
    return ids;
  };
  std::vector<int32_t> ids;
  if (p->is_string()) {
    ids = encode(engine, p->get<std::string>());
  } else if (p->is_array()) {
    if (p->empty()) bad_field("prompt", "is empty");
    const json& first = (*p)[0];
    if (first.is_number_integer()) {
      ids = ids_from(*p, "prompt");
    } else {
      // An array of prompts: one choice each in OpenAI's API; this server answers one (n = 1).
      if (p->size() != 1)
        bad_field("prompt", fmt::format("holds {} prompts; this server takes one per request", p->size()));
      if (first.is_string())
        ids = encode(engine, first.get<std::string>());
      else if (first.is_array())
        ids = ids_from(first, "prompt[0]");
      else
        bad_field("prompt[0]", std::string("must be a string or an array of token ids, not ") + type_name(first));
    }
  } else {
    bad_field("prompt", std::string("must be a string or an array, not ") + type_name(*p));
  }
  if (ids.empty()) bad_field("prompt", "is empty");
  return ids;
}

std::string message_content(const json& m, std::size_t i) {
  const std::string where = fmt::format("messages[{}].content", i);
  auto c = m.find("content");
  if (c == m.end() || c->is_null()) bad_field(where, "is required");
  if (c->is_string()) return c->get<std::string>();
  // The content-parts form: [{"type": "text", "text": "..."}, ...]; only text parts are served.
  if (c->is_array()) {
    std::string text;
    for (std::size_t k = 0; k < c->size(); ++k) {
      const json& part = (*c)[k];
      const std::string pw = fmt::format("{}[{}]", where, k);
      if (!part.is_object()) bad_field(pw, "must be an object");
      auto type = part.find("type");
      if (type == part.end() || !type->is_string() || type->get<std::string>() != "text")
        bad_field(pw + ".type", "must be \"text\" (this model reads text only)");
      auto t = part.find("text");
      if (t == part.end() || !t->is_string()) bad_field(pw + ".text", "must be a string");
      text += t->get<std::string>();
    }
    return text;
  }
  bad_field(where, std::string("must be a string or an array of text parts, not ") + type_name(*c));
}

std::vector<int32_t> parse_messages(const json& body, const ParseContext& ctx) {
  const json* ms = field(body, "messages");
  if (!ms) bad_field("messages", "is required");
  if (!ms->is_array()) bad_field("messages", std::string("must be an array, not ") + type_name(*ms));
  if (ms->empty()) bad_field("messages", "is empty");
  std::vector<ChatMessage> messages;
  for (std::size_t i = 0; i < ms->size(); ++i) {
    const json& m = (*ms)[i];
    if (!m.is_object())
      bad_field(fmt::format("messages[{}]", i), std::string("must be an object, not ") + type_name(m));
    auto role = m.find("role");
    if (role == m.end() || !role->is_string()) bad_field(fmt::format("messages[{}].role", i), "must be a string");
    std::string r = role->get<std::string>();
    if (r == "developer") r = "system";  // OpenAI's newer name for the system role
    messages.push_back({r, message_content(m, i)});
  }
  std::string prompt;
  try {
    prompt = ctx.chat_template.render(messages);
  } catch (const Error& e) {
    throw ApiError(400, e.what(), "messages");
  }
  return encode(ctx.engine, prompt);
}

std::vector<std::string> parse_stop(const json& body) {
  const json* st = field(body, "stop");
  if (!st) return {};
  if (st->is_string()) {
    if (st->get<std::string>().empty()) bad_field("stop", "must not be an empty string");
    return {st->get<std::string>()};
  }
  if (!st->is_array()) bad_field("stop", std::string("must be a string or an array of strings, not ") + type_name(*st));
  std::vector<std::string> out;
  for (std::size_t i = 0; i < st->size(); ++i) {
    if (!(*st)[i].is_string() || (*st)[i].get<std::string>().empty())
      bad_field(fmt::format("stop[{}]", i), "must be a non-empty string");
    out.push_back((*st)[i].get<std::string>());
  }
  return out;
}

}  // namespace

GenerationRequest parse_generation_request(Endpoint endpoint, const std::string& body_text, const ParseContext& ctx) {
  json body;
  try {
    body = json::parse(body_text);
  } catch (const json::parse_error& e) {
    throw ApiError(400, fmt::format("the request body is not valid JSON (at byte {})", e.byte));
  }
  if (!body.is_object())
    throw ApiError(400, std::string("the request body must be a JSON object, not ") + type_name(body));

  if (const json* m = field(body, "model")) {
    if (!m->is_string()) bad_field("model", std::string("must be a string, not ") + type_name(*m));
    if (m->get<std::string>() != ctx.model_name)
      throw ApiError(
          404,
          fmt::format("The model '{}' does not exist; this server has '{}'", m->get<std::string>(), ctx.model_name),
          "model", "model_not_found");
  }
  if (integer_field(body, "n", 1, 1024, 1) != 1) bad_field("n", "must be 1 (one choice per request)");
  if (bool_field(body, "echo", false)) bad_field("echo", "is not supported");
  for (const char* penalty : {"presence_penalty", "frequency_penalty"})
    if (number_field(body, penalty, -2.0, 2.0, 0.0) != 0.0)
      bad_field(penalty, "is not supported (use repetition_penalty)");

  GenerationRequest r;
  r.endpoint = endpoint;
  const bool chat = endpoint == Endpoint::chat_completions;
  r.prompt = chat ? parse_messages(body, ctx) : parse_prompt(body, ctx.engine);
  const int context = ctx.engine.context_length();
  if (static_cast<int>(r.prompt.size()) >= context)
    throw ApiError(400,
                   fmt::format("This model's maximum context length is {} tokens; the {} has {} tokens", context,
                               chat ? "conversation" : "prompt", r.prompt.size()),
                   chat ? "messages" : "prompt", "context_length_exceeded");

  infer::Sampling& s = r.sampling;
  const int room = context - static_cast<int>(r.prompt.size());
  // max_completion_tokens is the newer name; either may be given. Absent: fill the context.
  int64_t max_tokens = integer_field(body, "max_tokens", 1, INT32_MAX, room);
  max_tokens = integer_field(body, "max_completion_tokens", 1, INT32_MAX, max_tokens);
  s.max_tokens = static_cast<int>(std::min<int64_t>(max_tokens, room));
  s.temperature = static_cast<float>(number_field(body, "temperature", 0.0, 2.0, 1.0));
  s.top_p = static_cast<float>(number_field(body, "top_p", 0.0, 1.0, 1.0));
  if (s.top_p <= 0.0f) bad_field("top_p", "must be greater than 0");
  s.top_k = static_cast<int>(integer_field(body, "top_k", 0, INT32_MAX, 0));
  s.min_p = static_cast<float>(number_field(body, "min_p", 0.0, 1.0, 0.0));
  s.repetition_penalty = static_cast<float>(number_field(body, "repetition_penalty", 1e-3, 100.0, 1.0));
  const json* seed = field(body, "seed");
  if (seed) {
    if (!seed->is_number_integer()) bad_field("seed", std::string("must be an integer, not ") + type_name(*seed));
    s.seed = seed->is_number_unsigned() ? seed->get<uint64_t>() : static_cast<uint64_t>(seed->get<int64_t>());
  } else {
    s.seed = std::random_device{}();
  }
  s.ignore_eos = bool_field(body, "ignore_eos", false);
  s.stop = parse_stop(body);
  if (chat)
    for (const auto& st : ctx.chat_template.stop()) s.stop.push_back(st);
  if (!s.stop.empty() && !ctx.engine.has_tokenizer()) bad_field("stop", "needs a model with a tokenizer");
  r.stream = bool_field(body, "stream", false);
  if (const json* so = field(body, "stream_options")) {
    if (!so->is_object()) bad_field("stream_options", std::string("must be an object, not ") + type_name(*so));
    r.include_usage = bool_field(*so, "include_usage", false);
  }
  try {
    infer::validate(s);
  } catch (const Error& e) {
    throw ApiError(400, e.what());
  }
  return r;
}

json usage_json(int prompt_tokens, int completion_tokens) {
  return json{{"prompt_tokens", prompt_tokens},
              {"completion_tokens", completion_tokens},
              {"total_tokens", prompt_tokens + completion_tokens}};
}

json completion_response(Endpoint endpoint, const ResponseInfo& info, const infer::Completion& c) {
  json choice = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", c.finish_reason}};
  const bool chat = endpoint == Endpoint::chat_completions;
  if (chat)
    choice["message"] = {{"role", "assistant"}, {"content", c.text}};
  else
    choice["text"] = c.text;
  return json{{"id", info.id},
              {"object", chat ? "chat.completion" : "text_completion"},
              {"created", info.created},
              {"model", info.model},
              {"choices", json::array({choice})},
              {"usage", usage_json(c.prompt_tokens, c.completion_tokens)}};
}

json stream_chunk(Endpoint endpoint, const ResponseInfo& info, const std::string& delta, bool first,
                  const std::string& finish_reason) {
  const bool chat = endpoint == Endpoint::chat_completions;
  json choice = {{"index", 0}, {"logprobs", nullptr}};
  choice["finish_reason"] = finish_reason.empty() ? json(nullptr) : json(finish_reason);
  if (chat) {
    json d = json::object();
    if (first) d["role"] = "assistant";
    if (finish_reason.empty()) d["content"] = delta;
    choice["delta"] = d;
  } else {
    choice["text"] = delta;
  }
  return json{{"id", info.id},
              {"object", chat ? "chat.completion.chunk" : "text_completion"},
              {"created", info.created},
              {"model", info.model},
              {"choices", json::array({choice})}};
}

json usage_chunk(Endpoint endpoint, const ResponseInfo& info, int prompt_tokens, int completion_tokens) {
  const bool chat = endpoint == Endpoint::chat_completions;
  return json{{"id", info.id},
              {"object", chat ? "chat.completion.chunk" : "text_completion"},
              {"created", info.created},
              {"model", info.model},
              {"choices", json::array()},
              {"usage", usage_json(prompt_tokens, completion_tokens)}};
}

}  // namespace tsumugi::serve
