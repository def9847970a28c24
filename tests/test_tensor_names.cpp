// The layer-tensor table (model/weights.h) and the per-format name tables (io/tensor_names.h):
// the names each format's files use, llama2.c's order, and that the table covers every member.
#include <stdexcept>
#include <string>
#include <vector>

#include "la/core/error.h"
#include "la/io/shapes.h"
#include "la/io/tensor_names.h"
#include "support/test_support.h"

namespace la {
namespace {

const LayerTensor& tensor(const std::string& name) {
  for (const LayerTensor& t : kLayerTensors)
    if (name == t.name) return t;
  throw std::runtime_error("no layer tensor " + name);
}

TEST(LayerTensors, CoverEveryMemberOnceInBlockOrder) {
  std::vector<std::string> names;
  for (const LayerTensor& t : kLayerTensors) names.emplace_back(t.name);
  EXPECT_EQ(names, (std::vector<std::string>{"rms_att", "wq", "wk", "wv", "wo", "rms_ffn", "w1", "w2", "w3"}));
  EXPECT_EQ(kLayerMatrixCount, 7u);
  EXPECT_EQ(kLayerNormCount, 2u);

  LayerWeights l;
  const auto m = layer_matrices(l);
  const std::vector<WeightMatrix*> expected = {&l.wq, &l.wk, &l.wv, &l.wo, &l.w1, &l.w2, &l.w3};
  EXPECT_EQ(std::vector<WeightMatrix*>(m.begin(), m.end()), expected);
  const LayerWeights& cl = l;
  const auto cm = layer_matrices(cl);
  EXPECT_EQ(std::vector<const WeightMatrix*>(cm.begin(), cm.end()),
            std::vector<const WeightMatrix*>(expected.begin(), expected.end()));
  EXPECT_TRUE(tensor("rms_att").norm == &LayerWeights::rms_att);
  EXPECT_TRUE(tensor("rms_ffn").norm == &LayerWeights::rms_ffn);
  for (const LayerTensor& t : kLayerTensors)
    EXPECT_EQ(t.roped, t.name == std::string("wq") || t.name == std::string("wk"));
}

TEST(LayerTensors, ShapesFollowTheConfig) {
  ModelConfig c = *named_shape("tinyllama-1.1b");  // grouped-query: kv_dim 256 != dim 2048
  const int64_t D = c.dim, KV = c.kv_dim(), F = c.hidden_dim;
  auto shape = [&](const char* n) { return std::pair{tensor(n).rows(c), tensor(n).cols(c)}; };
  EXPECT_EQ(shape("wq"), std::pair(D, D));
  EXPECT_EQ(shape("wk"), std::pair(KV, D));
  EXPECT_EQ(shape("wv"), std::pair(KV, D));
  EXPECT_EQ(shape("wo"), std::pair(D, D));
  EXPECT_EQ(shape("w1"), std::pair(F, D));
  EXPECT_EQ(shape("w2"), std::pair(D, F));
  EXPECT_EQ(shape("w3"), std::pair(F, D));
  EXPECT_EQ(tensor("rms_att").numel(c), D);
  EXPECT_EQ(layer_numel(c), 2 * D + 2 * D * D + 2 * KV * D + 3 * F * D);
  // LLaMA-7B with its own output head: the published 6,738,415,616 parameters.
  EXPECT_EQ(named_shape("7b")->parameter_count(), 6738415616);
}

TEST(TensorNames, HuggingFaceAndGguf) {
  std::vector<std::string> hf, gguf;
  for (const LayerTensor& t : kLayerTensors) {
    hf.push_back(kHfTensorNames.layer_tensor(3, t));
    gguf.push_back(kGgufTensorNames.layer_tensor(3, t));
  }
  EXPECT_EQ(hf, (std::vector<std::string>{
                    "model.layers.3.input_layernorm.weight", "model.layers.3.self_attn.q_proj.weight",
                    "model.layers.3.self_attn.k_proj.weight", "model.layers.3.self_attn.v_proj.weight",
                    "model.layers.3.self_attn.o_proj.weight", "model.layers.3.post_attention_layernorm.weight",
                    "model.layers.3.mlp.gate_proj.weight", "model.layers.3.mlp.down_proj.weight",
                    "model.layers.3.mlp.up_proj.weight"}));
  EXPECT_EQ(gguf, (std::vector<std::string>{"blk.3.attn_norm.weight", "blk.3.attn_q.weight", "blk.3.attn_k.weight",
                                            "blk.3.attn_v.weight", "blk.3.attn_output.weight", "blk.3.ffn_norm.weight",
                                            "blk.3.ffn_gate.weight", "blk.3.ffn_down.weight", "blk.3.ffn_up.weight"}));
  EXPECT_STREQ(kHfTensorNames.token_embeddings, "model.embed_tokens.weight");
  EXPECT_STREQ(kHfTensorNames.final_norm, "model.norm.weight");
  EXPECT_STREQ(kHfTensorNames.output, "lm_head.weight");
  EXPECT_STREQ(kGgufTensorNames.token_embeddings, "token_embd.weight");
  EXPECT_STREQ(kGgufTensorNames.final_norm, "output_norm.weight");
  EXPECT_STREQ(kGgufTensorNames.output, "output.weight");
  // A LayerTensor that is not an entry of the table has no name in any format.
  const LayerTensor copy = kLayerTensors[1];
  EXPECT_THROW(kGgufTensorNames.layer_tensor(0, copy), Error);
}

std::string describe(const std::vector<Llama2cSection>& order) {
  std::string s;
  for (const Llama2cSection& x : order) {
    if (!s.empty()) s += ' ';
    switch (x.kind) {
      case Llama2cSection::TokenEmbeddings: s += "emb"; break;
      case Llama2cSection::Layer: s += x.tensor->name; break;
      case Llama2cSection::FinalNorm: s += "norm"; break;
      case Llama2cSection::RopeTables: s += "rope"; break;
      case Llama2cSection::Output: s += "out"; break;
    }
  }
  return s;
}

TEST(TensorNames, Llama2cOrder) {
  // karpathy/llama2.c export.py: legacy_export and version1_export.
  EXPECT_EQ(describe(llama2c_order(false)), "emb rms_att wq wk wv wo rms_ffn w1 w2 w3 norm rope out");
  EXPECT_EQ(describe(llama2c_order(true)), "rms_att rms_ffn norm emb wq wk wv wo w1 w2 w3 out");
}

}  // namespace
}  // namespace la
