#!/usr/bin/env bash
# device-call.sh: one device call's work, on the GPU machine, from the repository root, with what
# scripts/gpu-bundle.sh prepared. Whatever the call carried is put in place first, in git-ignored
# paths that a warm machine keeps between calls:
#   build-carry/bundle/bundle.tar.xz -> models/next/ (final/, v/NAME/, build.txt)
#   build-carry/ga/partA, build-carry/gb/partB -> the default model, joined and sha256-checked
#                                                 once both halves are there
# then runs each JOB in order (NAME: a variant of the bundle, default final):
#   ab            token mode, the formats in AB_FORMATS (default MdCSR 50% / 70%), main's kernels
#                 (final) against every variant (those in AB_VARIANTS if set: a stage-timer build
#                 is no A/B variant), and q4_1 against the variants in Q4_1_VARIANTS
#                 (scripts/ab-bench.sh, REPEATS=3, ROUNDS=1); files: ab-mdcsr.txt (ab-formats.txt
#                 with AB_FORMATS; the runs' lines, written as they come, so a call killed at its
#                 time limit still returns them) and ab-mdcsr/ab-runs.tar.gz; the same two for q4_1
#   tests[:NAME]  gpu-check.sh's tests stage: GPU tests, memcheck, racecheck (4 files)
#   greedy[:NAME] the default model's 64 greedy tokens against the CPU backend, every mode (1 file;
#                 a skip fails the job)
#   bench[:NAME]  gpu-check.sh's bench stage for BENCH_FORMATS (default "mdcsr@0.5 mdcsr@0.7";
#                 3 files)
#   stages:NAME   a stage-timer build's per-stage times (pdvm bench prints them): token mode, Phi-4
#                 shape, 8 layers, depths 0 and 1024, for STAGE_FORMATS (default q4_0); 1 file,
#                 stages-NAME.txt
# A job list whose files would pass the 8 that come back from $OUT is refused before anything runs.
#
# Usage: bash scripts/device-call.sh JOB...
# Exit:  0 every job ran and passed; 1 a job failed (its runs, tests or checks); 2 bad arguments
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
usage="usage: bash scripts/device-call.sh JOB... (ab, tests[:NAME], greedy[:NAME], bench[:NAME], stages:NAME)"
[[ $# -gt 0 ]] || { echo "$usage" >&2; exit 2; }
files=0
q41_files=0
[[ -n ${Q4_1_VARIANTS:-} ]] && q41_files=2
for job in "$@"; do  # every job checked before any runs
  case $job in
    ab) files=$((files + 2 + q41_files)) ;;
    ab:*) echo "device-call: 'ab' takes no NAME (it runs final against every variant)" >&2; exit 2 ;;
    tests | tests:?*) files=$((files + 4)) ;;
    greedy | greedy:?*) files=$((files + 1)) ;;
    bench | bench:?*) files=$((files + 3)) ;;
    stages:?*) files=$((files + 1)) ;;
    *) echo "device-call: unknown job '$job'; $usage" >&2; exit 2 ;;
  esac
done
((files <= 8)) || { echo "device-call: these jobs write $files files; 8 come back from \$OUT: split them over calls" >&2; exit 2; }

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
for v in ${Q4_1_VARIANTS:-} ${AB_VARIANTS:-}; do
  [[ $v =~ ^[A-Za-z0-9_-]+$ && -x $next/v/$v/pdvm ]] ||
    { echo "device-call: Q4_1_VARIANTS or AB_VARIANTS names '$v', which is not a variant of the bundle" >&2; exit 2; }
done

# ab_bench(NAME, FORMATS, VARIANT...): the runs' lines into $out/NAME.txt as they come; fails if
# ab-bench.sh did or any run did
ab_bench() {
  local name=$1 formats=$2
  shift 2
  FORMATS=$formats MODE=token REPEATS=${REPEATS:-3} ROUNDS=${ROUNDS:-1} bash scripts/ab-bench.sh "$out/$name" "$@" |
    tee "$out/$name.txt"
  local st=${PIPESTATUS[0]}
  [[ $st == 0 ]] && ! grep -q "failed (exit" "$out/$name.txt"
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
      if [[ -n ${AB_VARIANTS:-} ]]; then
        for v in $AB_VARIANTS; do variants+=("$v=$next/v/$v"); done
      else
        for v in "$next"/v/*/; do [[ -d $v ]] && variants+=("$(basename "$v")=${v%/}"); done
      fi
      if [[ -n ${AB_FORMATS:-} ]]; then
        ab_bench ab-formats "$AB_FORMATS" "${variants[@]}" || rc=1
      else
        ab_bench ab-mdcsr "mdcsr@0.5 mdcsr@0.7" "${variants[@]}" || rc=1
      fi
      q41=(base="$next/final")
      for v in ${Q4_1_VARIANTS:-}; do q41+=("$v=$next/v/$v"); done
      if [[ ${#q41[@]} -gt 1 ]]; then ab_bench ab-q4_1 q4_1 "${q41[@]}" || rc=1; fi ;;
    tests)
      [[ -x $dir/test_cuda_backend ]] || { echo "device-call: '$name' has no test binaries" >&2; rc=1; continue; }
      PDVM_PREBUILT=$dir bash scripts/gpu-check.sh tests "$out/tests-$name"
      # gpu-check.sh logs each process's status ("tests exit: 0", "memcheck exit (q4_k_m): 0", ...)
      if grep -qE "exit[^:]*: [1-9]|\[  FAILED  \]" "$out/tests-$name"/*.log; then
        echo "device-call: tests:$name failed (a non-zero exit or a FAILED test in $out/tests-$name)" >&2
        rc=1
      fi ;;
    greedy)
      [[ -f $model ]] || { echo "device-call: $model is not here (carry build-carry/ga, then gb)" >&2; rc=1; continue; }
      [[ -x $dir/test_cuda_vs_cpu ]] || { echo "device-call: '$name' has no test binaries" >&2; rc=1; continue; }
      log=$out/greedy-$name.log
      LD_LIBRARY_PATH=$dir/lib PDVM_TEST_DATA=$repo/tests/data PDVM_MODEL=$repo/$model timeout 300 \
        "$dir/test_cuda_vs_cpu" --gtest_filter='*Greedy*' > "$log" 2>&1
      st=$?
      echo "greedy exit: $st" >> "$log"
      grep -E "smollm2 \]|PASSED|FAILED|SKIPPED|greedy exit" "$log"
      if [[ $st != 0 ]] || ! grep -q "\[  PASSED  \] 1 test" "$log"; then
        echo "device-call: greedy:$name did not pass (a skip is not a pass; see $log)" >&2
        rc=1
      fi ;;
    bench)
      FORMATS=${BENCH_FORMATS:-"mdcsr@0.5 mdcsr@0.7"} TORCH=${TORCH:-0} PDVM_PREBUILT=$dir \
        bash scripts/gpu-check.sh bench "$out/bench-$name"
      # each run's log ends with "exit N" (gpu-check.sh); they are in its tarball by now
      if [[ ! -f $out/bench-$name/bench.tar.gz ]] ||
        tar -xzOf "$out/bench-$name/bench.tar.gz" --wildcards '*.log' | grep -qE "^exit [1-9]"; then
        echo "device-call: bench:$name had a failed run (see $out/bench-$name)" >&2
        rc=1
      fi ;;
    stages)
      log=$out/stages-$name.txt
      : > "$log"
      for fmt in ${STAGE_FORMATS:-q4_0}; do
        spec=(--format "${fmt%@*}")
        [[ $fmt == *@* ]] && spec+=(--sparsity "${fmt#*@}")
        echo "== $fmt" >> "$log"
        LD_LIBRARY_PATH=$dir/lib timeout 300 "$dir/pdvm" bench --backend cuda --gpu-mode token \
          --shape phi-4 --layers 8 "${spec[@]}" --depth 0,1024 --tokens 10 --repeats 1 >> "$log" 2>&1
        st=$?
        echo "exit $st" >> "$log"
        [[ $st == 0 ]] || rc=1
      done
      grep -E "^== |stage times|^  (qkv|attention|merge|wo|ffn_up|down|per layer)|^exit" "$log"
      grep -q "stage times at depth" "$log" ||
        { echo "device-call: stages:$name printed no stage times (not a stage-timer build?)" >&2; rc=1; } ;;
  esac
done
exit $rc
