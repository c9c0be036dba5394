#!/usr/bin/env bash
# Set-up and the whole test suite, from a fresh clone: installs dependencies, builds, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash Tools/install-deps.sh
# One optimized build serves the tools and the tests: -enable-testing lets the tests reach
# internal API, and `swift test` with the same flags reuses every module built here instead of
# building the package a second time in debug. The end-to-end tests run the executables just built
# (DLORAL_BIN); a bare `swift test` uses the debug ones.
swift build -c release -Xswiftc -enable-testing
DLORAL_BIN="$PWD/.build/release" swift test -c release -Xswiftc -enable-testing
# Every C kernel path bit for bit against the scalar one: natively (AVX2) and, cross-compiled,
# the arm64 NEON paths under qemu-user with and without dotprod (installs the cross tools).
bash Tools/neon/run.sh
# The C benchmarks still build against the kernels (built, not run: their figures are in
# BENCHMARKS.md). x86-64 only: they time the x86 levels.
if [ "$(uname -m)" = x86_64 ]; then
    bench_objs=$(mktemp -d)
    for c in Sources/CKernels/*.c; do
        clang -O2 -c -ISources/CKernels -ISources/CKernels/include "$c" -o "$bench_objs/$(basename "$c" .c).o"
    done
    for b in int_gemm_bench block_gemm_bench sgemm_bench amx_ceiling; do
        clang -O2 -pthread -ISources/CKernels -ISources/CKernels/include "Tools/bench/$b.c" "$bench_objs"/*.o \
            -lopenblas -lm -o "$bench_objs/$b"
    done
    bash Tools/bench/amx_ab.sh HEAD --build-only
    rm -rf "$bench_objs"
    echo "C benchmarks: built"
fi
# The independent .dlrt reader's own tests (numpy + zstandard; no pytest needed).
python3 Tools/dlrt/test_dlrt_reader.py
# A short fuzz campaign on each reader (libFuzzer + AddressSanitizer, its own scratch build
# folder; FUZZING.md): any crash, hang, leak or sanitizer report fails the run.
bash Tools/fuzz/run.sh 20
