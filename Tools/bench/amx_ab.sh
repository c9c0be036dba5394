#!/usr/bin/env bash
# A/B of the AMX GEMMs (Sources/CKernels/arch/x86/amx/gemm_amx.c) of the working tree against a base revision, in
# one process: see amx_ab.c. Usage, from the repository root:
#   Tools/bench/amx_ab.sh [base revision, default HEAD] [--runs N]
# --build-only builds the program and stops (Tools/test.sh checks that it still builds).
set -euo pipefail
base=HEAD
if [[ $# -gt 0 && $1 != --* ]]; then base=$1; shift; fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The AMX file's path at the base (it moved into arch/x86/amx/ with the per-architecture layout).
amx_file=Sources/CKernels/arch/x86/amx/gemm_amx.c
git cat-file -e "$base:$amx_file" 2>/dev/null || amx_file=Sources/CKernels/amx.c
git show "$base:$amx_file" > "$work/base_amx_body.c" || {
    echo "amx_ab: no AMX kernel file at revision $base" >&2
    exit 2
}
# The base file's entry points, renamed so both versions link into one program.
{
    for f in amx_packed_weight_bytes amx_pack_weight_panels amx_pack_weights gemm_i8i8_i32_amx_packed \
             gemm_i16i8_i32_amx_packed gemm_i8i8_i32_amx gemm_i16i8_i32_amx gemm_i8i8_blocks_amx_packed \
             amx_packed_bytes_i8 amx_packed_bytes_i16 amx_pack_panels_i8 amx_pack_panels_i16; do
        echo "#define $f base_$f"
    done
    # A base from before the kernel tables calls the VNNI kernel through its level-choosing entry,
    # which at level amx is the EVEX one.
    echo "#define gemm_i8i8_i32_avxvnni gemm_i8i8_i32_vnni_evex"
    echo "#define gemm_i16i8_i32_avxvnni gemm_i16i8_i32_vnni_evex"
    echo "#include \"$work/base_amx_body.c\""
} > "$work/base_amx.c"
mapfile -t sources < <(find Sources/CKernels Sources/CThreadPool -name '*.c' | LC_ALL=C sort)
clang -O2 -pthread -ISources/CKernels -ISources/CKernels/include -ISources/CThreadPool/include Tools/bench/amx_ab.c "$work/base_amx.c" \
    "${sources[@]}" -lm -o "$work/amx_ab"
if [[ ${1:-} == --build-only ]]; then exit 0; fi
echo "base: $base ($(git rev-parse --short "$base")); tree: the working tree of $(git rev-parse --short HEAD)"
"$work/amx_ab" "$@"
