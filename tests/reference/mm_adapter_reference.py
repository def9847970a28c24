#!/usr/bin/env python3
"""Float64 reference for evaluating a multi-modal LLaMA-Adapter (SPEC §2, §3, §8), written with
PyTorch, transformers' CLIP and a LLaMA of our own (the helpers of full_step_reference.py),
independent of the C++ code.

It reads the real stories260K (dim 64, 5 layers, 8 heads, 4 kv heads) and tok512.model from the
shared data folder and tiny_clip_a (written by clip_fixtures.py: E = 16, 6 blocks, so the
multi-scale layers are 2, 4, 6 and visual_proj.fc1 takes 48 values), and writes to the fixture
folder (tests/fixtures/clip):
  mm_adapter.safetensors          a random multi-modal adapter: K=3, L=2 (layers 3 and 4), gate
                                  mode tanh, adapter_query N(0,1), gates N(0,0.5), visual_proj
                                  (W=8) all N(0,0.3); F32, SPEC §5/§8 key names and metadata
  mm_adapter_fc2zero.safetensors  the same with visual_proj.fc2 weight and bias zero
  mm_records.json                 6 Alpaca records, 4 with an "image" (relative to this folder;
                                  one image used twice), 2 without
  mm_reference.json               float64 results: each image's features and
                                  I_p = fc2(gelu_erf(fc1(features))), and for four runs (the
                                  adapter with images; the fc2-zero adapter with images; the
                                  adapter with no images at all; the base model alone) the
                                  masked cross-entropy sum and supervised token count of every
                                  record and the total loss = sum / tokens (SPEC §3)

In an adapted layer l the prompt is P_l + I_p on each of its K rows (P_l alone without an image),
Kp = P Wk^T, Vp = P Wv^T (no norm, no RoPE), and per head
  out_h = softmax(q Kt^T/sqrt(d) + causal) Vt + tanh(g_h) * softmax(q Kp^T/sqrt(d)) Vp
with q after RoPE and kv head h // (H/KV), then wo. Preprocessing: PIL exactly as
clip_fixtures.py (convert RGB, bicubic resize, centre crop at 32 px), /255, CLIP mean/std.

Checks run on every invocation: the fc2-zero adapter's image records equal the text-only run
exactly, and with all gates 0 every record equals the base model exactly.

Rerun (after clip_fixtures.py; the venv from scripts/reference-venv.sh):
  /work/venv-ref/bin/python tests/reference/mm_adapter_reference.py /work/shared/data tests/fixtures/clip
"""
import json
import math
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import clip_fixtures  # noqa: E402
from full_step_reference import forward_loss, load_llama2c, tokenize  # noqa: E402

ADAPTER_LEN = 3
ADAPTER_LAYERS = 2
PROJ_WIDTH = 8
CLIP_DIR = "tiny_clip_a"
MAX_SEQ_LEN = 512
SEED = 4242

RECORDS = [
    {"instruction": "Describe the picture.", "input": "", "output": "A little red ball sat on the green grass.",
     "image": "images/rgb_37x23.jpg"},
    {"instruction": "What colour is the sky?", "input": "", "output": "The sky is blue and the sun is warm."},
    {"instruction": "What is in the image?", "input": "Look at it closely.", "output": "A small cat by the door.",
     "image": "images/rgba_23x45.png"},
    {"instruction": "Tell a short story.", "input": "", "output": "Once upon a time, there was a happy dog named Max."},
    {"instruction": "Describe the picture.", "input": "", "output": "The sun is big and bright over the hill.",
     "image": "images/photo_300x200.jpg"},
    {"instruction": "Is it day or night?", "input": "The same picture as before.", "output": "It is day.",
     "image": "images/rgb_37x23.jpg"},
]


def gelu_erf(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def make_adapter(cfg, clip_feat_dim):
    """Random adapter parameters, drawn in float64 and rounded to float32 (what the file holds)."""
    g = torch.Generator().manual_seed(SEED)

    def normal(shape, std):
        return (torch.randn(shape, generator=g, dtype=torch.float64) * std).to(torch.float32).to(torch.float64)
    return {
        "adapter_query": normal((ADAPTER_LAYERS * ADAPTER_LEN, cfg["dim"]), 1.0),
        "gate": normal((ADAPTER_LAYERS, cfg["heads"]), 0.5),
        "fc1.weight": normal((PROJ_WIDTH, clip_feat_dim), 0.3),
        "fc1.bias": normal((PROJ_WIDTH,), 0.3),
        "fc2.weight": normal((cfg["dim"], PROJ_WIDTH), 0.3),
        "fc2.bias": normal((cfg["dim"],), 0.3),
    }


def write_safetensors(path, tensors, metadata):
    """A safetensors file with F32 tensors, written here (not with safetensors.save_file, whose
    header order varies from run to run) so that reruns are byte-identical."""
    header, blobs, off = {"__metadata__": metadata}, [], 0
    for name in sorted(tensors):
        data = tensors[name].to(torch.float32).contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def save_adapter(path, cfg, a, clip_layers, clip_embed_dim, clip_image_size):
    first = cfg["layers"] - ADAPTER_LAYERS
    t = {"adapter_query.weight": a["adapter_query"]}
    for i in range(ADAPTER_LAYERS):
        t["layers.%d.attention.gate" % (first + i)] = a["gate"][i]
    for k in ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"):
        t["visual_proj." + k] = a[k]
    meta = {"format": "llama-adapter", "version": "1", "adapter_len": str(ADAPTER_LEN),
            "adapter_layers": str(ADAPTER_LAYERS), "gate_mode": "tanh", "dim": str(cfg["dim"]),
            "n_layers": str(cfg["layers"]), "n_heads": str(cfg["heads"]), "visual": "clip",
            "clip_layers": ",".join(str(s) for s in clip_layers), "clip_embed_dim": str(clip_embed_dim),
            "clip_image_size": str(clip_image_size)}
    write_safetensors(path, t, meta)


def visual_prompt(a, features):
    """I_p = fc2(gelu_erf(fc1(features))), [dim]."""
    h = gelu_erf(a["fc1.weight"] @ features + a["fc1.bias"])
    return a["fc2.weight"] @ h + a["fc2.bias"]


def forward_loss_adapter(cfg, p, toks, prompt_len, a, ip):
    """forward_loss of full_step_reference.py with the adapter in the top ADAPTER_LAYERS layers
    (the same operations in the same order, so that zero gates give its result bit for bit).
    ip: the image's I_p [dim], or None."""
    H, KV, hd = cfg["heads"], cfg["kv_heads"], cfg["hd"]
    first = cfg["layers"] - ADAPTER_LAYERS

    def prompt_branch(l, q, o):
        if l < first:
            return o
        i = l - first
        P = a["adapter_query"][i * ADAPTER_LEN:(i + 1) * ADAPTER_LEN]
        if ip is not None:
            P = P + ip[None, :]
        kp = (P @ p["wk"][l].T).view(ADAPTER_LEN, KV, hd).repeat_interleave(H // KV, dim=1)
        vp = (P @ p["wv"][l].T).view(ADAPTER_LEN, KV, hd).repeat_interleave(H // KV, dim=1)
        sp = (q.transpose(0, 1) @ kp.transpose(0, 1).transpose(1, 2)) / hd ** 0.5  # [H, T, K]
        op = sp.softmax(-1) @ vp.transpose(0, 1)  # [H, T, hd]
        return o + torch.tanh(a["gate"][i])[:, None, None] * op

    return forward_loss(cfg, p, toks, prompt_len, prompt_branch)


def run(examples, loss_of, adapter_file, with_images):
    recs, total, count = [], 0.0, 0
    for (toks, pl), r in examples:
        s, c = loss_of(toks, pl, r)
        recs.append({"image": r.get("image") if with_images else None, "loss_sum": s.item(), "tokens": c})
        total, count = total + s.item(), count + c
    # Sum in record order in Python floats (the per-record sums are exact float64 values).
    return {"adapter": adapter_file, "images": with_images, "loss": total / count,
            "perplexity": math.exp(total / count), "loss_sum": total, "tokens": count, "examples": len(recs),
            "records": recs}


def main():
    import PIL
    import sentencepiece
    import transformers
    from transformers import CLIPModel

    torch.set_num_threads(2)
    shared = sys.argv[1]
    out = sys.argv[2] if len(sys.argv) > 2 else "tests/fixtures/clip"
    sp = sentencepiece.SentencePieceProcessor(model_file=os.path.join(shared, "llama2c", "tok512.model"))
    cfg, p = load_llama2c(os.path.join(shared, "llama2c", "stories260K.bin"))

    clip = CLIPModel.from_pretrained(os.path.join(out, CLIP_DIR)).eval()
    vc = clip.config.vision_config
    layers = clip_fixtures.clip_layers(vc.num_hidden_layers)
    E = clip.config.projection_dim
    a = make_adapter(cfg, len(layers) * E)
    a0 = dict(a, **{"fc2.weight": torch.zeros_like(a["fc2.weight"]), "fc2.bias": torch.zeros_like(a["fc2.bias"])})
    save_adapter(os.path.join(out, "mm_adapter.safetensors"), cfg, a, layers, E, vc.image_size)
    save_adapter(os.path.join(out, "mm_adapter_fc2zero.safetensors"), cfg, a0, layers, E, vc.image_size)
    with open(os.path.join(out, "mm_records.json"), "w") as f:
        json.dump(RECORDS, f, indent=1)
        f.write("\n")

    # Each distinct image once: PIL preprocessing, CLIP float64, the projection.
    images = {}
    for r in RECORDS:
        if "image" in r and r["image"] not in images:
            u8, _, _ = clip_fixtures.preprocess_u8(os.path.join(out, r["image"]), vc.image_size)
            _, feats, _ = clip_fixtures.clip_outputs(clip, clip_fixtures.normalise(u8), torch.float64)
            f64 = torch.from_numpy(feats)
            images[r["image"]] = {"features": f64, "I_p": visual_prompt(a, f64), "I_p_fc2zero": visual_prompt(a0, f64)}
            assert torch.count_nonzero(images[r["image"]]["I_p_fc2zero"]) == 0

    examples = [(tokenize(sp, r, MAX_SEQ_LEN), r) for r in RECORDS]
    with torch.no_grad():
        runs = {
            "adapter": run(examples, lambda t, pl, r: forward_loss_adapter(
                cfg, p, t, pl, a, images[r["image"]]["I_p"] if "image" in r else None),
                "mm_adapter.safetensors", True),
            "fc2zero": run(examples, lambda t, pl, r: forward_loss_adapter(
                cfg, p, t, pl, a0, images[r["image"]]["I_p_fc2zero"] if "image" in r else None),
                "mm_adapter_fc2zero.safetensors", True),
            "text_only": run(examples, lambda t, pl, r: forward_loss_adapter(cfg, p, t, pl, a, None),
                             "mm_adapter.safetensors", False),
            "base": run(examples, lambda t, pl, r: forward_loss(cfg, p, t, pl), None, False),
        }
        # Sanity: fc2 = 0 is the text-only model exactly; zero gates are the base model exactly.
        for x, y in zip(runs["fc2zero"]["records"], runs["text_only"]["records"]):
            assert x["loss_sum"] == y["loss_sum"] and x["tokens"] == y["tokens"], (x, y)
        assert runs["fc2zero"]["loss"] == runs["text_only"]["loss"]
        az = dict(a, gate=torch.zeros_like(a["gate"]))
        gz = run(examples, lambda t, pl, r: forward_loss_adapter(
            cfg, p, t, pl, az, images[r["image"]]["I_p"] if "image" in r else None), None, True)
        for x, y in zip(gz["records"], runs["base"]["records"]):
            assert x["loss_sum"] == y["loss_sum"] and x["tokens"] == y["tokens"], (x, y)
        # The images change something: every image record differs from its text-only loss.
        for x, y in zip(runs["adapter"]["records"], runs["text_only"]["records"]):
            assert (x["image"] is None) == (x["loss_sum"] == y["loss_sum"]), (x, y)

    result = {
        "generator": "tests/reference/mm_adapter_reference.py", "torch": torch.__version__,
        "transformers": transformers.__version__, "pillow": PIL.__version__,
        "model": "SHARED/llama2c/stories260K.bin", "tokenizer": "SHARED/llama2c/tok512.model",
        "clip": CLIP_DIR, "data": "mm_records.json", "max_seq_len": MAX_SEQ_LEN,
        "adapter": {"adapter_len": ADAPTER_LEN, "adapter_layers": ADAPTER_LAYERS, "gate_mode": "tanh",
                    "visual_proj_width": PROJ_WIDTH, "clip_layers": layers, "clip_embed_dim": E,
                    "clip_image_size": vc.image_size},
        "images": {k: {"features": v["features"].tolist(), "I_p": v["I_p"].tolist()} for k, v in images.items()},
        "runs": runs,
    }
    with open(os.path.join(out, "mm_reference.json"), "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print(" ".join("%s %.6f" % (k, v["loss"]) for k, v in runs.items()))


if __name__ == "__main__":
    main()
