#include "la/serve/openai_api.h"

#include <cmath>

namespace la::serve {

using nlohmann::json;

ApiError bad_request(const std::string& message, const std::string& code) {
  return ApiError(400, "invalid_request_error", code, message);
}

std::string error_body(const std::string& message, const std::string& type, const std::string& code) {
  return json{{"error", {{"message", message}, {"type", type}, {"code", code}, {"param", nullptr}}}}.dump(
      -1, ' ', false, json::error_handler_t::replace);
}

namespace {

const json* field(const json& body, const char* name) {
  auto it = body.find(name);
  return it == body.end() || it->is_null() ? nullptr : &*it;
}

double number(const json& body, const char* name, double lo, double hi, double fallback) {
  const json* v = field(body, name);
  if (!v) return fallback;
  if (!v->is_number()) throw bad_request(std::string("'") + name + "' must be a number");
  const double x = v->get<double>();
  if (!std::isfinite(x) || x < lo || x > hi)
    throw bad_request(std::string("'") + name + "' must be between " + json(lo).dump() + " and " + json(hi).dump());
  return x;
}

int64_t integer(const json& body, const char* name, int64_t lo, int64_t hi, int64_t fallback) {
  const json* v = field(body, name);
  if (!v) return fallback;
  if (!v->is_number_integer()) throw bad_request(std::string("'") + name + "' must be an integer");
  // Unsigned values past int64 compare as huge; signed ones as themselves.
  if (v->is_number_unsigned() ? v->get<uint64_t>() > static_cast<uint64_t>(hi) : v->get<int64_t>() > hi)
    throw bad_request(std::string("'") + name + "' must be at most " + std::to_string(hi));
  const int64_t x = v->is_number_unsigned() ? static_cast<int64_t>(v->get<uint64_t>()) : v->get<int64_t>();
  if (x < lo) throw bad_request(std::string("'") + name + "' must be at least " + std::to_string(lo));
  return x;
}

bool boolean(const json& body, const char* name, bool fallback) {
  const json* v = field(body, name);
  if (!v) return fallback;
  if (!v->is_boolean()) throw bad_request(std::string("'") + name + "' must be a boolean");
  return v->get<bool>();
}

ApiMessage parse_message(const json& m, size_t i) {
  const std::string where = "messages[" + std::to_string(i) + "]";
  if (!m.is_object()) throw bad_request(where + " must be an object");
  ApiMessage out;
  const json* role = field(m, "role");
  if (!role || !role->is_string()) throw bad_request(where + ".role must be a string");
  out.role = role->get<std::string>();
  if (out.role == "developer") out.role = "system";  // OpenAI's newer name for it
  if (out.role != "system" && out.role != "user" && out.role != "assistant")
    throw bad_request(where + ".role must be system, user or assistant");
  const json* content = field(m, "content");
  if (!content) {
    if (out.role != "assistant") throw bad_request(where + ".content is missing");
  } else if (content->is_string()) {
    out.content = content->get<std::string>();
  } else if (content->is_array()) {
    for (size_t k = 0; k < content->size(); ++k) {
      const json& part = (*content)[k];
      const std::string pw = where + ".content[" + std::to_string(k) + "]";
      if (!part.is_object() || !part.contains("type") || !part["type"].is_string())
        throw bad_request(pw + " must be an object with a 'type'");
      const std::string type = part["type"].get<std::string>();
      if (type == "text") {
        if (!part.contains("text") || !part["text"].is_string()) throw bad_request(pw + ".text must be a string");
        out.content += part["text"].get<std::string>();
      } else if (type == "image_url") {
        const json* iu = field(part, "image_url");
        const json* url = iu && iu->is_object() ? field(*iu, "url") : iu;
        if (!url || !url->is_string()) throw bad_request(pw + ".image_url.url must be a string");
        out.image_urls.push_back(url->get<std::string>());
      } else {
        throw bad_request(pw + ": content parts of type '" + type + "' are not supported (text, image_url)");
      }
    }
  } else {
    throw bad_request(where + ".content must be a string or an array of parts");
  }
  return out;
}

}  // namespace

CompletionRequest parse_completion_request(const std::string& body_text, bool chat) {
  json body;
  try {
    body = json::parse(body_text);
  } catch (const json::exception& e) {
    throw bad_request(std::string("malformed JSON body: ") + e.what(), "invalid_json");
  }
  if (!body.is_object()) throw bad_request("the body must be a JSON object");
  CompletionRequest r;
  r.chat = chat;
  const json* model = field(body, "model");
  if (!model || !model->is_string()) throw bad_request("'model' must be a string naming the base or an adapter");
  r.model = model->get<std::string>();
  if (chat) {
    const json* msgs = field(body, "messages");
    if (!msgs || !msgs->is_array() || msgs->empty()) throw bad_request("'messages' must be a non-empty array");
    for (size_t i = 0; i < msgs->size(); ++i) r.messages.push_back(parse_message((*msgs)[i], i));
  } else {
    const json* p = field(body, "prompt");
    if (p && p->is_array() && p->size() == 1 && (*p)[0].is_string()) p = &(*p)[0];
    if (!p || !p->is_string()) throw bad_request("'prompt' must be a string");
    r.prompt = p->get<std::string>();
    if (boolean(body, "echo", false)) throw bad_request("'echo' is not supported");
  }
  r.sampling.temperature = static_cast<float>(number(body, "temperature", 0, 2, r.sampling.temperature));
  r.sampling.top_p = static_cast<float>(number(body, "top_p", 0, 1, r.sampling.top_p));
  if (r.sampling.top_p <= 0) throw bad_request("'top_p' must be above 0");
  r.sampling.top_k = static_cast<int>(integer(body, "top_k", 0, 1 << 20, 0));
  r.sampling.seed = static_cast<uint64_t>(integer(body, "seed", INT64_MIN, INT64_MAX, 42));
  const char* mt = chat && field(body, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  r.max_tokens = integer(body, mt, 1, 1 << 24, r.max_tokens);
  if (integer(body, "n", 1, 1, 1) != 1) throw bad_request("'n' must be 1");
  r.stream = boolean(body, "stream", false);
  r.ignore_eos = boolean(body, "ignore_eos", false);
  if (const json* so = field(body, "stream_options")) {
    if (!so->is_object()) throw bad_request("'stream_options' must be an object");
    r.include_usage = boolean(*so, "include_usage", false);
  }
  if (const json* st = field(body, "stop")) {
    if (st->is_string()) {
      r.stop.push_back(st->get<std::string>());
    } else if (st->is_array() && st->size() <= 4) {
      for (const json& s : *st) {
        if (!s.is_string()) throw bad_request("'stop' must be a string or an array of up to 4 strings");
        r.stop.push_back(s.get<std::string>());
      }
    } else {
      throw bad_request("'stop' must be a string or an array of up to 4 strings");
    }
    for (const std::string& s : r.stop)
      if (s.empty() || s.size() > 64) throw bad_request("each 'stop' string must have 1 to 64 bytes");
  }
  return r;
}

json usage_json(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", u.cached_tokens}}}};
}

json completion_json(bool chat, const std::string& id, int64_t created, const std::string& model,
                     const std::string& text, const std::string& finish_reason, const Usage& u) {
  json choice = {{"index", 0}, {"finish_reason", finish_reason}, {"logprobs", nullptr}};
  if (chat)
    choice["message"] = {{"role", "assistant"}, {"content", text}};
  else
    choice["text"] = text;
  return {{"id", id},
          {"object", chat ? "chat.completion" : "text_completion"},
          {"created", created},
          {"model", model},
          {"choices", json::array({choice})},
          {"usage", usage_json(u)}};
}

json chunk_json(bool chat, const std::string& id, int64_t created, const std::string& model, const std::string* text,
                const std::string* finish_reason, const Usage* usage, bool first) {
  json j = {{"id", id},
            {"object", chat ? "chat.completion.chunk" : "text_completion"},
            {"created", created},
            {"model", model}};
  if (usage) {
    j["choices"] = json::array();
    j["usage"] = usage_json(*usage);
    return j;
  }
  json choice = {{"index", 0}, {"logprobs", nullptr}};
  choice["finish_reason"] = finish_reason ? json(*finish_reason) : json(nullptr);
  if (chat) {
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (text) delta["content"] = *text;
    choice["delta"] = delta;
  } else {
    choice["text"] = text ? *text : "";
  }
  j["choices"] = json::array({choice});
  return j;
}

std::string sse(const json& j) {
  return "data: " + j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
}

std::vector<uint8_t> data_uri_bytes(const std::string& uri) {
  if (uri.rfind("data:", 0) != 0)
    throw bad_request("images must be given as data: URIs (the server fetches nothing)", "invalid_image");
  const size_t comma = uri.find(',');
  if (comma == std::string::npos) throw bad_request("malformed data: URI (no comma)", "invalid_image");
  const std::string meta = uri.substr(5, comma - 5);
  const bool b64 = meta.size() >= 7 && meta.compare(meta.size() - 7, 7, ";base64") == 0;
  std::vector<uint8_t> out;
  if (!b64) {  // percent-encoded
    for (size_t i = comma + 1; i < uri.size(); ++i) {
      if (uri[i] == '%' && i + 2 < uri.size() && std::isxdigit(static_cast<unsigned char>(uri[i + 1])) &&
          std::isxdigit(static_cast<unsigned char>(uri[i + 2]))) {
        out.push_back(static_cast<uint8_t>(std::stoi(uri.substr(i + 1, 2), nullptr, 16)));
        i += 2;
      } else {
        out.push_back(static_cast<uint8_t>(uri[i]));
      }
    }
    return out;
  }
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = comma + 1; i < uri.size(); ++i) {
    const char c = uri[i];
    int v;
    if (c >= 'A' && c <= 'Z')
      v = c - 'A';
    else if (c >= 'a' && c <= 'z')
      v = c - 'a' + 26;
    else if (c >= '0' && c <= '9')
      v = c - '0' + 52;
    else if (c == '+' || c == '-')
      v = 62;
    else if (c == '/' || c == '_')
      v = 63;
    else if (c == '=' || c == '\n' || c == '\r' || c == ' ')
      continue;
    else
      throw bad_request("malformed base64 in the image's data: URI", "invalid_image");
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<uint8_t>((acc >> bits) & 0xff));
    }
  }
  return out;
}

}  // namespace la::serve
