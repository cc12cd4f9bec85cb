#!/usr/bin/env bash
# ab-bench.sh: an A/B decode timing on the GPU machine. Each pdvm bench run (Phi-4 shape, 40
# layers, synthetic weights, KV filled at each depth) runs once per variant, the variants
# alternating, ROUNDS times, so a drift of the clocks or the machine hits all of them alike. One line
# per run: depth, ms/token (median of the repeats), % of the read ceiling measured in the same
# process. The runs' JSON and logs go into one tarball in OUT (the device tool brings back 8 files).
#
# Usage: scripts/ab-bench.sh OUT_DIR VARIANT...
#   VARIANT: NAME=BIN_DIR[:VAR=VALUE[,VAR=VALUE...]]  (the pdvm binary in BIN_DIR, run with those
#            environment variables and BIN_DIR/lib on the library path), e.g. new=build-a
#            all=build-a:PDVM_CUDA_DENSE_ALL_FMTS=1
# Env: FORMATS="q8_0 q4_0"  (FMT or FMT@SPARSITY)  MODE=token  DEPTHS=0,1024,4096  TOKENS=20
#      REPEATS=5  ROUNDS=1
set -uo pipefail
[[ $# -ge 2 ]] || { echo "usage: scripts/ab-bench.sh OUT_DIR NAME=BIN_DIR[:VAR=VALUE,...]..." >&2; exit 2; }
out=$1
shift
FORMATS=${FORMATS:-"q8_0 q4_0"}
MODE=${MODE:-token}
DEPTHS=${DEPTHS:-0,1024,4096}
TOKENS=${TOKENS:-20}
REPEATS=${REPEATS:-5}
ROUNDS=${ROUNDS:-1}
runs="$out/ab-runs"
mkdir -p "$runs"
# each variant parsed once: its name, binary directory and environment (VAR=VALUE,...)
names=()
bins=()
envs_of=()
for v in "$@"; do
  rest=${v#*=}
  bin=${rest%%:*}
  [[ $v == *=* && -x "$bin/pdvm" ]] || { echo "ab-bench: no pdvm binary in '$bin' (variant '$v')" >&2; exit 2; }
  names+=("${v%%=*}")
  bins+=("$bin")
  if [[ $rest == *:* ]]; then envs_of+=("${rest#*:}"); else envs_of+=(""); fi
done

echo "== start $(date -u +%H:%M:%S): mode $MODE, depths $DEPTHS, $TOKENS tokens x $REPEATS repeats"
for ((r = 1; r <= ROUNDS; ++r)); do
  for spec in $FORMATS; do
    fmt=${spec%@*}
    sparsity=()
    if [[ $spec == *@* ]]; then sparsity=(--sparsity "${spec#*@}"); fi
    for ((k = 0; k < ${#names[@]}; ++k)); do
      name=${names[k]}
      bin=${bins[k]}
      envs=()
      [[ -n ${envs_of[k]} ]] && IFS=, read -r -a envs <<< "${envs_of[k]}"
      tag="$name-$MODE-${spec/@/-s}-r$r"
      # a bundle built elsewhere carries its shared libraries in BIN_DIR/lib (as gpu-check.sh's)
      env LD_LIBRARY_PATH="$bin/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ${envs[@]+"${envs[@]}"} \
        timeout 300 "$bin/pdvm" bench --backend cuda --gpu-mode "$MODE" --shape phi-4 \
        --format "$fmt" ${sparsity[@]+"${sparsity[@]}"} --depth "$DEPTHS" --tokens "$TOKENS" \
        --warmup 3 --repeats "$REPEATS" -q --json "$runs/$tag.json" > "$runs/$tag.log" 2>&1
      rc=$?
      line=$(python3 - "$runs/$tag.json" <<'PY' 2>/dev/null
import json, sys
j = json.load(open(sys.argv[1]))
print(" | ".join(f"{r['depth']} {r['ms_per_token']['median']:.3f} {r['pct_of_ceiling']:.1f}%"
                 for r in j["results"]))
PY
      )
      echo "$name $MODE $spec r$r | ${line:-failed (exit $rc): $(tail -1 "$runs/$tag.log")}"
    done
  done
done
echo "== end $(date -u +%H:%M:%S)"
tar -czf "$out/ab-runs.tar.gz" -C "$out" ab-runs && rm -rf "$runs"
