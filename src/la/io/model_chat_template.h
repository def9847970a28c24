// The chat template a model carries (SPEC §9: used when neither --template nor the adapter names
// one): a GGUF's tokenizer.chat_template, or a Hugging Face directory's tokenizer_config.json
// "chat_template".
#pragma once
#include <string>

namespace la {

// The template of the model at `model_path`; "" when it has none (a llama2.c checkpoint, a
// directory without tokenizer_config.json or without the key). A damaged GGUF or
// tokenizer_config.json is la::Error naming the file, as loading it would be. Of a list of named
// templates (tokenizer_config.json may hold [{"name", "template"}, ...]) the one named "default".
std::string model_chat_template(const std::string& model_path);

}  // namespace la
