#!/usr/bin/env python3
"""Small PyTorch checkpoints written by real torch.save, for tests/test_pth.cpp (which then needs
no PyTorch in CI).

It writes, under the output folder (tests/fixtures/pth), for the torch it runs with
(TAG = torch1 for 1.x, torch2 for 2.x):
  TAG_state_dict.pth  an OrderedDict as nn.Module.state_dict() returns it (with _metadata):
                      f32 / f16 / bf16 tensors, a 0-d tensor, an nn.Parameter, a transposed view
                      and a slice at a storage offset sharing one storage, an int64 tensor (read
                      and not listed) and an empty tensor
  TAG_nested.pth      {"model": {...}, "step": 7, "name": "x", "list": [tensor], "opt": {0: {...}}}
                      as litgpt and training loops save: nested dicts, int keys, non-tensor leaves
  TAG_expected.json   per file, the tensors our reader must list, in order: name, dtype, shape,
                      strides, storage_offset, contiguous, and the values in row-major order
                      (exact: every value is a small dyadic number, the same in every type)

Run with each torch (Debian's python3-torch 1.13 and the reference venv's 2.x):
  /usr/bin/python3 tests/reference/make_pth_fixtures.py tests/fixtures/pth
  /work/venv-ref/bin/python tests/reference/make_pth_fixtures.py tests/fixtures/pth
"""
import collections
import json
import os
import sys

import torch


def values(start, n):
    # Dyadic values (k/8, |k| < 256) are exact in f32, f16 and bf16.
    return [((start + 3 * i) % 61 - 30) / 8.0 for i in range(n)]


def tensor(start, shape, dtype):
    n = 1
    for s in shape:
        n *= s
    return torch.tensor(values(start, n), dtype=torch.float32).reshape(shape).to(dtype)


DTYPE = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}


def describe(name, t):
    return {
        "name": name,
        "dtype": DTYPE[t.dtype],
        "shape": list(t.shape),
        "strides": list(t.stride()),
        "storage_offset": t.storage_offset(),
        "contiguous": t.is_contiguous(),
        "values": [float(v) for v in t.detach().float().reshape(-1).tolist()],
    }


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    tag = "torch" + torch.__version__.split(".")[0]
    expected = {"torch": torch.__version__}

    # A state dict as a module gives it (OrderedDict with _metadata), plus views.
    module = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.LayerNorm(2))
    with torch.no_grad():
        module[0].weight.copy_(tensor(1, (2, 3), torch.float32))
        module[0].bias.copy_(tensor(2, (2,), torch.float32))
        module[1].weight.copy_(tensor(3, (2,), torch.float32))
        module[1].bias.copy_(tensor(4, (2,), torch.float32))
    sd = module.state_dict()
    base = tensor(5, (3, 4), torch.float32)
    sd["half"] = tensor(6, (4,), torch.float16)
    sd["bf16"] = tensor(7, (3, 2), torch.bfloat16)
    sd["scalar"] = tensor(8, (), torch.float32)
    sd["base"] = base
    sd["transposed"] = base.t()  # strides (1, 4), same storage
    sd["rows"] = base[1:]  # storage offset 4
    sd["column"] = base[:, 2]  # stride 4, offset 2
    sd["param"] = torch.nn.Parameter(tensor(9, (2, 2), torch.float16))
    sd["ids"] = torch.arange(5, dtype=torch.int64)  # read, not listed
    sd["empty"] = torch.zeros((0, 3), dtype=torch.bfloat16)
    path = os.path.join(out, tag + "_state_dict.pth")
    torch.save(sd, path)
    expected[tag + "_state_dict.pth"] = [describe(k, v) for k, v in sd.items() if v.dtype in DTYPE]

    nested = {
        "model": {
            "embed": tensor(10, (4, 2), torch.bfloat16),
            "block": collections.OrderedDict(w=tensor(11, (2, 2), torch.float32), n=tensor(12, (2,), torch.float16)),
        },
        "step": 7,
        "name": "x",
        "list": [tensor(13, (2,), torch.float32)],
        "opt": {0: {"exp_avg": tensor(14, (2, 2), torch.float32)}},
    }
    path = os.path.join(out, tag + "_nested.pth")
    torch.save(nested, path)
    expected[tag + "_nested.pth"] = [
        describe("model.embed", nested["model"]["embed"]),
        describe("model.block.w", nested["model"]["block"]["w"]),
        describe("model.block.n", nested["model"]["block"]["n"]),
        describe("opt.0.exp_avg", nested["opt"][0]["exp_avg"]),
    ]

    # What torch reads back must be what we describe (the views stay views).
    for name, tensors in expected.items():
        if not name.endswith(".pth"):
            continue
        kwargs = {"weights_only": True} if tag != "torch1" else {}
        torch.load(os.path.join(out, name), **kwargs)

    # One tensor a line: the file stays small and its diffs readable.
    with open(os.path.join(out, tag + "_expected.json"), "w") as f:
        f.write('{"torch": %s' % json.dumps(expected["torch"]))
        for name, tensors in expected.items():
            if name.endswith(".pth"):
                f.write(',\n %s: [\n  ' % json.dumps(name))
                f.write(",\n  ".join(json.dumps(t) for t in tensors))
                f.write("]")
        f.write("}\n")


if __name__ == "__main__":
    main()
