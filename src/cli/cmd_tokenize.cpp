// tokenize: the ids a model's tokenizer gives a text (SPEC §10), to compare with other tools.
#include <fmt/format.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "la/chat/chat_template.h"
#include "la/core/error.h"
#include "la/core/mapped_file.h"

namespace la::cli {

void register_tokenize(CLI::App& app) {
  auto* cmd = app.add_subcommand("tokenize", "Print the token ids of a text (the model's tokenizer, or --tokenizer)");
  struct Args {
    ModelArgs model;
    std::string text, file;
    bool json = false, bos = false, parse_special = false;
  };
  auto a = std::make_shared<Args>();
  a->model.add_to(cmd, true, false);
  auto* text = cmd->add_option("--text", a->text, "The text");
  auto* file = cmd->add_option("-f,--file", a->file, "Read the text from this file (bytes as they are)");
  text->excludes(file);
  cmd->add_flag("--json", a->json, "Print {\"ids\": [...]} instead of the ids separated by spaces");
  cmd->add_flag("--bos", a->bos, "Put BOS first, as generation does (where the vocabulary uses one)");
  cmd->add_flag("--parse-special", a->parse_special,
                "Read special pieces (\"<|eot_id|>\", \"</s>\") in the text as their ids, as Hugging Face's encode "
                "does; by default they are ordinary text, as every prompt and message is here");
  cmd->callback([a, text] {
    if (a->model.model.empty() && a->model.tokenizer.empty())
      throw CLI::ValidationError("tokenize", "give --model or --tokenizer");
    if (text->count() == 0 && a->file.empty()) throw CLI::ValidationError("tokenize", "give --text or --file");
    std::unique_ptr<Tokenizer> tok;
    if (!a->model.model.empty()) {
      tok = load_model_and_tokenizer(a->model).tokenizer;
    } else {
      tok = load_tokenizer(a->model.tokenizer);
    }
    const std::string input = a->file.empty() ? a->text : read_file(a->file);
    std::vector<int> ids;
    if (a->parse_special) {
      if (a->bos && tok->bos_id() >= 0) ids.push_back(tok->bos_id());
      const std::vector<int> rest = encode_chat(*tok, {{input, true}});  // all of it as template text
      ids.insert(ids.end(), rest.begin(), rest.end());
    } else {
      ids = tok->encode(input, a->bos, false);
    }
    std::string out;
    if (a->json) {
      out = nlohmann::json{{"ids", ids}}.dump();
    } else {
      out = fmt::format("{}", fmt::join(ids, " "));
    }
    out += '\n';
    std::fwrite(out.data(), 1, out.size(), stdout);
  });
}

}  // namespace la::cli
