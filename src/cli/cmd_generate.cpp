#include <algorithm>
#include <cstdio>

#include "commands.h"
#include "la/core/error.h"
#include "la/core/memory.h"
#include "la/data/alpaca.h"
#include "la/io/adapter_file.h"
#include "la/model/inference.h"
#include "la/sample/generate.h"
#include "validators.h"

namespace la::cli {

namespace {

struct GenerateArgs {
  ModelArgs model;
  std::string adapter, prompt, instruction, input, gate_mode;
  bool has_prompt = false;
  SamplerOptions sampling;
  int max_new_tokens = 512;
  int64_t context = 0;
  bool quiet = false;
  ClipArgs clip;
  std::string image;
};

void run_generate(const GenerateArgs& a) {
  LoadedModel lm = load_model_for_inference(a.model);
  const ModelConfig& c = lm.weights->config;
  const Tokenizer& tok = *lm.tokenizer;
  Adapter adapter;
  if (!a.adapter.empty()) {
    adapter = load_adapter(a.adapter, &c);
    if (!a.gate_mode.empty()) adapter.gate_mode = parse_gate_mode(a.gate_mode);
  }
  std::string text;
  bool echo = false;
  if (!a.instruction.empty()) {
    text = alpaca_prompt(a.instruction, a.input);
  } else {
    text = a.prompt;
    echo = true;  // like llama2.c: a plain prompt is printed before its continuation
  }
  std::vector<int> ids = tok.encode(text, true, false);
  // The KV cache is allocated up front: by default the model's context, capped at 4096 tokens so
  // a model advertising 128k does not reserve tens of GB (--context asks for more). When the
  // prompt and the tokens asked for need more than the model records (llama.cpp's converter
  // records 128 for stories260K), the cache is sized to what is asked, as llama.cpp does, with a
  // warning that the model was trained on a shorter context.
  int64_t context = a.context > 0 ? a.context : std::min<int64_t>(c.max_seq_len, 4096);
  const int64_t wanted = static_cast<int64_t>(ids.size()) + a.max_new_tokens;
  if (a.context <= 0 && wanted > context) context = wanted;
  if (context > c.max_seq_len)
    std::fprintf(stderr,
                 "warning: a context of %lld tokens is longer than the %lld the model was trained on; text past "
                 "that may degrade\n",
                 static_cast<long long>(context), static_cast<long long>(c.max_seq_len));
  // The cache must fit in memory: say so up front instead of failing (or swapping) later.
  const double kv_bytes = 2.0 * static_cast<double>(c.n_layers) * static_cast<double>(context) *
                          static_cast<double>(c.kv_dim()) * sizeof(float);
  if (const size_t avail = available_memory_bytes(); avail != 0 && kv_bytes > static_cast<double>(avail))
    fail("--context: a KV cache of {} tokens needs {:.1f} GiB, more than the {:.1f} GiB of memory available", context,
         kv_bytes / (1 << 30), static_cast<double>(avail) / (1 << 30));
  InferenceModel model(*lm.weights, context);
  if (!a.adapter.empty()) model.set_adapter(&adapter);
  if (!a.image.empty()) {  // SPEC §8: the image's features projected into the adapter's prompts
    if (!a.clip.given()) fail("--image needs --clip (the CLIP image tower the adapter was trained with)");
    if (a.adapter.empty()) fail("--image needs a multi-modal --adapter");
    LoadedClip clip = load_clip_args(a.clip);
    check_adapter_clip(adapter, a.adapter, clip);
    model.set_image(clip.store->features(a.image).data());
  } else if (a.clip.given()) {
    fail("--clip is used with --image");
  }
  Sampler sampler(a.sampling);
  if (echo) {
    StreamDecoder dec(tok);
    for (int id : ids) std::fputs(dec.push(id).c_str(), stdout);
  }
  GenerationStats st;
  generate(
      model, tok, ids, sampler, a.max_new_tokens,
      [](const std::string& s) {
        std::fputs(s.c_str(), stdout);
        std::fflush(stdout);
      },
      &st);
  std::fputs("\n", stdout);
  // Not silenced by --quiet: the text was cut short, which the user must not mistake for EOS.
  if (st.stopped_at_context)
    std::fprintf(stderr,
                 "warning: generation stopped after %lld of %d new tokens: the context of %lld tokens (KV cache) is "
                 "full; raise it with --context\n",
                 static_cast<long long>(st.generated), a.max_new_tokens, static_cast<long long>(context));
  if (!a.quiet)
    std::fprintf(stderr, "[prompt %lld tokens, %.1f tok/s | generated %lld tokens, %.1f tok/s]\n",
                 static_cast<long long>(st.prompt_tokens), static_cast<double>(st.prompt_tokens) / st.prefill_s,
                 static_cast<long long>(st.generated),
                 st.generated > 0 ? static_cast<double>(st.generated) / st.decode_s : 0.0);
}

}  // namespace

void register_generate(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "Generate text from a prompt or an Alpaca-style instruction");
  auto a = std::make_shared<GenerateArgs>();
  a->model.add_to(cmd);
  cmd->add_option("-a,--adapter", a->adapter, "LLaMA-Adapter weights (.safetensors)");
  auto* p = cmd->add_option("-p,--prompt", a->prompt, "Raw prompt text (printed, then continued)");
  auto* ins = cmd->add_option("-i,--instruction", a->instruction, "Instruction, wrapped in the Alpaca template");
  cmd->add_option("--input", a->input, "Optional input for --instruction")->needs(ins);
  p->excludes(ins);
  add_sampling_flags(cmd, a->sampling);
  cmd->add_option("-n,--max-new-tokens", a->max_new_tokens, "Most tokens to generate")
      ->default_val(512)
      ->check(integer_in(0, 1 << 24));
  cmd->add_option("--gate-mode", a->gate_mode, "Override the adapter's gate mode: tanh or identity")
      ->check(CLI::IsMember({"tanh", "identity"}));
  cmd->add_option("--context", a->context, "Context length / KV cache size (default: the model's, at most 4096)")
      ->check(integer_in(1, 1 << 24));
  cmd->add_flag("-q,--quiet", a->quiet, "Do not print speed statistics to stderr");
  a->clip.add_to(cmd);
  cmd->add_option("--image", a->image, "An image for a multi-modal adapter (JPEG or PNG; with --clip)");
  cmd->callback([a, p, ins] {
    if (p->count() == 0 && ins->count() == 0) throw CLI::ValidationError("generate", "give --prompt or --instruction");
    run_generate(*a);
  });
}

}  // namespace la::cli
