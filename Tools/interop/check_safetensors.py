#!/usr/bin/env python3
"""Checks a safetensors file written by our Swift writer with the reference `safetensors` package.

Usage: check_safetensors.py FILE
The file must hold the tensors described in `expected()` below (the Swift test writes them from
the same closed forms). Prints one line per tensor and exits 1 on any mismatch.
"""
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file


def expected():
    # Closed forms shared with Tests/DLoRALFormatsTests/SafetensorsInteropTests.swift.
    f32 = (np.arange(2 * 3 * 5, dtype=np.float32).reshape(2, 3, 5) - 7.0) * np.float32(0.25)
    f16 = (np.arange(7, dtype=np.float32) * np.float32(0.5) - np.float32(1.0)).astype(np.float16)
    i64 = np.array([-(2**40), -1, 0, 1, 2**40], dtype=np.int64)
    i8 = np.array([-128, -1, 0, 1, 127], dtype=np.int8)
    u8 = np.arange(9, dtype=np.uint8).reshape(3, 3)
    scalar = np.array(3.5, dtype=np.float64)
    return {"a.f32": f32, "b.f16": f16, "c.i64": i64, "d.i8": i8, "e.u8": u8, "f.scalar": scalar}


def main():
    path = sys.argv[1]
    loaded = load_file(path)
    with safe_open(path, framework="numpy") as handle:
        metadata = handle.metadata()
    failures = 0
    want = expected()
    if sorted(loaded) != sorted(want):
        print(f"names differ: {sorted(loaded)} vs {sorted(want)}")
        failures += 1
    for name, value in want.items():
        got = loaded.get(name)
        ok = got is not None and got.dtype == value.dtype and got.shape == value.shape and np.array_equal(got, value)
        print(f"{name}: {'ok' if ok else 'MISMATCH'}")
        failures += 0 if ok else 1
    if metadata != {"format": "pt", "writer": "dloral"}:
        print(f"metadata differs: {metadata}")
        failures += 1
    print(f"{len(want) - failures} passed, {failures} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
