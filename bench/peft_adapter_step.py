#!/usr/bin/env python3
"""Hugging Face PEFT `AdaptionPrompt` (LLaMA-Adapter) training step, for speed comparison.

The peer a user would reach for: a `transformers` LlamaForCausalLM wrapped by
`peft.get_peft_model(model, AdaptionPromptConfig(...))`, on PyTorch 2.x, eager or with
`torch.compile`. Same shapes as `llama-adapter bench --shape` (src/la/io/shapes.cpp), random
weights (nothing is downloaded), fp32, untied classifier, RMSNorm eps 1e-5, RoPE theta 10000,
no dropout, no KV cache. One step = forward on random token ids [batch, seq] with
labels = input ids (the causal-LM loss of transformers), backward, AdamW step, zero_grad.
AdamW(lr 1e-3, betas (0.9, 0.95), eps 1e-8, weight decay 0.02) over PEFT's trainable
tensors, as `llama-adapter finetune`.

What PEFT trains is not quite our adapter (see bench/README.md): one gate scalar per adapted
layer (`adaption_gate` [1], applied without tanh) where ours has one per query head ([L, H],
tanh by default), so its trainable count is L*K*dim + L instead of L*K*dim + L*H. The prompt
keys/values are the layer's k_proj/v_proj of the prompt without norm or RoPE, as ours.

Runs in the reference venv (torch 2.x, transformers, peft):
  /work/venv-ref/bin/python bench/peft_adapter_step.py --shape stories260k --steps 3
  /work/venv-ref/bin/python bench/peft_adapter_step.py --shape 110m --threads 2 --compile
Prints one JSON line on stdout (per-step progress on stderr). With --compile, a failure to
compile or run the compiled model prints a JSON line with an "error" field and exits 0.
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time
import traceback

# Same numbers as la::named_shape (src/la/io/shapes.cpp), so --shape means what
# `llama-adapter bench --shape` means.
SHAPES = {
    # name: dim, hidden, n_layers, n_heads, n_kv_heads, vocab, max_seq
    "stories260k": (64, 172, 5, 8, 4, 512, 512),
    "stories15m": (288, 768, 6, 6, 6, 32000, 256),
    "110m": (768, 2048, 12, 12, 12, 32000, 1024),
    "tinyllama-1.1b": (2048, 5632, 22, 32, 4, 32000, 2048),
    "7b": (4096, 11008, 32, 32, 32, 32000, 2048),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shape", choices=list(SHAPES), default="stories260k")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=4, help="sequences per step")
    p.add_argument("--seq", type=int, default=256, help="tokens per sequence")
    p.add_argument("--steps", type=int, default=5, help="timed steps")
    p.add_argument("--warmup", type=int, default=2,
                   help="untimed steps first (with --compile the first one compiles; at least 1)")
    p.add_argument("--adapter-len", type=int, default=10, help="K, prompt tokens per layer")
    p.add_argument("--adapter-layers", type=int, default=None,
                   help="L, adapted (top) layers; default: all layers, as llama-adapter bench")
    p.add_argument("--compile", action="store_true", help="torch.compile the PEFT model")
    p.add_argument("--compile-mode", default=None,
                   help="torch.compile mode (default: torch's default)")
    p.add_argument("--attn", default=None,
                   help="transformers attn_implementation (default: transformers' own choice, "
                        "reported in the JSON; e.g. eager, sdpa)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--omp-wait", choices=["passive", "active"], default="passive",
                   help="OMP_WAIT_POLICY unless already set (passive: see bench/README.md)")
    return p.parse_args(argv)


ARGS = parse_args()
# Thread pools are sized when torch loads: set the environment first.
for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(var, str(ARGS.threads))
os.environ.setdefault("OMP_WAIT_POLICY", ARGS.omp_wait.upper())
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
import transformers  # noqa: E402
import peft  # noqa: E402
from peft import AdaptionPromptConfig, get_peft_model  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

torch.set_num_threads(ARGS.threads)


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def base_record(args, L):
    return {
        "impl": "peft-compile" if args.compile else "peft-eager",
        "shape": args.shape,
        "threads": args.threads,
        "batch": args.batch,
        "seq": args.seq,
        "steps": args.steps,
        "warmup": args.warmup,
        "adapter_len": args.adapter_len,
        "adapter_layers": L,
        "compile": args.compile,
        "compile_mode": args.compile_mode,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }


def llama_config(shape, attn):
    dim, hidden, n_layers, n_heads, n_kv, vocab, max_seq = SHAPES[shape]
    kw = dict(
        vocab_size=vocab, hidden_size=dim, intermediate_size=hidden, num_hidden_layers=n_layers,
        num_attention_heads=n_heads, num_key_value_heads=n_kv, max_position_embeddings=max_seq,
        rms_norm_eps=1e-5, tie_word_embeddings=False, attention_dropout=0.0,
        attention_bias=False, mlp_bias=False, hidden_act="silu", use_cache=False,
        torch_dtype=torch.float32,
    )
    # transformers 5 keeps RoPE settings in rope_parameters; 4.x takes rope_theta.
    if "rope_parameters" in LlamaConfig().to_dict():
        kw["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0}
    else:
        kw["rope_theta"] = 10000.0
    if attn is not None:
        kw["attn_implementation"] = attn
    return LlamaConfig(**kw)


def main():
    args = ARGS
    dim, _, N, H, _, vocab, max_seq = SHAPES[args.shape]
    L = N if args.adapter_layers is None else args.adapter_layers
    K = args.adapter_len
    if not 1 <= L <= N:
        sys.exit(f"--adapter-layers must be in 1..{N} for {args.shape}, got {L}")
    if args.compile and args.warmup < 1:
        sys.exit("--compile needs --warmup >= 1 (the first step compiles)")
    if args.seq > max_seq:
        print(f"note: --seq {args.seq} exceeds {args.shape}'s context {max_seq}",
              file=sys.stderr)
    rec = base_record(args, L)

    torch.manual_seed(args.seed)
    model = LlamaForCausalLM(llama_config(args.shape, args.attn)).to(torch.float32)
    model.train()  # no dropout in the config; train() as a training loop would
    model = get_peft_model(model, AdaptionPromptConfig(adapter_len=K, adapter_layers=L,
                                                       task_type="CAUSAL_LM"))
    cfg = model.get_base_model().config
    rec["attn_implementation"] = getattr(cfg, "_attn_implementation", None)

    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    n_trained = sum(p.numel() for _, p in trained)
    # What PEFT's AdaptionPrompt holds per adapted layer, by tensor kind.
    shapes = {}
    for n, p in trained:
        kind = n.rsplit(".", 1)[-1]
        shapes.setdefault(kind, {"shape": list(p.shape), "count": 0})["count"] += 1
    expected_peft = L * K * dim + L  # prompt [1, K, dim] + gate [1] per layer
    rec.update({
        "trainable_params": n_trained,
        "trainable_tensors": shapes,
        "trainable_params_peft_formula": expected_peft,  # L*K*dim + L
        "trainable_params_ours": L * K * dim + L * H,    # L*K*dim + L*H (gate per head)
        "trainable_count_matches_formula": n_trained == expected_peft,
    })
    if n_trained != expected_peft:
        print(f"warning: PEFT trains {n_trained} values, expected L*K*dim + L = {expected_peft}",
              file=sys.stderr)

    opt = torch.optim.AdamW([p for _, p in trained], lr=1e-3, betas=(0.9, 0.95), eps=1e-8,
                            weight_decay=0.02)
    g = torch.Generator().manual_seed(args.seed + 1)
    ids = torch.randint(0, vocab, (args.batch, args.seq), generator=g)

    run = model
    if args.compile:
        try:
            run = torch.compile(model, mode=args.compile_mode)
        except Exception as e:  # noqa: BLE001 - report, don't crash the comparison
            rec["error"] = f"torch.compile: {type(e).__name__}: {e}"[:2000]
            print(json.dumps(rec))
            return

    # The same batch every step (the loss goes down); the work is identical.
    def step():
        out = run(input_ids=ids, labels=ids)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return out.loss.item()

    losses, times = [], []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        try:
            losses.append(step())
        except Exception as e:  # noqa: BLE001
            if not args.compile:
                raise
            traceback.print_exc(file=sys.stderr)
            rec["error"] = f"compiled step {i + 1}: {type(e).__name__}: {e}"[:2000]
            rec["peak_rss_mib"] = round(peak_rss_mib(), 1)
            print(json.dumps(rec))
            return
        dt = time.perf_counter() - t0
        if i == 0:
            rec["first_step_s"] = round(dt, 4)  # includes compilation with --compile
        if i >= args.warmup:
            times.append(dt)
        print(f"step {i + 1}{' (warmup)' if i < args.warmup else ''}: loss {losses[-1]:.5f} "
              f"{dt:.3f}s", file=sys.stderr)

    med = statistics.median(times) if times else float("nan")
    gates = [p.detach().flatten().tolist() for n, p in trained if n.endswith("adaption_gate")]
    rec.update({
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "median_step_s": round(med, 6),
        "train_tok_s": round(args.batch * args.seq / med, 2) if times else None,
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "gate_moved": any(abs(v) > 0 for gv in gates for v in gv),
        "step_times_s": [round(t, 4) for t in times],
    })
    print(json.dumps(rec))


if __name__ == "__main__":
    main()
