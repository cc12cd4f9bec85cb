#!/usr/bin/env bash
# sass-compare.sh: compiles CUDA sources at a git revision and in the working tree for sm_90a and
# compares their machine code (SASS) kernel by kernel, on a machine without a GPU. Answers "did this
# refactor change the code the H100 runs?" before any device time is spent, and prints per kernel
# the instruction count, registers and spill bytes of both builds.
#
# Usage: scripts/sass-compare.sh [REV] [FILE.cu ...]   (default: HEAD, src/cuda/kernels.cu)
# Exit:  0 identical SASS, 1 different, 2 a build or tool error.
# Env:   ARCH=sm_90a  NVCC_EXTRA="-DPDVM_CUDA_STAGE_TIMER=1"  KEEP=DIR (keep the .sass listings)
#        NVCC_OLD_EXTRA="-DSWITCH=1" (REV's build only: "does the tree compile to what REV built
#        with that switch did?", before a switch measured on the GPU is made the code)
#
# nvdisasm is taken from PATH or the CUDA toolkit; where the toolkit lacks it (this project's
# CPU machines have nvcc and ptxas only), the NVIDIA wheel from PyPI is unpacked into .cache/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
rev=${1:-HEAD}
shift || true
files=("$@")
[[ ${#files[@]} -gt 0 ]] || files=(src/cuda/kernels.cu)
ARCH=${ARCH:-sm_90a}
die() { echo "sass-compare: $*" >&2; exit 2; }

command -v nvcc >/dev/null || die "nvcc not found (the CUDA toolkit is needed to compile)"
git rev-parse --verify -q "$rev^{commit}" >/dev/null || die "'$rev' is not a commit of this repository"
for f in "${files[@]}"; do [[ -f $f ]] || die "$f: no such file in the working tree"; done

find_nvdisasm() {
  local cand
  for cand in "$(command -v nvdisasm || true)" "$(dirname "$(command -v nvcc)")/nvdisasm" \
    "$root/.cache/nvdisasm/nvidia/cu13/bin/nvdisasm"; do
    [[ -n $cand && -x $cand ]] && { echo "$cand"; return; }
  done
  # 13.x reads the cubins of nvcc 13.0; no 13.0 wheel was published
  echo "sass-compare: fetching nvdisasm (PyPI nvidia-cuda-nvdisasm==13.5.37) into .cache/" >&2
  local tmp
  tmp=$(mktemp -d)
  python3 -m pip download -q --no-deps --only-binary=:all: -d "$tmp" nvidia-cuda-nvdisasm==13.5.37 \
    >&2 || die "could not download nvdisasm from PyPI"
  mkdir -p "$root/.cache/nvdisasm"
  python3 -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" \
    "$tmp"/*.whl "$root/.cache/nvdisasm"
  rm -rf "$tmp"
  cand="$root/.cache/nvdisasm/nvidia/cu13/bin/nvdisasm"
  chmod +x "$cand"
  echo "$cand"
}
nvdisasm=$(find_nvdisasm)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/old"
git archive "$rev" src include | tar -x -C "$work/old"

# The flags of CMakeLists.txt's CUDA target that change code generation (Release: -O3 -DNDEBUG).
# -lineinfo is left out: it changes no instruction, only the line table.
flags=(-DPDVM_HAVE_CUDA=1 -O3 -DNDEBUG --expt-relaxed-constexpr -std=c++20 -cubin -arch="$ARCH"
  -Xptxas -v ${NVCC_EXTRA:-})

# build TREE FILE TAG: FILE's cubin, ptxas's resource lines, and the SASS listing with addresses,
# encodings and the anonymous namespace's per-build hash taken out
build() {
  local tree=$1 file=$2 tag=$3 extra=()
  [[ $tree == "$work/old" ]] && read -r -a extra <<< "${NVCC_OLD_EXTRA:-}"
  (cd "$tree" && nvcc "${flags[@]}" ${extra[@]+"${extra[@]}"} -I include -I src "$file" -o "$work/$tag.cubin") \
    > "$work/$tag.ptxas" 2>&1 || { cat "$work/$tag.ptxas" >&2; die "$file did not compile in $tag"; }
  "$nvdisasm" -c "$work/$tag.cubin" |
    sed -E 's@/\*[0-9a-f]{4,}\*/@@g; s@_GLOBAL__N__[0-9a-f]{8}_@_GLOBAL__N__@g; s@ +;@;@' |
    grep -Ev '^\s*(//|\.(section|sectionflags|sectioninfo|align|zero|byte|short|word|dword|type|size|other)\b)|^\s*$' \
      > "$work/$tag.sass"
}

# per kernel: "name instructions" (an instruction is a line ending in ';' inside a .text section)
count() {
  awk '/^\.text\./ { name = substr($1, 7); sub(/:$/, "", name); next }
       name != "" && /;[ \t]*$/ { n[name]++ }
       END { for (k in n) print k, n[k] }' "$1" | sort
}

# ptxas -v: "Compiling entry function 'NAME'" then "Used R registers" and "B spill stores"
resources() {
  awk "/Compiling entry function/ { match(\$0, /'[^']+'/); name = substr(\$0, RSTART + 1, RLENGTH - 2) }
       /spill stores/ { split(\$0, a, \" \"); spill[name] = a[5] }
       /Used [0-9]+ registers/ { match(\$0, /Used [0-9]+/); regs[name] = substr(\$0, RSTART + 5, RLENGTH - 5) }
       END { for (k in regs) print k, regs[k], (k in spill ? spill[k] : 0) }" "$1" |
    sed -E 's@_GLOBAL__N__[0-9a-f]{8}_@_GLOBAL__N__@g' | sort
}

status=0
for f in "${files[@]}"; do
  tag=$(basename "$f" .cu)
  build "$work/old" "$f" "$tag-old"
  build "$root" "$f" "$tag-new"
  if [[ -n ${KEEP:-} ]]; then mkdir -p "$KEEP"; cp "$work/$tag-old.sass" "$work/$tag-new.sass" "$KEEP/"; fi
  echo "== $f: $rev ($(git rev-parse --short "$rev"))${NVCC_OLD_EXTRA:+ built with $NVCC_OLD_EXTRA} against the working tree, $ARCH"
  join -a1 -a2 -e - -o 0,1.2,2.2 <(count "$work/$tag-old.sass") <(count "$work/$tag-new.sass") \
    > "$work/counts"
  join -a1 -a2 -e - -o 0,1.2,1.3,2.2,2.3 <(resources "$work/$tag-old.ptxas") \
    <(resources "$work/$tag-new.ptxas") > "$work/res"
  join -a1 -e - -o 0,1.2,1.3,2.2,2.3,2.4,2.5 "$work/counts" "$work/res" |
    while read -r name i_old i_new r_old s_old r_new s_new; do
      pretty=$(echo "$name" | sed -E 's@_GLOBAL__N__@_GLOBAL__N__00000000_@' | c++filt |
        sed -E 's@\(anonymous namespace\)::@@; s@pdvm::cuda::@@g; s@\(.*@@')
      printf '%-44s instr %6s -> %-6s regs %3s -> %-3s spill %s -> %s B\n' "${pretty:0:44}" \
        "$i_old" "$i_new" "$r_old" "$r_new" "$s_old" "$s_new"
    done
  if cmp -s "$work/$tag-old.sass" "$work/$tag-new.sass"; then
    echo "SASS identical ($(grep -c ';' "$work/$tag-new.sass") instructions)"
  else
    echo "SASS differs: $(diff "$work/$tag-old.sass" "$work/$tag-new.sass" | grep -c '^[<>]') lines"
    status=1
  fi
done
exit $status
