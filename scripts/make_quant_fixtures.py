#!/usr/bin/env python3
"""Writes tests/data/quant/quant_blocks.gguf: for each GGUF type pdvm dequantizes, random blocks
("<type>.raw", 2 rows x 512 columns) and their dequantization by the `gguf` Python package
("<type>.expected", F32), the independent reference for formats::dequantize_row
(tests/test_quant_blocks.cpp). The file is written by gguf-py's own GGUFWriter, so it also
checks pdvm's GGUF reader against another writer.

Also writes tests/data/quant/reference.safetensors with the `safetensors` package (torch
backend), which tests/test_safetensors.cpp reads: pdvm's reader against the reference writer.

Scale fields (d, dmin, m) are random finite f16 values over several decades, including zeros,
negatives and subnormals; F16/BF16/F32 payloads are random bit patterns with NaNs replaced
(NaN payloads are not compared), so infinities and subnormals are covered.

Usage: python3 scripts/make_quant_fixtures.py [out_dir]   (gguf-py 0.19, numpy)
"""
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES

ROWS, COLS = 2, 512
# type -> byte ranges of f16 scale fields within one block
SCALE_FIELDS = {
    T.Q8_0: [(0, 2)],
    T.Q4_0: [(0, 2)],
    T.Q4_1: [(0, 2), (2, 4)],
    T.Q4_K: [(0, 2), (2, 4)],
    T.Q6_K: [(208, 210)],
    T.Q5_0: [(0, 2)],
    T.Q5_1: [(0, 2), (2, 4)],
    T.Q5_K: [(0, 2), (2, 4)],
}
# Append new types at the end: the generator's stream then leaves every earlier type's bytes as
# they were.
TYPES = [T.F32, T.F16, T.BF16, T.Q8_0, T.Q4_0, T.Q4_1, T.Q4_K, T.Q6_K, T.Q5_0, T.Q5_1, T.Q5_K]


def random_f16_scales(rng, n):
    mag = rng.standard_normal(n) * 10.0 ** rng.uniform(-7, 1, n)
    s = mag.astype(np.float16)
    s[rng.random(n) < 0.05] = 0  # zero scale
    return s


def random_bits_without_nan(rng, n, dtype):
    if dtype == np.float32:
        bits = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
        f = bits.view(np.float32)
        bits[np.isnan(f)] &= np.uint32(0xFF7FFFFF)  # clear an exponent bit: finite
        return bits.view(np.uint8)
    bits = rng.integers(0, 2**16, n, dtype=np.uint32).astype(np.uint16)
    exp_mask, man_mask = (0x7C00, 0x03FF) if dtype == np.float16 else (0x7F80, 0x007F)
    nan = ((bits & exp_mask) == exp_mask) & ((bits & man_mask) != 0)
    bits[nan] &= np.uint16(~(exp_mask & (exp_mask >> 1)) & 0xFFFF)  # finite
    return bits.view(np.uint8)


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(__file__), "..", "tests", "data", "quant")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "quant_blocks.gguf")
    rng = np.random.default_rng(20261124)
    w = gguf.GGUFWriter(path, arch="pdvm-fixture")
    w.add_string("pdvm.fixture", "quant_blocks: random blocks + gguf-py dequantization")
    w.add_uint32("pdvm.rows", ROWS)
    w.add_uint32("pdvm.cols", COLS)
    for t in TYPES:
        block_size, block_bytes = GGML_QUANT_SIZES[t]
        n_blocks = ROWS * COLS // block_size
        if t == T.F32:
            raw = random_bits_without_nan(rng, ROWS * COLS, np.float32)
        elif t == T.F16:
            raw = random_bits_without_nan(rng, ROWS * COLS, np.float16)
        elif t == T.BF16:
            raw = random_bits_without_nan(rng, ROWS * COLS, "bf16")
        else:
            raw = rng.integers(0, 256, (n_blocks, block_bytes), dtype=np.uint16).astype(np.uint8)
            for lo, hi in SCALE_FIELDS[t]:
                raw[:, lo:hi] = random_f16_scales(rng, n_blocks).view(np.uint8).reshape(n_blocks, 2)
        raw = raw.reshape(ROWS, COLS // block_size * block_bytes)
        expected = gguf.quants.dequantize(raw, t).astype(np.float32).reshape(ROWS, COLS)
        name = t.name.lower()
        w.add_tensor(name + ".raw", raw, raw_dtype=t)
        w.add_tensor(name + ".expected", np.ascontiguousarray(expected))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(path, os.path.getsize(path), "bytes")

    import torch
    from safetensors.torch import save_file
    st_path = os.path.join(out_dir, "reference.safetensors")
    save_file({
        "arange_f32": torch.arange(12, dtype=torch.float32).reshape(3, 4),
        "ones_bf16": torch.ones(5, dtype=torch.bfloat16),
        "flags_bool": torch.tensor([True, False, True]),
        "empty_i64": torch.zeros(0, dtype=torch.int64),
    }, st_path, metadata={"format": "pt"})
    print(st_path, os.path.getsize(st_path), "bytes")


if __name__ == "__main__":
    main()
