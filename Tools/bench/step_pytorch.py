#!/usr/bin/env python3
"""The DLoRAL one-step forward pass (docs/model.md) in PyTorch fp32, from a MERGED folder.

Loads what `dloral-convert merge` wrote (``unet/`` and ``vae/`` with diffusers'
``from_pretrained``, ``cfr/model.safetensors`` into Tools/fixtures/dloral_cfr.py's module), so it
runs the same fp32 weights that `dloral-convert quantize --weights fp32` packs into a .dlrt.

Two uses:

  * time the step (the default): torch.set_num_threads(--threads), torch.no_grad, one warm-up
    step then --runs timed steps; prints load time, the median step wall time and peak RSS
    (``--json`` prints one JSON object instead);
  * ``--write-reference PATH``: run the step once on synthetic photo-like frames and write a
    reference file (docs/reference-files.md; input.frames, input.prompt_embeds, output.latents,
    output.unet_input, output.unet_output, output.x0, output.frames; metadata stage=full).

The step: VAE encode every frame (posterior mean x scaling factor), CFR (bicubic x1/8 LQ frames,
SpyNet flow current->previous, warp, cross-frame attention), UNet at t=1 on [aligned_prev, fused],
x0 = fused - pred, VAE decode, clamp -- as Tools/fixtures/dloral_step.py's run_reference, but
with the adapters already merged into the UNet weights.

    python3 Tools/bench/step_pytorch.py --merged /work/fullsize/out --size 256 --runs 3
    python3 Tools/bench/step_pytorch.py --merged /work/fullsize/out --size 256 \
        --write-reference /work/fullsize/ref256.safetensors
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))

SEED = 20250615  # generate.py's default; frames use seed+5 and prompt embeddings seed+6, as there


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def load(merged):
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import load_file
    from dloral_cfr import CFRModel, INFERENCE_PREFIXES

    unet = UNet2DConditionModel.from_pretrained(os.path.join(merged, "unet"), torch_dtype=torch.float32).eval()
    vae = AutoencoderKL.from_pretrained(os.path.join(merged, "vae"), torch_dtype=torch.float32).eval()
    sd = load_file(os.path.join(merged, "cfr", "model.safetensors"))
    cfr = CFRModel(mid_channels=8)  # mid_channels only shapes modules that inference never runs
    missing, unexpected = cfr.load_state_dict(sd, strict=False)
    bad = [k for k in missing if k.startswith(INFERENCE_PREFIXES)]
    if bad or unexpected:
        sys.exit(f"CFR weights do not fit: missing {bad[:5]}, unexpected {unexpected[:5]}")
    cfr.eval()
    for m in (unet, vae, cfr):
        m.requires_grad_(False)
    return unet, vae, cfr


def step(unet, vae, cfr, frames, prompt_embeds):
    """One DLoRAL step over the pairs (0,1), (1,2), ...; returns the reference's output tensors."""
    import torch
    sf = vae.config.scaling_factor
    T = frames.shape[0]
    latents = vae.encode(frames).latent_dist.mean * sf          # [T,4,h,w]
    lq = cfr.downsample_lq(frames)                              # [T,3,H/8,W/8]
    flows = cfr.flows_forward(lq)                               # [T-1,2,h,w], current -> previous
    ts = torch.tensor([1], dtype=torch.long)
    unet_in, unet_out, x0s, outs = [], [], [], []
    for t in range(1, T):
        aligned_prev, fused = cfr.forward_pair(latents[t - 1:t], latents[t:t + 1], flows[t - 1:t])
        x_in = torch.cat([aligned_prev, fused], dim=1)          # [1,8,h,w]
        pred = unet(x_in, ts, encoder_hidden_states=prompt_embeds).sample
        x0 = x_in[:, 4:8] - pred
        img = vae.decode(x0 / sf).sample.clamp(-1, 1)
        unet_in.append(x_in)
        unet_out.append(pred)
        x0s.append(x0)
        outs.append(img)
    return {
        "output.latents": latents.contiguous(),
        "output.unet_input": torch.cat(unet_in).contiguous(),
        "output.unet_output": torch.cat(unet_out).contiguous(),
        "output.x0": torch.cat(x0s).contiguous(),
        "output.frames": torch.cat(outs).contiguous(),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--merged", required=True, help="merged folder (unet/, vae/, cfr/)")
    ap.add_argument("--size", type=int, default=256, help="frame height and width (default 256)")
    ap.add_argument("--frames", type=int, default=2, help="number of frames T (default 2)")
    ap.add_argument("--reference", help="take input.frames / input.prompt_embeds from this reference file "
                                        "instead of making synthetic ones")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3, help="timed steps after the warm-up (default 3)")
    ap.add_argument("--no-warmup", action="store_true")
    ap.add_argument("--write-reference", metavar="PATH", help="write a reference file (layout: docs/reference-files.md) and exit")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--isa", choices=["default", "avx2"], default="default",
                    help="avx2: keep PyTorch's kernels (ATen, oneDNN, MKL) to AVX2, as on a CPU without "
                         "AVX-512 (the design's target machines); default: whatever this CPU has")
    args = ap.parse_args()
    if args.isa == "avx2":
        # Read when torch loads, so they must be set before the import.
        os.environ.update(ATEN_CPU_CAPABILITY="avx2", ONEDNN_MAX_CPU_ISA="AVX2", MKL_ENABLE_INSTRUCTIONS="AVX2")

    t_start = time.perf_counter()
    import torch
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    from dloral_step import synthetic_frames, synthetic_prompt_embeds
    t_import = time.perf_counter() - t_start

    t0 = time.perf_counter()
    unet, vae, cfr = load(args.merged)
    t_load = time.perf_counter() - t0

    if args.reference:
        from safetensors.torch import load_file
        ref = load_file(args.reference)
        frames, pe = ref["input.frames"], ref["input.prompt_embeds"]
    else:
        frames = synthetic_frames(args.frames, args.size, args.size, SEED + 5)
        pe = synthetic_prompt_embeds(unet.config.cross_attention_dim, SEED + 6)

    with torch.no_grad():
        if args.write_reference:
            t0 = time.perf_counter()
            out = step(unet, vae, cfr, frames, pe)
            t_step = time.perf_counter() - t0
            from safetensors.torch import save_file
            import diffusers
            tensors = {"input.frames": frames.contiguous(), "input.prompt_embeds": pe.contiguous()}
            tensors.update(out)
            meta = {"stage": "full", "generator": "Tools/bench/step_pytorch.py --write-reference",
                    "model": os.path.abspath(args.merged) + " (merged fp32: diffusers from_pretrained unet/ vae/, "
                             "dloral_cfr.CFRModel from cfr/model.safetensors)",
                    "versions": json.dumps({"torch": torch.__version__, "diffusers": diffusers.__version__},
                                           sort_keys=True),
                    "latent": "VAE posterior mean * scaling_factor (not sampled)", "timestep": "1",
                    "frames": "x".join(str(d) for d in frames.shape), "seed": str(SEED)}
            save_file(tensors, args.write_reference, metadata=meta)
            stats = {k: {"std": float(v.std()), "absmax": float(v.abs().max())} for k, v in out.items()}
            stats["frames_clamped_fraction"] = float((out["output.frames"].abs() >= 1.0).float().mean())
            print(json.dumps({"wrote": args.write_reference, "step_s": round(t_step, 3), "load_s": round(t_load, 3),
                              "stats": stats}, indent=1))
            return

        warm = None
        if not args.no_warmup:
            t0 = time.perf_counter()
            step(unet, vae, cfr, frames, pe)
            warm = time.perf_counter() - t0
        times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            step(unet, vae, cfr, frames, pe)
            times.append(time.perf_counter() - t0)

    res = {"frames": list(frames.shape), "threads": args.threads, "import_s": round(t_import, 3),
           "load_s": round(t_load, 3), "warmup_s": None if warm is None else round(warm, 3),
           "step_s": [round(t, 3) for t in times], "step_median_s": round(statistics.median(times), 3),
           "peak_rss_mib": round(peak_rss_mib(), 1), "torch": torch.__version__,
           "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    if args.json:
        print(json.dumps(res))
    else:
        print(f"frames {res['frames']}, {args.threads} threads, ATen {res['cpu_capability']}; import {t_import:.2f} s, load {t_load:.2f} s"
              + ("" if warm is None else f", warm-up {warm:.2f} s"))
        print(f"step median of {len(times)}: {res['step_median_s']:.3f} s  ({', '.join(f'{t:.3f}' for t in times)})")
        print(f"peak RSS {res['peak_rss_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
