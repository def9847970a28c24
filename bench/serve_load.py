#!/usr/bin/env python3
"""Load and robustness test of `llama-adapter serve` (Python standard library only).

THREADS client threads (64) each send REQUESTS requests (20), one after another, to a server
already running at --url:
  ~10%  malformed (--malformed): bad JSON, an empty body, a JSON array, a missing prompt, wrong
        types (prompt, max_tokens, temperature, stream), negative max_tokens, an unknown model,
        a huge max_tokens, an over-long prompt. Each must get a 4xx with a JSON body holding
        "error"; anything else is unexpected.
  ~10%  streamed and cancelled (--cancel): the socket is closed right after the first chunk.
  rest  streamed or not (half each), greedy (temperature 0), a model from /v1/models (the
        adapters and the base), a prompt from a small set, max_tokens 1..64 (half of them from a
        small set, so that the same (model, prompt, max_tokens) repeats).
Checks on well-formed responses:
  - HTTP 200; non-streamed: JSON with choices[0].text a string, finish_reason "length" or
    "stop", usage.completion_tokens <= max_tokens (== max_tokens when "length");
    streamed: every "data:" line is JSON (or [DONE]), the stream ends with [DONE], a
    finish_reason arrives;
  - determinism: every completed greedy response (non-streamed text, or a stream's texts joined)
    for the same (model, prompt, max_tokens) is identical;
  - prefix consistency: for the same (model, prompt), the text at a smaller max_tokens is a
    prefix of the text at a larger one (a trailing U+FFFD of the shorter one, a UTF-8 character
    cut by the token limit, is ignored).
A 429 (the server's queue full) is counted apart, not as unexpected. Reports the counts, the server's VmRSS (and VmHWM) before and after (--pid), GET /health at the
end; the exit status is 1 when anything was unexpected (or /health is not 200).

  python3 bench/serve_load.py --url http://127.0.0.1:8080 --pid $(pgrep -n llama-adapter)
"""
import argparse
import collections
import http.client
import json
import random
import sys
import threading
import time
import urllib.parse

PROMPTS = [
    "Once upon a time, in a small village by the river, there lived an old clockmaker who",
    "The three most important things to remember when learning a new language are",
    "Write a short poem about the sea.",
    "Q: What is the capital of France?\nA:",
    "def fibonacci(n):\n    ",
    "In 1969, the first humans landed on",
]
FIXED_MAX_TOKENS = [1, 2, 8, 17, 32, 64]


def vm(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) // 1024  # MiB
    except OSError:
        return None
    return None


class Client:
    def __init__(self, url, timeout):
        u = urllib.parse.urlsplit(url if "://" in url else "http://" + url)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        self.prefix = u.path.rstrip("/")
        self.timeout = timeout

    def conn(self):
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def get(self, path):
        c = self.conn()
        try:
            c.request("GET", self.prefix + path)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()


def malformed_request(rng, models):
    """(kind, raw body bytes)"""
    kinds = ["bad_json", "empty_body", "json_array", "missing_prompt", "prompt_int", "max_tokens_str",
             "temperature_str", "stream_str", "negative_max_tokens", "unknown_model", "huge_max_tokens",
             "long_prompt"]
    kind = rng.choice(kinds)
    base = {"prompt": rng.choice(PROMPTS), "max_tokens": 4, "temperature": 0}
    if models:
        base["model"] = rng.choice(models)
    body = dict(base)
    if kind == "bad_json":
        return kind, b'{"prompt": "hello", "max_tokens": 4'
    if kind == "empty_body":
        return kind, b""
    if kind == "json_array":
        return kind, b'[{"prompt": "hello"}]'
    if kind == "missing_prompt":
        del body["prompt"]
    elif kind == "prompt_int":
        body["prompt"] = 12345
    elif kind == "max_tokens_str":
        body["max_tokens"] = "ten"
    elif kind == "temperature_str":
        body["temperature"] = "hot"
    elif kind == "stream_str":
        body["stream"] = "yes"
    elif kind == "negative_max_tokens":
        body["max_tokens"] = -5
    elif kind == "unknown_model":
        body["model"] = "no-such-model-%d" % rng.randrange(1000)
    elif kind == "huge_max_tokens":
        body["max_tokens"] = 10 ** 9
    elif kind == "long_prompt":
        body["prompt"] = " ".join(rng.choice(["apple", "river", "stone", "cloud"]) for _ in range(20000))
    return kind, json.dumps(body).encode()


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = collections.Counter()
        self.unexpected = []
        self.texts = collections.defaultdict(list)  # (model, prompt, max_tokens) -> [(how, text)]

    def count(self, key):
        with self.lock:
            self.counts[key] += 1

    def bad(self, what):
        with self.lock:
            self.counts["unexpected"] += 1
            if len(self.unexpected) < 200:
                self.unexpected.append(what)

    def text(self, key, how, text):
        with self.lock:
            self.texts[key].append((how, text))


def post(client, body_bytes):
    c = client.conn()
    c.request("POST", client.prefix + "/v1/completions", body=body_bytes,
              headers={"Content-Type": "application/json"})
    return c, c.getresponse()


def do_malformed(client, stats, rng, models):
    kind, raw = malformed_request(rng, models)
    c = None
    try:
        c, r = post(client, raw)
        data = r.read()
        if r.status == 429:
            return stats.count("busy_429")
        if not 400 <= r.status < 500:
            return stats.bad(f"malformed {kind}: HTTP {r.status} (expected 4xx): {data[:200]!r}")
        try:
            obj = json.loads(data)
        except ValueError:
            return stats.bad(f"malformed {kind}: HTTP {r.status} with a non-JSON body {data[:200]!r}")
        if not isinstance(obj, dict) or "error" not in obj:
            return stats.bad(f"malformed {kind}: HTTP {r.status} JSON without 'error': {data[:200]!r}")
        stats.count("malformed_rejected")
        stats.count(f"malformed_rejected.{kind}")
    except Exception as e:  # noqa: BLE001
        stats.bad(f"malformed {kind}: {type(e).__name__}: {e}")
    finally:
        if c:
            c.close()


def read_stream(r, label, stats, cancel_after_first=False):
    """Returns (text, finish_reason, completion_tokens or None), or None after a reported problem."""
    parts, finish, usage_tokens, done = [], None, None, False
    while True:
        line = r.readline()
        if not line:
            break
        line = line.strip()
        if not line:
            continue
        if not line.startswith(b"data:"):
            continue  # SSE comments / other fields
        payload = line[5:].strip()
        if payload == b"[DONE]":
            done = True
            break
        try:
            obj = json.loads(payload)
        except ValueError:
            stats.bad(f"{label}: a chunk is not JSON: {payload[:200]!r}")
            return None
        if "error" in obj:
            stats.bad(f"{label}: error chunk {obj['error']!r}")
            return None
        for ch in obj.get("choices") or []:
            if not isinstance(ch.get("text", ""), str):
                stats.bad(f"{label}: choices[].text is not a string: {payload[:200]!r}")
                return None
            parts.append(ch.get("text") or "")
            if ch.get("finish_reason"):
                finish = ch["finish_reason"]
        if isinstance(obj.get("usage"), dict):
            usage_tokens = obj["usage"].get("completion_tokens")
        if cancel_after_first:
            return "cancelled"
    if not done:
        stats.bad(f"{label}: the stream ended without [DONE]")
        return None
    if finish is None:
        stats.bad(f"{label}: no finish_reason in the stream")
        return None
    return "".join(parts), finish, usage_tokens


def do_good(client, stats, rng, models, mode, max_tokens_cap):
    model = rng.choice(models) if models else None
    prompt = rng.choice(PROMPTS)
    mt = rng.choice(FIXED_MAX_TOKENS) if rng.random() < 0.5 else rng.randint(1, max_tokens_cap)
    mt = min(mt, max_tokens_cap)
    body = {"prompt": prompt, "max_tokens": mt, "temperature": 0}
    if model is not None:
        body["model"] = model
    stream = mode in ("stream", "cancel")
    if stream:
        body["stream"] = True
    label = f"{mode} model={model} max_tokens={mt} prompt#{PROMPTS.index(prompt)}"
    c = None
    try:
        c, r = post(client, json.dumps(body).encode())
        if r.status == 429:  # the server's queue is full (--max-queue): back-pressure, not a failure
            r.read()
            return stats.count("busy_429")
        if r.status != 200:
            return stats.bad(f"{label}: HTTP {r.status}: {r.read()[:300]!r}")
        if mode == "cancel":
            res = read_stream(r, label, stats, cancel_after_first=True)
            if res is None:
                return
            if res != "cancelled":  # finished before the first chunk was read: still fine
                stats.count("cancel_completed_anyway")
            try:
                c.sock and c.sock.shutdown(2)
            except OSError:
                pass
            c.close()
            c = None
            return stats.count("cancelled")
        if stream:
            res = read_stream(r, label, stats)
            if res is None:
                return
            text, finish, ntok = res
        else:
            data = r.read()
            try:
                obj = json.loads(data)
                ch = obj["choices"][0]
                text, finish = ch["text"], ch.get("finish_reason")
                ntok = (obj.get("usage") or {}).get("completion_tokens")
            except (ValueError, KeyError, IndexError, TypeError):
                return stats.bad(f"{label}: unexpected body {data[:300]!r}")
            if not isinstance(text, str):
                return stats.bad(f"{label}: choices[0].text is not a string")
        if finish not in ("length", "stop"):
            return stats.bad(f"{label}: finish_reason {finish!r}")
        if ntok is not None:
            if ntok > mt or (finish == "length" and ntok != mt):
                return stats.bad(f"{label}: completion_tokens {ntok} with finish_reason {finish}")
        elif not stream:
            return stats.bad(f"{label}: no usage.completion_tokens")
        stats.text((model, prompt, mt), mode, text)
        stats.count(f"ok_{mode}")
    except Exception as e:  # noqa: BLE001
        stats.bad(f"{label}: {type(e).__name__}: {e}")
    finally:
        if c:
            c.close()


def worker(idx, args, client, stats, models):
    rng = random.Random(args.seed * 1000003 + idx)
    for _ in range(args.requests):
        x = rng.random()
        if x < args.malformed:
            do_malformed(client, stats, rng, models)
        elif x < args.malformed + args.cancel:
            do_good(client, stats, rng, models, "cancel", args.max_tokens)
        else:
            do_good(client, stats, rng, models, "stream" if rng.random() < 0.5 else "plain", args.max_tokens)


def check_consistency(stats):
    by_mp = collections.defaultdict(dict)  # (model, prompt) -> {max_tokens: text}
    repeats = 0
    for (model, prompt, mt), entries in sorted(stats.texts.items(), key=lambda kv: repr(kv[0])):
        texts = {t for _, t in entries}
        repeats += len(entries) - 1
        if len(texts) > 1:
            stats.bad(f"nondeterministic: model={model} max_tokens={mt} prompt#{PROMPTS.index(prompt)}: "
                      f"{len(texts)} different texts over {len(entries)} responses "
                      f"({', '.join(sorted({h for h, _ in entries}))}): {[t[:80] for t in list(texts)[:3]]!r}")
        by_mp[(model, prompt)][mt] = entries[0][1]
    prefix_pairs = 0
    for (model, prompt), d in by_mp.items():
        mts = sorted(d)
        for a, b in zip(mts, mts[1:]):
            prefix_pairs += 1
            short, long_ = d[a].rstrip("\ufffd"), d[b]
            if not long_.startswith(short):
                stats.bad(f"prefix mismatch: model={model} prompt#{PROMPTS.index(prompt)}: max_tokens {a} gave "
                          f"{d[a][:80]!r}, {b} gave {long_[:80]!r}")
    return repeats, prefix_pairs


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8080")
    p.add_argument("--pid", type=int, help="the server's process id (for VmRSS)")
    p.add_argument("--threads", type=int, default=64)
    p.add_argument("--requests", type=int, default=20, help="requests per thread")
    p.add_argument("--malformed", type=float, default=0.10, help="fraction of malformed requests")
    p.add_argument("--cancel", type=float, default=0.10, help="fraction of streams cancelled after the first chunk")
    p.add_argument("--max-tokens", type=int, default=64, help="largest max_tokens of a well-formed request")
    p.add_argument("--models", help="comma-separated models to use (default: every id of GET /v1/models)")
    p.add_argument("--timeout", type=float, default=1200, help="socket timeout per request, s")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    client = Client(args.url, args.timeout)
    stats = Stats()

    if args.models:
        models = [m for m in args.models.split(",") if m]
    else:
        st, data = client.get("/v1/models")
        if st != 200:
            sys.exit(f"GET /v1/models: HTTP {st}: {data[:200]!r}")
        models = [m["id"] for m in json.loads(data).get("data", [])]
    print(f"models: {models}", flush=True)
    rss0, hwm0 = (vm(args.pid, "VmRSS"), vm(args.pid, "VmHWM")) if args.pid else (None, None)

    t0 = time.time()
    threads = [threading.Thread(target=worker, args=(i, args, client, stats, models)) for i in range(args.threads)]
    for t in threads:
        t.start()
    last = time.time()
    while any(t.is_alive() for t in threads):
        for t in threads:
            t.join(timeout=1)
            if time.time() - last > 30:
                last = time.time()
                with stats.lock:
                    done = sum(v for k, v in stats.counts.items() if "." not in k)
                print(f"  {time.time() - t0:.0f} s: {done} of {args.threads * args.requests} done, "
                      f"{stats.counts['unexpected']} unexpected"
                      + (f", VmRSS {vm(args.pid, 'VmRSS')} MiB" if args.pid else ""), flush=True)
    wall = time.time() - t0
    repeats, prefix_pairs = check_consistency(stats)
    rss1, hwm1 = (vm(args.pid, "VmRSS"), vm(args.pid, "VmHWM")) if args.pid else (None, None)
    try:
        hst, hdata = client.get("/health")
    except Exception as e:  # noqa: BLE001
        hst, hdata = None, repr(e).encode()

    c = stats.counts
    ok = c["ok_plain"] + c["ok_stream"] + c["cancelled"]
    print(f"\n{args.threads} threads x {args.requests} requests in {wall:.1f} s")
    print(f"ok: {ok} (non-streamed {c['ok_plain']}, streamed {c['ok_stream']}, cancelled {c['cancelled']}"
          f"{', of which finished before the first chunk ' + str(c['cancel_completed_anyway']) if c['cancel_completed_anyway'] else ''})")
    kinds = ", ".join(f"{k.split('.', 1)[1]} {v}" for k, v in sorted(c.items()) if k.startswith("malformed_rejected."))
    print(f"errors as expected (4xx JSON): {c['malformed_rejected']} ({kinds})")
    if c["busy_429"]:
        print(f"429 (queue full, not counted as unexpected): {c['busy_429']}")
    print(f"unexpected: {c['unexpected']}")
    print(f"determinism: {len(stats.texts)} distinct (model, prompt, max_tokens), {repeats} repeats compared; "
          f"{prefix_pairs} prefix pairs compared")
    for u in stats.unexpected[:40]:
        print(f"  UNEXPECTED {u}")
    if args.pid:
        print(f"server VmRSS before {rss0} MiB, after {rss1} MiB (VmHWM {hwm0} -> {hwm1} MiB)")
    print(f"/health: {hst} {hdata[:200].decode(errors='replace')}")
    summary = {"threads": args.threads, "requests": args.requests, "wall_s": round(wall, 1), "ok": ok,
               "ok_plain": c["ok_plain"], "ok_stream": c["ok_stream"], "cancelled": c["cancelled"],
               "malformed_rejected": c["malformed_rejected"], "busy_429": c["busy_429"], "unexpected": c["unexpected"],
               "distinct_keys": len(stats.texts), "repeats_compared": repeats, "prefix_pairs": prefix_pairs,
               "rss_mib_before": rss0, "rss_mib_after": rss1, "hwm_mib_before": hwm0, "hwm_mib_after": hwm1,
               "health_status": hst}
    print(json.dumps(summary))
    return 1 if c["unexpected"] or hst != 200 else 0


if __name__ == "__main__":
    sys.exit(main())
