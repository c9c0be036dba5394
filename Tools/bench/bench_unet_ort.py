#!/usr/bin/env python3
"""The SD 2.1-size DLoRAL UNet alone: ONNX Runtime (fp32, and its dynamic int8 quantization)
against our engine (`dloral-bench unet`) on each given .dlrt, side by side, at 32x32 and 64x64
latents, on the same threads.

    swift build -c release --product dloral-bench
    python3 Tools/bench/bench_unet_ort.py --merged /work/fullsize/out --onnx-dir /work/fullsize/onnx \
        --bench .build/release/dloral-bench --dlrt /work/fullsize/sd21-fp32.dlrt \
        --dlrt /work/fullsize/sd21-aint8.dlrt --dlrt /work/fullsize/sd21-aint16.dlrt --runs 5

The UNet is the merged one (`dloral-convert merge` output, in_channels 8), exported once per latent
size with the fixture generator's exporter (Tools/fixtures/onnx_export.py: legacy TorchScript
exporter, opset 17, constant folding, external data) into --onnx-dir, and, unless --no-int8,
quantized with onnxruntime.quantization.quantize_dynamic (int8 weights, dynamic uint8
activations: ONNX Runtime's own int8 path). Each timed UNet call is one run on a fixed random
input with timestep 1; every job gets an untimed warm-up, then the jobs alternate --runs times.
ONNX Runtime: intra_op_num_threads = --threads, graph optimizations all. Ours: both cores (our
kernels' threads). Medians.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))


def export(merged, onnx_dir, latent):
    """unet.onnx for one latent size (reused when present)."""
    import torch
    from diffusers import UNet2DConditionModel
    import onnx_export as ox
    out = os.path.join(onnx_dir, f"latent{latent}")
    path = os.path.join(out, "unet.onnx")
    if os.path.exists(path):
        return path
    unet = UNet2DConditionModel.from_pretrained(os.path.join(merged, "unet")).eval()
    with torch.no_grad():
        path, _ = ox.export_unet(unet, out, (latent, latent), unet.config.cross_attention_dim)
    return path


def quantized(path):
    from onnxruntime.quantization import QuantType, quantize_dynamic
    q = path.replace("unet.onnx", "unet.int8.onnx")
    if not os.path.exists(q):
        quantize_dynamic(path, q, weight_type=QuantType.QInt8, use_external_data_format=True)
    return q


def ort_job(path, latent, cross, threads):
    import numpy as np
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(7)
    feeds = {"sample": rng.standard_normal((1, 8, latent, latent), dtype=np.float32),
             "timestep": np.array([1], dtype=np.int64),
             "encoder_hidden_states": rng.standard_normal((1, 77, cross), dtype=np.float32)}

    def run():
        t0 = time.perf_counter()
        sess.run(None, feeds)
        return time.perf_counter() - t0
    return run


def ours_job(bench, dlrt, latent):
    # One process per run: it loads the file, warms up once, then times one UNet call.
    def run():
        out = subprocess.run([bench, "unet", dlrt, "--latent", str(latent), "--runs", "1", "--json"],
                             check=True, capture_output=True, text=True).stdout
        return float(json.loads(out)["median_s"])
    return run


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--merged", required=True)
    ap.add_argument("--onnx-dir", required=True)
    ap.add_argument("--bench", required=True, help="dloral-bench binary")
    ap.add_argument("--dlrt", action="append", default=[])
    ap.add_argument("--latents", default="32,64")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-int8", action="store_true")
    args = ap.parse_args()
    with open(os.path.join(args.merged, "unet", "config.json")) as f:
        cross = json.load(f)["cross_attention_dim"]

    for latent in [int(x) for x in args.latents.split(",")]:
        path = export(args.merged, args.onnx_dir, latent)
        jobs = {"onnxruntime fp32": ort_job(path, latent, cross, args.threads)}
        if not args.no_int8:
            jobs["onnxruntime dynamic int8"] = ort_job(quantized(path), latent, cross, args.threads)
        for d in args.dlrt:
            jobs["ours " + os.path.basename(d)] = ours_job(args.bench, d, latent)
        for job in jobs.values():
            job()  # warm-up
        times = {name: [] for name in jobs}
        for i in range(args.runs):
            for name, job in jobs.items():
                times[name].append(job())
            print(f"[latent {latent}, round {i + 1}/{args.runs}] " +
                  ", ".join(f"{n} {t[-1]:.3f} s" for n, t in times.items()), flush=True)
        base = statistics.median(times["onnxruntime fp32"])
        print(f"\nUNet at {latent}x{latent} latent, {args.threads} threads, median of {args.runs}:")
        print("| run | median | runs | onnxruntime fp32 / this |")
        print("|---|---|---|---|")
        for name, t in times.items():
            m = statistics.median(t)
            print(f"| {name} | {m:.3f} s | {', '.join(f'{x:.3f}' for x in t)} | {base / m:.2f}x |")
        print()


if __name__ == "__main__":
    main()
