#!/usr/bin/env bash
# Builds the benchmarks without running them (their figures are in BENCHMARKS.md), so that they
# cannot rot: the C kernel benchmarks against OpenBLAS and the AMX A/B program (x86-64 only: they
# time the x86 levels), and the dloral-bench Swift executable. CI runs this as its own step after
# Tools/test.sh; OpenBLAS is a dependency of this step only (installed here on Debian).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$(uname -m)" = x86_64 ]; then
    # sgemm_bench measures our GEMM against OpenBLAS; nothing else links it.
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && ! dpkg -s libopenblas-dev >/dev/null 2>&1; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libopenblas-dev >/dev/null
    fi
    # The binaries go to .build/bench (BENCHMARKS.md runs them from there); objects to a scratch folder.
    out=.build/bench
    mkdir -p "$out"
    bench_objs=$(mktemp -d)
    trap 'rm -rf "$bench_objs"' EXIT
    # Every kernel source, wherever it sits under Sources/CKernels, and the thread pool, with every
    # folder of them on the include path.
    includes=()
    while IFS= read -r dir; do includes+=("-I$dir"); done < <(find Sources/CKernels Sources/CThreadPool -type d | sort)
    while IFS= read -r c; do
        clang -O2 -c "${includes[@]}" "$c" -o "$bench_objs/$(echo "${c#Sources/}" | tr / _ | sed 's/\.c$//').o"
    done < <(find Sources/CKernels Sources/CThreadPool -name '*.c' | sort)
    for b in int_gemm_bench block_gemm_bench sgemm_bench amx_ceiling; do
        clang -O2 -pthread "${includes[@]}" "Tools/bench/$b.c" "$bench_objs"/*.o \
            -lopenblas -lm -o "$out/$b"
    done
    bash Tools/bench/amx_ab.sh HEAD --build-only
    echo "C benchmarks: built in $out"
fi
# The flags of Tools/test.sh's build, so that after it this finds everything built.
swift build -c release -Xswiftc -enable-testing --product dloral-bench
echo "dloral-bench: built"
