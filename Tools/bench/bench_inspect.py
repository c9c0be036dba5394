#!/usr/bin/env python3
"""Times `dloral-convert inspect` on full-size checkpoints beside a Python baseline.

    python3 Tools/bench/bench_inspect.py --bin .build/release/dloral-convert \
        --pkl /work/fullsize/model.pkl --safetensors /work/fullsize/base/unet/diffusion_pytorch_model.safetensors

For each file it runs, alternating, N times each:
  ours      dloral-convert inspect FILE --json > /dev/null
  baseline  the cheapest Python way to list the same tensors: safetensors.safe_open (keys,
            shapes) for .safetensors; torch.load(mmap=True, weights_only=True) for model.pkl
and prints medians of wall time and peak RSS (ru_maxrss of the child), and the ratio.
The page cache is warm for both (one untimed run of each first).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import alternate, run  # noqa: E402

BASELINE_SAFETENSORS = r"""
import sys
from safetensors import safe_open
with safe_open(sys.argv[1], framework="numpy") as f:
    n = sum(1 for k in f.keys() if f.get_slice(k).get_shape() is not None)
print(n)
"""

BASELINE_PKL = r"""
import sys, torch
sd = torch.load(sys.argv[1], mmap=True, weights_only=True, map_location="cpu")
def count(x):
    if isinstance(x, torch.Tensor): return 1
    if isinstance(x, dict): return sum(count(v) for v in x.values())
    if isinstance(x, (list, tuple)): return sum(count(v) for v in x)
    return 0
print(count(sd))
"""


def bench(label, ours, baseline, runs):
    _, med = alternate({"ours": lambda: run(ours), "baseline": lambda: run(baseline)}, runs)
    size = os.path.getsize(ours[2]) / 2**30
    print(f"{label} ({size:.2f} GiB), median of {runs}:")
    print(f"  dloral-convert inspect --json : {med['ours'][0]*1000:8.1f} ms  {med['ours'][1]:7.1f} MiB peak RSS")
    print(f"  Python baseline               : {med['baseline'][0]*1000:8.1f} ms  {med['baseline'][1]:7.1f} MiB peak RSS")
    print(f"  ratio (baseline / ours)       : {med['baseline'][0]/med['ours'][0]:8.1f}x time, "
          f"{med['baseline'][1]/med['ours'][1]:.1f}x memory")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--pkl")
    ap.add_argument("--safetensors")
    ap.add_argument("--runs", type=int, default=7)
    a = ap.parse_args()
    py = sys.executable
    if a.safetensors:
        bench("safetensors UNet", [a.bin, "inspect", a.safetensors, "--json"],
              [py, "-c", BASELINE_SAFETENSORS, a.safetensors], a.runs)
    if a.pkl:
        bench("DLoRAL model.pkl", [a.bin, "inspect", a.pkl, "--json"],
              [py, "-c", BASELINE_PKL, a.pkl], a.runs)


if __name__ == "__main__":
    main()
