// How each file format names (or orders) the tensors of a LLaMA model: one table per format,
// read by that format's loader and writer, so that no name is spelled anywhere else. The layer
// tensors are the entries of kLayerTensors (model/weights.h), in its order.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "la/model/weights.h"

namespace la {

struct TensorNames {
  const char* token_embeddings;
  const char* final_norm;
  const char* output;                                   // absent when the classifier is tied to the embeddings
  const char* layer_prefix;                             // then the layer index, a dot and the layer tensor's name
  std::array<const char*, kLayerTensors.size()> layer;  // as kLayerTensors

  // "<layer_prefix><layer>.<name of t>"; `t` is an entry of kLayerTensors.
  std::string layer_tensor(int64_t layer, const LayerTensor& t) const;
};

// Hugging Face (transformers' LlamaForCausalLM, safetensors): q_proj/k_proj rows permuted for
// rotate-half RoPE (LayerTensor::roped).
inline constexpr TensorNames kHfTensorNames = {
    "model.embed_tokens.weight",
    "model.norm.weight",
    "lm_head.weight",
    "model.layers.",
    {"input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
     "self_attn.o_proj.weight", "post_attention_layernorm.weight", "mlp.gate_proj.weight", "mlp.down_proj.weight",
     "mlp.up_proj.weight"},
};

// GGUF (llama.cpp's names for the llama architecture); q/k rows in the Meta layout. Our writer
// puts the tensors in this order: token_embd, each layer's tensors, output_norm, output.
inline constexpr TensorNames kGgufTensorNames = {
    "token_embd.weight",
    "output_norm.weight",
    "output.weight",
    "blk.",
    {"attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight", "ffn_norm.weight",
     "ffn_gate.weight", "ffn_down.weight", "ffn_up.weight"},
};

// Meta's reference checkpoints (params.json + consolidated.NN.pth, as facebookresearch/llama's
// model.py names its modules); q/k rows in the Meta (interleaved RoPE) layout.
inline constexpr TensorNames kMetaTensorNames = {
    "tok_embeddings.weight",
    "norm.weight",
    "output.weight",
    "layers.",
    {"attention_norm.weight", "attention.wq.weight", "attention.wk.weight", "attention.wv.weight",
     "attention.wo.weight", "ffn_norm.weight", "feed_forward.w1.weight", "feed_forward.w2.weight",
     "feed_forward.w3.weight"},
};

// How Meta's model-parallel checkpoints (consolidated.00.pth ... one per rank) split a tensor:
// column-parallel linears (wq, wk, wv, w1, w3, output) hold a block of output rows each,
// row-parallel ones (wo, w2) a block of input columns, the embedding a block of its columns
// (fairscale's ParallelEmbedding splits the model width); norms are whole on every rank.
enum class MetaSplit : uint8_t { Whole, Rows, Cols };
struct MetaSplits {
  MetaSplit token_embeddings, final_norm, output;
  std::array<MetaSplit, kLayerTensors.size()> layer;  // as kLayerTensors
};
inline constexpr MetaSplits kMetaSplits = {
    MetaSplit::Cols,
    MetaSplit::Whole,
    MetaSplit::Rows,
    {MetaSplit::Whole, MetaSplit::Rows, MetaSplit::Rows, MetaSplit::Rows, MetaSplit::Cols, MetaSplit::Whole,
     MetaSplit::Rows, MetaSplit::Cols, MetaSplit::Rows},
};
static_assert(kMetaSplits.layer[layer_tensor_index("wo")] == MetaSplit::Cols &&
                  kMetaSplits.layer[layer_tensor_index("w2")] == MetaSplit::Cols &&
                  kMetaSplits.layer[layer_tensor_index("w1")] == MetaSplit::Rows &&
                  kMetaSplits.layer[layer_tensor_index("rms_ffn")] == MetaSplit::Whole,
              "kMetaSplits.layer is in kLayerTensors order");

// llama2.c checkpoints name nothing: their tensors are f32 arrays in one order, by kind across
// all layers (every layer's rms_att, then every layer's wq, ...), as karpathy/llama2.c's
// export.py writes them:
//   legacy:    token_embeddings, each layer tensor in kLayerTensors order, final_norm, the RoPE
//              tables (cos, sin: max_seq_len * head_dim/2 floats each), output
//   version 1: each layer norm, final_norm, token_embeddings, each layer matrix, output
// output only when the classifier is not shared.
struct Llama2cSection {
  enum Kind { TokenEmbeddings, Layer, FinalNorm, RopeTables, Output } kind;
  const LayerTensor* tensor = nullptr;  // Kind::Layer: this tensor of every layer, layer 0 first
};
std::vector<Llama2cSection> llama2c_order(bool version1);

}  // namespace la
