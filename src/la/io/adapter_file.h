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

// The formats an adapter is read from and written to (SPEC §5, §10; io/adapter_interchange.h
// describes the other tools' layouts).
enum class AdapterFormat { Ours, Gguf, Official, Peft, Litgpt };
// "safetensors" (ours), "gguf" (ours), "official", "peft", "litgpt"; la::Error for another name.
AdapterFormat parse_adapter_format(const std::string& name);
const char* adapter_format_name(AdapterFormat f);

// What load_adapter found: the layout, and whether the head count came from the file or the model
// (false: PEFT's or an official file's one gate per layer, read without a model, taken as 1 head).
struct AdapterSource {
  AdapterFormat format = AdapterFormat::Ours;
  bool heads_known = true;
};

// Reads an adapter: the one path every command takes. By content: a folder is a PEFT
// AdaptionPrompt adapter; a GGUF file ours; a PyTorch .pth (zip) the official release's keys or a
// litgpt checkpoint; a safetensors file ours, the official keys, litgpt's or PEFT's (read through
// its folder). Files without our metadata (the official release) get K = 10 unless the file says
// otherwise, L = rows / K, the model's layer count from `model` (else the highest gate), gates of
// layers below the top L ignored. The other tools' gates are read with gate mode "identity" (none
// of them applies a tanh; the official inference code neither); numbers that do not fit are a
// one-line error. `model` also resolves a per-layer scalar gate to per-head, and when given the
// adapter is checked against it (an error naming both shapes). `source` (optional) gets what was
// found.
Adapter load_adapter(const std::string& path, const ModelConfig* model = nullptr, AdapterSource* source = nullptr);
// Our safetensors layout (also the official keys without metadata) from an open file: training
// checkpoints hold it. *heads_known as in AdapterSource.
Adapter read_adapter_tensors(const SafetensorsFile& f, const ModelConfig* model = nullptr, bool* heads_known = nullptr);

// Writes `a` in `format` at `path` (for PEFT a folder, created when missing): ours as safetensors
// or GGUF whatever the extension; official as a .pth, or its keys in safetensors when `path` ends
// in .safetensors. A format that cannot hold the adapter is an error naming why, never an
// approximation: per-head gates that differ into PEFT's one gate per layer, K other than 10 into
// the official layout (it has no field for K), a visual projection into any of the other tools'.
// A tanh-mode adapter is written to those as gamma = tanh(g), gate mode identity: the same
// outputs, bit for bit. `model`, when given, is checked first (and litgpt refused for a model on
// which litgpt's forward is not LLaMA-Adapter's: io/adapter_interchange.h).
void save_adapter_as(const Adapter& a, AdapterFormat format, const std::string& path,
                     const ModelConfig* model = nullptr);

}  // namespace la
