#!/usr/bin/env python3
"""A Llama-3-shaped model directory with zero weights, for tokenizer benchmarks: config.json,
model.safetensors (bf16), the given tokenizer.json and, optionally, a chat template in
tokenizer_config.json. Standard library only.

    bench/make_random_llama3.py OUT_DIR path/to/tokenizer.json [template.jinja]
"""
import json
import os
import shutil
import struct
import sys

out, tokenizer = sys.argv[1], sys.argv[2]
template = sys.argv[3] if len(sys.argv) > 3 else None
vocab, dim, hidden, layers, heads, kv_heads = 128256, 64, 128, 1, 4, 2
os.makedirs(out, exist_ok=True)
json.dump({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": dim,
           "intermediate_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
           "num_key_value_heads": kv_heads, "vocab_size": vocab, "max_position_embeddings": 8192,
           "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "tie_word_embeddings": True,
           "bos_token_id": 128000, "eos_token_id": 128001}, open(os.path.join(out, "config.json"), "w"), indent=1)
hd = dim // heads
shapes = {"model.embed_tokens.weight": [vocab, dim], "model.norm.weight": [dim]}
for l in range(layers):
    p = f"model.layers.{l}."
    shapes.update({p + "self_attn.q_proj.weight": [dim, dim], p + "self_attn.k_proj.weight": [kv_heads * hd, dim],
                   p + "self_attn.v_proj.weight": [kv_heads * hd, dim], p + "self_attn.o_proj.weight": [dim, dim],
                   p + "mlp.gate_proj.weight": [hidden, dim], p + "mlp.up_proj.weight": [hidden, dim],
                   p + "mlp.down_proj.weight": [dim, hidden], p + "input_layernorm.weight": [dim],
                   p + "post_attention_layernorm.weight": [dim]})
header, offset, blobs = {}, 0, []
one_bf16 = struct.pack("<H", 0x3F80)
for name, shape in shapes.items():
    n = 1
    for d in shape:
        n *= d
    blob = one_bf16 * n if len(shape) == 1 else bytes(2 * n)  # norms 1, matrices 0
    header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + len(blob)]}
    offset += len(blob)
    blobs.append(blob)
h = json.dumps(header).encode()
h += b" " * (-len(h) % 8)
with open(os.path.join(out, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h)
    for b in blobs:
        f.write(b)
shutil.copyfile(tokenizer, os.path.join(out, "tokenizer.json"))
if template:
    json.dump({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "chat_template": open(template).read()},
              open(os.path.join(out, "tokenizer_config.json"), "w"))
