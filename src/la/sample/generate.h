// The generation loop shared by `generate`, the demo and (later) chat and serve: feed the
// prompt, then sample token by token until EOS, the token limit or the end of the context,
// streaming complete UTF-8 text as it appears.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "la/model/inference.h"
#include "la/sample/sampler.h"
#include "la/tokenizer/tokenizer.h"

namespace la {

struct GenerationStats {
  int64_t prompt_tokens = 0, generated = 0;
  double prefill_s = 0, decode_s = 0;
  bool stopped_at_eos = false;
  bool stopped_at_context = false;  // the KV cache filled before max_new_tokens were generated
  bool stopped_by_caller = false;   // `stop` said so
};

// `model` is reset first. `on_text` receives each newly completed piece of text (may be null).
// Returns the generated text (the prompt's text is not included). `stop` (may be null) sees the
// text generated so far after each token that completed some; true ends the generation there.
std::string generate(InferenceModel& model, const Tokenizer& tok, const std::vector<int>& prompt, Sampler& sampler,
                     int64_t max_new_tokens, const std::function<void(const std::string&)>& on_text,
                     GenerationStats* stats = nullptr, const std::function<bool(const std::string&)>& stop = nullptr);

}  // namespace la
