#include "la/chat/chat_template.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>

#include "la/core/error.h"
#include "la/data/alpaca.h"
#include "la/tokenizer/tokenizer.h"

namespace la {

namespace {

// The Alpaca sentence that opens every prompt (SPEC §3), taken from alpaca_prompt itself so the
// chat prompt cannot drift from what fine-tuning wrote.
std::string alpaca_preamble() {
  const std::string p = alpaca_prompt("", "");
  return p.substr(0, p.find("\n\n### Instruction:"));
}

// Alpaca as a chat: every user turn is its Alpaca prompt (BOS first, ending at "### Response:",
// where the model's answer begins, so add_generation_prompt changes nothing), every assistant
// turn its text directly after that plus EOS -- the shape of one training example per turn. A
// system message (the first message) replaces the preamble sentence in every turn: it plays the
// same part, telling the model what it is asked to do; other system messages are ignored.
std::string alpaca_source() {
  return "{%- set ns = namespace(preamble='" + alpaca_preamble() +
         "') -%}\n"
         "{%- if messages and messages[0].role == 'system' -%}{%- set ns.preamble = messages[0].content -%}{%- endif "
         "-%}\n"
         "{%- for message in messages -%}\n"
         "{%- if message.role == 'user' -%}\n"
         "{{- bos_token + ns.preamble + '\\n\\n### Instruction:\\n' + message.content + '\\n\\n### Response:' -}}\n"
         "{%- elif message.role == 'assistant' -%}\n"
         "{{- message.content + eos_token -}}\n"
         "{%- endif -%}\n"
         "{%- endfor -%}\n";
}

// Llama 2 chat: "<s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {reply} </s>", the
// system block inside the first turn, texts stripped (as Meta's and Hugging Face's template).
const char* kLlama2 = R"({%- if messages and messages[0].role == 'system' -%}
  {%- set system = messages[0].content -%}{%- set turns = messages[1:] -%}
{%- else -%}
  {%- set system = none -%}{%- set turns = messages -%}
{%- endif -%}
{%- for message in turns -%}
  {%- set text = message.content -%}
  {%- if loop.first and system is not none -%}
    {%- set text = '<<SYS>>\n' + system + '\n<</SYS>>\n\n' + text -%}
  {%- endif -%}
  {%- if message.role == 'user' -%}
    {{- bos_token + '[INST] ' + text.strip() + ' [/INST]' -}}
  {%- elif message.role == 'assistant' -%}
    {{- ' ' + text.strip() + ' ' + eos_token -}}
  {%- endif -%}
{%- endfor -%}
)";

// Llama 3 (3.0's format; 3.1+ templates add a dated system header and tools, which a GGUF brings).
const char* kLlama3 = R"({{- bos_token -}}
{%- for message in messages -%}
  {{- '<|start_header_id|>' + message.role + '<|end_header_id|>\n\n' + message.content | trim + '<|eot_id|>' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
  {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
{%- endif -%}
)";

// ChatML (Qwen, Hermes, ...): no default system message.
const char* kChatml = R"({%- for message in messages -%}
  {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
  {{- '<|im_start|>assistant\n' -}}
{%- endif -%}
)";

// Zephyr: "<|user|>\n{text}</s>\n".
const char* kZephyr = R"({%- for message in messages -%}
  {%- if message.role == 'user' -%}
    {{- '<|user|>\n' + message.content + eos_token + '\n' -}}
  {%- elif message.role == 'system' -%}
    {{- '<|system|>\n' + message.content + eos_token + '\n' -}}
  {%- elif message.role == 'assistant' -%}
    {{- '<|assistant|>\n' + message.content + eos_token + '\n' -}}
  {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
  {{- '<|assistant|>\n' -}}
{%- endif -%}
)";

// Mistral as Mistral-Nemo-Instruct-2407 writes it: "<s>[INST]{user}[/INST]{reply}</s>", the
// system message joined to the last user message.
const char* kMistral = R"({%- if messages and messages[0].role == 'system' -%}
  {%- set system = messages[0].content -%}{%- set turns = messages[1:] -%}
{%- else -%}
  {%- set system = none -%}{%- set turns = messages -%}
{%- endif -%}
{{- bos_token -}}
{%- for message in turns -%}
  {%- if message.role == 'user' -%}
    {%- if loop.last and system is not none -%}
      {{- '[INST]' + system + '\n\n' + message.content + '[/INST]' -}}
    {%- else -%}
      {{- '[INST]' + message.content + '[/INST]' -}}
    {%- endif -%}
  {%- elif message.role == 'assistant' -%}
    {{- message.content + eos_token -}}
  {%- endif -%}
{%- endfor -%}
)";

// Phi-3 / Phi-3.5: "<|user|>\n{text}<|end|>\n", EOS at the end when no reply is asked for.
const char* kPhi3 = R"({%- for message in messages -%}
  {%- if message.role == 'system' and message.content -%}
    {{- '<|system|>\n' + message.content + '<|end|>\n' -}}
  {%- elif message.role == 'user' -%}
    {{- '<|user|>\n' + message.content + '<|end|>\n' -}}
  {%- elif message.role == 'assistant' -%}
    {{- '<|assistant|>\n' + message.content + '<|end|>\n' -}}
  {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
  {{- '<|assistant|>\n' -}}
{%- else -%}
  {{- eos_token -}}
{%- endif -%}
)";

const std::vector<std::pair<std::string, std::string>>& builtin_sources() {
  static const std::vector<std::pair<std::string, std::string>> kSources = {
      {"alpaca", alpaca_source()}, {"llama-2", kLlama2},  {"llama-3", kLlama3}, {"chatml", kChatml},
      {"zephyr", kZephyr},         {"mistral", kMistral}, {"phi-3", kPhi3},
  };
  return kSources;
}

bool plain_role(const std::string& role) {
  return !role.empty() &&
         std::all_of(role.begin(), role.end(), [](char c) { return (c >= 'a' && c <= 'z') || c == '_'; });
}

bool looks_like_jinja(const std::string& s) {
  return s.find("{{") != std::string::npos || s.find("{%") != std::string::npos;
}

}  // namespace

std::vector<std::string> builtin_chat_templates() {
  std::vector<std::string> names;
  for (const auto& [name, src] : builtin_sources()) names.push_back(name);
  return names;
}

std::string builtin_chat_template_source(const std::string& name) {
  for (const auto& [n, src] : builtin_sources())
    if (n == name) return src;
  fail("unknown chat template '{}' (built-in templates: {})", printable(name),
       fmt::join(builtin_chat_templates(), ", "));
}

ChatTemplate ChatTemplate::builtin(const std::string& name) {
  ChatTemplate t;
  t.tmpl_ = std::make_shared<const jinja::Template>(builtin_chat_template_source(name), "chat template " + name);
  t.name_ = name;
  t.builtin_ = true;
  return t;
}

ChatTemplate ChatTemplate::from_jinja(const std::string& source, const std::string& origin) {
  ChatTemplate t;
  t.name_ = origin;
  t.tmpl_ = std::make_shared<const jinja::Template>(source, origin);
  return t;
}

std::vector<ChatSpan> ChatTemplate::render(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                                           const std::string& bos_token, const std::string& eos_token,
                                           const jinja::RenderOptions& options) const {
  jinja::ValueList list;
  for (const ChatMessage& m : messages) {
    jinja::ValueDict d;
    d.emplace_back(jinja::Value::literal("role"),
                   plain_role(m.role) ? jinja::Value::literal(m.role) : jinja::Value::content(m.role));
    d.emplace_back(jinja::Value::literal("content"), jinja::Value::content(m.content));
    list.push_back(jinja::Value::dict(std::move(d)));
  }
  const std::vector<std::pair<std::string, jinja::Value>> vars = {
      {"messages", jinja::Value::list(std::move(list))},
      {"add_generation_prompt", jinja::Value::boolean(add_generation_prompt)},
      {"bos_token", jinja::Value::literal(bos_token)},
      {"eos_token", jinja::Value::literal(eos_token)},
  };
  return tmpl_->render(vars, options);
}

std::vector<ChatSpan> ChatTemplate::render(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                                           const Tokenizer& tok, const jinja::RenderOptions& options) const {
  auto piece = [&](int id) { return id >= 0 && id < tok.vocab_size() ? std::string(tok.piece(id)) : std::string(); };
  return render(messages, add_generation_prompt, piece(tok.bos_id()), piece(tok.eos_id()), options);
}

std::vector<int> encode_chat(const Tokenizer& tok, const std::vector<ChatSpan>& spans) {
  // Special pieces by first byte, longest first.
  std::map<unsigned char, std::vector<std::pair<std::string, int>>> specials;
  for (int id = 0; id < tok.vocab_size(); ++id) {
    if (!tok.is_special(id)) continue;
    const std::string_view p = tok.piece(id);
    if (!p.empty()) specials[static_cast<unsigned char>(p[0])].emplace_back(std::string(p), id);
  }
  for (auto& [c, v] : specials)
    std::stable_sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });

  std::vector<int> ids;
  std::string pending;  // text since the last special token
  auto flush = [&] {
    if (pending.empty()) return;
    const std::vector<int> part = tok.encode(pending, false, false);
    ids.insert(ids.end(), part.begin(), part.end());
    pending.clear();
  };
  for (const ChatSpan& span : spans) {
    if (!span.literal) {
      pending += span.text;
      continue;
    }
    const std::string& s = span.text;
    for (size_t i = 0; i < s.size();) {
      int match = -1;
      size_t len = 0;
      if (auto it = specials.find(static_cast<unsigned char>(s[i])); it != specials.end())
        for (const auto& [text, id] : it->second)
          if (s.compare(i, text.size(), text) == 0) {
            match = id;
            len = text.size();
            break;
          }
      if (match < 0) {
        pending += s[i++];
        continue;
      }
      flush();
      ids.push_back(match);
      i += len;
    }
  }
  flush();
  return ids;
}

std::vector<int> end_of_turn_ids(const Tokenizer& tok) {
  static const char* kEndPieces[] = {"<|eot_id|>",    "<|im_end|>",      "<|end|>", "<end_of_turn>",
                                     "<|endoftext|>", "<|end_of_text|>", "</s>"};
  std::vector<int> ids;
  if (tok.eos_id() >= 0) ids.push_back(tok.eos_id());
  for (int id = 0; id < tok.vocab_size(); ++id) {
    const std::string_view p = tok.piece(id);
    for (const char* e : kEndPieces)
      if (p == e) ids.push_back(id);
  }
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

ChatTemplate resolve_chat_template(const std::string& adapter_template, const std::string& gguf_template,
                                   const std::string& cli_name) {
  if (!cli_name.empty()) return ChatTemplate::builtin(cli_name);
  if (!adapter_template.empty()) {
    if (looks_like_jinja(adapter_template))
      return ChatTemplate::from_jinja(adapter_template, "adapter's chat template");
    try {
      return ChatTemplate::builtin(adapter_template);
    } catch (const Error& e) {
      fail("the adapter's recorded {}", e.what());
    }
  }
  if (!gguf_template.empty()) return ChatTemplate::from_jinja(gguf_template);
  return ChatTemplate::builtin("alpaca");
}

}  // namespace la
