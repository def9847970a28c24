#!/usr/bin/env python3
"""PyTorch eager reference of one LLaMA-Adapter training step, for speed comparison.

It does the same work as the C++ engine's training step (docs: ../shared/SPEC.md §1-§3):

  * LLaMA decoder (pre-norm, RMSNorm eps 1e-5, SwiGLU FFN, grouped-query attention,
    interleaved RoPE on adjacent pairs (x[2i], x[2i+1]), theta 10000, untied classifier)
    with random frozen weights N(0, 0.02) (norm weights 1);
  * LLaMA-Adapter v1 in the top L layers: adapter_query [L*K, dim] ~ N(0, 1) and a tanh gate
    [L, H] initialised to 0; per head
        out_h = softmax(q Kt^T/sqrt(d) + causal) Vt + tanh(g_h) * softmax(q Kp^T/sqrt(d)) Vp
    with Kp = P Wk^T, Vp = P Wv^T (no norm, no RoPE, no mask), then wo once;
  * next-token cross-entropy (optionally with the first part of every row masked as prompt);
  * AdamW(lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.02) over the two adapter tensors.

With --full it times the full-parameter step instead (`llama-adapter bench --full`, SPEC §12): no
adapter, every base tensor (embedding, norms, every projection, the classifier) requires grad,
and the same AdamW (finetune --full's defaults; weight decay on every tensor, norms included, as
ours) updates all of them.

Plain eager ops only (no torch.compile, no fused attention: torch 1.13 has no
F.scaled_dot_product_attention, so attention is an explicit matmul + softmax).

Run with Debian's torch:   /usr/bin/python3 bench/pytorch_adapter_step.py --shape 110m
Prints one JSON line with the median step time, tokens/s and peak RSS.
`--check` runs correctness assertions (zero-init property, gate gradient, finite differences;
with --full: every tensor's gradient, finite differences on each kind of tensor, one AdamW step).
"""
import os


def _openblas_coretype():
    # Debian's OpenBLAS mis-detects recent AVX-512 AMD EPYCs (slow fallback kernels) unless told;
    # forcing SkylakeX on a CPU without AVX-512 kills the process with SIGILL instead. So: what
    # llama-adapter picks (core/cpu.h), SkylakeX with AVX-512, Haswell with AVX2 only.
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((ln.split(":", 1)[1].split() for ln in f if ln.startswith("flags")), [])
    except OSError:
        return None
    if "avx512f" in flags:
        return "SkylakeX"
    return "Haswell" if "avx2" in flags else None


# Must be set before torch (and with it OpenBLAS) is loaded.
if os.environ.get("LA_OPENBLAS_CORETYPE"):
    os.environ["OPENBLAS_CORETYPE"] = os.environ["LA_OPENBLAS_CORETYPE"]
elif _openblas_coretype():
    os.environ.setdefault("OPENBLAS_CORETYPE", _openblas_coretype())

import argparse
import json
import math
import resource
import statistics
import sys
import time

SHAPES = {
    # name: dim, hidden, n_layers, n_heads, n_kv_heads, vocab, max_seq
    "stories260k": dict(dim=64, hidden=172, n_layers=5, n_heads=8, n_kv_heads=4, vocab=512,
                        max_seq=512),
    "110m": dict(dim=768, hidden=2048, n_layers=12, n_heads=12, n_kv_heads=12, vocab=32000,
                 max_seq=1024),
    "tinyllama-1.1b": dict(dim=2048, hidden=5632, n_layers=22, n_heads=32, n_kv_heads=4,
                           vocab=32000, max_seq=2048),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shape", choices=sorted(SHAPES), default="stories260k")
    p.add_argument("--batch", type=int, default=4, help="sequences per step (B)")
    p.add_argument("--seq", type=int, default=256, help="tokens per sequence (T)")
    p.add_argument("--adapter-len", type=int, default=10, help="K, prompt tokens per layer")
    p.add_argument("--adapter-layers", type=int, default=None,
                   help="L, adapted (top) layers; default: all layers")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=5, help="timed steps")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before timing")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32",
                   help="storage of the frozen weights; bf16 runs the frozen matmuls in "
                        "bfloat16 (explicit casts, no autocast); everything else stays fp32")
    p.add_argument("--prompt-frac", type=float, default=0.0,
                   help="fraction of each row's targets masked out of the loss as 'prompt' "
                        "(0 = every position supervised)")
    p.add_argument("--omp-wait", choices=["passive", "active"], default="passive",
                   help="OMP_WAIT_POLICY for torch's OpenMP pool (unless already set in the "
                        "environment). 'passive' (default) keeps idle workers from spinning: on "
                        "a machine that is also running other jobs, GNU OpenMP's spinning "
                        "threads make every parallel element-wise op wait for a descheduled "
                        "thread (we measured 10-20x slower steps with 'active' under load)")
    p.add_argument("--full", action="store_true",
                   help="full-parameter step: no adapter, every weight trained, AdamW over all")
    p.add_argument("--check", action="store_true",
                   help="run correctness assertions instead of the benchmark")
    return p.parse_args(argv)


ARGS = parse_args()
# Pin the BLAS / OpenMP pools before torch starts them (torch.set_num_threads below as well).
os.environ.setdefault("OMP_NUM_THREADS", str(ARGS.threads))
os.environ.setdefault("OPENBLAS_NUM_THREADS", str(ARGS.threads))
os.environ.setdefault("OMP_WAIT_POLICY", ARGS.omp_wait.upper())

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch.set_num_threads(ARGS.threads)


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------
class Llama:
    """LLaMA base weights: plain frozen tensors, or with trainable=True leaf tensors that
    require grad (full-parameter training)."""

    def __init__(self, cfg, seed, wdtype=torch.float32, cdtype=torch.float32, trainable=False):
        self.cfg = cfg
        self.dim = cfg["dim"]
        self.n_heads = cfg["n_heads"]
        self.n_kv = cfg["n_kv_heads"]
        self.head_dim = self.dim // self.n_heads
        self.wdtype = wdtype  # storage of the frozen matrices
        self.cdtype = cdtype  # compute dtype of activations (fp32; fp64 in --check)
        g = torch.Generator().manual_seed(seed)
        hd, d, hid = self.head_dim, self.dim, cfg["hidden"]

        def w(*shape):
            t = torch.empty(*shape, dtype=cdtype).normal_(0.0, 0.02, generator=g)
            return t.to(wdtype)

        def ones(n):
            return torch.ones(n, dtype=cdtype)

        self.tok_emb = w(cfg["vocab"], d)
        self.layers = []
        for _ in range(cfg["n_layers"]):
            self.layers.append(dict(
                attn_norm=ones(d),
                wq=w(self.n_heads * hd, d),
                wk=w(self.n_kv * hd, d),
                wv=w(self.n_kv * hd, d),
                wo=w(d, self.n_heads * hd),
                ffn_norm=ones(d),
                w1=w(hid, d),
                w2=w(d, hid),
                w3=w(hid, d),
            ))
        self.norm = ones(d)
        self.output = w(cfg["vocab"], d)  # untied classifier
        self.trainable = trainable
        if trainable:
            for t in self.parameters():
                t.requires_grad_(True)

    def parameters(self):
        """Every tensor of the model, in file order (embedding, layers, final norm, classifier)."""
        ps = [self.tok_emb]
        for lw in self.layers:
            ps += list(lw.values())
        return ps + [self.norm, self.output]

    def named_parameters(self):
        names = ["tok_embeddings"]
        for i, lw in enumerate(self.layers):
            names += [f"layers.{i}.{k}" for k in lw]
        return list(zip(names + ["norm", "output"], self.parameters()))

    # frozen matmul y = x W^T; in bf16 mode the activations are cast to bf16 for the matmul
    # (oneDNN bf16 GEMM) and the result back to fp32 -- autograd handles the casts.
    def lin(self, x, wt):
        if wt.dtype != x.dtype:
            return F.linear(x.to(wt.dtype), wt).to(x.dtype)
        return F.linear(x, wt)

    @staticmethod
    def rmsnorm(x, wt, eps=1e-5):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * wt

    def rope_tables(self, T, theta=10000.0):
        hd = self.head_dim
        inv = theta ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)  # theta^(-2i/hd)
        ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]  # [T, hd/2]
        return ang.cos().to(self.cdtype), ang.sin().to(self.cdtype)

    @staticmethod
    def rope(x, cos, sin):
        # x: [B, heads, T, hd]; rotate adjacent pairs (x[2i], x[2i+1])
        x0, x1 = x[..., 0::2], x[..., 1::2]
        r0 = x0 * cos - x1 * sin
        r1 = x0 * sin + x1 * cos
        return torch.stack((r0, r1), dim=-1).flatten(-2)

    def expand_kv(self, t):
        # [B, H_kv, T, hd] -> [B, H, T, hd]: query head h uses kv head h // (H / H_kv)
        rep = self.n_heads // self.n_kv
        return t if rep == 1 else t.repeat_interleave(rep, dim=1)

    def layer(self, x, lw, cos, sin, mask, prompt=None, gate=None):
        B, T, _ = x.shape
        H, Hk, hd = self.n_heads, self.n_kv, self.head_dim
        scale = 1.0 / math.sqrt(hd)
        xn = self.rmsnorm(x, lw["attn_norm"])
        q = self.lin(xn, lw["wq"]).view(B, T, H, hd).transpose(1, 2)
        k = self.lin(xn, lw["wk"]).view(B, T, Hk, hd).transpose(1, 2)
        v = self.lin(xn, lw["wv"]).view(B, T, Hk, hd).transpose(1, 2)
        q = self.rope(q, cos, sin)
        k = self.rope(k, cos, sin)
        k, v = self.expand_kv(k), self.expand_kv(v)
        s = torch.matmul(q, k.transpose(-1, -2)) * scale + mask  # [B, H, T, T]
        out = torch.matmul(torch.softmax(s, dim=-1), v)  # [B, H, T, hd]
        if prompt is not None:
            K = prompt.shape[0]
            kp = self.lin(prompt, lw["wk"]).view(1, K, Hk, hd).transpose(1, 2)  # no norm/rope
            vp = self.lin(prompt, lw["wv"]).view(1, K, Hk, hd).transpose(1, 2)
            kp, vp = self.expand_kv(kp), self.expand_kv(vp)  # [1, H, K, hd]
            sp = torch.matmul(q, kp.transpose(-1, -2)) * scale  # [B, H, T, K], no mask
            outp = torch.matmul(torch.softmax(sp, dim=-1), vp)
            out = out + torch.tanh(gate).view(1, H, 1, 1) * outp
        out = out.transpose(1, 2).reshape(B, T, H * hd)
        h = x + self.lin(out, lw["wo"])
        hn = self.rmsnorm(h, lw["ffn_norm"])
        f = self.lin(F.silu(self.lin(hn, lw["w1"])) * self.lin(hn, lw["w3"]), lw["w2"])
        return h + f

    def logits(self, ids, adapter=None):
        """ids [B, T] -> logits [B, T, V]. adapter = (adapter_query [L*K, dim], gate [L, H])."""
        B, T = ids.shape
        N = len(self.layers)
        L = 0 if adapter is None else adapter[1].shape[0]
        assert not (self.trainable and adapter is not None), "full training takes no adapter"
        first = 0 if self.trainable else N - L  # the lowest layer that needs gradients
        cos, sin = self.rope_tables(T)
        mask = torch.full((T, T), float("-inf"), dtype=self.cdtype).triu(1)
        # Layers below the lowest adapted layer need no gradient: run them under no_grad so
        # autograd records nothing and stores no activations there (what an efficient PyTorch
        # user does; the backward then stops at layer N-L, as in the C++ engine). A trainable
        # (full) model records every layer and the embedding.
        with torch.set_grad_enabled(self.trainable and torch.is_grad_enabled()):
            x = F.embedding(ids, self.tok_emb).to(self.cdtype)
            for li in range(first):
                x = self.layer(x, self.layers[li], cos, sin, mask)
        for li in range(first, N):
            i = li - first
            if adapter is not None:
                K = adapter[0].shape[0] // L
                prompt = adapter[0][i * K:(i + 1) * K]
                x = self.layer(x, self.layers[li], cos, sin, mask, prompt, adapter[1][i])
            else:
                x = self.layer(x, self.layers[li], cos, sin, mask)
        x = self.rmsnorm(x, self.norm)
        return self.lin(x, self.output)


def loss_fn(logits, targets):
    V = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=-100)


def make_batch(cfg, B, T, prompt_frac, seed):
    g = torch.Generator().manual_seed(seed + 1)
    toks = torch.randint(0, cfg["vocab"], (B, T + 1), generator=g)
    ids, targets = toks[:, :T].clone(), toks[:, 1:].clone()
    n_prompt = int(T * prompt_frac)
    if n_prompt > 0:
        targets[:, :n_prompt] = -100
    return ids, targets


def adamw(params):
    # The optimizer of both steps: finetune's defaults (src/la/train/optimizer.h, cmd_finetune.cpp).
    return torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.02)


def make_adapter(cfg, L, K, seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed + 2)
    aq = torch.empty(L * K, cfg["dim"], dtype=dtype).normal_(0.0, 1.0, generator=g)
    gate = torch.zeros(L, cfg["n_heads"], dtype=dtype)
    return aq.requires_grad_(True), gate.requires_grad_(True)


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


# --------------------------------------------------------------------------------------------
# Correctness checks (--check)
# --------------------------------------------------------------------------------------------
def worst_fd_error(f, probes, eps=1e-5):
    """Central differences of the scalar f() at each (tensor, index) probe against the gradient
    backward() left in tensor.grad; asserts each, returns the worst relative error."""
    worst = 0.0
    for t, idx in probes:
        with torch.no_grad():
            old = t[idx].item()
            t[idx] = old + eps
            lp = f().item()
            t[idx] = old - eps
            lm = f().item()
            t[idx] = old
        num, ana = (lp - lm) / (2 * eps), t.grad[idx].item()
        rel = abs(num - ana) / max(1e-12, abs(num) + abs(ana))
        worst = max(worst, rel)
        assert rel < 1e-4 or abs(num - ana) < 1e-9, (tuple(t.shape), idx, num, ana)
    return worst


def run_check(args, cfg, L):
    B, T = min(args.batch, 2), min(args.seq, 64)
    print(f"check: shape={args.shape} B={B} T={T} K={args.adapter_len} L={L}", file=sys.stderr)
    wdt = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    model = Llama(cfg, args.seed, wdtype=wdt)
    ids, targets = make_batch(cfg, B, T, args.prompt_frac, args.seed)
    aq, gate = make_adapter(cfg, L, args.adapter_len, args.seed)

    # 1. zero-init: with all gates 0 the outputs equal the base model's exactly.
    with torch.no_grad():
        base = model.logits(ids)
    out = model.logits(ids, (aq, gate))
    assert torch.equal(out.detach(), base), "gate=0 logits differ from the base model"
    loss = loss_fn(out, targets)
    base_loss = loss_fn(base, targets)
    assert loss.item() == base_loss.item(), (loss.item(), base_loss.item())
    print(f"  ok  gate=0 logits bit-identical to base; loss {loss.item():.6f}", file=sys.stderr)

    # 2. first step: the gate gets a non-zero gradient; adapter_query gets exactly 0
    #    (its only path is multiplied by tanh(0) = 0).
    loss.backward()
    gn = gate.grad.abs().max().item()
    assert gn > 0, "gate gradient is zero on the first step"
    assert aq.grad is None or aq.grad.abs().max().item() == 0.0
    assert gate.grad[0].abs().max().item() > 0, "lowest adapted layer's gate has no gradient"
    print(f"  ok  gate grad max|g| = {gn:.3e} (all {L} layers reached); "
          f"adapter_query grad = 0", file=sys.stderr)

    # 3. after one AdamW step the gates are non-zero and adapter_query gets gradient.
    opt = adamw([aq, gate])
    opt.step()
    opt.zero_grad(set_to_none=True)
    loss2 = loss_fn(model.logits(ids, (aq, gate)), targets)
    loss2.backward()
    assert gate.abs().min().item() > 0
    assert aq.grad.abs().max().item() > 0, "adapter_query gradient is zero after a step"
    print(f"  ok  step 2: loss {loss2.item():.6f}, adapter_query grad max "
          f"{aq.grad.abs().max().item():.3e}", file=sys.stderr)

    # 4. finite differences in float64 (small batch) on both tensors, non-zero gates.
    m64 = Llama(cfg, args.seed, wdtype=torch.float64, cdtype=torch.float64)
    aq64, g64 = make_adapter(cfg, L, args.adapter_len, args.seed, dtype=torch.float64)
    with torch.no_grad():
        g64.copy_(torch.randn(g64.shape, generator=torch.Generator().manual_seed(7),
                              dtype=torch.float64) * 0.5)
    ids1, tg1 = ids[:1], targets[:1]

    def f():
        return loss_fn(m64.logits(ids1, (aq64, g64)), tg1)

    f().backward()
    worst = worst_fd_error(f, [(g64, (0, 0)), (g64, (L - 1, cfg["n_heads"] - 1)), (aq64, (0, 0)),
                               (aq64, (L * args.adapter_len - 1, cfg["dim"] - 1))])
    print(f"  ok  finite differences (fp64): worst rel err {worst:.2e}", file=sys.stderr)
    print(json.dumps({"impl": "pytorch-eager", "check": "ok", "shape": args.shape,
                      "loss_gate0": loss.item(), "gate_grad_maxabs": gn}))


def run_check_full(args, cfg):
    """--full --check: the full step's gradients and update, on the model's every tensor."""
    B, T = min(args.batch, 2), min(args.seq, 32)
    print(f"check --full: shape={args.shape} B={B} T={T}", file=sys.stderr)
    ids, targets = make_batch(cfg, B, T, args.prompt_frac, args.seed)

    # 1. every tensor gets a non-zero gradient (the embedding only in the rows of used tokens).
    model = Llama(cfg, args.seed, trainable=True)
    loss = loss_fn(model.logits(ids), targets)
    loss.backward()
    for name, t in model.named_parameters():
        assert t.grad is not None and t.grad.abs().max().item() > 0, f"{name}: no gradient"
    used = torch.zeros(cfg["vocab"], dtype=torch.bool)
    used[ids.flatten()] = True
    g_emb = model.tok_emb.grad
    assert g_emb[~used].abs().max().item() == 0.0, "embedding rows of unused tokens got gradient"
    print(f"  ok  all {len(model.parameters())} tensors have gradient; loss {loss.item():.6f}",
          file=sys.stderr)

    # 2. the first AdamW step is p (1 - lr wd) - lr g / (|g| + eps) elementwise (m^ = g,
    #    v^ = g^2 at t = 1), for every tensor, and the loss of the same batch falls.
    before = [t.detach().clone() for t in model.parameters()]
    grads = [t.grad.detach().clone() for t in model.parameters()]
    opt = adamw(model.parameters())
    opt.step()
    lr, wd, eps = 1e-3, 0.02, 1e-8
    worst = 0.0
    for (name, t), p0, g in zip(model.named_parameters(), before, grads):
        want = p0 * (1 - lr * wd) - lr * g / (g.abs() + eps)
        err = (t.detach() - want).abs().max().item()
        worst = max(worst, err)
        assert err < 1e-6, f"{name}: AdamW step differs from the closed form by {err:.3e}"
    with torch.no_grad():
        loss2 = loss_fn(model.logits(ids), targets).item()
    assert loss2 < loss.item(), (loss.item(), loss2)
    print(f"  ok  AdamW step 1 = closed form (max err {worst:.1e}); loss {loss.item():.6f} -> "
          f"{loss2:.6f}", file=sys.stderr)

    # 3. finite differences in float64 on entries of every kind of tensor.
    m64 = Llama(cfg, args.seed, wdtype=torch.float64, cdtype=torch.float64, trainable=True)
    ids1, tg1 = ids[:1], targets[:1]

    def f():
        return loss_fn(m64.logits(ids1), tg1)

    f().backward()
    N, tok, tgt = cfg["n_layers"], ids1[0, 0].item(), tg1[0, 0].item()
    probes = [(m64.tok_emb, (tok, 0)), (m64.norm, (1,)), (m64.output, (tgt, 2))]
    for li in (0, N - 1):
        lw = m64.layers[li]
        probes += [(lw["attn_norm"], (3,)), (lw["ffn_norm"], (0,))]
        probes += [(lw[k], (1, 2)) for k in ("wq", "wk", "wv", "wo", "w1", "w2", "w3")]
    worst = worst_fd_error(f, probes)
    print(f"  ok  finite differences (fp64) on {len(probes)} entries: worst rel err {worst:.2e}",
          file=sys.stderr)
    print(json.dumps({"impl": "pytorch-eager", "check": "ok", "full": True, "shape": args.shape,
                      "loss": loss.item(), "loss_after_step": loss2}))


# --------------------------------------------------------------------------------------------
# Benchmark
# --------------------------------------------------------------------------------------------
def main():
    args = ARGS
    cfg = SHAPES[args.shape]
    N = cfg["n_layers"]
    L = N if args.adapter_layers is None else args.adapter_layers
    if not 1 <= L <= N:
        sys.exit(f"--adapter-layers must be in 1..{N} for {args.shape}, got {L}")
    if args.seq > cfg["max_seq"]:
        print(f"note: --seq {args.seq} exceeds {args.shape}'s max_seq {cfg['max_seq']} "
              "(fine for a random-weight benchmark)", file=sys.stderr)
    torch.manual_seed(args.seed)
    if args.check and not args.full:
        run_check(args, cfg, L)
        return

    if args.full and args.dtype != "fp32":
        sys.exit("--full trains fp32 weights (as llama-adapter bench --full): drop --dtype bf16")
    if args.full and args.check:
        run_check_full(args, cfg)
        return
    wdt = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    model = Llama(cfg, args.seed, wdtype=wdt, trainable=args.full)
    ids, targets = make_batch(cfg, args.batch, args.seq, args.prompt_frac, args.seed)
    if args.full:
        adapter, trained = None, model.parameters()
    else:
        adapter = make_adapter(cfg, L, args.adapter_len, args.seed)
        trained = list(adapter)
    opt = adamw(trained)

    # The same batch every step (so the loss visibly goes down); the work is identical.
    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model.logits(ids, adapter), targets)
        loss.backward()
        opt.step()
        return loss.item()

    losses, times = [], []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        losses.append(step())
        dt = time.perf_counter() - t0
        if i >= args.warmup:
            times.append(dt)
        print(f"step {i + 1}{' (warmup)' if i < args.warmup else ''}: loss {losses[-1]:.5f} "
              f"{dt:.3f}s", file=sys.stderr)

    med = statistics.median(times) if times else float("nan")
    ntok = args.batch * args.seq
    print(json.dumps({
        "impl": "pytorch-eager",
        "torch": torch.__version__,
        "shape": args.shape,
        "batch": args.batch,
        "seq": args.seq,
        "full": args.full,
        "adapter_len": None if args.full else args.adapter_len,
        "adapter_layers": None if args.full else L,
        "threads": args.threads,
        "dtype": args.dtype,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "median_step_s": round(med, 6),
        "tokens_per_s": round(ntok / med, 2) if times else None,
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "trainable_params": sum(t.numel() for t in trained),
        "step_times_s": [round(t, 4) for t in times],
    }))


if __name__ == "__main__":
    main()
