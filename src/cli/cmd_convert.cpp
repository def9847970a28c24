// `convert`: any model we read -> GGUF (F32, F16, BF16, Q8_0, Q4_0 matrices) with its vocabulary;
// an adapter in any layout we read -> ours (safetensors, GGUF) or the official release's, PEFT's or
// litgpt's (SPEC §10); a CLIP image tower -> CLIP GGUF (SPEC §8).
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>

#include "commands.h"
#include "la/core/error.h"
#include "la/core/paths.h"
#include "la/io/adapter_file.h"
#include "la/io/clip_file.h"
#include "la/io/gguf_model.h"
#include "la/io/loader.h"
#include "la/io/model_chat_template.h"

namespace la::cli {

namespace {

// PEFT's output is a folder: it may exist (its two files are replaced) or be created in a folder
// that exists; a file of that name is refused.
void check_output_folder(const std::string& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) fail("--out {}: exists and is not a folder (a PEFT adapter is a folder)", dir);
    if (::access(dir.c_str(), W_OK | X_OK) != 0) fail("--out {}: the folder is not writable", dir);
    return;
  }
  const std::filesystem::path p(dir);
  const std::string parent = p.has_parent_path() ? p.parent_path().string() : std::string(".");
  if (::stat(parent.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    fail("--out {}: the folder {} does not exist", dir, parent);
}

template <class Args>
void convert_adapter(const Args& a) {
  std::unique_ptr<ModelWeights> base;  // only its shape is used
  if (!a.model.model.empty()) base = load_model(a.model.model);
  const ModelConfig* model = base ? &base->config : nullptr;
  const AdapterFormat to = !a.to.empty()              ? parse_adapter_format(a.to)
                           : a.out.ends_with(".gguf") ? AdapterFormat::Gguf
                                                      : AdapterFormat::Ours;
  if (to == AdapterFormat::Peft)
    check_output_folder(a.out);
  else
    check_output_path("--out", a.out);
  check_outputs_distinct({{"--out", a.out}}, input_files(a.model, {{"--adapter", a.adapter}}));
  AdapterSource from;
  Adapter ad = load_adapter(a.adapter, model, &from);
  // litgpt's forward is LLaMA-Adapter's only on some models (io/adapter_interchange.h): without
  // the model we cannot tell whether the numbers mean the same on both sides.
  if (!model && (from.format == AdapterFormat::Litgpt || to == AdapterFormat::Litgpt))
    fail(
        "--adapter {}: converting {} litgpt needs --model (litgpt's adapter computes LLaMA-Adapter's attention on "
        "models with one key/value head only)",
        a.adapter, to == AdapterFormat::Litgpt ? "to" : "from");
  if (!model && !from.heads_known && to != AdapterFormat::Peft)
    fail("--adapter {}: its gates are one per layer and nothing says how many heads they apply to; give --model",
         a.adapter);
  const bool other_tool = to == AdapterFormat::Official || to == AdapterFormat::Peft || to == AdapterFormat::Litgpt;
  save_adapter_as(ad, to, a.out, model);
  std::fprintf(stderr, "wrote %s (%s from %s: %s)\n", a.out.c_str(), adapter_format_name(to),
               adapter_format_name(from.format), ad.shape_string().c_str());
  if (other_tool && ad.gate_mode == GateMode::Tanh)
    std::fprintf(stderr,
                 "note: %s gates have no tanh: the file holds tanh(g), which gives the same outputs (read back, its "
                 "gate mode is identity)\n",
                 adapter_format_name(to));
  if (to == AdapterFormat::Litgpt)
    std::fprintf(stderr, "note: litgpt reads it with adapter_prompt_length: %lld and adapter_start_layer: %lld\n",
                 static_cast<long long>(ad.len), static_cast<long long>(ad.first_layer()));
}

}  // namespace

void register_convert(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "convert", "Convert a model to GGUF (F32/F16/BF16/Q8_0/Q4_0), an adapter between formats, or a CLIP to GGUF");
  struct Args {
    ModelArgs model;
    std::string adapter, clip, out, type = "f16", to;
  };
  auto a = std::make_shared<Args>();
  auto* m = a->model.add_to(cmd, true, false);
  auto* ad = cmd->add_option("--adapter", a->adapter,
                             "Convert this adapter instead of a model: ours (.safetensors, .gguf), the official "
                             "release's .pth, a PEFT AdaptionPrompt folder or a litgpt .pth (with --model, only the "
                             "model's shape is used: it is checked, and gives one-per-layer gates their heads)");
  cmd->add_option("--to", a->to,
                  "With --adapter: safetensors or gguf (ours), official (.pth; .safetensors by the name of --out), "
                  "peft (a folder) or litgpt (.pth; needs --model); default: ours, by the extension of --out")
      ->check(CLI::IsMember({"safetensors", "gguf", "official", "peft", "litgpt"}))
      ->needs(ad);
  auto* cl = cmd->add_option("--clip", a->clip,
                             "Convert this CLIP image tower (Hugging Face directory or CLIP GGUF) to a CLIP GGUF "
                             "(f32, f16 or q8_0 matrices; llama.cpp's CLIP tensor names)");
  cl->excludes(m);
  cl->excludes(ad);
  cmd->add_option("-o,--out", a->out, "Output file (.gguf; an adapter: as --to says)")->required();
  cmd->add_option("--type", a->type, "Matrix type: f32, f16, bf16, q8_0, q4_0 (norms stay f32)")
      ->default_val("f16")
      ->check(CLI::IsMember({"f32", "f16", "bf16", "q8_0", "q4_0", "F32", "F16", "BF16", "Q8_0", "Q4_0"}));
  cmd->callback([a] {
    if (!a->adapter.empty()) return convert_adapter(*a);
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
