#!/usr/bin/env bash
# device-call.sh: one device call's work, on the GPU machine, from the repository root, with what
# scripts/gpu-bundle.sh prepared. Whatever the call carried is put in place first, in git-ignored
# paths that a warm machine keeps between calls:
#   build-carry/bundle/bundle.tar.xz -> models/next/ (final/, v/NAME/, build.txt)
#   build-carry/ga/partA, build-carry/gb/partB -> the default model, joined and sha256-checked
#                                                 once both halves are there
# then runs each JOB in order (NAME: a variant of the bundle, default final):
#   ab            MdCSR 50% / 70% token mode, main's kernels (final) against every variant, and
#                 q4_1 against the variants in Q4_1_VARIANTS (scripts/ab-bench.sh, REPEATS=3)
#   tests[:NAME]  gpu-check.sh's tests stage: GPU tests, memcheck, racecheck
#   greedy[:NAME] the default model's 64 greedy tokens against the CPU backend, every mode
#   bench[:NAME]  gpu-check.sh's bench stage for BENCH_FORMATS (default "mdcsr@0.5 mdcsr@0.7")
# Results go under $OUT (at most 8 files come back: each job writes one folder or file).
#
# Usage: bash scripts/device-call.sh JOB...   (exit 0 when every job ran and passed)
set -uo pipefail
cd "$(dirname "$0")/.."
[[ $# -gt 0 ]] || { echo "usage: bash scripts/device-call.sh JOB... (ab, tests[:NAME], greedy[:NAME], bench[:NAME])" >&2; exit 2; }
for job in "$@"; do  # every job checked before any runs
  case ${job%%:*} in
    ab | tests | greedy | bench) ;;
    *) echo "device-call: unknown job '$job' (ab, tests[:NAME], greedy[:NAME], bench[:NAME])" >&2; exit 2 ;;
  esac
done

repo=$PWD
out=${OUT:-out/device-call}
mkdir -p "$out" models
next=$repo/models/next
model=models/SmolLM2-135M-Instruct.Q4_1.gguf
model_sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

# (a warm machine keeps an earlier call's carried paths too: unpack only a bundle newer than the last)
if [[ -f build-carry/bundle/bundle.tar.xz && build-carry/bundle/bundle.tar.xz -nt $next/.unpacked ]]; then
  rm -rf "$next" && mkdir -p "$next" && tar -xJf build-carry/bundle/bundle.tar.xz -C "$next" ||
    { echo "device-call: the bundle did not unpack" >&2; exit 1; }
  touch "$next/.unpacked"
fi
[[ -f build-carry/ga/partA ]] && cp build-carry/ga/partA models/partA
[[ -f build-carry/gb/partB ]] && cp build-carry/gb/partB models/partB
if [[ ! -f $model && -f models/partA && -f models/partB ]]; then
  cat models/partA models/partB > "$model"
  echo "$model_sha  $model" | sha256sum -c --quiet || { echo "device-call: $model: sha256 mismatch" >&2; rm -f "$model"; }
fi
[[ -f $next/build.txt ]] || { echo "device-call: no bundle in models/next (carry build-carry/bundle first)" >&2; exit 1; }
cat "$next/build.txt"
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader 2>&1 || true

bin_of() {  # the binaries' directory of a job's NAME
  local name=${1:-final}
  if [[ $name == final ]]; then echo "$next/final"; else echo "$next/v/$name"; fi
}
rc=0
for job in "$@"; do
  what=${job%%:*}
  name=final
  [[ $job == *:* ]] && name=${job#*:}
  dir=$(bin_of "$name")
  [[ -x $dir/pdvm ]] || { echo "device-call: no binaries for '$name' in the bundle" >&2; rc=1; continue; }
  echo "== $(date -u +%H:%M:%S) $job ($dir)"
  case $what in
    ab)
      variants=(base="$next/final")
      for v in "$next"/v/*/; do [[ -d $v ]] && variants+=("$(basename "$v")=${v%/}"); done
      FORMATS="mdcsr@0.5 mdcsr@0.7" MODE=token REPEATS=${REPEATS:-3} \
        bash scripts/ab-bench.sh "$out/ab-mdcsr" "${variants[@]}"
      q41=(base="$next/final")
      for v in ${Q4_1_VARIANTS:-}; do q41+=("$v=$next/v/$v"); done
      if [[ ${#q41[@]} -gt 1 ]]; then
        FORMATS=q4_1 MODE=token REPEATS=${REPEATS:-3} bash scripts/ab-bench.sh "$out/ab-q4_1" "${q41[@]}"
      fi ;;
    tests)
      [[ -x $dir/test_cuda_backend ]] || { echo "device-call: '$name' has no test binaries" >&2; rc=1; continue; }
      PDVM_PREBUILT=$dir bash scripts/gpu-check.sh tests "$out/tests-$name" || rc=1 ;;
    greedy)
      [[ -f $model ]] || { echo "device-call: $model is not here (carry build-carry/ga, then gb)" >&2; rc=1; continue; }
      [[ -x $dir/test_cuda_vs_cpu ]] || { echo "device-call: '$name' has no test binaries" >&2; rc=1; continue; }
      LD_LIBRARY_PATH=$dir/lib PDVM_TEST_DATA=$repo/tests/data PDVM_MODEL=$repo/$model timeout 300 \
        "$dir/test_cuda_vs_cpu" --gtest_filter='*Greedy*' > "$out/greedy-$name.log" 2>&1
      echo "greedy exit: $?" >> "$out/greedy-$name.log"
      grep -E "smollm2 \]|PASSED|FAILED|SKIPPED|greedy exit" "$out/greedy-$name.log" ;;
    bench)
      FORMATS=${BENCH_FORMATS:-"mdcsr@0.5 mdcsr@0.7"} TORCH=${TORCH:-0} PDVM_PREBUILT=$dir \
        bash scripts/gpu-check.sh bench "$out/bench-$name" || rc=1 ;;
  esac
done
exit $rc
