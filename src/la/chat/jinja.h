// Our own interpreter for the subset of Jinja2 that chat templates use (GGUF
// `tokenizer.chat_template`, Hugging Face `chat_template`), rendering as transformers does:
// jinja2.Environment(trim_blocks=True, lstrip_blocks=True) with the loop controls, the globals
// raise_exception(msg) and strftime_now(fmt), and transformers' tojson (json.dumps, non-ASCII
// kept). The template is untrusted input: any error in it, at parse or render time, is a one-line
// la::Error naming the template and the line, never a crash; recursion, loops and output are
// bounded.
//
// Provenance. Every string carries, byte by byte, whether it came from the caller's content
// (message text) or from the template itself (its literals, and the values the caller hands in
// as template text: bos_token, eos_token). Concatenation, slicing, strip/trim, split, replace,
// join and the other string operations keep each byte's mark; a value made from content in a way
// that does not map bytes to bytes (tojson, repr of a container) is content as a whole. Numbers,
// booleans and dictionary keys written by the template are template text. The rendered output is
// a list of spans, each either template text (`literal`) or content, so that a tokenizer can look
// for special tokens ("<s>", "<|im_end|>") in template text only: whatever a user types stays
// text. When in doubt a byte is content: that only costs a special token its recognition, never
// turns user text into one.
#pragma once
#include <cstdint>
#include <ctime>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace la::jinja {

// A run of rendered output: template text (literal) or caller content.
struct Span {
  std::string text;
  bool literal = true;
  bool operator==(const Span&) const = default;
};

// A string with a per-byte mark: 1 = content, 0 = template text. `marks` is empty when every byte
// is template text (the common case costs nothing).
struct Text {
  std::string s;
  std::string marks;

  static Text literal(std::string s) { return Text{std::move(s), {}}; }
  static Text content(std::string s);
  bool content_at(size_t i) const { return !marks.empty() && marks[i] != 0; }
  bool any_content() const;
  void append(const Text& t);
  void append_literal(std::string_view t);
  Text substr(size_t pos, size_t n) const;
};

class Value;
using ValueList = std::vector<Value>;
using ValueDict = std::vector<std::pair<Value, Value>>;  // insertion order, as Python's dict
struct Callable;

// A Python-like value: undefined, none, bool, int, float, string, list, dict, namespace (a dict
// whose attributes `set ns.x = ...` may change) or something callable (macros, globals, methods).
class Value {
 public:
  enum class Kind { Undefined, None, Bool, Int, Float, String, List, Dict, Namespace, Callable };

  Value() = default;  // undefined
  static Value undefined(std::string name = {});
  static Value none();
  static Value boolean(bool b);
  static Value integer(int64_t i);
  static Value number(double d);
  static Value string(Text t);
  static Value literal(std::string s) { return string(Text::literal(std::move(s))); }
  static Value content(std::string s) { return string(Text::content(std::move(s))); }
  static Value list(ValueList items);
  static Value dict(ValueDict items);
  static Value make_namespace(ValueDict items);
  static Value callable(std::shared_ptr<const Callable> f);
  // JSON to a value; its strings are content when `content`, template text otherwise.
  static Value from_json(const nlohmann::json& j, bool content);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::Undefined; }
  bool is_none() const { return kind_ == Kind::None; }
  bool is_string() const { return kind_ == Kind::String; }
  bool is_number() const { return kind_ == Kind::Int || kind_ == Kind::Float || kind_ == Kind::Bool; }
  bool is_list() const { return kind_ == Kind::List; }
  bool is_mapping() const { return kind_ == Kind::Dict; }
  bool b() const { return b_; }
  int64_t i() const { return i_; }
  double f() const { return f_; }
  const Text& text() const { return *s_; }
  const ValueList& items() const { return *list_; }
  ValueDict& entries() const { return *dict_; }  // Dict and Namespace
  const Callable& fn() const { return *fn_; }
  const std::string& undefined_name() const { return name_; }

  bool truthy() const;
  double as_double() const;  // Bool, Int, Float
  // The entry for `key` in a Dict/Namespace, or nullptr.
  const Value* find(std::string_view key) const;
  const Value* find(const Value& key) const;
  // Same container (lists, dicts), for `is sameas`.
  bool same_object(const Value& o) const;

 private:
  Kind kind_ = Kind::Undefined;
  bool b_ = false;
  int64_t i_ = 0;
  double f_ = 0;
  std::shared_ptr<const Text> s_;
  std::shared_ptr<const ValueList> list_;
  std::shared_ptr<ValueDict> dict_;
  std::shared_ptr<const Callable> fn_;
  std::string name_;  // of an undefined value, for messages
};

struct RenderOptions {
  // What strftime_now() formats; the current local time when not set (tests fix it).
  std::optional<std::tm> now;
  size_t max_output_bytes = size_t{64} << 20;  // a runaway template is an error, not a dead machine
};

struct Node;

// A parsed template. Parsing and rendering throw la::Error "<name>: line N: what".
class Template {
 public:
  Template(std::string_view source, std::string name = "chat template");
  ~Template();
  Template(Template&&) noexcept;
  Template& operator=(Template&&) noexcept;

  // Renders with the given variables. Every string inside `content` is content; every string in
  // `literals` is template text (bos_token, eos_token). Adjacent spans of the same kind are
  // merged; empty ones dropped.
  std::vector<Span> render(const nlohmann::json& content, const nlohmann::json& literals,
                           const RenderOptions& options = {}) const;
  // The general form: variables as values (name -> value).
  std::vector<Span> render(const std::vector<std::pair<std::string, Value>>& vars,
                           const RenderOptions& options = {}) const;

  const std::string& name() const { return name_; }

 private:
  std::string name_;
  std::vector<std::unique_ptr<Node>> body_;
};

// The spans' texts concatenated.
std::string join_spans(const std::vector<Span>& spans);

}  // namespace la::jinja
