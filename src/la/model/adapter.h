// LLaMA-Adapter v1 parameters: K learnable prompt tokens for each of the top L layers and one
// zero-initialised gate per query head of those layers (SPEC §2).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "la/model/config.h"
#include "la/model/params.h"

namespace la {

enum class GateMode { Tanh, Identity };  // gamma = tanh(g) (training default) or gamma = g
const char* gate_mode_name(GateMode m);
GateMode parse_gate_mode(const std::string& s);  // throws la::Error for anything else

// The multi-modal adapter's visual projection (SPEC §8) and the CLIP it belongs to:
// I_p = fc2(gelu(fc1(features))), fc1 [width, in], fc2 [dim, width]. in = 0: a text-only adapter.
struct VisualSpec {
  int64_t in = 0;               // M*E: the multi-scale features' length
  int64_t width = 0;            // W, the projection's hidden width
  std::string clip_layers;      // the CLIP blocks the features come from, "8,16,24"
  int64_t clip_embed_dim = 0;   // E
  int64_t clip_image_size = 0;  // the CLIP's input size
  bool enabled() const { return in > 0; }
  bool operator==(const VisualSpec&) const = default;
};

struct Adapter {
  int64_t len = 0;       // K: prompt tokens per adapted layer
  int64_t n_layers = 0;  // L: adapted layers, always the top ones
  GateMode gate_mode = GateMode::Tanh;
  // Shape of the model it belongs to.
  int64_t dim = 0, n_heads = 0, model_layers = 0;

  // The trainable tensors (model/params.h), named as the adapter file names them:
  //   "adapter_query" [L*K, dim]  (file: adapter_query.weight); rows [i*K, (i+1)*K) -> layer N-L+i
  //   "gate"          [L, H]      (file: layers.{l}.attention.gate, one [H] per adapted layer l)
  // and, for a multi-modal adapter (visual.enabled()), under their file keys:
  //   "visual_proj.fc1.weight" [W, M*E], "visual_proj.fc1.bias" [W],
  //   "visual_proj.fc2.weight" [dim, W], "visual_proj.fc2.bias" [dim]
  ParamSet params;
  VisualSpec visual;
  // The chat template it was trained with (SPEC §9: serving uses it first): a built-in name
  // (chat/chat_template.h). Fine-tuning writes Alpaca prompts, hence the default; files written
  // before the key existed read as "alpaca" too.
  std::string chat_template = "alpaca";
  std::span<float> query() { return params["adapter_query"]; }
  std::span<const float> query() const { return params["adapter_query"]; }
  std::span<float> gate() { return params["gate"]; }
  std::span<const float> gate() const { return params["gate"]; }

  // N(0,1) prompts from `seed`, gates 0. Throws when K or L do not fit the model.
  static Adapter create(const ModelConfig& c, int64_t len, int64_t layers, GateMode mode, uint64_t seed);
  // Makes it multi-modal: adds the visual projection (fc1 as PyTorch's Linear initialises it,
  // uniform within 1/sqrt(in), seeded; fc2 zero, so it adds nothing yet), keeping the prompts and
  // gates. Throws for a width or input length out of range.
  void add_visual(const VisualSpec& v, uint64_t seed);
  // The table for a shape (every value 0); K, L, dim, heads and model layers must be set.
  static ParamTable table_for(int64_t len, int64_t n_layers, int64_t dim, int64_t n_heads, int64_t model_layers,
                              const VisualSpec& visual = {});
  // Sets the shape fields and a zeroed parameter buffer laid out by table_for.
  void allocate();

  int64_t first_layer() const { return model_layers - n_layers; }
  bool adapts(int64_t layer) const { return n_layers > 0 && layer >= first_layer(); }
  const float* prompt(int64_t layer) const { return query().data() + (layer - first_layer()) * len * dim; }
  float gamma(int64_t layer, int64_t head) const;             // gate after its activation
  float gamma_grad_scale(int64_t layer, int64_t head) const;  // d gamma / d g
  int64_t parameter_count() const { return static_cast<int64_t>(params.size()); }
  std::string shape_string() const;  // "K=10 L=30 dim=4096 heads=32 layers=32" (+ " visual W=128 in=2304")

  // Throws la::Error naming `source` and both shapes when the adapter does not fit the model.
  void check_compatible(const ModelConfig& c, const std::string& source) const;
};

// Trainable parameters for a model shape: L*K*dim + L*H.
int64_t adapter_parameter_count(const ModelConfig& c, int64_t len, int64_t layers);

// Deterministic N(0,1) samples (Box-Muller over splitmix64), identical on every platform.
void fill_normal(float* out, int64_t n, uint64_t seed);
// Deterministic uniform samples in [-bound, bound) (splitmix64).
void fill_uniform(float* out, int64_t n, float bound, uint64_t seed);

}  // namespace la
