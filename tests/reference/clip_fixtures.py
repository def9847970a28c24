#!/usr/bin/env python3
"""Reference fixtures for the CLIP side of the multi-modal adapter (SPEC §8), so that the C++
tests compare against PIL / PyTorch / transformers without needing them in CI.

It writes, under the output folder (tests/fixtures/clip):
  images/          small synthetic test images (seeded numpy content: gradients, shapes, noise)
                   in the formats a decoder must handle: baseline, progressive, 4:2:0 and 4:4:4
                   JPEG (RGB and greyscale); PNG in RGB, RGBA, LA, palette + tRNS, 1/2/4/16-bit
                   greyscale and 16-bit RGB (that one by a small PNG writer below: PIL has no
                   16-bit RGB mode), and one 300x200 photo-like JPEG for strong downscaling.
  decoded/N.rgb    Image.open(N).convert("RGB") as raw bytes, H*W*3 uint8, row-major.
  expected/N_S.rgb the uint8 RGB that CLIP's preprocessing gives at crop size S before /255:
                   convert("RGB"), resize (shorter side S, longer int(S*long/short)) with PIL's
                   BICUBIC, centre crop S x S at int(round((side-S)/2)) (torchvision's CenterCrop).
  preprocess.json  {"pillow": version, "cases": [{"image", "width", "height", "decoded", "size",
                   "resized": [new_w, new_h], "crop": [left, top], "expected"}, ...]}. An image
                   path starting with SHARED/ lives in the shared data folder (the test
                   substitutes it and skips when absent); its pixels are not copied into the tree
                   (SPEC §7): "decoded" / "expected" are null and the case has instead
                   decoded_sha256, decoded_sums (per-channel sums of the bytes), decoded_sample
                   (the pixels at every step-th row and column, RGB, row-major; the step is
                   sample_step.decoded, 16) and the same three for expected (step 8).
  tiny_clip_a/, tiny_clip_b/   two tiny random CLIPModel directories (config.json +
                   model.safetensors, float32), vision weights re-drawn large so outputs are
                   sensitive to every tensor.
  clip_reference.json  for each tiny model and a few images: the normalised pixel values, the
                   image embedding (proj(post_layernorm(class token after the last block))) and
                   the multi-scale features (class token after blocks ceil(N/3), ceil(2N/3), N,
                   each through post_layernorm and the projection, concatenated), in float64 and
                   float32. Every float64 forward is also checked against an independent numpy
                   reading of SPEC §8 (own_vision_forward: hidden states within 1e-10).

Rerun (the venv from scripts/reference-venv.sh; needs ../shared/data for red_apple.jpg):
  /work/venv-ref/bin/python tests/reference/clip_fixtures.py /work/shared/data tests/fixtures/clip
The output is deterministic for a given Pillow (its libjpeg / zlib), torch and transformers.
"""
import hashlib
import json
import math
import os
import shutil
import struct
import sys
import warnings
import zlib

import numpy as np
import PIL
from PIL import Image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CROP_SIZES = (16, 24, 64)

# The two tiny models (vision towers; the text towers are tiny too and ignored by our loader).
TINY_MODELS = {
    "tiny_clip_a": dict(image_size=32, patch_size=8, hidden_size=32, num_attention_heads=4, num_hidden_layers=6,
                        intermediate_size=64, projection_dim=16, seed=101,
                        images=("rgb_37x23.jpg", "rgba_23x45.png")),
    "tiny_clip_b": dict(image_size=28, patch_size=7, hidden_size=40, num_attention_heads=5, num_hidden_layers=3,
                        intermediate_size=88, projection_dim=12, seed=202,
                        images=("grey_33x27.jpg", "pal_trns_27x33.png")),
}
# Crop sizes of the images in the shared data folder: their pixels are not copied into the tree
# (SPEC §7), only a checksum, per-channel sums and a sparse sample (every step-th pixel of every
# step-th row): step 16 for the decoded image, 8 for the preprocessed crop.
SAMPLE_STEP = {"decoded": 16, "expected": 8}


# ----------------------------------------------------------------------------------------------
# Synthetic content

def synthetic(w, h, seed, noise=14.0):
    """Float RGB content in [0, 255]: per-channel gradients, a disc, a bar, a few ellipses, noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    u, v = x / max(w - 1, 1), y / max(h - 1, 1)
    img = np.empty((h, w, 3))
    for c in range(3):
        a, b, d = rng.uniform(-200, 200, 3)
        img[..., c] = 128 + a * (u - 0.5) + b * (v - 0.5) + d * (u - 0.5) * (v - 0.5)
    # A disc of a random colour.
    cx, cy, r = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h, rng.uniform(0.15, 0.35) * min(w, h)
    disc = (x - cx) ** 2 + (y - cy) ** 2 < r * r
    img[disc] = rng.uniform(0, 255, 3)
    # A bar (sharp edges are what bicubic ringing shows).
    x0, x1 = sorted(rng.integers(0, w, 2))
    y0 = int(rng.integers(0, max(h - 2, 1)))
    img[y0:y0 + max(2, h // 6), x0:x1 + 1] = rng.uniform(0, 255, 3)
    # Soft ellipses.
    for _ in range(3):
        ex, ey = rng.uniform(0, w), rng.uniform(0, h)
        sx, sy = rng.uniform(0.1, 0.4) * w, rng.uniform(0.1, 0.4) * h
        img += rng.uniform(-60, 60, 3) * np.exp(-(((x - ex) / sx) ** 2 + ((y - ey) / sy) ** 2))[..., None]
    img += rng.normal(0, noise, img.shape)
    return np.clip(img, 0, 255)


def stretch(a):
    """Rescaled to [0, 1] (so that quantised images use every level)."""
    return (a - a.min()) / (a.max() - a.min())


def to_u8(a):
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def png_chunk(tag, data):
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def write_png(path, width, height, color_type, bit_depth, rows):
    """A minimal PNG writer (filter type 0 on every row): rows is a list of packed row bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    raw = b"".join(b"\x00" + r for r in rows)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(raw, 9))
                + png_chunk(b"IEND", b""))


def png_header(path):
    with open(path, "rb") as f:
        head = f.read(33)
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    w, h, depth, ctype = struct.unpack(">IIBB", head[16:26])
    return w, h, depth, ctype


def make_images(folder):
    """Writes the test images; returns their file names in a fixed order."""
    os.makedirs(folder, exist_ok=True)
    names = []

    def save(name, im, **kw):
        im.save(os.path.join(folder, name), **kw)
        names.append(name)

    # JPEG: baseline 4:2:0 (Pillow's default at quality 90), landscape and portrait.
    save("rgb_37x23.jpg", Image.fromarray(to_u8(synthetic(37, 23, 1)), "RGB"), quality=90)
    save("rgb_29x51.jpg", Image.fromarray(to_u8(synthetic(29, 51, 2)), "RGB"), quality=90)
    save("grey_33x27.jpg", Image.fromarray(to_u8(synthetic(33, 27, 3).mean(-1)), "L"), quality=90)
    save("progressive_35x29.jpg", Image.fromarray(to_u8(synthetic(35, 29, 4)), "RGB"), quality=88, progressive=True)
    save("sub420_39x25.jpg", Image.fromarray(to_u8(synthetic(39, 25, 5)), "RGB"), quality=92, subsampling=2)
    save("sub444_39x25.jpg", Image.fromarray(to_u8(synthetic(39, 25, 5)), "RGB"), quality=92, subsampling=0)

    # PNG, 8-bit.
    save("rgb_41x19.png", Image.fromarray(to_u8(synthetic(41, 19, 6)), "RGB"))
    rgba = np.dstack([to_u8(synthetic(23, 45, 7)), to_u8(np.linspace(0, 255, 23)[None, :] * np.ones((45, 1)))])
    rgba[::7, ::5, 3] = 0  # fully transparent pixels over visible colours
    save("rgba_23x45.png", Image.fromarray(rgba, "RGBA"))
    la = np.dstack([to_u8(synthetic(31, 17, 8).mean(-1)), to_u8(np.linspace(255, 0, 17)[:, None] * np.ones((1, 31)))])
    save("la_31x17.png", Image.fromarray(la, "LA"))
    rng = np.random.default_rng(9)
    palette = rng.integers(0, 256, (16, 3)).astype(np.uint8)
    idx = np.minimum(stretch(synthetic(27, 33, 9).mean(-1)) * 16, 15).astype(np.uint8)
    pim = Image.fromarray(idx, "P")
    pim.putpalette(palette.flatten().tolist())
    alpha = bytes([255, 0, 128, 64] + [255] * 12)  # per-index alpha: a tRNS chunk
    save("pal_trns_27x33.png", pim, transparency=alpha)

    # PNG, 16-bit grey: values spanning 0..65535 on a log scale, so that part of the image lies
    # below 256 (PIL opens it as I;16 and its conversion to RGB clips at 255 rather than scaling).
    t = stretch(synthetic(25, 21, 10).mean(-1))
    g16 = np.clip(np.rint(np.exp(t * math.log(65536.0)) - 1), 0, 65535).astype(np.uint16)
    g16[0, 0], g16[-1, -1], g16[0, -1] = 0, 65535, 255
    Image.fromarray(g16).save(os.path.join(folder, "grey16_25x21.png"))
    names.append("grey16_25x21.png")

    # PNG, 16-bit RGB (hand-written: PIL cannot write it).
    rgb16 = np.clip(np.rint(synthetic(19, 23, 11) * 257.0 + np.random.default_rng(12).integers(-128, 128, (23, 19, 3))),
                    0, 65535).astype(">u2")
    write_png(os.path.join(folder, "rgb16_19x23.png"), 19, 23, 2, 16, [rgb16[r].tobytes() for r in range(23)])
    names.append("rgb16_19x23.png")

    # PNG, low bit-depth grey. Mode "1" is written 1-bit. For 2 and 4 bits Pillow's `bits` option
    # on an L image packs the *low* bits of each value, so the image holds the levels 0..2^b-1.
    base = stretch(synthetic(17, 13, 13).mean(-1))
    save("grey1_17x13.png", Image.fromarray(base > 0.5))
    save("grey2_17x13.png", Image.fromarray(np.clip(np.rint(base * 3), 0, 3).astype(np.uint8), "L"), bits=2)
    save("grey4_17x13.png", Image.fromarray(np.clip(np.rint(base * 15), 0, 15).astype(np.uint8), "L"), bits=4)

    # A photo-like larger JPEG (soft shapes, little noise) for strong downscaling.
    save("photo_300x200.jpg", Image.fromarray(to_u8(synthetic(300, 200, 14, noise=4.0)), "RGB"), quality=85)

    # The files are what we meant them to be.
    expect = {"grey16_25x21.png": (16, 0), "rgb16_19x23.png": (16, 2), "grey1_17x13.png": (1, 0),
              "grey2_17x13.png": (2, 0), "grey4_17x13.png": (4, 0), "rgba_23x45.png": (8, 6),
              "la_31x17.png": (8, 4), "pal_trns_27x33.png": (None, 3), "rgb_41x19.png": (8, 2)}
    for n, (depth, ctype) in expect.items():
        _, _, d, c = png_header(os.path.join(folder, n))
        assert c == ctype and (depth is None or d == depth), (n, d, c)
    with open(os.path.join(folder, "pal_trns_27x33.png"), "rb") as f:
        assert b"tRNS" in f.read()
    with open(os.path.join(folder, "progressive_35x29.jpg"), "rb") as f:
        assert b"\xff\xc2" in f.read()  # SOF2
    return names


# ----------------------------------------------------------------------------------------------
# CLIP preprocessing (PIL), as SPEC §8

def resized_size(w, h, size):
    if w <= h:
        return size, int(size * h / w)
    return int(size * w / h), size


def preprocess_u8(path, size):
    """uint8 [size, size, 3] after convert("RGB"), bicubic resize and centre crop; also the
    resize target and the crop offset."""
    im = Image.open(path).convert("RGB")
    w, h = im.size
    nw, nh = resized_size(w, h, size)
    r = im.resize((nw, nh), Image.BICUBIC)
    top = int(round((nh - size) / 2.0))
    left = int(round((nw - size) / 2.0))
    c = r.crop((left, top, left + size, top + size))
    return np.asarray(c, dtype=np.uint8), (nw, nh), (left, top)


def normalise(u8):
    """[3, S, S] float64: /255, then (x - mean) / std per channel."""
    x = u8.astype(np.float64).transpose(2, 0, 1) / 255.0
    mean = np.array(CLIP_MEAN, dtype=np.float64)[:, None, None]
    std = np.array(CLIP_STD, dtype=np.float64)[:, None, None]
    return (x - mean) / std


# ----------------------------------------------------------------------------------------------
# Tiny CLIP models

def clip_layers(n):
    return [math.ceil(n / 3), math.ceil(2 * n / 3), n]


def make_tiny_clip(out_dir, spec):
    import torch
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(spec["seed"])
    vision = dict(image_size=spec["image_size"], patch_size=spec["patch_size"], hidden_size=spec["hidden_size"],
                  num_attention_heads=spec["num_attention_heads"], num_hidden_layers=spec["num_hidden_layers"],
                  intermediate_size=spec["intermediate_size"], projection_dim=spec["projection_dim"],
                  hidden_act="quick_gelu", layer_norm_eps=1e-5, num_channels=3)
    text = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=1,
                max_position_embeddings=16, projection_dim=spec["projection_dim"], hidden_act="quick_gelu",
                layer_norm_eps=1e-5, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    cfg = CLIPConfig(text_config=text, vision_config=vision, projection_dim=spec["projection_dim"])
    model = CLIPModel(cfg).float().eval()
    g = torch.Generator().manual_seed(spec["seed"] + 7)

    def normal(shape, std):
        return torch.randn(shape, generator=g, dtype=torch.float64) * std

    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if not (name.startswith("vision_model.") or name.startswith("visual_projection.")):
                continue
            if name.endswith("class_embedding") or "position_embedding" in name:
                v = normal(p.shape, 0.5)
            elif "norm" in name and name.endswith(".weight"):
                v = 1.0 + normal(p.shape, 0.1)
            elif name.endswith(".bias"):
                v = normal(p.shape, 0.1)
            elif p.dim() >= 2:
                fan_in = p[0].numel()
                v = normal(p.shape, 1.0 / math.sqrt(fan_in))
            else:
                raise RuntimeError("unexpected vision parameter " + name)
            p.copy_(v.to(torch.float32))
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    model.save_pretrained(out_dir, safe_serialization=True)
    return model


def own_vision_forward(sd, cfg, pix):
    """SPEC §8's forward written independently in numpy float64, to check what transformers
    computes: returns the hidden states [N+1][T, width] (0 = after ln_pre)."""
    def ln(x, w, b):
        m = x.mean(-1, keepdims=True)
        var = ((x - m) ** 2).mean(-1, keepdims=True)
        return (x - m) / np.sqrt(var + 1e-5) * w + b

    P, Wd, H = cfg["patch_size"], cfg["hidden_size"], cfg["num_attention_heads"]
    S = pix.shape[1]
    g = S // P
    conv = sd["vision_model.embeddings.patch_embedding.weight"].reshape(Wd, -1)  # [W, 3*P*P]
    patches = pix.reshape(3, g, P, g, P).transpose(1, 3, 0, 2, 4).reshape(g * g, 3 * P * P)
    x = np.concatenate([sd["vision_model.embeddings.class_embedding"][None, :], patches @ conv.T], 0)
    x = x + sd["vision_model.embeddings.position_embedding.weight"]
    x = ln(x, sd["vision_model.pre_layrnorm.weight"], sd["vision_model.pre_layrnorm.bias"])
    hs = [x]
    hd = Wd // H
    for i in range(cfg["num_hidden_layers"]):
        pre = "vision_model.encoder.layers.%d." % i

        def lin(name, v):
            return v @ sd[pre + name + ".weight"].T + sd[pre + name + ".bias"]
        y = ln(x, sd[pre + "layer_norm1.weight"], sd[pre + "layer_norm1.bias"])
        q = lin("self_attn.q_proj", y).reshape(-1, H, hd).transpose(1, 0, 2)
        k = lin("self_attn.k_proj", y).reshape(-1, H, hd).transpose(1, 0, 2)
        v = lin("self_attn.v_proj", y).reshape(-1, H, hd).transpose(1, 0, 2)
        a = q @ k.transpose(0, 2, 1) / math.sqrt(hd)
        a = np.exp(a - a.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        o = (a @ v).transpose(1, 0, 2).reshape(-1, Wd)
        x = x + lin("self_attn.out_proj", o)
        y = ln(x, sd[pre + "layer_norm2.weight"], sd[pre + "layer_norm2.bias"])
        f = lin("mlp.fc1", y)
        f = f / (1.0 + np.exp(-1.702 * f))
        x = x + lin("mlp.fc2", f)
        hs.append(x)
    return hs


def clip_outputs(model, pix64, dtype):
    """embedding and multi-scale features of one normalised image with transformers' CLIP in the
    given dtype; also the hidden states (for the independent check)."""
    import torch
    m = model.to(dtype)
    pv = torch.from_numpy(pix64).to(dtype)[None]
    with torch.no_grad():
        out = m.vision_model(pixel_values=pv, output_hidden_states=True, return_dict=True)
        hs = out.hidden_states
        n = m.config.vision_config.num_hidden_layers
        assert len(hs) == n + 1
        assert torch.equal(hs[n], out.last_hidden_state)

        def head(h):
            return m.visual_projection(m.vision_model.post_layernorm(h[:, 0]))
        emb = head(hs[n])[0]
        feats = torch.cat([head(hs[s])[0] for s in clip_layers(n)])
        api = m.get_image_features(pixel_values=pv)
        api = api.pooler_output if hasattr(api, "pooler_output") else api
        assert torch.allclose(api[0], emb, rtol=0, atol=1e-12 if dtype == torch.float64 else 1e-5)
    return emb.double().numpy(), feats.double().numpy(), [h[0].double().numpy() for h in hs]


def main():
    import torch
    import transformers
    # Pillow warns that palette images with per-index alpha "should be converted to RGBA": CLIP's
    # transform converts straight to RGB (the alpha is dropped), and so do we.
    warnings.filterwarnings("ignore", message="Palette images with Transparency")
    torch.set_num_threads(2)
    shared, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    for sub in ("images", "decoded", "expected"):
        if os.path.isdir(os.path.join(out, sub)):
            shutil.rmtree(os.path.join(out, sub))
        os.makedirs(os.path.join(out, sub))
    names = make_images(os.path.join(out, "images"))

    # Which crop sizes each image gets: {16, 24, 64}, 224 for the large images, and the tiny
    # models' image sizes for the images clip_reference.json uses.
    cases = []

    def summary(u8, prefix):
        """What a case of a shared-data image records instead of its pixels."""
        return {prefix + "_sha256": hashlib.sha256(u8.tobytes()).hexdigest(),
                prefix + "_sums": [int(u8[..., c].sum(dtype=np.int64)) for c in range(3)],
                prefix + "_sample": u8[::SAMPLE_STEP[prefix], ::SAMPLE_STEP[prefix]].flatten().tolist()}

    def add_case(rel_image, path, stem, size, in_tree):
        u8, (nw, nh), (left, top) = preprocess_u8(path, size)
        w, h = Image.open(path).size
        case = {"image": rel_image, "width": w, "height": h}
        if in_tree:
            case["decoded"] = "decoded/%s.rgb" % stem
        else:
            case["decoded"] = None
            case.update(summary(np.asarray(Image.open(path).convert("RGB"), dtype=np.uint8), "decoded"))
        case.update({"size": size, "resized": [nw, nh], "crop": [left, top]})
        if in_tree:
            case["expected"] = "expected/%s_%d.rgb" % (stem, size)
            with open(os.path.join(out, case["expected"]), "wb") as f:
                f.write(u8.tobytes())
        else:
            case["expected"] = None
            case.update(summary(u8, "expected"))
        cases.append(case)

    sources = [("images/" + n, os.path.join(out, "images", n), os.path.splitext(n)[0]) for n in names]
    apple = os.path.join(shared, "clip", "red_apple.jpg")
    if os.path.exists(apple):
        sources.append(("SHARED/clip/red_apple.jpg", apple, "red_apple"))
    else:
        print("warning: %s is absent; its cases are left out" % apple, file=sys.stderr)
    for rel, path, stem in sources:
        in_tree = not rel.startswith("SHARED/")
        if in_tree:
            rgb = Image.open(path).convert("RGB")
            with open(os.path.join(out, "decoded", stem + ".rgb"), "wb") as f:
                f.write(np.asarray(rgb, dtype=np.uint8).tobytes())
        sizes = list(CROP_SIZES)
        if stem in ("photo_300x200", "red_apple"):
            sizes.append(224)
        sizes += [s["image_size"] for s in TINY_MODELS.values() if os.path.basename(path) in s["images"]]
        for s in sizes:
            add_case(rel, path, stem, s, in_tree)
    with open(os.path.join(out, "preprocess.json"), "w") as f:
        head = {"generator": "tests/reference/clip_fixtures.py", "pillow": PIL.__version__,
                "clip_mean": CLIP_MEAN, "clip_std": CLIP_STD, "sample_step": SAMPLE_STEP}
        f.write(json.dumps(head)[:-1] + ',\n "cases": [\n  '
                + ",\n  ".join(json.dumps(c, separators=(",", ":")) for c in cases) + "\n ]\n}\n")

    # Tiny models and their reference outputs.
    refs = []
    for mname, spec in TINY_MODELS.items():
        model = make_tiny_clip(os.path.join(out, mname), spec)
        sd = {k: v.detach().double().numpy() for k, v in model.state_dict().items()}
        vcfg = dict(spec)
        n = spec["num_hidden_layers"]
        for img in spec["images"]:
            S = spec["image_size"]
            u8, _, _ = preprocess_u8(os.path.join(out, "images", img), S)
            pix = normalise(u8)
            emb64, feat64, hs64 = clip_outputs(model, pix, torch.float64)
            emb32, feat32, _ = clip_outputs(model, pix, torch.float32)
            # transformers' float64 forward against our own reading of SPEC §8.
            mine = own_vision_forward(sd, vcfg, pix)
            for a, b in zip(hs64, mine):
                assert np.abs(a - b).max() < 1e-10, np.abs(a - b).max()
            err32 = float(np.abs(feat32 - feat64).max())
            refs.append({"model": mname, "image": "images/" + img, "size": S, "layers": clip_layers(n),
                         "embed_dim": spec["projection_dim"],
                         "expected_rgb": "expected/%s_%d.rgb" % (os.path.splitext(img)[0], S),
                         "pixel_values": pix.flatten().tolist(),
                         "embedding": emb64.tolist(), "features": feat64.tolist(),
                         "embedding_f32": emb32.tolist(), "features_f32": feat32.tolist(),
                         "max_abs_f32_vs_f64": err32})
        model.float()
    with open(os.path.join(out, "clip_reference.json"), "w") as f:
        json.dump({"generator": "tests/reference/clip_fixtures.py", "pillow": PIL.__version__,
                   "torch": torch.__version__, "transformers": transformers.__version__,
                   "clip_mean": CLIP_MEAN, "clip_std": CLIP_STD, "cases": refs}, f, separators=(",", ":"))
    print("wrote %d preprocessing cases, %d model cases to %s" % (len(cases), len(refs), out))


if __name__ == "__main__":
    main()
