// The adapter file (SPEC §5): safetensors, F32, official key names
//   adapter_query.weight        [L*K, dim]
//   layers.{i}.attention.gate   [H]  for each adapted layer i (reading also takes [1] and [1,H,1,1])
//   __metadata__: format=llama-adapter, version, adapter_len, adapter_layers, gate_mode, dim,
//                 n_layers, n_heads, template (the chat template, SPEC §9; absent: "alpaca")
// and for a multi-modal adapter (SPEC §8) visual_proj.fc1.{weight [W, M*E], bias [W]},
// visual_proj.fc2.{weight [dim, W], bias [dim]}; metadata visual=clip, clip_layers ("8,16,24"),
// clip_embed_dim, clip_image_size.
#pragma once
#include <string>

#include "la/formats/safetensors.h"
#include "la/model/adapter.h"

namespace la {

// Writes atomically (temporary file, then rename). A path ending in .gguf gets a GGUF file
// (general.architecture "llama_adapter", keys llama_adapter.*); load_adapter reads either.
void save_adapter(const Adapter& a, const std::string& path);

// Adds the adapter's tensors and metadata to a writer (also used by training checkpoints).
void add_adapter_tensors(SafetensorsWriter& w, const Adapter& a);

// Reads an adapter: the one path every command takes. Files without our metadata (the official
// release as users convert it) get K = 10 unless the file says otherwise, L = rows / K, the
// model's layer count from `model` (else the highest gate), gates of layers below the top L
// ignored, and gate mode "identity", as the official inference code applies them; numbers that
// do not fit are a one-line error. `model` also resolves a per-layer scalar gate to per-head,
// and when given the adapter is checked against it (an error naming both shapes).
Adapter load_adapter(const std::string& path, const ModelConfig* model = nullptr);
Adapter read_adapter_tensors(const SafetensorsFile& f, const ModelConfig* model = nullptr);

}  // namespace la
