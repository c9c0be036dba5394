#!/usr/bin/env bash
# A/B of the AMX GEMMs (Sources/CKernels/amx.c) of the working tree against a base revision, in
# one process: see amx_ab.c. Usage, from the repository root:
#   Tools/bench/amx_ab.sh [base revision, default HEAD] [--runs N]
# --build-only builds the program and stops (Tools/test.sh checks that it still builds).
set -euo pipefail
base=HEAD
if [[ $# -gt 0 && $1 != --* ]]; then base=$1; shift; fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git show "$base:Sources/CKernels/amx.c" > "$work/base_amx_body.c" || {
    echo "amx_ab: no Sources/CKernels/amx.c at revision $base" >&2
    exit 2
}
# The base file's entry points, renamed so both versions link into one program.
{
    for f in amx_packed_weight_bytes amx_pack_weight_panels amx_pack_weights gemm_i8i8_i32_amx_packed \
             gemm_i16i8_i32_amx_packed gemm_i8i8_i32_amx gemm_i16i8_i32_amx gemm_i8i8_blocks_amx_packed; do
        echo "#define $f base_$f"
    done
    echo "#include \"$work/base_amx_body.c\""
} > "$work/base_amx.c"
clang -O2 -pthread -ISources/CKernels -ISources/CKernels/include Tools/bench/amx_ab.c "$work/base_amx.c" \
    Sources/CKernels/*.c -lm -o "$work/amx_ab"
if [[ ${1:-} == --build-only ]]; then exit 0; fi
echo "base: $base ($(git rev-parse --short "$base")); tree: the working tree of $(git rev-parse --short HEAD)"
"$work/amx_ab" "$@"
