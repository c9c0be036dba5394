#!/usr/bin/env bash
# Set-up and the whole test suite, from a fresh clone: installs dependencies, builds, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash Tools/install-deps.sh
swift build -c release
# The end-to-end tests run the release executables just built (DLORAL_BIN); a bare `swift test`
# uses the debug ones.
DLORAL_BIN="$PWD/.build/release" swift test
# Every C kernel path bit for bit against the scalar one: natively (AVX2) and, cross-compiled,
# the arm64 NEON paths under qemu-user with and without dotprod (installs the cross tools).
bash Tools/neon/run.sh
# The independent .dlrt reader's own tests (numpy + zstandard; no pytest needed).
python3 Tools/dlrt/test_dlrt_reader.py
