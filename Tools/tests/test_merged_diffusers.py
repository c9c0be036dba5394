#!/usr/bin/env python3
"""diffusers loads a folder written by `dloral-convert merge` as it is, and the merged UNet
reproduces the generator's reference UNet output (Tests/Fixtures/README.md) within 1e-4.

    python3 Tools/tests/test_merged_diffusers.py --bin .build/release/dloral-convert [--fixtures Tests/Fixtures/tiny]

Needs torch + diffusers (Tools/fixtures/requirements.txt); CI runs the cheaper numpy check
(Tools/interop/check_merged.py) instead. For each stage: merge model.pkl into the base folder,
UNet2DConditionModel.from_pretrained(out/unet) and AutoencoderKL.from_pretrained(out/vae),
run the UNet on output.unet_input at timestep 1 with input.prompt_embeds, compare with
output.unet_output; check the VAE decodes output.x0 to output.frames.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import load_file


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--fixtures", default="Tests/Fixtures/tiny")
    a = ap.parse_args()
    torch.set_grad_enabled(False)
    failures = 0
    checks = 0
    for stage in ("full", "consistency"):
        ref = load_file(os.path.join(a.fixtures, f"reference_{stage}.safetensors"))
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "merged")
            subprocess.run([a.bin, "merge", "--base", os.path.join(a.fixtures, "base"),
                            "--lora", os.path.join(a.fixtures, "model.pkl"), "--output", out, "--stage", stage],
                           check=True)
            unet = UNet2DConditionModel.from_pretrained(os.path.join(out, "unet")).eval()
            vae = AutoencoderKL.from_pretrained(os.path.join(out, "vae")).eval()
            x = ref["output.unet_input"]
            emb = ref["input.prompt_embeds"].expand(x.shape[0], -1, -1)
            got = unet(x, torch.ones(x.shape[0], dtype=torch.long), encoder_hidden_states=emb).sample
            err = float((got - ref["output.unet_output"]).abs().max())
            checks += 1
            ok = err <= 1e-4
            failures += 0 if ok else 1
            print(f"{stage}: unet_output max abs {err:.3g} {'ok' if ok else 'FAILED (> 1e-4)'}")
            frames = vae.decode(ref["output.x0"] / vae.config.scaling_factor).sample.clamp(-1, 1)
            err = float((frames - ref["output.frames"]).abs().max())
            checks += 1
            ok = err <= 1e-4
            failures += 0 if ok else 1
            print(f"{stage}: frames from x0 max abs {err:.3g} {'ok' if ok else 'FAILED (> 1e-4)'}")
    print(f"{checks - failures} passed, {failures} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
