#!/usr/bin/env python3
"""The other direction of tests/test_adapter_interchange.cpp: PEFT and litgpt load what
`llama-adapter convert --to peft|litgpt|official` writes, and compute with it what they computed
with their own files (reference.json of make_peer_adapter_fixtures.py).

  OMP_NUM_THREADS=1 /work/venv-ref/bin/python tests/reference/check_peers_read_ours.py \
      build/bin/llama-adapter tests/fixtures/interchange

Each peer's file is converted to our safetensors and back to its own format by the binary (so the
files PEFT and litgpt read here were written by our writers); PEFT reads the folder with
PeftModel.from_pretrained, litgpt the .pth the way its generate/adapter.py does (its base
checkpoint updated with the adapter's "model" dict, load_state_dict strict), and torch.load reads
the official .pth with weights_only=True. Exits non-zero on the first difference over 1e-4.
"""
import json
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_peer_adapter_fixtures as gen  # noqa: E402


def convert(binary, *args):
    subprocess.run([binary, "convert", *args], check=True, capture_output=True)


def worst_diff(forward, rec):
    worst = 0.0
    with torch.no_grad():
        for seq, theirs in zip(rec["sequences"], rec["logits"]):
            ours = forward(torch.tensor([seq]))[0]
            worst = max(worst, float((ours - torch.tensor(theirs)).abs().max()))
    return worst


def main():
    binary, fx = sys.argv[1], sys.argv[2]
    ref = json.load(open(os.path.join(fx, "reference.json")))
    tol = ref["tolerance"]
    tmp = tempfile.mkdtemp()

    # PEFT: its folder -> ours -> a PEFT folder written by us, read by PEFT.
    import transformers
    from peft import PeftModel

    peft_base = os.path.join(fx, "peft_base")
    convert(binary, "--adapter", os.path.join(fx, "peft_adapter"), "--model", peft_base, "-o",
            os.path.join(tmp, "p.safetensors"))
    convert(binary, "--adapter", os.path.join(tmp, "p.safetensors"), "--to", "peft", "-o", os.path.join(tmp, "peft"))
    base = transformers.LlamaForCausalLM.from_pretrained(peft_base, dtype=torch.float32).eval()
    pm = PeftModel.from_pretrained(base, os.path.join(tmp, "peft")).eval()
    d = worst_diff(lambda ids: pm(input_ids=ids).logits, ref["peft"])
    print(f"PEFT reading our folder: largest logit difference {d:.3g}")
    assert d < tol, d

    # litgpt: its .pth -> ours -> a litgpt .pth written by us, loaded as litgpt's generate does.
    from litgpt.adapter import GPT
    from litgpt.scripts.convert_hf_checkpoint import copy_weights_hf_llama
    from safetensors.torch import load_file

    lit_base = os.path.join(fx, "litgpt_base")
    convert(binary, "--adapter", os.path.join(fx, "litgpt_adapter.pth"), "--model", lit_base, "-o",
            os.path.join(tmp, "l.safetensors"))
    convert(binary, "--adapter", os.path.join(tmp, "l.safetensors"), "--model", lit_base, "--to", "litgpt", "-o",
            os.path.join(tmp, "lit_model.pth.adapter"))
    rec = ref["litgpt"]
    config = gen.litgpt_config(1, rec["adapter_len"], rec["adapter_start_layer"])
    state = {}
    hf = {k: v.float() for k, v in load_file(os.path.join(lit_base, "model.safetensors")).items()}
    copy_weights_hf_llama(config, {}, state, hf)
    adapter = torch.load(os.path.join(tmp, "lit_model.pth.adapter"), weights_only=True)
    state.update(adapter.get("model", adapter))
    model = GPT(config).eval()
    model.load_state_dict(state, strict=True)
    d = worst_diff(model, rec)
    print(f"litgpt reading our checkpoint: largest logit difference {d:.3g}")
    assert d < tol, d

    # The official layout: torch.load(weights_only=True) reads what we write, values as the original.
    convert(binary, "--adapter", os.path.join(fx, "official_adapter.pth"), "--model", peft_base, "--to", "official",
            "-o", os.path.join(tmp, "o.pth"))
    ours = torch.load(os.path.join(tmp, "o.pth"), weights_only=True)
    orig = torch.load(os.path.join(fx, "official_adapter.pth"), weights_only=True)
    assert ours.keys() == orig.keys()
    lower = {f"layers.{i}.attention.gate" for i in range(gen.LAYERS - ref["official"]["adapter_layers"])}
    for k in orig:
        # The release's lower gates are no part of the adapter: we write zeros there.
        same = bool(ours[k].abs().max() == 0) if k in lower else torch.equal(ours[k], orig[k].float())
        assert same, k
    print("official: torch.load reads our .pth; the adapted tensors are the original's, the lower gates zero")


if __name__ == "__main__":
    main()
