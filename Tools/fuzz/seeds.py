#!/usr/bin/env python3
"""Seed corpora for the fuzz targets (Tools/fuzz, FUZZING.md), built from the committed fixtures.

    python3 Tools/fuzz/seeds.py <target> <folder>

safetensors, torch-zip: the fixture files themselves (small ones), plus, for safetensors,
shrunken copies of the tiny model's files (their real headers with 2-element tensors, so that a
mutation lands in the header rather than in megabytes of weights).
pickle: the data.pkl streams of the fixture checkpoints (the target wraps them in a zip).
onnx: the bad-ONNX fixtures plus small models written here field by field (protobuf wire
format), with every attribute type and initializers in raw, typed and external data
(`weights.bin`, which the target provides).
png: images of every colour type and bit depth, interlaced or not, written with zlib.
jpeg: the JPEGs of Tests/Fixtures/jpeg (written by Pillow: baseline, progressive, every
subsampling, RGB, grayscale, CMYK, truncated).
dlrt: written by the target itself (`DLORAL_FUZZ_WRITE_SEEDS`), see run.sh.
Only the standard library is used.
"""
import glob
import json
import os
import shutil
import struct
import sys
import zipfile
import zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
FIXTURES = os.path.join(ROOT, "Tests", "Fixtures")


def fixtures(pattern, max_bytes):
    paths = sorted(glob.glob(os.path.join(FIXTURES, pattern), recursive=True))
    return [p for p in paths if os.path.isfile(p) and os.path.getsize(p) <= max_bytes]


def copy_all(paths, out):
    for p in paths:
        rel = os.path.relpath(p, FIXTURES).replace(os.sep, "_")
        shutil.copyfile(p, os.path.join(out, rel))


# --- safetensors -------------------------------------------------------------------------------

DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def shrunk_safetensors(path, limit=48):
    """The file's header (names, dtypes, metadata) with every tensor made [2] (or [1, 2])."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    out, offset = {}, 0
    if "__metadata__" in header:
        out["__metadata__"] = header["__metadata__"]
    for i, (name, info) in enumerate((k, v) for k, v in header.items() if k != "__metadata__"):
        if i >= limit:
            break
        size = 2 * DTYPE_BYTES[info["dtype"]]
        shape = [2] if i % 2 == 0 else [1, 2]
        out[name] = {"dtype": info["dtype"], "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(out, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + bytes((i * 37) & 0xFF for i in range(offset))


def seeds_safetensors(out):
    copy_all(fixtures("bad/st_*.safetensors", 1 << 16), out)
    copy_all(fixtures("tiny/cfr_debug.safetensors", 1 << 17), out)
    for p in (fixtures("tiny/**/*.safetensors", 1 << 40) + fixtures("torch/*.safetensors", 1 << 40))[:40]:
        name = os.path.relpath(p, FIXTURES).replace(os.sep, "_") + ".shrunk"
        with open(os.path.join(out, name), "wb") as f:
            f.write(shrunk_safetensors(p))


# --- PyTorch zip and pickle ---------------------------------------------------------------------

def torch_checkpoints():
    return fixtures("bad/pt_*.pt", 1 << 16) + fixtures("torch/**/*.pt", 1 << 17)


def seeds_torch_zip(out):
    copy_all(torch_checkpoints(), out)


def seeds_pickle(out):
    for p in torch_checkpoints():
        try:
            archive = zipfile.ZipFile(p)
        except zipfile.BadZipFile:
            continue
        with archive:
            for info in archive.infolist():
                if info.filename.endswith("data.pkl") and info.file_size <= 1 << 16:
                    try:
                        data = archive.read(info)
                    except Exception:  # a fixture broken on purpose
                        continue
                    name = os.path.relpath(p, FIXTURES).replace(os.sep, "_") + ".pkl"
                    with open(os.path.join(out, name), "wb") as f:
                        f.write(data)


# --- ONNX (protobuf wire format by hand) --------------------------------------------------------

def varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number, value):
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    if isinstance(value, str):
        value = value.encode()
    return varint(number << 3 | 2) + varint(len(value)) + value


def fixed32(number, f):
    return varint(number << 3 | 5) + struct.pack("<f", f)


def packed(number, fmt, values):
    return field(number, b"".join(struct.pack(fmt, v) for v in values))


def packed_varints(number, values):
    return field(number, b"".join(varint(v) for v in values))


def tensor(name, dims, data_type, **kw):
    t = b"".join(field(1, d) for d in dims) + field(2, data_type) + field(8, name)
    if "raw" in kw:
        t += field(9, kw["raw"])
    if "floats" in kw:
        t += packed(4, "<f", kw["floats"])
    if "int64s" in kw:
        t += packed_varints(7, kw["int64s"])
    if "int32s" in kw:
        t += packed_varints(5, kw["int32s"])
    if "doubles" in kw:
        t += packed(10, "<d", kw["doubles"])
    if "external" in kw:
        for key, value in kw["external"]:
            t += field(13, field(1, key) + field(2, value))
        t += field(14, 1)
    return t


def node(op, inputs, outputs, name, attributes=b""):
    return b"".join(field(1, i) for i in inputs) + b"".join(field(2, o) for o in outputs) + \
        field(3, name) + field(4, op) + attributes


def attribute(name, kind, value):
    a = field(1, name) + field(20, kind)
    if kind == 1:
        a += fixed32(2, value)
    elif kind == 2:
        a += field(3, value)
    elif kind == 3:
        a += field(4, value)
    elif kind == 6:
        a += packed(7, "<f", value)
    elif kind == 7:
        a += packed_varints(8, value)
    return field(5, a)


def model(graph, opset=17, metadata=()):
    m = field(1, 8) + field(2, "pytorch") + field(3, "2.1") + field(8, field(1, "") + field(2, opset))
    m += field(7, graph)
    for k, v in metadata:
        m += field(14, field(1, k) + field(2, v))
    return m


def seeds_onnx(out):
    copy_all(fixtures("bad/onnx_*.onnx", 1 << 16), out)
    f32 = struct.pack("<4f", 1, 2, 3, 4)
    nodes = (
        field(1, node("Conv", ["x", "unet.conv_in.weight", "unet.conv_in.bias"], ["y"], "/conv_in/Conv",
                      attribute("kernel_shape", 7, [3, 3]) + attribute("pads", 7, [1, 1, 1, 1])
                      + attribute("group", 2, 1)))
        + field(1, node("MatMul", ["y", "onnx::MatMul_42"], ["z"], "/to_q/MatMul"))
        + field(1, node("GroupNormalization", ["z", "gn.scale", "gn.bias"], ["w"], "/norm/GroupNorm",
                        attribute("epsilon", 1, 1e-5) + attribute("num_groups", 2, 2)
                        + attribute("mode", 3, b"x") + attribute("alpha", 6, [0.5, 1.5])))
    )
    inits = (
        field(5, tensor("unet.conv_in.weight", [1, 1, 2, 2], 1, raw=f32))
        + field(5, tensor("unet.conv_in.bias", [1], 1, floats=[0.5]))
        + field(5, tensor("onnx::MatMul_42", [2, 2], 10, raw=struct.pack("<4H", 0x3C00, 0, 0, 0x3C00)))
        + field(5, tensor("gn.scale", [2], 11, doubles=[1.0, 2.0]))
        + field(5, tensor("gn.bias", [2], 7, int64s=[1, 2]))
        + field(5, tensor("shape_const", [2], 6, int32s=[3, 4]))
        + field(5, tensor("ext.weight", [4, 4], 1, external=[("location", "weights.bin"), ("offset", "64"), ("length", "64")]))
        + field(5, tensor("ext.bias", [4], 1, external=[("location", "weights.bin")]))
    )
    io = field(11, field(1, "x")) + field(12, field(1, "w"))
    graphs = {
        "full": nodes + field(2, "main_graph") + inits + io,
        "initializers": field(2, "g") + inits,
        "nodes": nodes + field(2, "g") + io,
        "external": field(2, "g") + field(5, tensor("ext.weight", [4, 4], 1, external=[("location", "weights.bin"), ("offset", "128"), ("length", "64"), ("checksum", "0" * 40)])),
    }
    for name, graph in graphs.items():
        with open(os.path.join(out, f"gen_{name}.onnx"), "wb") as f:
            f.write(model(graph, metadata=[("source", "seed")] if name == "full" else []))


# --- PNG ----------------------------------------------------------------------------------------

def png(width, height, color_type, bit_depth, interlace=0, extra=b""):
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color_type]
    bits_per_pixel = channels * bit_depth

    def rows(w, h, y0=0):
        raw = bytearray()
        row_bytes = (w * bits_per_pixel + 7) // 8
        for y in range(h):
            raw.append((y + y0) % 5)  # every filter type
            raw += bytes(((x * 29 + (y + y0) * 13) & 0xFF) for x in range(row_bytes))
        return bytes(raw)

    if interlace:
        passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
        data = b""
        for x0, y0, dx, dy in passes:
            w = (width - x0 + dx - 1) // dx if width > x0 else 0
            h = (height - y0 + dy - 1) // dy if height > y0 else 0
            if w and h:
                data += rows(w, h)
    else:
        data = rows(width, height)

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, interlace))
    if color_type == 3:
        out += chunk(b"PLTE", bytes(range(48)))
        out += chunk(b"tRNS", bytes([0, 128, 255]))
    out += extra and chunk(extra[:4], extra[4:])
    out += chunk(b"IDAT", zlib.compress(data, 9)) + chunk(b"IEND", b"")
    return out


def seeds_png(out):
    cases = [
        (4, 3, 2, 8, 0, b""), (5, 4, 6, 8, 0, b"gAMA\x00\x00\xb1\x8f"), (7, 3, 0, 1, 0, b""),
        (6, 5, 0, 16, 1, b""), (9, 9, 3, 4, 0, b""), (3, 3, 4, 8, 0, b"tEXtkey\x00value"),
        (8, 8, 2, 16, 1, b"sRGB\x00"), (2, 2, 3, 2, 1, b""), (1, 1, 6, 16, 0, b""), (16, 8, 2, 8, 1, b""),
    ]
    for i, (w, h, ct, bd, il, extra) in enumerate(cases):
        with open(os.path.join(out, f"gen_{w}x{h}_ct{ct}_{bd}bit{'_interlaced' if il else ''}.png"), "wb") as f:
            f.write(png(w, h, ct, bd, il, extra))


# --- jpeg --------------------------------------------------------------------------------------

def seeds_jpeg(out):
    copy_all(fixtures("jpeg/**/*.jpg", 8192), out)


if __name__ == "__main__":
    target, folder = sys.argv[1], sys.argv[2]
    os.makedirs(folder, exist_ok=True)
    {"safetensors": seeds_safetensors, "torch-zip": seeds_torch_zip, "pickle": seeds_pickle,
     "onnx": seeds_onnx, "png": seeds_png, "jpeg": seeds_jpeg}[target](folder)
