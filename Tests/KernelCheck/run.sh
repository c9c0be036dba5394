#!/usr/bin/env bash
# Bit-exactness of every CKernels path against the scalar reference, and the level choice
# (Tests/KernelCheck/kernel_check.c, plain C built straight from every .c file under
# Sources/CKernels, no Swift):
#
#   native   the host compiler on this machine (on x86-64: each level the CPU has — avx2,
#            avxvnni, avx512, amx — against scalar; on an arm64 host
#            the NEON paths run natively and the emulated runs below are skipped)
#   arm64    cross-compiled with aarch64-linux-gnu-gcc for baseline ARMv8-A (the SDOT kernel is
#            compiled per function for dotprod and picked at run time) and run under qemu-user
#            twice: -cpu max (has dotprod: the SDOT and the SMULL int8 kernels both run) and
#            -cpu cortex-a57 (ARMv8.0, no dotprod: the automatic choice must take the SMULL
#            kernel; an SDOT there is SIGILL)
#   arm64    built with -march=armv8.2-a+dotprod (dotprod known at compile time, as on Apple
#            silicon) on -cpu max
#   arm64    built with clang, the compiler SwiftPM uses, when it can target aarch64 here
#
# Emulation says nothing about speed; it checks bits only. Installs gcc-aarch64-linux-gnu,
# libc6-dev-arm64-cross and qemu-user with apt-get when they are missing (sudo unless root).
# Takes well under a minute on 2 cores. Exits non-zero if any check fails.
set -euo pipefail
cd "$(dirname "$0")/../.."

HARNESS=Tests/KernelCheck/kernel_check.c
mapfile -t SOURCES < <(find Sources/CKernels Sources/CThreadPool -name "*.c" | LC_ALL=C sort)
INCLUDES=(-I Sources/CKernels/include -I Sources/CKernels -I Sources/CThreadPool/include)
QEMU_LD_PREFIX=/usr/aarch64-linux-gnu
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kernel-check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# GCC ignores `#pragma STDC FP_CONTRACT OFF` (the kernel sources set it) and would fuse a*b + c into an
# FMA across statements; -ffp-contract=off gives the unfused arithmetic that clang builds with
# those pragmas. clang honours the pragmas, so it gets SwiftPM's default flags.
contract_flag() {
    if "$1" --version 2>/dev/null | grep -qi clang; then echo ""; else echo "-ffp-contract=off"; fi
}

total_passed=0
total_failed=0
runs_failed=0

# run LABEL COMMAND…: runs one kernel_check binary, prints its output, adds up its closing line.
run() {
    local label=$1
    shift
    echo "== $label"
    local start ms rc=0
    start=$(date +%s%N)
    "$@" >"$WORK/out.txt" 2>&1 || rc=$?
    ms=$((($(date +%s%N) - start) / 1000000))
    cat "$WORK/out.txt"
    local line p f
    line=$(grep -E '^kernel_check: [0-9]+ passed, [0-9]+ failed$' "$WORK/out.txt" | tail -1 || true)
    if [[ -n $line ]]; then
        p=$(sed -E 's/^kernel_check: ([0-9]+) passed.*/\1/' <<<"$line")
        f=$(sed -E 's/.* ([0-9]+) failed$/\1/' <<<"$line")
        total_passed=$((total_passed + p))
        total_failed=$((total_failed + f))
    fi
    if [[ $rc -ne 0 || -z $line ]]; then
        echo "== $label: FAILED (exit $rc)"
        runs_failed=$((runs_failed + 1))
        [[ -n $line ]] || total_failed=$((total_failed + 1))
    else
        printf '== %s: ok in %d.%d s\n' "$label" $((ms / 1000)) $((ms % 1000 / 100))
    fi
}

build() {  # build OUTPUT COMPILER FLAGS…
    local out=$1 cc=$2
    shift 2
    # shellcheck disable=SC2046
    "$cc" -O2 $(contract_flag "$cc") "$@" -pthread "${INCLUDES[@]}" "$HARNESS" "${SOURCES[@]}" -lm -o "$out"
}

need_tools() {
    command -v aarch64-linux-gnu-gcc >/dev/null && command -v qemu-aarch64 >/dev/null &&
        [[ -e $QEMU_LD_PREFIX/lib/ld-linux-aarch64.so.1 ]]
}

install_tools() {
    if ! command -v apt-get >/dev/null; then
        return 1
    fi
    local sudo=""
    [[ $(id -u) -eq 0 ]] || sudo=sudo
    echo "== installing the arm64 cross compiler and qemu-user (apt-get)"
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user >/dev/null
}

# MARK: native

HOST_CC=${CC:-}
if [[ -z $HOST_CC ]]; then
    if command -v clang >/dev/null; then HOST_CC=clang; else HOST_CC=cc; fi
fi
build "$WORK/kernel_check_native" "$HOST_CC"
case $(uname -m) in
x86_64)
    # Every x86-64 level against scalar; a level this CPU lacks reports itself skipped.
    for level in avx2 avxvnni avx512 amx; do
        run "native $(uname -m) $level, $HOST_CC" "$WORK/kernel_check_native" "$level"
    done
    ;;
*) run "native $(uname -m), $HOST_CC" "$WORK/kernel_check_native" ;;
esac

# MARK: arm64 under qemu-user

case $(uname -m) in
aarch64 | arm64)
    echo "== arm64 host: the native run above checked the NEON paths; no emulation needed"
    ;;
*)
    if ! need_tools; then
        install_tools || {
            echo "Tests/KernelCheck/run.sh: no apt-get to install gcc-aarch64-linux-gnu and qemu-user: the arm64 runs are not done" >&2
            exit 1
        }
    fi
    QEMU=(qemu-aarch64 -L "$QEMU_LD_PREFIX")
    build "$WORK/kernel_check_arm64" aarch64-linux-gnu-gcc -march=armv8-a
    run "arm64 gcc -march=armv8-a, qemu -cpu max (dotprod)" "${QEMU[@]}" -cpu max "$WORK/kernel_check_arm64"
    run "arm64 gcc -march=armv8-a, qemu -cpu cortex-a57 (no dotprod)" "${QEMU[@]}" -cpu cortex-a57 "$WORK/kernel_check_arm64"
    build "$WORK/kernel_check_arm64_dot" aarch64-linux-gnu-gcc -march=armv8.2-a+dotprod
    run "arm64 gcc -march=armv8.2-a+dotprod, qemu -cpu max" "${QEMU[@]}" -cpu max "$WORK/kernel_check_arm64_dot"
    if command -v clang >/dev/null && build "$WORK/kernel_check_arm64_clang" clang --target=aarch64-linux-gnu 2>/dev/null; then
        run "arm64 clang, qemu -cpu max (dotprod)" "${QEMU[@]}" -cpu max "$WORK/kernel_check_arm64_clang"
        run "arm64 clang, qemu -cpu cortex-a57 (no dotprod)" "${QEMU[@]}" -cpu cortex-a57 "$WORK/kernel_check_arm64_clang"
    else
        echo "== arm64 clang: skipped (no clang that can target aarch64-linux-gnu here)"
    fi
    ;;
esac

echo "== kernel paths: $runs_failed run(s) failed"
echo "kernel_check: $total_passed passed, $total_failed failed"
[[ $runs_failed -eq 0 && $total_failed -eq 0 ]]
