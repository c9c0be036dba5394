#!/usr/bin/env python3
"""Reference maker for real DLoRAL checkpoints (README: Tools/reference/README.md).

    python Tools/reference/make_reference.py --sd SD21_BASE_FOLDER --dloral model.pkl \\
        --input FRAMES_FOLDER_OR_VIDEO --prompt-embeds prompt.safetensors --out ref.safetensors

Runs upstream DLoRAL's inference (yjsunnn/DLoRAL: src/test_DLoRAL.py, Generator_eval.forward in
src/DLoRAL_model.py, VAEHook in src/my_utils/vaehook.py, src/my_utils/wavelet_color_fix.py) in
PyTorch float32 on the CPU and writes the reference-file contract of Tests/Fixtures/README.md
(References for real clips) with the colour-fixed final frames.

Model: the UNet and VAE come from the SD folder with diffusers; the UNet gets the 8-channel
conv_in and the six peft adapters of model.pkl, added as Generator_eval.load_ckpt_from_state_dict
adds them, then every UNet parameter is copied from model.pkl's state_dict_unet. All six adapters
are active (upstream's --stages 1) and NOT merged. The CFR (state_dict_bpp) runs through
Tools/fixtures/dloral_cfr.py. model.pkl is read with torch.load(weights_only=True): no pickled
code runs.

Deviations from upstream, on purpose:
- latents are the VAE posterior MEAN (upstream samples: latent_dist.sample()), so that the
  reference is deterministic;
- float32 throughout (upstream's default is fp16 on CUDA);
- prompt embeddings come from a file (or from --prompt with the SD folder's text encoder); upstream
  captions every clip with the RAM/DAPE tagger;
- each frame is encoded once (upstream encodes every frame in both of its pairs; the VAE, tiled
  or not, treats frames independently, so the latents are the same);
- video frames are decoded by ffmpeg to rgb24 (upstream: OpenCV, PNG, Pillow).
"""
import argparse
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # keep Tools/ free of __pycache__

PROG = "make_reference.py"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
ADAPTER_PARTS = ("encoder", "decoder", "others")
ADAPTER_KINDS = ("quality", "consistency")
# The order Generator_eval.load_ckpt_from_state_dict adds them in.
ADAPTERS = [f"default_{part}_{kind}" for kind in ADAPTER_KINDS for part in ADAPTER_PARTS]
FFMPEG_DECODE = ["-map", "0:v:0", "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]


class InputError(Exception):
    """Bad input or options: reported as one line, exit status 2."""


def fail(msg):
    raise InputError(msg)


# ------------------------------------------------------------------------------------------------
# options

def parse_frames(spec):
    """--frames N (the first N frames) or START:END (restore frames START..END-1; the input then
    also holds frame START-1, the previous frame of START). Returns (first input index, end or None)."""
    if spec is None:
        return 0, None
    m = re.fullmatch(r"\s*(\d+)\s*", spec)
    if m:
        n = int(m.group(1))
        if n < 2:
            fail(f"--frames {spec}: a reference needs at least 2 frames (frame 0 has no output); pass --frames 2 or more")
        return 0, n
    m = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", spec)
    if not m:
        fail(f"--frames {spec!r}: expected N or START:END (e.g. --frames 6 or --frames 10:20)")
    start, end = int(m.group(1)), int(m.group(2))
    if end <= max(start, 1):
        fail(f"--frames {spec}: END must be greater than START and than 1 (frame 0 has no output); "
             f"e.g. --frames {start}:{max(start, 1) + 1}")
    return max(start - 1, 0), end


def get_args(argv=None):
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sd", required=True, help="SD 2.1-base diffusers folder (unet/, vae/)")
    ap.add_argument("--dloral", required=True, help="DLoRAL checkpoint model.pkl")
    ap.add_argument("--input", required=True, help="folder of PNG/JPEG frames (sorted by name) or a video file (ffmpeg)")
    ap.add_argument("--out", required=True, help="reference file to write (.safetensors), atomically")
    ap.add_argument("--frames", default=None,
                    help="N: the first N frames; START:END: restore frames START..END-1 (the input also holds "
                         "frame START-1, their previous frame). Default: the whole clip")
    ap.add_argument("--prompt-embeds", default=None,
                    help="safetensors with one [1,77,C] float tensor (or one named prompt_embeds / input.prompt_embeds)")
    ap.add_argument("--prompt", default=None,
                    help="a text prompt, encoded with the SD folder's text_encoder/ and tokenizer/ (if it has them)")
    ap.add_argument("--latent-tile", type=int, default=96)
    ap.add_argument("--latent-overlap", type=int, default=32)
    ap.add_argument("--vae-encoder-tile", type=int, default=1024)
    ap.add_argument("--vae-decoder-tile", type=int, default=224)
    ap.add_argument("--color-fix", choices=["adain", "wavelet", "none"], default="adain")
    ap.add_argument("--upscale", type=int, default=4)
    ap.add_argument("--process-size", type=int, default=512)
    ap.add_argument("--final-frames-dir", default=None,
                    help="also save the final frames as PNG here (named as upstream names them)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = ap.parse_args(argv)
    for name in ("latent_tile", "vae_encoder_tile", "vae_decoder_tile", "upscale", "process_size", "threads"):
        if getattr(args, name) < 1:
            fail(f"--{name.replace('_', '-')} {getattr(args, name)}: must be at least 1")
    if args.latent_overlap < 0 or args.latent_overlap >= args.latent_tile:
        fail(f"--latent-overlap {args.latent_overlap}: must be at least 0 and less than --latent-tile {args.latent_tile}")
    if args.prompt_embeds is not None and args.prompt is not None:
        fail("pass either --prompt-embeds or --prompt, not both")
    args.first_input, args.end = parse_frames(args.frames)
    return args


# ------------------------------------------------------------------------------------------------
# frames

def folder_frames(folder):
    names = sorted(n for n in os.listdir(folder)
                   if n.lower().endswith(IMAGE_EXTENSIONS) and not n.startswith("."))
    if not names:
        fail(f"{folder}: no PNG or JPEG frames in this folder (expected files ending in "
             f"{', '.join(IMAGE_EXTENSIONS)}); pass a folder of frames or a video file")
    return names


def iter_folder(folder, names, first, end):
    from PIL import Image
    for i in range(first, len(names) if end is None else min(end, len(names))):
        path = os.path.join(folder, names[i])
        try:
            with Image.open(path) as im:
                img = im.convert("RGB")
        except Exception as e:  # Pillow raises several types for broken files
            fail(f"{path}: cannot read this image ({e}); frames must be PNG or JPEG")
        yield i, names[i], img


def video_size(path):
    if shutil.which("ffprobe") is None or shutil.which("ffmpeg") is None:
        fail(f"{path}: reading a video needs ffmpeg and ffprobe, which are not installed "
             f"(Debian/Ubuntu: apt-get install ffmpeg); or pass a folder of PNG/JPEG frames")
    r = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                        "stream=width,height", "-of", "json", path], capture_output=True, text=True)
    try:
        stream = json.loads(r.stdout)["streams"][0]
        return int(stream["width"]), int(stream["height"])
    except (ValueError, KeyError, IndexError):
        fail(f"{path}: not a video ffprobe can read ({r.stderr.strip() or 'no video stream'}); "
             f"pass a video file or a folder of PNG/JPEG frames")


def iter_video(path, first, end):
    """Frames of the first video stream, decoded by ffmpeg to rgb24, one at a time."""
    from PIL import Image
    w, h = video_size(path)
    size = w * h * 3
    proc = subprocess.Popen(["ffmpeg", "-nostdin", "-v", "error", "-i", path] + FFMPEG_DECODE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    i = 0
    try:
        while end is None or i < end:
            buf = proc.stdout.read(size)
            if not buf:
                break
            if len(buf) != size:
                fail(f"{path}: ffmpeg stopped inside frame {i} ({len(buf)} of {size} bytes)")
            if i >= first:
                yield i, f"frame_{i:04d}.png", Image.frombytes("RGB", (w, h), buf)
            i += 1
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        err = proc.stderr.read().decode("utf-8", "replace").strip()
        proc.stderr.close()
        rc = proc.wait()
    if rc != 0 and (end is None or i < end):
        fail(f"{path}: ffmpeg failed (exit {rc}): {err or 'no message'}")


# ------------------------------------------------------------------------------------------------
# model

def load_checkpoint(path):
    import torch
    if not os.path.isfile(path):
        fail(f"{path}: no such file; --dloral takes DLoRAL's model.pkl")
    import pickle
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError:
        fail(f"{path}: its pickle holds objects other than tensors and plain containers; refused, because "
             f"unpickling them could run code. DLoRAL's model.pkl holds only tensors, lists, ints and dicts")
    except Exception as e:
        fail(f"{path}: not a DLoRAL checkpoint torch.load can read with weights_only=True ({str(e).splitlines()[0]}); "
             f"pass DLoRAL's model.pkl")
    if not isinstance(sd, dict):
        fail(f"{path}: holds a {type(sd).__name__}, expected DLoRAL's checkpoint dict")
    need = ["state_dict_unet", "state_dict_bpp", "lora_rank_unet_quality", "lora_rank_unet_consistency"]
    need += [f"unet_lora_{part}_modules_{kind}" for kind in ADAPTER_KINDS for part in ADAPTER_PARTS]
    missing = [k for k in need if k not in sd]
    if missing:
        fail(f"{path}: missing {', '.join(missing)}; expected a DLoRAL checkpoint (Tests/Fixtures/README.md, DLoRAL model)")
    return sd


def load_models(args):
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from peft import LoraConfig
    from dloral_cfr import CFRModel, INFERENCE_PREFIXES

    for sub in ("unet", "vae"):
        if not os.path.isfile(os.path.join(args.sd, sub, "config.json")):
            fail(f"{args.sd}: no {sub}/config.json; --sd takes a diffusers folder of SD 2.1-base (unet/, vae/)")
    try:
        unet = UNet2DConditionModel.from_pretrained(args.sd, subfolder="unet", local_files_only=True)
        vae = AutoencoderKL.from_pretrained(args.sd, subfolder="vae", local_files_only=True)
    except (OSError, ValueError, RuntimeError) as e:
        fail(f"{args.sd}: diffusers cannot load its unet/ or vae/ ({str(e).splitlines()[0]})")
    unet.eval().requires_grad_(False)
    vae.eval().requires_grad_(False)

    sd = load_checkpoint(args.dloral)
    sdu = sd["state_dict_unet"]
    # Generator_eval: conv_in becomes an 8-channel conv whose halves both start as the base's.
    c0 = unet.conv_in.out_channels
    w8 = sdu.get("conv_in.base_layer.weight")
    if w8 is None or tuple(w8.shape) != (c0, 8, 3, 3):
        fail(f"{args.dloral}: state_dict_unet conv_in.base_layer.weight is "
             f"{'missing' if w8 is None else list(w8.shape)}, expected [{c0}, 8, 3, 3] for the UNet in {args.sd}; "
             f"are --sd and --dloral the same base model?")
    conv_in = torch.nn.Conv2d(8, c0, kernel_size=3, padding=1)
    with torch.no_grad():
        conv_in.weight[:, 0:4] = unet.conv_in.weight
        conv_in.weight[:, 4:8] = unet.conv_in.weight
    unet.conv_in = conv_in
    for kind in ADAPTER_KINDS:
        for part in ADAPTER_PARTS:
            unet.add_adapter(LoraConfig(r=sd[f"lora_rank_unet_{kind}"], init_lora_weights="gaussian",
                                        target_modules=sd[f"unet_lora_{part}_modules_{kind}"]),
                             adapter_name=f"default_{part}_{kind}")
    # Upstream's `if "lora" or "conv_in" in n` is always true: every parameter comes from the checkpoint.
    with torch.no_grad():
        for n, p in unet.named_parameters():
            src = sdu.get(n)
            if src is None or src.shape != p.shape:
                fail(f"{args.dloral}: state_dict_unet {n} is {'missing' if src is None else list(src.shape)}, "
                     f"expected {list(p.shape)}; are --sd and --dloral the same base model?")
            p.copy_(src)
    unet.set_adapter(list(ADAPTERS))
    unet.requires_grad_(False)

    bpp = sd["state_dict_bpp"]
    cfr = CFRModel(mid_channels=16)  # the modules mid_channels shapes never run at inference
    with torch.no_grad():
        for n, p in cfr.named_parameters():
            if not n.startswith(INFERENCE_PREFIXES):
                continue
            src = bpp.get(n)
            if src is None or src.shape != p.shape:
                fail(f"{args.dloral}: state_dict_bpp {n} is {'missing' if src is None else list(src.shape)}, "
                     f"expected {list(p.shape)} (DLoRAL's CFR_model)")
            p.copy_(src)
    cfr.eval().requires_grad_(False)
    del sd, sdu, bpp
    return unet, vae, cfr


def load_prompt_embeds(args):
    cross = unet_cross_dim(args)
    if args.prompt is not None:
        return encode_prompt(args, cross), f"text: {args.prompt}"
    if args.prompt_embeds is None:
        has_text = all(os.path.isdir(os.path.join(args.sd, d)) for d in ("text_encoder", "tokenizer"))
        fail("no prompt embeddings: pass --prompt-embeds F.safetensors holding one [1,77,"
             f"{cross}] float tensor (the text encoder's last hidden state for your prompt, as DLoRAL "
             "feeds its UNet)" + (" or --prompt TEXT to encode one with the SD folder's text encoder"
                                  if has_text else f"; {args.sd} has no text_encoder/ and tokenizer/ for --prompt"))
    from safetensors import safe_open
    path = args.prompt_embeds
    try:
        with safe_open(path, framework="pt") as f:
            keys = list(f.keys())
            name = next((k for k in ("prompt_embeds", "input.prompt_embeds") if k in keys),
                        keys[0] if len(keys) == 1 else None)
            if name is None:
                fail(f"{path}: {len(keys)} tensors and none named prompt_embeds or input.prompt_embeds; "
                     f"pass a file with one [1,77,{cross}] tensor")
            pe = f.get_tensor(name)
    except InputError:
        raise
    except Exception as e:
        fail(f"{path}: not a safetensors file ({str(e).splitlines()[0]}); --prompt-embeds takes a .safetensors file")
    if tuple(pe.shape) != (1, 77, cross) or not pe.is_floating_point():
        fail(f"{path}: tensor {name} is {pe.dtype} {list(pe.shape)}, expected float [1, 77, {cross}] "
             f"(the UNet's cross_attention_dim is {cross})")
    return pe.float().contiguous(), f"file {os.path.basename(path)}, tensor {name}"


def unet_cross_dim(args):
    path = os.path.join(args.sd, "unet", "config.json")
    try:
        with open(path) as f:
            return int(json.load(f)["cross_attention_dim"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        fail(f"{path}: cannot read cross_attention_dim ({e}); --sd takes a diffusers folder of SD 2.1-base (unet/, vae/)")


def encode_prompt(args, cross):
    """Generator_eval.encode_prompt: CLIP tokens padded to max_length, last hidden state."""
    import torch
    try:
        from transformers import CLIPTextModel, CLIPTokenizer
        tok = CLIPTokenizer.from_pretrained(args.sd, subfolder="tokenizer", local_files_only=True)
        enc = CLIPTextModel.from_pretrained(args.sd, subfolder="text_encoder", local_files_only=True).eval()
    except (OSError, ValueError) as e:
        fail(f"{args.sd}: --prompt needs text_encoder/ and tokenizer/ in the SD folder ({str(e).splitlines()[0]}); "
             f"pass --prompt-embeds instead")
    ids = tok(args.prompt, max_length=tok.model_max_length, padding="max_length", truncation=True,
              return_tensors="pt").input_ids
    with torch.no_grad():
        pe = enc(ids)[0]
    if pe.shape[-1] != cross:
        fail(f"{args.sd}: the text encoder gives {pe.shape[-1]} channels, the UNet expects {cross}")
    return pe.float().contiguous()


# ------------------------------------------------------------------------------------------------
# the step

class Restorer:
    """Upstream's per-pair inference on float32 CPU tensors."""

    def __init__(self, unet, vae, cfr, prompt_embeds, args):
        import torch
        self.unet, self.vae, self.cfr, self.pe, self.args = unet, vae, cfr, prompt_embeds, args
        self.ts = torch.tensor([1], dtype=torch.long)
        self.sf = vae.config.scaling_factor

    def encode(self, frame):
        """[1,3,H,W] in [-1,1] → posterior mean × scaling factor, [1,4,H/8,W/8]; encoder VAEHook-tiled."""
        from vae_tiling import tiled_forward
        h = tiled_forward(self.vae.encoder, frame, self.args.vae_encoder_tile, False)
        if self.vae.quant_conv is not None:
            h = self.vae.quant_conv(h)
        return h[:, : h.shape[1] // 2] * self.sf

    def decode(self, x0):
        from vae_tiling import tiled_forward
        z = x0 / self.sf
        if self.vae.post_quant_conv is not None:
            z = self.vae.post_quant_conv(z)
        return tiled_forward(self.vae.decoder, z, self.args.vae_decoder_tile, True).clamp(-1, 1)

    def pair_fn(self, frames, latents):
        """The CFR then the UNet on one (tile of a) pair: frames [2,3,8h,8w], latents [2,4,h,w]."""
        import torch
        lq = self.cfr.downsample_lq(frames)
        flow = self.cfr.flows_forward(lq)                      # current → previous, [1,2,h,w]
        aligned, fused = self.cfr.forward_pair(latents[0:1], latents[1:2], flow)
        unet_input = torch.cat([aligned, fused], dim=1)
        pred = self.unet(unet_input, self.ts, encoder_hidden_states=self.pe).sample
        return unet_input, pred

    def pair(self, frames, latents):
        from latent_tiling import tiled_pair
        res = tiled_pair(frames, latents, self.pair_fn, self.args.latent_tile, self.args.latent_overlap)
        x0 = res["enc"] - res["pred"]
        return res, x0, self.decode(x0)


# ------------------------------------------------------------------------------------------------
# output

DTYPES = {"float32": "F32", "uint8": "U8"}


class SafetensorsWriter:
    """Writes tensors given as lists of equally shaped chunks (stacked along a new first axis)
    without ever concatenating them: the file needs no second copy of the clip in memory.
    Header keys sorted, no padding randomness: identical inputs give identical bytes."""

    def __init__(self):
        self.entries = {}

    def add(self, name, chunks, stacked=True):
        import numpy as np
        arrays = [np.ascontiguousarray(c.detach().numpy() if hasattr(c, "detach") else c) for c in chunks]
        dt = arrays[0].dtype
        shape = list(arrays[0].shape)
        assert all(a.dtype == dt and list(a.shape) == shape for a in arrays), name
        if stacked:
            shape = [len(arrays)] + shape
        else:
            assert len(arrays) == 1
        self.entries[name] = (DTYPES[str(dt)], shape, arrays)

    def write(self, path, metadata):
        header = {"__metadata__": dict(sorted(metadata.items()))}
        offset = 0
        for name in sorted(self.entries):
            dt, shape, arrays = self.entries[name]
            n = sum(a.nbytes for a in arrays)
            header[name] = {"dtype": dt, "shape": shape, "data_offsets": [offset, offset + n]}
            offset += n
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        text += b" " * (-len(text) % 8)
        folder = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(struct.pack("<Q", len(text)))
                f.write(text)
                for name in sorted(self.entries):
                    for a in self.entries[name][2]:
                        f.write(a.tobytes())
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


def save_png_atomic(img, folder, name):
    fd, tmp = tempfile.mkstemp(prefix="." + name + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            img.save(f, format="PNG")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, os.path.join(folder, name))
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def output_name(input_name):
    """Upstream names its outputs frame_NNNN.png (video frames); a folder's frames keep their names, as PNG."""
    return os.path.splitext(input_name)[0] + ".png"


def versions():
    import PIL
    import diffusers
    import numpy
    import peft
    import safetensors
    import torch
    return {"torch": torch.__version__, "diffusers": diffusers.__version__, "peft": peft.__version__,
            "safetensors": safetensors.__version__, "numpy": numpy.__version__, "Pillow": PIL.__version__}


# ------------------------------------------------------------------------------------------------

def run(args):
    import numpy as np
    import torch
    from frames import color_fix, finish_frame, output_image, prepare_frame, to_model_input

    # check the inputs before loading gigabytes
    if os.path.isdir(args.input):
        names = folder_frames(args.input)
        if args.end is not None and args.end > len(names):
            fail(f"{args.input}: --frames {args.frames} needs {args.end} frames, the folder has {len(names)}")
        if len(names) - args.first_input < 2:
            fail(f"{args.input}: {len(names)} frame(s); a reference needs at least 2 (frame 0 has no output)")
        frame_iter = iter_folder(args.input, names, args.first_input, args.end)
        input_kind = "folder"
    elif os.path.isfile(args.input):
        video_size(args.input)
        frame_iter = iter_video(args.input, args.first_input, args.end)
        input_kind = "video"
    else:
        fail(f"{args.input}: no such file or folder; --input takes a folder of PNG/JPEG frames or a video file")
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if os.path.isdir(args.out):
        fail(f"{args.out}: is a folder; --out takes the reference file to write (.safetensors)")
    if not os.path.isdir(out_dir):
        fail(f"{args.out}: its folder {out_dir} does not exist; create it or choose another --out")
    if args.final_frames_dir is not None:
        if os.path.isdir(args.input) and os.path.realpath(args.final_frames_dir) == os.path.realpath(args.input):
            fail(f"{args.final_frames_dir}: is the input folder; --final-frames-dir must be another folder "
                 f"(the input frames are never overwritten)")
        if os.path.exists(args.final_frames_dir) and not os.path.isdir(args.final_frames_dir):
            fail(f"{args.final_frames_dir}: exists and is not a folder; --final-frames-dir takes a folder")
        os.makedirs(args.final_frames_dir, exist_ok=True)

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    t0 = time.time()
    with torch.no_grad():
        pe, pe_source = load_prompt_embeds(args)
        unet, vae, cfr = load_models(args)
        step = Restorer(unet, vae, cfr, pe, args)
        log(f"[{time.time() - t0:7.1f}s] models loaded")

        lq, frames, latents = [], [], []
        unet_inputs, unet_outputs, x0s, outs, finals = [], [], [], [], []
        frame_names, tiled_pairs = [], []
        prev = None      # (prepared image, model input, latent) of the previous frame
        first_size = prepared_size = None
        for index, name, img in frame_iter:
            if first_size is None:
                first_size = img.size
            elif img.size != first_size:
                fail(f"{os.path.join(args.input, name) if input_kind == 'folder' else args.input}: "
                     f"frame {index} is {img.size[0]}×{img.size[1]}, the clip's first frame is "
                     f"{first_size[0]}×{first_size[1]}; all frames of a clip must have one size")
            prepared, ori, enlarged = prepare_frame(img, upscale=args.upscale, process_size=args.process_size)
            if prepared_size is None:
                prepared_size = prepared.size
                if min(prepared.size) < 8:
                    fail(f"{args.input}: frames of {img.size[0]}×{img.size[1]} prepare to "
                         f"{prepared.size[0]}×{prepared.size[1]}, below the model's 8×8 (VAE and CFR factor 8)")
                check_tiling(args, prepared.size[1] // 8, prepared.size[0] // 8)
            x = to_model_input(prepared).unsqueeze(0)
            lat = step.encode(x)
            lq.append(np.asarray(img, dtype=np.uint8).copy())
            frames.append(x[0])
            latents.append(lat[0])
            frame_names.append(name)
            if prev is not None:
                res, x0, out = step.pair(torch.cat([prev[1], x]), torch.cat([prev[2], lat]))
                if not res["tiled"]:
                    unet_inputs.append(res["unet_input"][0])
                tiled_pairs.append(bool(res["tiled"]))
                unet_outputs.append(res["pred"][0])
                x0s.append(x0[0])
                outs.append(out[0])
                final = output_image(out[0])
                final = color_fix(args.color_fix, final, prepared)
                final = finish_frame(final, ori, enlarged, upscale=args.upscale)
                finals.append(np.asarray(final, dtype=np.uint8).copy())
                if args.final_frames_dir is not None:
                    save_png_atomic(final, args.final_frames_dir, output_name(name))
                log(f"[{time.time() - t0:7.1f}s] frame {index} ({name}) restored"
                    f"{' (latent tiled)' if res['tiled'] else ''}")
            prev = (prepared, x, lat)

        if args.end is not None and len(frame_names) < args.end - args.first_input:
            fail(f"{args.input}: --frames {args.frames} needs {args.end} frames, the clip has "
                 f"{args.first_input + len(frame_names)}")
        if len(frame_names) < 2:
            fail(f"{args.input}: {args.first_input + len(frame_names)} frame(s) from frame {args.first_input}; "
                 f"a reference needs at least 2 (frame 0 has no output)")
        if any(tiled_pairs) and not all(tiled_pairs):
            raise AssertionError("latent tiling differs between pairs of one clip")

    w = SafetensorsWriter()
    w.add("input.lq_frames", lq)
    w.add("input.frames", frames)
    w.add("input.prompt_embeds", [pe], stacked=False)
    w.add("output.latents", latents)
    if unet_inputs:
        w.add("output.unet_input", unet_inputs)
    w.add("output.unet_output", unet_outputs)
    w.add("output.x0", x0s)
    w.add("output.frames", outs)
    w.add("output.final_frames", finals)
    options = {"upscale": args.upscale, "process_size": args.process_size, "latent_tile": args.latent_tile,
               "latent_overlap": args.latent_overlap, "vae_encoder_tile": args.vae_encoder_tile,
               "vae_decoder_tile": args.vae_decoder_tile, "color_fix": args.color_fix,
               "frame_names": frame_names, "first_frame": args.first_input}
    T = len(frame_names)
    H, W = prepared_size[1], prepared_size[0]
    meta = {
        "dloral_run_options": json.dumps(options, sort_keys=True),
        "generator": "Tools/reference/make_reference.py",
        "stage": "full",
        "adapters": ",".join(ADAPTERS),
        "timestep": "1",
        "latent": "VAE posterior mean * scaling_factor (not sampled)",
        "frames": f"{T}x3x{H}x{W}",
        "latent_tiled": "true" if tiled_pairs[0] else "false",
        "input": input_kind + ("" if input_kind == "folder" else ": ffmpeg -nostdin -v error -i F " + " ".join(FFMPEG_DECODE)),
        "prompt_embeds": pe_source,
        "versions": json.dumps(versions(), sort_keys=True),
    }
    w.write(args.out, meta)
    log(f"[{time.time() - t0:7.1f}s] wrote {args.out}: {T} frames {first_size[0]}×{first_size[1]} → "
        f"{W}×{H}, {T - 1} output{'s' if T > 2 else ''}, latent {'tiled' if tiled_pairs[0] else 'untiled'}")


def check_tiling(args, h, w):
    """Refuses a latent tile grid upstream's loop could not build (before any work)."""
    from latent_tiling import tile_grid
    try:
        tile_grid(h, w, args.latent_tile, args.latent_overlap)
    except ValueError as e:
        fail(f"--latent-tile {args.latent_tile} --latent-overlap {args.latent_overlap} on a {h}x{w} latent: {e}; "
             f"use a smaller --latent-overlap")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def main(argv=None):
    try:
        args = get_args(argv)
        run(args)
    except InputError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
