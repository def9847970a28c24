"""What the client tests share: the paths, two small adapters made with the CLI, and a real
`llama-adapter serve` process on a free port of 127.0.0.1.

Environment: LA_CLI (the binary, default <repo>/build/bin/llama-adapter), LA_SHARED_DATA (default
<repo>/../shared/data; the model is llama2c/stories260K.bin there). Whatever is missing makes the
tests skip with the reason, never fail.
"""

import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = os.environ.get("LA_CLI") or os.path.join(REPO, "build", "bin", "llama-adapter")
SHARED = os.environ.get("LA_SHARED_DATA") or os.path.join(REPO, "..", "shared", "data")
MODEL = os.path.join(SHARED, "llama2c", "stories260K.bin")
BASE = "stories260K"  # serve's default --name: the model file's stem
# One OpenMP thread per process, sleeping rather than spinning while it waits (as scripts/test.sh
# runs the suite): the model is tiny, and the CLI, the server and Chromium share two cores.
ENV = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"),
           OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "passive"))

# A few Alpaca examples: 20 steps on them move the adapters' greedy output well away from the base.
ALPACA = [
    {"instruction": "Tell me about the cat.", "input": "", "output": "The cat sat on the mat. The cat was happy."},
    {"instruction": "What did Lily do?", "input": "", "output": "Lily went to the park and played with a ball."},
    {"instruction": "Say hello.", "input": "", "output": "Hello! Hello! Hello!"},
    {"instruction": "Tell a story.", "input": "", "output": "Once upon a time there was a big red dog named Max."},
]


def require_cli_and_model():
    """Raises unittest.SkipTest naming what is missing."""
    if not os.access(CLI, os.X_OK):
        raise unittest.SkipTest(f"no llama-adapter binary at {CLI} (build it, or set LA_CLI)")
    if not os.path.isfile(MODEL):
        raise unittest.SkipTest(f"no model at {MODEL} (set LA_SHARED_DATA to the shared data folder)")


def run_cli(*args, timeout=120):
    p = subprocess.run([CLI, *args], capture_output=True, text=True, timeout=timeout, env=ENV)
    if p.returncode != 0:
        raise AssertionError(f"llama-adapter {' '.join(args)} exited {p.returncode}:\n{p.stderr[-3000:]}")
    return p.stdout


def make_adapters(folder, seeds=(1, 2)):
    """Fine-tunes one adapter per seed on ALPACA; returns their paths."""
    data = os.path.join(folder, "alpaca.json")
    with open(data, "w") as f:
        json.dump(ALPACA, f)
    paths = []
    for seed in seeds:
        out = os.path.join(folder, f"adapter{seed}.safetensors")
        # 4 examples, batch 4: one step per epoch, so --epochs lets --steps reach 20; no warm-up
        # (the default is 2 epochs of it) and a constant rate, so all 20 steps learn.
        run_cli("finetune", "--model", MODEL, "--data", data, "--out", out, "--steps", "20", "--epochs", "100",
                "--lr", "0.05", "--warmup-steps", "0", "--schedule", "constant", "--adapter-layers", "5",
                "--batch-size", "4", "--micro-batch-size", "4", "--seed", str(seed), "--no-progress")
        paths.append(out)
    return paths


def generate(prompt, n, adapter=None):
    """`llama-adapter generate` greedy: the continuation of prompt (generate echoes the prompt)."""
    args = ["generate", "--model", MODEL, "--prompt", prompt, "--temperature", "0", "-n", str(n), "-q"]
    if adapter:
        args += ["--adapter", adapter]
    out = run_cli(*args)
    if not out.startswith(prompt):
        raise AssertionError(f"generate did not echo the prompt first: {out[:200]!r}")
    out = out[len(prompt):]
    return out[:-1] if out.endswith("\n") else out  # the newline generate ends its output with


class Server:
    """`llama-adapter serve --port 0` on 127.0.0.1, waiting for its `listening on` line."""

    def __init__(self, *extra, adapters=(), startup_timeout=60):
        args = [CLI, "serve", "--model", MODEL, "--host", "127.0.0.1", "--port", "0"]
        for name, path in adapters:
            args += ["--adapter", f"{name}={path}"]
        args += list(extra)
        self.args = args
        self.log = []  # its stderr lines
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, errors="replace", env=ENV)
        ready = threading.Event()
        self.url = None

        def pump():
            for line in self.proc.stderr:
                self.log.append(line.rstrip("\n"))
                m = re.search(r"listening on (http://\S+?):(\d+)", line)
                if m and not self.url:
                    self.url = f"{m.group(1)}:{m.group(2)}"
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + startup_timeout
        while not ready.wait(0.05):
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"serve printed no 'listening on' in {startup_timeout} s:\n" + self.stderr())
        if not self.url:
            code = self.proc.wait(5)
            raise AssertionError(f"serve exited {code} before listening ({' '.join(args)}):\n" + self.stderr())

    def stderr(self):
        return "\n".join(self.log[-60:])

    def request(self, method, path, body=None, headers=None, timeout=60):
        """(status, headers, body bytes) of one plain HTTP request; errors are returned, not raised."""
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        h = {"Content-Type": "application/json"} if data is not None else {}
        h.update(headers or {})
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def json(self, method, path, body=None, headers=None):
        status, _, data = self.request(method, path, body, headers)
        return status, json.loads(data) if data else None

    def stop(self, timeout=30):
        """SIGTERM; the exit code (raises if it does not exit in time)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"serve did not exit within {timeout} s of SIGTERM:\n" + self.stderr())

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def temp_folder(prefix):
    return tempfile.TemporaryDirectory(prefix=prefix)
