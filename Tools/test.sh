#!/usr/bin/env bash
# Set-up and the whole test suite, from a fresh clone: installs dependencies, builds, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
# Each step's wall time on stderr, so a slow CI run shows where its time went.
step_start=$SECONDS
step_done() { echo "test.sh: $1 took $((SECONDS - step_start)) s" >&2; step_start=$SECONDS; }
bash Tools/install-deps.sh
step_done "installing dependencies"
# One optimized build serves the tools and the tests: -enable-testing lets the tests reach
# internal API, and `swift test` with the same flags reuses every module built here instead of
# building the package a second time in debug. The end-to-end tests run the executables just built
# (DLORAL_BIN); a bare `swift test` uses the debug ones.
swift build -c release -Xswiftc -enable-testing
step_done "the release build"
DLORAL_BIN="$PWD/.build/release" swift test -c release -Xswiftc -enable-testing
step_done "the Swift tests"
# Every C kernel path bit for bit against the scalar one: natively (AVX2) and, cross-compiled,
# the arm64 NEON paths under qemu-user with and without dotprod (installs the cross tools).
bash Tests/KernelCheck/run.sh
step_done "the kernel harness"
# Package.swift declares what each target imports, and no more.
python3 Tools/tests/check_imports.py >/dev/null
# The independent .dlrt reader's own tests (numpy + zstandard; no pytest needed).
python3 Tools/dlrt/test_dlrt_reader.py
step_done "the import check and the .dlrt reader tests"
# A short fuzz campaign on each reader (libFuzzer + AddressSanitizer, its own scratch build
# folder; FUZZING.md): any crash, hang, leak or sanitizer report fails the run.
bash Tools/fuzz/run.sh 20
step_done "the fuzz build and campaign"
