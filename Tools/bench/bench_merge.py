#!/usr/bin/env python3
"""Full-size `dloral-convert merge` beside the Python path and beside `cp` of the same bytes.

    python3 Tools/fixtures/generate.py --full-size --out /work/fullsize/sd21      # once, ~1 min
    python3 Tools/bench/bench_merge.py --bin .build/release/dloral-convert \\
        --base /work/fullsize/sd21/base --lora /work/fullsize/sd21/model.pkl --scratch /work/fullsize/bench

Runs, alternating, N times each (medians of wall time and of the child's peak RSS):
  ours       dloral-convert merge (hashes every input, fsyncs the output, renames into place)
  python     Tools/bench/merge_python.py (torch.load, diffusers + peft fuse, save_pretrained)
  cp         cp of the bytes the merge writes (model.pkl + the base VAE), no sync
  cp+sync    the same followed by sync (we fsync; cp alone does not)
  sha256     SHA-256 of every input the merge reads (openssl, SHA-NI), two files at a time:
             the floor our provenance record puts under the merge
"""
import argparse
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import alternate, run  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--base", required=True)
    ap.add_argument("--lora", required=True)
    ap.add_argument("--scratch", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--skip-python", action="store_true")
    a = ap.parse_args()
    os.makedirs(a.scratch, exist_ok=True)
    out = os.path.join(a.scratch, "out")
    vae = os.path.join(a.base, "vae", "diffusion_pytorch_model.safetensors")
    here = os.path.dirname(os.path.abspath(__file__))

    def clean():
        shutil.rmtree(out, ignore_errors=True)
        subprocess.run(["sync"])

    jobs = {
        "ours": lambda: run([a.bin, "merge", "--base", a.base, "--lora", a.lora, "--output", out]),
        "cp": lambda: run(f"mkdir -p {out} && cp {a.lora} {vae} {out}/", shell=True),
        "cp+sync": lambda: run(f"mkdir -p {out} && cp {a.lora} {vae} {out}/ && sync", shell=True),
    }
    inputs = [a.lora, os.path.join(a.base, "unet", "diffusion_pytorch_model.safetensors"), vae]
    jobs["sha256"] = lambda: run(f"openssl dgst -sha256 {inputs[0]} > /dev/null & openssl dgst -sha256 {' '.join(inputs[1:])} > /dev/null; wait", shell=True)
    if not a.skip_python:
        jobs["python"] = lambda: run([sys.executable, os.path.join(here, "merge_python.py"), "--base", a.base,
                                      "--lora", a.lora, "--output", out])
    results, med = alternate(jobs, a.runs, before=clean)
    clean()
    print(f"full-size DLoRAL merge (stage full), median of {a.runs}, {os.cpu_count()} cores:")
    for name in jobs:
        w, m = med[name]
        print(f"  {name:8s} {w:7.2f} s  {m:8.0f} MiB peak RSS   ({', '.join(f'{x:.2f}' for x, _ in results[name])})")
    o = med["ours"][0]
    if "python" in med:
        print(f"  python / ours: {med['python'][0] / o:.1f}x wall, {med['python'][1] / med['ours'][1]:.1f}x memory")
    print(f"  ours / cp: {o / med['cp'][0]:.2f}x   ours / (cp+sync): {o / med['cp+sync'][0]:.2f}x")


if __name__ == "__main__":
    main()
