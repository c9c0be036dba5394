#!/usr/bin/env python3
"""Checks the reference maker's parts against upstream DLoRAL's own code (Tools/reference/README.md).

    python Tools/reference/check_upstream.py --upstream /path/to/DLoRAL   # a checkout of yjsunnn/DLoRAL

Imports from the checkout (nothing of it is copied here):
- src/my_utils/vaehook.py: VAEHook (default, non-fast mode) against vae_tiling.tiled_forward, on the
  encoder and the decoder, tiled and untiled;
- src/my_utils/wavelet_color_fix.py: adain_color_fix and wavelet_color_fix against frames.color_fix;
- src/DLoRAL_model.py: Generator_eval._gaussian_weights against latent_tiling.gaussian_weights, and
  Generator_eval.forward itself (latent tiling, Gaussian blending, VAEHook installed by its own
  _init_tiled_vae) against make_reference.py's Restorer on one frame pair; the tile offsets upstream
  visits against latent_tiling.tile_grid.

What cannot run on a CPU-only machine is stubbed, and only that:
- src.cross_frame_retrieval.cfr_main (imports mmcv's compiled CUDA ops): replaced by an empty
  module; in the forward check, Generator_eval's cfr_main_net is Tools/fixtures/dloral_cfr.py's
  CFR behind upstream's call signature (the CFR itself is checked by the fixture tests);
- src.my_utils.devices.device is set to the CPU (upstream: "cuda");
- Tensor.cuda() is the identity while Generator_eval.forward runs;
- the VAE posterior's sample() returns its mean while Generator_eval.forward runs (our documented
  deviation; otherwise the two sides would draw different noise);
- Generator_eval's text encoder: encode_prompt returns the prompt embeddings given;
- VAEHook hard-codes 32 GroupNorm groups (SD's VAE); the tiny VAE has 4, so for it the group count
  passed to vaehook's get_var_mean / custom_group_norm is replaced by the model's. A second VAE
  with 32 groups runs VAEHook unpatched.

Needs torchvision and einops (upstream imports them): pip install -r Tools/fixtures/requirements.txt.
Exit status 0 when everything agrees, 1 on a disagreement, 2 on bad input.
"""
import argparse
import contextlib
import copy
import io
import os
import sys
import types

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True

TINY = os.path.join(REPO, "Tests", "Fixtures", "tiny")
FAILURES = []


def report(name, ok, detail):
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}", flush=True)
    if not ok:
        FAILURES.append(name)


@contextlib.contextmanager
def quiet():
    """VAEHook and Generator_eval print progress (and tqdm bars) on every call."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def import_upstream(root):
    if not os.path.isfile(os.path.join(root, "src", "my_utils", "vaehook.py")):
        print(f"check_upstream.py: error: {root}: no src/my_utils/vaehook.py; --upstream takes a checkout of "
              f"yjsunnn/DLoRAL (git clone https://github.com/yjsunnn/DLoRAL)", file=sys.stderr)
        sys.exit(2)
    for mod in ("torchvision", "einops"):
        try:
            __import__(mod)
        except ImportError:
            print(f"check_upstream.py: error: upstream's code imports {mod}, which is not installed; "
                  f"pip install -r Tools/fixtures/requirements.txt", file=sys.stderr)
            sys.exit(2)
    import torch
    sys.path.insert(0, os.path.abspath(root))
    cfr_stub = types.ModuleType("src.cross_frame_retrieval.cfr_main")
    cfr_stub.CFR_model = None
    sys.modules["src.cross_frame_retrieval.cfr_main"] = cfr_stub
    import src.my_utils.devices as devices
    devices.device = torch.device("cpu")
    import src.my_utils.vaehook as vaehook
    import src.my_utils.wavelet_color_fix as colorfix
    import src.DLoRAL_model as model
    return vaehook, colorfix, model


@contextlib.contextmanager
def vaehook_groups(vaehook, groups):
    """Run VAEHook's GroupNorm aggregation with `groups` groups instead of its hard-coded 32."""
    gvm, cgn = vaehook.get_var_mean, vaehook.custom_group_norm
    vaehook.get_var_mean = lambda x, num_groups, eps=1e-6: gvm(x, groups, eps)
    vaehook.custom_group_norm = lambda x, num_groups, *a, **k: cgn(x, groups, *a, **k)
    try:
        yield
    finally:
        vaehook.get_var_mean, vaehook.custom_group_norm = gvm, cgn


def close(a, b, rel=1e-4):
    """max |a-b| against the tolerance rel·max|b| (float32 sums in a different order)."""
    err = float((a - b).abs().max())
    scale = float(b.abs().max())
    return err <= rel * max(scale, 1.0), f"max abs diff {err:.3g} (max |upstream| {scale:.3g})"


def hooked(vaehook, net, tile, is_decoder):
    """net with upstream's VAEHook on its forward, as Generator_eval._init_tiled_vae installs it."""
    net = copy.deepcopy(net)
    net.original_forward = net.forward
    net.forward = vaehook.VAEHook(net, tile, is_decoder=is_decoder, fast_decoder=False, fast_encoder=False,
                                  color_fix=False, to_gpu=False)
    return net


def check_vae(vaehook, vae, label, groups):
    import torch
    from vae_tiling import tiled_forward
    g = torch.Generator().manual_seed(5)
    cases = [  # (is_decoder, tile, [N,C,H,W])
        (False, 64, [2, 3, 136, 208]), (False, 48, [1, 3, 120, 200]), (False, 96, [1, 3, 64, 96]),
        (True, 16, [2, 4, 40, 56]), (True, 24, [1, 4, 30, 70]), (True, 64, [1, 4, 12, 20]),
        # the committed references' settings (Tools/fixtures/make_run_references.sh)
        (False, 8, [2, 3, 80, 80]), (True, 2, [1, 4, 4, 25]),
    ]
    for is_decoder, tile, shape in cases:
        net = vae.decoder if is_decoder else vae.encoder
        x = torch.rand(*shape, generator=g) * 2 - 1
        if is_decoder:
            x = x * 3
        pad = 11 if is_decoder else 32
        ctx = vaehook_groups(vaehook, groups) if groups != 32 else contextlib.nullcontext()
        with torch.no_grad(), ctx, quiet():
            up = hooked(vaehook, net, tile, is_decoder)(x)
        with torch.no_grad():
            ours = tiled_forward(net, x, tile, is_decoder)
        tiled = max(shape[2:]) > tile + 2 * pad
        ok, detail = close(ours, up)
        report(f"VAEHook {label} {'decoder' if is_decoder else 'encoder'} tile {tile} on {shape} "
               f"({'tiled' if tiled else 'untiled'})", ok and ours.shape == up.shape, detail)


def check_gaussian(model):
    import numpy as np
    from latent_tiling import gaussian_weights
    fake = types.SimpleNamespace(device="cpu", unet=types.SimpleNamespace(config=types.SimpleNamespace(in_channels=4)))
    for w, h in [(96, 96), (64, 64), (7, 7), (10, 6), (5, 12), (1, 1)]:
        up = model.Generator_eval._gaussian_weights(fake, w, h, 1)[0, 0].numpy()
        ours = np.asarray(gaussian_weights(w, h), dtype=np.float64)
        ok = ours.shape == up.shape and np.allclose(ours, up, rtol=1e-14, atol=0)
        err = float(np.abs(ours - up).max() / np.abs(up).max()) if ours.shape == up.shape else float("nan")
        report(f"_gaussian_weights({w}, {h})", ok, f"max rel diff {err:.3g}")


def check_color_fix(colorfix):
    import numpy as np
    import torch
    from PIL import Image
    from frames import color_fix
    g = torch.Generator().manual_seed(9)
    for w, h in [(96, 64), (37, 23), (130, 70)]:
        # smooth-ish target and a differently lit source, as a restored frame and its input
        t = (torch.rand(h, w, 3, generator=g) * 0.5 + torch.linspace(0, 0.5, w).view(1, w, 1)) * 255
        s = (torch.rand(h, w, 3, generator=g) * 0.3 + 0.2 + torch.linspace(0, 0.4, h).view(h, 1, 1)) * 255
        target = Image.fromarray(t.clamp(0, 255).byte().numpy())
        source = Image.fromarray(s.clamp(0, 255).byte().numpy())
        for mode, fn in (("adain", colorfix.adain_color_fix), ("wavelet", colorfix.wavelet_color_fix)):
            up = np.asarray(fn(target=target, source=source), dtype=np.int16)
            ours = np.asarray(color_fix(mode, target, source), dtype=np.int16)
            same = ours.shape == up.shape
            diff = np.abs(ours - up) if same else None
            report(f"{mode}_color_fix on {w}x{h}", same and int(diff.max()) == 0,
                   "identical" if same and int(diff.max()) == 0 else
                   (f"{int((diff > 0).sum())} of {diff.size} values differ, max {int(diff.max())}" if same
                    else f"shape {ours.shape} vs {up.shape}"))


class CFRBehindUpstreamSignature:
    """Generator_eval calls cfr_main_net(lqs [n,t,3,H,W], vae_feat [n,t,4,h,w], uncertainty_map,
    external_flows) and uses out[:, 1] (fused current) and aligned[:, 1] (aligned previous).
    Records the latent tiles it is given, to recover upstream's tile offsets."""

    def __init__(self, cfr):
        self.cfr, self.tiles = cfr, []

    def __call__(self, lqs, vae_feat, uncertainty_map, external_flows=None):
        frames, lat = lqs[0], vae_feat[0]
        self.tiles.append(lat.clone())
        flow = self.cfr.flows_forward(self.cfr.downsample_lq(frames))
        aligned, fused = self.cfr.forward_pair(lat[0:1], lat[1:2], flow)
        out, al = vae_feat.clone(), vae_feat.clone()
        out[:, 1] = fused
        al[:, 1] = aligned
        return out, None, al


def find_offset(full, tile):
    """Where `tile` sits in `full` (last two axes): the position of the smallest max abs
    difference (our latents are within float noise of upstream's, not bit-identical)."""
    th, tw = tile.shape[-2:]
    best, where = None, None
    for y in range(full.shape[-2] - th + 1):
        for x in range(full.shape[-1] - tw + 1):
            d = float((full[..., y:y + th, x:x + tw] - tile).abs().max())
            if best is None or d < best:
                best, where = d, (y, x)
    return where if best is not None and best < 1e-3 else None


def check_forward(model, vaehook):
    """Generator_eval.forward (upstream) against make_reference.Restorer.pair on one frame pair."""
    import torch
    from diffusers.models.autoencoders import vae as vae_module
    import make_reference as mr
    from dloral_step import synthetic_frames, synthetic_prompt_embeds
    from latent_tiling import tile_grid

    args = mr.get_args(["--sd", os.path.join(TINY, "base"), "--dloral", os.path.join(TINY, "model.pkl"),
                        "--input", "-", "--out", "-"])
    with quiet():
        unet, vae, cfr = mr.load_models(args)
    pe = synthetic_prompt_embeds(unet.config.cross_attention_dim, 3)
    groups = vae.config.norm_num_groups
    cases = [  # (H, W, latent tile, overlap, encoder tile, decoder tile)
        (64, 96, 96, 32, 1024, 224),       # untiled
        (88, 136, 6, 2, 1024, 224),        # latent 11x17: 4x3 tiles, the last column and row off the step grid
        (96, 128, 8, 3, 1024, 224),
        (120, 200, 8, 2, 40, 224),         # plus encoder VAEHook tiling
        (256, 320, 16, 4, 1024, 8),        # plus decoder VAEHook tiling (latent 32x40 > 8 + 22)
    ]
    for H, W, tile, overlap, etile, dtile in cases:
        frames = synthetic_frames(2, H, W, 11)
        name = f"Generator_eval.forward {W}x{H}, latent tile {tile}/{overlap}, VAE tiles {etile}/{dtile}"
        fake = types.SimpleNamespace(
            args=types.SimpleNamespace(latent_tiled_size=tile, latent_tiled_overlap=overlap),
            vae=copy.deepcopy(vae), unet=unet, cfr_main_net=CFRBehindUpstreamSignature(cfr),
            timesteps=torch.tensor([1], dtype=torch.long), device="cpu",
            encode_prompt=lambda prompts: pe)
        fake._gaussian_weights = types.MethodType(model.Generator_eval._gaussian_weights, fake)
        with quiet():
            model.Generator_eval._init_tiled_vae(fake, encoder_tile_size=etile, decoder_tile_size=dtile)
        sample, tcuda = vae_module.DiagonalGaussianDistribution.sample, torch.Tensor.cuda
        vae_module.DiagonalGaussianDistribution.sample = lambda self, generator=None: self.mean.contiguous()
        torch.Tensor.cuda = lambda self, *a, **k: self
        try:
            with torch.no_grad(), vaehook_groups(vaehook, groups), quiet():
                unmap = torch.zeros(1, 1, 1, H // 8, W // 8)
                up_frames, up_x0 = model.Generator_eval.forward(fake, 1, frames.unsqueeze(0), unmap, prompt="",
                                                                weight_dtype=torch.float32)[:2]
        finally:
            vae_module.DiagonalGaussianDistribution.sample, torch.Tensor.cuda = sample, tcuda
            unet.set_adapter(list(mr.ADAPTERS))
        step = mr.Restorer(unet, vae, cfr, pe, types.SimpleNamespace(
            latent_tile=tile, latent_overlap=overlap, vae_encoder_tile=etile, vae_decoder_tile=dtile))
        with torch.no_grad():
            lat = torch.cat([step.encode(frames[i:i + 1]) for i in range(2)])
            res, x0, out = step.pair(frames, lat)
        ok1, d1 = close(x0, up_x0)
        ok2, d2 = close(out, up_frames)
        report(name + ": x0", ok1, d1)
        report(name + ": frames", ok2, d2)
        # the tile offsets upstream visited, found from the latent tiles its CFR was given
        h, w = H // 8, W // 8
        t, offsets, tiled = tile_grid(h, w, tile, overlap)
        if tiled:
            lat_up = lat.unsqueeze(0)
            seen = [find_offset(lat_up, x.unsqueeze(0)) for x in fake.cfr_main_net.tiles]
            ok = [tuple(o) for o in seen] == [tuple(o) for o in offsets]
            report(f"latent tile grid h={h} w={w} tile {tile} overlap {overlap}", ok,
                   f"{len(offsets)} tiles of {t}" if ok else f"upstream {seen}, ours {list(offsets)}")
        else:
            report(f"latent tile grid h={h} w={w} tile {tile}", len(fake.cfr_main_net.tiles) == 1,
                   "untiled on both sides")


def build_vae32():
    """A small VAE with SD's 32 GroupNorm groups and 2 resnets per block (VAEHook hard-codes both)."""
    import torch
    from diffusers import AutoencoderKL
    torch.manual_seed(1)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=32,
                        block_out_channels=[32, 32, 64, 64], layers_per_block=2,
                        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4)
    return vae.eval().requires_grad_(False)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--upstream", required=True, help="a checkout of yjsunnn/DLoRAL (the folder holding src/)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    with quiet():
        vaehook, colorfix, model = import_upstream(args.upstream)
    from diffusers import AutoencoderKL
    tiny_vae = AutoencoderKL.from_pretrained(os.path.join(TINY, "base"), subfolder="vae").eval()
    check_gaussian(model)
    check_color_fix(colorfix)
    check_vae(vaehook, tiny_vae, "tiny VAE (4 groups, count patched)", tiny_vae.config.norm_num_groups)
    check_vae(vaehook, build_vae32(), "32-group VAE (unpatched)", 32)
    check_forward(model, vaehook)
    print(f"{'all checks agree' if not FAILURES else str(len(FAILURES)) + ' disagreement(s)'} with {args.upstream}")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
