// The chat template a GGUF model carries (SPEC §9: used when neither --template nor the adapter
// names one).
#pragma once
#include <string>

namespace la {

// `tokenizer.chat_template` of the GGUF file at `model_path`; "" when the model is not a GGUF
// file (a directory, a llama2.c checkpoint) or has no template. A damaged GGUF is la::Error
// naming the file, as loading it would be.
std::string gguf_chat_template(const std::string& model_path);

}  // namespace la
