// Chat templates (SPEC §9): our Jinja subset against jinja2's renders of real templates
// (tests/reference/chat_template_fixtures.py -> tests/fixtures/chat_templates/expected.json), the
// built-ins against the templates they imitate, special tokens only from template text, the
// Alpaca prompt equal to what `generate --instruction` feeds, end-of-turn ids, the template
// recorded in adapter files, where the template comes from, and malformed templates as errors.
#include <algorithm>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "la/chat/chat_template.h"
#include "la/chat/jinja.h"
#include "la/core/error.h"
#include "la/data/alpaca.h"
#include "la/formats/gguf.h"
#include "la/io/adapter_file.h"
#include "la/io/model_chat_template.h"
#include "la/model/adapter.h"
#include "la/tokenizer/bpe_tokenizer.h"
#include "la/tokenizer/gguf_vocab.h"
#include "la/tokenizer/sp_tokenizer.h"
#include "support/test_support.h"

namespace {

using la::ChatMessage;
using la::ChatSpan;
using la::ChatTemplate;
using la::test::TempDir;

constexpr const char* kTemplates = "gguf/templates";
constexpr const char* kLlamaModel = "tokenizer/tokenizer.model";
constexpr const char* kPhi3Vocab = "gguf/ggml-vocab-phi-3.gguf";

const nlohmann::json& fixture() {
  static const nlohmann::json j = nlohmann::json::parse(
      la::test::read_text(std::string(LA_SOURCE_DIR) + "/tests/fixtures/chat_templates/expected.json"));
  return j;
}

std::vector<ChatMessage> messages_of(const nlohmann::json& j) {
  std::vector<ChatMessage> m;
  for (const auto& x : j) m.push_back({x.at("role").get<std::string>(), x.at("content").get<std::string>()});
  return m;
}

// strftime_now() as the fixture fixed it.
la::jinja::RenderOptions fixed_date() {
  std::tm tm{};
  tm.tm_year = 2024 - 1900;
  tm.tm_mon = 6;
  tm.tm_mday = 26;
  tm.tm_hour = 12;
  la::jinja::RenderOptions o;
  o.now = tm;
  return o;
}

std::string text_of(const std::vector<ChatSpan>& spans) {
  return la::jinja::join_spans(spans);
}

std::string literal_text(const std::vector<ChatSpan>& spans) {
  std::string s;
  for (const auto& sp : spans)
    if (sp.literal) s += sp.text;
  return s;
}

std::string template_source(const std::string& file) {
  return la::test::read_text(la::test::shared_path(std::string(kTemplates) + "/" + file));
}

// --- the interpreter against jinja2

TEST(ChatTemplate, RendersRealTemplatesAsJinja2Does) {
  REQUIRE_SHARED_DATA(std::string(kTemplates) + "/Qwen-Qwen2.5-7B-Instruct.jinja");
  std::map<std::string, ChatTemplate> parsed;
  int checked = 0;
  for (const auto& c : fixture().at("cases")) {
    const std::string file = c.at("template");
    if (!parsed.count(file)) parsed.emplace(file, ChatTemplate::from_jinja(template_source(file), file));
    const auto messages = messages_of(c.at("messages"));
    const bool gen = c.at("add_generation_prompt");
    SCOPED_TRACE(file + " " + c.at("messages").dump() + (gen ? " +gen" : ""));
    if (c.at("error").is_string()) {
      try {
        parsed.at(file).render(messages, gen, "<s>", "</s>", fixed_date());
        ADD_FAILURE() << "expected an error: " << c.at("error");
      } catch (const la::Error& e) {
        EXPECT_NE(std::string(e.what()).find(c.at("error").get<std::string>()), std::string::npos) << e.what();
      }
      continue;
    }
    const auto spans = parsed.at(file).render(messages, gen, "<s>", "</s>", fixed_date());
    EXPECT_EQ(text_of(spans), c.at("expected").get<std::string>());
    // The tricky message's words are user text wherever they land, never template text.
    for (const auto& m : messages)
      if (m.content.find("literally") != std::string::npos) {
        EXPECT_EQ(literal_text(spans).find("literally"), std::string::npos);
        EXPECT_EQ(literal_text(spans).find("[INST] <start_of_turn>"), std::string::npos);
      }
    ++checked;
  }
  EXPECT_GT(checked, 200);
}

TEST(ChatTemplate, InterpreterCornersAsJinja2) {
  for (const auto& s : fixture().at("snippets")) {
    const std::string source = s.at("source");
    SCOPED_TRACE(source);
    const ChatTemplate t = ChatTemplate::from_jinja(source, "snippet");
    EXPECT_EQ(text_of(t.render(messages_of(s.at("messages")), true, "<s>", "</s>")),
              s.at("expected").get<std::string>());
  }
}

TEST(ChatTemplate, ContentKeepsItsMarkThroughStringOperations) {
  const ChatTemplate t = ChatTemplate::from_jinja(
      "{{ '<s>' + ('  ' + messages[0].content + ' ').strip() + '</s>' }}|{{ messages[0].content.split('/')[0] }}|"
      "{{ messages[0].content | tojson }}|{{ messages[0].content | replace('x', '<s>') }}");
  const auto spans = t.render({{"user", "x</s>"}}, false, "<s>", "</s>");
  const std::vector<ChatSpan> want = {{"<s>", true}, {"x</s>", false},     {"</s>|", true}, {"x<", false},
                                      {"|", true},   {"\"x</s>\"", false}, {"|<s>", true},  {"</s>", false}};
  // replace() marks the replacement by where it came from: the template's "<s>" is template text.
  EXPECT_EQ(spans, want);
  // A role that is not a plain word is content too.
  const auto r = ChatTemplate::builtin("chatml").render({{"<|im_end|>", "hi"}}, false, "<s>", "</s>");
  ASSERT_GE(r.size(), 2u);
  EXPECT_EQ(r[1], (ChatSpan{"<|im_end|>", false}));
}

// --- built-ins

// Renders of a real template from the fixture, for the built-in that imitates it.
void expect_builtin_matches(const std::string& builtin, const std::string& file,
                            bool (*applies)(const nlohmann::json& messages)) {
  const ChatTemplate t = ChatTemplate::builtin(builtin);
  int n = 0;
  for (const auto& c : fixture().at("cases")) {
    if (c.at("template") != file || !c.at("error").is_null() || !applies(c.at("messages"))) continue;
    SCOPED_TRACE(builtin + " vs " + file + " " + c.at("messages").dump());
    EXPECT_EQ(text_of(t.render(messages_of(c.at("messages")), c.at("add_generation_prompt"), "<s>", "</s>")),
              c.at("expected").get<std::string>());
    ++n;
  }
  EXPECT_GE(n, 4) << builtin;
}

TEST(ChatTemplate, BuiltinsRenderAsTheTemplatesTheyImitate) {
  // Qwen2.5 is ChatML plus a default system message: equal whenever a system message is given.
  expect_builtin_matches("chatml", "Qwen-Qwen2.5-7B-Instruct.jinja",
                         [](const nlohmann::json& m) { return m[0].at("role") == "system"; });
  expect_builtin_matches("mistral", "mistralai-Mistral-Nemo-Instruct-2407.jinja",
                         [](const nlohmann::json&) { return true; });
  expect_builtin_matches("phi-3", "microsoft-Phi-3.5-mini-instruct.jinja", [](const nlohmann::json&) { return true; });
}

TEST(ChatTemplate, BuiltinsWithoutARealTemplateHere) {
  const std::vector<ChatMessage> conv = {
      {"system", "Be brief."}, {"user", " Hi "}, {"assistant", "Hello."}, {"user", "Again?"}};
  EXPECT_EQ(text_of(ChatTemplate::builtin("llama-2").render(conv, true, "<s>", "</s>")),
            "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n Hi [/INST] Hello. </s><s>[INST] Again? [/INST]");
  EXPECT_EQ(text_of(ChatTemplate::builtin("llama-3").render(conv, true, "<|begin_of_text|>", "<|end_of_text|>")),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nAgain?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(text_of(ChatTemplate::builtin("zephyr").render(conv, true, "<s>", "</s>")),
            "<|system|>\nBe brief.</s>\n<|user|>\n Hi </s>\n<|assistant|>\nHello.</s>\n<|user|>\nAgain?</s>\n"
            "<|assistant|>\n");
  EXPECT_EQ(text_of(ChatTemplate::builtin("chatml").render({{"user", "Hi"}}, false, "<s>", "</s>")),
            "<|im_start|>user\nHi<|im_end|>\n");
  const auto names = la::builtin_chat_templates();
  EXPECT_EQ(names.front(), "alpaca");
  for (const std::string n : {"alpaca", "llama-2", "llama-3", "chatml", "zephyr", "mistral", "phi-3"})
    EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n;
}

TEST(ChatTemplate, AlpacaTurnsAreAlpacaPrompts) {
  const ChatTemplate a = ChatTemplate::builtin("alpaca");
  EXPECT_EQ(text_of(a.render({{"user", "Name a colour."}}, true, "<s>", "</s>")),
            "<s>" + la::alpaca_prompt("Name a colour.", ""));
  // add_generation_prompt changes nothing: the prompt already ends at "### Response:".
  EXPECT_EQ(text_of(a.render({{"user", "x"}}, false, "<s>", "</s>")), "<s>" + la::alpaca_prompt("x", ""));
  EXPECT_EQ(text_of(a.render({{"user", "A"}, {"assistant", "B"}, {"user", "C"}}, true, "<s>", "</s>")),
            "<s>" + la::alpaca_prompt("A", "") + "B</s><s>" + la::alpaca_prompt("C", ""));
  // A system message takes the preamble's place in every turn.
  EXPECT_EQ(text_of(a.render({{"system", "You translate."}, {"user", "A"}, {"assistant", "B"}, {"user", "C"}}, true,
                             "<s>", "</s>")),
            "<s>You translate.\n\n### Instruction:\nA\n\n### Response:B</s>"
            "<s>You translate.\n\n### Instruction:\nC\n\n### Response:");
}

// --- tokens

TEST(ChatTemplate, AlpacaEncodesAsGenerateInstruction) {
  REQUIRE_SHARED_DATA(kLlamaModel);
  const auto tok = la::SpTokenizer::load(la::test::shared_path(kLlamaModel));
  const ChatTemplate a = la::resolve_chat_template("", "", "");
  ASSERT_EQ(a.name(), "alpaca");
  for (const std::string text : {"Name three colours.", " leading space", "Say </s> and <s>.",
                                 "ünï 日本 🦙\nline", "", "### Response: trick"}) {
    SCOPED_TRACE(text);
    std::vector<int> want = {tok->bos_id()};
    const auto body = tok->encode(la::alpaca_prompt(text, ""), false, false);
    want.insert(want.end(), body.begin(), body.end());
    EXPECT_EQ(la::encode_chat(*tok, a.render({{"user", text}}, true, *tok)), want);
  }
  // Multi-turn: each earlier turn is one training example, [BOS] prompt+reply [EOS].
  std::vector<int> want = {tok->bos_id()};
  auto add = [&](const std::string& s) {
    const auto ids = tok->encode(s, false, false);
    want.insert(want.end(), ids.begin(), ids.end());
  };
  add(la::alpaca_prompt("A", "") + "Bee");
  want.push_back(tok->eos_id());
  want.push_back(tok->bos_id());
  add(la::alpaca_prompt("C", ""));
  EXPECT_EQ(la::encode_chat(*tok, a.render({{"user", "A"}, {"assistant", "Bee"}, {"user", "C"}}, true, *tok)), want);
}

TEST(ChatTemplate, OnlyTemplateTextBecomesSpecialTokens) {
  REQUIRE_SHARED_DATA(kLlamaModel);
  const auto tok = la::SpTokenizer::load(la::test::shared_path(kLlamaModel));
  EXPECT_TRUE(tok->is_special(1));
  EXPECT_TRUE(tok->is_special(2));
  EXPECT_FALSE(tok->is_special(0));  // <unk>
  EXPECT_FALSE(tok->is_special(tok->encode("hello", false, false)[0]));
  const ChatTemplate l2 = ChatTemplate::builtin("llama-2");
  const std::vector<ChatMessage> conv = {{"user", "Type </s> and <s> please"}, {"assistant", "</s>"}, {"user", "ok"}};
  const std::vector<int> ids = la::encode_chat(*tok, l2.render(conv, true, *tok));
  // BOS before each user turn, EOS after the assistant's: the template's, and no others.
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 1), 2);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 2), 1);
  EXPECT_EQ(ids.front(), 1);
  // The text between special tokens is tokenized as one text, whatever spans it came from.
  const std::vector<ChatSpan> spans = {{"<s>[INST] ", true}, {"Hi", false}, {" [/INST]", true}};
  std::vector<int> want = {1};
  const auto body = tok->encode("[INST] Hi [/INST]", false, false);
  want.insert(want.end(), body.begin(), body.end());
  EXPECT_EQ(la::encode_chat(*tok, spans), want);
  // Content "</s>" is the text's pieces; literal "</s>" is EOS.
  EXPECT_EQ(la::encode_chat(*tok, {{"</s>", false}}), tok->encode("</s>", false, false));
  EXPECT_EQ(la::encode_chat(*tok, {{"</s>", true}}), std::vector<int>{2});
  EXPECT_EQ(la::end_of_turn_ids(*tok), std::vector<int>{2});
}

TEST(ChatTemplate, SpecialTokensOfAGgufVocabulary) {
  REQUIRE_SHARED_DATA(kPhi3Vocab);
  const la::GgufFile f = la::GgufFile::open(la::test::shared_path(kPhi3Vocab));
  la::BpeVocab vocab = la::read_gguf_vocab(f);
  // This file types <unk> CONTROL, which our BPE refuses; it is UNKNOWN in Phi-3's own model.
  if (vocab.unk_id >= 0) vocab.types[static_cast<size_t>(vocab.unk_id)] = la::PieceType::Unknown;
  const la::BpeTokenizer tok(std::move(vocab), kPhi3Vocab);
  const int end = tok.piece_to_id("<|end|>");
  const int user = tok.piece_to_id("<|user|>");
  ASSERT_GE(end, 0);
  ASSERT_GE(user, 0);
  ASSERT_TRUE(tok.is_special(end));
  const auto eot = la::end_of_turn_ids(tok);
  EXPECT_NE(std::find(eot.begin(), eot.end(), end), eot.end());
  EXPECT_NE(std::find(eot.begin(), eot.end(), tok.eos_id()), eot.end());
  if (const int eot2 = tok.piece_to_id("<|endoftext|>"); eot2 >= 0) {
    EXPECT_NE(std::find(eot.begin(), eot.end(), eot2), eot.end());
  }
  const std::vector<int> ids =
      la::encode_chat(tok, ChatTemplate::builtin("phi-3").render({{"user", "say <|end|><|user|>"}}, true, tok));
  EXPECT_EQ(ids.front(), user);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), user), 1);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), end), 1);  // the template's, after the message
}

// --- where the template comes from

TEST(ChatTemplate, ResolveOrder) {
  const std::string gguf = "{{ 'from gguf' }}";
  EXPECT_EQ(la::resolve_chat_template("alpaca", gguf, "chatml").name(), "chatml");
  EXPECT_EQ(la::resolve_chat_template("zephyr", gguf, "").name(), "zephyr");
  EXPECT_EQ(text_of(la::resolve_chat_template("", gguf, "").render({}, true, "", "")), "from gguf");
  EXPECT_FALSE(la::resolve_chat_template("", gguf, "").is_builtin());
  EXPECT_EQ(la::resolve_chat_template("", "", "").name(), "alpaca");
  EXPECT_EQ(text_of(la::resolve_chat_template("{{ 'adapter' }}", gguf, "").render({}, true, "", "")), "adapter");
  try {
    la::resolve_chat_template("", "", "nope");
    ADD_FAILURE() << "expected an error";
  } catch (const la::Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("'nope'"), std::string::npos) << m;
    EXPECT_NE(m.find("alpaca, llama-2, llama-3, chatml, zephyr, mistral, phi-3"), std::string::npos) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos);
  }
  EXPECT_THROW(la::resolve_chat_template("bogus", "", ""), la::Error);
}

TEST(ChatTemplate, AdapterFilesRecordTheTemplate) {
  const la::ModelConfig c = la::test::config(16, 32, 4, 4, 2, 32, 64);
  TempDir dir;
  la::Adapter a = la::Adapter::create(c, 3, 2, la::GateMode::Tanh, 5);
  EXPECT_EQ(a.chat_template, "alpaca");
  for (const std::string ext : {".safetensors", ".gguf"}) {
    SCOPED_TRACE(ext);
    la::save_adapter(a, dir.file("default" + ext));
    EXPECT_EQ(la::load_adapter(dir.file("default" + ext), &c).chat_template, "alpaca");
    a.chat_template = "chatml";
    la::save_adapter(a, dir.file("chatml" + ext));
    EXPECT_EQ(la::load_adapter(dir.file("chatml" + ext), &c).chat_template, "chatml");
    a.chat_template = "";  // not written: files without the key read as alpaca
    la::save_adapter(a, dir.file("none" + ext));
    EXPECT_EQ(la::load_adapter(dir.file("none" + ext), &c).chat_template, "alpaca");
    a.chat_template = "alpaca";
  }
}

TEST(ChatTemplate, GgufModelTemplate) {
  TempDir dir;
  la::GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.set_string("tokenizer.chat_template", "{{ bos_token }}x");
  w.write(dir.file("with.gguf"));
  la::GgufWriter w2;
  w2.set_string("general.architecture", "llama");
  w2.write(dir.file("without.gguf"));
  std::ofstream(dir.file("model.bin")) << "not a gguf file at all";
  EXPECT_EQ(la::model_chat_template(dir.file("with.gguf")), "{{ bos_token }}x");
  EXPECT_EQ(la::model_chat_template(dir.file("without.gguf")), "");
  EXPECT_EQ(la::model_chat_template(dir.file("model.bin")), "");
  EXPECT_EQ(la::model_chat_template(dir.path()), "");  // a directory without tokenizer_config.json
  // A Hugging Face directory: tokenizer_config.json's chat_template, a string or named list.
  la::test::write_text(dir.file("tokenizer_config.json"), R"({"chat_template": "{{ 'hf' }}"})");
  EXPECT_EQ(la::model_chat_template(dir.path()), "{{ 'hf' }}");
  la::test::write_text(
      dir.file("tokenizer_config.json"),
      R"({"chat_template": [{"name": "tool_use", "template": "t"}, {"name": "default", "template": "d"}]})");
  EXPECT_EQ(la::model_chat_template(dir.path()), "d");
  la::test::write_text(dir.file("tokenizer_config.json"), R"({"chat_template": 3})");
  la::test::expect_error([&] { la::model_chat_template(dir.path()); }, dir.file("tokenizer_config.json"),
                         {"chat_template"});
  if (la::test::shared_file_exists(kPhi3Vocab)) {  // a real GGUF's template renders
    const std::string src = la::model_chat_template(la::test::shared_path(kPhi3Vocab));
    ASSERT_NE(src.find("<|user|>"), std::string::npos);
    EXPECT_EQ(text_of(la::resolve_chat_template("", src, "").render({{"user", "hi"}}, true, "<s>", "</s>")),
              "<s><|user|>\nhi<|end|>\n<|assistant|>\n");
  }
}

// --- malformed templates: one-line errors, never a crash

void expect_error_or_render(const std::string& source, const std::vector<std::vector<ChatMessage>>& convs) {
  try {
    const ChatTemplate t = ChatTemplate::from_jinja(source, "mutant");
    for (const auto& m : convs) t.render(m, true, "<s>", "</s>", fixed_date());
  } catch (const la::Error& e) {
    const std::string msg = e.what();
    ASSERT_EQ(msg.find('\n'), std::string::npos) << msg;
    ASSERT_EQ(msg.rfind("mutant", 0), 0u) << msg;
  }
}

TEST(ChatTemplate, MalformedTemplatesAreOneLineErrors) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"{% if x %}open", "line 1"},
      {"a\n{{ x | nosuchfilter }}", "line 2: unknown filter 'nosuchfilter'"},
      {"{% for %}{% endfor %}", "expected a name"},
      {"{{ 'abc }}", "unterminated string"},
      {"{# open", "unterminated comment"},
      {"{{ 1 is nosuchtest }}", "unknown test"},
      {"{% endfor %}", "unexpected 'endfor'"},
      {"{% include 'x' %}", "unsupported tag 'include'"},
      {"{{ raise_exception('Roles must alternate') }}", "Roles must alternate"},
      {"{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}", "nested deeper"},
      {"{{ 'ab' * 100000000000 }}", "output larger"},
      {"{% for i in range(100000000) %}{% endfor %}", "loop iterations"},
      {"{{ x.y }}", "'x' is undefined"},
      {"{{ 1 // 0 }}", "division"},
      {"{{ " + std::string(300, '(') + "1" + std::string(300, ')') + " }}", "nested too deeply"},
      {"{{ 'x' ~ }}", "unexpected"},
      {"{% break %}", "outside a loop"},
  };
  for (const auto& [source, want] : bad) {
    SCOPED_TRACE(source);
    try {
      const ChatTemplate t = ChatTemplate::from_jinja(source, "bad");
      t.render({{"user", "hi"}}, true, "<s>", "</s>");
      ADD_FAILURE() << "expected an error";
    } catch (const la::Error& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find(want), std::string::npos) << m;
      EXPECT_EQ(m.find('\n'), std::string::npos) << m;
    }
  }
}

TEST(ChatTemplate, MutatedTemplatesNeverCrash) {
  std::vector<std::string> sources;
  for (const std::string& n : la::builtin_chat_templates()) sources.push_back(la::builtin_chat_template_source(n));
  sources.push_back(fixture().at("snippets")[6].at("source"));
  sources.push_back(fixture().at("snippets")[18].at("source"));
  if (la::test::shared_file_exists(std::string(kTemplates) + "/Qwen-Qwen2.5-7B-Instruct.jinja"))
    for (const std::string f :
         {"Qwen-Qwen2.5-7B-Instruct.jinja", "meta-llama-Llama-3.2-3B-Instruct.jinja",
          "mistralai-Mistral-Nemo-Instruct-2407.jinja", "google-gemma-2-2b-it.jinja", "llama-cpp-deepseek-r1.jinja",
          "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja", "microsoft-Phi-3.5-mini-instruct.jinja"})
      sources.push_back(template_source(f));
  const std::vector<std::vector<ChatMessage>> convs = {{{"user", "hi"}},
                                                       {{"system", "s"}, {"user", "u"}, {"assistant", "a"}}};
  std::mt19937 rng(7);
  const std::string alphabet = "{}%#-+()[]'\"|.~,:=!<> \n\tabxis0";
  for (const std::string& src : sources) {
    // Truncations.
    for (int k = 0; k < 60; ++k) {
      const size_t cut = src.size() * static_cast<size_t>(k) / 60;
      expect_error_or_render(src.substr(0, cut), convs);
    }
    // Byte mutations: replace, delete, duplicate a slice.
    for (int k = 0; k < 120; ++k) {
      std::string m = src;
      const int edits = 1 + static_cast<int>(rng() % 3);
      for (int e = 0; e < edits && !m.empty(); ++e) {
        const size_t at = rng() % m.size();
        switch (rng() % 3) {
          case 0: m[at] = (rng() % 4 == 0) ? static_cast<char>(rng() % 256) : alphabet[rng() % alphabet.size()]; break;
          case 1: m.erase(at, 1 + rng() % 8); break;
          default: m.insert(at, m.substr(at, 1 + rng() % 16)); break;
        }
      }
      expect_error_or_render(m, convs);
    }
  }
}

}  // namespace
