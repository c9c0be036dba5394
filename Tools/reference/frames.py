"""Upstream DLoRAL's frame preparation and colour fix (test_DLoRAL.py, wavelet_color_fix.py),
written for the reference maker: Pillow does the resizing, torch the colour-fix arithmetic.

Resizing is Pillow's, so results depend on its version: Pillow 13 runs the vertical pass first
when the height shrinks by more than twice as many pixels as the width (earlier versions always
ran the horizontal pass first), and the engine's PillowResample follows Pillow 13.

No torchvision: its to_tensor (uint8 / 255 in float32, CHW) and ToPILImage (x * 255 truncated
to uint8) are two lines each and written out here.
"""

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def prepare_frame(img, upscale=4, process_size=512):
    """Returns (prepared RGB image, (ori_w, ori_h), enlarged).

    Frames with a side below process_size // upscale are first enlarged (bicubic) so that their
    short side is that length; then every frame is enlarged upscale times (bicubic) and resized
    with Lanczos (not cropped) to the multiple of 8 below each side. Pillow's resize returns a
    copy when the size does not change, so the Lanczos step only acts when needed.
    """
    img = img.convert("RGB")
    ori_w, ori_h = img.size
    side = process_size // upscale
    enlarged = False
    if ori_w < side or ori_h < side:
        scale = side / min(ori_w, ori_h)
        img = img.resize((int(scale * ori_w), int(scale * ori_h)), Image.BICUBIC)
        enlarged = True
    img = img.resize((img.size[0] * upscale, img.size[1] * upscale), Image.BICUBIC)
    w, h = img.size
    img = img.resize((w - w % 8, h - h % 8), Image.LANCZOS)
    return img, (ori_w, ori_h), enlarged


def finish_frame(out, ori, enlarged, upscale=4):
    """Resizes an enlarged frame's result back to upscale x its original size (bicubic)."""
    if not enlarged:
        return out
    return out.resize((int(upscale * ori[0]), int(upscale * ori[1])), Image.BICUBIC)


def to_tensor(img):
    """torchvision's to_tensor of an 8-bit RGB image: float32 [3, H, W] in [0, 1]."""
    array = np.array(img.convert("RGB"), dtype=np.uint8, copy=True)
    return torch.from_numpy(array).permute(2, 0, 1).contiguous().to(torch.float32).div(255)


def to_image(tensor):
    """torchvision's ToPILImage of a float [3, H, W] tensor: (x * 255).byte(), i.e. truncation."""
    array = tensor.mul(255).byte().permute(1, 2, 0).contiguous().numpy()
    return Image.fromarray(array, "RGB")


def to_model_input(img):
    """to_tensor(img) * 2 - 1: float32 [3, H, W] in [-1, 1]."""
    return to_tensor(img) * 2 - 1


def output_image(frame):
    """The saved image of a decoded frame [3, H, W] in [-1, 1]: ToPILImage(frame * 0.5 + 0.5)."""
    return to_image(frame.detach().to(torch.float32).cpu() * 0.5 + 0.5)


def _mean_std(x, eps=1e-5):
    """Per-channel mean and sqrt(unbiased variance + eps) of [1, C, H, W]."""
    b, c = x.shape[:2]
    flat = x.reshape(b, c, -1)
    std = (flat.var(dim=2) + eps).sqrt().reshape(b, c, 1, 1)
    mean = flat.mean(dim=2).reshape(b, c, 1, 1)
    return mean, std


def adain(content, style):
    """Adaptive instance normalisation of content [1, C, H, W] to style's channel statistics."""
    style_mean, style_std = _mean_std(style)
    content_mean, content_std = _mean_std(content)
    return (content - content_mean) / content_std * style_std + style_mean


def wavelet_blur(x, radius):
    """Replicate padding by radius, then the 3x3 kernel [[1,2,1],[2,4,2],[1,2,1]]/16 per
    channel with dilation radius."""
    channels = x.shape[1]
    kernel = torch.tensor([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=x.dtype) / 16
    kernel = kernel.expand(channels, 1, 3, 3).contiguous()
    padded = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    return F.conv2d(padded, kernel, groups=channels, dilation=radius)


def wavelet_bands(x, levels=5):
    """(high, low): the sum of the differences of successive blurs (radii 1, 2, 4, ...) and the
    last blur."""
    high = torch.zeros_like(x)
    low = x
    for level in range(levels):
        low = wavelet_blur(x, 2 ** level)
        high += x - low
        x = low
    return high, low


def wavelet(content, style):
    """Content's high frequencies over style's low frequencies."""
    content_high, _ = wavelet_bands(content)
    _, style_low = wavelet_bands(style)
    return content_high + style_low


def color_fix(mode, target, source):
    """Upstream's colour fix of target (the restored 8-bit frame) against source (the prepared
    8-bit input frame); mode adain, wavelet or none."""
    if mode == "none":
        return target
    t = to_tensor(target).unsqueeze(0)
    s = to_tensor(source).unsqueeze(0)
    if mode == "adain":
        result = adain(t, s)
    elif mode == "wavelet":
        result = wavelet(t, s)
    else:
        raise ValueError(f"colour fix mode {mode!r}: expected adain, wavelet or none")
    return to_image(result.squeeze(0).clamp_(0.0, 1.0))
