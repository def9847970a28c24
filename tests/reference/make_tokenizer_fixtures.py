#!/usr/bin/env python3
"""Writes tests/fixtures/tokenizer/: a large mixed text and the ids Hugging Face `tokenizers`
(PyPI) gives it with Llama-3's tokenizer.json, for tests/test_byte_bpe.cpp.

    /work/venv-ref/bin/python tests/reference/make_tokenizer_fixtures.py [../shared/data]

The text is made up here, deterministically (seeded): English-like prose with contractions in
both cases, source code, CJK, emoji (with ZWJ sequences and skin tones), numbers of every
length, runs of spaces/tabs/newlines (mixed, and at the ends), accented Latin, Cyrillic, Greek,
Arabic, Devanagari, combining marks, and the characters the pre-tokenizer treats specially.
"""
import json
import os
import random
import sys

from tokenizers import Tokenizer
import tokenizers

here = os.path.dirname(os.path.abspath(__file__))
shared = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "..", "shared", "data")
out_dir = os.path.join(here, "..", "fixtures", "tokenizer")
os.makedirs(out_dir, exist_ok=True)

rng = random.Random(20261206)
words = ("the of and to in is was for that with as on by at from his her they we you it this be are "
         "tokenizer merge adapter gate prompt layer attention llama model weights training learning "
         "zero init quickly brown fox jumps over lazy dog Hello World OpenAI Meta LLaMA GPT").split()
contractions = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Ve", "'M", "'LL", "'D", "'x"]
code = [
    "def f(x):\n    return x**2 + 1\n",
    "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }\n",
    "#include <vector>\nint main() {\n\treturn 0;\n}\n",
    "if (a != b && c >= d) { x = y << 2; } // comment\n",
    "SELECT id, name FROM users WHERE age > 30;\n",
    "const s = `template ${value}`; let r = /a+b*/g;\n",
    "    \n\t\t\n   \t  x = {'k': [1, 2, 3], \"v\": None}\n",
    "<html><body><p class=\"x\">Hi &amp; bye</p></body></html>\n",
]
scripts = [
    (0x4E00, 0x9FA5), (0x3040, 0x309F), (0x30A0, 0x30FF), (0xAC00, 0xD7A3),  # CJK, kana, Hangul
    (0x0400, 0x04FF), (0x0370, 0x03FF), (0x0600, 0x06FF), (0x0900, 0x097F),  # Cyrillic, Greek, Arabic, Devanagari
    (0x00C0, 0x00FF), (0x0100, 0x017F),  # accented Latin
]
emoji = ["🦙", "😀", "👍🏽", "👩‍💻", "🇩🇪", "❤️", "🤖", "✅", "🎉", "👨‍👩‍👧‍👦", "🫠"]
specials = ["\u00a0", "\u2009", "\u3000", "\u200b", "\u0301", "\u0308", "…", "—", "“", "”", "«", "»", "€", "½",
            "\r\n", "\r", "\x0b", "\x0c", "\u2028", "\ufeff"]


def piece():
    r = rng.random()
    if r < 0.40:
        w = rng.choice(words)
        if rng.random() < 0.1:
            w = w.upper()
        return w + (rng.choice(contractions) if rng.random() < 0.12 else "")
    if r < 0.50:
        return "".join(chr(rng.randint(*rng.choice(scripts))) for _ in range(rng.randint(1, 8)))
    if r < 0.58:
        return str(rng.randint(0, 10 ** rng.randint(1, 12))) + rng.choice(["", ".", ",", "%", "px", ".5"])
    if r < 0.64:
        return rng.choice(emoji) * rng.randint(1, 3)
    if r < 0.70:
        return rng.choice(code)
    if r < 0.80:
        return rng.choice([" ", "  ", "   ", "\t", "\n", "\n\n", " \n ", "\t \t", "    \n", "\n   "]) * rng.randint(1, 4)
    if r < 0.88:
        return rng.choice(specials)
    return rng.choice(["!", "?", ".", ",", ";", ":", "(", ")", "[", "]", "...", "?!", "--", "'", "\"", "#", "@"])


parts = []
while sum(len(p) for p in parts) < 40000:
    parts.append(piece())
    parts.append(rng.choice([" ", " ", " ", "", "\n"]))
text = "   " + "".join(parts) + "  \n\n "
with open(os.path.join(out_dir, "mixed.txt"), "w", encoding="utf-8", newline="") as f:
    f.write(text)

tok = Tokenizer.from_file(os.path.join(shared, "tokenizer", "llama3", "tokenizer.json"))
ids = tok.encode(text, add_special_tokens=False).ids
with open(os.path.join(out_dir, "mixed.llama3.ids"), "w") as f:
    f.write(" ".join(map(str, ids)) + "\n")
with open(os.path.join(out_dir, "README.md"), "w") as f:
    f.write("Written by tests/reference/make_tokenizer_fixtures.py (Hugging Face tokenizers %s):\n"
            "mixed.txt (%d characters, %d bytes) and the %d ids Llama-3's tokenizer.json gives it.\n"
            % (tokenizers.__version__, len(text), len(text.encode()), len(ids)))
print(len(text), len(text.encode()), len(ids))
