#!/usr/bin/env python3
"""Writes tests/data/fixtures/: tiny random Hugging Face models (safetensors) and GGUF files, each
beside the logits that transformers computes for a fixed token sequence. These are the independent
reference the C++ loaders and forward passes are checked against. The schema is in
tests/data/fixtures/README.md. Deterministic: fixed seeds, CPU, f32 compute.

Run from the repository root:  python3 scripts/make_hf_fixtures.py
(needs torch, transformers 5.x, gguf, safetensors, numpy). It rewrites tests/data/fixtures/ and then
re-loads every fixture it wrote and checks it (the self-check at the end).
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import (AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, MistralConfig,
                          MistralForCausalLM, Phi3Config, Phi3ForCausalLM, Qwen2Config,
                          Qwen2ForCausalLM)
import gguf
from gguf import GGMLQuantizationType as QT
from gguf import quants

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "fixtures"
COMMAND = "python3 scripts/make_hf_fixtures.py"

VOCAB = 300
# Shape shared by the small cases: head_dim 16 * 4 heads = hidden 64, GQA with 2 kv heads.
SMALL = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             intermediate_size=96, vocab_size=VOCAB, max_position_embeddings=256,
             bos_token_id=1, eos_token_id=2, pad_token_id=None)

torch.set_num_threads(2)  # the machine is shared; these models are tiny anyway


def versions() -> dict:
    return {"transformers": transformers.__version__, "torch": torch.__version__,
            "gguf": importlib.metadata.version("gguf"), "numpy": np.__version__}


def token_sequence(n: int, seed: int) -> list[int]:
    """n ids in [0, VOCAB): starts with bos (1), contains 0 and VOCAB-1, the rest random."""
    rng = np.random.default_rng(seed)
    ids = [int(x) for x in rng.integers(0, VOCAB, n)]
    ids[0] = 1
    ids[3] = 0
    ids[n // 2] = VOCAB - 1
    return ids


def scaled_init(model: torch.nn.Module, seed: int, embed_std: float = 1.0,
                head_gain: float = 3.0) -> None:
    """Replaces transformers' init (std 0.02 gives logits ~1e-3) by one whose logits are O(1-10):
    linear weights ~ N(0, 1/in), embeddings N(0, embed_std), lm_head N(0, head_gain^2/in), norm
    weights 1 + N(0, 0.1^2) (so a missing norm-weight multiply shows), biases N(0, 0.3^2)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
            elif "embed_tokens" in name:
                p.copy_(embed_std * torch.randn(p.shape, generator=g))
            elif name.startswith("lm_head"):
                p.copy_(head_gain / p.shape[1] ** 0.5 * torch.randn(p.shape, generator=g))
            else:
                assert p.dim() == 2, name
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[1] ** 0.5)


def make_model(cls, config, seed: int, **init_kw):
    config._attn_implementation = "eager"  # plain softmax attention; mask semantics are explicit
    torch.manual_seed(seed)
    model = cls(config).eval()
    scaled_init(model, seed, **init_kw)
    return model


@torch.no_grad()
def forward_logits(model, tokens: list[int]) -> np.ndarray:
    """Causal forward over the whole sequence: row p = logits after tokens[0..p] at positions
    0..p, the same numbers a token-by-token decode with a KV cache must produce."""
    out = model(input_ids=torch.tensor([tokens]), use_cache=False).logits[0]
    return out.to(torch.float32).numpy().astype("<f4")


def write_expected(dir_: Path, *, fmt: str, model_file: str, tokens: list[int],
                   logits: np.ndarray, weights_dtype: str, extra: dict | None = None) -> None:
    assert logits.shape == (len(tokens), VOCAB) and logits.dtype == np.dtype("<f4")
    (dir_ / "logits.bin").write_bytes(logits.tobytes())
    meta = {
        "schema": "pdvm-fixture-1",
        "format": fmt,
        "model_file": model_file,
        "tokens": tokens,
        "logits_file": "logits.bin",
        "logits_shape": list(logits.shape),
        "logits_dtype": "f32le",
        "weights_dtype": weights_dtype,
        "compute_dtype": "float32",
        "attn_implementation": "eager",
        "logits_abs_max": float(np.abs(logits).max()),
        "logits_std": float(logits.std()),
        **versions(),
        "command": COMMAND,
    }
    if extra:
        meta.update(extra)
    (dir_ / "expected.json").write_text(dump_json(meta))


def dump_json(obj) -> str:
    """Indented JSON with lists of numbers kept on one line (token ids, shapes)."""
    text = json.dumps(obj, indent=1)
    return re.sub(r"\[\s*(-?[0-9][-0-9.e+,\s]*?)\s*\]",
                  lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]",
                  text) + "\n"


def to_old_layout(config_path: Path) -> None:
    """Rewrites a transformers-5 config.json into the 4.x layout: rope_theta and rope_scaling as
    top-level keys (rope_scaling null when there is none) and torch_dtype instead of dtype."""
    cfg = json.loads(config_path.read_text())
    rope = dict(cfg.pop("rope_parameters"))
    cfg["rope_theta"] = rope.pop("rope_theta")
    cfg["rope_scaling"] = None if rope.get("rope_type", "default") == "default" else rope
    if "dtype" in cfg:
        cfg["torch_dtype"] = cfg.pop("dtype")
    config_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


# ----------------------------------------------------------------------------------------------
# safetensors cases

def save_hf_case(name: str, model, tokens, *, save_dtype=torch.float32, max_shard_size=None,
                 old_layout=False, extra=None) -> np.ndarray:
    d = OUT / name
    d.mkdir(parents=True)
    to_save = model if save_dtype == torch.float32 else model.to(save_dtype)
    kw = {"max_shard_size": max_shard_size} if max_shard_size else {}
    to_save.save_pretrained(d, safe_serialization=True, **kw)
    if old_layout:
        to_old_layout(d / "config.json")
    # The reference always computes in f32; for bf16 that is the bf16 weights upcast exactly. A
    # fresh model, because .to(bf16) also rounded the rotary inv_freq buffer.
    if save_dtype != torch.float32:
        upcast = {k: v.to(torch.float32) for k, v in to_save.state_dict().items()}
        model = make_model(type(model), model.config, seed=0)
        model.load_state_dict(upcast)
        model.config.dtype = torch.float32
    logits = forward_logits(model, tokens)
    write_expected(d, fmt="safetensors",
                   model_file="model.safetensors.index.json" if max_shard_size else "model.safetensors",
                   tokens=tokens, logits=logits,
                   weights_dtype="bfloat16" if save_dtype == torch.bfloat16 else "float32",
                   extra={"config_layout": "transformers4" if old_layout else "transformers5",
                          "architecture": type(model).__name__, **(extra or {})})
    return logits


def build_hf_cases() -> dict:
    models = {}
    toks24 = token_sequence(24, seed=100)

    # llama: plain, untied, rope_theta 10000.
    cfg = LlamaConfig(**SMALL, head_dim=16, rms_norm_eps=1e-5, rope_theta=10000.0,
                      tie_word_embeddings=False)
    m = make_model(LlamaForCausalLM, cfg, seed=1)
    save_hf_case("llama", m, toks24)
    models["llama"] = m

    # llama3: llama3 rope scaling with original_max_position_embeddings 64 and 80 tokens, so
    # positions past 64 are used; with head_dim 16 the 8 frequencies fall in all three bands
    # (wavelength < 16 kept, 16..64 smoothed, > 64 divided by factor).
    toks80 = token_sequence(80, seed=101)
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
    cfg = LlamaConfig(**SMALL, head_dim=16, rms_norm_eps=1e-5, rope_theta=500000.0,
                      rope_scaling=scaling, tie_word_embeddings=False)
    m = make_model(LlamaForCausalLM, cfg, seed=2)
    l3 = save_hf_case("llama3", m, toks80)
    # Same weights, config rewritten in the transformers-4 layout; transformers must agree.
    l3_old = save_hf_case("llama3_oldconfig", m, toks80, old_layout=True)
    check_old_config_roundtrip("llama3_oldconfig", l3)
    assert np.array_equal(l3, l3_old)

    # mistral: explicit head_dim 24 != hidden/heads (q_proj 64 -> 96) and sliding_window 8 < 24
    # tokens. transformers 5 applies the window in eager attention: query at position i sees
    # keys j with i - 8 < j <= i (checked below against the same weights without the window).
    cfg = MistralConfig(**SMALL, head_dim=24, rms_norm_eps=1e-5, rope_theta=10000.0,
                        sliding_window=8, tie_word_embeddings=False)
    m = make_model(MistralForCausalLM, cfg, seed=3)
    lm = save_hf_case("mistral", m, toks24, extra={
        "sliding_window": 8,
        "sliding_window_semantics": "query at position i attends keys j with i-8 < j <= i"})
    m.config.sliding_window = None
    full = forward_logits(m, toks24)
    m.config.sliding_window = 8
    differs = np.abs(lm - full).max(axis=1) > 1e-4
    assert not differs[:8].any() and differs[8:].all(), differs  # window applies from position 8

    # qwen2: bias on q/k/v (not o), untied, rope_theta 1e6.
    cfg = Qwen2Config(**SMALL, rms_norm_eps=1e-6, rope_theta=1000000.0, use_sliding_window=False,
                      tie_word_embeddings=False)
    m = make_model(Qwen2ForCausalLM, cfg, seed=4)
    assert m.model.layers[0].self_attn.q_proj.bias is not None
    assert m.model.layers[0].self_attn.o_proj.bias is None
    save_hf_case("qwen2", m, toks24)
    models["qwen2"] = m

    # phi3: fused qkv_proj [q; k; v] rows and gate_up_proj [gate; up] rows, full rotary.
    cfg = Phi3Config(**SMALL, rms_norm_eps=1e-5, rope_theta=10000.0, rope_scaling=None,
                     partial_rotary_factor=1.0, sliding_window=None,
                     original_max_position_embeddings=256, tie_word_embeddings=False,
                     resid_pdrop=0.0, embd_pdrop=0.0, attention_dropout=0.0)
    m = make_model(Phi3ForCausalLM, cfg, seed=5)
    assert tuple(m.model.layers[0].self_attn.qkv_proj.weight.shape) == (128, 64)
    assert tuple(m.model.layers[0].mlp.gate_up_proj.weight.shape) == (192, 64)
    save_hf_case("phi3", m, toks24, extra={
        "fused": {"qkv_proj": "rows [q (n_heads*head_dim); k (n_kv*head_dim); v (n_kv*head_dim)]",
                  "gate_up_proj": "rows [gate (d_ff); up (d_ff)]"}})

    # smollm2: tied embeddings (no lm_head.weight in the file), rope_theta 1e5, written in the
    # transformers-4 layout like the real SmolLM2 config.json (rope_scaling null).
    cfg = LlamaConfig(**SMALL, head_dim=16, rms_norm_eps=1e-5, rope_theta=100000.0,
                      tie_word_embeddings=True)
    m = make_model(LlamaForCausalLM, cfg, seed=6, embed_std=0.5)
    assert m.lm_head.weight.data_ptr() == m.model.embed_tokens.weight.data_ptr()
    ls = save_hf_case("smollm2", m, toks24, old_layout=True)
    check_old_config_roundtrip("smollm2", ls)
    models["smollm2"] = m

    # llama_bf16: weights stored as bfloat16; logits are f32 compute over the upcast weights.
    cfg = LlamaConfig(**SMALL, head_dim=16, rms_norm_eps=1e-5, rope_theta=10000.0,
                      tie_word_embeddings=False)
    m = make_model(LlamaForCausalLM, cfg, seed=7)
    save_hf_case("llama_bf16", m, toks24, save_dtype=torch.bfloat16)

    # llama_sharded: f32 in 2 shards + model.safetensors.index.json.
    m = make_model(LlamaForCausalLM, cfg, seed=8)
    save_hf_case("llama_sharded", m, toks24, max_shard_size="250KB")
    shards = sorted(p.name for p in (OUT / "llama_sharded").glob("*.safetensors"))
    assert len(shards) == 2, shards
    return models


def check_old_config_roundtrip(name: str, want: np.ndarray) -> None:
    """transformers must load the rewritten (4.x layout) config to the same logits."""
    d = OUT / name
    m = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
    got = forward_logits(m.eval(), json.loads((d / "expected.json").read_text())["tokens"])
    assert np.array_equal(got, want), f"{name}: old-layout config changes logits"


# ----------------------------------------------------------------------------------------------
# GGUF cases

def permute_llama(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp convert_hf_to_gguf.py LlamaModel.permute: HF rotates halves (rotate_half), ggml's
    llama rope rotates adjacent pairs, so Q rows (n_head = n_heads) and K rows (n_head =
    n_kv_heads) are reordered per head: (n_head, 2, hd/2, ...) -> (n_head, hd/2, 2, ...)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute_llama(w: np.ndarray, n_head: int) -> np.ndarray:
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def toy_tokenizer(writer: gguf.GGUFWriter, vocab: int) -> None:
    """Minimal byte-level BPE ('gpt2') vocabulary: 3 control tokens like SmolLM2's, the 256 GPT-2
    byte characters, then merged tokens to fill the vocabulary, with their merges."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    byte_chars = [chr(c) for _, c in sorted(zip(bs, cs))]
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + byte_chars
    types = [3, 3, 3] + [1] * 256
    merges = []
    letters = "etaoinshrdlcumwfgypb"
    pairs = [("Ġ", c) for c in letters] + [(a, b) for a in letters for b in letters]
    for a, b in pairs:
        if len(tokens) >= vocab:
            break
        merges.append(f"{a} {b}")
        tokens.append(a + b)
        types.append(1)
    assert len(tokens) == vocab
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(False)


# Hand-written K-quant encoders: gguf.quants (0.19) can dequantize Q4_K/Q6_K but not quantize
# them. These produce valid blocks with a simple (not error-optimal) choice of scales; the
# reference then uses gguf.quants.dequantize of the bytes written, so only validity matters.
# The self-check bounds the round-trip error, which catches packing mistakes.

def f16(x):
    return np.asarray(x, dtype=np.float16)


def quantize_q6_k(x: np.ndarray) -> np.ndarray:
    rows, cols = x.shape
    assert cols % 256 == 0
    b = x.reshape(-1, 256).astype(np.float32)
    nb = b.shape[0]
    sub = b.reshape(nb, 16, 16)
    sub_scale = np.abs(sub).max(axis=2) / 31.0                       # q in [-31, 31]
    d = f16(sub_scale.max(axis=1) / 127.0)
    dd = d.astype(np.float32)[:, None]
    sc = np.where(dd > 0, np.round(sub_scale / np.where(dd > 0, dd, 1)), 0).clip(-128, 127)
    step = (dd * sc)[:, :, None]
    q = np.where(step > 0, np.round(sub / np.where(step > 0, step, 1)), 0).clip(-32, 31) + 32
    q = q.reshape(nb, 256).astype(np.uint8)
    ql = np.zeros((nb, 128), np.uint8)
    qh = np.zeros((nb, 64), np.uint8)
    for n in range(2):
        base = 128 * n
        q0, q1 = q[:, base:base + 32], q[:, base + 32:base + 64]
        q2, q3 = q[:, base + 64:base + 96], q[:, base + 96:base + 128]
        ql[:, 64 * n:64 * n + 32] = (q0 & 0xF) | ((q2 & 0xF) << 4)
        ql[:, 64 * n + 32:64 * n + 64] = (q1 & 0xF) | ((q3 & 0xF) << 4)
        qh[:, 32 * n:32 * n + 32] = (q0 >> 4) | ((q1 >> 4) << 2) | ((q2 >> 4) << 4) | ((q3 >> 4) << 6)
    blocks = np.concatenate([ql, qh, sc.astype(np.int8).view(np.uint8),
                             d.reshape(nb, 1).view(np.uint8)], axis=1)
    assert blocks.shape[1] == 210
    return blocks.reshape(rows, cols // 256 * 210)


def quantize_q4_k(x: np.ndarray) -> np.ndarray:
    rows, cols = x.shape
    assert cols % 256 == 0
    b = x.reshape(-1, 256).astype(np.float32)
    nb = b.shape[0]
    sub = b.reshape(nb, 8, 32)
    mn = -np.minimum(sub.min(axis=2), 0.0)                            # offset >= 0
    scale = (sub.max(axis=2) + mn) / 15.0
    d, dmin = f16(scale.max(axis=1) / 63.0), f16(mn.max(axis=1) / 63.0)
    dd, dm = d.astype(np.float32)[:, None], dmin.astype(np.float32)[:, None]
    sc = np.where(dd > 0, np.round(scale / np.where(dd > 0, dd, 1)), 0).clip(0, 63).astype(np.uint8)
    m = np.where(dm > 0, np.round(mn / np.where(dm > 0, dm, 1)), 0).clip(0, 63).astype(np.uint8)
    step = (dd * sc)[:, :, None]
    off = (dm * m)[:, :, None]
    q = np.where(step > 0, np.round((sub + off) / np.where(step > 0, step, 1)), 0).clip(0, 15)
    q = q.astype(np.uint8).reshape(nb, 4, 2, 32)                     # chunk c, half h, l
    qs = (q[:, :, 0, :] | (q[:, :, 1, :] << 4)).reshape(nb, 128)
    scales = np.zeros((nb, 12), np.uint8)
    for j in range(4):
        scales[:, j] = (sc[:, j] & 63) | ((sc[:, j + 4] >> 4) << 6)
        scales[:, j + 4] = (m[:, j] & 63) | ((m[:, j + 4] >> 4) << 6)
        scales[:, j + 8] = (sc[:, j + 4] & 0xF) | ((m[:, j + 4] & 0xF) << 4)
    blocks = np.concatenate([d.reshape(nb, 1).view(np.uint8), dmin.reshape(nb, 1).view(np.uint8),
                             scales, qs], axis=1)
    assert blocks.shape[1] == 144
    return blocks.reshape(rows, cols // 256 * 144)


def encode(w: np.ndarray, qtype: QT) -> np.ndarray:
    if qtype == QT.F32:
        return w.astype(np.float32)
    if qtype == QT.Q4_K:
        data = quantize_q4_k(w)
    elif qtype == QT.Q6_K:
        data = quantize_q6_k(w)
    else:
        data = quants.quantize(w.astype(np.float32), qtype)
    back = quants.dequantize(data, qtype)
    rel = np.sqrt(((back - w) ** 2).mean() / (w ** 2).mean())
    limit = {QT.Q8_0: 0.01, QT.Q6_K: 0.04, QT.Q4_K: 0.15, QT.Q4_0: 0.15, QT.Q4_1: 0.15}[qtype]
    assert rel < limit, f"{qtype.name}: round-trip rms error {rel:.3f} >= {limit}"
    return data


FILE_TYPE = {"f32": 0, "q4_0": 2, "q4_1": 3, "q8_0": 7, "q4_k": 15}


def write_gguf(name: str, model, tokens: list[int], arch: str, types: dict, file_type: str,
               extra: dict | None = None) -> None:
    """Writes tests/data/fixtures/<name>/model.gguf from an HF model and the logits of the same
    model with every matrix replaced by the dequantization of exactly the bytes written.
    types maps a role ('token_embd', 'output', 'attn_q', ..., 'default') to a GGML type."""
    cfg = model.config
    n_head, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
    hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_head
    tied = cfg.tie_word_embeddings
    sd = {k: v.detach().to(torch.float32).numpy() for k, v in model.state_dict().items()}
    d = OUT / name
    d.mkdir(parents=True)
    writer = gguf.GGUFWriter(str(d / "model.gguf"), arch)
    writer.add_name(f"pdvm fixture {name}")
    writer.add_file_type(FILE_TYPE[file_type])
    writer.add_quantization_version(2)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]))
    writer.add_layer_norm_rms_eps(float(cfg.rms_norm_eps))
    writer.add_rope_dimension_count(hd)
    writer.add_vocab_size(cfg.vocab_size)
    toy_tokenizer(writer, cfg.vocab_size)

    new_sd = {k: torch.from_numpy(v.copy()) for k, v in sd.items()}
    layout = []

    def put(gname: str, hfname: str, role: str, permute_heads: int | None = None):
        w = sd[hfname]
        qtype = QT.F32 if w.ndim == 1 else types.get(role, types["default"])
        if permute_heads:
            w = permute_llama(w, permute_heads)
        data = encode(w, qtype)
        if qtype == QT.F32:
            writer.add_tensor(gname, data)
            back = data
        else:
            writer.add_tensor(gname, data, raw_shape=data.shape, raw_dtype=qtype)
            back = quants.dequantize(data, qtype)
        if permute_heads:
            back = unpermute_llama(back, permute_heads)
        new_sd[hfname] = torch.from_numpy(np.ascontiguousarray(back, dtype=np.float32))
        layout.append({"name": gname, "type": qtype.name, "ne": list(reversed(w.shape))})

    put("token_embd.weight", "model.embed_tokens.weight", "token_embd")
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        put(f"blk.{i}.attn_norm.weight", p + "input_layernorm.weight", "norm")
        llama = arch == "llama"
        put(f"blk.{i}.attn_q.weight", p + "self_attn.q_proj.weight", "attn_q", n_head if llama else None)
        put(f"blk.{i}.attn_k.weight", p + "self_attn.k_proj.weight", "attn_k", n_kv if llama else None)
        put(f"blk.{i}.attn_v.weight", p + "self_attn.v_proj.weight", "attn_v")
        if arch == "qwen2":
            put(f"blk.{i}.attn_q.bias", p + "self_attn.q_proj.bias", "bias")
            put(f"blk.{i}.attn_k.bias", p + "self_attn.k_proj.bias", "bias")
            put(f"blk.{i}.attn_v.bias", p + "self_attn.v_proj.bias", "bias")
        put(f"blk.{i}.attn_output.weight", p + "self_attn.o_proj.weight", "attn_output")
        put(f"blk.{i}.ffn_norm.weight", p + "post_attention_layernorm.weight", "norm")
        put(f"blk.{i}.ffn_gate.weight", p + "mlp.gate_proj.weight", "ffn_gate")
        put(f"blk.{i}.ffn_up.weight", p + "mlp.up_proj.weight", "ffn_up")
        put(f"blk.{i}.ffn_down.weight", p + "mlp.down_proj.weight", "ffn_down")
    put("output_norm.weight", "model.norm.weight", "norm")
    if not tied:
        put("output.weight", "lm_head.weight", "output")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    ref = type(model)(cfg).eval()
    if tied:  # tied: lm_head is token_embd, dequantized from the same bytes
        new_sd["lm_head.weight"] = new_sd["model.embed_tokens.weight"]
    ref.load_state_dict(new_sd)
    logits = forward_logits(ref, tokens)
    write_expected(d, fmt="gguf", model_file="model.gguf", tokens=tokens, logits=logits,
                   weights_dtype=file_type, extra={
                       "architecture": arch, "tied_embeddings": bool(tied),
                       "qk_permuted_for_ggml_rope": arch == "llama",
                       "tensors": layout, **(extra or {})})


def build_gguf_cases(models: dict) -> None:
    toks = token_sequence(24, seed=100)
    llama, qwen2, smol = models["llama"], models["qwen2"], models["smollm2"]
    for ft, qt in (("f32", QT.F32), ("q8_0", QT.Q8_0), ("q4_0", QT.Q4_0), ("q4_1", QT.Q4_1)):
        write_gguf(f"gguf_llama_{ft}", llama, toks, "llama", {"default": qt}, ft)
    # qwen2: biases as F32 tensors, no Q/K permutation (llama.cpp runs qwen2 with NEOX rope).
    # Only Q8_0, to keep the fixtures small; F32 GGUF reading is covered by gguf_llama_f32.
    write_gguf("gguf_qwen2_q8_0", qwen2, toks, "qwen2", {"default": QT.Q8_0}, "q8_0")
    # Mirrors the real SmolLM2-135M-Instruct.Q4_1.gguf: tied (no output.weight), token_embd Q8_0,
    # all other matrices Q4_1, norms F32.
    write_gguf("gguf_smollm2_q4_1", smol, toks, "llama",
               {"default": QT.Q4_1, "token_embd": QT.Q8_0}, "q4_1")
    # K types need rows of 256 weights, so this case has hidden 256 and d_ff 256 (1 layer, head_dim
    # 64). Mix like llama.cpp's Q4_K_M: Q6_K for attn_v, ffn_down and output, Q4_K elsewhere.
    cfg = LlamaConfig(hidden_size=256, num_hidden_layers=1, num_attention_heads=4,
                      num_key_value_heads=2, head_dim=64, intermediate_size=256, vocab_size=VOCAB,
                      max_position_embeddings=256, bos_token_id=1, eos_token_id=2,
                      pad_token_id=None, rms_norm_eps=1e-5, rope_theta=10000.0,
                      tie_word_embeddings=False)
    kmodel = make_model(LlamaForCausalLM, cfg, seed=9)
    write_gguf("gguf_llama_q4_k_m", kmodel, toks, "llama",
               {"default": QT.Q4_K, "attn_v": QT.Q6_K, "ffn_down": QT.Q6_K, "output": QT.Q6_K},
               "q4_k")


# ----------------------------------------------------------------------------------------------
# Self-check: re-load what was written, independently of the code paths that wrote it.

def self_check() -> None:
    from safetensors.numpy import load_file
    total = 0
    names = sorted(p.name for p in OUT.iterdir() if p.is_dir())
    for name in names:
        d = OUT / name
        meta = json.loads((d / "expected.json").read_text())
        raw = (d / meta["logits_file"]).read_bytes()
        T, V = meta["logits_shape"]
        assert len(raw) == T * V * 4 and T == len(meta["tokens"]) and V == VOCAB
        want = np.frombuffer(raw, "<f4").reshape(T, V)
        assert np.isfinite(want).all() and 0.5 < np.abs(want).max() < 100, (name, np.abs(want).max())
        tokens = meta["tokens"]
        assert 0 in tokens and VOCAB - 1 in tokens
        kw = {"dtype": torch.float32, "attn_implementation": "eager"}
        if meta["format"] == "safetensors":
            # Loaded by transformers from disk (bf16 weights upcast on load).
            m = AutoModelForCausalLM.from_pretrained(d, **kw).eval()
            # The raw safetensors must hold the dtype that was promised.
            files = sorted(d.glob("*.safetensors"))
            dts = {str(a.dtype) for f in files for a in load_file(f).values()} if \
                meta["weights_dtype"] == "float32" else None
            if dts is not None:
                assert dts == {"float32"}, (name, dts)
            tol = 1e-5
        else:
            # Loaded by transformers' own GGUF reader (it de-permutes llama Q/K and dequantizes with
            # gguf.quants): an independent check of names, metadata and permutation.
            m = AutoModelForCausalLM.from_pretrained(d, gguf_file="model.gguf", **kw).eval()
            tol = 1e-4
        got = forward_logits(m, tokens)
        err = float(np.abs(got - want).max())
        assert err <= tol * max(1.0, float(np.abs(want).max())), (name, err)
        size = sum(p.stat().st_size for p in d.iterdir())
        total += size
        print(f"  ok {name:22s} {meta['format']:11s} {meta['weights_dtype']:8s} T={T:3d} "
              f"|logits|max={np.abs(want).max():6.2f} reload max err={err:.2e} {size/1024:7.1f} KiB")
    print(f"  total {total/1024/1024:.2f} MiB in {len(names)} fixtures")


def main() -> int:
    if OUT.exists():
        for p in OUT.iterdir():
            if p.is_dir():
                shutil.rmtree(p)
    OUT.mkdir(parents=True, exist_ok=True)
    models = build_hf_cases()
    build_gguf_cases(models)
    print("self-check (re-load every fixture with transformers):")
    self_check()
    return 0


if __name__ == "__main__":
    sys.exit(main())
