#!/usr/bin/env python3
"""Concurrent streaming /v1/completions against OpenAI-compatible servers already running.

Python standard library only. For each N in --n and each round, every target gets N concurrent
streaming requests (its own prompt per stream, max_tokens M, temperature 0, ignore_eos true), the
targets taking turns round by round (target A round 1, target B round 1, A round 2, ...) so that a
noisy host's slow minutes hit all of them. A warm-up round per (target, N) is not counted.

Per stream:
  ttft         seconds from sending the request to the first chunk with non-empty text
  tokens       usage.completion_tokens when a chunk reports it (stream_options.include_usage is
               sent unless --no-usage), else the count of chunks with non-empty text
  decode tok/s (tokens - 1) / (time of the last text chunk - time of the first)
Per round (N streams):
  agg decode tok/s   sum(tokens - 1) / (last text chunk of any stream - first text chunk of any
                     stream): the generated tokens after each stream's first, over the wall time of
                     the decode phase (which may still hold other streams' prefill)
  e2e tok/s          sum(tokens) / (last chunk of any stream - the moment all requests were sent)
Each cell is the median over --rounds rounds (TTFT: the median over the rounds of each round's
median and max stream TTFT).

Targets: --target LABEL=URL (repeatable); per target --models LABEL=m1,m2,... gives stream i the
model m[i % len] ("model" is omitted when a target has no list), --extra LABEL='{"json": 1}' merges
fields into its request bodies.

  python3 bench/serve_compare.py --target llama=http://127.0.0.1:8081 \\
      --target ours-mixed=http://127.0.0.1:8082 --models ours-mixed=a0,a1,a2,a3,a4,a5,a6,a7 \\
      --target ours-same=http://127.0.0.1:8082 --models ours-same=a0 --n 1,4,8 --max-tokens 64 --rounds 3

Prints a table of medians, a markdown side-by-side table (ratios against the first target), and
one JSON line (also appended to --json-out). --summarize FILE... prints the combined markdown
table of JSON lines written by earlier runs (the run script calls it once per N).
"""
import argparse
import http.client
import json
import random
import statistics
import sys
import threading
import time
import urllib.parse

WORDS = (
    "the a river mountain small old bright quiet village garden window morning evening story "
    "teacher student letter journey forest ocean city market friend stranger winter summer "
    "light shadow careful curious gentle sudden ancient modern music painting kitchen library "
    "train station bridge tower harbor island desert meadow lantern candle clock mirror "
    "walked found remembered opened carried listened painted wrote built watched followed "
    "because although while after before under across beyond through toward beside"
).split()


def make_prompt(rng, words):
    text = " ".join(rng.choice(WORDS) for _ in range(words))
    return text[0].upper() + text[1:] + "."


class Target:
    def __init__(self, label, url):
        self.label = label
        u = urllib.parse.urlsplit(url if "://" in url else "http://" + url)
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or 80
        self.path = (u.path.rstrip("/") or "") + "/v1/completions"
        self.models = []
        self.extra = {}


def one_stream(target, body, timeout, result, barrier):
    """Runs one streaming request; fills result (dict)."""
    conn = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
    data = json.dumps(body).encode()
    try:
        conn.connect()
        barrier.wait()
        t_send = time.perf_counter()
        conn.request("POST", target.path, body=data,
                     headers={"Content-Type": "application/json", "Accept": "text/event-stream"})
        resp = conn.getresponse()
        if resp.status != 200:
            result["error"] = f"HTTP {resp.status}: {resp.read(500)!r}"
            return
        t_first = t_last_text = t_last = None
        chunks = 0
        usage = None
        finish = None
        while True:
            line = resp.readline()
            if not line:
                break
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                break
            now = time.perf_counter()
            t_last = now
            try:
                obj = json.loads(payload)
            except ValueError:
                result["error"] = f"bad chunk {payload[:200]!r}"
                return
            if "error" in obj:
                result["error"] = f"error chunk {obj['error']!r}"
                return
            if obj.get("usage"):
                usage = obj["usage"]
            for ch in obj.get("choices") or []:
                if ch.get("finish_reason"):
                    finish = ch["finish_reason"]
                if ch.get("text"):
                    chunks += 1
                    if t_first is None:
                        t_first = now
                    t_last_text = now
        if t_first is None:
            result["error"] = "no text chunk"
            return
        tokens = usage.get("completion_tokens", chunks) if usage else chunks
        result.update(t_send=t_send, t_first=t_first, t_last_text=t_last_text, t_last=t_last or t_last_text,
                      ttft=t_first - t_send, tokens=tokens, text_chunks=chunks, finish=finish,
                      usage=bool(usage))
        dt = t_last_text - t_first
        result["decode_tps"] = (tokens - 1) / dt if dt > 0 and tokens > 1 else None
    except Exception as e:  # noqa: BLE001 - a benchmark reports, it does not crash
        result["error"] = f"{type(e).__name__}: {e}"
    finally:
        conn.close()


def run_round(target, n, prompts, args):
    results = [dict() for _ in range(n)]
    barrier = threading.Barrier(n + 1)
    threads = []
    for i in range(n):
        body = {"prompt": prompts[i], "max_tokens": args.max_tokens, "temperature": 0, "stream": True,
                "ignore_eos": True}
        if not args.no_usage:
            body["stream_options"] = {"include_usage": True}
        if target.models:
            body["model"] = target.models[i % len(target.models)]
        body.update(target.extra)
        th = threading.Thread(target=one_stream, args=(target, body, args.timeout, results[i], barrier))
        th.start()
        threads.append(th)
    barrier.wait()
    t0 = time.perf_counter()
    for th in threads:
        th.join()
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        return {"errors": errors}
    first = min(r["t_first"] for r in results)
    last_text = max(r["t_last_text"] for r in results)
    last = max(r["t_last"] for r in results)
    after_first = sum(r["tokens"] - 1 for r in results)
    total = sum(r["tokens"] for r in results)
    ttfts = [r["ttft"] for r in results]
    tps = [r["decode_tps"] for r in results if r["decode_tps"] is not None]
    return {
        "agg_decode_tps": after_first / (last_text - first) if last_text > first else None,
        "e2e_tps": total / (last - t0),
        "ttft_med": statistics.median(ttfts),
        "ttft_max": max(ttfts),
        "stream_decode_tps_med": statistics.median(tps) if tps else None,
        "tokens": [r["tokens"] for r in results],
        "text_chunks": [r["text_chunks"] for r in results],
        "usage_reported": all(r["usage"] for r in results),
        "wall_s": last - t0,
    }


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarize_cell(rounds):
    ok = [r for r in rounds if "errors" not in r]
    errs = [e for r in rounds if "errors" in r for e in r["errors"]]
    cell = {"rounds_ok": len(ok), "rounds_failed": len(rounds) - len(ok)}
    if errs:
        cell["first_error"] = errs[0]
    for k in ("agg_decode_tps", "e2e_tps", "ttft_med", "ttft_max", "stream_decode_tps_med"):
        cell[k] = med([r[k] for r in ok])
    cell["agg_decode_tps_all"] = [r["agg_decode_tps"] for r in ok]
    toks = sorted({t for r in ok for t in r["tokens"]})
    cell["tokens_per_stream"] = toks
    cell["usage_reported"] = all(r["usage_reported"] for r in ok) if ok else None
    return cell


def fmt(x, spec=".1f"):
    return "-" if x is None else format(x, spec)


def markdown(cells_by_n, labels):
    """cells_by_n: {n: {label: cell}} -> markdown table, ratios against labels[0]."""
    base = labels[0]
    head = ["N"] + [f"{l} agg tok/s" for l in labels]
    head += [f"{l}/{base}" for l in labels[1:]]
    head += [f"{l} TTFT ms (med/max)" for l in labels]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n in sorted(cells_by_n):
        row = cells_by_n[n]
        c = [row.get(l, {}) for l in labels]
        line = [str(n)] + [fmt(x.get("agg_decode_tps")) for x in c]
        b = c[0].get("agg_decode_tps")
        for x in c[1:]:
            v = x.get("agg_decode_tps")
            line.append(f"{v / b:.2f}x" if v and b else "-")
        for x in c:
            t1, t2 = x.get("ttft_med"), x.get("ttft_max")
            line.append(f"{fmt(t1 and t1 * 1e3, '.0f')}/{fmt(t2 and t2 * 1e3, '.0f')}")
        out.append("| " + " | ".join(line) + " |")
    return "\n".join(out)


def do_summarize(files):
    cells_by_n, labels = {}, []
    meta = None
    for path in files:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                rec = json.loads(line)
                meta = meta or rec
                for l in rec["labels"]:
                    if l not in labels:
                        labels.append(l)
                for n, row in rec["cells"].items():
                    cells_by_n.setdefault(int(n), {}).update(row)
    if not cells_by_n:
        sys.exit("nothing to summarize")
    print(f"max_tokens={meta['max_tokens']} rounds={meta['rounds']} prompt_words={meta['prompt_words']}")
    print(markdown(cells_by_n, labels))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", action="append", default=[], metavar="LABEL=URL")
    p.add_argument("--models", action="append", default=[], metavar="LABEL=m1,m2,...")
    p.add_argument("--extra", action="append", default=[], metavar="LABEL=JSON")
    p.add_argument("--n", default="1,4,8", help="concurrent streams, comma-separated (default 1,4,8)")
    p.add_argument("--max-tokens", type=int, default=64, help="M (default 64)")
    p.add_argument("--prompt-words", type=int, default=36, help="words per prompt (~1.3 tokens each; default 36)")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds per (target, N) (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds per (target, N) first (default 1)")
    p.add_argument("--timeout", type=float, default=600, help="socket timeout, s")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-usage", action="store_true", help="do not send stream_options.include_usage")
    p.add_argument("--json-out", help="append the JSON line to this file")
    p.add_argument("--summarize", nargs="+", metavar="JSONL", help="print the markdown table of earlier runs and exit")
    args = p.parse_args()
    if args.summarize:
        return do_summarize(args.summarize)
    if not args.target:
        p.error("at least one --target LABEL=URL")
    targets = {}
    for t in args.target:
        label, _, url = t.partition("=")
        targets[label] = Target(label, url)
    for spec, field in ((args.models, "models"), (args.extra, "extra")):
        for m in spec:
            label, _, v = m.partition("=")
            if label not in targets:
                p.error(f"--{field} names unknown target '{label}'")
            if field == "models":
                targets[label].models = [x for x in v.split(",") if x]
            else:
                targets[label].extra.update(json.loads(v))
    ns = [int(x) for x in args.n.split(",")]
    labels = list(targets)
    rng = random.Random(args.seed)
    rounds = {n: {l: [] for l in labels} for n in ns}
    for n in ns:
        for r in range(-args.warmup, args.rounds):
            for label in labels:
                # Fresh prompts for every (round, target, stream): no prefix cache hit anywhere.
                prompts = [make_prompt(rng, args.prompt_words) for _ in range(n)]
                res = run_round(targets[label], n, prompts, args)
                tag = "warmup" if r < 0 else f"round {r + 1}"
                if "errors" in res:
                    print(f"N={n} {label} {tag}: {len(res['errors'])} errors, first: {res['errors'][0]}",
                          file=sys.stderr)
                else:
                    print(f"N={n} {label} {tag}: agg {fmt(res['agg_decode_tps'])} tok/s, "
                          f"ttft med {res['ttft_med'] * 1e3:.0f} ms max {res['ttft_max'] * 1e3:.0f} ms, "
                          f"stream {fmt(res['stream_decode_tps_med'])} tok/s, tokens {sorted(set(res['tokens']))}",
                          file=sys.stderr, flush=True)
                if r >= 0:
                    rounds[n][label].append(res)
    cells = {n: {l: summarize_cell(rounds[n][l]) for l in labels} for n in ns}
    print(f"{'N':>3} {'target':<16} {'agg tok/s':>10} {'e2e tok/s':>10} {'stream tok/s':>13} "
          f"{'TTFT med ms':>12} {'TTFT max ms':>12} {'tokens':>8} {'ok/rounds':>9}")
    for n in ns:
        for l in labels:
            c = cells[n][l]
            toks = ",".join(map(str, c["tokens_per_stream"])) or "-"
            print(f"{n:>3} {l:<16} {fmt(c['agg_decode_tps']):>10} {fmt(c['e2e_tps']):>10} "
                  f"{fmt(c['stream_decode_tps_med']):>13} {fmt(c['ttft_med'] and c['ttft_med'] * 1e3, '.0f'):>12} "
                  f"{fmt(c['ttft_max'] and c['ttft_max'] * 1e3, '.0f'):>12} {toks:>8} "
                  f"{c['rounds_ok']}/{c['rounds_ok'] + c['rounds_failed']:<7}")
            if "first_error" in c:
                print(f"    first error: {c['first_error']}")
    print()
    print(markdown(cells, labels))
    rec = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "max_tokens": args.max_tokens, "rounds": args.rounds,
           "prompt_words": args.prompt_words, "labels": labels,
           "targets": {l: {"url": f"{t.host}:{t.port}", "models": t.models, "extra": t.extra}
                       for l, t in targets.items()},
           "loadavg": open("/proc/loadavg").read().split()[:3],
           "cells": {str(n): cells[n] for n in ns}}
    line = json.dumps(rec)
    print(line)
    if args.json_out:
        with open(args.json_out, "a") as f:
            f.write(line + "\n")
    bad = sum(c["rounds_failed"] for n in ns for c in cells[n].values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
