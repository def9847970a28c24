#include "la/sample/generate.h"

#include <chrono>

#include "la/core/error.h"

namespace la {

std::string generate(InferenceModel& model, const Tokenizer& tok, const std::vector<int>& prompt, Sampler& sampler,
                     int64_t max_new_tokens, const std::function<void(const std::string&)>& on_text,
                     GenerationStats* stats, const std::function<bool(const std::string&)>& stop) {
  if (prompt.empty()) fail("generate: empty prompt (it needs at least BOS)");
  if (static_cast<int64_t>(prompt.size()) >= model.context())
    fail("prompt of {} tokens does not fit the context length {}", prompt.size(), model.context());
  using clock = std::chrono::steady_clock;
  model.reset();
  StreamDecoder dec(tok);
  for (int id : prompt) dec.push(id);  // the decoder's leading-space state follows the prompt
  std::string text;
  auto emit = [&](const std::string& s) {
    if (s.empty()) return false;
    text += s;
    if (on_text) on_text(s);
    return true;
  };
  GenerationStats st;
  st.prompt_tokens = static_cast<int64_t>(prompt.size());
  const auto t0 = clock::now();
  const float* logits = model.forward(prompt.data(), static_cast<int64_t>(prompt.size()));
  const auto t1 = clock::now();
  const int64_t vocab = model.weights().config.vocab_size;
  while (st.generated < max_new_tokens) {
    const int next = sampler.sample(logits, vocab);
    if (next == tok.eos_id()) {
      st.stopped_at_eos = true;
      break;
    }
    ++st.generated;
    if (emit(dec.push(next)) && stop && stop(text)) {
      st.stopped_by_caller = true;
      break;
    }
    if (model.pos() >= model.context()) {
      st.stopped_at_context = st.generated < max_new_tokens;
      break;
    }
    logits = model.forward(&next, 1);
  }
  emit(dec.flush());
  st.prefill_s = std::chrono::duration<double>(t1 - t0).count();
  st.decode_s = std::chrono::duration<double>(clock::now() - t1).count();
  if (stats) *stats = st;
  return text;
}

}  // namespace la
