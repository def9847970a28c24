#!/usr/bin/env python3
"""Write a random LLaMA-Adapter file (safetensors, our format: src/la/io/adapter_file.h).

The CLI has no way to write an adapter with non-zero gates short of fine-tuning (a fresh adapter's
gates are 0, which makes it a no-op; fine-tuning a 1.1B model on 2 cores is slow), so the serving
benchmark makes its adapters here. Python standard library only.

  adapter_query.weight        F32 [L*K, dim]   N(0, 1)
  layers.{i}.attention.gate   F32 [H]          for the top L layers i, values ~ --gate (+- --gate-jitter)
  __metadata__: format=llama-adapter, version=1, adapter_len, adapter_layers, gate_mode, dim,
                n_layers, n_heads

Defaults are TinyLlama-1.1B's shape (dim 2048, 22 layers, 32 query heads), K=10, L=22.

  python3 bench/make_random_adapter.py -o /tmp/a0.safetensors --seed 0
  python3 bench/make_random_adapter.py --count 8 -o /work/bench/serve/adapter-{i}.safetensors
"""
import argparse
import array
import json
import os
import random
import struct
import sys

SHAPES = {
    # name: (dim, n_layers, n_heads)
    "stories260k": (64, 5, 8),
    "stories15m": (288, 6, 6),
    "110m": (768, 12, 12),
    "tinyllama-1.1b": (2048, 22, 32),
    "7b": (4096, 32, 32),
}


def f32_bytes(values):
    a = array.array("f", values)
    if sys.byteorder != "little":
        a.byteswap()
    return a.tobytes()


def write_adapter(path, dim, n_layers, n_heads, k, l, gate, gate_jitter, gate_mode, seed):
    if not (1 <= l <= n_layers):
        raise SystemExit(f"adapter layers L={l} must be 1..{n_layers}")
    rng = random.Random(seed)
    tensors = []  # (name, shape, bytes)
    rows = l * k
    tensors.append(("adapter_query.weight", [rows, dim], f32_bytes(rng.gauss(0.0, 1.0) for _ in range(rows * dim))))
    first = n_layers - l
    for i in range(first, n_layers):
        g = [gate + rng.uniform(-gate_jitter, gate_jitter) for _ in range(n_heads)]
        tensors.append((f"layers.{i}.attention.gate", [n_heads], f32_bytes(g)))
    header = {
        "__metadata__": {
            "format": "llama-adapter",
            "version": "1",
            "adapter_len": str(k),
            "adapter_layers": str(l),
            "gate_mode": gate_mode,
            "dim": str(dim),
            "n_layers": str(n_layers),
            "n_heads": str(n_heads),
        }
    }
    off = 0
    for name, shape, data in tensors:
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + len(data)]}
        off += len(data)
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * ((8 - len(hj) % 8) % 8)  # keep the data 8-byte aligned
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for _, _, data in tensors:
            f.write(data)
    os.replace(tmp, path)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--out", required=True, help="output .safetensors; with --count, '{i}' is replaced by the index")
    p.add_argument("--shape", default="tinyllama-1.1b", choices=sorted(SHAPES), help="model shape (default tinyllama-1.1b)")
    p.add_argument("--dim", type=int, help="override the shape's dim")
    p.add_argument("--n-layers", type=int, help="override the shape's layer count")
    p.add_argument("--n-heads", type=int, help="override the shape's query-head count")
    p.add_argument("-K", "--adapter-len", type=int, default=10, help="K (default 10)")
    p.add_argument("-L", "--adapter-layers", type=int, help="L (default: every layer)")
    p.add_argument("--gate", type=float, default=0.5, help="gate value (before its activation; default 0.5)")
    p.add_argument("--gate-jitter", type=float, default=0.1, help="uniform +- jitter per head (default 0.1)")
    p.add_argument("--gate-mode", default="tanh", choices=["tanh", "identity"])
    p.add_argument("--seed", type=int, default=0, help="seed (with --count: seed + i)")
    p.add_argument("--count", type=int, default=1, help="write this many adapters (seeds seed..seed+count-1)")
    a = p.parse_args()
    dim, n_layers, n_heads = SHAPES[a.shape]
    dim = a.dim or dim
    n_layers = a.n_layers or n_layers
    n_heads = a.n_heads or n_heads
    l = a.adapter_layers or n_layers
    if a.count > 1 and "{i}" not in a.out:
        raise SystemExit("--count > 1 needs '{i}' in --out")
    for i in range(a.count):
        path = a.out.replace("{i}", str(i))
        write_adapter(path, dim, n_layers, n_heads, a.adapter_len, l, a.gate, a.gate_jitter, a.gate_mode, a.seed + i)
        print(path)


if __name__ == "__main__":
    main()
