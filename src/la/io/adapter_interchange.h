// Other tools' LLaMA-Adapter files (SPEC §10), read into and written from our Adapter. Only
// io/adapter_file.cpp includes this: load_adapter and save_adapter_as are the entrances.
//
//   official v1   adapter_query.weight [L*K, dim]; layers.{i}.attention.gate [1, H, 1, 1] or [1] for
//                 EVERY layer (the lower, untrained ones too, often fp16); no metadata, K = 10; in a
//                 PyTorch .pth (torch.save) or the same keys in safetensors; gamma = g as the
//                 official inference applies it
//   PEFT          a directory: adapter_config.json (peft_type ADAPTION_PROMPT, adapter_len,
//                 adapter_layers, target_modules "self_attn") + adapter_model.safetensors with
//                 base_model.model.model.layers.{i}.self_attn.adaption_prompt [1, K, dim] and
//                 ...adaption_gate [1] for the top adapter_layers layers; one gate per layer,
//                 gamma = g
//   litgpt        a .pth checkpoint ({"model": state_dict}, or the state dict itself) with
//                 transformer.h.{i}.attn.adapter_wte.weight [K, dim] and ...attn.gating_factor
//                 [1, 1, H, 1] (lit-gpt before July 2023: [1, H, 1, 1]) for every layer from
//                 adapter_start_layer up; gamma = g
//
// None of them has a tanh gate: writing a tanh-mode adapter stores gamma = tanh(g) (the float our
// forward computes), so the file evaluates to the same bits in gate mode identity. None of them
// holds the multi-modal projection.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "la/formats/safetensors.h"
#include "la/model/adapter.h"
#include "la/tensor/dtype.h"

namespace la {

class PthFile;

// One tensor of an adapter file, whichever container holds it (safetensors or a PyTorch .pth):
// the readers of the official, PEFT and litgpt layouts see only these.
struct StoredTensor {
  std::string name;
  std::string type;       // the container's name for its element type, for messages
  bool is_float = false;  // F32, F16 or BF16: `dtype` says which
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;  // in elements; empty: row-major
  const void* data = nullptr;    // the first element; no alignment assumed
  int64_t numel() const;
};

struct StoredTensors {
  std::string path;
  std::vector<StoredTensor> tensors;
  std::map<std::string, std::string> metadata;  // safetensors' __metadata__; empty for .pth
  const StoredTensor* find(std::string_view name) const;
};

StoredTensors stored_tensors(const SafetensorsFile& f);
StoredTensors stored_tensors(const PthFile& f);

// The values as f32, in row-major order (exact for F16/BF16); la::Error naming `path` and the
// tensor for any other type.
std::vector<float> stored_values(const StoredTensor& t, const std::string& path);

// An integer of safetensors metadata, -1 when absent; la::Error naming `path` when it is not a
// non-negative integer.
int64_t metadata_int(const std::map<std::string, std::string>& m, const std::string& key, const std::string& path);

// Readers. `model`, when given, supplies what the file does not say (the layer count, the heads a
// scalar gate is for) and is checked against what it does; *heads_known (when non-null) is set
// false where the head count came from neither the file nor the model (a scalar gate read alone).
// Our own safetensors files (with metadata) are read by the official reader too: same keys.
Adapter read_official_layout(const StoredTensors& s, const ModelConfig* model, bool* heads_known);
Adapter read_litgpt_layout(const StoredTensors& s, const ModelConfig* model);
Adapter read_peft_directory(const std::string& dir, const ModelConfig* model, bool* heads_known);

// Which reader a .pth or safetensors file's tensor names call for.
bool has_litgpt_keys(const StoredTensors& s);
bool has_peft_keys(const StoredTensors& s);

// Writers. Each refuses (la::Error naming `path` and why) what its format cannot hold.
// Official: a .pth, or the same keys in safetensors when `path` ends in .safetensors.
void save_official_adapter(const Adapter& a, const std::string& path);
// PEFT: `dir` is created when missing (its parent must exist); its two files are written
// atomically.
void save_peft_adapter(const Adapter& a, const std::string& dir);
// litgpt: a .pth holding {"model": state_dict}, as litgpt's finetune/adapter.py saves it.
void save_litgpt_adapter(const Adapter& a, const std::string& path);

// litgpt's adapter (litgpt/adapter.py since its [Q; K; V] qkv layout, 2024) reads the prompt's
// qkv product as if it were interleaved per key/value group, so its prompt keys and values come
// from other rows of the fused matrix than Wk/Wv whenever the model has more than one key/value
// head: not LLaMA-Adapter's math, and not what we compute. Throws la::Error naming `source` then.
void check_litgpt_model(const ModelConfig& c, const std::string& source);

}  // namespace la
