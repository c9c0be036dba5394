#!/usr/bin/env python3
"""The numpy baseline of `dloral-convert quantize --weights int8`, for benchmarks.

    python3 Tools/bench/quantize_numpy.py MERGED_FOLDER OUT [--granularity channel|block32|block64] [--sha256]

Loads the merged folder's unet/, vae/ and cfr/ safetensors with safetensors' numpy API, one tensor
at a time, and quantizes every floating rank-2/4 tensor whose name ends in `.weight` (except
`*norm*` and `*time_embedding*`) to int8 by Formats/dlrt.md §4: rows_k32 layout (Conv2d
W[n, c, y, x] -> column (y·KW + x)·C + c, K padded with zeros to a multiple of 32, or of the block),
scales max|w| / float32(127) per row (or per block of the padded row), 1 where all zero, and
q = clip(round_half_even(w / s), -127, 127) in float32. Everything else is kept as fp32.

Writes OUT/weights.bin (every region on a 64-byte boundary: int8 data then its F32 scales, or fp32
data) and OUT/index.json ({name: {shape, dtype, scheme, layout, block, k, k_padded, offset, bytes,
scales_offset, scales_bytes[, sha256, scales_sha256]}}); if OUT ends in .bin, writes OUT and the
index beside it as OUT minus .bin plus .json. --sha256 also hashes every region (the .dlrt writer
does). Prints one JSON line: tensors, quantized, bytes written, seconds.

Vectorized per tensor: the transpose is copied straight into the padded buffer, then the row
maxima, the division, rounding and clipping run in place on that buffer, so each weight costs one
float32 copy plus one int8 output.
"""
import argparse
import hashlib
import json
import os
import sys
import time

import numpy as np
from safetensors import safe_open

FILES = [("unet", "unet/diffusion_pytorch_model.safetensors"),
         ("vae", "vae/diffusion_pytorch_model.safetensors"),
         ("cfr", "cfr/model.safetensors")]
ORDER = {"unet": 0, "vae": 1, "cfr": 2}


def quantize(w, block):
    """w: float32 [N, ...] rank 2 or 4. Returns (q int8 [N, Kp], scales float32, k, kp)."""
    n = w.shape[0]
    k = int(np.prod(w.shape[1:]))
    align = 64 if block == 64 else 32
    kp = -(-k // align) * align
    p = np.empty((n, kp), dtype=np.float32)
    p[:, k:] = 0
    if w.ndim == 4:
        _, c, kh, kw = w.shape
        np.copyto(p[:, :k].reshape(n, kh, kw, c), w.transpose(0, 2, 3, 1))
    else:
        p[:, :k] = w
    step = kp if block == 0 else block
    v = p.reshape(n, kp // step, step)
    mx = np.maximum(v.max(axis=2), -v.min(axis=2))
    s = mx / np.float32(127)
    s[mx == 0] = np.float32(1)
    np.divide(v, s[:, :, None], out=v)
    np.rint(p, out=p)
    np.clip(p, -127, 127, out=p)
    q = p.astype(np.int8)
    return q, (s[:, 0].copy() if block == 0 else s), k, kp


def wants_int8(name, w):
    return (w.dtype.kind == "f" and w.ndim in (2, 4) and name.endswith(".weight")
            and "norm" not in name and "time_embedding" not in name)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("merged")
    ap.add_argument("out")
    ap.add_argument("--granularity", default="channel", choices=["channel", "block32", "block64"])
    ap.add_argument("--sha256", action="store_true", help="also hash every written region")
    a = ap.parse_args(argv)
    block = {"channel": 0, "block32": 32, "block64": 64}[a.granularity]
    if a.out.endswith(".bin"):
        bin_path, idx_path = a.out, a.out[:-4] + ".json"
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    else:
        os.makedirs(a.out, exist_ok=True)
        bin_path, idx_path = os.path.join(a.out, "weights.bin"), os.path.join(a.out, "index.json")

    start = time.perf_counter()
    handles = [(comp, safe_open(os.path.join(a.merged, rel), framework="numpy")) for comp, rel in FILES]
    names = sorted(((comp, k, h) for comp, h in handles for k in h.keys()), key=lambda t: (ORDER[t[0]], t[1]))
    index = {}
    pos = 0
    quantized = 0
    with open(bin_path, "wb") as out:
        def put(buf):
            nonlocal pos
            pad = -pos % 64
            if pad:
                out.write(b"\0" * pad)
                pos += pad
            off = pos
            mv = memoryview(buf).cast("B")
            out.write(mv)
            pos += mv.nbytes
            return off, mv.nbytes, (hashlib.sha256(mv).hexdigest() if a.sha256 else None)

        for comp, k, h in names:
            name = f"{comp}.{k}"
            w = h.get_tensor(k)
            entry = {"shape": list(w.shape)}
            if wants_int8(name, w):
                q, s, kk, kp = quantize(np.asarray(w, dtype=np.float32), block)
                off, nb, dig = put(q)
                soff, snb, sdig = put(np.ascontiguousarray(s, dtype="<f4"))
                entry.update(dtype="I8", scheme="int8_channel" if block == 0 else "int8_block", layout="rows_k32",
                             block=block, k=kk, k_padded=kp, offset=off, bytes=nb, scales_offset=soff,
                             scales_bytes=snb, scales_shape=list(s.shape))
                if a.sha256:
                    entry.update(sha256=dig, scales_sha256=sdig)
                quantized += 1
            else:
                if w.dtype.kind == "f":
                    w = np.ascontiguousarray(w, dtype="<f4")
                    dt = "F32"
                else:
                    w = np.ascontiguousarray(w)
                    dt = w.dtype.str
                off, nb, dig = put(w)
                entry.update(dtype=dt, scheme="none", layout="torch", offset=off, bytes=nb)
                if a.sha256:
                    entry["sha256"] = dig
            index[name] = entry
    with open(idx_path, "w") as fh:
        json.dump(index, fh, separators=(",", ":"))
    secs = time.perf_counter() - start
    print(json.dumps({"tensors": len(index), "quantized": quantized, "bytes": pos, "seconds": round(secs, 3),
                      "bin": bin_path, "index": idx_path}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
