#!/usr/bin/env python3
"""The Python path for a DLoRAL merge, as a user of diffusers + peft would write it.

    python3 Tools/bench/merge_python.py --base BASE_FOLDER --lora model.pkl --output OUT [--stage full]

torch.load the checkpoint, build the diffusers UNet from the base folder with DLoRAL's 8-channel
conv_in, attach the six peft adapters (ranks and module lists from the checkpoint), load the
trained state dict, fuse the stage's adapters (peft's merge), unload, and save unet/ and vae/ with
save_pretrained and cfr/ with safetensors. No hashing (our tool also hashes every input).
"""
import argparse
import os

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from peft import LoraConfig
from safetensors.torch import save_file

STAGES = {
    "full": [f"default_{p}_{k}" for k in ("quality", "consistency") for p in ("encoder", "decoder", "others")],
    "consistency": [f"default_{p}_consistency" for p in ("encoder", "decoder", "others")],
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--lora", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--stage", default="full", choices=sorted(STAGES))
    a = ap.parse_args()
    torch.set_grad_enabled(False)
    ckpt = torch.load(a.lora, map_location="cpu", weights_only=True)
    unet = UNet2DConditionModel.from_pretrained(a.base, subfolder="unet")
    c0 = unet.conv_in.out_channels
    unet.conv_in = torch.nn.Conv2d(8, c0, kernel_size=3, padding=1)
    for kind in ("quality", "consistency"):
        rank = ckpt[f"lora_rank_unet_{kind}"]
        for part in ("encoder", "decoder", "others"):
            modules = ckpt[f"unet_lora_{part}_modules_{kind}"]
            unet.add_adapter(LoraConfig(r=rank, init_lora_weights="gaussian", target_modules=list(modules)),
                             adapter_name=f"default_{part}_{kind}")
    missing, unexpected = unet.load_state_dict(ckpt["state_dict_unet"], strict=False)
    assert not unexpected, unexpected[:5]
    unet.fuse_lora(lora_scale=1.0, adapter_names=STAGES[a.stage])
    unet.unload_lora()
    unet.register_to_config(in_channels=8)
    unet.save_pretrained(os.path.join(a.output, "unet"))
    AutoencoderKL.from_pretrained(a.base, subfolder="vae").save_pretrained(os.path.join(a.output, "vae"))
    cfr = {k: v.contiguous() for k, v in ckpt["state_dict_bpp"].items()
           if k.startswith("spynet.") or k.startswith("cross_attn_module.")}
    os.makedirs(os.path.join(a.output, "cfr"), exist_ok=True)
    save_file(cfr, os.path.join(a.output, "cfr", "model.safetensors"))


if __name__ == "__main__":
    main()
