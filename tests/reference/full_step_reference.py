#!/usr/bin/python3
"""Float64 reference for `finetune --full` (SPEC §12), written with PyTorch (Debian's
python3-torch) and SentencePiece (python3-sentencepiece), independent of our C++ code.

It reads a llama2.c checkpoint, tokenizes Alpaca records with the paper's template, runs
`steps` full-parameter AdamW steps (every tensor trainable, PyTorch's own torch.optim.AdamW,
constant learning rate, examples in file order, epochs of whole batches) and prints, as JSON, each step's mean masked
loss and global gradient norm, then the held-out loss of the trained model. The test
test_full_train.cpp (FullReference) runs the same steps through the CLI and compares with the
fixture this writes: tests/fixtures/full_step_stories260k.json.

  /usr/bin/python3 tests/reference/full_step_reference.py ../shared/data > tests/fixtures/full_step_stories260k.json
"""
import json
import struct
import sys

import sentencepiece
import torch

torch.set_default_dtype(torch.float64)

# The run the fixture describes (the C++ test passes the same flags).
SETTINGS = {"train_records": 24, "heldout_records": 16, "batch_size": 8, "steps": 3, "lr": 2e-3,
            "weight_decay": 0.02, "max_seq_len": 256}


def prompt_of(r):
    if r.get("input"):
        return ("Below is an instruction that describes a task, paired with an input that provides further "
                "context. Write a response that appropriately completes the request.\n\n### Instruction:\n"
                + r["instruction"] + "\n\n### Input:\n" + r["input"] + "\n\n### Response:")
    return ("Below is an instruction that describes a task. Write a response that appropriately completes the "
            "request.\n\n### Instruction:\n" + r["instruction"] + "\n\n### Response:")


def tokenize(sp, r, max_len):
    p = prompt_of(r)
    prompt_len = 1 + len(sp.encode(p))
    toks = [sp.bos_id()] + sp.encode(p + r["output"]) + [sp.eos_id()]
    return toks[:max_len], prompt_len


def load_llama2c(path):
    with open(path, "rb") as f:
        dim, hidden, layers, heads, kv_heads, vocab, seq = struct.unpack("7i", f.read(28))
        data = torch.frombuffer(bytearray(f.read()), dtype=torch.float32).to(torch.float64)
    shared = vocab > 0
    vocab = abs(vocab)
    hd = dim // heads
    shapes = [("emb", (vocab, dim)), ("rms_att", (layers, dim)), ("wq", (layers, dim, dim)),
              ("wk", (layers, kv_heads * hd, dim)), ("wv", (layers, kv_heads * hd, dim)), ("wo", (layers, dim, dim)),
              ("rms_ffn", (layers, dim)), ("w1", (layers, hidden, dim)), ("w2", (layers, dim, hidden)),
              ("w3", (layers, hidden, dim)), ("rms_final", (dim,)), ("freq_real", (seq, hd // 2)),
              ("freq_imag", (seq, hd // 2))]
    if not shared:
        shapes.append(("wcls", (vocab, dim)))
    p, off = {}, 0
    for name, shape in shapes:
        n = 1
        for s in shape:
            n *= s
        p[name] = data[off:off + n].reshape(shape).clone()
        off += n
    del p["freq_real"], p["freq_imag"]
    cfg = dict(dim=dim, layers=layers, heads=heads, kv_heads=kv_heads, hd=hd, shared=shared)
    return cfg, p


def rmsnorm(x, w):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-5) * w


def rope(x, pos, hd):
    # Interleaved pairs (x[2i], x[2i+1]), frequency 10000^(-2i/hd).
    freqs = 1.0 / (10000.0 ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    ang = pos[:, None] * freqs[None, :]
    c, s = torch.cos(ang)[:, None, :], torch.sin(ang)[:, None, :]
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x0 * c - x1 * s
    out[..., 1::2] = x0 * s + x1 * c
    return out


def forward_loss(cfg, p, toks, prompt_len, prompt_branch=None):
    """Sum of the cross-entropies of the supervised targets of one sequence, and their count.
    prompt_branch(l, q, o): an adapter's term for layer l, given the queries after RoPE [T, H, hd]
    and the token attention's output [H, T, hd]; returns the new output (mm_adapter_reference.py)."""
    T = len(toks) - 1
    D, H, KV, hd = cfg["dim"], cfg["heads"], cfg["kv_heads"], cfg["hd"]
    x = p["emb"][torch.tensor(toks[:-1])]
    pos = torch.arange(T, dtype=torch.float64)
    mask = torch.full((T, T), float("-inf")).triu(1)
    for l in range(cfg["layers"]):
        xn = rmsnorm(x, p["rms_att"][l])
        q = rope((xn @ p["wq"][l].T).view(T, H, hd), pos, hd)
        k = rope((xn @ p["wk"][l].T).view(T, KV, hd), pos, hd)
        v = (xn @ p["wv"][l].T).view(T, KV, hd)
        k = k.repeat_interleave(H // KV, dim=1)
        v = v.repeat_interleave(H // KV, dim=1)
        att = (q.transpose(0, 1) @ k.transpose(0, 1).transpose(1, 2)) / hd ** 0.5 + mask
        o = att.softmax(-1) @ v.transpose(0, 1)  # [H, T, hd]
        if prompt_branch is not None:
            o = prompt_branch(l, q, o)
        o = o.transpose(0, 1).reshape(T, D)
        x = x + o @ p["wo"][l].T
        xn = rmsnorm(x, p["rms_ffn"][l])
        x = x + (torch.nn.functional.silu(xn @ p["w1"][l].T) * (xn @ p["w3"][l].T)) @ p["w2"][l].T
    logits = rmsnorm(x, p["rms_final"]) @ (p["emb"] if cfg["shared"] else p["wcls"]).T
    targets = torch.tensor(toks[1:])
    sup = torch.tensor([t + 1 >= prompt_len for t in range(T)])
    ce = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    return ce[sup].sum(), int(sup.sum())


def main():
    shared = sys.argv[1]
    sp = sentencepiece.SentencePieceProcessor(model_file=shared + "/llama2c/tok512.model")
    records = json.load(open(shared + "/alpaca/alpaca_data_1k_subset.json"))
    n_train, n_held = SETTINGS["train_records"], SETTINGS["heldout_records"]
    # Examples whose every target is masked after truncation train nothing and are left out.
    def supervised(toks, pl):
        return sum(1 for t in range(len(toks) - 1) if t + 1 >= pl) > 0
    train = [e for e in (tokenize(sp, r, SETTINGS["max_seq_len"]) for r in records[:n_train]) if supervised(*e)]
    held = [e for e in (tokenize(sp, r, SETTINGS["max_seq_len"]) for r in records[n_train:n_train + n_held])
            if supervised(*e)]
    cfg, p = load_llama2c(shared + "/llama2c/stories260K.bin")
    params = [p[k].requires_grad_() for k in p]
    opt = torch.optim.AdamW(params, lr=SETTINGS["lr"], betas=(0.9, 0.95), eps=1e-8,
                            weight_decay=SETTINGS["weight_decay"])
    B = SETTINGS["batch_size"]
    steps = []
    per_epoch = len(train) // B  # the last partial batch of an epoch is dropped; file order
    for s in range(SETTINGS["steps"]):
        i = s % per_epoch
        batch = train[i * B:(i + 1) * B]
        opt.zero_grad()
        total, count = 0.0, 0
        for toks, pl in batch:
            l, c = forward_loss(cfg, p, toks, pl)
            total, count = total + l, count + c
        loss = total / count
        loss.backward()
        gnorm = torch.sqrt(sum((t.grad ** 2).sum() for t in params))
        steps.append({"loss": loss.item(), "grad_norm": gnorm.item()})
        opt.step()
    with torch.no_grad():
        total, count = 0.0, 0
        for toks, pl in held:
            l, c = forward_loss(cfg, p, toks, pl)
            total, count = total + l, count + c
    print(json.dumps({"generator": "tests/reference/full_step_reference.py", "torch": torch.__version__,
                      "settings": SETTINGS, "steps": steps, "heldout_loss": (total / count).item()}, indent=1))


if __name__ == "__main__":
    main()
