#!/usr/bin/env bash
# The main job on the bundled tiny DLoRAL model, from a fresh clone: installs dependencies,
# builds the release binaries and runs them on Tests/Fixtures/tiny.
set -euo pipefail
cd "$(dirname "$0")/.."
bash Tools/install-deps.sh
swift build -c release
bin=$(swift build -c release --show-bin-path)
fixtures=Tests/Fixtures/tiny
echo "== DLoRAL checkpoint (model.pkl: base weights, six LoRA adapters, CFR)" >&2
"$bin/dloral-convert" inspect "$fixtures/model.pkl"
echo "== base model, diffusers folder" >&2
"$bin/dloral-convert" inspect "$fixtures/base"
echo "== the same base as an LDM single file" >&2
"$bin/dloral-convert" inspect "$fixtures/base.ldm.safetensors"
echo "== the base UNet as ONNX with external data" >&2
"$bin/dloral-convert" inspect "$fixtures/onnx/unet.onnx"
out=$(mktemp -d)/dloral-merged
echo "== merge the six adapters (stage full) into the base: $out" >&2
"$bin/dloral-convert" merge --base "$fixtures/base" --lora "$fixtures/model.pkl" --output "$out"
"$bin/dloral-convert" inspect "$out"
echo "== quantize to int8 (per output channel) into one runtime file" >&2
"$bin/dloral-convert" quantize "$out" --weights int8 --output "$out.dlrt"
"$bin/dloral-convert" inspect "$out.dlrt" --verify-all
echo "== run the int8 file on the reference frames and check every stage against PyTorch" >&2
"$bin/dloral-verify" "$out.dlrt" --reference "$fixtures/reference_full.safetensors"
echo "== int8 with integer activations: calibrate int16/int8 per layer for 38 dB, then verify on the integer kernels" >&2
"$bin/dloral-convert" quantize "$out" --weights int8 --activations auto --target-psnr 38 \
    --calibration "$fixtures/reference_full.safetensors" --output "$out.auto.dlrt"
"$bin/dloral-verify" "$out.auto.dlrt" --reference "$fixtures/reference_full.safetensors"
