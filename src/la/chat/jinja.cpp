// The Jinja2 subset: a lexer that applies jinja2's whitespace rules (trim_blocks, lstrip_blocks,
// '-' and '+' markers) while it splits the source, a recursive-descent parser with jinja2's
// operator precedence, and a tree-walking interpreter over Python-like values whose strings keep
// their per-byte provenance (jinja.h).
#include "la/chat/jinja.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>

#include "la/core/error.h"

namespace la::jinja {

// ---------------------------------------------------------------------------------------------
// Text

Text Text::content(std::string s) {
  Text t;
  t.marks.assign(s.size(), '\1');
  t.s = std::move(s);
  return t;
}

bool Text::any_content() const {
  return marks.find('\1') != std::string::npos;
}

void Text::append(const Text& t) {
  if (t.marks.empty()) {
    if (!marks.empty()) marks.append(t.s.size(), '\0');
  } else {
    if (marks.empty()) marks.assign(s.size(), '\0');
    marks += t.marks;
  }
  s += t.s;
}

void Text::append_literal(std::string_view t) {
  s += t;
  if (!marks.empty()) marks.append(t.size(), '\0');
}

Text Text::substr(size_t pos, size_t n) const {
  Text r;
  r.s = s.substr(pos, n);
  if (!marks.empty()) {
    r.marks = marks.substr(pos, n);
    if (!r.any_content()) r.marks.clear();
  }
  return r;
}

std::string join_spans(const std::vector<Span>& spans) {
  std::string s;
  for (const Span& sp : spans) s += sp.text;
  return s;
}

// ---------------------------------------------------------------------------------------------
// Values

struct CallArgs {
  std::vector<Value> pos;
  std::vector<std::pair<std::string, Value>> kw;
};
namespace {
class Interp;
}  // namespace
struct Callable {
  std::string name;
  std::function<Value(Interp&, CallArgs&, int line)> fn;
};

Value Value::undefined(std::string name) {
  Value v;
  v.name_ = std::move(name);
  return v;
}
Value Value::none() {
  Value v;
  v.kind_ = Kind::None;
  return v;
}
Value Value::boolean(bool b) {
  Value v;
  v.kind_ = Kind::Bool;
  v.b_ = b;
  v.i_ = b;
  v.f_ = b;
  return v;
}
Value Value::integer(int64_t i) {
  Value v;
  v.kind_ = Kind::Int;
  v.i_ = i;
  v.f_ = static_cast<double>(i);
  return v;
}
Value Value::number(double d) {
  Value v;
  v.kind_ = Kind::Float;
  v.f_ = d;
  return v;
}
Value Value::string(Text t) {
  Value v;
  v.kind_ = Kind::String;
  v.s_ = std::make_shared<const Text>(std::move(t));
  return v;
}
Value Value::list(ValueList items) {
  Value v;
  v.kind_ = Kind::List;
  v.list_ = std::make_shared<const ValueList>(std::move(items));
  return v;
}
Value Value::dict(ValueDict items) {
  Value v;
  v.kind_ = Kind::Dict;
  v.dict_ = std::make_shared<ValueDict>(std::move(items));
  return v;
}
Value Value::make_namespace(ValueDict items) {
  Value v = dict(std::move(items));
  v.kind_ = Kind::Namespace;
  return v;
}
Value Value::callable(std::shared_ptr<const Callable> f) {
  Value v;
  v.kind_ = Kind::Callable;
  v.fn_ = std::move(f);
  return v;
}

Value Value::from_json(const nlohmann::json& j, bool content) {
  switch (j.type()) {
    case nlohmann::json::value_t::null: return none();
    case nlohmann::json::value_t::boolean: return boolean(j.get<bool>());
    case nlohmann::json::value_t::number_integer: return integer(j.get<int64_t>());
    case nlohmann::json::value_t::number_unsigned: {
      const uint64_t u = j.get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) return number(static_cast<double>(u));
      return integer(static_cast<int64_t>(u));
    }
    case nlohmann::json::value_t::number_float: return number(j.get<double>());
    case nlohmann::json::value_t::string:
      return content ? Value::content(j.get<std::string>()) : Value::literal(j.get<std::string>());
    case nlohmann::json::value_t::array: {
      ValueList l;
      for (const auto& e : j) l.push_back(from_json(e, content));
      return list(std::move(l));
    }
    case nlohmann::json::value_t::object: {
      ValueDict d;
      // Keys name fields ("role", "content"): they are the caller's structure, not user text.
      for (auto it = j.begin(); it != j.end(); ++it) d.emplace_back(literal(it.key()), from_json(it.value(), content));
      return dict(std::move(d));
    }
    default: return none();
  }
}

bool Value::truthy() const {
  switch (kind_) {
    case Kind::Undefined:
    case Kind::None: return false;
    case Kind::Bool: return b_;
    case Kind::Int: return i_ != 0;
    case Kind::Float: return f_ != 0;
    case Kind::String: return !s_->s.empty();
    case Kind::List: return !list_->empty();
    case Kind::Dict: return !dict_->empty();
    default: return true;
  }
}

double Value::as_double() const {
  return kind_ == Kind::Float ? f_ : static_cast<double>(i_);
}

bool Value::same_object(const Value& o) const {
  if (kind_ != o.kind_) return false;
  switch (kind_) {
    case Kind::List: return list_ == o.list_;
    case Kind::Dict:
    case Kind::Namespace: return dict_ == o.dict_;
    case Kind::Callable: return fn_ == o.fn_;
    default: return false;
  }
}

namespace {

bool values_equal(const Value& a, const Value& b);

}  // namespace

const Value* Value::find(std::string_view key) const {
  if (kind_ != Kind::Dict && kind_ != Kind::Namespace) return nullptr;
  for (const auto& [k, v] : *dict_)
    if (k.is_string() && k.text().s == key) return &v;
  return nullptr;
}

const Value* Value::find(const Value& key) const {
  if (kind_ != Kind::Dict && kind_ != Kind::Namespace) return nullptr;
  for (const auto& [k, v] : *dict_)
    if (values_equal(k, key)) return &v;
  return nullptr;
}

namespace {

bool values_equal(const Value& a, const Value& b) {
  using K = Value::Kind;
  if (a.is_number() && b.is_number()) {
    if (a.kind() != K::Float && b.kind() != K::Float) return a.i() == b.i();
    return a.as_double() == b.as_double();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case K::Undefined:
    case K::None: return true;
    case K::String: return a.text().s == b.text().s;
    case K::List: {
      if (a.items().size() != b.items().size()) return false;
      for (size_t i = 0; i < a.items().size(); ++i)
        if (!values_equal(a.items()[i], b.items()[i])) return false;
      return true;
    }
    case K::Dict: {
      if (a.entries().size() != b.entries().size()) return false;
      for (const auto& [k, v] : a.entries()) {
        const Value* o = b.find(k);
        if (!o || !values_equal(v, *o)) return false;
      }
      return true;
    }
    default: return a.same_object(b);
  }
}

const char* type_name(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::Undefined: return "undefined";
    case Value::Kind::None: return "NoneType";
    case Value::Kind::Bool: return "bool";
    case Value::Kind::Int: return "int";
    case Value::Kind::Float: return "float";
    case Value::Kind::String: return "str";
    case Value::Kind::List: return "list";
    case Value::Kind::Dict: return "dict";
    case Value::Kind::Namespace: return "Namespace";
    case Value::Kind::Callable: return "function";
  }
  return "?";
}

// ---------------------------------------------------------------------------------------------
// UTF-8 and Python's whitespace

// Length of the character at s[i]: 1-4 for a well-formed one, 1 for a stray byte (Python never
// sees those; they count as one character each here).
size_t char_len(std::string_view s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
  if (i + n > s.size()) return 1;
  for (size_t k = 1; k < n; ++k)
    if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return 1;
  return n;
}

// Byte offsets of each character, plus s.size() at the end.
std::vector<size_t> char_offsets(std::string_view s) {
  std::vector<size_t> o;
  for (size_t i = 0; i < s.size(); i += char_len(s, i)) o.push_back(i);
  o.push_back(s.size());
  return o;
}

// Python's str.isspace() code points, as UTF-8: the length of the whitespace character at s[i],
// or 0.
size_t space_at(std::string_view s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  if (c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F)) return 1;
  if (c < 0x80) return 0;
  const size_t n = char_len(s, i);
  if (n == 1) return 0;
  uint32_t cp = 0;
  if (n == 2) cp = ((c & 0x1F) << 6) | (s[i + 1] & 0x3F);
  if (n == 3) cp = ((c & 0x0F) << 12) | ((s[i + 1] & 0x3F) << 6) | (s[i + 2] & 0x3F);
  if (n == 4) return 0;
  const bool space = cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
                     cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
  return space ? n : 0;
}

// Length of the whitespace character that ends at s[end) (0 when none).
size_t space_before(std::string_view s, size_t end) {
  for (size_t n = 1; n <= 3 && n <= end; ++n) {
    const size_t i = end - n;
    if (n > 1 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) continue;
    if (char_len(s, i) == n && space_at(s, i) == n) return n;
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) return 0;
  }
  return 0;
}

size_t skip_spaces(std::string_view s, size_t i) {
  while (i < s.size()) {
    const size_t n = space_at(s, i);
    if (!n) break;
    i += n;
  }
  return i;
}

size_t rskip_spaces(std::string_view s, size_t end, size_t begin = 0) {
  while (end > begin) {
    const size_t n = space_before(s, end);
    if (!n || end - n < begin) break;
    end -= n;
  }
  return end;
}

std::string ascii_lower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return s;
}
std::string ascii_upper(std::string s) {
  for (char& c : s)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  return s;
}
bool ascii_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// ---------------------------------------------------------------------------------------------
// Lexer

struct Token {
  enum Type { Text, BlockBegin, BlockEnd, VarBegin, VarEnd, Name, String, Int, Float, Op, End } type;
  std::string v;
  int line = 1;
  int64_t iv = 0;
  double fv = 0;
};

[[noreturn]] void error_at(const std::string& name, int line, const std::string& msg) {
  throw Error(fmt::format("{}: line {}: {}", name, line, printable(msg)));
}

const char* describe(const Token& t) {
  switch (t.type) {
    case Token::Text: return "text";
    case Token::BlockBegin: return "'{%'";
    case Token::BlockEnd: return "'%}'";
    case Token::VarBegin: return "'{{'";
    case Token::VarEnd: return "'}}'";
    case Token::End: return "end of template";
    default: return nullptr;
  }
}

std::string token_text(const Token& t) {
  if (const char* d = describe(t)) return d;
  if (t.type == Token::String) return "a string";
  return "'" + t.v + "'";
}

void put_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

class Lexer {
 public:
  Lexer(std::string_view source, const std::string& name) : name_(name) {
    // jinja2 turns every line ending into "\n" and drops one trailing newline
    // (keep_trailing_newline=False).
    src_.reserve(source.size());
    for (size_t i = 0; i < source.size(); ++i) {
      if (source[i] == '\r') {
        src_ += '\n';
        if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
      } else {
        src_ += source[i];
      }
    }
    if (!src_.empty() && src_.back() == '\n') src_.pop_back();
  }

  std::vector<Token> run() {
    size_t pos = 0;
    bool line_starting = true;  // the text about to be read begins a line
    while (pos < src_.size()) {
      size_t at = std::string::npos;
      for (const char* open : {"{{", "{%", "{#"}) at = std::min(at, src_.find(open, pos));
      if (at == std::string::npos) {
        emit_text(src_.substr(pos), line_);
        break;
      }
      std::string text = src_.substr(pos, at - pos);
      const int text_line = line_;
      const char kind = src_[at + 1];
      size_t p = at + 2;
      char sign = 0;
      if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) sign = src_[p++];
      if (sign == '-') {
        text.resize(rskip_spaces(text, text.size()));
      } else if (sign != '+' && kind != '{') {
        // lstrip_blocks: the whitespace between the start of a line and a block or comment tag
        const size_t nl = text.rfind('\n');
        const size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
        if ((l_pos > 0 || line_starting) && l_pos < text.size() && skip_spaces(text, l_pos) == text.size())
          text.resize(l_pos);
      }
      emit_text(std::move(text), text_line);
      count_lines(pos, p);
      if (kind == '#') {
        const size_t e = src_.find("#}", p);
        if (e == std::string::npos) error_at(name_, line_, "unterminated comment");
        const char esign = e > p && (src_[e - 1] == '-' || src_[e - 1] == '+') ? src_[e - 1] : 0;
        const size_t after = close_tag(e + 2, esign, true);
        count_lines(p, after);
        line_starting = src_[after - 1] == '\n';
        pos = after;
        continue;
      }
      tokens_.push_back({kind == '%' ? Token::BlockBegin : Token::VarBegin, {}, line_});
      pos = lex_tag(p, kind, line_starting);
    }
    tokens_.push_back({Token::End, {}, line_});
    return std::move(tokens_);
  }

 private:
  void emit_text(std::string text, int line) {
    if (!text.empty()) tokens_.push_back({Token::Text, std::move(text), line});
  }
  void count_lines(size_t a, size_t b) {
    line_ += static_cast<int>(std::count(src_.begin() + a, src_.begin() + b, '\n'));
  }

  // After a closing delimiter ending at q: '-' eats all whitespace, trim_blocks one newline.
  size_t close_tag(size_t q, char sign, bool trim) {
    if (sign == '-') return skip_spaces(src_, q);
    if (sign != '+' && trim && q < src_.size() && src_[q] == '\n') return q + 1;
    return q;
  }

  // The tokens of one tag starting at p; returns where the text after it starts.
  size_t lex_tag(size_t p, char kind, bool& line_starting) {
    int depth = 0;  // brackets open: jinja2 does not end a tag inside them
    const int tag_line = line_;
    for (;;) {
      while (p < src_.size() && (src_[p] == ' ' || src_[p] == '\t' || src_[p] == '\n' || src_[p] == '\r' ||
                                 src_[p] == '\f' || src_[p] == '\v')) {
        if (src_[p] == '\n') ++line_;
        ++p;
      }
      if (p >= src_.size())
        error_at(name_, tag_line, kind == '%' ? "unterminated '{%' tag" : "unterminated '{{' expression");
      if (depth == 0) {
        const std::string_view rest = std::string_view(src_).substr(p);
        const std::string_view close = kind == '%' ? "%}" : "}}";
        char sign = 0;
        size_t len = 0;
        if (rest.size() > 2 && (rest[0] == '-' || (rest[0] == '+' && kind == '%')) && rest.substr(1, 2) == close) {
          sign = rest[0];
          len = 3;
        } else if (rest.substr(0, 2) == close) {
          len = 2;
        }
        if (len) {
          tokens_.push_back({kind == '%' ? Token::BlockEnd : Token::VarEnd, {}, line_});
          const size_t after = close_tag(p + len, sign, kind == '%');
          count_lines(p, after);
          line_starting = src_[after - 1] == '\n';
          return after;
        }
      }
      p = lex_token(p, depth);
    }
  }

  size_t lex_token(size_t p, int& depth) {
    const char c = src_[p];
    if (c == '\'' || c == '"') return lex_string(p);
    if (c >= '0' && c <= '9') return lex_number(p);
    if (ascii_alpha(c) || c == '_') {
      size_t q = p;
      while (q < src_.size() && (ascii_alpha(src_[q]) || src_[q] == '_' || (src_[q] >= '0' && src_[q] <= '9'))) ++q;
      tokens_.push_back({Token::Name, src_.substr(p, q - p), line_});
      return q;
    }
    static const char* kOps[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<",
                                 ">",  "=",  ".",  ",",  ":",  "|",  "(", ")", "[", "]", "{", "}"};
    for (const char* op : kOps) {
      const size_t n = std::strlen(op);
      if (src_.compare(p, n, op) == 0) {
        if (c == '(' || c == '[' || c == '{') ++depth;
        if ((c == ')' || c == ']' || c == '}') && depth > 0) --depth;
        tokens_.push_back({Token::Op, op, line_});
        return p + n;
      }
    }
    error_at(name_, line_, fmt::format("unexpected character '{}'", std::string(1, c)));
  }

  size_t lex_number(size_t p) {
    size_t q = p;
    auto digits = [&] {
      while (q < src_.size() && ((src_[q] >= '0' && src_[q] <= '9') || (src_[q] == '_' && q > p))) ++q;
    };
    digits();
    bool is_float = false;
    // "a.0.1" is attribute access; a number right after '.' stays an integer
    const bool after_dot = !tokens_.empty() && tokens_.back().type == Token::Op && tokens_.back().v == ".";
    if (!after_dot && q + 1 < src_.size() && src_[q] == '.' && src_[q + 1] >= '0' && src_[q + 1] <= '9') {
      ++q;
      digits();
      is_float = true;
    }
    if (!after_dot && q < src_.size() && (src_[q] == 'e' || src_[q] == 'E')) {
      size_t r = q + 1;
      if (r < src_.size() && (src_[r] == '+' || src_[r] == '-')) ++r;
      if (r < src_.size() && src_[r] >= '0' && src_[r] <= '9') {
        q = r;
        digits();
        is_float = true;
      }
    }
    std::string s;
    for (size_t i = p; i < q; ++i)
      if (src_[i] != '_') s += src_[i];
    Token t{is_float ? Token::Float : Token::Int, s, line_};
    if (is_float) {
      t.fv = std::strtod(s.c_str(), nullptr);
    } else {
      errno = 0;
      const long long v = std::strtoll(s.c_str(), nullptr, 10);
      if (errno == ERANGE) error_at(name_, line_, fmt::format("integer {} is too large", s));
      t.iv = v;
    }
    tokens_.push_back(std::move(t));
    return q;
  }

  // Python's string escapes (jinja2 decodes literals with "unicode-escape").
  size_t lex_string(size_t p) {
    const char quote = src_[p];
    const int start_line = line_;
    std::string out;
    size_t q = p + 1;
    auto hex = [&](size_t at, int n) -> uint32_t {
      uint32_t v = 0;
      for (int k = 0; k < n; ++k) {
        const char h = at + k < src_.size() ? src_[at + k] : '\0';
        int d = h >= '0' && h <= '9'   ? h - '0'
                : h >= 'a' && h <= 'f' ? h - 'a' + 10
                : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                       : -1;
        if (d < 0) error_at(name_, line_, "truncated \\x, \\u or \\U escape in a string");
        v = v * 16 + static_cast<uint32_t>(d);
      }
      return v;
    };
    for (;;) {
      if (q >= src_.size()) error_at(name_, start_line, "unterminated string");
      const char c = src_[q];
      if (c == quote) break;
      if (c == '\n') ++line_;
      if (c != '\\') {
        out += c;
        ++q;
        continue;
      }
      if (q + 1 >= src_.size()) error_at(name_, start_line, "unterminated string");
      const char e = src_[q + 1];
      q += 2;
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case '\\': out += '\\'; break;
        case '\'': out += '\''; break;
        case '"': out += '"'; break;
        case 'a': out += '\a'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'v': out += '\v'; break;
        case '\n': ++line_; break;  // a line continuation
        case 'x':
          put_utf8(out, hex(q, 2));
          q += 2;
          break;
        case 'u':
        case 'U': {
          const int n = e == 'u' ? 4 : 8;
          const uint32_t cp = hex(q, n);
          if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            error_at(name_, line_, "escape outside the Unicode range in a string");
          put_utf8(out, cp);
          q += static_cast<size_t>(n);
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            uint32_t v = static_cast<uint32_t>(e - '0');
            for (int k = 0; k < 2 && q < src_.size() && src_[q] >= '0' && src_[q] <= '7'; ++k)
              v = v * 8 + static_cast<uint32_t>(src_[q++] - '0');
            put_utf8(out, v);
          } else {  // Python keeps unknown escapes as they are
            out += '\\';
            out += e;
          }
      }
    }
    tokens_.push_back({Token::String, std::move(out), start_line});
    return q + 1;
  }

  const std::string& name_;
  std::string src_;
  std::vector<Token> tokens_;
  int line_ = 1;
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Syntax tree

struct Expr {
  enum Kind { Lit, Name, Attr, Item, Slice, Call, Filter, Test, Neg, Pos, Not, Bin, And, Or, Cmp, Cond, List, Dict };
  Kind k;
  int line;
  Value lit;                             // Lit
  std::string name;                      // Name, Attr, Filter, Test, Bin (the operator)
  std::vector<std::unique_ptr<Expr>> a;  // operands; Slice and Cond may hold nullptr
  std::vector<std::string> kw;           // Call/Filter/Test: names of the trailing keyword arguments
  std::vector<std::string> ops;          // Cmp
  bool negate = false;                   // Test: "is not"
  Expr(Kind kind, int l) : k(kind), line(l) {}
};
using ExprPtr = std::unique_ptr<Expr>;
using Body = std::vector<std::unique_ptr<Node>>;

struct Node {
  enum Kind { Text, Output, If, For, Set, SetBlock, Macro, FilterBlock, Break, Continue, Block };
  Kind k;
  int line;
  jinja::Text text;                                // Text
  ExprPtr expr;                                    // Output, Set, For (iterable), FilterBlock/SetBlock (filters)
  std::vector<std::pair<ExprPtr, Body>> branches;  // If
  Body body, else_body;                            // If (else), For, SetBlock, Macro, FilterBlock, Block
  std::vector<std::string> targets;                // For, Set, SetBlock; Macro: parameters
  std::string attr;                                // Set ns.attr
  ExprPtr cond;                                    // For ... if cond
  std::vector<ExprPtr> defaults;                   // Macro: per parameter, or nullptr
  Node(Kind kind, int l) : k(kind), line(l) {}
};

namespace {

// ---------------------------------------------------------------------------------------------
// Parser

constexpr int kMaxNesting = 200;  // expressions and blocks: deep enough for any real template

class Parser {
 public:
  Parser(std::vector<Token> tokens, const std::string& name) : t_(std::move(tokens)), name_(name) {}

  Body parse() {
    Body b = parse_body({});
    return b;
  }

 private:
  const Token& peek(size_t ahead = 0) const { return t_[std::min(i_ + ahead, t_.size() - 1)]; }
  const Token& next() {
    const Token& t = t_[i_];
    if (i_ + 1 < t_.size()) ++i_;
    return t;
  }
  bool is_op(const char* op, size_t ahead = 0) const { return peek(ahead).type == Token::Op && peek(ahead).v == op; }
  bool is_name(const char* n, size_t ahead = 0) const { return peek(ahead).type == Token::Name && peek(ahead).v == n; }
  [[noreturn]] void fail_here(const std::string& what) const { error_at(name_, peek().line, what); }
  void expect_op(const char* op) {
    if (!is_op(op)) fail_here(fmt::format("expected '{}', found {}", op, token_text(peek())));
    next();
  }
  std::string expect_name() {
    if (peek().type != Token::Name) fail_here(fmt::format("expected a name, found {}", token_text(peek())));
    return next().v;
  }
  void expect(Token::Type type) {
    if (peek().type != type) {
      Token want{type, {}, 0};
      fail_here(fmt::format("expected {}, found {}", token_text(want), token_text(peek())));
    }
    next();
  }

  struct Depth {
    Parser& p;
    explicit Depth(Parser& parser) : p(parser) {
      if (++p.depth_ > kMaxNesting) p.fail_here("nested too deeply");
    }
    ~Depth() { --p.depth_; }
  };

  // Each operator of a chain ("a + b + c", "x.y.z", "v | f | g") nests the tree one level deeper
  // for the interpreter: chains are bounded like nesting.
  void chain(int& n) {
    if (++n > kMaxNesting) fail_here("expression too long");
  }

  // Statements until a block tag named in `stops` (left unread: the caller reads its name).
  Body parse_body(std::initializer_list<const char*> stops) {
    Depth d(*this);
    Body body;
    for (;;) {
      const Token& tok = peek();
      if (tok.type == Token::End) {
        if (stops.size() != 0)
          fail_here(
              fmt::format("unexpected end of template: a block is not closed ('{}' expected)", *(stops.end() - 1)));
        return body;
      }
      if (tok.type == Token::Text) {
        auto n = std::make_unique<Node>(Node::Text, tok.line);
        n->text = jinja::Text::literal(next().v);
        body.push_back(std::move(n));
        continue;
      }
      if (tok.type == Token::VarBegin) {
        const int line = next().line;
        auto n = std::make_unique<Node>(Node::Output, line);
        n->expr = parse_tuple();
        expect(Token::VarEnd);
        body.push_back(std::move(n));
        continue;
      }
      if (tok.type != Token::BlockBegin) fail_here(fmt::format("unexpected {}", token_text(tok)));
      if (peek(1).type == Token::Name)
        for (const char* s : stops)
          if (peek(1).v == s) return body;
      next();
      body.push_back(parse_statement());
    }
  }

  // After "{%" and a stop name: reads the name, returns it.
  std::string end_tag() {
    next();  // '{%'
    return next().v;
  }

  std::unique_ptr<Node> parse_statement() {
    const int line = peek().line;
    const std::string kw = expect_name();
    if (kw == "if") {
      auto n = std::make_unique<Node>(Node::If, line);
      ExprPtr cond = parse_expr();
      expect(Token::BlockEnd);
      for (;;) {
        Body b = parse_body({"elif", "else", "endif"});
        n->branches.emplace_back(std::move(cond), std::move(b));
        const std::string tag = end_tag();
        if (tag == "elif") {
          cond = parse_expr();
          expect(Token::BlockEnd);
          continue;
        }
        expect(Token::BlockEnd);
        if (tag == "else") {
          n->else_body = parse_body({"endif"});
          end_tag();
          expect(Token::BlockEnd);
        }
        return n;
      }
    }
    if (kw == "for") {
      auto n = std::make_unique<Node>(Node::For, line);
      const bool paren = is_op("(");
      if (paren) next();
      n->targets.push_back(expect_name());
      while (is_op(",")) {
        next();
        n->targets.push_back(expect_name());
      }
      if (paren) expect_op(")");
      if (!is_name("in")) fail_here(fmt::format("expected 'in' in a for loop, found {}", token_text(peek())));
      next();
      n->expr = parse_tuple(/*allow_cond=*/false);
      if (is_name("if")) {
        next();
        n->cond = parse_expr();
      }
      if (is_name("recursive")) fail_here("recursive loops are not supported");
      expect(Token::BlockEnd);
      ++loops_;
      n->body = parse_body({"else", "endfor"});
      --loops_;
      if (end_tag() == "else") {
        expect(Token::BlockEnd);
        n->else_body = parse_body({"endfor"});
        end_tag();
      }
      expect(Token::BlockEnd);
      return n;
    }
    if (kw == "set") {
      std::vector<std::string> targets{expect_name()};
      std::string attr;
      if (is_op(".")) {
        next();
        attr = expect_name();
      } else {
        while (is_op(",")) {
          next();
          targets.push_back(expect_name());
        }
      }
      if (is_op("=")) {
        next();
        auto n = std::make_unique<Node>(Node::Set, line);
        n->targets = std::move(targets);
        n->attr = std::move(attr);
        n->expr = parse_tuple();
        expect(Token::BlockEnd);
        return n;
      }
      if (!attr.empty() || targets.size() != 1) fail_here("a block set assigns one name");
      auto n = std::make_unique<Node>(Node::SetBlock, line);
      n->targets = std::move(targets);
      if (is_op("|")) n->expr = parse_filters(nullptr);
      expect(Token::BlockEnd);
      n->body = parse_body({"endset"});
      end_tag();
      expect(Token::BlockEnd);
      return n;
    }
    if (kw == "macro") {
      auto n = std::make_unique<Node>(Node::Macro, line);
      n->attr = expect_name();
      expect_op("(");
      while (!is_op(")")) {
        n->targets.push_back(expect_name());
        if (is_op("=")) {
          next();
          n->defaults.push_back(parse_expr());
        } else {
          n->defaults.push_back(nullptr);
        }
        if (!is_op(",")) break;
        next();
      }
      expect_op(")");
      expect(Token::BlockEnd);
      const int saved = loops_;
      loops_ = 0;
      n->body = parse_body({"endmacro"});
      loops_ = saved;
      end_tag();
      if (peek().type == Token::Name) next();  // {% endmacro name %}
      expect(Token::BlockEnd);
      return n;
    }
    if (kw == "filter") {
      auto n = std::make_unique<Node>(Node::FilterBlock, line);
      n->expr = parse_filter_chain(nullptr);
      expect(Token::BlockEnd);
      n->body = parse_body({"endfilter"});
      end_tag();
      expect(Token::BlockEnd);
      return n;
    }
    if (kw == "generation") {  // transformers' marker for assistant text: renders its body
      auto n = std::make_unique<Node>(Node::Block, line);
      expect(Token::BlockEnd);
      n->body = parse_body({"endgeneration"});
      end_tag();
      expect(Token::BlockEnd);
      return n;
    }
    if (kw == "break" || kw == "continue") {
      if (loops_ == 0) error_at(name_, line, fmt::format("'{}' outside a loop", kw));
      expect(Token::BlockEnd);
      return std::make_unique<Node>(kw == "break" ? Node::Break : Node::Continue, line);
    }
    static const char* kEnds[] = {"endif",     "endfor",        "endset", "endmacro",
                                  "endfilter", "endgeneration", "elif",   "else"};
    for (const char* e : kEnds)
      if (kw == e) error_at(name_, line, fmt::format("unexpected '{}'", kw));
    error_at(name_, line, fmt::format("unknown or unsupported tag '{}'", kw));
  }

  // ----- expressions, jinja2's precedence from loosest to tightest

  // The operator by move: GCC 12 at -O3 misreads an assignment from a literal here as an overflow.
  ExprPtr binary(std::string op, int line, ExprPtr a, ExprPtr b) {
    auto e = make(Expr::Bin, line, std::move(a), std::move(b));
    e->name = std::move(op);
    return e;
  }
  ExprPtr make(Expr::Kind k, int line, ExprPtr a = nullptr, ExprPtr b = nullptr) {
    auto e = std::make_unique<Expr>(k, line);
    if (a) e->a.push_back(std::move(a));
    if (b) e->a.push_back(std::move(b));
    return e;
  }

  // "a, b" is a tuple (a list here).
  ExprPtr parse_tuple(bool allow_cond = true) {
    const int line = peek().line;
    ExprPtr first = parse_expr(allow_cond);
    if (!is_op(",")) return first;
    auto e = make(Expr::List, line, std::move(first));
    while (is_op(",")) {
      next();
      if (peek().type == Token::BlockEnd || peek().type == Token::VarEnd || is_name("in")) break;
      e->a.push_back(parse_expr(allow_cond));
    }
    return e;
  }

  ExprPtr parse_expr(bool allow_cond = true) {
    Depth d(*this);
    ExprPtr e = parse_or();
    int n = 0;
    while (allow_cond && is_name("if")) {
      chain(n);
      const int line = next().line;
      ExprPtr cond = parse_or();
      ExprPtr other;
      if (is_name("else")) {
        next();
        other = parse_expr();
      }
      auto c = make(Expr::Cond, line, std::move(e), std::move(cond));
      c->a.push_back(std::move(other));
      e = std::move(c);
    }
    return e;
  }
  ExprPtr parse_or() {
    ExprPtr e = parse_and();
    int n = 0;
    while (is_name("or")) {
      chain(n);
      const int line = next().line;
      e = make(Expr::Or, line, std::move(e), parse_and());
    }
    return e;
  }
  ExprPtr parse_and() {
    ExprPtr e = parse_not();
    int n = 0;
    while (is_name("and")) {
      chain(n);
      const int line = next().line;
      e = make(Expr::And, line, std::move(e), parse_not());
    }
    return e;
  }
  ExprPtr parse_not() {
    Depth d(*this);
    if (is_name("not")) {
      const int line = next().line;
      return make(Expr::Not, line, parse_not());
    }
    return parse_compare();
  }
  ExprPtr parse_compare() {
    const int line = peek().line;
    ExprPtr first = parse_math1();
    ExprPtr e;
    int n = 0;
    for (;;) {
      std::string op;
      if (peek().type == Token::Op && (peek().v == "==" || peek().v == "!=" || peek().v == "<" || peek().v == ">" ||
                                       peek().v == "<=" || peek().v == ">=")) {
        op = next().v;
      } else if (is_name("in")) {
        next();
        op = "in";
      } else if (is_name("not") && is_name("in", 1)) {
        next();
        next();
        op = "not in";
      } else {
        break;
      }
      chain(n);
      if (!e) e = make(Expr::Cmp, line, std::move(first));
      e->ops.push_back(op);
      e->a.push_back(parse_math1());
    }
    return e ? std::move(e) : std::move(first);
  }
  ExprPtr parse_math1() {
    ExprPtr e = parse_concat();
    int n = 0;
    while (is_op("+") || is_op("-")) {
      chain(n);
      const Token& t = next();
      e = binary(t.v, t.line, std::move(e), parse_concat());
    }
    return e;
  }
  ExprPtr parse_concat() {
    ExprPtr e = parse_math2();
    int n = 0;
    while (is_op("~")) {
      chain(n);
      const int line = next().line;
      e = binary(std::string(1, '~'), line, std::move(e), parse_math2());
    }
    return e;
  }
  ExprPtr parse_math2() {
    ExprPtr e = parse_pow();
    int n = 0;
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      chain(n);
      const Token& t = next();
      e = binary(t.v, t.line, std::move(e), parse_pow());
    }
    return e;
  }
  ExprPtr parse_pow() {
    ExprPtr e = parse_unary(true);
    int n = 0;
    while (is_op("**")) {
      chain(n);
      const int line = next().line;
      e = binary(std::string(2, '*'), line, std::move(e), parse_unary(true));
    }
    return e;
  }
  ExprPtr parse_unary(bool with_filter) {
    Depth d(*this);
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      const Token& t = next();
      e = make(t.v == "-" ? Expr::Neg : Expr::Pos, t.line, parse_unary(false));
    } else {
      e = parse_primary();
    }
    e = parse_postfix(std::move(e));
    if (with_filter) e = parse_filter_expr(std::move(e));
    return e;
  }

  ExprPtr parse_primary() {
    const Token& t = peek();
    const int line = t.line;
    switch (t.type) {
      case Token::Name: {
        const std::string n = next().v;
        auto e = make(Expr::Lit, line);
        if (n == "true" || n == "True") {
          e->lit = Value::boolean(true);
        } else if (n == "false" || n == "False") {
          e->lit = Value::boolean(false);
        } else if (n == "none" || n == "None") {
          e->lit = Value::none();
        } else {
          e->k = Expr::Name;
          e->name = n;
        }
        return e;
      }
      case Token::String: {
        std::string s = next().v;
        while (peek().type == Token::String) s += next().v;  // "a" "b" is "ab"
        auto e = make(Expr::Lit, line);
        e->lit = Value::literal(std::move(s));
        return e;
      }
      case Token::Int: {
        auto e = make(Expr::Lit, line);
        e->lit = Value::integer(next().iv);
        return e;
      }
      case Token::Float: {
        auto e = make(Expr::Lit, line);
        e->lit = Value::number(next().fv);
        return e;
      }
      case Token::Op:
        if (t.v == "(") {
          next();
          if (is_op(")")) {
            next();
            return make(Expr::List, line);
          }
          ExprPtr e = parse_expr();
          if (is_op(",")) {
            auto tup = make(Expr::List, line, std::move(e));
            while (is_op(",")) {
              next();
              if (is_op(")")) break;
              tup->a.push_back(parse_expr());
            }
            e = std::move(tup);
          }
          expect_op(")");
          return e;
        }
        if (t.v == "[") {
          next();
          auto e = make(Expr::List, line);
          while (!is_op("]")) {
            e->a.push_back(parse_expr());
            if (!is_op(",")) break;
            next();
          }
          expect_op("]");
          return e;
        }
        if (t.v == "{") {
          next();
          auto e = make(Expr::Dict, line);
          while (!is_op("}")) {
            e->a.push_back(parse_expr());
            expect_op(":");
            e->a.push_back(parse_expr());
            if (!is_op(",")) break;
            next();
          }
          expect_op("}");
          return e;
        }
        break;
      default: break;
    }
    fail_here(fmt::format("unexpected {}", token_text(t)));
  }

  ExprPtr parse_postfix(ExprPtr e) {
    for (int n = 0;; chain(n)) {
      if (is_op(".")) {
        const int line = next().line;
        if (peek().type == Token::Int) {
          auto idx = make(Expr::Lit, line);
          idx->lit = Value::integer(next().iv);
          e = make(Expr::Item, line, std::move(e), std::move(idx));
        } else {
          auto a = make(Expr::Attr, line, std::move(e));
          a->name = expect_name();
          e = std::move(a);
        }
      } else if (is_op("[")) {
        const int line = next().line;
        e = parse_subscript(std::move(e), line);
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr obj, int line) {
    ExprPtr start, stop, step;
    if (!is_op(":")) start = parse_expr();
    if (!is_op(":")) {
      expect_op("]");
      return make(Expr::Item, line, std::move(obj), std::move(start));
    }
    next();
    if (!is_op("]") && !is_op(":")) stop = parse_expr();
    if (is_op(":")) {
      next();
      if (!is_op("]")) step = parse_expr();
    }
    expect_op("]");
    auto e = make(Expr::Slice, line, std::move(obj));
    e->a.push_back(std::move(start));
    e->a.push_back(std::move(stop));
    e->a.push_back(std::move(step));
    return e;
  }

  // "(a, b, k=v)" appended to e->a / e->kw.
  void parse_args(Expr& e) {
    expect_op("(");
    while (!is_op(")")) {
      if (is_op("*") || is_op("**")) fail_here("*args and **kwargs are not supported");
      if (peek().type == Token::Name && is_op("=", 1)) {
        e.kw.push_back(next().v);
        next();
        e.a.push_back(parse_expr());
      } else {
        if (!e.kw.empty()) fail_here("a positional argument follows a keyword argument");
        e.a.push_back(parse_expr());
      }
      if (!is_op(",")) break;
      next();
    }
    expect_op(")");
  }

  ExprPtr parse_call(ExprPtr callee) {
    auto e = make(Expr::Call, peek().line, std::move(callee));
    parse_args(*e);
    return e;
  }

  ExprPtr parse_filter_expr(ExprPtr e) {
    for (int n = 0;; chain(n)) {
      if (is_op("|")) {
        e = parse_filters(std::move(e));
      } else if (is_name("is")) {
        e = parse_test(std::move(e));
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  // One or more "| name(args)" applied to `input` (nullptr: a filter block's body).
  ExprPtr parse_filters(ExprPtr input) {
    int n = 0;
    while (is_op("|")) {
      chain(n);
      next();
      input = parse_one_filter(std::move(input));
    }
    return input;
  }
  ExprPtr parse_filter_chain(ExprPtr input) {
    input = parse_one_filter(std::move(input));
    return parse_filters(std::move(input));
  }
  ExprPtr parse_one_filter(ExprPtr input) {
    const int line = peek().line;
    auto f = std::make_unique<Expr>(Expr::Filter, line);
    f->name = expect_name();
    while (is_op(".")) {
      next();
      f->name += "." + expect_name();
    }
    f->a.push_back(std::move(input));
    if (is_op("(")) parse_args(*f);
    return f;
  }

  ExprPtr parse_test(ExprPtr input) {
    const int line = next().line;  // 'is'
    auto t = std::make_unique<Expr>(Expr::Test, line);
    if (is_name("not")) {
      next();
      t->negate = true;
    }
    t->name = expect_name();
    t->a.push_back(std::move(input));
    if (is_op("(")) {
      parse_args(*t);
    } else {
      const Token& n = peek();
      const bool arg = n.type == Token::String || n.type == Token::Int || n.type == Token::Float ||
                       (n.type == Token::Name && n.v != "else" && n.v != "or" && n.v != "and" && n.v != "if" &&
                        n.v != "is" && n.v != "not" && n.v != "in") ||
                       (n.type == Token::Op && (n.v == "[" || n.v == "{"));
      if (arg) t->a.push_back(parse_postfix(parse_primary()));
    }
    return t;
  }

  std::vector<Token> t_;
  size_t i_ = 0;
  const std::string& name_;
  int depth_ = 0;
  int loops_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Interpreter

constexpr int kMaxCallDepth = 64;
constexpr int64_t kMaxSteps = 2'000'000;  // loop iterations per render

struct Frame {
  std::vector<std::pair<std::string, Value>> vars;
  Frame* parent = nullptr;
  Value* find(std::string_view n) {
    for (Frame* f = this; f; f = f->parent)
      for (auto& [k, v] : f->vars)
        if (k == n) return &v;
    return nullptr;
  }
  void set(const std::string& n, Value v) {
    for (auto& [k, old] : vars)
      if (k == n) {
        old = std::move(v);
        return;
      }
    vars.emplace_back(n, std::move(v));
  }
};

std::string format_float(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  std::string s = fmt::format("{}", d);
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s;
}

// Python's repr() of a string.
std::string repr_string(const std::string& s) {
  const bool dq = s.find('\'') != std::string::npos && s.find('"') == std::string::npos;
  const char q = dq ? '"' : '\'';
  std::string out(1, q);
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (ch == q || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (ch == '\n') {
      out += "\\n";
    } else if (ch == '\r') {
      out += "\\r";
    } else if (ch == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out += ch;
    }
  }
  out += q;
  return out;
}

enum class Flow { Normal, Break, Continue };

class Interp {
 public:
  Interp(const std::string& name, const RenderOptions& opts) : name_(name), opts_(opts) {}

  [[noreturn]] void fail_at(int line, const std::string& msg) const { error_at(name_, line, msg); }

  const RenderOptions& options() const { return opts_; }
  const std::string& name() const { return name_; }
  Frame* top = nullptr;

  void check_size(size_t n, int line) const {
    if (n > opts_.max_output_bytes) fail_at(line, fmt::format("output larger than {} bytes", opts_.max_output_bytes));
  }
  void step(int line) {
    if (++steps_ > kMaxSteps) fail_at(line, fmt::format("more than {} loop iterations", kMaxSteps));
  }

  // ----- statements

  Flow exec(const Body& body, Frame& f, Text& out) {
    for (const auto& n : body) {
      const Flow fl = exec(*n, f, out);
      if (fl != Flow::Normal) return fl;
    }
    return Flow::Normal;
  }

  Flow exec(const Node& n, Frame& f, Text& out) {
    switch (n.k) {
      case Node::Text:
        out.append(n.text);
        check_size(out.s.size(), n.line);
        return Flow::Normal;
      case Node::Output:
        out.append(to_text(eval(*n.expr, f)));
        check_size(out.s.size(), n.line);
        return Flow::Normal;
      case Node::If:
        for (const auto& [cond, body] : n.branches)
          if (eval(*cond, f).truthy()) return exec(body, f, out);
        return exec(n.else_body, f, out);
      case Node::For: return exec_for(n, f, out);
      case Node::Set: {
        Value v = eval(*n.expr, f);
        if (!n.attr.empty()) {
          Value* ns = f.find(n.targets[0]);
          if (!ns || ns->kind() != Value::Kind::Namespace)
            fail_at(n.line, fmt::format("cannot assign to '{}.{}': '{}' is not a namespace()", n.targets[0], n.attr,
                                        n.targets[0]));
          set_entry(ns->entries(), n.attr, std::move(v));
        } else {
          assign(f, n.targets, std::move(v), n.line);
        }
        return Flow::Normal;
      }
      case Node::SetBlock: {
        Text buf;
        exec(n.body, f, buf);
        Value v = Value::string(std::move(buf));
        if (n.expr) v = eval_filters(*n.expr, v, f);
        f.set(n.targets[0], std::move(v));
        return Flow::Normal;
      }
      case Node::Macro: f.set(n.attr, make_macro(n)); return Flow::Normal;
      case Node::FilterBlock: {
        Text buf;
        exec(n.body, f, buf);
        out.append(to_text(eval_filters(*n.expr, Value::string(std::move(buf)), f)));
        check_size(out.s.size(), n.line);
        return Flow::Normal;
      }
      case Node::Break: return Flow::Break;
      case Node::Continue: return Flow::Continue;
      case Node::Block: return exec(n.body, f, out);
    }
    return Flow::Normal;
  }

  static void set_entry(ValueDict& d, const std::string& key, Value v) {
    for (auto& [k, old] : d)
      if (k.is_string() && k.text().s == key) {
        old = std::move(v);
        return;
      }
    d.emplace_back(Value::literal(key), std::move(v));
  }

  void assign(Frame& f, const std::vector<std::string>& targets, Value v, int line) {
    if (targets.size() == 1) {
      f.set(targets[0], std::move(v));
      return;
    }
    std::vector<Value> items = iterate(v, line);
    if (items.size() != targets.size())
      fail_at(line, fmt::format("cannot unpack {} values into {} names", items.size(), targets.size()));
    for (size_t i = 0; i < targets.size(); ++i) f.set(targets[i], std::move(items[i]));
  }

  Flow exec_for(const Node& n, Frame& f, Text& out) {
    std::vector<Value> items = iterate(eval(*n.expr, f), n.line);
    if (n.cond) {
      std::vector<Value> kept;
      for (Value& v : items) {
        step(n.line);
        Frame scope{{}, &f};
        assign(scope, n.targets, v, n.line);
        if (eval(*n.cond, scope).truthy()) kept.push_back(std::move(v));
      }
      items = std::move(kept);
    }
    if (items.empty()) return exec(n.else_body, f, out);
    const auto len = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < len; ++i) {
      step(n.line);
      Frame scope{{}, &f};
      assign(scope, n.targets, items[static_cast<size_t>(i)], n.line);
      ValueDict loop;
      auto put = [&](const char* k, Value v) { loop.emplace_back(Value::literal(k), std::move(v)); };
      put("index", Value::integer(i + 1));
      put("index0", Value::integer(i));
      put("revindex", Value::integer(len - i));
      put("revindex0", Value::integer(len - i - 1));
      put("first", Value::boolean(i == 0));
      put("last", Value::boolean(i == len - 1));
      put("length", Value::integer(len));
      put("previtem", i > 0 ? items[static_cast<size_t>(i - 1)] : Value::undefined("loop.previtem"));
      put("nextitem", i + 1 < len ? items[static_cast<size_t>(i + 1)] : Value::undefined("loop.nextitem"));
      auto cycle = std::make_shared<Callable>();
      cycle->name = "loop.cycle";
      cycle->fn = [i](Interp& in, CallArgs& args, int line) -> Value {
        if (args.pos.empty()) in.fail_at(line, "loop.cycle() needs at least one value");
        return args.pos[static_cast<size_t>(i) % args.pos.size()];
      };
      put("cycle", Value::callable(cycle));
      scope.set("loop", Value::dict(std::move(loop)));
      const Flow fl = exec(n.body, scope, out);
      if (fl == Flow::Break) break;
    }
    return Flow::Normal;
  }

  Value make_macro(const Node& n) {
    auto c = std::make_shared<Callable>();
    c->name = n.attr;
    const Node* node = &n;
    c->fn = [node](Interp& in, CallArgs& args, int line) -> Value {
      if (++in.call_depth_ > kMaxCallDepth)
        in.fail_at(line, fmt::format("macro calls nested deeper than {}", kMaxCallDepth));
      if (args.pos.size() > node->targets.size())
        in.fail_at(line, fmt::format("macro '{}' takes {} arguments, {} given", node->attr, node->targets.size(),
                                     args.pos.size()));
      Frame scope{{}, in.top};
      for (size_t i = 0; i < node->targets.size(); ++i) {
        if (i < args.pos.size()) {
          scope.set(node->targets[i], args.pos[i]);
          continue;
        }
        auto kw =
            std::find_if(args.kw.begin(), args.kw.end(), [&](const auto& p) { return p.first == node->targets[i]; });
        if (kw != args.kw.end())
          scope.set(node->targets[i], kw->second);
        else if (node->defaults[i])
          scope.set(node->targets[i], in.eval(*node->defaults[i], scope));
        else
          scope.set(node->targets[i], Value::undefined(node->targets[i]));
      }
      for (const auto& [k, v] : args.kw)
        if (std::find(node->targets.begin(), node->targets.end(), k) == node->targets.end())
          in.fail_at(line, fmt::format("macro '{}' has no argument '{}'", node->attr, k));
      Text out;
      in.exec(node->body, scope, out);
      --in.call_depth_;
      return Value::string(std::move(out));
    };
    return Value::callable(c);
  }

  // ----- expressions

  Value eval(const Expr& e, Frame& f) {
    switch (e.k) {
      case Expr::Lit: return e.lit;
      case Expr::Name: {
        if (Value* v = f.find(e.name)) return *v;
        return Value::undefined(e.name);
      }
      case Expr::Attr: return get_attr(eval(*e.a[0], f), e.name, e.line);
      case Expr::Item: return get_item(eval(*e.a[0], f), eval(*e.a[1], f), e.line);
      case Expr::Slice: {
        Value obj = eval(*e.a[0], f);
        Value s[3];
        for (int k = 0; k < 3; ++k)
          if (e.a[1 + k]) s[k] = eval(*e.a[1 + k], f);
        return slice(obj, s[0], s[1], s[2], e.line);
      }
      case Expr::Call: {
        Value callee = eval(*e.a[0], f);
        CallArgs args = eval_args(e, 1, f);
        if (callee.kind() != Value::Kind::Callable) {
          if (callee.is_undefined()) fail_at(e.line, fmt::format("'{}' is undefined", callee.undefined_name()));
          fail_at(e.line, fmt::format("'{}' object is not callable", type_name(callee)));
        }
        return callee.fn().fn(*this, args, e.line);
      }
      case Expr::Filter: {
        Value input = eval(*e.a[0], f);
        return apply_filter(e, std::move(input), f);
      }
      case Expr::Test: {
        Value input = eval(*e.a[0], f);
        CallArgs args = eval_args(e, 1, f);
        return Value::boolean(apply_test(e.name, input, args, e.line) != e.negate);
      }
      case Expr::Neg:
      case Expr::Pos: {
        Value v = eval(*e.a[0], f);
        if (!v.is_number())
          fail_at(e.line,
                  fmt::format("bad operand type for unary {}: '{}'", e.k == Expr::Neg ? '-' : '+', type_name(v)));
        if (e.k == Expr::Pos) return v.kind() == Value::Kind::Bool ? Value::integer(v.i()) : v;
        if (v.kind() == Value::Kind::Float) return Value::number(-v.f());
        if (v.i() == INT64_MIN) fail_at(e.line, "integer overflow");
        return Value::integer(-v.i());
      }
      case Expr::Not: return Value::boolean(!eval(*e.a[0], f).truthy());
      case Expr::And: {
        Value l = eval(*e.a[0], f);
        return l.truthy() ? eval(*e.a[1], f) : l;
      }
      case Expr::Or: {
        Value l = eval(*e.a[0], f);
        return l.truthy() ? l : eval(*e.a[1], f);
      }
      case Expr::Bin: return binary(e.name, eval(*e.a[0], f), eval(*e.a[1], f), e.line);
      case Expr::Cmp: {
        Value l = eval(*e.a[0], f);
        for (size_t i = 0; i < e.ops.size(); ++i) {
          Value r = eval(*e.a[i + 1], f);
          if (!compare(e.ops[i], l, r, e.line)) return Value::boolean(false);
          l = std::move(r);
        }
        return Value::boolean(true);
      }
      case Expr::Cond:
        if (eval(*e.a[1], f).truthy()) return eval(*e.a[0], f);
        return e.a[2] ? eval(*e.a[2], f) : Value::undefined();
      case Expr::List: {
        ValueList l;
        for (const auto& x : e.a) l.push_back(eval(*x, f));
        return Value::list(std::move(l));
      }
      case Expr::Dict: {
        ValueDict d;
        for (size_t i = 0; i + 1 < e.a.size(); i += 2) {
          Value k = eval(*e.a[i], f);
          Value v = eval(*e.a[i + 1], f);
          auto it = std::find_if(d.begin(), d.end(), [&](const auto& p) { return values_equal(p.first, k); });
          if (it != d.end())
            it->second = std::move(v);
          else
            d.emplace_back(std::move(k), std::move(v));
        }
        return Value::dict(std::move(d));
      }
    }
    return Value::undefined();
  }

  CallArgs eval_args(const Expr& e, size_t first, Frame& f) {
    CallArgs args;
    const size_t n = e.a.size() - first;
    const size_t npos = n - e.kw.size();
    for (size_t i = 0; i < n; ++i) {
      Value v = eval(*e.a[first + i], f);
      if (i < npos)
        args.pos.push_back(std::move(v));
      else
        args.kw.emplace_back(e.kw[i - npos], std::move(v));
    }
    return args;
  }

  // A filter chain whose innermost input is `input` (filter blocks, block sets).
  Value eval_filters(const Expr& e, Value input, Frame& f) {
    if (e.a[0]) input = eval_filters(*e.a[0], std::move(input), f);
    return apply_filter(e, std::move(input), f);
  }

  // ----- conversions

  Text to_text(const Value& v) const {
    switch (v.kind()) {
      case Value::Kind::String: return v.text();
      case Value::Kind::Undefined: return {};
      default: break;
    }
    bool content = false;
    std::string s = repr(v, true, content);
    return content ? Text::content(std::move(s)) : Text::literal(std::move(s));
  }

  // Python's str() (top) / repr() of a value; `content` says whether any string in it was.
  std::string repr(const Value& v, bool top, bool& content) const {
    switch (v.kind()) {
      case Value::Kind::Undefined: return "";
      case Value::Kind::None: return "None";
      case Value::Kind::Bool: return v.b() ? "True" : "False";
      case Value::Kind::Int: return std::to_string(v.i());
      case Value::Kind::Float: return format_float(v.f());
      case Value::Kind::String:
        content = content || v.text().any_content();
        return top ? v.text().s : repr_string(v.text().s);
      case Value::Kind::List: {
        std::string s = "[";
        for (size_t i = 0; i < v.items().size(); ++i) {
          if (i) s += ", ";
          s += repr(v.items()[i], false, content);
          check_size(s.size(), 0);
        }
        return s + "]";
      }
      case Value::Kind::Dict:
      case Value::Kind::Namespace: {
        std::string s = v.kind() == Value::Kind::Namespace ? "<Namespace {" : "{";
        bool first = true;
        for (const auto& [k, x] : v.entries()) {
          if (!first) s += ", ";
          first = false;
          s += repr(k, false, content) + ": " + repr(x, false, content);
          check_size(s.size(), 0);
        }
        return s + (v.kind() == Value::Kind::Namespace ? "}>" : "}");
      }
      case Value::Kind::Callable: return "<function " + v.fn().name + ">";
    }
    return "";
  }

  // The items a for loop visits.
  std::vector<Value> iterate(const Value& v, int line) const {
    switch (v.kind()) {
      case Value::Kind::Undefined: return {};
      case Value::Kind::List: return v.items();
      case Value::Kind::Dict: {
        std::vector<Value> keys;
        for (const auto& [k, x] : v.entries()) keys.push_back(k);
        return keys;
      }
      case Value::Kind::String: {
        std::vector<Value> chars;
        const Text& t = v.text();
        for (size_t i = 0; i < t.s.size();) {
          const size_t n = char_len(t.s, i);
          chars.push_back(Value::string(t.substr(i, n)));
          i += n;
        }
        return chars;
      }
      default: fail_at(line, fmt::format("'{}' object is not iterable", type_name(v)));
    }
  }

  static bool is_string_method(std::string_view n) {
    static const char* kMethods[] = {"strip", "lstrip", "rstrip",     "split",   "startswith", "endswith", "upper",
                                     "lower", "title",  "capitalize", "replace", "find",       "count",    "join"};
    return std::any_of(std::begin(kMethods), std::end(kMethods), [&](const char* m) { return n == m; });
  }
  static bool is_dict_method(std::string_view n) { return n == "items" || n == "keys" || n == "values" || n == "get"; }

  Value bound_method(const Value& obj, const std::string& name) {
    auto c = std::make_shared<Callable>();
    c->name = name;
    c->fn = [obj, name](Interp& in, CallArgs& args, int line) { return in.call_method(obj, name, args, line); };
    return Value::callable(c);
  }

  Value get_attr(const Value& obj, const std::string& name, int line) {
    switch (obj.kind()) {
      case Value::Kind::Undefined:
        fail_at(line, obj.undefined_name().empty() ? fmt::format("undefined value has no attribute '{}'", name)
                                                   : fmt::format("'{}' is undefined", obj.undefined_name()));
      case Value::Kind::Dict:
        if (is_dict_method(name)) return bound_method(obj, name);
        [[fallthrough]];
      case Value::Kind::Namespace:
        if (const Value* v = obj.find(name)) return *v;
        return Value::undefined(name);
      case Value::Kind::String:
        if (is_string_method(name)) return bound_method(obj, name);
        return Value::undefined(name);
      default: return Value::undefined(name);
    }
  }

  static bool index_of(const Value& key, int64_t n, int64_t& at) {
    if (key.kind() != Value::Kind::Int && key.kind() != Value::Kind::Bool) return false;
    at = key.i() < 0 ? key.i() + n : key.i();
    return at >= 0 && at < n;
  }

  Value get_item(const Value& obj, const Value& key, int line) {
    int64_t at = 0;
    switch (obj.kind()) {
      case Value::Kind::Undefined:
        fail_at(line, obj.undefined_name().empty() ? std::string("undefined value is not subscriptable")
                                                   : fmt::format("'{}' is undefined", obj.undefined_name()));
      case Value::Kind::Dict:
      case Value::Kind::Namespace:
        if (const Value* v = obj.find(key)) return *v;
        if (key.is_string()) return get_attr(obj, key.text().s, line);
        return Value::undefined();
      case Value::Kind::List:
        if (index_of(key, static_cast<int64_t>(obj.items().size()), at)) return obj.items()[static_cast<size_t>(at)];
        return Value::undefined();
      case Value::Kind::String: {
        const std::vector<size_t> o = char_offsets(obj.text().s);
        if (index_of(key, static_cast<int64_t>(o.size()) - 1, at)) {
          const auto k = static_cast<size_t>(at);
          return Value::string(obj.text().substr(o[k], o[k + 1] - o[k]));
        }
        if (key.is_string()) return get_attr(obj, key.text().s, line);
        return Value::undefined();
      }
      default: return Value::undefined();
    }
  }

  // Python's slice.indices(): the positions a[start:stop:step] visits.
  std::vector<int64_t> slice_positions(int64_t n, const Value& start, const Value& stop, const Value& step, int line) {
    auto as_int = [&](const Value& v, const char* what) -> std::optional<int64_t> {
      if (v.is_undefined() || v.is_none()) return std::nullopt;
      if (v.kind() != Value::Kind::Int && v.kind() != Value::Kind::Bool)
        fail_at(line, fmt::format("slice {} must be an integer, not '{}'", what, type_name(v)));
      return v.i();
    };
    const int64_t st = as_int(step, "step").value_or(1);
    if (st == 0) fail_at(line, "slice step cannot be zero");
    auto clamp = [&](std::optional<int64_t> v, int64_t dflt) {
      if (!v) return dflt;
      int64_t x = *v;
      if (x < 0) x = std::max<int64_t>(x + n, st < 0 ? -1 : 0);
      return std::min<int64_t>(x, st < 0 ? n - 1 : n);
    };
    const int64_t b = clamp(as_int(start, "start"), st < 0 ? n - 1 : 0);
    const int64_t e = clamp(as_int(stop, "stop"), st < 0 ? -1 : n);
    std::vector<int64_t> pos;
    for (int64_t i = b; st > 0 ? i < e : i > e; i += st) pos.push_back(i);
    return pos;
  }

  Value slice(const Value& obj, const Value& start, const Value& stop, const Value& step, int line) {
    if (obj.is_list()) {
      ValueList out;
      for (int64_t i : slice_positions(static_cast<int64_t>(obj.items().size()), start, stop, step, line))
        out.push_back(obj.items()[static_cast<size_t>(i)]);
      return Value::list(std::move(out));
    }
    if (obj.is_string()) {
      const std::vector<size_t> o = char_offsets(obj.text().s);
      Text out;
      for (int64_t i : slice_positions(static_cast<int64_t>(o.size()) - 1, start, stop, step, line)) {
        const auto k = static_cast<size_t>(i);
        out.append(obj.text().substr(o[k], o[k + 1] - o[k]));
      }
      return Value::string(std::move(out));
    }
    if (obj.is_undefined()) fail_at(line, fmt::format("'{}' is undefined", obj.undefined_name()));
    fail_at(line, fmt::format("'{}' object is not subscriptable", type_name(obj)));
  }

  // ----- operators

  Value binary(const std::string& op, const Value& l, const Value& r, int line) {
    if (op == "~") {
      Text t = to_text(l);
      t.append(to_text(r));
      check_size(t.s.size(), line);
      return Value::string(std::move(t));
    }
    if (op == "+") {
      if (l.is_string() && r.is_string()) {
        check_size(l.text().s.size() + r.text().s.size(), line);
        Text t = l.text();
        t.append(r.text());
        return Value::string(std::move(t));
      }
      if (l.is_list() && r.is_list()) {
        ValueList out = l.items();
        out.insert(out.end(), r.items().begin(), r.items().end());
        return Value::list(std::move(out));
      }
    }
    if (op == "*" &&
        ((l.is_string() || l.is_list()) && (r.kind() == Value::Kind::Int || r.kind() == Value::Kind::Bool)))
      return repeat(l, r.i(), line);
    if (op == "*" &&
        ((r.is_string() || r.is_list()) && (l.kind() == Value::Kind::Int || l.kind() == Value::Kind::Bool)))
      return repeat(r, l.i(), line);
    if (op == "%" && l.is_string()) fail_at(line, "'%' string formatting is not supported");
    if (!l.is_number() || !r.is_number()) {
      if (l.is_undefined() || r.is_undefined())
        fail_at(line, fmt::format("'{}' is undefined", (l.is_undefined() ? l : r).undefined_name()));
      fail_at(line, fmt::format("unsupported operand types for {}: '{}' and '{}'", op, type_name(l), type_name(r)));
    }
    const bool ints = l.kind() != Value::Kind::Float && r.kind() != Value::Kind::Float;
    const int64_t a = l.i(), b = r.i();
    const double x = l.as_double(), y = r.as_double();
    int64_t res = 0;
    if (op == "/") {
      if (y == 0) fail_at(line, "division by zero");
      return Value::number(x / y);
    }
    if (ints) {
      if (op == "+" && !__builtin_add_overflow(a, b, &res)) return Value::integer(res);
      if (op == "-" && !__builtin_sub_overflow(a, b, &res)) return Value::integer(res);
      if (op == "*" && !__builtin_mul_overflow(a, b, &res)) return Value::integer(res);
      if (op == "//" || op == "%") {
        if (b == 0) fail_at(line, "integer division or modulo by zero");
        if (a == INT64_MIN && b == -1) fail_at(line, "integer overflow");
        int64_t q = a / b, m = a % b;
        if (m != 0 && ((m < 0) != (b < 0))) {
          --q;
          m += b;
        }
        return Value::integer(op == "//" ? q : m);
      }
      if (op == "**" && b >= 0) {
        int64_t p = 1;
        for (int64_t k = 0; k < b; ++k) {
          if (__builtin_mul_overflow(p, a, &p)) fail_at(line, "integer overflow");
          if (p == 0 || p == 1) break;
        }
        if (a == -1) p = (b % 2) ? -1 : 1;
        return Value::integer(p);
      }
      if (op != "**") fail_at(line, "integer overflow");
    }
    if (op == "+") return Value::number(x + y);
    if (op == "-") return Value::number(x - y);
    if (op == "*") return Value::number(x * y);
    if (op == "**") return Value::number(std::pow(x, y));
    if (y == 0) fail_at(line, "float division or modulo by zero");
    const double q = std::floor(x / y);
    if (op == "//") return Value::number(q);
    double m = std::fmod(x, y);
    if (m != 0 && ((m < 0) != (y < 0))) m += y;
    return Value::number(m);
  }

  Value repeat(const Value& v, int64_t n, int line) {
    const size_t unit = v.is_string() ? v.text().s.size() : v.items().size() * 16;
    if (n <= 0 || unit == 0) return v.is_string() ? Value::literal("") : Value::list({});
    if (static_cast<uint64_t>(n) > opts_.max_output_bytes / unit)
      fail_at(line, fmt::format("output larger than {} bytes", opts_.max_output_bytes));
    if (v.is_string()) {
      Text t;
      for (int64_t i = 0; i < n; ++i) t.append(v.text());
      return Value::string(std::move(t));
    }
    ValueList out;
    for (int64_t i = 0; i < n; ++i) out.insert(out.end(), v.items().begin(), v.items().end());
    return Value::list(std::move(out));
  }

  bool contains(const Value& container, const Value& item, int line) {
    switch (container.kind()) {
      case Value::Kind::String:
        if (!item.is_string())
          fail_at(line, fmt::format("'in <string>' requires string as left operand, not {}", type_name(item)));
        return container.text().s.find(item.text().s) != std::string::npos;
      case Value::Kind::List:
        return std::any_of(container.items().begin(), container.items().end(),
                           [&](const Value& v) { return values_equal(v, item); });
      case Value::Kind::Dict:
      case Value::Kind::Namespace: return container.find(item) != nullptr;
      case Value::Kind::Undefined: return false;
      default: fail_at(line, fmt::format("argument of type '{}' is not iterable", type_name(container)));
    }
  }

  bool compare(const std::string& op, const Value& l, const Value& r, int line) {
    if (op == "==") return values_equal(l, r);
    if (op == "!=") return !values_equal(l, r);
    if (op == "in") return contains(r, l, line);
    if (op == "not in") return !contains(r, l, line);
    int c = 0;
    if (l.is_number() && r.is_number()) {
      if (l.kind() != Value::Kind::Float && r.kind() != Value::Kind::Float)
        c = l.i() < r.i() ? -1 : l.i() > r.i() ? 1 : 0;
      else
        c = l.as_double() < r.as_double() ? -1 : l.as_double() > r.as_double() ? 1 : 0;
    } else if (l.is_string() && r.is_string()) {
      c = l.text().s.compare(r.text().s);
    } else {
      fail_at(line, fmt::format("'{}' not supported between '{}' and '{}'", op, type_name(l), type_name(r)));
    }
    if (op == "<") return c < 0;
    if (op == ">") return c > 0;
    if (op == "<=") return c <= 0;
    return c >= 0;
  }

  // ----- string helpers keeping provenance

  static bool in_chars(std::string_view s, size_t i, size_t n, const std::string* chars) {
    if (!chars) return false;
    const std::string_view c = s.substr(i, n);
    for (size_t k = 0; k < chars->size(); k += char_len(*chars, k))
      if (std::string_view(*chars).substr(k, char_len(*chars, k)) == c) return true;
    return false;
  }

  // str.strip / lstrip / rstrip with Python's whitespace, or with the given characters.
  static Text strip(const Text& t, bool left, bool right, const std::string* chars) {
    const std::string& s = t.s;
    size_t b = 0, e = s.size();
    if (left)
      while (b < e) {
        const size_t n = chars ? char_len(s, b) : space_at(s, b);
        if (!n || (chars && !in_chars(s, b, n, chars))) break;
        b += n;
      }
    if (right)
      while (e > b) {
        size_t n = 0;
        if (chars) {
          size_t k = e - 1;
          while (k > b && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80 && e - k < 4) --k;
          n = char_len(s, k) == e - k ? e - k : 1;
          if (!in_chars(s, e - n, n, chars)) break;
        } else {
          n = space_before(s, e);
          if (!n || e - n < b) break;
        }
        e -= n;
      }
    return t.substr(b, e - b);
  }

  static std::vector<Text> split(const Text& t, const Value& sep, int64_t maxsplit, Interp& in, int line) {
    std::vector<Text> out;
    const std::string& s = t.s;
    if (sep.is_undefined() || sep.is_none()) {  // runs of whitespace, no empty parts
      size_t i = skip_spaces(s, 0);
      while (i < s.size()) {
        if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
          out.push_back(t.substr(i, rskip_spaces(s, s.size(), i) - i));
          return out;
        }
        size_t j = i;
        while (j < s.size() && !space_at(s, j)) j += char_len(s, j);
        out.push_back(t.substr(i, j - i));
        i = skip_spaces(s, j);
      }
      return out;
    }
    if (!sep.is_string()) in.fail_at(line, fmt::format("split() separator must be a string, not '{}'", type_name(sep)));
    const std::string& d = sep.text().s;
    if (d.empty()) in.fail_at(line, "empty separator");
    size_t i = 0;
    for (;;) {
      const size_t j = s.find(d, i);
      if (j == std::string::npos || (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit)) break;
      out.push_back(t.substr(i, j - i));
      i = j + d.size();
    }
    out.push_back(t.substr(i, s.size() - i));
    return out;
  }

  Text replace(const Text& t, const Text& old, const Text& repl, int64_t count, int line) {
    Text out;
    int64_t done = 0;
    if (old.s.empty()) {  // Python inserts the replacement around every character
      size_t i = 0;
      for (;;) {
        if (count < 0 || done < count) {
          out.append(repl);
          ++done;
        }
        if (i >= t.s.size()) break;
        const size_t n = char_len(t.s, i);
        out.append(t.substr(i, n));
        i += n;
        check_size(out.s.size(), line);
      }
      return out;
    }
    size_t i = 0;
    while (count < 0 || done < count) {
      const size_t j = t.s.find(old.s, i);
      if (j == std::string::npos) break;
      out.append(t.substr(i, j - i));
      out.append(repl);
      check_size(out.s.size(), line);
      i = j + old.s.size();
      ++done;
    }
    out.append(t.substr(i, t.s.size() - i));
    return out;
  }

  // Case mappings are ASCII only: a byte keeps its mark.
  static Text title_words(const Text& t, bool jinja_filter) {
    Text out = t;
    bool start = true;
    for (char& c : out.s) {
      const bool alpha = ascii_alpha(c);
      // str.title(): a word is a run of letters; jinja2's title filter: text after space or -({[<
      const bool boundary = jinja_filter ? (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' ||
                                            c == '-' || c == '(' || c == '{' || c == '[' || c == '<')
                                         : !alpha && (static_cast<unsigned char>(c) < 0x80);
      if (boundary) {
        start = true;
        continue;
      }
      if (start)
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      else if (alpha)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      start = false;
    }
    return out;
  }

  static Text map_case(const Text& t, bool upper) {
    Text out = t;
    out.s = upper ? ascii_upper(out.s) : ascii_lower(out.s);
    return out;
  }

  // ----- arguments

  static const Value* arg(const CallArgs& a, size_t pos, const char* name) {
    if (pos < a.pos.size()) return &a.pos[pos];
    for (const auto& [k, v] : a.kw)
      if (k == name) return &v;
    return nullptr;
  }
  std::string str_arg(const CallArgs& a, size_t pos, const char* name, const std::string& dflt, int line) {
    const Value* v = arg(a, pos, name);
    if (!v || v->is_none()) return dflt;
    if (!v->is_string()) fail_at(line, fmt::format("argument '{}' must be a string, not '{}'", name, type_name(*v)));
    return v->text().s;
  }
  int64_t int_arg(const CallArgs& a, size_t pos, const char* name, int64_t dflt, int line) {
    const Value* v = arg(a, pos, name);
    if (!v || v->is_none()) return dflt;
    if (v->kind() != Value::Kind::Int && v->kind() != Value::Kind::Bool)
      fail_at(line, fmt::format("argument '{}' must be an integer, not '{}'", name, type_name(*v)));
    return v->i();
  }
  Text text_arg(const CallArgs& a, size_t pos, const char* name, int line) {
    const Value* v = arg(a, pos, name);
    if (!v || !v->is_string())
      fail_at(line, fmt::format("argument '{}' must be a string, not '{}'", name, v ? type_name(*v) : "missing"));
    return v->text();
  }

  // ----- methods

  Value call_method(const Value& obj, const std::string& name, CallArgs& a, int line) {
    if (obj.is_string()) {
      const Text& t = obj.text();
      if (name == "strip" || name == "lstrip" || name == "rstrip") {
        const Value* c = arg(a, 0, "chars");
        std::string chars;
        if (c && c->is_string()) chars = c->text().s;
        return Value::string(strip(t, name != "rstrip", name != "lstrip", c && c->is_string() ? &chars : nullptr));
      }
      if (name == "split") {
        const Value* sep = arg(a, 0, "sep");
        ValueList out;
        for (Text& p : split(t, sep ? *sep : Value(), int_arg(a, 1, "maxsplit", -1, line), *this, line))
          out.push_back(Value::string(std::move(p)));
        return Value::list(std::move(out));
      }
      if (name == "startswith" || name == "endswith") {
        const Value* p = arg(a, 0, "prefix");
        std::vector<Value> options;
        if (p && p->is_list())
          options = p->items();
        else if (p)
          options.push_back(*p);
        for (const Value& o : options) {
          if (!o.is_string()) fail_at(line, fmt::format("{}() takes strings, not '{}'", name, type_name(o)));
          const std::string& x = o.text().s;
          if (x.size() > t.s.size()) continue;
          if (name == "startswith" ? t.s.compare(0, x.size(), x) == 0
                                   : t.s.compare(t.s.size() - x.size(), x.size(), x) == 0)
            return Value::boolean(true);
        }
        return Value::boolean(false);
      }
      if (name == "upper" || name == "lower") return Value::string(map_case(t, name == "upper"));
      if (name == "title") return Value::string(title_words(t, false));
      if (name == "capitalize") {
        Text out = map_case(t, false);
        if (!out.s.empty()) out.s[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(out.s[0])));
        return Value::string(std::move(out));
      }
      if (name == "replace")
        return Value::string(replace(t, text_arg(a, 0, "old", line), text_arg(a, 1, "new", line),
                                     int_arg(a, 2, "count", -1, line), line));
      if (name == "find" || name == "count") {
        const std::string sub = text_arg(a, 0, "sub", line).s;
        if (name == "count") {
          if (sub.empty()) return Value::integer(static_cast<int64_t>(char_offsets(t.s).size()));
          int64_t n = 0;
          for (size_t i = t.s.find(sub); i != std::string::npos; i = t.s.find(sub, i + sub.size())) ++n;
          return Value::integer(n);
        }
        const size_t at = t.s.find(sub);
        if (at == std::string::npos) return Value::integer(-1);
        return Value::integer(static_cast<int64_t>(char_offsets(t.s.substr(0, at)).size()) - 1);
      }
      if (name == "join") {
        const Value* items = arg(a, 0, "iterable");
        Text out;
        bool first = true;
        for (const Value& v : iterate(items ? *items : Value(), line)) {
          if (!first) out.append(t);
          first = false;
          if (!v.is_string()) fail_at(line, fmt::format("join() expects strings, found '{}'", type_name(v)));
          out.append(v.text());
          check_size(out.s.size(), line);
        }
        return Value::string(std::move(out));
      }
    }
    if (obj.kind() == Value::Kind::Dict) {
      if (name == "items") return items_of(obj);
      if (name == "keys" || name == "values") {
        ValueList out;
        for (const auto& [k, v] : obj.entries()) out.push_back(name == "keys" ? k : v);
        return Value::list(std::move(out));
      }
      if (name == "get") {
        const Value* k = arg(a, 0, "key");
        if (!k) fail_at(line, "get() needs a key");
        if (const Value* v = obj.find(*k)) return *v;
        const Value* d = arg(a, 1, "default");
        return d ? *d : Value::none();
      }
    }
    fail_at(line, fmt::format("'{}' object has no method '{}'", type_name(obj), name));
  }

  static Value items_of(const Value& d) {
    ValueList out;
    for (const auto& [k, v] : d.entries()) out.push_back(Value::list({k, v}));
    return Value::list(std::move(out));
  }

  // ----- tojson: transformers' json.dumps(ensure_ascii=False)

  void json_string(const std::string& s, std::string& out) const {
    out += '"';
    for (char ch : s) {
      const auto c = static_cast<unsigned char>(ch);
      switch (ch) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        default:
          if (c < 0x20)
            out += fmt::format("\\u{:04x}", c);
          else
            out += ch;
      }
    }
    out += '"';
  }

  struct JsonStyle {
    std::optional<std::string> indent;
    std::string item_sep = ", ", key_sep = ": ";
    bool sort_keys = false;
  };

  void to_json(const Value& v, const JsonStyle& st, int level, Text& out, int line) {
    check_size(out.s.size(), line);
    if (level > kMaxNesting) fail_at(line, "tojson: value nested too deeply");
    auto newline = [&](int lv) {
      if (!st.indent) return;
      out.append_literal("\n");
      for (int k = 0; k < lv; ++k) out.append_literal(*st.indent);
    };
    auto string_out = [&](const Value& s) {
      std::string j;
      json_string(s.text().s, j);
      out.append(s.text().any_content() ? Text::content(std::move(j)) : Text::literal(std::move(j)));
    };
    switch (v.kind()) {
      case Value::Kind::None: out.append_literal("null"); return;
      case Value::Kind::Bool: out.append_literal(v.b() ? "true" : "false"); return;
      case Value::Kind::Int: out.append_literal(std::to_string(v.i())); return;
      case Value::Kind::Float:
        out.append_literal(std::isnan(v.f())   ? "NaN"
                           : std::isinf(v.f()) ? (v.f() > 0 ? "Infinity" : "-Infinity")
                                               : format_float(v.f()));
        return;
      case Value::Kind::String: string_out(v); return;
      case Value::Kind::List: {
        if (v.items().empty()) {
          out.append_literal("[]");
          return;
        }
        out.append_literal("[");
        for (size_t i = 0; i < v.items().size(); ++i) {
          if (i) out.append_literal(st.item_sep);
          newline(level + 1);
          to_json(v.items()[i], st, level + 1, out, line);
        }
        newline(level);
        out.append_literal("]");
        return;
      }
      case Value::Kind::Dict: {
        if (v.entries().empty()) {
          out.append_literal("{}");
          return;
        }
        std::vector<const std::pair<Value, Value>*> order;
        for (const auto& e : v.entries()) order.push_back(&e);
        if (st.sort_keys)
          std::stable_sort(order.begin(), order.end(),
                           [&](auto* x, auto* y) { return compare("<", x->first, y->first, line); });
        out.append_literal("{");
        bool first = true;
        for (const auto* e : order) {
          if (!first) out.append_literal(st.item_sep);
          first = false;
          newline(level + 1);
          const Value& k = e->first;
          if (k.is_string()) {
            string_out(k);
          } else if (k.is_number() || k.is_none()) {
            Text kt;
            to_json(k, st, level + 1, kt, line);
            std::string quoted;
            json_string(kt.s, quoted);
            out.append_literal(quoted);
          } else {
            fail_at(line, fmt::format("tojson: keys must be strings, not '{}'", type_name(k)));
          }
          out.append_literal(st.key_sep);
          to_json(e->second, st, level + 1, out, line);
        }
        newline(level);
        out.append_literal("}");
        return;
      }
      default: fail_at(line, fmt::format("Object of type {} is not JSON serializable", type_name(v)));
    }
  }

  // ----- filters

  Value apply_filter(const Expr& e, Value in, Frame& f) {
    CallArgs a = eval_args(e, 1, f);
    return filter(e.name, in, a, e.line);
  }

  Value filter(const std::string& name, const Value& in, CallArgs& a, int line) {
    if (name == "trim") {
      const Value* c = arg(a, 0, "chars");
      std::string chars;
      if (c && c->is_string()) chars = c->text().s;
      return Value::string(strip(to_text(in), true, true, c && c->is_string() ? &chars : nullptr));
    }
    if (name == "length" || name == "count") {
      switch (in.kind()) {
        case Value::Kind::String: return Value::integer(static_cast<int64_t>(char_offsets(in.text().s).size()) - 1);
        case Value::Kind::List: return Value::integer(static_cast<int64_t>(in.items().size()));
        case Value::Kind::Dict:
        case Value::Kind::Namespace: return Value::integer(static_cast<int64_t>(in.entries().size()));
        case Value::Kind::Undefined: return Value::integer(0);
        default: fail_at(line, fmt::format("object of type '{}' has no len()", type_name(in)));
      }
    }
    if (name == "upper" || name == "lower") return Value::string(map_case(to_text(in), name == "upper"));
    if (name == "capitalize") return call_method(Value::string(to_text(in)), "capitalize", a, line);
    if (name == "title") return Value::string(title_words(to_text(in), true));
    if (name == "tojson") {
      JsonStyle st;
      if (const Value* ind = arg(a, 0, "indent"); ind && !ind->is_none()) {
        if (ind->is_string())
          st.indent = ind->text().s;
        else
          st.indent =
              std::string(static_cast<size_t>(std::clamp<int64_t>(int_arg(a, 0, "indent", 0, line), 0, 64)), ' ');
        st.item_sep = ",";
      }
      if (const Value* sep = arg(a, 2, "separators"); sep && sep->is_list() && sep->items().size() == 2 &&
                                                      sep->items()[0].is_string() && sep->items()[1].is_string()) {
        st.item_sep = sep->items()[0].text().s;
        st.key_sep = sep->items()[1].text().s;
      }
      if (const Value* sk = arg(a, 3, "sort_keys")) st.sort_keys = sk->truthy();
      Text out;
      to_json(in, st, 0, out, line);
      return Value::string(std::move(out));
    }
    if (name == "default" || name == "d") {
      const Value* b = arg(a, 1, "boolean");
      const bool use = in.is_undefined() || (b && b->truthy() && !in.truthy());
      if (!use) return in;
      const Value* d = arg(a, 0, "default_value");
      return d ? *d : Value::literal("");
    }
    if (name == "first" || name == "last") {
      std::vector<Value> items = iterate(in, line);
      if (items.empty()) return Value::undefined(name);
      return name == "first" ? items.front() : items.back();
    }
    if (name == "join") {
      const Text sep = arg(a, 0, "d") && arg(a, 0, "d")->is_string() ? arg(a, 0, "d")->text() : Text{};
      const Value* attr = arg(a, 1, "attribute");
      Text out;
      bool first = true;
      for (const Value& v : iterate(in, line)) {
        if (!first) out.append(sep);
        first = false;
        out.append(to_text(attr ? get_path(v, *attr, line) : v));
        check_size(out.s.size(), line);
      }
      return Value::string(std::move(out));
    }
    if (name == "replace") {
      return Value::string(replace(to_text(in), text_arg(a, 0, "old", line), text_arg(a, 1, "new", line),
                                   int_arg(a, 2, "count", -1, line), line));
    }
    if (name == "string") return Value::string(to_text(in));
    if (name == "safe") return in;
    if (name == "items") {
      if (in.is_undefined()) return Value::list({});
      if (in.kind() != Value::Kind::Dict) fail_at(line, fmt::format("items: '{}' is not a mapping", type_name(in)));
      return items_of(in);
    }
    if (name == "list") return Value::list(iterate(in, line));
    if (name == "reverse") {
      if (in.is_string()) {
        const std::vector<size_t> o = char_offsets(in.text().s);
        Text out;
        for (size_t k = o.size() - 1; k > 0; --k) out.append(in.text().substr(o[k - 1], o[k] - o[k - 1]));
        return Value::string(std::move(out));
      }
      std::vector<Value> items = iterate(in, line);
      std::reverse(items.begin(), items.end());
      return Value::list(std::move(items));
    }
    if (name == "unique") {
      ValueList out;
      for (const Value& v : iterate(in, line)) {
        auto key = [](const Value& x) { return x.is_string() ? Value::literal(ascii_lower(x.text().s)) : x; };
        if (std::none_of(out.begin(), out.end(), [&](const Value& o) { return values_equal(key(o), key(v)); }))
          out.push_back(v);
      }
      return Value::list(std::move(out));
    }
    if (name == "selectattr" || name == "rejectattr" || name == "select" || name == "reject") {
      const bool attr = name == "selectattr" || name == "rejectattr";
      const bool keep_if = name == "selectattr" || name == "select";
      const Value* path = attr ? arg(a, 0, "attribute") : nullptr;
      if (attr && !path) fail_at(line, fmt::format("{} needs an attribute name", name));
      const size_t t_at = attr ? 1 : 0;
      std::string test;
      if (t_at < a.pos.size()) {
        if (!a.pos[t_at].is_string()) fail_at(line, fmt::format("{}: the test name must be a string", name));
        test = a.pos[t_at].text().s;
      }
      CallArgs targs;
      for (size_t k = t_at + 1; k < a.pos.size(); ++k) targs.pos.push_back(a.pos[k]);
      ValueList out;
      if (!in.truthy()) return Value::list({});  // jinja2 visits nothing for none or empty
      for (const Value& v : iterate(in, line)) {
        step(line);
        const Value x = path ? get_path(v, *path, line) : v;
        const bool ok = test.empty() ? x.truthy() : apply_test(test, x, targs, line);
        if (ok == keep_if) out.push_back(v);
      }
      return Value::list(std::move(out));
    }
    if (name == "map") {
      ValueList out;
      if (!in.truthy()) return Value::list({});
      const Value* attr = nullptr;
      for (const auto& [k, v] : a.kw)
        if (k == "attribute") attr = &v;
      if (attr) {
        const Value* dflt = nullptr;
        for (const auto& [k, v] : a.kw)
          if (k == "default") dflt = &v;
        for (const Value& v : iterate(in, line)) {
          Value x = get_path(v, *attr, line);
          out.push_back(x.is_undefined() && dflt ? *dflt : x);
        }
        return Value::list(std::move(out));
      }
      if (a.pos.empty() || !a.pos[0].is_string()) fail_at(line, "map needs a filter name or attribute=");
      const std::string fname = a.pos[0].text().s;
      CallArgs fargs;
      fargs.pos.assign(a.pos.begin() + 1, a.pos.end());
      for (const Value& v : iterate(in, line)) {
        step(line);
        out.push_back(filter(fname, v, fargs, line));
      }
      return Value::list(std::move(out));
    }
    if (name == "indent") {
      const Value* w = arg(a, 0, "width");
      std::string pad =
          w && w->is_string()
              ? w->text().s
              : std::string(static_cast<size_t>(std::clamp<int64_t>(w ? int_arg(a, 0, "width", 4, line) : 4, 0, 64)),
                            ' ');
      const bool first = arg(a, 1, "first") && arg(a, 1, "first")->truthy();
      const bool blank = arg(a, 2, "blank") && arg(a, 2, "blank")->truthy();
      Text s = to_text(in);
      s.append_literal("\n");
      std::vector<Text> lines;
      for (size_t i = 0; i < s.s.size();) {
        const size_t j = s.s.find('\n', i);
        lines.push_back(s.substr(i, j - i));
        i = j + 1;
      }
      Text out;
      for (size_t k = 0; k < lines.size(); ++k) {
        if (k) out.append_literal("\n");
        if ((k || first) && (blank || !lines[k].s.empty() || (k == 0 && first))) out.append_literal(pad);
        out.append(lines[k]);
        check_size(out.s.size(), line);
      }
      return Value::string(std::move(out));
    }
    if (name == "int" || name == "float") {
      const Value* d = arg(a, 0, "default");
      Value dflt = d ? *d : (name == "int" ? Value::integer(0) : Value::number(0));
      if (in.is_number())
        return name == "int" ? Value::integer(in.kind() == Value::Kind::Float ? static_cast<int64_t>(in.f()) : in.i())
                             : Value::number(in.as_double());
      if (in.is_string()) {
        const std::string s = strip(in.text(), true, true, nullptr).s;
        char* end = nullptr;
        errno = 0;
        if (name == "int") {
          const long long v = std::strtoll(s.c_str(), &end, 10);
          if (!s.empty() && end == s.c_str() + s.size() && errno == 0) return Value::integer(v);
        } else {
          const double v = std::strtod(s.c_str(), &end);
          if (!s.empty() && end == s.c_str() + s.size()) return Value::number(v);
        }
      }
      return dflt;
    }
    if (name == "abs") {
      if (in.kind() == Value::Kind::Float) return Value::number(std::fabs(in.f()));
      if (in.is_number() && in.i() != INT64_MIN) return Value::integer(in.i() < 0 ? -in.i() : in.i());
      fail_at(line, fmt::format("bad operand type for abs(): '{}'", type_name(in)));
    }
    fail_at(line, fmt::format("unknown filter '{}'", name));
  }

  // item.a.b for selectattr/map/join(attribute=...).
  Value get_path(const Value& v, const Value& path, int line) {
    if (path.kind() == Value::Kind::Int) return get_item(v, path, line);
    if (!path.is_string()) fail_at(line, "attribute name must be a string");
    Value cur = v;
    const std::string& p = path.text().s;
    for (size_t i = 0; i <= p.size();) {
      size_t j = p.find('.', i);
      if (j == std::string::npos) j = p.size();
      if (cur.is_undefined()) return cur;
      cur = get_item(cur, Value::literal(p.substr(i, j - i)), line);
      i = j + 1;
    }
    return cur;
  }

  // ----- tests

  bool apply_test(const std::string& name, const Value& v, CallArgs& a, int line) {
    using K = Value::Kind;
    auto other = [&]() -> const Value& {
      if (a.pos.empty()) fail_at(line, fmt::format("test '{}' needs an argument", name));
      return a.pos[0];
    };
    if (name == "defined") return !v.is_undefined();
    if (name == "undefined") return v.is_undefined();
    if (name == "none") return v.is_none();
    if (name == "boolean") return v.kind() == K::Bool;
    if (name == "true") return v.kind() == K::Bool && v.b();
    if (name == "false") return v.kind() == K::Bool && !v.b();
    if (name == "string") return v.is_string();
    if (name == "number") return v.is_number();
    if (name == "integer") return v.kind() == K::Int;
    if (name == "float") return v.kind() == K::Float;
    if (name == "mapping") return v.kind() == K::Dict;
    if (name == "iterable") return v.is_string() || v.is_list() || v.kind() == K::Dict || v.is_undefined();
    if (name == "sequence") return v.is_string() || v.is_list() || v.kind() == K::Dict;
    if (name == "callable") return v.kind() == K::Callable;
    if (name == "equalto" || name == "eq" || name == "==") return values_equal(v, other());
    if (name == "ne" || name == "!=") return !values_equal(v, other());
    if (name == "lt" || name == "<") return compare("<", v, other(), line);
    if (name == "le" || name == "<=") return compare("<=", v, other(), line);
    if (name == "gt" || name == ">") return compare(">", v, other(), line);
    if (name == "ge" || name == ">=") return compare(">=", v, other(), line);
    if (name == "in") return contains(other(), v, line);
    if (name == "sameas") {
      const Value& o = other();
      if (v.kind() != o.kind()) return false;
      if (v.is_none() || v.is_undefined()) return true;
      if (v.kind() == K::Bool || v.kind() == K::Int) return v.i() == o.i();
      if (v.is_string()) return v.text().s == o.text().s;
      return v.same_object(o);
    }
    if (name == "odd" || name == "even" || name == "divisibleby") {
      if (v.kind() != K::Int && v.kind() != K::Bool) fail_at(line, fmt::format("test '{}' needs an integer", name));
      if (name == "divisibleby") {
        const Value& d = other();
        if ((d.kind() != K::Int && d.kind() != K::Bool) || d.i() == 0)
          fail_at(line, "divisibleby needs a non-zero integer");
        return d.i() == -1 || v.i() % d.i() == 0;
      }
      return (v.i() % 2 != 0) == (name == "odd");
    }
    if (name == "lower" || name == "upper") {
      if (!v.is_string()) return false;
      const std::string& s = v.text().s;
      return s == (name == "lower" ? ascii_lower(s) : ascii_upper(s));
    }
    if (name == "escaped") return false;
    fail_at(line, fmt::format("unknown test '{}'", name));
  }

 private:
  const std::string& name_;
  const RenderOptions& opts_;
  int64_t steps_ = 0;

 public:
  int call_depth_ = 0;
};

// The globals every template sees.
void add_globals(Frame& g) {
  auto fn = [&](const char* name, std::function<Value(Interp&, CallArgs&, int)> body) {
    auto c = std::make_shared<Callable>();
    c->name = name;
    c->fn = std::move(body);
    g.set(name, Value::callable(c));
  };
  fn("raise_exception", [](Interp& in, CallArgs& a, int) -> Value {
    const std::string msg = !a.pos.empty() ? in.to_text(a.pos[0]).s : "raise_exception() called";
    throw Error(fmt::format("{}: {}", in.name(), printable(msg)));
  });
  fn("strftime_now", [](Interp& in, CallArgs& a, int line) -> Value {
    const std::string f = in.str_arg(a, 0, "format", "", line);
    if (f.size() > 256) in.fail_at(line, "strftime_now: format too long");
    std::tm tm{};
    if (in.options().now) {
      tm = *in.options().now;
    } else {
      const std::time_t t = std::time(nullptr);
      localtime_r(&t, &tm);
    }
    char buf[1024];
    const size_t n = f.empty() ? 0 : std::strftime(buf, sizeof buf, f.c_str(), &tm);
    return Value::literal(std::string(buf, n));
  });
  fn("namespace", [](Interp& in, CallArgs& a, int line) -> Value {
    ValueDict d;
    for (const Value& p : a.pos) {
      if (p.kind() != Value::Kind::Dict) in.fail_at(line, "namespace() takes a mapping or keyword arguments");
      for (const auto& e : p.entries()) d.push_back(e);
    }
    for (auto& [k, v] : a.kw) Interp::set_entry(d, k, v);
    return Value::make_namespace(std::move(d));
  });
  fn("dict", [](Interp&, CallArgs& a, int) -> Value {
    ValueDict d;
    for (auto& [k, v] : a.kw) Interp::set_entry(d, k, v);
    return Value::dict(std::move(d));
  });
  fn("range", [](Interp& in, CallArgs& a, int line) -> Value {
    int64_t start = 0, stop = 0, step = 1;
    for (const Value& v : a.pos)
      if (v.kind() != Value::Kind::Int && v.kind() != Value::Kind::Bool) in.fail_at(line, "range() takes integers");
    if (a.pos.size() == 1) {
      stop = a.pos[0].i();
    } else if (a.pos.size() == 2 || a.pos.size() == 3) {
      start = a.pos[0].i();
      stop = a.pos[1].i();
      if (a.pos.size() == 3) step = a.pos[2].i();
    } else {
      in.fail_at(line, "range() takes 1 to 3 integers");
    }
    if (step == 0) in.fail_at(line, "range() step must not be zero");
    ValueList out;
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
      in.step(line);
      out.push_back(Value::integer(i));
      if ((step > 0 && i > INT64_MAX - step) || (step < 0 && i < INT64_MIN - step)) break;
    }
    return Value::list(std::move(out));
  });
}

std::vector<Span> to_spans(const Text& out) {
  std::vector<Span> spans;
  for (size_t i = 0; i < out.s.size();) {
    const bool content = out.content_at(i);
    size_t j = i + 1;
    while (j < out.s.size() && out.content_at(j) == content) ++j;
    spans.push_back({out.s.substr(i, j - i), !content});
    i = j;
  }
  return spans;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Template

Template::Template(std::string_view source, std::string name) : name_(std::move(name)) {
  try {
    Parser p(Lexer(source, name_).run(), name_);
    body_ = p.parse();
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {  // never a crash: a bug here is still one line
    throw Error(fmt::format("{}: cannot parse the template: {}", name_, e.what()));
  }
}

Template::~Template() = default;
Template::Template(Template&&) noexcept = default;
Template& Template::operator=(Template&&) noexcept = default;

std::vector<Span> Template::render(const std::vector<std::pair<std::string, Value>>& vars,
                                   const RenderOptions& options) const {
  try {
    Interp in(name_, options);
    Frame globals;
    add_globals(globals);
    for (const auto& [k, v] : vars) globals.set(k, v);
    Frame top{{}, &globals};
    in.top = &top;
    Text out;
    in.exec(body_, top, out);
    return to_spans(out);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(fmt::format("{}: cannot render the template: {}", name_, e.what()));
  }
}

std::vector<Span> Template::render(const nlohmann::json& content, const nlohmann::json& literals,
                                   const RenderOptions& options) const {
  std::vector<std::pair<std::string, Value>> vars;
  for (const auto* j : {&content, &literals})
    if (j->is_object())
      for (auto it = j->begin(); it != j->end(); ++it)
        vars.emplace_back(it.key(), Value::from_json(it.value(), j == &content));
  return render(vars, options);
}

}  // namespace la::jinja
