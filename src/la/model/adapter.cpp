#include "la/model/adapter.h"

#include <cmath>

#include "la/core/error.h"
#include "la/core/rng.h"

namespace la {

const char* gate_mode_name(GateMode m) {
  return m == GateMode::Tanh ? "tanh" : "identity";
}

GateMode parse_gate_mode(const std::string& s) {
  if (s == "tanh") return GateMode::Tanh;
  if (s == "identity") return GateMode::Identity;
  fail("unknown gate mode '{}' (expected tanh or identity)", s);
}

void fill_normal(float* out, int64_t n, uint64_t seed) {
  SplitMix64 rng{seed};
  for (int64_t i = 0; i < n; i += 2) {
    // u1 in (0,1], u2 in [0,1)
    const double u1 = (static_cast<double>(rng.next() >> 11) + 1.0) * 0x1.0p-53;
    const double u2 = static_cast<double>(rng.next() >> 11) * 0x1.0p-53;
    const double r = std::sqrt(-2.0 * std::log(u1));
    out[i] = static_cast<float>(r * std::cos(2.0 * M_PI * u2));
    if (i + 1 < n) out[i + 1] = static_cast<float>(r * std::sin(2.0 * M_PI * u2));
  }
}

void fill_uniform(float* out, int64_t n, float bound, uint64_t seed) {
  SplitMix64 rng{seed};
  for (int64_t i = 0; i < n; ++i)
    out[i] = static_cast<float>((static_cast<double>(rng.next() >> 11) * 0x1.0p-53 * 2.0 - 1.0) * bound);
}

Adapter Adapter::create(const ModelConfig& c, int64_t len, int64_t layers, GateMode mode, uint64_t seed) {
  if (len <= 0 || len > 4096) fail("adapter length (K) must be in 1..4096, got {}", len);
  if (layers <= 0 || layers > c.n_layers)
    fail("adapter layers (L) must be in 1..{} for this model ({}), got {}", c.n_layers, c.shape_string(), layers);
  Adapter a;
  a.len = len;
  a.n_layers = layers;
  a.gate_mode = mode;
  a.dim = c.dim;
  a.n_heads = c.n_heads;
  a.model_layers = c.n_layers;
  a.allocate();
  fill_normal(a.query().data(), static_cast<int64_t>(a.query().size()), seed);
  return a;
}

ParamTable Adapter::table_for(int64_t len, int64_t n_layers, int64_t dim, int64_t n_heads, int64_t model_layers,
                              const VisualSpec& visual) {
  ParamTable t;
  t.add("adapter_query", {n_layers * len, dim}, "adapter_query.weight");
  t.add("gate", {n_layers, n_heads}, "layers.{}.attention.gate", model_layers - n_layers);
  if (visual.enabled()) {
    t.add("visual_proj.fc1.weight", {visual.width, visual.in}, "visual_proj.fc1.weight");
    t.add("visual_proj.fc1.bias", {visual.width}, "visual_proj.fc1.bias");
    t.add("visual_proj.fc2.weight", {dim, visual.width}, "visual_proj.fc2.weight");
    t.add("visual_proj.fc2.bias", {dim}, "visual_proj.fc2.bias");
  }
  return t;
}

void Adapter::allocate() {
  params = ParamSet(table_for(len, n_layers, dim, n_heads, model_layers, visual));
}

void Adapter::add_visual(const VisualSpec& v, uint64_t seed) {
  if (v.in <= 0 || v.in > (int64_t{1} << 20)) fail("visual projection: input length {} is out of range", v.in);
  if (v.width <= 0 || v.width > 65536) fail("visual projection: width {} is out of range (1..65536)", v.width);
  const ParamSet old = params;
  visual = v;
  allocate();
  for (const ParamTensor& t : old.table().tensors()) {
    const auto src = old.slice(t);
    std::copy(src.begin(), src.end(), params[t.name].begin());
  }
  const float bound = 1.0f / std::sqrt(static_cast<float>(v.in));
  auto w1 = params["visual_proj.fc1.weight"], b1 = params["visual_proj.fc1.bias"];
  fill_uniform(w1.data(), static_cast<int64_t>(w1.size()), bound, seed ^ 0x76697375616c31ULL);
  fill_uniform(b1.data(), static_cast<int64_t>(b1.size()), bound, seed ^ 0x76697375616c62ULL);
}

float Adapter::gamma(int64_t layer, int64_t head) const {
  const float g = gate()[static_cast<size_t>((layer - first_layer()) * n_heads + head)];
  return gate_mode == GateMode::Tanh ? std::tanh(g) : g;
}

float Adapter::gamma_grad_scale(int64_t layer, int64_t head) const {
  if (gate_mode == GateMode::Identity) return 1.0f;
  const float t = std::tanh(gate()[static_cast<size_t>((layer - first_layer()) * n_heads + head)]);
  return 1.0f - t * t;
}

std::string Adapter::shape_string() const {
  std::string s = fmt::format("K={} L={} dim={} heads={} layers={}", len, n_layers, dim, n_heads, model_layers);
  if (visual.enabled()) s += fmt::format(" visual W={} in={}", visual.width, visual.in);
  return s;
}

void Adapter::check_compatible(const ModelConfig& c, const std::string& source) const {
  if (dim != c.dim || n_heads != c.n_heads || model_layers != c.n_layers || n_layers > c.n_layers)
    fail("{}: adapter shape ({}) does not match the model ({})", source, shape_string(), c.shape_string());
}

int64_t adapter_parameter_count(const ModelConfig& c, int64_t len, int64_t layers) {
  return layers * len * c.dim + layers * c.n_heads;
}

}  // namespace la
