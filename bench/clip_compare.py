#!/usr/bin/env python3
"""CLIP image encoding: llama-adapter against transformers (eager and torch.compile) and, when
built, llama.cpp's clip.cpp; CLIP preprocessing against PIL; the multi-modal training step
against the text-only one (docs/PERFORMANCE.md, "Issue 13: CLIP encoding and the multi-modal
step"). Needs torch 2.x, transformers, pillow, numpy, safetensors (CPU is enough).

  python bench/clip_compare.py make-model /tmp/vitl14            # random ViT-L/14 @224, HF format, f32
  python bench/clip_compare.py make-jpeg /tmp/big.jpg            # a 1920x1080 JPEG (red_apple upscaled)
  python bench/clip_compare.py gguf /tmp/vitl14 /tmp/vitl14-f16.gguf --type f16
                                                                 # llama.cpp mmproj GGUF of the same weights
  python bench/clip_compare.py check --clip /tmp/vitl14 [--llama-bench BIN --gguf F.gguf ...]
  python bench/clip_compare.py time --clip /tmp/vitl14 --rounds 7 [--ours-gguf G]
        [--llama-bench BIN --gguf A --gguf B --llama-fa=-1,0]     # bench/build_llama_clip.sh builds BIN
  python bench/clip_compare.py preprocess --clip /tmp/vitl14 --image red_apple.jpg --image /tmp/big.jpg
  python bench/clip_compare.py step --rounds 3                   # bench --images vs text-only

Threads: --threads (2) sets OMP_NUM_THREADS for every child and torch.set_num_threads.
The weights are random (transformers' own initialisation, seed 0); keep them out of the
repository. Ours: `encode-image --repeat 2`: "ours_first" is the first encode of a fresh
process (the mapped weights' first touch included), "ours" the second, warm, as the peers are.
"""
import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LA = os.path.join(ROOT, "build", "bin", "llama-adapter")
APPLE = os.path.join(ROOT, "..", "shared", "data", "clip", "red_apple.jpg")
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


def env(threads):
    e = dict(os.environ)
    e["OMP_NUM_THREADS"] = str(threads)
    return e


# ---- the model ---------------------------------------------------------------------------------

def make_model(out, seed=0):
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
    torch.manual_seed(seed)
    cfg = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                           num_attention_heads=16, image_size=224, patch_size=14, projection_dim=768,
                           hidden_act="quick_gelu", layer_norm_eps=1e-5, num_channels=3)
    m = CLIPVisionModelWithProjection(cfg).float().eval()
    m.save_pretrained(out, safe_serialization=True)
    print(f"{out}: {sum(p.numel() for p in m.parameters()):,} parameters")


def load_hf(path):
    from transformers import CLIPVisionModelWithProjection
    return CLIPVisionModelWithProjection.from_pretrained(path, dtype="float32").eval()


# ---- preprocessing (CLIP's transform on PIL, SPEC §8) ------------------------------------------

def clip_pixels(path, size=224):
    """[3, size, size] float32: decode, RGB, bicubic resize of the shorter side, centre crop, normalise."""
    import numpy as np
    from PIL import Image
    im = Image.open(path).convert("RGB")
    w, h = im.size
    if w <= h:
        nw, nh = size, int(size * h / w)
    else:
        nw, nh = int(size * w / h), size
    im = im.resize((nw, nh), Image.BICUBIC)
    left, top = int(round((nw - size) / 2)), int(round((nh - size) / 2))
    im = im.crop((left, top, left + size, top + size))
    x = np.asarray(im, dtype=np.float32) / 255.0
    x = (x - np.array(MEAN, dtype=np.float32)) / np.array(STD, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def make_jpeg(out, w=1920, h=1080):
    from PIL import Image
    Image.open(APPLE).convert("RGB").resize((w, h), Image.BICUBIC).save(out, quality=90)
    print(f"{out}: {w}x{h}")


# ---- llama.cpp's CLIP GGUF (mmproj) ------------------------------------------------------------

GGUF_T = {"f32": 0, "f16": 1}


def write_gguf(hf_dir, out, typ="f32", proj_hidden=64, seed=1):
    """llama.cpp's CLIP naming (clip.vision.*, v.*), projector "mlp" (LLaVA: mm.0 -> GELU -> mm.2,
    applied to every patch) made tiny (1024 -> 64 -> 64, random) so that it costs nothing next to
    the tower; feature_layer = [N] so that all N blocks run (LLaVA's default stops one short) and
    post_ln is applied. visual_projection.weight is kept too: llama-adapter reads the same file."""
    import numpy as np
    from safetensors.numpy import load_file
    cfg = json.load(open(os.path.join(hf_dir, "config.json")))
    cfg = cfg.get("vision_config", cfg)
    sd = load_file(os.path.join(hf_dir, "model.safetensors"))
    W, N = cfg["hidden_size"], cfg["num_hidden_layers"]
    rng = np.random.default_rng(seed)
    tensors = []  # (name, array in PyTorch order, keep f32)

    def add(name, a, vector=False):
        tensors.append((name, np.ascontiguousarray(a, dtype=np.float32), vector))

    vm = "vision_model."
    add("v.patch_embd.weight", sd[vm + "embeddings.patch_embedding.weight"])
    add("v.class_embd", sd[vm + "embeddings.class_embedding"], True)
    add("v.position_embd.weight", sd[vm + "embeddings.position_embedding.weight"], True)
    add("v.pre_ln.weight", sd[vm + "pre_layrnorm.weight"], True)
    add("v.pre_ln.bias", sd[vm + "pre_layrnorm.bias"], True)
    for i in range(N):
        p = f"{vm}encoder.layers.{i}."
        for ours, hf in (("attn_q", "self_attn.q_proj"), ("attn_k", "self_attn.k_proj"),
                         ("attn_v", "self_attn.v_proj"), ("attn_out", "self_attn.out_proj"),
                         ("ffn_up", "mlp.fc1"), ("ffn_down", "mlp.fc2")):
            add(f"v.blk.{i}.{ours}.weight", sd[p + hf + ".weight"])
            add(f"v.blk.{i}.{ours}.bias", sd[p + hf + ".bias"], True)
        for ours, hf in (("ln1", "layer_norm1"), ("ln2", "layer_norm2")):
            add(f"v.blk.{i}.{ours}.weight", sd[p + hf + ".weight"], True)
            add(f"v.blk.{i}.{ours}.bias", sd[p + hf + ".bias"], True)
    add("v.post_ln.weight", sd[vm + "post_layernorm.weight"], True)
    add("v.post_ln.bias", sd[vm + "post_layernorm.bias"], True)
    add("visual_projection.weight", sd["visual_projection.weight"])
    add("mm.0.weight", rng.normal(0, 0.02, (proj_hidden, W)))
    add("mm.0.bias", np.zeros(proj_hidden), True)
    add("mm.2.weight", rng.normal(0, 0.02, (proj_hidden, proj_hidden)))
    add("mm.2.bias", np.zeros(proj_hidden), True)

    def s(x):
        b = x.encode()
        return struct.pack("<Q", len(b)) + b
    kv = []  # (key, type id, payload)
    U32, F32, BOOL, STR, ARR = 4, 6, 7, 8, 9
    def k_u32(k, v): kv.append(s(k) + struct.pack("<II", U32, v))
    def k_f32(k, v): kv.append(s(k) + struct.pack("<If", F32, v))
    def k_bool(k, v): kv.append(s(k) + struct.pack("<IB", BOOL, 1 if v else 0))
    def k_str(k, v): kv.append(s(k) + struct.pack("<I", STR) + s(v))
    def k_farr(k, v): kv.append(s(k) + struct.pack("<IIQ", ARR, F32, len(v)) + struct.pack(f"<{len(v)}f", *v))
    def k_iarr(k, v): kv.append(s(k) + struct.pack("<IIQ", ARR, 5, len(v)) + struct.pack(f"<{len(v)}i", *v))
    k_str("general.architecture", "clip")
    k_str("general.name", "random ViT-L/14 (llama-adapter bench)")
    k_u32("general.file_type", GGUF_T[typ])
    k_bool("clip.has_vision_encoder", True)
    k_bool("clip.has_text_encoder", False)
    k_str("clip.projector_type", "mlp")
    k_bool("clip.use_gelu", cfg.get("hidden_act", "quick_gelu") != "quick_gelu")
    k_u32("clip.vision.image_size", cfg["image_size"])
    k_u32("clip.vision.patch_size", cfg["patch_size"])
    k_u32("clip.vision.embedding_length", W)
    k_u32("clip.vision.feed_forward_length", cfg["intermediate_size"])
    k_u32("clip.vision.projection_dim", cfg.get("projection_dim", 768))
    k_u32("clip.vision.attention.head_count", cfg["num_attention_heads"])
    k_f32("clip.vision.attention.layer_norm_epsilon", cfg.get("layer_norm_eps", 1e-5))
    k_u32("clip.vision.block_count", N)
    k_iarr("clip.vision.feature_layer", [N])
    k_farr("clip.vision.image_mean", MEAN)
    k_farr("clip.vision.image_std", STD)

    ALIGN = 32
    infos, blobs, off = [], [], 0
    for name, a, vector in tensors:
        t = "f32" if (vector or typ == "f32") else typ
        data = (a.astype(np.float16) if t == "f16" else a).tobytes()
        ne = list(reversed(a.shape))  # ggml: ne[0] is the innermost dimension
        infos.append(s(name) + struct.pack("<I", len(ne)) + struct.pack(f"<{len(ne)}Q", *ne)
                     + struct.pack("<IQ", GGUF_T[t], off))
        pad = (-len(data)) % ALIGN
        blobs.append(data + b"\0" * pad)
        off += len(data) + pad
    with open(out, "wb") as f:
        f.write(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv)))
        for x in kv: f.write(x)
        for x in infos: f.write(x)
        f.write(b"\0" * ((-f.tell()) % ALIGN))
        for b in blobs: f.write(b)
    print(f"{out}: {len(tensors)} tensors, {typ}, {os.path.getsize(out) / 2**20:.1f} MiB")


def llama_reference(model, pixels, gguf_seed=1, proj_hidden=64):
    """What the mmproj above computes, in float64: mm.2(gelu_tanh(mm.0(post_ln(h_N)[rows 1..P]))).
    Two token orders: CLIP's ([class; patches] + positions), and the one llama.cpp's LLaVA graph
    builds at the commit measured (tools/mtmd/models/llava.cpp: ggml_concat(inp, class_embedding)
    puts the class token last, positions are added in sequence order, and rows 1..P are kept)."""
    import numpy as np
    import torch
    W = model.config.hidden_size
    rng = np.random.default_rng(gguf_seed)
    m0 = torch.tensor(rng.normal(0, 0.02, (proj_hidden, W)).astype(np.float32), dtype=torch.float64)
    m2 = torch.tensor(rng.normal(0, 0.02, (proj_hidden, proj_hidden)).astype(np.float32), dtype=torch.float64)
    vm = model.double().vision_model
    emb = vm.embeddings
    out = {}
    with torch.inference_mode():
        x = torch.tensor(pixels)[None].double()
        patches = emb.patch_embedding(x).flatten(2).transpose(1, 2)
        cls = emb.class_embedding.view(1, 1, -1)
        pos = emb.position_embedding.weight[None]
        for name, seq in (("clip order", torch.cat([cls, patches], 1)), ("class last", torch.cat([patches, cls], 1))):
            h = vm.pre_layrnorm(seq + pos)
            for layer in vm.encoder.layers:
                h = layer(h, None)
                h = h[0] if isinstance(h, tuple) else h
            h = vm.post_layernorm(h[0])[1:]
            out[name] = (torch.nn.functional.gelu(h @ m0.T, approximate="tanh") @ m2.T).numpy()
    model.float()
    return out


# ---- correctness -------------------------------------------------------------------------------

def rel_l2(a, b):
    import numpy as np
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def check(args):
    import numpy as np
    import torch
    torch.set_num_threads(args.threads)
    model = load_hf(args.clip)
    px = clip_pixels(args.image, model.config.image_size)
    r = subprocess.run([LA, "encode-image", "--clip", args.clip, "--image", args.image, "--json"],
                       capture_output=True, text=True, env=env(args.threads), check=True)
    ours = json.loads(r.stdout)
    x = torch.tensor(px)[None]
    with torch.inference_mode():
        f32 = model(pixel_values=x).image_embeds[0].numpy()
        md = model.double()
        o = md(pixel_values=x.double(), output_hidden_states=True)
        f64 = o.image_embeds[0].numpy()
        vm = md.vision_model
        N = model.config.num_hidden_layers
        feats = np.concatenate([md.visual_projection(vm.post_layernorm(o.hidden_states[b][0, 0])).numpy()
                                for b in ((N + 2) // 3, (2 * N + 2) // 3, N)])
    model.float()
    print(f"ours vs transformers float64: embedding rel L2 {rel_l2(ours['embedding'], f64):.2e}, "
          f"features rel L2 {rel_l2(ours['features'], feats):.2e}")
    print(f"transformers float32 vs float64: embedding rel L2 {rel_l2(f32, f64):.2e}")
    print(f"ours vs transformers float32: embedding rel L2 {rel_l2(ours['embedding'], f32):.2e}")
    for g in args.gguf or []:
        r = subprocess.run([LA, "encode-image", "--clip", g, "--image", args.image, "--json"],
                           capture_output=True, text=True, env=env(args.threads))
        if r.returncode == 0:
            e = json.loads(r.stdout)["embedding"]
            print(f"ours on {os.path.basename(g)} vs transformers float64: embedding rel L2 {rel_l2(e, f64):.2e}")
        else:
            print(f"ours on {os.path.basename(g)}: {r.stderr.strip().splitlines()[-1]}")
    if args.llama_bench:
        refs = llama_reference(model, px)
        raw = args.pixels_out or "/tmp/clip_compare_pixels.f32"
        px.transpose(1, 2, 0).astype(np.float32).tofile(raw)  # HWC, as clip_image_f32 holds it
        for g in args.gguf or []:
            out = raw + ".out"
            subprocess.run([args.llama_bench, g, raw, str(model.config.image_size), str(args.threads), "1", out],
                           capture_output=True, text=True, env=env(args.threads), check=True)
            y = np.fromfile(out, dtype=np.float32).reshape(-1, 64)
            print(f"llama.cpp on {os.path.basename(g)} ({y.shape[0]} rows) vs float64 reference, rel L2: " +
                  ", ".join(f"{k} {rel_l2(y, r):.2e}" for k, r in refs.items()))


# ---- timing ------------------------------------------------------------------------------------

def run_ours(clip, image, threads, repeat=2):
    """(preprocess ms, first encode ms, median of the later encodes or None): encode-image --repeat."""
    r = subprocess.run([LA, "encode-image", "--clip", clip, "--image", image, "--repeat", str(repeat)],
                       capture_output=True, text=True, env=env(threads), check=True)
    line = [l for l in r.stdout.splitlines() if l.startswith("time:")][0]
    pre = float(line.split("preprocess")[1].split("ms")[0])
    enc = float(line.split("encode")[1].split("ms")[0])
    rep = [l for l in r.stdout.splitlines() if l.startswith("repeat:")]
    warm = float(rep[0].split("median encode")[1].split("ms")[0]) if rep else None
    return pre, enc, warm


def run_llama(bench, gguf, raw, size, threads, iters, fa="-1"):
    """fa: llama.cpp's flash attention, -1 auto (what mtmd does by default; on CPU: on), 0 off, 1 on."""
    r = subprocess.run([bench, gguf, raw, str(size), str(threads), str(iters), "/dev/null", fa], capture_output=True,
                       text=True, env=env(threads), check=True)
    line = [l for l in r.stdout.splitlines() if l.startswith("median")][0]
    fa = [l for l in r.stderr.splitlines() if "flash attention" in l.lower()]
    return float(line.split()[1]), (fa[-1].strip() if fa else "")


def timeit(f):
    t0 = time.perf_counter()
    f()
    return (time.perf_counter() - t0) * 1e3


def time_all(args):
    import numpy as np
    import torch
    torch.set_num_threads(args.threads)
    model = load_hf(args.clip)
    px = torch.tensor(clip_pixels(args.image, model.config.image_size))[None]
    print(f"# {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} threads={args.threads} rounds={args.rounds} "
          f"load={open('/proc/loadavg').read().split()[0]} torch={torch.__version__} "
          f"attn={model.config._attn_implementation} cpu_capability={torch.backends.cpu.get_cpu_capability()}")
    with torch.inference_mode():
        eager = lambda: model(pixel_values=px).image_embeds
        for _ in range(args.warmup):
            eager()
        compiled = None
        if not args.no_compile:
            try:
                cm = torch.compile(model)
                t0 = time.perf_counter()
                for _ in range(args.warmup):
                    cm(pixel_values=px)
                print(f"# torch.compile: first calls (compilation + warm-up) {time.perf_counter() - t0:.1f} s")
                compiled = lambda: cm(pixel_values=px).image_embeds
                d = rel_l2(compiled().numpy(), eager().numpy())
                print(f"# torch.compile vs eager: embedding rel L2 {d:.2e}")
            except Exception as e:  # report, go on without it
                print(f"# torch.compile failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        raw = "/tmp/clip_compare_pixels.f32"
        px[0].numpy().transpose(1, 2, 0).astype(np.float32).tofile(raw)
        fas = args.llama_fa.split(",")
        cols = ["ours_first", "ours"] + [f"ours:{os.path.basename(g)}" for g in (args.ours_gguf or [])] + \
               ["eager"] + (["compiled"] if compiled else []) + \
               [f"llama.cpp:{os.path.basename(g)}:fa={fa}" for g in (args.gguf or []) for fa in fas]
        res = {c: [] for c in cols}
        fa_note = set()
        print("encode ms, one column per encoder:\n" + "\n".join(f"  {i}: {c}" for i, c in enumerate(cols)))
        print("round " + " ".join(f"{i:>8d}" for i in range(len(cols))))
        for r in range(args.rounds):
            row = []
            _, first, warm = run_ours(args.clip, args.image, args.threads, args.repeat)
            row += [first, warm]
            for g in args.ours_gguf or []:
                row.append(run_ours(g, args.image, args.threads, args.repeat)[2])
            row.append(timeit(eager))
            if compiled:
                row.append(timeit(compiled))
            for g in args.gguf or []:
                for fa in fas:
                    ms, note = run_llama(args.llama_bench, g, raw, model.config.image_size, args.threads, 1, fa)
                    row.append(ms)
                    fa_note.add(f"fa={fa}: {note}")
            for c, v in zip(cols, row):
                res[c].append(v)
            print(f"{r + 1:5d} " + " ".join(f"{v:8.1f}" for v in row), flush=True)
        med = {c: statistics.median(v) for c, v in res.items()}
        print("  med " + " ".join(f"{med[c]:8.1f}" for c in cols))
        for c in cols:
            if c != "ours":
                print(f"# {c} / ours = {med[c] / med['ours']:.2f}")
        for fa in sorted(x for x in fa_note if x):
            print(f"# llama.cpp: {fa}")
        print(json.dumps({"median_ms": med, "runs_ms": res}))


def preprocess(args):
    from PIL import Image
    for image in args.image:
        w, h = Image.open(image).size
        ours, pil = [], []
        for _ in range(args.rounds):
            ours.append(run_ours(args.clip, image, args.threads, 1)[0])
            clip_pixels(image)  # warm
            pil.append(statistics.median(timeit(lambda: clip_pixels(image)) for _ in range(3)))
        print(f"{os.path.basename(image)} {w}x{h}: ours (encode-image, cold process) median "
              f"{statistics.median(ours):.1f} ms {sorted(ours)}; "
              + f"PIL decode+convert+resize+crop+normalise median {statistics.median(pil):.1f} ms {sorted(round(x, 1) for x in pil)}")


def step(args):
    base = [LA, "bench", "--shape", "110m", "--no-infer", "--train-batch", "4", "--train-seq", "256",
            "--repeat", "5", "--json", "--threads", str(args.threads)]
    res = {"text": [], "images": []}
    for r in range(args.rounds):
        for k, extra in (("text", []), ("images", ["--images"])):
            out = subprocess.run(base + extra, capture_output=True, text=True, env=env(args.threads), check=True).stdout
            j = json.loads(out)
            res[k].append(j["train_step_s"])
            print(f"round {r + 1} {k:6s} train_step_s {j['train_step_s']:.3f}", flush=True)
    t, i = statistics.median(res["text"]), statistics.median(res["images"])
    print(f"median text-only {t:.3f} s, with images {i:.3f} s, images / text = {i / t:.3f}")
    print(json.dumps(res))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("make-model"); p.add_argument("out")
    p = sub.add_parser("make-jpeg"); p.add_argument("out")
    p = sub.add_parser("gguf"); p.add_argument("hf_dir"); p.add_argument("out"); p.add_argument("--type", default="f32", choices=["f32", "f16"])
    for name in ("check", "time"):
        p = sub.add_parser(name)
        p.add_argument("--clip", required=True)
        p.add_argument("--image", default=APPLE)
        p.add_argument("--llama-bench")
        p.add_argument("--gguf", action="append")
        if name == "check":
            p.add_argument("--pixels-out")
        else:
            p.add_argument("--rounds", type=int, default=7)
            p.add_argument("--warmup", type=int, default=3)
            p.add_argument("--repeat", type=int, default=2, help="encode-image --repeat: 1 warm-up + the rest timed")
            p.add_argument("--no-compile", action="store_true")
            p.add_argument("--ours-gguf", action="append", help="also time ours on this CLIP GGUF")
            p.add_argument("--llama-fa", default="-1", help="llama.cpp flash attention settings to time, e.g. --llama-fa=-1,0")
    p = sub.add_parser("preprocess"); p.add_argument("--clip", required=True); p.add_argument("--image", action="append", required=True)
    p.add_argument("--rounds", type=int, default=5)
    p = sub.add_parser("step"); p.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    if a.cmd == "time" and a.gguf and not a.llama_bench:
        ap.error("--gguf needs --llama-bench")
    {"make-model": lambda: make_model(a.out), "make-jpeg": lambda: make_jpeg(a.out),
     "gguf": lambda: write_gguf(a.hf_dir, a.out, a.type), "check": lambda: check(a), "time": lambda: time_all(a),
     "preprocess": lambda: preprocess(a), "step": lambda: step(a)}[a.cmd]()


if __name__ == "__main__":
    main()
