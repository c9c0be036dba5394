#!/usr/bin/env python3
"""Tests of dlrt_reader.py on small .dlrt files made here by a tiny writer written from
Formats/dlrt.md (only for these tests). Run: python3 -m pytest Tools/dlrt -q
(or python3 Tools/dlrt/test_dlrt_reader.py without pytest)."""
import hashlib
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import dlrt_reader as dr  # noqa: E402
from dlrt_reader import DlrtError, DlrtFile  # noqa: E402

try:
    import zstandard
except ImportError:  # the zstd cases are skipped without it
    zstandard = None


# ---------------------------------------------------------------------------------------------
# A tiny writer, straight from the spec, with loops where the reader is vectorized.

def rows_by_loops(w):
    """§4 column order with explicit loops: W[n, c, y, x] -> column (y*KW + x)*C + c."""
    if w.ndim == 2:
        return w.copy()
    n, c, kh, kw = w.shape
    out = np.zeros((n, c * kh * kw), dtype=w.dtype)
    for ni in range(n):
        for ci in range(c):
            for y in range(kh):
                for x in range(kw):
                    out[ni, (y * kw + x) * c + ci] = w[ni, ci, y, x]
    return out


def quantize_by_loops(w, block):
    """Returns (q [N, Kp] int8, scales float32, k, kp) by §4, block 0 = per channel."""
    m = rows_by_loops(w.astype(np.float32))
    n, k = m.shape
    align = 64 if block == 64 else 32
    kp = (k + align - 1) // align * align
    p = np.zeros((n, kp), dtype=np.float32)
    p[:, :k] = m
    step = kp if block == 0 else block
    scales = np.zeros((n, kp // step), dtype=np.float32)
    q = np.zeros((n, kp), dtype=np.int8)
    for r in range(n):
        for b in range(kp // step):
            seg = p[r, b * step:(b + 1) * step]
            mx = np.float32(np.abs(seg).max())
            s = np.float32(1) if mx == 0 else np.float32(mx / np.float32(127))
            scales[r, b] = s
            for j in range(step):
                v = np.float32(seg[j] / s)
                q[r, b * step + j] = int(np.clip(np.round(v), -127, 127))
    if block == 0:
        scales = scales[:, 0].copy()
    return q, scales, k, kp


def sha(b):
    return hashlib.sha256(b).hexdigest()


def make_tensors(specs, compression="none"):
    """specs: list of (name, array, kind) with kind in f32, f16, i8, int8_channel, int8_block32,
    int8_block64, f32_rows. Returns (entries, blobs) with offsets still to be set."""
    out = []
    for name, w, kind in specs:
        e = {"name": name, "shape": list(w.shape), "dtype": "F32", "scheme": "none", "layout": "torch",
             "block": 0, "k": 0, "k_padded": 0, "offset": 0, "bytes": 0, "raw_bytes": 0,
             "compression": "none", "sha256": "", "scales": None, "sqnr_db": None}
        scales = None
        if kind == "f32":
            raw, esize = np.ascontiguousarray(w, dtype="<f4").tobytes(), 4
        elif kind == "f16":
            e["dtype"] = "F16"
            raw, esize = np.ascontiguousarray(w.astype(np.float16), dtype="<f2").tobytes(), 2
        elif kind == "i8":
            e["dtype"] = "I8"
            raw, esize = np.ascontiguousarray(w, dtype=np.int8).tobytes(), 1
        elif kind == "f32_rows":
            m = rows_by_loops(w.astype(np.float32))
            k = m.shape[1]
            kp = (k + 31) // 32 * 32
            p = np.zeros((m.shape[0], kp), np.float32)
            p[:, :k] = m
            e.update(layout="rows_k32", k=k, k_padded=kp)
            raw, esize = p.astype("<f4").tobytes(), 4
        else:
            block = {"int8_channel": 0, "int8_block32": 32, "int8_block64": 64}[kind]
            q, s, k, kp = quantize_by_loops(w, block)
            e.update(dtype="I8", scheme="int8_channel" if block == 0 else "int8_block", layout="rows_k32",
                     block=block, k=k, k_padded=kp)
            raw, esize = q.tobytes(), 1
            scales = s.astype("<f4").tobytes()
            e["scales"] = {"dtype": "F32", "shape": list(s.shape), "offset": 0, "bytes": len(scales),
                           "sha256": sha(scales)}
            wh = (q.astype(np.float32).reshape(q.shape[0], -1, block or kp)
                  * s.reshape(s.shape[0], -1, 1)).reshape(q.shape)
            err = float(((rows_by_loops(w.astype(np.float64)) - wh[:, :k]) ** 2).sum())
            e["sqnr_db"] = None if err == 0 else 10 * np.log10(float((w.astype(np.float64) ** 2).sum()) / err)
        e["raw_bytes"] = len(raw)
        stored = raw
        comp = compression
        if comp == "auto":
            comp = "zstd_shuffle" if e["dtype"] in ("F32", "F16") else "zstd"
        if comp != "none":
            body = dr.shuffle_bytes(raw, esize) if comp == "zstd_shuffle" else raw
            stored = zstandard.ZstdCompressor(level=3).compress(body)
            e["compression"] = comp
        e["bytes"] = len(stored)
        e["sha256"] = sha(stored)
        out.append((e, stored, scales))
    return out


def policy_of(entries):
    """A §3 quantization block the entries follow."""
    blocks = [e["block"] for e in entries if e["scheme"] == "int8_block"]
    int8 = any(e["scheme"] != "none" for e in entries)
    weights = "int8" if int8 else ("fp16" if any(e["dtype"] == "F16" for e in entries) else "fp32")
    acts = "int8" if any(e.get("activations") for e in entries) else "fp32"
    return {"weights": weights, "int8_granularity": f"block{blocks[0]}" if blocks else "channel",
            "activations": acts, "keep": [], "policy": "test"}


def assemble(tensors, *, extra_meta=None, major=1, minor=0, flags=0, reserve=0, order_scales_first=False):
    """Lays out header + metadata + payload per §1-§3. Returns bytes."""
    md = {"format": "dlrt",
          "configs": {"unet": {"in_channels": 8}, "vae": {"scaling_factor": 0.18215}, "cfr": {}},
          "quantization": policy_of([e for e, _, _ in tensors]),
          "provenance": {"tool": "test", "version": "0", "command": "quantize", "source": "x", "merge": {}},
          "default_prompt_embeds": None,
          "tensors": [e for e, _, _ in tensors]}
    if extra_meta:
        md.update(extra_meta)

    def layout(po):
        pos = po
        chunks = []
        for e, data, scales in tensors:
            parts = [("scales", scales), ("data", data)] if order_scales_first else [("data", data), ("scales", scales)]
            for what, b in parts:
                if b is None:
                    continue
                pos = (pos + 63) // 64 * 64
                if what == "data":
                    e["offset"] = pos
                else:
                    e["scales"]["offset"] = pos
                chunks.append((pos, b))
                pos += len(b)
        return chunks, pos

    po = 0
    while True:
        layout(po)
        text = json.dumps(md, separators=(",", ":")).encode()
        need = (128 + len(text) + 63) // 64 * 64 + reserve
        if po >= need:
            break
        po = need
    chunks, end = layout(po)
    end = (end + 63) // 64 * 64  # §1: the file ends at the last region's end rounded up to 64
    text = json.dumps(md, separators=(",", ":")).encode()
    assert 128 + len(text) <= po
    buf = bytearray(end)
    buf[128:128 + len(text)] = text
    for off, b in chunks:
        buf[off:off + len(b)] = b
    head = bytearray(128)
    head[0:8] = dr.MAGIC
    struct.pack_into("<HHIQQQQQQ", head, 8, major, minor, 128, end, 128, len(text), po, end - po, flags)
    head[96:128] = hashlib.sha256(bytes(head[:96]) + text).digest()
    buf[0:128] = head
    return bytes(buf)


def reseal(blob):
    """Recomputes header_sha256 (and file_bytes/payload_bytes) after an edit."""
    b = bytearray(blob)
    struct.pack_into("<Q", b, 16, len(b))
    po, = struct.unpack_from("<Q", b, 40)
    struct.pack_into("<Q", b, 48, len(b) - po)
    mlen, = struct.unpack_from("<Q", b, 32)
    b[96:128] = hashlib.sha256(bytes(b[:96]) + bytes(b[128:128 + mlen])).digest()
    return bytes(b)


def edit_metadata(blob, fn):
    """Applies fn to the parsed metadata and rewrites it in place (payload_offset unchanged)."""
    b = bytearray(blob)
    mlen, = struct.unpack_from("<Q", b, 32)
    po, = struct.unpack_from("<Q", b, 40)
    md = json.loads(bytes(b[128:128 + mlen]))
    md = fn(md) or md
    text = json.dumps(md, separators=(",", ":")).encode() if not isinstance(md, bytes) else md
    assert 128 + len(text) <= po, "metadata grew past the reserve"
    b[128:po] = bytes(po - 128)
    b[128:128 + len(text)] = text
    struct.pack_into("<Q", b, 32, len(text))
    return reseal(bytes(b))


_tmp = tempfile.mkdtemp(prefix="dlrt-test-")


def write(blob, name="t.dlrt"):
    p = os.path.join(_tmp, name)
    with open(p, "wb") as f:
        f.write(blob)
    return p


def rng_tensors():
    r = np.random.default_rng(7)
    return {
        "unet.conv_in.weight": r.standard_normal((5, 3, 3, 3)).astype(np.float32),   # K 27 -> 32
        "unet.conv_in.bias": r.standard_normal(5).astype(np.float32),
        "unet.proj.weight": r.standard_normal((4, 70)).astype(np.float32),            # K 70 -> 96 / 128
        "vae.conv.weight": (r.standard_normal((3, 40, 1, 1)) * 1e-3).astype(np.float32),
        "cfr.zero.weight": np.zeros((2, 33), np.float32),                              # all-zero rows
        "cfr.mixed.weight": np.concatenate([np.zeros((1, 64), np.float32),
                                            r.standard_normal((1, 64)).astype(np.float32)]),
        "prompt_embeds": r.standard_normal((1, 77, 8)).astype(np.float32),
    }


def standard_file(kind="int8_channel", compression="none", **kw):
    t = rng_tensors()
    specs = []
    for name in sorted(t, key=dr.sort_key):
        w = t[name]
        k = kind if (w.ndim in (2, 4) and name.endswith(".weight")) else "f32"
        specs.append((name, w, k))
    return assemble(make_tensors(specs, compression), **kw), t


# ---------------------------------------------------------------------------------------------
# Round trips

def check_roundtrip(kind, compression="none"):
    blob, t = standard_file(kind, compression, extra_meta={"default_prompt_embeds": "prompt_embeds"})
    p = write(blob, f"rt-{kind}-{compression}.dlrt")
    f = DlrtFile(p)
    assert f.warnings == [], f.warnings
    assert f.names() == sorted(t, key=dr.sort_key)
    f.verify_all()
    for name, w in t.items():
        e = f.entry(name)
        d = f.dequantized(name)
        assert d.dtype == np.float32 and list(d.shape) == list(w.shape), (name, d.shape)
        if e.scheme == "none":
            if e.dtype == "F32":
                assert np.array_equal(d, w), name
            else:
                assert np.array_equal(d, w.astype(np.float16).astype(np.float32)), name
            continue
        q, s, k, kp = quantize_by_loops(w, e.block)
        assert np.array_equal(f.raw(name), q), name
        assert np.array_equal(f.scales(name), s), name
        # ŵ = q·s back in the logical order, by loops
        wh = np.zeros_like(w)
        step = kp if e.block == 0 else e.block
        flat = rows_by_loops(np.arange(w.size).reshape(w.shape))
        for r in range(q.shape[0]):
            for col in range(k):
                sc = s[r] if e.block == 0 else s[r, col // step]
                wh.reshape(-1)[flat[r, col]] = np.float32(np.float32(q[r, col]) * sc)
        assert np.array_equal(d, wh), name
        srow = s if e.block == 0 else None
        if srow is not None:
            bound = np.abs(srow).reshape((-1,) + (1,) * (w.ndim - 1)) / 2 * (1 + 1e-6)
            assert (np.abs(d - w) <= bound).all(), name
    return f


def test_roundtrip_int8_channel():
    check_roundtrip("int8_channel")


def test_roundtrip_int8_block32():
    f = check_roundtrip("int8_block32")
    e = f.entry("unet.proj.weight")
    assert (e.k, e.k_padded, e.block, e.scales["shape"]) == (70, 96, 32, [4, 3])


def test_roundtrip_int8_block64():
    f = check_roundtrip("int8_block64")
    e = f.entry("unet.proj.weight")
    assert (e.k, e.k_padded, e.scales["shape"]) == (70, 128, [4, 2])
    e = f.entry("unet.conv_in.weight")
    assert (e.k, e.k_padded) == (27, 64)


def test_roundtrip_f16():
    check_roundtrip("f16")


def test_roundtrip_f32():
    check_roundtrip("f32")


def test_f32_rows_layout_refused():
    # §3.1: rows_k32 is the layout of int8 weights only
    expect_error(lambda: check_roundtrip("f32_rows"), "rows_k32 is for int8 weights")


def test_zero_rows_scale_one():
    blob, _ = standard_file("int8_block32")
    f = DlrtFile(write(blob))
    s = f.scales("cfr.zero.weight")
    assert (s == 1).all()
    s = f.scales("cfr.mixed.weight")
    assert (s[0] == 1).all() and (s[1] != 1).all()


def _need_zstd():
    if zstandard is None:
        try:
            import pytest
            pytest.skip("zstandard not installed")
        except ImportError:
            return False
    return True


def test_roundtrip_zstd():
    if not _need_zstd():
        return
    for kind in ("int8_channel", "int8_block64", "f16", "f32"):
        f = check_roundtrip(kind, "auto")
        comps = {e.compression for e in f.entries}
        assert comps <= {"zstd", "zstd_shuffle"} and comps, comps
    f = check_roundtrip("f32", "zstd")
    assert {e.compression for e in f.entries} == {"zstd"}


def test_shuffle_definition():
    raw = bytes([0x10, 0x11, 0x12, 0x13, 0x20, 0x21, 0x22, 0x23])  # two 4-byte elements
    assert dr.shuffle_bytes(raw, 4) == bytes([0x10, 0x20, 0x11, 0x21, 0x12, 0x22, 0x13, 0x23])
    assert dr.unshuffle_bytes(dr.shuffle_bytes(raw, 4), 4) == raw


def test_rows_order_matches_loops():
    w = np.arange(2 * 3 * 2 * 4, dtype=np.float32).reshape(2, 3, 2, 4)
    assert np.array_equal(dr.to_rows(w), rows_by_loops(w))
    assert np.array_equal(dr.from_rows(dr.to_rows(w), list(w.shape)), w)


def test_minor_version_and_unknown_keys_accepted():
    specs = make_tensors([("unet.a.weight", np.ones((2, 3), np.float32), "int8_channel")])
    specs[0][0]["future_key"] = {"x": 1}
    blob = assemble(specs, minor=3, extra_meta={"future_top": [1, 2]})
    f = DlrtFile(write(blob))
    assert f.minor == 3
    assert np.array_equal(f.dequantized("unet.a.weight"), np.ones((2, 3), np.float32))


def test_activations_1_1():
    specs = make_tensors([("unet.a.weight", np.ones((2, 3), np.float32), "int8_channel"),
                          ("unet.b.weight", np.ones((2, 3), np.float32), "int8_channel"),
                          ("unet.c.weight", np.ones((2, 3), np.float32), "f32")])
    specs[0][0]["activations"] = "int16"
    specs[1][0]["activations"] = "int4"
    # §6: an unknown value is damage in a version this reader knows, a newer version's otherwise.
    expect_error(lambda: DlrtFile(write(assemble(specs, minor=1))), "unknown activations 'int4'", "1.1 file")
    f = DlrtFile(write(assemble(specs, minor=3)))
    assert f.entry("unet.a.weight").activations == "int16"
    assert f.entry("unet.b.weight").unsupported == "unknown activations 'int4'"
    assert np.array_equal(f.dequantized("unet.a.weight"), np.ones((2, 3), np.float32))
    specs[2][0]["activations"] = "int8"  # only int8 rows_k32 matrices take activations
    expect_error(lambda: DlrtFile(write(assemble(specs, minor=1))), "activations")


def test_block_activations_1_2():
    specs = make_tensors([("unet.a.weight", np.ones((2, 40), np.float32), "int8_block32"),
                          ("unet.b.weight", np.ones((2, 40), np.float32), "int8_block64")])
    specs[0][0]["activations"] = "int8"
    specs[1][0]["activations"] = "int16"  # §4.3: block scales take int8 activations only
    specs[1][0]["block"], specs[1][0]["k_padded"] = 32, 64  # one granularity per file (§3)
    specs = [specs[0], (specs[1][0], specs[1][1], specs[0][2])]
    specs[1][0]["scales"] = dict(specs[0][0]["scales"])
    expect_error(lambda: DlrtFile(write(assemble(specs, minor=2))), "int16", "1.2 file")
    f = DlrtFile(write(assemble(specs, minor=3)))
    assert f.entry("unet.a.weight").activations == "int8" and f.entry("unet.a.weight").unsupported is None
    assert f.entry("unet.b.weight").unsupported == "activations 'int16' on an int8_block tensor"
    assert np.array_equal(f.dequantized("unet.a.weight"), np.ones((2, 40), np.float32))


def test_unknown_dtype_makes_only_that_tensor_unsupported():
    specs = make_tensors([("unet.a.weight", np.ones((2, 3), np.float32), "f32"),
                          ("unet.b.weight", np.ones((2, 3), np.float32), "f32")])
    specs[1][0]["dtype"] = "BF16"
    expect_error(lambda: DlrtFile(write(assemble(specs))), "unknown dtype 'BF16'", "1.0 file")
    f = DlrtFile(write(assemble(specs, minor=3)))
    assert f.entry("unet.b.weight").unsupported == "unknown dtype 'BF16'"
    f.verify("unet.b.weight")
    f.dequantized("unet.a.weight")
    expect_error(lambda: f.raw("unet.b.weight"), "BF16")


def test_reserve_after_metadata_and_scales_first():
    blob, t = standard_file("int8_channel", reserve=4096)
    f = DlrtFile(write(blob))
    assert f.payload_offset - 128 - f.header["metadata_bytes"] >= 4096
    f.verify_all()
    assert f.warnings == []
    # §3.1: an int8 tensor's scales follow its data
    blob, t = standard_file("int8_channel", reserve=4096, order_scales_first=True)
    expect_error(open_blob(blob), "list order", "unet.conv_in.weight")


def test_cli():
    blob, _ = standard_file("int8_block32")
    p = write(blob, "cli.dlrt")
    script = os.path.join(HERE, "dlrt_reader.py")
    r = subprocess.run([sys.executable, script, p, "--verify-all", "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["valid"] and s["verified"] and s["tensors"] == 7
    r = subprocess.run([sys.executable, script, p, "--list"], capture_output=True, text=True)
    assert r.returncode == 0 and "unet.proj.weight" in r.stdout
    bad = write(blob[:-1], "cli-bad.dlrt")
    r = subprocess.run([sys.executable, script, bad], capture_output=True, text=True)
    assert r.returncode == 2 and "truncated" in r.stderr
    b = bytearray(blob)
    f = DlrtFile(p)
    b[f.entry("unet.proj.weight").offset] ^= 1
    flipped = write(bytes(b), "cli-flip.dlrt")
    assert subprocess.run([sys.executable, script, flipped], capture_output=True).returncode == 0
    r = subprocess.run([sys.executable, script, flipped, "--verify-all"], capture_output=True, text=True)
    assert r.returncode == 2 and "unet.proj.weight" in r.stdout


# ---------------------------------------------------------------------------------------------
# Corruption

def expect_error(fn, *needles):
    try:
        fn()
    except DlrtError as e:
        msg = str(e)
        for n in needles:
            assert n in msg, f"{n!r} not in {msg!r}"
        return msg
    raise AssertionError(f"no DlrtError (wanted {needles})")


def base_blob():
    blob, _ = standard_file("int8_channel", reserve=1024)
    return blob


def tensor(md, name="unet.conv_in.weight"):
    return next(t for t in md["tensors"] if t["name"] == name)


def open_blob(blob, name="c.dlrt"):
    p = write(blob, name)
    return lambda: DlrtFile(p)


def test_bad_magic():
    b = bytearray(base_blob())
    b[4] = ord("X")
    expect_error(open_blob(bytes(b)), "magic")
    # text-mode damage: CR LF -> LF
    b = base_blob()
    expect_error(open_blob(b[:5] + b[6:]), "magic")
    expect_error(open_blob(b""), "magic")


def test_future_major():
    b = bytearray(base_blob())
    struct.pack_into("<H", b, 8, 2)
    expect_error(open_blob(reseal(bytes(b))), "major version 2")


def test_header_bytes():
    b = bytearray(base_blob())
    struct.pack_into("<I", b, 12, 256)
    expect_error(open_blob(reseal(bytes(b))), "header_bytes")


def test_truncated_and_extended():
    b = base_blob()
    expect_error(open_blob(b[:-1]), "truncated")
    expect_error(open_blob(b[:100]), "truncated")
    expect_error(open_blob(b + b"\0"), "extended")


def test_flipped_header_byte():
    for off in (20, 33, 50, 70, 100):  # file_bytes, metadata_bytes, payload_bytes, reserved, digest
        b = bytearray(base_blob())
        b[off] ^= 0x01
        expect_error(open_blob(bytes(b)))
    b = bytearray(base_blob())
    b[70] ^= 0x01  # reserved byte: covered by header_sha256
    expect_error(open_blob(bytes(b)), "header_sha256")


def test_flipped_metadata_byte():
    b = bytearray(base_blob())
    b[200] ^= 0x01
    expect_error(open_blob(bytes(b)), "header_sha256")


def test_flags():
    b = bytearray(base_blob())
    struct.pack_into("<Q", b, 56, 4)
    expect_error(open_blob(reseal(bytes(b))), "flag")


def test_ranges():
    b = bytearray(base_blob())
    struct.pack_into("<Q", b, 40, struct.unpack_from("<Q", b, 40)[0] + 8)  # payload_offset not x64
    expect_error(open_blob(reseal(bytes(b))), "multiple of 64")
    b = bytearray(base_blob())
    struct.pack_into("<Q", b, 40, 128)  # payload overlapping metadata
    expect_error(open_blob(reseal(bytes(b))), "overlaps the metadata")
    b = bytearray(base_blob())
    struct.pack_into("<Q", b, 32, 10 ** 9)  # metadata past the end (no reseal: range check comes first)
    expect_error(open_blob(bytes(b)), "past the end")
    b = bytearray(base_blob())
    struct.pack_into("<Q", b, 24, 192)
    expect_error(open_blob(reseal(bytes(b))), "metadata_offset")
    b = bytearray(base_blob())
    struct.pack_into("<Q", b, 48, 64)
    b[96:128] = hashlib.sha256(bytes(b[:96]) + bytes(b[128:128 + struct.unpack_from("<Q", b, 32)[0]])).digest()
    expect_error(open_blob(bytes(b)), "payload_bytes")


def test_flipped_tensor_byte_detected_by_verify():
    blob = base_blob()
    f = DlrtFile(write(blob))
    e = f.entry("unet.conv_in.weight")
    b = bytearray(blob)
    b[e.offset + 3] ^= 0x40
    f = DlrtFile(write(bytes(b), "flip.dlrt"))  # opens: tensor digests are checked on use
    expect_error(lambda: f.verify("unet.conv_in.weight"), "unet.conv_in.weight", "sha256 mismatch", "flip.dlrt")
    expect_error(f.verify_all, "unet.conv_in.weight")
    expect_error(lambda: f.raw("unet.conv_in.weight"), "sha256 mismatch")
    expect_error(lambda: f.dequantized("unet.conv_in.weight"), "sha256 mismatch")
    f.verify("unet.proj.weight")
    # scales byte
    b = bytearray(blob)
    b[e.scales["offset"]] ^= 0x01
    f = DlrtFile(write(bytes(b), "flip2.dlrt"))
    expect_error(lambda: f.verify("unet.conv_in.weight"), "scales sha256 mismatch")
    expect_error(lambda: f.dequantized("unet.conv_in.weight"), "scales sha256 mismatch")


def test_region_outside_payload():
    blob = base_blob()

    def move(md):
        md["tensors"][-1]["offset"] = (len(blob) + 63) // 64 * 64 + 64
    expect_error(open_blob(edit_metadata(blob, move)), "outside the payload", "prompt_embeds")

    def into_metadata(md):
        md["tensors"][0]["offset"] = 128
    expect_error(open_blob(edit_metadata(blob, into_metadata)), "outside the payload")

    def long(md):
        md["tensors"][-1]["bytes"] += 64
        md["tensors"][-1]["raw_bytes"] += 64
    expect_error(open_blob(edit_metadata(blob, long)), "outside the payload")


def test_overlapping_regions():
    blob = base_blob()

    def overlap(md):
        tensor(md, "unet.proj.weight")["offset"] = tensor(md)["offset"] + 64
    expect_error(open_blob(edit_metadata(blob, overlap)), "overlaps")

    def scales_on_data(md):
        t = tensor(md)
        t["scales"]["offset"] = t["offset"]
    expect_error(open_blob(edit_metadata(blob, scales_on_data)), "overlaps")


def test_misaligned_offset():
    blob = base_blob()

    def mis(md):
        md["tensors"][2]["offset"] += 1
    expect_error(open_blob(edit_metadata(blob, mis)), "not a multiple of 64", md_name(blob, 2))

    def mis_s(md):
        tensor(md)["scales"]["offset"] += 32
    expect_error(open_blob(edit_metadata(blob, mis_s)), "scales offset")


def md_name(blob, i):
    mlen, = struct.unpack_from("<Q", blob, 32)
    return json.loads(blob[128:128 + mlen])["tensors"][i]["name"]


def test_duplicate_json_key():
    blob = base_blob()
    mlen, = struct.unpack_from("<Q", blob, 32)
    text = blob[128:128 + mlen]
    dup = text.replace(b'{"format":"dlrt",', b'{"format":"dlrt","format":"dlrt",', 1)
    expect_error(open_blob(edit_metadata(blob, lambda md: dup)), "duplicate key 'format'")


def test_entry_consistency():
    blob = base_blob()
    cases = [
        (lambda t: t.__setitem__("raw_bytes", t["raw_bytes"] + 1), "raw_bytes"),
        (lambda t: t.__setitem__("k_padded", 64), "k_padded"),
        (lambda t: t.__setitem__("k", 26), "k is"),
        (lambda t: t["scales"].__setitem__("shape", [5, 1]), "scales shape"),
        (lambda t: t["scales"].__setitem__("bytes", 24), "scales bytes"),
        (lambda t: t.__setitem__("shape", [5, 3, 3]), "rank-3"),
        (lambda t: t.__setitem__("block", 32), "block"),
        (lambda t: t.__setitem__("layout", "torch"), "rows_k32 only"),
        (lambda t: t.__setitem__("dtype", "F32"), "needs dtype I8"),
        (lambda t: t.__setitem__("scales", None), "without scales"),
        (lambda t: t.__setitem__("sha256", "AB" * 32), "lowercase hex"),
        (lambda t: t.pop("sqnr_db"), "lacks"),
        (lambda t: t.__setitem__("offset", True), "non-negative integer"),
    ]
    for fn, needle in cases:
        def edit(md, fn=fn):
            fn(tensor(md))
        expect_error(open_blob(edit_metadata(blob, edit)), needle, "unet.conv_in.weight")


def test_missing_prompt_embeds_target():
    expect_error(open_blob(edit_metadata(base_blob(), lambda md: md.update(default_prompt_embeds="nope"))), "nope")


def test_bad_zstd_frames():
    if not _need_zstd():
        return
    specs = make_tensors([("unet.a.weight", np.arange(64, dtype=np.float32).reshape(2, 32), "f32")], "zstd")
    e, data, _ = specs[0]
    extra = data + zstandard.ZstdCompressor().compress(b"x")
    specs = [(dict(e, bytes=len(extra), sha256=sha(extra)), extra, None)]
    f = DlrtFile(write(assemble(specs)))
    expect_error(lambda: f.raw("unet.a.weight"), "follow the zstd frame")
    specs = make_tensors([("unet.a.weight", np.arange(64, dtype=np.float32).reshape(2, 32), "f32")], "zstd")
    specs[0][0]["raw_bytes"] = 4 * 64  # right
    specs[0][0]["shape"] = [2, 16]
    specs[0][0]["raw_bytes"] = 4 * 32  # consistent with shape, not with the frame
    f = DlrtFile(write(assemble(specs)))
    expect_error(lambda: f.raw("unet.a.weight"), "content size")


def test_conformance_warnings():
    blob = base_blob()

    def swap(md):
        md["tensors"][0], md["tensors"][1] = md["tensors"][1], md["tensors"][0]
    expect_error(open_blob(edit_metadata(blob, swap)), "list order")
    b0 = bytearray(blob)
    po, = struct.unpack_from("<Q", b0, 40)
    b0[po - 1] = 1
    expect_error(open_blob(bytes(b0)), "padding after the metadata", "not all zero")
    spaced = json.dumps(json.loads(blob[128:128 + struct.unpack_from("<Q", blob, 32)[0]]),
                        separators=(", ", ": ")).encode()
    f = open_blob(edit_metadata(blob, lambda md: spaced))()
    assert any("whitespace" in w for w in f.warnings), f.warnings


# ---------------------------------------------------------------------------------------------
# check_dlrt.py against a small merged folder

def make_merged(folder):
    from safetensors.numpy import save_file
    r = np.random.default_rng(3)
    comps = {
        "unet": {"conv_in.weight": r.standard_normal((6, 8, 3, 3)).astype(np.float32),
                 "conv_in.bias": r.standard_normal(6).astype(np.float32),
                 "time_embedding.linear_1.weight": r.standard_normal((12, 6)).astype(np.float32),
                 "mid.norm1.weight": np.ones(6, np.float32),
                 "mid.proj.weight": r.standard_normal((5, 40)).astype(np.float32),
                 "mid.zero.weight": np.zeros((3, 8), np.float32)},
        "vae": {"decoder.conv.weight": (r.standard_normal((4, 3, 1, 1)) * 1e-3).astype(np.float32),
                "decoder.conv_norm_out.weight": r.standard_normal(4).astype(np.float32)},
        "cfr": {"spynet.conv.weight": r.standard_normal((3, 2, 7, 7)).astype(np.float32),
                "spynet.mean": r.standard_normal((1, 3, 1, 1)).astype(np.float32)},
    }
    files = {"unet": "unet/diffusion_pytorch_model.safetensors", "vae": "vae/diffusion_pytorch_model.safetensors",
             "cfr": "cfr/model.safetensors"}
    configs = {"unet": {"in_channels": 8, "sample_size": 8}, "vae": {"scaling_factor": 0.18215},
               "cfr": {"latent_channels": 4, "attention_temperature": 0.5}}
    for c, ts in comps.items():
        os.makedirs(os.path.join(folder, c), exist_ok=True)
        save_file(ts, os.path.join(folder, files[c]))
        with open(os.path.join(folder, c, "config.json"), "w") as fh:
            json.dump(configs[c], fh)
    with open(os.path.join(folder, "dloral.json"), "w") as fh:
        json.dump({"stage": "full"}, fh)
    tensors = {f"{c}.{k}": v for c, ts in comps.items() for k, v in ts.items()}
    return tensors, configs


def policy_kind(name, w, weights, gran):
    kept = w.ndim < 2 or "norm" in name or "time_embedding" in name
    if weights == "int8":
        if w.ndim in (2, 4) and name.endswith(".weight") and not kept:
            return {"channel": "int8_channel", "block32": "int8_block32", "block64": "int8_block64"}[gran]
        return "f32"
    if weights == "fp16":
        return "f32" if kept else "f16"
    return "f32"


def merged_dlrt(folder, weights="int8", gran="channel", compression="none", mutate=None):
    tensors, configs = make_merged(folder)
    specs = [(n, tensors[n], policy_kind(n, tensors[n], weights, gran)) for n in sorted(tensors, key=dr.sort_key)]
    made = make_tensors(specs, compression)
    for e, data, _ in made:
        if e["scheme"] == "none" and e["dtype"] == "F16":
            w = tensors[e["name"]].astype(np.float64)
            err = float(((w - tensors[e["name"]].astype(np.float16).astype(np.float64)) ** 2).sum())
            e["sqnr_db"] = None if err == 0 else 10 * np.log10(float((w ** 2).sum()) / err)
    if mutate:
        made = mutate(made) or made
    return assemble(made, extra_meta={
        "configs": configs,
        "quantization": {"weights": weights, "int8_granularity": gran, "keep": [], "policy": "test"},
        "provenance": {"tool": "dloral-convert", "version": "0", "command": "quantize", "source": folder,
                       "merge": {"stage": "full"}}})


def run_check(blob, folder, *extra):
    import contextlib
    import io
    import check_dlrt
    p = write(blob, "check.dlrt")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = check_dlrt.main([p, folder, *extra])
    return rc, out.getvalue()


def test_checker_passes_good_files():
    folder = tempfile.mkdtemp(dir=_tmp)
    for weights, gran in (("int8", "channel"), ("int8", "block32"), ("int8", "block64"), ("fp16", "channel"),
                          ("fp32", "channel")):
        for comp in ("none", "auto") if zstandard else ("none",):
            rc, out = run_check(merged_dlrt(folder, weights, gran, comp), folder)
            assert rc == 0 and out.strip().endswith("10 passed, 0 failed"), (weights, gran, comp, out)


def _patch(made, name, fn):
    for i, (e, data, scales) in enumerate(made):
        if e["name"] == name:
            data, scales = fn(e, bytearray(data), None if scales is None else bytearray(scales))
            data, scales = bytes(data), None if scales is None else bytes(scales)
            e["sha256"] = sha(data)
            if scales is not None:
                e["scales"]["sha256"] = sha(scales)
            made[i] = (e, data, scales)
    return made


def test_checker_catches_errors():
    folder = tempfile.mkdtemp(dir=_tmp)

    def q_off_by_one(e, d, s):
        d[5] = (d[5] + 1) % 128
        return d, s

    def scale_ulp(e, d, s):
        a = np.frombuffer(bytes(s), dtype="<u4").copy()
        a[1] += 1
        return d, bytearray(a.tobytes())

    def f16_ulp(e, d, s):
        d[0] ^= 1
        return d, s

    cases = [
        (dict(), lambda m: _patch(m, "unet.mid.proj.weight", q_off_by_one), "unet.mid.proj.weight: int8 values differ"),
        (dict(), lambda m: _patch(m, "cfr.spynet.conv.weight", scale_ulp), "cfr.spynet.conv.weight: scales do not follow"),
        (dict(weights="fp16"), lambda m: _patch(m, "unet.conv_in.weight", f16_ulp), "F16 not identical"),
        (dict(weights="fp32"), lambda m: _patch(m, "vae.decoder.conv.weight", f16_ulp), "F32 not identical"),
        (dict(), lambda m: [x for x in m if x[0]["name"] != "vae.decoder.conv.weight"], "missing from the file"),
        (dict(), lambda m: [x if x[0]["name"] != "unet.mid.proj.weight" else
                            make_tensors([("unet.mid.proj.weight", np.ones((5, 40), np.float32), "f32")])[0] for x in m],
         "the policy"),
        (dict(), lambda m: [x if x[0]["name"] != "unet.time_embedding.linear_1.weight" else
                            make_tensors([(x[0]["name"], np.zeros((12, 6), np.float32), "int8_channel")])[0]
                            for x in m], "time_embedding.linear_1.weight: stored as I8"),
        (dict(), lambda m: [(dict(x[0], sqnr_db=(x[0]["sqnr_db"] or 0) + 0.5), x[1], x[2]) if x[0]["name"] ==
                            "unet.conv_in.weight" else x for x in m], "sqnr_db"),
    ]
    for kw, mutate, needle in cases:
        rc, out = run_check(merged_dlrt(folder, mutate=mutate, **kw), folder)
        assert rc == 1 and needle in out and out.strip().splitlines()[-1].endswith("failed"), (needle, out)
    # configs and digests
    blob = merged_dlrt(folder)
    rc, out = run_check(edit_metadata(blob, lambda md: md["configs"]["unet"].update(in_channels=4)), folder)
    assert rc == 1 and "configs.unet.in_channels" in out, out
    f = DlrtFile(write(blob))
    b = bytearray(blob)
    b[f.entry("cfr.spynet.mean").offset] ^= 1
    rc, out = run_check(bytes(b), folder)
    assert rc == 1 and "cfr.spynet.mean: digest" in out and "9 passed, 1 failed" in out, out


def test_quantize_numpy_baseline_matches_spec():
    import contextlib
    import io
    sys.path.insert(0, os.path.join(HERE, "..", "bench"))
    import quantize_numpy
    folder = tempfile.mkdtemp(dir=_tmp)
    tensors, _ = make_merged(folder)
    for gran, block in (("channel", 0), ("block32", 32), ("block64", 64)):
        out = os.path.join(folder, f"out-{gran}")
        with contextlib.redirect_stdout(io.StringIO()):
            assert quantize_numpy.main([folder, out, "--granularity", gran]) == 0
        idx = json.load(open(os.path.join(out, "index.json")))
        blob = np.fromfile(os.path.join(out, "weights.bin"), dtype=np.uint8)
        assert set(idx) == set(tensors)
        for name, e in idx.items():
            w = tensors[name]
            assert e["offset"] % 64 == 0
            if policy_kind(name, w, "int8", "channel") == "f32":
                assert e["dtype"] == "F32"
                assert np.array_equal(blob[e["offset"]:e["offset"] + e["bytes"]].view("<f4").reshape(w.shape), w)
                continue
            q, s, k, kp = quantize_by_loops(w, block)
            got_q = blob[e["offset"]:e["offset"] + e["bytes"]].view(np.int8).reshape(q.shape)
            got_s = blob[e["scales_offset"]:e["scales_offset"] + e["scales_bytes"]].view("<f4").reshape(s.shape)
            assert np.array_equal(got_q, q) and np.array_equal(got_s, s), (gran, name)


if __name__ == "__main__":
    failed = 0
    tests = [(k, v) for k, v in sorted(globals().items()) if k.startswith("test_") and callable(v)]
    for name, fn in tests:
        try:
            fn()
            print(f"ok   {name}")
        except Exception as e:  # noqa: BLE001
            failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}")
    print(f"{len(tests) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


# ---------------------------------------------------------------------------------------------
# Every byte covered (§1) and forged metadata (§3, §3.1): a file whose header digest was
# recomputed after the edit, so only the semantic checks can catch it.

def test_every_padding_byte_is_checked():
    blob = base_blob()
    f = DlrtFile(write(blob))
    md_end = 128 + f.header["metadata_bytes"]
    regions = sorted(f._regions())
    gaps = [(a[0] + a[1], b[0]) for a, b in zip(regions, regions[1:]) if b[0] > a[0] + a[1]]
    last_end = regions[-1][0] + regions[-1][1]
    assert gaps and md_end < f.payload_offset and last_end < len(blob), "the fixture must have every kind of padding"
    for where, needle in ((md_end, "padding after the metadata"), (f.payload_offset - 1, "padding after the metadata"),
                          (gaps[0][0], "padding before"), (gaps[-1][1] - 1, "padding before"),
                          (last_end, "padding after the last region"), (len(blob) - 1, "padding after the last region")):
        b = bytearray(blob)
        b[where] ^= 0x80
        expect_error(open_blob(bytes(b)), needle, f"byte {where}")
    # the tail is exactly up to the next multiple of 64: 64 more zero bytes are refused too
    expect_error(open_blob(reseal(blob + bytes(64))), "must end at")


def test_forged_metadata_refused():
    blob = base_blob()
    cases = [
        (lambda md: tensor(md).__setitem__("dtype", "Q4"), "unknown dtype 'Q4'"),
        (lambda md: tensor(md).__setitem__("scheme", "int4_channel"), "unknown scheme"),
        (lambda md: tensor(md).__setitem__("layout", "cols"), "unknown layout"),
        (lambda md: tensor(md).__setitem__("compression", "lz4"), "unknown compression"),
        (lambda md: tensor(md).__setitem__("activations", "int3"), "unknown activations"),
        (lambda md: md.__setitem__("tensors", []), "no tensors"),
        (lambda md: md["configs"].pop("cfr") and None, "'cfr'"),
        (lambda md: md["configs"].pop("unet") and None, "'unet'"),
        (lambda md: md.__setitem__("format", "zip"), "format"),
        (lambda md: md["quantization"].__setitem__("weights", "int3"), "weights is 'int3'"),
        (lambda md: md["quantization"].__setitem__("int8_granularity", "block16"), "int8_granularity"),
        (lambda md: md["quantization"].__setitem__("activations", "int2"), "activations is 'int2'"),
        (lambda md: md["quantization"].__setitem__("weights", "fp32"), "weights are fp32"),
        (lambda md: md.__setitem__("provenance", "x"), "provenance"),
        (lambda md: tensor(md, "unet.proj.weight").__setitem__("offset", tensor(md)["offset"]), "list order"),
        (lambda md: tensor(md, "prompt_embeds").__setitem__("offset", 1 << 40), "outside the payload"),
        (lambda md: tensor(md, "unet.conv_in.bias").__setitem__("shape", [6]), "raw_bytes"),
        (lambda md: tensor(md, "unet.conv_in.bias").__setitem__("k", 5), "layout torch with k"),
        (lambda md: tensor(md).__setitem__("compression", "zstd_shuffle"), "zstd_shuffle is for F32 and F16"),
        (lambda md: md.__setitem__("default_prompt_embeds", "prompt_embeds")
         or tensor(md, "prompt_embeds").update(shape=[1, 0, 8], raw_bytes=0, bytes=0), "S >= 1"),
    ]
    for fn, needle in cases:
        expect_error(open_blob(edit_metadata(blob, fn)), needle)
