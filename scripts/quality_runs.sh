#!/usr/bin/env bash
# Quality table for docs/QUALITY.md: converts MODEL to int8 and to MdCSR / bitmap at 30/50/70%
# sparsity with magnitude and activation-aware pruning, then runs `pdvm perplexity` on each.
# Usage: scripts/quality_runs.sh PDVM_BINARY MODEL TEXT OUTDIR [MAX_TOKENS] [THREADS]
# Prints one TSV row per variant: name, file bytes, layer bytes per weight, perplexity, tok/s.
# Bounded on purpose (default 1024 tokens, context 256, stride 128): the build machine has 2 cores.
set -euo pipefail
PDVM=$1 MODEL=$2 TEXT=$3 OUT=$4 MAX=${5:-1024} T=${6:-1}
mkdir -p "$OUT"
PPL_FLAGS=(--context 256 --stride 128 --max-tokens "$MAX" -t "$T")
# Calibration for activation-aware pruning: the first 256 tokens of the same text's *second half*
# would be cleaner; we calibrate on a different licence text so that no scored token is seen.
CALIB=${CALIB:-/usr/share/common-licenses/Apache-2.0}
row() {  # name file
  local name=$1 file=$2
  local j="$OUT/$name.json"
  "$PDVM" perplexity "$file" "$TEXT" "${PPL_FLAGS[@]}" --json "$j" >/dev/null 2>"$OUT/$name.log"
  python3 - "$name" "$file" "$j" "$OUT/$name.convert" <<'PY'
import json, os, sys, re
name, path, j, conv = sys.argv[1:5]
r = json.load(open(j))
bpw = ""
if os.path.exists(conv):
    m = re.search(r"= ([0-9.]+) bytes per weight", open(conv).read())
    bpw = m.group(1) if m else ""
print(f"{name}\t{os.path.getsize(path)}\t{bpw}\t{r['perplexity']:.4f}\t{r['tokens_per_s']:.1f}\t{r['n_scored']}")
PY
}
printf "name\tfile_bytes\tlayer_bytes_per_weight\tperplexity\ttok_per_s\tscored_tokens\n"
row original "$MODEL"
convert() {  # name args...
  local name=$1; shift
  "$PDVM" convert "$MODEL" -o "$OUT/$name.pdvm" "$@" >"$OUT/$name.convert" 2>/dev/null
  row "$name" "$OUT/$name.pdvm"
  rm -f "$OUT/$name.pdvm"
}
convert int8 --format int8
convert mdcsr-0 --format mdcsr --sparsity 0
for s in 30 50 70; do
  convert "mdcsr-$s-magnitude" --format mdcsr --sparsity 0.$s --prune magnitude
  convert "mdcsr-$s-activation" --format mdcsr --sparsity 0.$s --prune activation --calibration "$CALIB" --calibration-tokens 256 -t "$T"
done
for s in 50 70; do
  convert "bitmap-$s-activation" --format bitmap --sparsity 0.$s --prune activation --calibration "$CALIB" --calibration-tokens 256 -t "$T"
done
