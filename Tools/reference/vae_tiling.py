"""VAE tiling as upstream DLoRAL's `VAEHook` (src/my_utils/vaehook.py, default non-fast mode) does
it, over diffusers' `Encoder` / `Decoder` (vae.encoder / vae.decoder; quant_conv, post_quant_conv
and the scaling stay outside, as with the hook, which replaces `encoder.forward` /
`decoder.forward`).

The image (encoder: pixels, decoder: latents) is split into tiles with a margin of `pad` on every
side (encoder 32, decoder 11); the network runs on every tile alone, one step at a time over all
tiles, except that at every GroupNorm each tile's per-(sample, group) biased mean and variance are
averaged over the tiles with the tiles' pixel counts as weights (a weighted mean of the tiles'
variances, not the pooled variance) and every tile is normalised with those. Each finished tile is
cropped to its region of the result. Images with max(H, W) <= tile + 2 * pad run untiled.

Written from upstream's behaviour; the group count and eps are the module's own (upstream hardcodes
32 groups and eps 1e-6, which are SD's values).
"""

import math

import torch
import torch.nn.functional as F

ENCODER_PAD = 32
DECODER_PAD = 11


def pad_for(is_decoder):
    return DECODER_PAD if is_decoder else ENCODER_PAD


def best_tile_size(lower, upper):
    """`lower` rounded up to a multiple of 32, 16, 8, 4 or 2, the first that stays <= `upper`."""
    for divider in (32, 16, 8, 4, 2):
        remainder = lower % divider
        if remainder == 0:
            return lower
        candidate = lower - remainder + divider
        if candidate <= upper:
            return candidate
    return lower


def split_tiles(h, w, tile, pad, is_decoder):
    """The tiles of an h x w input: (input_bboxes, output_bboxes), each a list of [x1, x2, y1, y2].

    input: the region a tile runs on (its part plus the margins, clipped to the image); output:
    the region of the result it fills (x 8 for the decoder, // 8 for the encoder). Row-major.
    """
    rows = max(math.ceil((h - 2 * pad) / tile), 1)
    cols = max(math.ceil((w - 2 * pad) / tile), 1)
    tile_h = best_tile_size(math.ceil((h - 2 * pad) / rows), tile)
    tile_w = best_tile_size(math.ceil((w - 2 * pad) / cols), tile)

    def scale(v):
        return v * 8 if is_decoder else v // 8

    inputs, outputs = [], []
    for i in range(rows):
        for j in range(cols):
            x1, x2 = pad + j * tile_w, min(pad + (j + 1) * tile_w, w)
            y1, y2 = pad + i * tile_h, min(pad + (i + 1) * tile_h, h)
            outputs.append([
                scale(x1 if x1 > pad else 0), scale(x2 if x2 < w - pad else w),
                scale(y1 if y1 > pad else 0), scale(y2 if y2 < h - pad else h),
            ])
            inputs.append([max(0, x1 - pad), min(w, x2 + pad), max(0, y1 - pad), min(h, y2 + pad)])
    return inputs, outputs


# A step is a tuple: ("call", fn) | ("norm", GroupNorm) | ("save",) | ("add", shortcut or None)
# | ("attn", Attention).

def _resnet_steps(block):
    return [
        ("save",),
        ("norm", block.norm1), ("call", F.silu), ("call", block.conv1),
        ("norm", block.norm2), ("call", F.silu), ("call", block.conv2),
        ("add", block.conv_shortcut),
    ]


def _mid_steps(mid):
    steps = _resnet_steps(mid.resnets[0])
    for attention, resnet in zip(mid.attentions, mid.resnets[1:]):
        if attention is not None:
            steps += [("save",), ("norm", attention.group_norm), ("attn", attention), ("add", None)]
        steps += _resnet_steps(resnet)
    return steps


def build_steps(net, is_decoder):
    steps = [("call", net.conv_in)]
    if is_decoder:
        steps += _mid_steps(net.mid_block)
        for block in net.up_blocks:
            for resnet in block.resnets:
                steps += _resnet_steps(resnet)
            if block.upsamplers is not None:
                steps.append(("call", block.upsamplers[0]))
    else:
        for block in net.down_blocks:
            for resnet in block.resnets:
                steps += _resnet_steps(resnet)
            if block.downsamplers is not None:
                steps.append(("call", block.downsamplers[0]))
        steps += _mid_steps(net.mid_block)
    steps += [("norm", net.conv_norm_out), ("call", F.silu), ("call", net.conv_out)]
    return steps


def _attention(attn, x):
    """diffusers' Attention on an already group-normalised image x [B, C, H, W], without the
    residual (added by the "add" step)."""
    b, c, h, w = x.shape
    tokens = x.view(b, c, h * w).transpose(1, 2)
    q, k, v = attn.to_q(tokens), attn.to_k(tokens), attn.to_v(tokens)
    heads = attn.heads
    d = q.shape[-1] // heads

    def split(t):
        return t.view(b, -1, heads, d).transpose(1, 2)

    out = F.scaled_dot_product_attention(split(q), split(k), split(v), scale=attn.scale)
    out = out.transpose(1, 2).reshape(b, -1, heads * d)
    out = attn.to_out[1](attn.to_out[0](out))
    # rescale_output_factor is 1 in the VAE, and VAEHook ignores it too.
    return out.transpose(1, 2).reshape(b, c, h, w)


def _moments(x, groups):
    """Biased variance and mean of every (sample, group): [B, groups] each."""
    v = x.reshape(x.shape[0], groups, -1)
    return v.var(dim=2, unbiased=False), v.mean(dim=2)


def _shared_group_norm(norm, tiles):
    groups = norm.num_groups
    moments = [_moments(t, groups) for t in tiles]
    pixels = torch.tensor([t.shape[2] * t.shape[3] for t in tiles], dtype=torch.float32)
    weights = pixels / pixels.max()
    weights = weights / weights.sum()
    var = torch.sum(torch.stack([m[0] for m in moments]) * weights[:, None, None], dim=0)
    mean = torch.sum(torch.stack([m[1] for m in moments]) * weights[:, None, None], dim=0)
    out = []
    for t in tiles:
        b, c = t.shape[:2]
        g = t.reshape(b, groups, -1)
        g = (g - mean[:, :, None]) / torch.sqrt(var[:, :, None] + norm.eps)
        g = g.reshape(t.shape)
        if norm.weight is not None:
            g = g * norm.weight.view(1, -1, 1, 1)
        if norm.bias is not None:
            g = g + norm.bias.view(1, -1, 1, 1)
        out.append(g)
    return out


@torch.no_grad()
def tiled_forward(net, x, tile, is_decoder):
    """net(x) for diffusers' Encoder / Decoder `net`, tiled as VAEHook tiles it."""
    pad = pad_for(is_decoder)
    n, _, h, w = x.shape
    if max(h, w) <= tile + 2 * pad:
        return net(x)
    inputs, outputs = split_tiles(h, w, tile, pad, is_decoder)
    tiles = [x[:, :, b[2]:b[3], b[0]:b[1]] for b in inputs]
    residuals = [[] for _ in tiles]
    for step in build_steps(net, is_decoder):
        kind = step[0]
        if kind == "norm":
            tiles = _shared_group_norm(step[1], tiles)
            continue
        for i, t in enumerate(tiles):
            if kind == "call":
                tiles[i] = step[1](t)
            elif kind == "save":
                residuals[i].append(t)
            elif kind == "add":
                r = residuals[i].pop()
                tiles[i] = t + (step[1](r) if step[1] is not None else r)
            elif kind == "attn":
                tiles[i] = _attention(step[1], t)
    scale = (lambda v: v * 8) if is_decoder else (lambda v: v // 8)
    out_h, out_w = scale(h), scale(w)
    result = torch.zeros((n, tiles[0].shape[1], out_h, out_w), dtype=x.dtype)
    for t, src, dst in zip(tiles, inputs, outputs):
        margin = [dst[k] - scale(src[k]) for k in range(4)]
        crop = t[:, :, margin[2]:t.shape[2] + margin[3], margin[0]:t.shape[3] + margin[1]]
        result[:, :, dst[2]:dst[3], dst[0]:dst[1]] = crop
    return result
