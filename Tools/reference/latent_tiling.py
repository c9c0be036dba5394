"""DLoRAL's latent tiling, written from upstream's arithmetic (read for facts only).

Upstream: yjsunnn/DLoRAL, src/DLoRAL_model.py, ``Generator_eval.forward`` (the tile grid, the
per-tile CFR and UNet, the blend) and ``Generator_eval._gaussian_weights``.

- A pair whose latent [.., h, w] has h*w <= tile**2 runs whole (an area test).
- Otherwise the tile shrinks to min(tile, h, w); along x tiles start every tile - overlap pixels
  until one reaches the edge, the last is moved to end at the edge (w - tile); likewise along y.
  Tiles are visited x outer, y inner.
- Each tile's UNet output and fused latent are blended: float32 accumulators += float32 tile *
  float64 weights (the product and the sum in float64, the sum stored as float32, which is what
  torch does for ``float32[...] += float32 * float64``); contributors += weights; then both
  accumulators are divided (float32) by the contributors; x0 = enc - pred.

The Swift counterpart is Sources/DLoRALEngine/Pipeline/LatentTiling.swift.
"""
import numpy as np
import torch

VAE_FACTOR = 8


def is_tiled(h, w, tile):
    """Upstream's test: the latent is tiled when its area exceeds tile**2."""
    return h * w > tile * tile


def tile_grid(h, w, tile, overlap):
    """(tile actually used, [(ofs_y, ofs_x), ...] in upstream's order, tiled).

    Untiled latents give one tile at (0, 0) and the tile as given.  Raises ValueError where
    upstream's grid loop would never end (overlap not smaller than the shrunken tile).
    """
    if h < 1 or w < 1 or tile < 1 or overlap < 0:
        raise ValueError(f"latent {h}x{w}, tile {tile}, overlap {overlap}: need h, w, tile >= 1, overlap >= 0")
    if not is_tiled(h, w, tile):
        return tile, [(0, 0)], False
    tile = min(tile, h, w)
    if overlap >= tile:
        raise ValueError(f"overlap {overlap} is not smaller than the tile {tile} of a {h}x{w} latent")
    step = tile - overlap

    def count(side):
        # Upstream counts tiles until the last start + tile reaches the side.
        n, reached = 0, 0
        while reached < side:
            reached = max(n * step, 0) + tile
            n += 1
        return n

    n_x, n_y = count(w), count(h)
    offsets = []
    for i in range(n_x):
        for j in range(n_y):
            ofs_x = w - tile if i == n_x - 1 else max(i * step, 0)
            ofs_y = h - tile if j == n_y - 1 else max(j * step, 0)
            offsets.append((ofs_y, ofs_x))
    return tile, offsets, True


def gaussian_weights(tile_w, tile_h):
    """Upstream's tile weights, float64 [tile_h, tile_w].

    Two Gaussians (variance 0.01) over the position relative to the tile's side, each divided by
    sqrt(2*pi*var); the x midpoint is (tile_w - 1) / 2 but the y midpoint is tile_h / 2, as
    upstream has it.  numpy's exp, as upstream uses.
    """
    var = 0.01
    norm = np.sqrt(2 * np.pi * var)

    def probs(n, mid):
        d = np.arange(n, dtype=np.float64) - mid
        return np.exp(-d * d / float(n * n) / (2 * var)) / norm

    return np.outer(probs(tile_h, tile_h / 2), probs(tile_w, (tile_w - 1) / 2))


def blend(grid, h, w, preds, encs):
    """Upstream's blend of per-tile outputs, in torch as upstream runs it.

    grid: (tile, offsets, tiled) from tile_grid; preds, encs: lists of float32 tensors
    [1, C, tile, tile] in the grid's order.  Returns (pred, enc) float32 [1, C, h, w].
    """
    tile, offsets, _ = grid
    channels = preds[0].shape[1]
    weights = torch.from_numpy(gaussian_weights(tile, tile)).reshape(1, 1, tile, tile).expand(1, channels, tile, tile)
    pred = torch.zeros([1, channels, h, w], dtype=torch.float32)
    enc = torch.zeros([1, channels, h, w], dtype=torch.float32)
    contributors = torch.zeros([1, channels, h, w], dtype=torch.float32)
    for (y, x), p, e in zip(offsets, preds, encs, strict=True):
        pred[:, :, y:y + tile, x:x + tile] += p * weights
        enc[:, :, y:y + tile, x:x + tile] += e * weights
        contributors[:, :, y:y + tile, x:x + tile] += weights
    pred /= contributors
    enc /= contributors
    return pred, enc


def blend_numpy(grid, h, w, preds, encs):
    """The same blend written out in numpy (float64 products and sums, float32 storage): an
    independent check of ``blend``'s torch semantics."""
    tile, offsets, _ = grid
    channels = preds[0].shape[1]
    weights = gaussian_weights(tile, tile)
    pred = np.zeros([1, channels, h, w], dtype=np.float32)
    enc = np.zeros([1, channels, h, w], dtype=np.float32)
    contributors = np.zeros([h, w], dtype=np.float32)
    for (y, x), p, e in zip(offsets, preds, encs, strict=True):
        area = (slice(None), slice(None), slice(y, y + tile), slice(x, x + tile))
        pred[area] = (pred[area].astype(np.float64) + np.asarray(p, dtype=np.float32).astype(np.float64) * weights).astype(np.float32)
        enc[area] = (enc[area].astype(np.float64) + np.asarray(e, dtype=np.float32).astype(np.float64) * weights).astype(np.float32)
        contributors[y:y + tile, x:x + tile] = (contributors[y:y + tile, x:x + tile].astype(np.float64) + weights).astype(np.float32)
    return pred / contributors, enc / contributors


def tiled_pair(frames, latents, pair_fn, tile, overlap):
    """One frame pair as upstream's forward: frames [2, 3, H, W], latents [2, C, h, w].

    pair_fn(frames_tile [2, 3, th*8, tw*8], latents_tile [2, C, th, tw]) -> (unet_input
    [1, 2C, th, tw], pred [1, C, th, tw]) runs the CFR and the UNet on one tile (or the whole
    pair when untiled).  Returns dict(pred, enc, x0 [1, C, h, w], unet_input [1, 2C, h, w] or
    None when tiled, tiled, grid).
    """
    h, w = latents.shape[-2:]
    grid = tile_grid(h, w, tile, overlap)
    t, offsets, tiled = grid
    if not tiled:
        unet_input, pred = pair_fn(frames, latents)
        channels = pred.shape[1]
        enc = unet_input[:, channels:2 * channels]
        return dict(pred=pred, enc=enc, x0=enc - pred, unet_input=unet_input, tiled=False, grid=grid)
    preds, encs = [], []
    for y, x in offsets:
        f = frames[:, :, VAE_FACTOR * y:VAE_FACTOR * (y + t), VAE_FACTOR * x:VAE_FACTOR * (x + t)]
        unet_input, pred = pair_fn(f, latents[:, :, y:y + t, x:x + t])
        channels = pred.shape[1]
        preds.append(pred)
        encs.append(unet_input[:, channels:2 * channels])
    pred, enc = blend(grid, h, w, preds, encs)
    return dict(pred=pred, enc=enc, x0=enc - pred, unet_input=None, tiled=True, grid=grid)
