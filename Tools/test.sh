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
bash Tests/KernelCheck/run.sh
# Package.swift declares what each target imports, and no more.
python3 Tools/tests/check_imports.py >/dev/null
# The independent .dlrt reader's own tests (numpy + zstandard; no pytest needed).
python3 Tools/dlrt/test_dlrt_reader.py
# A short fuzz campaign on each reader (libFuzzer + AddressSanitizer, its own scratch build
# folder; FUZZING.md): any crash, hang, leak or sanitizer report fails the run.
bash Tools/fuzz/run.sh 20
