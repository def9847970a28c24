#!/usr/bin/env python3
"""Expected renders of real chat templates, for tests/test_chat_template.cpp (our Jinja subset).

Renders each template listed in TEMPLATES (files of ../shared/data/gguf/templates, read from
there, never copied into the tree) over the message lists in CONVERSATIONS, with and without the
generation prompt, the way transformers' apply_chat_template does: jinja2 with trim_blocks and
lstrip_blocks, the globals raise_exception and strftime_now (fixed here to 26 Jul 2024 so the
fixture is stable), transformers' own tojson filter (json.dumps, non-ASCII kept), bos_token
"<s>", eos_token "</s>", and no tools. A render that raises is recorded with its message
instead of an output.

Writes tests/fixtures/chat_templates/expected.json:
  {"jinja2": version, "cases": [{"template": file name, "messages": [...],
    "add_generation_prompt": bool, "expected": text | null, "error": message | null}, ...],
   "snippets": [{"source": template text, "messages": [...], "expected": text}, ...]}
(snippets: small templates of our own, see SNIPPETS)

Usage: python3 tests/reference/chat_template_fixtures.py [SHARED_DATA_DIR] [OUT_JSON]
(Debian's python3-jinja2 is enough.)
"""
import datetime
import json
import os
import sys

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

# The templates our subset renders for plain message lists: every file there but
# fireworks-ai-llama-3-firefunction-v2, which needs `functions` and `datetime` variables (jinja2
# itself fails without them).
TEMPLATES = [
    "CohereForAI-c4ai-command-r-plus-tool_use.jinja",
    "CohereForAI-c4ai-command-r7b-12-2024-tool_use.jinja",
    "Qwen-Qwen2.5-7B-Instruct.jinja",
    "deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja",
    "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja",
    "google-gemma-2-2b-it.jinja",
    "llama-cpp-deepseek-r1.jinja",
    "meta-llama-Llama-3.1-8B-Instruct.jinja",
    "meta-llama-Llama-3.2-3B-Instruct.jinja",
    "meta-llama-Llama-3.3-70B-Instruct.jinja",
    "microsoft-Phi-3.5-mini-instruct.jinja",
    "mistralai-Mistral-Nemo-Instruct-2407.jinja",
    "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja",
    "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja",
    "meetkai-functionary-medium-v3.1.jinja",
    "meetkai-functionary-medium-v3.2.jinja",
]

TRICKY = ("  Say </s> and <s> and <|im_end|> <|eot_id|> [INST] <start_of_turn> literally.\n"
          "Ünïcödé: 日本語, emoji 🦙, tab\there\n\nthe end \u3000\n")

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are a terse assistant."},
     {"role": "user", "content": "What is 2+2?"}],
    [{"role": "user", "content": "Hi there"},
     {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "Tell me a joke."}],
    [{"role": "system", "content": "  Be kind.  "},
     {"role": "user", "content": "Name a colour."},
     {"role": "assistant", "content": "<think>pick one</think>\n\nBlue."},
     {"role": "user", "content": "Another?"},
     {"role": "assistant", "content": "Green."}],
    [{"role": "user", "content": TRICKY}],
    [{"role": "system", "content": TRICKY},
     {"role": "user", "content": TRICKY},
     {"role": "assistant", "content": TRICKY},
     {"role": "user", "content": "ok"}],
    [{"role": "user", "content": "one"}, {"role": "user", "content": "two"}],
    [{"role": "assistant", "content": "I speak first."}, {"role": "user", "content": "Fine."}],
]


# Small templates of our own for the interpreter's corners (whitespace control, loops, filters,
# tests, slicing, namespaces, macros), rendered with MESSAGES_FOR_SNIPPETS.
SNIPPETS = [
    "a  {%- if true %}  b  {% endif -%}  c",
    "line\n    {% if true %}\n  x\n    {% endif %}\nend",
    "  {# comment #}\n{{ 1 }}  {%+ if true %}y{% endif %}|{%- raw_text_is_not_a_tag -%}".replace("{%- raw_text_is_not_a_tag -%}", ""),
    "{% for m in messages %}{{ loop.index }}/{{ loop.length }}:{{ m.role }}{% if not loop.last %},{% endif %}{% endfor %}",
    "{% for m in messages if m.role != 'system' %}{{ loop.index0 }}{{ m.role[0] }}{% else %}none{% endfor %}",
    "{% for x in [] %}{{ x }}{% else %}empty{% endfor %}",
    "{% set ns = namespace(n=0, s='') %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% set ns.s = ns.s ~ m.role[:1] %}{% endfor %}{{ ns.n }} {{ ns.s }}",
    "{% set x = 1 %}{% for m in messages %}{% set x = 2 %}{% endfor %}{{ x }}",
    "{{ messages[1:] | length }} {{ messages[-1].content }} {{ 'abcdef'[1:4] }} {{ 'abcdef'[::-2] }} {{ [1,2,3][::-1] }}",
    "{{ '  x y  ' | trim }}|{{ 'Hello World' | upper }}|{{ 'Hello' | lower }}|{{ 'hello world' | title }}|{{ 'ab' | replace('a', 'c') }}",
    "{{ [1, 2, 3] | join('-') }} {{ [3, 1] | first }} {{ [3, 1] | last }} {{ undefined_thing | default('dflt') }} {{ '' | default('e', true) }}",
    "{{ {'b': 1, 'a': [true, none, 1.5, 'q\"\n']} | tojson }} {{ [1, {'k': 'v'}] | tojson(indent=2) }}",
    "{{ messages | selectattr('role', 'equalto', 'user') | list | length }} {{ messages | rejectattr('role', 'equalto', 'user') | map(attribute='role') | join(',') }}",
    "{% for k, v in {'a': 1, 'b': 2} | items %}{{ k }}={{ v }};{% endfor %}{% for k, v in {'c': 3}.items() %}{{ k }}{{ v }}{% endfor %}",
    "{{ x is defined }} {{ none is none }} {{ 'a' is string }} {{ {} is mapping }} {{ [] is iterable }} {{ 3 is odd }} {{ 4 is divisibleby 2 }} {{ 1 is sameas 1 }} {{ 'a' is not equalto 'b' }}",
    "{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 'a' ~ 1 ~ none }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }}",
    "{{ 'yes' if messages else 'no' }} {{ 'x' if false }}|{{ not true or true and false }} {{ 'b' in 'abc' }} {{ 'z' not in ['a'] }} {{ 'role' in messages[0] }}",
    "{{ ' a b  c '.split() }} {{ 'a,b,,c'.split(',') }} {{ 'a,b,c'.split(',', 1) }} {{ '  s  '.strip() }}|{{ 'xxsxx'.strip('x') }}|{{ 'ab'.startswith('a') }} {{ 'ab'.endswith(('x', 'b')) }} {{ 'hello world'.title() }} {{ 'aXb'.lower() }}",
    "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('A') }} {{ greet('B', punct='?') }} {{ greet(name='C') }}",
    "{% set block %}  inner {{ 1 + 1 }}  {% endset %}[{{ block }}]{% filter upper %}shout{% endfilter %}",
    "{% for i in range(5) %}{% if i == 1 %}{% continue %}{% endif %}{% if i == 3 %}{% break %}{% endif %}{{ i }}{% endfor %}",
    "{{ 'a' 'b' }} {{ \"it's\" }} {{ '\\u00e9\\t|' }} {{ 1e3 }} {{ 0.1 + 0.2 }} {{ 10 / 4 }} {{ -3 | abs }} {{ '42' | int + 1 }}",
    "{{ messages[0]['content'] | length }} {{ messages | length }} {{ messages[5] is defined }} {{ messages[0].nothing is defined }}",
    "{{- '  x\n' -}}   \n\n   {{- 'y' }}\n{%- if true -%}\n   z   \n{%- endif -%}\n",
    "{% if messages[0].role == 'system' %}{% set sys = messages[0].content %}{% endif %}[{{ sys | default('none') }}]",
    "{{ ['b', 'A', 'a'] | unique | list }} {{ 'x\ny' | indent(2) }}|{{ 'x\ny' | indent(2, true) }}|{{ [1, 2] | reverse | list }}",
    "{{ [1, 'a', none, true, 1.0, {'k': [2]}] }} {{ {'a': 'b'} }} {{ 1.0 }} {{ 1e20 }} {{ 1e-7 }} {{ 3.14 }}",
    "{{ messages[0].content.split('e')[-1] }}{% for c in 'hé' %}[{{ c }}]{% endfor %}{{ 'hé' | length }}{{ 'hé'[1] }}",
]

MESSAGES_FOR_SNIPPETS = [{"role": "system", "content": "Be brief."},
                         {"role": "user", "content": "Hello there"},
                         {"role": "assistant", "content": "General Kenobi"}]


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def strftime_now(fmt):
    return datetime.datetime(2024, 7, 26, 12, 0, 0).strftime(fmt)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # transformers' replacement for jinja2's HTML-escaping tojson
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def make_env():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    shared = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "..", "shared", "data")
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "..", "fixtures", "chat_templates",
                                                             "expected.json")
    env = make_env()
    cases = []
    for name in TEMPLATES:
        with open(os.path.join(shared, "gguf", "templates", name), encoding="utf-8") as f:
            template = env.from_string(f.read())
        for messages in CONVERSATIONS:
            for add_generation_prompt in (True, False):
                case = {"template": name, "messages": messages,
                        "add_generation_prompt": add_generation_prompt, "expected": None, "error": None}
                try:
                    case["expected"] = template.render(messages=messages,
                                                       add_generation_prompt=add_generation_prompt,
                                                       bos_token="<s>", eos_token="</s>")
                except jinja2.exceptions.TemplateError as e:
                    case["error"] = str(e)
                cases.append(case)
    snippets = []
    for source in SNIPPETS:
        snippets.append({"source": source, "messages": MESSAGES_FOR_SNIPPETS,
                         "expected": env.from_string(source).render(messages=MESSAGES_FOR_SNIPPETS,
                                                                    add_generation_prompt=True,
                                                                    bos_token="<s>", eos_token="</s>")})
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"jinja2": jinja2.__version__, "cases": cases, "snippets": snippets}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    errors = sum(1 for c in cases if c["error"])
    print(f"{out}: {len(cases)} cases ({errors} raise)")


if __name__ == "__main__":
    main()
