#!/usr/bin/env bash
# Regenerates the protobuf-c code for Formats/onnx-subset.proto into the CONNX target.
#
# Needs protoc-c (Debian: protobuf-c-compiler). The output is committed, so building the package
# never needs protoc-c; run this only after editing the .proto, and commit the result.
#
#   Sources/CONNX/onnx-subset.pb-c.c          (includes the header below)
#   Sources/CONNX/include/onnx-subset.pb-c.h  (includes <protobuf-c/protobuf-c.h>)
set -euo pipefail
cd "$(dirname "$0")/.."

command -v protoc-c >/dev/null 2>&1 || {
    echo "protoc-c not found; install protobuf-c-compiler (Debian/Ubuntu) or protobuf-c (Homebrew)" >&2
    exit 2
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

protoc-c --proto_path=Formats --c_out="$work" Formats/onnx-subset.proto

# protoc-c names the header relative to --proto_path; SwiftPM wants public headers in include/.
sed -e 's|#include "onnx-subset.pb-c.h"|#include "include/onnx-subset.pb-c.h"|' \
    "$work/onnx-subset.pb-c.c" > Sources/CONNX/onnx-subset.pb-c.c
cp "$work/onnx-subset.pb-c.h" Sources/CONNX/include/onnx-subset.pb-c.h

grep -q '#include "include/onnx-subset.pb-c.h"' Sources/CONNX/onnx-subset.pb-c.c || {
    echo "regenerate-onnx-c.sh: unexpected protoc-c output (header include not found)" >&2
    exit 1
}
grep -q '#include <protobuf-c/protobuf-c.h>' Sources/CONNX/include/onnx-subset.pb-c.h || {
    echo "regenerate-onnx-c.sh: generated header does not include <protobuf-c/protobuf-c.h>" >&2
    exit 1
}
echo "regenerated Sources/CONNX/onnx-subset.pb-c.{c,h} with $(protoc-c --version | head -1)"
