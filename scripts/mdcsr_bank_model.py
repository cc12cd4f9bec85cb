#!/usr/bin/env python3
"""Shared-memory wavefronts of MdCSR's x loads on the GPU, counted on random rows (no GPU needed).

The CUDA matvec (src/cuda/sparse_matvec.cuh) gives a warp 4 consecutive rows whose chunks of 16
entries lie in one contiguous range; lane l takes chunks l, l + 32, ... and at step t of a chunk
every lane loads x[col] of its chunk's entry t from shared memory. A load takes one wavefront per
distinct 4-byte word in its busiest bank (32 banks). This counts the mean wavefronts per warp-wide
load for a row layout:
  file    chunks in column order (each lane's 16 entries are consecutive)
  dealt   each row's part of each 32-chunk block dealt like cards (formats::interleave_mdcsr_row,
          Round 18): at step t the lanes read consecutive entries of the row
  dealt16 dealt, with x staged as f16 (Round 19's xh, lost): two columns per bank word
Rows: each column kept with probability `density`, Phi-4's row lengths (5120 columns for qkv, wo
and gate_up, 17920 for down). Deltas over 255 (padding entries) are ignored: at densities >= 0.3
a gap that long has probability < 1e-39.

Usage: scripts/mdcsr_bank_model.py [--density 0.5 0.3] [--groups 60] [--seed 1]   (plain Python)
"""
import argparse
import random
from statistics import mean

CHUNK, LANES, ROWS_PER_WARP, BANKS = 16, 32, 4, 32


def warp_group(rng, cols, density):
    """The chunks of one warp group: a list of (row, first entry) and each row's column list."""
    rows = [[j for j in range(cols) if rng.random() < density] for _ in range(ROWS_PER_WARP)]
    chunks = []  # (row index, the chunk's 16 columns; padding repeats the last)
    for r, c in enumerate(rows):
        n = -(-len(c) // CHUNK)
        padded = c + [c[-1]] * (n * CHUNK - len(c))
        chunks += [(r, padded[i * CHUNK:(i + 1) * CHUNK]) for i in range(n)]
    return chunks


def deal(chunks):
    """Formats::interleave_mdcsr_row's order: within each 32-chunk block of the group's range,
    each row's run of m chunks takes entries i, i + m, ... in chunk i."""
    out = list(chunks)
    for b in range(0, len(chunks), LANES):
        block = chunks[b:b + LANES]
        start = 0
        while start < len(block):
            end = start
            while end < len(block) and block[end][0] == block[start][0]:
                end += 1
            m = end - start
            entries = [e for _, c in block[start:end] for e in c]
            for i in range(m):
                out[b + start + i] = (block[start][0], entries[i::m])
            start = end
    return out


def wavefronts(chunks, bytes_per_x):
    """Mean wavefronts per warp-wide load over the group's rounds (lane l: chunks l + 32 u)."""
    total, loads = 0, 0
    for b in range(0, len(chunks), LANES):
        block = chunks[b:b + LANES]
        for t in range(CHUNK):
            words = {(c[t] * bytes_per_x) // 4 for _, c in block}
            per_bank = [0] * BANKS
            for w in words:
                per_bank[w % BANKS] += 1
            total += max(per_bank)
            loads += 1
    return total / loads


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--density", type=float, nargs="+", default=[0.5, 0.3])
    ap.add_argument("--groups", type=int, default=60, help="random warp groups per case")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    print(f"{'density':>7} {'cols':>6} {'file':>6} {'dealt':>6} {'dealt16':>7}  (wavefronts per warp load)")
    for d in a.density:
        for cols in (5120, 17920):
            w = {"file": [], "dealt": [], "dealt16": []}
            for _ in range(a.groups if cols == 5120 else max(1, a.groups // 3)):
                g = warp_group(rng, cols, d)
                dg = deal(g)
                w["file"].append(wavefronts(g, 4))
                w["dealt"].append(wavefronts(dg, 4))
                w["dealt16"].append(wavefronts(dg, 2))
            print(f"{d:7.2f} {cols:6d} {mean(w['file']):6.2f} {mean(w['dealt']):6.2f} {mean(w['dealt16']):7.2f}")


if __name__ == "__main__":
    main()
