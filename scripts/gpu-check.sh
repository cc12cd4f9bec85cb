#!/usr/bin/env bash
# gpu-check.sh: the CUDA backend's check on the GPU machine in one call: build (or take a prebuilt
# bundle), the GPU tests (vs an fp64 host reference and vs the CPU backend's reference kernels),
# compute-sanitizer memcheck and racecheck over short runs of every mode (the fused layer and token
# kernels included), decode benchmarks (pdvm bench: Phi-4 shape, 40 layers, per format and mode,
# depths 0/1024/4096, KV filled with random data) and a PyTorch bf16 side-by-side; a short table
# last. At most 8 files land in OUT (the device tool's limit): logs, summary, a tarball.
#
# Usage: scripts/gpu-check.sh [tests|bench|all] [OUT_DIR]          (default: all, $OUT)
# Env:   PDVM_PREBUILT=DIR  use DIR/pdvm, DIR/test_cuda_backend, DIR/lib (built elsewhere with the
#                           same nvcc) instead of configuring here (the GPU image may lack the
#                           build's dependencies: nlohmann-json, CLI11, PCRE2, ICU, GoogleTest)
#        FORMATS="bf16 f16 q8_0 q4_0 q4_1 i8_row mdcsr@0.5 bitmap_i8@0.7"  (FMT@S: --sparsity S,
#                           for the sparse formats mdcsr and bitmap_i8)
#        MODES="ops layer token"  DEPTHS=0,1024,4096  TOKENS=20
#        EXTRA_BENCH="q8_0:token:PDVM_CUDA_MIN_CHUNK=8"  extra runs FMT:MODE:VAR=VALUE (an env knob)
#        TORCH=0  skip the PyTorch side-by-side
set -uo pipefail
stage=${1:-all}
out=${2:-${OUT:-out/gpu-check}}
mkdir -p "$out"
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
FORMATS=${FORMATS:-"bf16 q8_0 q4_0 q4_1 mdcsr@0.5 mdcsr@0.7 i8_row bitmap_i8@0.5 bitmap_i8@0.7"}
MODES=${MODES:-"ops layer token"}
EXTRA_BENCH=${EXTRA_BENCH:-}
TORCH=${TORCH:-1}
DEPTHS=${DEPTHS:-0,1024,4096}
TOKENS=${TOKENS:-20}
log() { echo "== $(date -u +%H:%M:%S) $*"; }

{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv
  nvcc --version | tail -2
  echo "commit: $(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)"
} > "$out/env.txt" 2>&1
cat "$out/env.txt"

# --- build --------------------------------------------------------------------------------------
if [[ -n "${PDVM_PREBUILT:-}" ]]; then
  bin=$PDVM_PREBUILT
  export LD_LIBRARY_PATH="$bin/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export PDVM_TEST_DATA="$root/tests/data"  # the bundle was built in another tree
  tests=("$bin/test_cuda_backend" "$bin/test_cuda_vs_cpu")
  log "prebuilt binaries from $bin"
else
  log "configure + build (Release, sm_90a)"
  # -Werror off: this run checks the device; CI enforces warnings on every commit.
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a \
    -DPDVM_WERROR=OFF -DPDVM_BENCH=OFF > "$out/build.log" 2>&1 &&
    cmake --build build-gpu -j16 --target pdvm_cli test_cuda_backend test_cuda_vs_cpu >> "$out/build.log" 2>&1 ||
    { tail -30 "$out/build.log"; echo "build failed (log: build.log)"; exit 1; }
  bin=build-gpu
  tests=(build-gpu/tests/test_cuda_backend build-gpu/tests/test_cuda_vs_cpu)
fi

# --- tests and memcheck -------------------------------------------------------------------------
if [[ $stage == tests || $stage == all ]]; then
  log "GPU tests"
  if [[ -z "${PDVM_PREBUILT:-}" ]]; then
    (cd build-gpu && timeout 500 ctest -L gpu --output-on-failure) > "$out/tests.log" 2>&1
  else
    # two processes, each with its own limit, so a hang in one group still leaves the other's result
    timeout 120 "${tests[0]}" --gtest_filter='-*phi4*' > "$out/tests.log" 2>&1
    echo "tests exit (small shapes): $?" >> "$out/tests.log"
    timeout 150 "${tests[0]}" --gtest_filter='*phi4*' >> "$out/tests.log" 2>&1
    echo "tests exit (phi4): $?" >> "$out/tests.log"
    # test_cuda_vs_cpu: fixtures, synthetic formats, converted mdcsr / bitmap_i8 / i8_row models
    timeout 300 "${tests[1]}" >> "$out/tests.log" 2>&1
  fi
  echo "tests exit: $?" >> "$out/tests.log"
  grep -E "worst rel|vs cpu|smollm2 \]|FAILED|PASSED|SKIPPED \]|tests exit|Failure|Expected|Which is" "$out/tests.log" | head -130
  # the fused kernels under both tools: the variants (2 layers, 48 positions, every mode; head size
  # 64 and 128, i.e. both attention paths), the head-size-128 model and the q4_1 model (4 layers)
  # for memcheck; racecheck (shared-memory hazards) on the variants and the head-size-128 model
  log "compute-sanitizer memcheck (smollm2 q4_1 4 layers, head size 128, the variants; ops, layer, token)"
  timeout 170 compute-sanitizer --tool memcheck --leak-check no --error-exitcode 3 \
    "${tests[0]}" --gtest_filter='*smollm4_q4_1*:*variant*:*hd128*' > "$out/memcheck.log" 2>&1
  echo "memcheck exit: $?" >> "$out/memcheck.log"
  grep -E "ERROR SUMMARY|memcheck exit|PASSED|FAILED" "$out/memcheck.log" | head
  # the bitmap_i8 kernel reads x past cols (padding) and mask words past a row: memcheck on the
  # converted 70% model and the synthetic 80% one (most chunk halves padded)
  log "compute-sanitizer memcheck (bitmap_i8 at 70% and 80%, i8_row; ops, layer, token)"
  timeout 170 compute-sanitizer --tool memcheck --leak-check no --error-exitcode 3 "${tests[1]}" \
    --gtest_filter='*CudaVsCpuBitmap*s70*:*SyntheticInt8*bitmap_i8_s80*:*CudaVsCpuI8Row*' \
    >> "$out/memcheck.log" 2>&1
  echo "memcheck exit (bitmap_i8, i8_row): $?" >> "$out/memcheck.log"
  grep -E "ERROR SUMMARY|memcheck exit \(bitmap" "$out/memcheck.log" | tail -4
  # K-quants converted at upload (q4_K -> q4_1 layout, q6_K and mixed q|k|v -> q8_16)
  log "compute-sanitizer memcheck (the Q4_K_M fixture; ops, layer, token)"
  timeout 120 compute-sanitizer --tool memcheck --leak-check no --error-exitcode 3 "${tests[1]}" \
    --gtest_filter='*q4_k*' >> "$out/memcheck.log" 2>&1
  echo "memcheck exit (q4_k_m): $?" >> "$out/memcheck.log"
  grep -E "ERROR SUMMARY|memcheck exit \(q4" "$out/memcheck.log" | tail -2
  log "compute-sanitizer racecheck (the variants, head size 128; ops, layer, token)"
  timeout 300 compute-sanitizer --tool racecheck --racecheck-report all --error-exitcode 3 \
    "${tests[0]}" --gtest_filter='*variant*:*hd128*' > "$out/racecheck.log" 2>&1
  echo "racecheck exit: $?" >> "$out/racecheck.log"
  grep -E "RACECHECK SUMMARY|ERROR SUMMARY|racecheck exit|PASSED|FAILED" "$out/racecheck.log" | head
fi

# --- benchmarks ---------------------------------------------------------------------------------
if [[ $stage == bench || $stage == all ]]; then
  mkdir -p "$out/bench"
  for spec in $FORMATS; do
    fmt=${spec%@*}
    sparsity=()
    name=$fmt
    if [[ $spec == *@* ]]; then sparsity=(--sparsity "${spec#*@}"); name="$fmt-s${spec#*@}"; fi
    for mode in $MODES; do
      log "pdvm bench phi-4 $spec $mode"
      timeout 240 "$bin/pdvm" bench --backend cuda --gpu-mode "$mode" --shape phi-4 --format "$fmt" \
        "${sparsity[@]}" --depth "$DEPTHS" --tokens "$TOKENS" --warmup 3 --repeats 5 -q \
        --json "$out/bench/cuda-$mode-phi-4-$name.json" > "$out/bench/cuda-$mode-phi-4-$name.log" 2>&1
      echo "exit $?" >> "$out/bench/cuda-$mode-phi-4-$name.log"
      tail -4 "$out/bench/cuda-$mode-phi-4-$name.log"
    done
  done
  for x in $EXTRA_BENCH; do
    IFS=: read -r fmt mode knob <<< "$x"
    tag=$(echo "$knob" | tr -c 'A-Za-z0-9\n' '-')
    log "pdvm bench phi-4 $fmt $mode $knob"
    env "$knob" timeout 240 "$bin/pdvm" bench --backend cuda --gpu-mode "$mode" \
      --shape phi-4 --format "$fmt" --depth "$DEPTHS" --tokens "$TOKENS" --warmup 3 --repeats 5 -q \
      --json "$out/bench/cuda-$mode-x$tag-phi-4-$fmt.json" > "$out/bench/cuda-$mode-x$tag-phi-4-$fmt.log" 2>&1
    echo "exit $?" >> "$out/bench/cuda-$mode-x$tag-phi-4-$fmt.log"
    tail -4 "$out/bench/cuda-$mode-x$tag-phi-4-$fmt.log"
  done
  if [[ $TORCH == 1 ]]; then
    log "PyTorch bf16 side-by-side"
    PYTHONUNBUFFERED=1 timeout 240 python3 scripts/torch_decode_bench.py --depths "$DEPTHS" \
      --tokens "$TOKENS" --pdvm-json "$out/bench/cuda-ops-phi-4-bf16.json" \
      --pdvm-json "$out/bench/cuda-layer-phi-4-bf16.json" --pdvm-json "$out/bench/cuda-token-phi-4-bf16.json" \
      --json "$out/bench/torch-phi-4-bf16.json" \
      > "$out/bench/torch.log" 2>&1
    tail -12 "$out/bench/torch.log"
  fi
  python3 - "$out/bench" > "$out/summary.txt" <<'PY'
import json, glob, os, sys
d = sys.argv[1]
print(f"{'format':14} {'mode':9} {'depth':>5} {'ms/tok':>8} {'ms/layer':>8} {'tok/s':>7} {'GB/s':>7} {'%ceil':>6} {'launch':>6}")
ceil = None
for f in sorted(glob.glob(os.path.join(d, "cuda-*.json"))):
    j = json.load(open(f))
    ceil = j["ceiling"]
    for r in j["results"]:
        pf = '-x' if '-x' in os.path.basename(f) else ''  # an EXTRA_BENCH knob run
        fmt = j['model']['layer_format'] + (f"@{j['model']['sparsity']:g}" if j['model'].get('sparsity') else '')
        print(f"{fmt:14} {j['device']['gpu_mode'] + pf:9} {r['depth']:5d} "
              f"{r['ms_per_token']['median']:8.3f} {r['ms_per_layer']:8.4f} {r['tok_s']:7.1f} "
              f"{r['gbps']:7.0f} {r['pct_of_ceiling']:6.1f} {r['launches_per_token'] or 0:6d}")
t = os.path.join(d, "torch-phi-4-bf16.json")
if os.path.exists(t):
    for r in json.load(open(t))["results"]:
        print(f"{'torch bf16':14} {'graph':9} {r['depth']:5d} {r['ms_per_token']:8.3f} {r['ms_per_token']/40:8.4f} "
              f"{1000/r['ms_per_token']:7.1f} {r['gbps']:7.0f}")
if ceil:
    print(f"ceiling: read {ceil['read_gbps']:.0f} GB/s, memcpy D2D {ceil['memcpy_gbps'] or 0:.0f} GB/s (read+write)")
PY
  tar -czf "$out/bench.tar.gz" -C "$out" bench && rm -rf "$out/bench"
  cat "$out/summary.txt"
fi
