// libFuzzer target for the adapter reader: la::load_adapter on safetensors and GGUF adapters (it
// tells them apart by content), without a model config and with one. Not part of the CMake
// build: see tests/fuzz/README.md for the command line. The deterministic counterpart is
// tests/test_fuzz_inputs.cpp (AdapterSafetensorsMutants, AdapterGgufMutants).
//
// Every input must load an adapter whose shape and values are sane (and, with the config, fit
// it), or throw la::Error naming the file once on one line; anything else aborts.
#include <cmath>

#include "fuzz_file.h"
#include "la/io/adapter_file.h"

namespace {

// The model of tests/test_fuzz_inputs.cpp's seeds.
la::ModelConfig model() {
  la::ModelConfig c;
  c.dim = 16;
  c.hidden_dim = 32;
  c.n_layers = 3;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.vocab_size = 64;
  c.max_seq_len = 64;
  return c;
}

volatile float g_sink;

void check_adapter(const la::Adapter& a, const la::ModelConfig* c) {
  using la_fuzz::check;
  check(a.len >= 1 && a.len <= 4096, "adapter length out of range");
  check(a.n_layers >= 1 && a.n_layers <= a.model_layers && a.model_layers <= 4096, "adapter layers out of range");
  check(a.dim >= 1 && a.n_heads >= 1, "adapter dim / heads out of range");
  check(a.query().size() == static_cast<size_t>(a.n_layers * a.len * a.dim), "query size");
  check(a.gate().size() == static_cast<size_t>(a.n_layers * a.n_heads), "gate size");
  if (c) check(a.dim == c->dim && a.n_heads == c->n_heads && a.model_layers == c->n_layers, "shape not the model's");
  float sum = 0;
  for (float v : a.query()) {
    check(std::isfinite(v), "non-finite prompt value");
    sum += v;
  }
  for (float v : a.gate()) {
    check(std::isfinite(v), "non-finite gate");
    sum += v;
  }
  g_sink = sum;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = la_fuzz::write_input(data, size);
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  static const la::ModelConfig c = model();
  try {
    check_adapter(la::load_adapter(path), nullptr);
  } catch (const la::Error& e) {
    la_fuzz::check_error(e, path, input);
  }
  try {
    check_adapter(la::load_adapter(path, &c), &c);
  } catch (const la::Error& e) {
    la_fuzz::check_error(e, path, input);
  }
  return 0;
}
