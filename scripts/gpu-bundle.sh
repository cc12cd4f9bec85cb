#!/usr/bin/env bash
# gpu-bundle.sh: prepares here, on a machine without a GPU, what a session's device calls carry, so
# the device time goes to runs, not builds (the GPU image lacks the build's dependencies, and a
# machine goes back 30 s after a call):
#   build-carry/bundle/bundle.tar.xz  final/: the working tree's pdvm, test_cuda_backend and
#       test_cuda_vs_cpu (Release, sm_90a, NATIVE off, stripped) with the shared libraries they
#       need beyond the image's (lib/); v/NAME/: each variant's pdvm (and its test binaries when
#       NAME is listed in TESTS), built from the same tree with extra CUDA flags; build.txt: the
#       commit, the flags, and ptxas' registers and spill of its format-set kernel instances.
#   build-carry/ga/partA, build-carry/gb/partB  the default model in two halves (a call carries at
#       most 64 MiB, the working tree included).
# scripts/device-call.sh runs the calls on the device with them (its header lists the commands).
#
# Usage: scripts/gpu-bundle.sh [NAME=CUDA_FLAGS]...
#   e.g. TESTS="pc" scripts/gpu-bundle.sh pc=-DPDVM_MDCSR_PC=1 c6=-DPDVM_MDCSR_CHUNKS=6 (Round 19's
#   switches, since removed: bench/results/round19/mdcsr-switches.patch.txt)
# Env:   TESTS="NAME..."  variants that also carry their test binaries (~2.5x a pdvm's bytes)
#        BUILD=build-gpucarry  the build directory (reconfigured per variant: only CUDA objects rebuild)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
BUILD=${BUILD:-build-gpucarry}
TESTS=${TESTS:-}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
die() { echo "gpu-bundle: $*" >&2; exit 1; }
command -v nvcc >/dev/null || die "nvcc not found: the bundle is built with the CUDA toolkit"
names=" "
for v in "$@"; do
  n=${v%%=*}
  [[ $v == ?*=?* && $n =~ ^[A-Za-z0-9_-]+$ ]] || die "'$v' is not NAME=CUDA_FLAGS (a name of letters, digits, _ or -, and flags)"
  [[ $n != final && $n != lib ]] || die "'$n' is a reserved name (the bundle's own binaries)"
  [[ $names != *" $n "* ]] || die "variant '$n' is named twice"
  names+="$n "
done
for t in $TESTS; do [[ $names == *" $t "* ]] || die "TESTS names '$t', which is not a variant given"; done

bins=(pdvm tests/test_cuda_backend tests/test_cuda_vs_cpu)
build() {  # build(FLAGS, DEST, WITH_TESTS)
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a \
    -DPDVM_NATIVE=OFF -DPDVM_WERROR=OFF -DPDVM_BENCH=OFF -DCMAKE_CUDA_FLAGS="$1 -Xptxas -v" > /dev/null
  local targets=(pdvm_cli)
  [[ $3 == 1 ]] && targets+=(test_cuda_backend test_cuda_vs_cpu)
  cmake --build "$BUILD" -j"$(nproc)" --target "${targets[@]}" > "$stage/build.log" 2>&1 ||
    { tail -30 "$stage/build.log"; die "build failed (flags '$1')"; }
  # ptxas' registers and spill of every format-set instance of the layer kernels (FmtSet in the name)
  awk -v tag="$(basename "$2")" '/Compiling entry/ { n = ""; if (match($0, /[a-z_]+_kernelILj[0-9]+E/)) n = substr($0, RSTART, RLENGTH) }
    /spill stores/ { sp = $5 } /Used [0-9]+ registers/ && n != "" { printf "  %s %s: %s registers, %s B spill\n", tag, n, $5, sp; n = "" }' \
    "$stage/build.log" >> "$stage/build.txt"
  mkdir -p "$2"
  for b in "${bins[@]}"; do
    [[ $b == pdvm || $3 == 1 ]] || continue
    cp "$BUILD/$b" "$2/" && strip "$2/$(basename "$b")"
  done
}
{
  echo "commit: $(git describe --always --dirty)"
  echo "nvcc: $(nvcc --version | tail -1)"
  echo "final: the tree as it is"
} > "$stage/build.txt"
echo "gpu-bundle: final ($(git describe --always --dirty))"
build "" "$stage/final" 1
mkdir -p "$stage/final/lib"
# the libraries the binaries link beyond the GPU image's (glibc, libstdc++, zlib and the driver are there)
for l in libicudata.so.72 libicuuc.so.72 libpcre2-8.so.0; do
  cp -L "/lib/x86_64-linux-gnu/$l" "$stage/final/lib/" 2>/dev/null ||
    die "/lib/x86_64-linux-gnu/$l not found: the GPU image lacks it, and pdvm links it (scripts/install_deps.sh installs it)"
done
for v in "$@"; do
  name=${v%%=*}
  flags=${v#*=}
  with=0
  [[ " $TESTS " == *" $name "* ]] && with=1
  echo "gpu-bundle: variant $name ($flags)"
  echo "variant $name: $flags" >> "$stage/build.txt"
  build "$flags" "$stage/v/$name" "$with"
  ln -sfn ../../final/lib "$stage/v/$name/lib"
done
cmake -S . -B "$BUILD" -DCMAKE_CUDA_FLAGS="" > /dev/null  # leave the build directory as main's
mkdir -p build-carry/bundle
tar -C "$stage" -cf - final build.txt $( [[ $# -gt 0 ]] && echo v ) | xz -T"$(nproc)" -6 > build-carry/bundle/bundle.tar.xz
# the default model in halves (scripts/fetch_model.sh puts it in models/)
model=models/SmolLM2-135M-Instruct.Q4_1.gguf
[[ -f $model ]] || bash scripts/fetch_model.sh
mkdir -p build-carry/ga build-carry/gb
split -n 2 -d "$model" "$stage/part"
mv "$stage/part00" build-carry/ga/partA
mv "$stage/part01" build-carry/gb/partB
# what travels with every call: tracked files and untracked ones git does not ignore
# (a tracked file deleted from the tree has no size and travels as nothing)
tree_bytes=$(git ls-files -z --cached --others --exclude-standard |
  { xargs -0 stat -c %s 2>/dev/null || true; } | awk '{ t += $1 } END { print t + 0 }')
too_large=0
for c in bundle ga gb; do
  bytes=$(du -cb build-carry/$c | tail -1 | cut -f1)
  awk -v c="$c" -v b="$bytes" -v t="$tree_bytes" 'BEGIN {
    printf "gpu-bundle: build-carry/%-6s %5.1f MB, with the tree %5.1f MB of the 67.1 MB a call carries%s\n",
      c, b / 1e6, (b + t) / 1e6, (b + t > 64 * 1024 * 1024 ? "  TOO LARGE: fewer variants or TESTS" : "") }'
  ((bytes + tree_bytes <= 64 * 1024 * 1024)) || too_large=1
done
((too_large == 0)) || die "a carry is over the 64 MiB a call may take (above)"
cat <<'TXT'
gpu-bundle: the device calls (one warm machine, in this order; see scripts/device-call.sh):
  1. carry ["build-carry/bundle"]  bash scripts/device-call.sh ab          (without variants: tests)
  2. carry ["build-carry/ga"]      bash scripts/device-call.sh tests:NAME  (without variants: bench)
  3. carry ["build-carry/gb"]      bash scripts/device-call.sh greedy:NAME bench:NAME
TXT
