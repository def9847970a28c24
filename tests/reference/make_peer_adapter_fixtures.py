#!/usr/bin/env python3
"""Adapter files written by the other tools themselves, and their own logits (SPEC §10).

Builds small random Llama-shaped models from a config (nothing is downloaded), gives each peer's
LLaMA-Adapter NON-ZERO random prompts and gates, lets the peer save its adapter its own way, and
records the peer's own forward on a few fixed token sequences, so tests/test_adapter_interchange.cpp
can check, without PyTorch, that our forward with the peer's file over the same base equals the
peer's (logits within 1e-4, the same greedy tokens). Everything lands in the fixture folder
(default tests/fixtures/interchange):

  peft_base/                 transformers LlamaForCausalLM.save_pretrained: dim 32, 4 layers, 4 heads,
                             2 key/value heads, vocab 64, tied embeddings, RoPE theta 500000 (in
                             transformers 5's rope_parameters), F16 weights
  peft_adapter/              peft AdaptionPrompt (adapter_len 6, adapter_layers 3) save_pretrained:
                             adapter_config.json + adapter_model.safetensors
  litgpt_base/               litgpt's own GPT (same sizes, ONE key/value head: see below) in the
                             Hugging Face layout by litgpt's convert_lit_checkpoint, F16 weights
  litgpt_adapter.pth         litgpt's save_adapter_checkpoint (lightning Fabric.save with
                             adapter_filter): {"model": {transformer.h.{i}.attn.adapter_wte.weight,
                             ...gating_factor}}, adapter_prompt_length 5, adapter_start_layer 2
  official_adapter.pth       torch.save of the official v1 release's layout: adapter_query.weight
                             [L*K, dim] (K 10, L 2; saved as a transposed view, so its strides are
                             not row-major), layers.{i}.attention.gate [1, H, 1, 1] for EVERY layer,
                             the lower untrained ones fp16, no metadata
  official_as_ours.safetensors  the same adapter in our format (metadata, gate mode identity)
  reference.json             per peer: the token sequences, the peer's logits at every position,
                             its greedy continuation, and what was checked here

Checked on every run, so that a fixture never records a peer's accident:
  - the litgpt base written in the Hugging Face layout gives transformers the logits litgpt gives;
  - each adapter moves the logits by far more than the 1e-4 the C++ test allows;
  - greedy steps are decided by a margin well above 1e-4;
  - litgpt's adapter computes the paper's prompt keys/values (Wk P, Wv P) with one key/value head,
    and NOT with two: litgpt/adapter.py views its prompt's qkv product as interleaved per group
    while litgpt/model.py lays qkv out as [Q; K; V]. reference.json records both findings;
    llama-adapter refuses litgpt adapters on models with more than one key/value head.

Rerun (single-threaded; the venv from scripts/reference-venv.sh, which installs litgpt):
  OMP_NUM_THREADS=1 /work/venv-ref/bin/python tests/reference/make_peer_adapter_fixtures.py [OUT]
"""
import importlib.metadata
import json
import os
import shutil
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

torch.set_num_threads(1)

import peft  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

DIM, HIDDEN, LAYERS, HEADS, VOCAB, MAX_POS = 32, 64, 4, 4, 64, 64
EPS, THETA = 1e-5, 500000.0  # not the default: the base's config must be read (transformers 5: rope_parameters)
SEQUENCES = [
    [1, 17, 42, 5, 63, 8, 30, 2, 11],
    [1, 3],
    [1, 60, 59, 58, 20, 21, 22, 23, 24, 25, 26, 40, 7],
]
GREEDY_PROMPT = [1, 9, 33, 47]
GREEDY_NEW = 8
LOGIT_TOLERANCE = 1e-4


def randomize_base(named_params, gen):
    """Weights of a useful size (outputs O(1)), rounded to fp16 so the F16 files hold them exactly."""
    with torch.no_grad():
        for name, p in named_params:
            if "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * (0.6 / p.shape[-1] ** 0.5) * 2.0)
            p.copy_(p.half().float())


def floats(t):
    return [float(f"{v:.9g}") for v in t.reshape(-1).tolist()]


def rows(t):
    return [floats(r) for r in t]


def greedy(forward, prompt, n):
    """The peer's own greedy decoding by full forwards; returns tokens and each step's margin."""
    ids = list(prompt)
    margins = []
    for _ in range(n):
        logits = forward(torch.tensor([ids]))[0, -1]
        top = torch.topk(logits, 2).values
        margins.append(float(top[0] - top[1]))
        ids.append(int(torch.argmax(logits)))
    return ids[len(prompt):], min(margins)


def peer_record(forward, base_forward):
    rec = {"sequences": SEQUENCES, "logits": [], "adapter_effect": 0.0}
    with torch.no_grad():
        for seq in SEQUENCES:
            out = forward(torch.tensor([seq]))[0]
            base = base_forward(torch.tensor([seq]))[0]
            rec["logits"].append(rows(out))
            rec["adapter_effect"] = max(rec["adapter_effect"], float((out - base).abs().max()))
        tokens, margin = greedy(forward, GREEDY_PROMPT, GREEDY_NEW)
    rec["greedy"] = {"prompt": GREEDY_PROMPT, "tokens": tokens, "min_margin": margin}
    assert rec["adapter_effect"] > 100 * LOGIT_TOLERANCE, rec["adapter_effect"]
    assert margin > 10 * LOGIT_TOLERANCE, margin
    return rec


def hf_config(n_kv_heads, tied):
    return transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=DIM, intermediate_size=HIDDEN, num_hidden_layers=LAYERS,
        num_attention_heads=HEADS, num_key_value_heads=n_kv_heads, max_position_embeddings=MAX_POS,
        rms_norm_eps=EPS, rope_theta=THETA, tie_word_embeddings=tied, attention_bias=False, mlp_bias=False,
        bos_token_id=1, eos_token_id=2, pad_token_id=0)


def save_hf_f16(model, out_dir):
    """save_pretrained of an fp16 copy: the F16 values equal the float32 model's exactly."""
    half = transformers.LlamaForCausalLM(model.config)
    half.load_state_dict(model.state_dict())
    half.half().save_pretrained(out_dir, safe_serialization=True)


def make_peft(out, gen):
    from peft import AdaptionPromptConfig, get_peft_model

    model = transformers.LlamaForCausalLM(hf_config(2, True)).eval()
    model.config._attn_implementation = "eager"
    randomize_base(model.named_parameters(), gen)
    base_dir = os.path.join(out, "peft_base")
    save_hf_f16(model, base_dir)
    with torch.no_grad():
        base_logits = {tuple(s): model(torch.tensor([s])).logits.clone() for s in SEQUENCES}

    pm = get_peft_model(model, AdaptionPromptConfig(adapter_len=6, adapter_layers=3, task_type="CAUSAL_LM")).eval()
    with torch.no_grad():
        for name, p in pm.named_parameters():
            if name.endswith("adaption_prompt"):
                p.copy_(torch.randn(p.shape, generator=gen))
            elif name.endswith("adaption_gate"):
                p.copy_(torch.rand(p.shape, generator=gen) * 1.6 - 0.8)
    adapter_dir = os.path.join(out, "peft_adapter")
    pm.save_pretrained(adapter_dir)
    os.remove(os.path.join(adapter_dir, "README.md"))  # PEFT's model-card template, not the adapter

    def forward(ids):
        return pm(input_ids=ids).logits

    def base_forward(ids):
        return base_logits[tuple(ids[0].tolist())]

    rec = peer_record(forward, base_forward)
    rec.update(base="peft_base", adapter="peft_adapter", adapter_len=6, adapter_layers=3, n_kv_heads=2)
    return rec


def litgpt_config(n_query_groups, adapter_len, start_layer):
    from litgpt.adapter import Config

    return Config(
        name="tiny-llama", block_size=MAX_POS, vocab_size=VOCAB, padded_vocab_size=VOCAB, n_layer=LAYERS,
        n_head=HEADS, n_embd=DIM, n_query_groups=n_query_groups, rotary_percentage=1.0, parallel_residual=False,
        bias=False, norm_class_name="RMSNorm", norm_eps=EPS, mlp_class_name="LLaMAMLP", intermediate_size=HIDDEN,
        rope_base=int(THETA), adapter_prompt_length=adapter_len, adapter_start_layer=start_layer)


def litgpt_keys_follow_paper(model, config):
    """Does litgpt's adapter use Wk P and Wv P for the prompt (as LLaMA-Adapter does)?"""
    with torch.no_grad():
        model(torch.tensor([[1, 2, 3]]))  # fills each adapted layer's adapter_kv_cache
        hs, groups = config.head_size, config.n_query_groups
        worst = 0.0
        for block in model.transformer.h[config.adapter_start_layer:]:
            attn = block.attn
            prefix = attn.adapter_wte.weight  # [K, dim]
            w = attn.qkv.weight  # [Q; K; V] rows (litgpt/model.py splits it so)
            wk = w[HEADS * hs:(HEADS + groups) * hs]
            wv = w[(HEADS + groups) * hs:]
            k = (prefix @ wk.T).view(-1, groups, hs).transpose(0, 1)  # [groups, K, hs]
            v = (prefix @ wv.T).view(-1, groups, hs).transpose(0, 1)
            q_per_kv = HEADS // groups
            k = k.repeat_interleave(q_per_kv, dim=0)
            v = v.repeat_interleave(q_per_kv, dim=0)
            ak, av = attn.adapter_kv_cache
            worst = max(worst, float((ak[0] - k).abs().max()), float((av[0] - v).abs().max()))
    return worst < 1e-6, worst


def make_litgpt(out, gen):
    import lightning as L
    from litgpt.adapter import GPT
    from litgpt.finetune.adapter import save_adapter_checkpoint
    from litgpt.scripts.convert_lit_checkpoint import copy_weights_llama

    adapter_len, start = 5, 2
    config = litgpt_config(1, adapter_len, start)
    model = GPT(config).eval()
    randomize_base([(n, p) for n, p in model.named_parameters() if "adapter_wte" not in n and "gating" not in n], gen)
    base_state = {k: v.clone() for k, v in model.state_dict().items() if "adapter_wte" not in k and "gating" not in k}

    # The base in the Hugging Face layout by litgpt's own converter (q, k, v rows as litgpt keeps
    # them: rotate-half RoPE, as transformers).
    hf_state = {}
    copy_weights_llama(config, hf_state, base_state)
    hf_state = {k: v.to(torch.float16).contiguous() for k, v in hf_state.items()}
    base_dir = os.path.join(out, "litgpt_base")
    os.makedirs(base_dir, exist_ok=True)
    save_file(hf_state, os.path.join(base_dir, "model.safetensors"), metadata={"format": "pt"})
    cfg = hf_config(1, False)
    cfg.architectures = ["LlamaForCausalLM"]
    cfg.save_pretrained(base_dir)
    # transformers reading that folder gives litgpt's base logits: the layout is right.
    hf = transformers.LlamaForCausalLM.from_pretrained(base_dir, torch_dtype=torch.float32).eval()
    with torch.no_grad():
        base_logits = {}
        worst = 0.0
        for s in SEQUENCES:
            lit = model(torch.tensor([s]))  # all gates are zero still: the base model
            base_logits[tuple(s)] = lit.clone()
            worst = max(worst, float((hf(torch.tensor([s])).logits - lit).abs().max()))
    assert worst < 1e-5, f"litgpt base vs transformers: {worst}"
    model = GPT(config).eval()  # a fresh one: litgpt caches the prompt's keys at the first forward
    model.load_state_dict(base_state, strict=False)

    with torch.no_grad():
        for name, p in model.named_parameters():
            if "adapter_wte" in name:
                p.copy_(torch.randn(p.shape, generator=gen))
            elif "gating_factor" in name:
                p.copy_(torch.rand(p.shape, generator=gen) * 1.6 - 0.8)
    path = os.path.join(out, "litgpt_adapter.pth")
    fabric = L.Fabric(accelerator="cpu", devices=1)
    save_adapter_checkpoint(fabric, model, path)

    def forward(ids):
        return model(ids)

    def base_forward(ids):
        return base_logits[tuple(ids[0].tolist())]

    mqa_ok, mqa_diff = litgpt_keys_follow_paper(model, config)
    assert mqa_ok, mqa_diff
    rec = peer_record(forward, base_forward)
    rec.update(base="litgpt_base", adapter="litgpt_adapter.pth", adapter_len=adapter_len,
               adapter_start_layer=start, n_kv_heads=1, base_vs_transformers_max_diff=worst)

    # The same with two key/value groups: litgpt's prompt keys are other rows of its qkv.
    torch.manual_seed(7)  # litgpt's own initialisation of this probe
    gqa = GPT(litgpt_config(2, adapter_len, start)).eval()
    gqa_ok, gqa_diff = litgpt_keys_follow_paper(gqa, gqa.config)
    rec["prompt_keys_follow_paper"] = {"one_kv_head": {"equal": mqa_ok, "max_diff": mqa_diff},
                                       "two_kv_heads": {"equal": gqa_ok, "max_diff": gqa_diff}}
    rec["litgpt_version"] = importlib.metadata.version("litgpt")
    return rec


def make_official(out, gen):
    """The official v1 layout, written by torch.save, and the same numbers in our format."""
    from collections import OrderedDict

    k, l = 10, 2
    query = torch.randn(DIM, l * k, generator=gen).t()  # a transposed view: torch.save keeps its strides
    sd = OrderedDict()
    sd["adapter_query.weight"] = query
    gates = {}
    for i in range(LAYERS):
        g = (torch.rand(1, HEADS, 1, 1, generator=gen) * 1.6 - 0.8)
        if i < LAYERS - l:
            g = g.half()  # untrained lower layers, fp16 as in the release: ignored by the readers
        gates[i] = g
        sd[f"layers.{i}.attention.gate"] = g
    torch.save(sd, os.path.join(out, "official_adapter.pth"))
    ours = {"adapter_query.weight": query.contiguous()}
    for i in range(LAYERS - l, LAYERS):
        ours[f"layers.{i}.attention.gate"] = gates[i].reshape(HEADS).contiguous()
    meta = {"format": "llama-adapter", "version": "1", "adapter_len": str(k), "adapter_layers": str(l),
            "gate_mode": "identity", "dim": str(DIM), "n_layers": str(LAYERS), "n_heads": str(HEADS)}
    save_file(ours, os.path.join(out, "official_as_ours.safetensors"), metadata=meta)
    return {"adapter": "official_adapter.pth", "ours": "official_as_ours.safetensors", "adapter_len": k,
            "adapter_layers": l, "query_strides": list(query.stride())}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "fixtures",
                                                             "interchange")
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    gen = torch.Generator().manual_seed(20261206)
    ref = {"versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                        "peft": peft.__version__},
           "model": {"dim": DIM, "hidden": HIDDEN, "layers": LAYERS, "heads": HEADS, "vocab": VOCAB},
           "tolerance": LOGIT_TOLERANCE}
    ref["peft"] = make_peft(out, gen)
    ref["litgpt"] = make_litgpt(out, gen)
    ref["versions"]["litgpt"] = ref["litgpt"].pop("litgpt_version")
    ref["official"] = make_official(out, gen)
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump(ref, f, separators=(",", ":"))
        f.write("\n")
    for peer in ("peft", "litgpt"):
        print(peer, "adapter effect", ref[peer]["adapter_effect"], "greedy margin", ref[peer]["greedy"]["min_margin"])
    print("litgpt prompt keys follow the paper:", ref["litgpt"]["prompt_keys_follow_paper"])


if __name__ == "__main__":
    main()
