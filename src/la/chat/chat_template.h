// Chat templates (SPEC §9): messages -> the prompt text a chat model was trained on -> token ids.
//
// A template is a named built-in (alpaca, llama-2, llama-3, chatml, zephyr, mistral, phi-3; all
// written as Jinja in chat_template.cpp) or the Jinja source a GGUF carries in
// `tokenizer.chat_template`; both run through our interpreter (chat/jinja.h).
//
// User text is never turned into special tokens: rendering keeps apart the bytes that came from
// the messages (content spans) and the template's own text (literal spans). encode_chat looks for
// special tokens ("<s>", "<|im_end|>", any CONTROL or USER_DEFINED piece) in literal spans only;
// a user who types "</s>" gets the ordinary pieces of that text.
//
// Roles: a role made only of lowercase ASCII letters and '_' ("user", "assistant", "system",
// "tool") is template text, since templates build special tokens around it ("<|" + role + "|>"
// in zephyr and phi-3) and such a word cannot spell one; any other role is content.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "la/chat/jinja.h"

namespace la {

class Tokenizer;

struct ChatMessage {
  std::string role;  // "system", "user", "assistant", ...
  std::string content;
};

using ChatSpan = jinja::Span;  // {text, literal}: literal = the template's own text

class ChatTemplate {
 public:
  // A built-in by name; an unknown name is a one-line error listing the built-ins.
  static ChatTemplate builtin(const std::string& name);
  // A Jinja template (a GGUF's tokenizer.chat_template); `origin` names it in errors. Parse errors
  // are la::Error.
  static ChatTemplate from_jinja(const std::string& source, const std::string& origin = "the model's chat template");

  // "alpaca", "llama-3", ... for a built-in; the origin for a Jinja source.
  const std::string& name() const { return name_; }
  bool is_builtin() const { return builtin_; }

  // The prompt for `messages`; with add_generation_prompt it ends where the assistant's reply
  // begins. bos_token/eos_token are the tokenizer's BOS/EOS pieces ("<s>", "</s>";
  // "<|begin_of_text|>" for Llama 3), written by the template where it wants them: encode_chat
  // adds nothing. Errors (raise_exception in the template, a bad template) are la::Error.
  std::vector<ChatSpan> render(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                               const std::string& bos_token, const std::string& eos_token,
                               const jinja::RenderOptions& options = {}) const;
  // The same with bos_token/eos_token taken from the tokenizer.
  std::vector<ChatSpan> render(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                               const Tokenizer& tok, const jinja::RenderOptions& options = {}) const;

 private:
  std::string name_;
  bool builtin_ = false;
  std::shared_ptr<const jinja::Template> tmpl_;
};

// The built-ins' names, "alpaca" first (the default), and a built-in's Jinja source (for
// `--template` help and for tests); an unknown name is the same error as ChatTemplate::builtin.
std::vector<std::string> builtin_chat_templates();
std::string builtin_chat_template_source(const std::string& name);

// The token ids of a rendered prompt. Literal spans: every occurrence of a special piece's text
// (Tokenizer::is_special, longest first) becomes that one id. Everything between two special
// tokens -- literal and content bytes together, as one text -- goes through
// Tokenizer::encode(text, false, false), so the prompt tokenizes as its text would, dummy-prefix
// space included after each special token (as llama.cpp does), except that only the template
// makes special tokens. For the alpaca template and one user message this is exactly
// [BOS] + encode(alpaca_prompt(text, ""), false, false), what `generate --instruction` feeds.
std::vector<int> encode_chat(const Tokenizer& tok, const std::vector<ChatSpan>& spans);

// The ids that end an assistant turn: EOS plus whichever of <|eot_id|>, <|im_end|>, <|end|>,
// <end_of_turn>, <|endoftext|>, <|end_of_text|>, </s> the vocabulary has. Sorted, no repeats.
std::vector<int> end_of_turn_ids(const Tokenizer& tok);

// Which template serves (SPEC §9): an explicit --template (`cli_name`) wins, then the template
// recorded in the adapter file (`adapter_template`), then the base model's own template
// (`gguf_template`: a GGUF's or a tokenizer_config.json's), then alpaca. "" means "none given". A name must be a
// built-in (a one-line error lists them); an adapter may also record a Jinja source (it contains "{{" or "{%").
ChatTemplate resolve_chat_template(const std::string& adapter_template, const std::string& gguf_template,
                                   const std::string& cli_name);

}  // namespace la
