#!/usr/bin/env python3
"""Full-size `dloral-convert quantize` beside the numpy baseline and `cp` of the fp32 input.

    python3 Tools/bench/bench_quantize.py --bin .build/release/dloral-convert \\
        --merged /work/fullsize/out --scratch /work/fullsize/qbench

(/work/fullsize/out is a full-size merged folder: `dloral-convert merge --base sd21/base
--lora sd21/model.pkl --output out`.) Runs, alternating, N times each, medians of wall time and
the child's peak RSS:
  ours        dloral-convert quantize --weights int8 (per channel; hashes every region, fsyncs)
  numpy       Tools/bench/quantize_numpy.py --sha256 (the same quantization and hashing in numpy)
  cp          cp of the fp32 input files (unet, vae, cfr safetensors)
Then once: file sizes of int8 / fp16 / int8+zstd against the fp32 bytes, and the in-process open
time (`inspect --timing`).
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import alternate, run  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--merged", required=True)
    ap.add_argument("--scratch", required=True)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    os.makedirs(a.scratch, exist_ok=True)
    here = os.path.dirname(os.path.abspath(__file__))
    inputs = [os.path.join(a.merged, p) for p in ("unet/diffusion_pytorch_model.safetensors",
                                                   "vae/diffusion_pytorch_model.safetensors", "cfr/model.safetensors")]
    fp32_bytes = sum(os.path.getsize(p) for p in inputs)
    dlrt = os.path.join(a.scratch, "int8.dlrt")
    npout = os.path.join(a.scratch, "numpy")
    cpout = os.path.join(a.scratch, "cp")

    def clean():
        for p in (dlrt, npout, cpout):
            shutil.rmtree(p, ignore_errors=True) if os.path.isdir(p) else (os.path.exists(p) and os.remove(p))
        subprocess.run(["sync"])

    jobs = {
        "ours": lambda: run([a.bin, "quantize", a.merged, "--weights", "int8", "--output", dlrt]),
        "numpy": lambda: run([sys.executable, os.path.join(here, "quantize_numpy.py"), a.merged, npout, "--sha256"]),
        "cp": lambda: run(f"mkdir -p {cpout} && cp -r {a.merged}/unet {a.merged}/vae {a.merged}/cfr {cpout}/", shell=True),
    }
    results, med = alternate(jobs, a.runs, before=clean)
    print(f"full-size quantize --weights int8 (per channel) of {fp32_bytes / 1e9:.2f} GB fp32, median of {a.runs}, {os.cpu_count()} cores:")
    for name in jobs:
        w, m = med[name]
        print(f"  {name:6s} {w:7.2f} s  {fp32_bytes / w / 1e9:6.2f} GB/s of input  {m:7.0f} MiB peak RSS   ({', '.join(f'{x:.2f}' for x, _ in results[name])})")
    print(f"  numpy / ours: {med['numpy'][0] / med['ours'][0]:.1f}x   ours / cp: {med['ours'][0] / med['cp'][0]:.2f}x")

    sizes = {}
    for name, extra in (("int8", ["--weights", "int8"]), ("fp16", ["--weights", "fp16"]),
                        ("int8+zstd", ["--weights", "int8", "--compress", "zstd"]), ("fp16+zstd", ["--weights", "fp16", "--compress", "zstd"])):
        out = os.path.join(a.scratch, f"size-{name}.dlrt")
        wall, rss, _ = run([a.bin, "quantize", a.merged, "--output", out] + extra)
        sizes[name] = os.path.getsize(out)
        print(f"  {name:10s} {sizes[name]:>14,d} bytes = {sizes[name] / fp32_bytes:.3f} x fp32   ({wall:.2f} s, {rss:.0f} MiB)")
        if name == "int8":
            opens = []
            for _ in range(7):
                _, _, err = run([a.bin, "inspect", out, "--timing", "--json"])
                opens.append(float(re.search(r"in ([0-9.]+) ms", err).group(1)))
            print(f"  open + map + header and metadata check (in process, median of 7): {statistics.median(opens):.2f} ms")
        os.remove(out)
    clean()


if __name__ == "__main__":
    main()
