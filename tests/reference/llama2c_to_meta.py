#!/usr/bin/env python3
"""Converts a llama2.c checkpoint (legacy header, f32) into Meta's layout with real torch.save:
OUT/params.json + OUT/consolidated.NN.pth, the state dict facebookresearch/llama's model.py
loads (tok_embeddings.weight, layers.N.attention.wq.weight, ..., norm.weight, output.weight,
rope.freqs). llama2.c and Meta share the q/k row order (interleaved RoPE), so the weights are
copied as they are.

  python3 tests/reference/llama2c_to_meta.py IN.bin OUT [--dtype f32|bf16|f16] [--shards N]

--shards N splits the tensors as Meta's model parallelism does (fairscale): wq, wk, wv, w1, w3
and output by rows, wo and w2 by columns, the embedding by columns; norms whole on every rank.
Used by tests/test_meta_model.cpp (when torch imports) to check the loader against torch's own
files; the tests without torch write the same layout with our PthWriter.
"""
import argparse
import json
import os
import struct

import torch


def read_llama2c(path):
    with open(path, "rb") as f:
        data = f.read()
    dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq_len = struct.unpack("<7i", data[:28])
    shared = vocab > 0
    vocab = abs(vocab)
    floats = torch.frombuffer(bytearray(data[28:]), dtype=torch.float32)
    head_dim = dim // n_heads
    kv_dim = n_kv_heads * head_dim
    pos = 0

    def take(*shape):
        nonlocal pos
        n = 1
        for s in shape:
            n *= s
        t = floats[pos : pos + n].reshape(shape).clone()
        pos += n
        return t

    w = {"tok_embeddings": take(vocab, dim)}
    w["attention_norm"] = take(n_layers, dim)
    w["wq"] = take(n_layers, dim, dim)
    w["wk"] = take(n_layers, kv_dim, dim)
    w["wv"] = take(n_layers, kv_dim, dim)
    w["wo"] = take(n_layers, dim, dim)
    w["ffn_norm"] = take(n_layers, dim)
    w["w1"] = take(n_layers, hidden, dim)
    w["w2"] = take(n_layers, dim, hidden)
    w["w3"] = take(n_layers, hidden, dim)
    w["norm"] = take(dim)
    take(seq_len, head_dim // 2)  # RoPE tables (cos, sin): recomputed by every reader
    take(seq_len, head_dim // 2)
    w["output"] = w["tok_embeddings"].clone() if shared else take(vocab, dim)
    assert pos == floats.numel(), "trailing data in the llama2.c file"
    cfg = dict(dim=dim, hidden=hidden, n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_kv_heads, vocab=vocab,
               seq_len=seq_len)
    return cfg, w


def multiple_of_for(dim, hidden):
    # Meta's FeedForward width: int(2 * 4 * dim / 3) rounded up to a multiple of multiple_of.
    for m in (256, 128, 64, 32, 16, 8, 4, 2, 1):
        h = int(2 * 4 * dim / 3)
        if m * ((h + m - 1) // m) == hidden:
            return m
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("input")
    ap.add_argument("out")
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16", "f16"])
    ap.add_argument("--shards", type=int, default=1)
    a = ap.parse_args()
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[a.dtype]
    cfg, w = read_llama2c(a.input)
    os.makedirs(a.out, exist_ok=True)

    params = {"dim": cfg["dim"], "n_layers": cfg["n_layers"], "n_heads": cfg["n_heads"],
              "n_kv_heads": cfg["n_kv_heads"], "vocab_size": -1, "norm_eps": 1e-05, "max_seq_len": cfg["seq_len"]}
    m = multiple_of_for(cfg["dim"], cfg["hidden"])
    if m is not None:
        params["multiple_of"] = m
    with open(os.path.join(a.out, "params.json"), "w") as f:
        json.dump(params, f)

    n = a.shards
    head_dim = cfg["dim"] // cfg["n_heads"]

    def split(t, dim):
        assert t.shape[dim] % n == 0, "a dimension the shards cannot share"
        return list(torch.chunk(t, n, dim=dim))

    shards = [dict() for _ in range(n)]

    def put(name, t, axis):  # axis None: whole on every rank
        parts = [t] * n if axis is None else split(t, axis)
        for k in range(n):
            shards[k][name] = parts[k].to(dtype).contiguous().clone()

    put("tok_embeddings.weight", w["tok_embeddings"], 1)
    for i in range(cfg["n_layers"]):
        p = "layers.%d." % i
        put(p + "attention.wq.weight", w["wq"][i], 0)
        put(p + "attention.wk.weight", w["wk"][i], 0)
        put(p + "attention.wv.weight", w["wv"][i], 0)
        put(p + "attention.wo.weight", w["wo"][i], 1)
        put(p + "feed_forward.w1.weight", w["w1"][i], 0)
        put(p + "feed_forward.w2.weight", w["w2"][i], 1)
        put(p + "feed_forward.w3.weight", w["w3"][i], 0)
        put(p + "attention_norm.weight", w["attention_norm"][i], None)
        put(p + "ffn_norm.weight", w["ffn_norm"][i], None)
    put("norm.weight", w["norm"], None)
    put("output.weight", w["output"], 0)
    # LLaMA 1 checkpoints carry the RoPE frequencies; readers ignore them.
    freqs = 1.0 / (10000.0 ** (torch.arange(0, head_dim, 2).float() / head_dim))
    put("rope.freqs", freqs, None)
    for k in range(n):
        torch.save(shards[k], os.path.join(a.out, "consolidated.%02d.pth" % k))


if __name__ == "__main__":
    main()
