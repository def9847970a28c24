#include "chat_format.h"

#include <CLI/CLI.hpp>
#include <mutex>

#include "la/chat/chat_template.h"
#include "la/core/error.h"
#include "la/io/model_chat_template.h"

namespace la::cli {

struct ChatFormat::Impl {
  const Tokenizer& tok;
  std::string gguf_template, cli_template;
  // One parsed template per adapter template string ("" for the base), built on first use.
  mutable std::mutex mu;
  mutable std::map<std::string, std::shared_ptr<const ChatTemplate>> by_adapter;

  std::shared_ptr<const ChatTemplate> get(const Adapter* a) const {
    const std::string key = a ? a->chat_template : "";
    std::lock_guard<std::mutex> lock(mu);
    auto& slot = by_adapter[key];
    if (!slot) slot = std::make_shared<ChatTemplate>(resolve_chat_template(key, gguf_template, cli_template));
    return slot;
  }
};

ChatFormat::ChatFormat(const Tokenizer& tok, const std::string& model_path, const std::string& cli_template)
    : impl_(std::make_unique<Impl>(tok, model_chat_template(model_path), cli_template)),
      end_ids_(end_of_turn_ids(tok)) {
  impl_->get(nullptr);  // an unknown --template or a bad GGUF template fails here, at start
}

ChatFormat::~ChatFormat() = default;

std::vector<int> ChatFormat::encode(const std::vector<ChatTurn>& turns, const Adapter* adapter,
                                    bool add_generation_prompt) const {
  std::vector<ChatMessage> messages;
  messages.reserve(turns.size());
  for (const ChatTurn& t : turns) messages.push_back({t.role, t.content});
  const auto tmpl = impl_->get(adapter);
  return encode_chat(impl_->tok, tmpl->render(messages, add_generation_prompt, impl_->tok));
}

std::string ChatFormat::template_name(const Adapter* adapter) const {
  return impl_->get(adapter)->name();
}

void add_template_flag(CLI::App* cmd, std::string& name) {
  std::string names;
  for (const std::string& n : builtin_chat_templates()) names += (names.empty() ? "" : ", ") + n;
  cmd->add_option("--template", name,
                  "Chat template, one of: " + names +
                      " (default: the adapter's recorded one, else the model's: a GGUF's tokenizer.chat_template or a "
                      "Hugging Face directory's tokenizer_config.json, else alpaca)");
}

}  // namespace la::cli
