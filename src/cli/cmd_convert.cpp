// `convert`: any model we read -> GGUF (F32, F16, BF16, Q8_0, Q4_0 matrices) with its vocabulary;
// an adapter -> GGUF (llama_adapter.* keys) or back; a CLIP image tower -> CLIP GGUF (SPEC §8).
#include <cstdio>
#include <cstring>

#include "commands.h"
#include "la/core/error.h"
#include "la/core/paths.h"
#include "la/io/adapter_file.h"
#include "la/io/clip_file.h"
#include "la/io/gguf_model.h"
#include "la/io/loader.h"
#include "la/io/model_chat_template.h"

namespace la::cli {

void register_convert(CLI::App& app) {
  auto* cmd = app.add_subcommand("convert", "Convert a model to GGUF (F32/F16/BF16/Q8_0/Q4_0), or an adapter to GGUF");
  struct Args {
    ModelArgs model;
    std::string adapter, clip, out, type = "f16";
  };
  auto a = std::make_shared<Args>();
  auto* m = a->model.add_to(cmd, true, false);
  auto* ad =
      cmd->add_option("--adapter", a->adapter, "Convert this adapter (.safetensors <-> .gguf) instead of a model");
  m->excludes(ad);
  auto* cl = cmd->add_option("--clip", a->clip,
                             "Convert this CLIP image tower (Hugging Face directory or CLIP GGUF) to a CLIP GGUF "
                             "(f32, f16 or q8_0 matrices; llama.cpp's CLIP tensor names)");
  cl->excludes(m);
  cl->excludes(ad);
  cmd->add_option("-o,--out", a->out, "Output file (.gguf, or .safetensors for an adapter)")->required();
  cmd->add_option("--type", a->type, "Matrix type: f32, f16, bf16, q8_0, q4_0 (norms stay f32)")
      ->default_val("f16")
      ->check(CLI::IsMember({"f32", "f16", "bf16", "q8_0", "q4_0", "F32", "F16", "BF16", "Q8_0", "Q4_0"}));
  cmd->callback([a] {
    check_output_path("--out", a->out);
    check_outputs_distinct({{"--out", a->out}},
                           input_files(a->model, {{"--adapter", a->adapter}, {"--clip", a->clip}}));
    if (!a->clip.empty()) {
      DType type;
      if (!parse_dtype(a->type, &type)) fail("unknown type '{}'", a->type);
      if (!a->out.ends_with(".gguf")) fail("--out {}: a CLIP is written as .gguf", a->out);
      const auto clip = load_clip(a->clip);
      save_clip_gguf(*clip, type, a->out);
      std::fprintf(stderr, "wrote %s (CLIP %s, %s matrices)\n", a->out.c_str(), clip->config.shape_string().c_str(),
                   dtype_name(type));
      return;
    }
    if (!a->adapter.empty()) {
      Adapter ad = load_adapter(a->adapter);  // no model here: the file's own shape
      save_adapter(ad, a->out);               // the extension of --out picks the format
      std::fprintf(stderr, "wrote %s (%s)\n", a->out.c_str(), ad.shape_string().c_str());
      return;
    }
    if (a->model.model.empty()) throw CLI::ValidationError("convert", "give --model, --adapter or --clip");
    DType type;
    if (!parse_dtype(a->type, &type)) fail("unknown type '{}'", a->type);
    LoadedModel lm = load_model_and_tokenizer(a->model);
    BpeVocab vocab = gguf_vocabulary(*lm.tokenizer, a->model.tokenizer);
    vocab.chat_template = model_chat_template(a->model.model);  // travels with the model
    // Streamed: one converted matrix in memory at a time, the input stays a mapping (Hugging Face
    // q/k rows are moved to GGUF's Meta layout on the way). Rows that do not fill whole blocks
    // (e.g. stories260K's hidden size 172) stay F16.
    convert_to_gguf(*lm.weights, type, DType::F16, &vocab, a->out, a->model.model);
    std::fprintf(stderr, "wrote %s (%s, %s matrices, %zu-piece vocabulary)\n", a->out.c_str(),
                 lm.weights->config.shape_string().c_str(), dtype_name(type), vocab.pieces.size());
  });
}

}  // namespace la::cli
