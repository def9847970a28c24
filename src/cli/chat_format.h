// How `chat` and `serve` turn a conversation into prompt tokens (SPEC §9): the template is the
// one --template names, else the adapter's recorded one (serve: per adapter), else the base
// model's (a GGUF's tokenizer.chat_template, a Hugging Face directory's tokenizer_config.json),
// else Alpaca; rendered by the chat layer (la/chat), template
// text tokenized with special tokens recognised, message text never.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "la/model/adapter.h"
#include "la/tokenizer/tokenizer.h"

namespace CLI {
class App;
}

namespace la::cli {

struct ChatTurn {
  std::string role, content;  // "system", "user", "assistant"
};

class ChatFormat {
 public:
  // `model_path`: the base model (its own chat template, if any); `cli_template`: --template
  // ("" when not given). Throws la::Error for an unknown template name.
  ChatFormat(const Tokenizer& tok, const std::string& model_path, const std::string& cli_template);
  ~ChatFormat();
  // The prompt tokens of `turns` for `adapter` (null: the base), ending with the assistant's
  // turn opened when `add_generation_prompt`.
  std::vector<int> encode(const std::vector<ChatTurn>& turns, const Adapter* adapter, bool add_generation_prompt) const;
  // The name of the template `adapter` gets (for messages).
  std::string template_name(const Adapter* adapter) const;
  // The tokens that end an assistant turn (EOS and the end-of-turn tokens of the vocabulary).
  const std::vector<int>& end_ids() const { return end_ids_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::vector<int> end_ids_;
};

// --template NAME on chat and serve.
void add_template_flag(CLI::App* cmd, std::string& name);

}  // namespace la::cli
