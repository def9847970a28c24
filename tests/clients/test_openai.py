"""`llama-adapter serve` through the official openai SDK (and plain HTTP where the SDK cannot
reach): models, chat and text completions streamed and not, usage, greedy equality with
`generate`, errors as the SDK raises them, concurrent streams on different adapters, adapters
loaded and removed while serving, and a clean exit on SIGTERM.

Run through tests/clients/run.sh (it makes the venv with the openai package).
"""

import json
import os
import shutil
import threading
import unittest

import harness

try:
    import openai
except ImportError:  # run.sh installs it; a bare interpreter skips
    openai = None

PROMPTS = ["Once upon a time", "Lily and Tom went to the park. They"]
CHAT = [{"role": "user", "content": "Tell me about the cat."}]
N = 40  # tokens per greedy reply: stories260K makes them in milliseconds


def setUpModule():
    if openai is None:
        raise unittest.SkipTest("the openai package is not installed (tests/clients/run.sh installs it)")
    harness.require_cli_and_model()


class OpenAIClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = harness.temp_folder("la-clients-openai-")
        cls.adapters = dict(zip(["ad-a", "ad-b"], harness.make_adapters(cls.tmp.name)))
        cls.server = harness.Server("--parallel", "4", adapters=cls.adapters.items())
        cls.client = openai.OpenAI(base_url=cls.server.url + "/v1", api_key="unused", max_retries=0, timeout=60)
        cls.models = [harness.BASE, *cls.adapters]

    @classmethod
    def tearDownClass(cls):
        cls.server.kill()
        cls.tmp.cleanup()

    def diag(self):
        return "\nserver stderr:\n" + self.server.stderr()

    # --- helpers ---------------------------------------------------------------------------------
    def chat(self, model, messages, n=N, **kw):
        r = self.client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=n, **kw)
        return r.choices[0].message.content, r

    def chat_stream(self, model, messages, n=N, **kw):
        stream = self.client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=n,
                                                     stream=True, **kw)
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        return text, chunks

    def complete(self, model, prompt, n=N, **kw):
        r = self.client.completions.create(model=model, prompt=prompt, temperature=0, max_tokens=n, **kw)
        return r.choices[0].text, r

    def complete_stream(self, model, prompt, n=N, **kw):
        stream = self.client.completions.create(model=model, prompt=prompt, temperature=0, max_tokens=n, stream=True,
                                                **kw)
        chunks = list(stream)
        return "".join(c.choices[0].text or "" for c in chunks if c.choices), chunks

    # --- tests -----------------------------------------------------------------------------------
    def test_models_list(self):
        entries = [m.model_dump() for m in self.client.models.list().data]
        self.assertEqual([e["id"] for e in entries], self.models, entries)
        base = entries[0]
        self.assertEqual(base["object"], "model")
        self.assertIs(base.get("base"), True, base)
        self.assertEqual(base.get("owned_by"), "llama-adapter")
        for e in entries[1:]:
            self.assertEqual(e.get("parent"), harness.BASE, e)
            self.assertFalse(e.get("vision", False), e)  # no CLIP loaded

    def test_chat_greedy_streamed_equals_not(self):
        replies = {}
        for model in self.models:
            with self.subTest(model=model):
                text, r = self.chat(model, CHAT)
                self.assertEqual(r.object, "chat.completion")
                self.assertEqual(r.choices[0].message.role, "assistant")
                self.assertIn(r.choices[0].finish_reason, ("stop", "length"))
                self.assertTrue(text, "empty greedy reply" + self.diag())
                streamed, chunks = self.chat_stream(model, CHAT)
                self.assertEqual(streamed, text)
                self.assertTrue(all(c.object == "chat.completion.chunk" for c in chunks))
                self.assertGreater(len(chunks), 2, "a streamed reply should come in several chunks")
                self.assertEqual(chunks[-1].choices[0].finish_reason, r.choices[0].finish_reason)
                self.assertTrue(all(c.choices[0].finish_reason is None for c in chunks[:-1]))
                replies[model] = text
        # The adapters were trained for this: their greedy replies are not the base's.
        self.assertNotEqual(replies["ad-a"], replies[harness.BASE])
        self.assertNotEqual(replies["ad-b"], replies[harness.BASE])

    def test_completions_equal_generate(self):
        for model in self.models:
            for prompt in PROMPTS:
                with self.subTest(model=model, prompt=prompt):
                    expected = harness.generate(prompt, N, self.adapters.get(model))
                    text, r = self.complete(model, prompt)
                    self.assertEqual(r.object, "text_completion")
                    self.assertEqual(text, expected, self.diag())
                    streamed, chunks = self.complete_stream(model, prompt)
                    self.assertEqual(streamed, expected)
                    self.assertTrue(all(c.object == "text_completion" for c in chunks))
                    self.assertIn(chunks[-1].choices[0].finish_reason, ("stop", "length"))

    def test_usage(self):
        text, r = self.chat(harness.BASE, CHAT, n=7)
        self.assertEqual(r.choices[0].finish_reason, "length")  # 7 tokens end no story
        self.assertEqual(r.usage.completion_tokens, 7)
        self.assertGreater(r.usage.prompt_tokens, 0)
        self.assertEqual(r.usage.total_tokens, r.usage.prompt_tokens + 7)
        streamed, chunks = self.chat_stream(harness.BASE, CHAT, n=7, stream_options={"include_usage": True})
        self.assertEqual(streamed, text)
        last = chunks[-1]
        self.assertEqual(last.choices, [])
        self.assertEqual(last.usage.model_dump(include={"prompt_tokens", "completion_tokens", "total_tokens"}),
                         r.usage.model_dump(include={"prompt_tokens", "completion_tokens", "total_tokens"}))
        self.assertTrue(all(c.usage is None for c in chunks[:-1]))
        self.assertEqual(chunks[-2].choices[0].finish_reason, "length")
        # Without include_usage no chunk carries usage.
        _, plain = self.chat_stream(harness.BASE, CHAT, n=7)
        self.assertTrue(all(c.usage is None and c.choices for c in plain))
        # Text completions too.
        _, chunks = self.complete_stream(harness.BASE, PROMPTS[0], n=5, stream_options={"include_usage": True})
        self.assertEqual(chunks[-1].choices, [])
        self.assertEqual(chunks[-1].usage.completion_tokens, 5)

    def test_errors_as_the_sdk_raises_them(self):
        with self.assertRaises(openai.NotFoundError) as e:
            self.client.chat.completions.create(model="no-such-model", messages=CHAT)
        self.assertEqual(e.exception.status_code, 404)
        self.assertEqual(e.exception.code, "model_not_found")
        with self.assertRaises(openai.NotFoundError):
            self.client.completions.create(model="no-such-model", prompt="x")
        with self.assertRaises(openai.BadRequestError) as e:
            self.client.chat.completions.create(model=harness.BASE, messages=CHAT, temperature="hot")
        self.assertEqual(e.exception.type, "invalid_request_error")
        with self.assertRaises(openai.BadRequestError):  # no messages: the SDK's low-level call
            self.client.post("/chat/completions", body={"model": harness.BASE}, cast_to=object)
        with self.assertRaises(openai.BadRequestError):
            self.client.chat.completions.create(model=harness.BASE, messages=[{"role": "user", "content": 7}])
        with self.assertRaises(openai.BadRequestError):
            self.client.completions.create(model=harness.BASE, prompt="x", max_tokens=-3)
        with self.assertRaises(openai.BadRequestError):  # echo is not supported
            self.client.completions.create(model=harness.BASE, prompt="x", echo=True)
        with self.assertRaises(openai.BadRequestError):  # a stream's errors come before its first byte
            list(self.client.chat.completions.create(model=harness.BASE, messages=CHAT, top_p="all", stream=True))
        # 413 for a body larger than the server takes (64 MiB of text).
        with self.assertRaises(openai.APIStatusError) as e:
            self.client.chat.completions.create(model=harness.BASE,
                                                messages=[{"role": "user", "content": "a" * (64 << 20)}])
        self.assertEqual(e.exception.status_code, 413, self.diag())
        # Still answering.
        self.assertTrue(self.chat(harness.BASE, CHAT, n=3)[0])

    def test_errors_over_plain_http(self):
        s = self.server
        status, body = s.json("POST", "/v1/chat/completions", b'{"model": "stories260K", "messages": [')
        self.assertEqual(status, 400)
        self.assertLessEqual({"message", "type", "code"}, set(body["error"]), body)
        self.assertEqual(body["error"]["type"], "invalid_request_error")
        status, body = s.json("GET", "/v1/no-such-route")
        self.assertEqual(status, 404)
        self.assertIn("error", body)
        status, headers, _ = s.request("OPTIONS", "/v1/chat/completions", headers={
            "Origin": "http://example.test", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type"})
        self.assertIn(status, (200, 204))
        self.assertEqual(headers.get("Access-Control-Allow-Origin"), "*")
        status, headers, _ = s.request("GET", "/v1/models", headers={"Origin": "http://example.test"})
        self.assertEqual(headers.get("Access-Control-Allow-Origin"), "*")

    def test_page_metrics_tokenize(self):
        s = self.server
        status, headers, page = s.request("GET", "/")
        self.assertEqual(status, 200)
        self.assertTrue(headers.get("Content-Type", "").startswith("text/html"), headers)
        with open(os.path.join(harness.REPO, "src", "la", "serve", "page", "index.html"), "rb") as f:
            self.assertEqual(page, f.read(), "GET / is not the page in src/la/serve/page/index.html")
        status, _, metrics = s.request("GET", "/metrics")
        self.assertEqual(status, 200)
        self.assertIn(b"# TYPE", metrics)
        status, body = s.json("POST", "/tokenize", {"content": PROMPTS[0]})
        self.assertEqual(status, 200)
        tokens = body["tokens"]
        self.assertTrue(tokens and all(isinstance(t, int) for t in tokens), body)
        status, body = s.json("POST", "/detokenize", {"tokens": tokens})
        self.assertEqual(status, 200)
        self.assertEqual(body["content"].strip(), PROMPTS[0])

    def test_concurrent_streams_equal_alone(self):
        jobs = [(m, p) for m in self.models for p in PROMPTS] + [(m, "chat") for m in self.models]
        alone = {}
        for m, p in jobs:
            alone[(m, p)] = self.chat(m, CHAT, n=60)[0] if p == "chat" else self.complete(m, p, n=60)[0]
        together, errors = {}, []
        start = threading.Barrier(len(jobs))

        def run(m, p):
            try:
                with openai.OpenAI(base_url=self.server.url + "/v1", api_key="unused", max_retries=0,
                                   timeout=60) as client:
                    start.wait()
                    if p == "chat":
                        stream = client.chat.completions.create(model=m, messages=CHAT, temperature=0, max_tokens=60,
                                                                stream=True)
                        together[(m, p)] = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
                    else:
                        stream = client.completions.create(model=m, prompt=p, temperature=0, max_tokens=60,
                                                           stream=True)
                        together[(m, p)] = "".join(c.choices[0].text or "" for c in stream if c.choices)
            except Exception as e:  # reported below, with the job
                errors.append(f"{m} {p!r}: {e!r}")

        threads = [threading.Thread(target=run, args=j) for j in jobs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(errors, [], self.diag())
        for j in jobs:
            self.assertEqual(together.get(j), alone[j], f"{j}: differs when batched with others")

    def test_adapters_loaded_and_removed_while_serving(self):
        s = self.server
        path = os.path.join(self.tmp.name, "copy-of-a.safetensors")
        shutil.copyfile(self.adapters["ad-a"], path)
        status, body = s.json("POST", "/v1/adapters", {"name": "ad-c", "path": path})
        self.assertIn(status, (200, 201), body)
        ids = [m.id for m in self.client.models.list().data]
        self.assertIn("ad-c", ids)
        self.assertEqual(self.chat("ad-c", CHAT)[0], self.chat("ad-a", CHAT)[0])
        status, body = s.json("POST", "/v1/adapters", {"name": "ad-d", "path": path + ".missing"})
        self.assertEqual(status // 100, 4, body)
        self.assertIn("error", body)
        status, body = s.json("DELETE", "/v1/adapters/ad-c")
        self.assertEqual(status // 100, 2, body)
        self.assertNotIn("ad-c", [m.id for m in self.client.models.list().data])
        with self.assertRaises(openai.NotFoundError):
            self.chat("ad-c", CHAT)

    def test_z_healthy_then_sigterm(self):  # last (unittest runs them in name order)
        status, body = self.server.json("GET", "/health")
        self.assertEqual(status, 200)
        self.assertEqual(body["status"], "ok")
        # The SDK keeps its connection open (keep-alive): closed first, as a program ends with it.
        self.client.close()
        self.assertEqual(self.server.stop(), 0, self.diag())


class ApiKeyTest(unittest.TestCase):
    """A second server with --api-key."""

    KEY = "sk-test-1234"

    @classmethod
    def setUpClass(cls):
        cls.server = harness.Server("--api-key", cls.KEY)
        cls.clients = []

    @classmethod
    def tearDownClass(cls):
        cls.server.kill()

    def client(self, key):
        c = openai.OpenAI(base_url=self.server.url + "/v1", api_key=key, max_retries=0, timeout=30)
        self.clients.append(c)
        return c

    def test_key(self):
        with self.assertRaises(openai.AuthenticationError) as e:
            self.client("sk-wrong").models.list()
        self.assertEqual(e.exception.status_code, 401)
        with self.assertRaises(openai.AuthenticationError):
            self.client("sk-wrong").chat.completions.create(model=harness.BASE, messages=CHAT, max_tokens=3)
        status, body = self.server.json("GET", "/v1/models")  # no Authorization header at all
        self.assertEqual(status, 401)
        self.assertIn("error", body)
        self.assertEqual([m.id for m in self.client(self.KEY).models.list().data], [harness.BASE])
        r = self.client(self.KEY).chat.completions.create(model=harness.BASE, messages=CHAT, max_tokens=3)
        self.assertTrue(r.choices[0].message.content)
        # The page itself loads without a key (it asks for one in #apikey).
        status, _, page = self.server.request("GET", "/")
        self.assertEqual(status, 200)
        self.assertIn(b'id="apikey"', page)
        for c in self.clients:  # their keep-alive connections, closed as a program ends with them
            c.close()
        self.assertEqual(self.server.stop(), 0, self.server.stderr())


if __name__ == "__main__":
    unittest.main()
