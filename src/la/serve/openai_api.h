// The OpenAI-compatible request and response shapes (SPEC §9): request bodies validated into a
// plain struct (every malformed, missing or mistyped field an ApiError 400 naming it), and the
// JSON of completions, stream chunks and errors.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "la/sample/sampler.h"

namespace la::serve {

// An error answered as {"error": {"message", "type", "code"}} with an HTTP status.
struct ApiError : std::runtime_error {
  int status;
  std::string type, code;
  ApiError(int status_, std::string type_, std::string code_, const std::string& message)
      : std::runtime_error(message), status(status_), type(std::move(type_)), code(std::move(code_)) {}
};
ApiError bad_request(const std::string& message, const std::string& code = "invalid_request");
std::string error_body(const std::string& message, const std::string& type, const std::string& code);

struct ApiMessage {
  std::string role, content;
  std::vector<std::string> image_urls;  // image_url parts (data: URIs), in order
};

struct CompletionRequest {
  bool chat = false;
  std::string model;
  std::vector<ApiMessage> messages;  // chat
  std::string prompt;                // completions
  SamplerOptions sampling;
  int64_t max_tokens = 512;  // SPEC §4's generation default
  std::vector<std::string> stop;
  bool stream = false, include_usage = false, ignore_eos = false;
};

// Parses a /v1/chat/completions (chat) or /v1/completions body.
CompletionRequest parse_completion_request(const std::string& body, bool chat);

// Response shapes. `id` is the completion's id, `created` its Unix time.
struct Usage {
  int64_t prompt_tokens = 0, completion_tokens = 0, cached_tokens = 0;
};
nlohmann::json usage_json(const Usage& u);
nlohmann::json completion_json(bool chat, const std::string& id, int64_t created, const std::string& model,
                               const std::string& text, const std::string& finish_reason, const Usage& u);
// One stream chunk: `text` (a delta; the chat stream's first chunk also carries the role) or, with
// a finish reason, the last chunk of choices. `usage` non-null: the usage chunk (choices empty).
nlohmann::json chunk_json(bool chat, const std::string& id, int64_t created, const std::string& model,
                          const std::string* text, const std::string* finish_reason, const Usage* usage,
                          bool first = false);
// `data: {json}\n\n`
std::string sse(const nlohmann::json& j);

// The bytes of a data: URI (base64 or percent-encoded); ApiError 400 for anything else.
std::vector<uint8_t> data_uri_bytes(const std::string& uri);

}  // namespace la::serve
