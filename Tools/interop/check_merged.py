#!/usr/bin/env python3
"""Checks a merged folder written by `dloral-convert merge` against peft's own merge, with the
reference `safetensors` package and numpy only (no torch).

Usage: check_merged.py OURS_FOLDER EXPECTED_FOLDER
Both folders hold unet/diffusion_pytorch_model.safetensors; every tensor must have the same name,
shape and dtype, and values within 1e-6 × the tensor's max |value|. The UNet config must say
in_channels = conv_in's input channels. Exits 1 on any mismatch.
"""
import json
import os
import sys

import numpy as np
from safetensors.numpy import load_file


def main():
    ours_dir, expected_dir = sys.argv[1], sys.argv[2]
    ours = load_file(os.path.join(ours_dir, "unet", "diffusion_pytorch_model.safetensors"))
    expected = load_file(os.path.join(expected_dir, "unet", "diffusion_pytorch_model.safetensors"))
    failures = []
    if set(ours) != set(expected):
        failures.append(f"names differ: only ours {sorted(set(ours) - set(expected))[:5]}, only expected {sorted(set(expected) - set(ours))[:5]}")
    for name in sorted(set(ours) & set(expected)):
        a, b = ours[name], expected[name]
        if a.shape != b.shape or a.dtype != b.dtype:
            failures.append(f"{name}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}")
            continue
        scale = float(np.abs(b).max()) if b.size else 0.0
        diff = float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max()) if b.size else 0.0
        if diff > 1e-6 * scale:
            failures.append(f"{name}: max |diff| {diff:.3g} > 1e-6 x {scale:.3g}")
    with open(os.path.join(ours_dir, "unet", "config.json")) as f:
        config = json.load(f)
    if config.get("in_channels") != ours["conv_in.weight"].shape[1]:
        failures.append(f"config in_channels {config.get('in_channels')} != conv_in {ours['conv_in.weight'].shape}")
    for failure in failures[:20]:
        print(failure)
    checked = len(set(ours) & set(expected))
    print(f"{checked - len(failures)} passed, {len(failures)} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
