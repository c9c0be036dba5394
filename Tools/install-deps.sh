#!/usr/bin/env bash
# Installs what building and testing need on a fresh Debian machine (run as root).
# Debian: the system libraries the package links (zstd, protobuf-c, libpng for verification
# reports and PNG frames, libjpeg-turbo for JPEG frames) and pkg-config (OpenBLAS, which only
# the benchmarks use, is installed by Tools/bench/build.sh). ffmpeg:
# `dloral-run` reads and writes video files through it (an optional subprocess; folders of
# frames need none), and the tests make and read an mp4.
# PyPI: numpy, safetensors and zstandard for the interoperability tests (no torch: the fixtures
# are committed).
set -euo pipefail
if command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq pkg-config libzstd-dev libprotobuf-c-dev libpng-dev libjpeg62-turbo-dev python3 python3-pip >/dev/null
    apt-get install -y -qq --no-install-recommends ffmpeg >/dev/null
fi
python3 -m pip install --quiet --disable-pip-version-check "numpy>=1.24" "safetensors>=0.4" "zstandard>=0.22" 2>/dev/null \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "numpy>=1.24" "safetensors>=0.4" "zstandard>=0.22"
