#!/usr/bin/env python3
"""An independent reader for the DLoRAL runtime file (`.dlrt`, Formats/dlrt.md, version 1.x).

Written from Formats/dlrt.md alone (not from the Swift writer), with numpy and, for compressed
payloads, the `zstandard` package. As a library:

    from dlrt_reader import DlrtFile, DlrtError
    f = DlrtFile("model.dlrt")          # validates header (§2), metadata (§3), every entry (§3.1), layout and padding (§1)
    f.metadata, f.entries               # the parsed JSON object and the list of TensorEntry
    f.verify("unet.conv_in.weight")     # SHA-256 of the data region and of the scales region
    f.verify_all()
    f.raw(name)                         # stored elements (decompressed, unshuffled), numpy
    f.scales(name)                      # float32 scales, shape as stored, or None
    f.dequantized(name)                 # float32, logical (PyTorch) shape
    f.warnings                          # non-fatal departures from the spec's writer rules (§7 ...)

As a command:

    python3 Tools/dlrt/dlrt_reader.py FILE [--verify-all] [--json] [--list]

prints a summary; exit status 2 when the file is invalid (or a digest does not match with
--verify-all), 0 otherwise.
"""
import hashlib
import json
import math
import os
import re
import struct
import sys

import numpy as np

MAGIC = b"\x89DLRT\r\n\x1a"
KNOWN_MAJOR = 1
KNOWN_MINOR = 2  # §6: values unknown here are tolerated (tensor unsupported) only in newer minors
HEADER_BYTES = 128
KNOWN_FLAGS = 0  # no flag bits are defined in 1.0

DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "I8": np.dtype("i1")}
SCHEMES = ("none", "int8_channel", "int8_block")
LAYOUTS = ("torch", "rows_k32")
COMPRESSIONS = ("none", "zstd", "zstd_shuffle")
BLOCKS = (32, 64)
# §3: closed sets of the quantization block in version 1.
Q_WEIGHTS = ("int8", "fp16", "fp32")
Q_GRANULARITY = ("channel", "block32", "block64")
Q_ACTIVATIONS = ("fp32", "int8", "int16", "auto")

# Key orders the spec gives (§3, §3.1, §7: "JSON with keys in the order given here").
TOP_KEYS = ["format", "configs", "quantization", "provenance", "default_prompt_embeds", "tensors"]
QUANT_KEYS = ["weights", "int8_granularity", "keep", "policy"]
PROV_KEYS = ["tool", "version", "command", "source", "merge"]
ENTRY_KEYS = ["name", "shape", "dtype", "scheme", "layout", "block", "k", "k_padded", "offset",
              "bytes", "raw_bytes", "compression", "sha256", "scales", "sqnr_db"]
SCALES_KEYS = ["dtype", "shape", "offset", "bytes", "sha256"]
COMPONENT_ORDER = {"unet": 0, "vae": 1, "cfr": 2}

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 24


class DlrtError(Exception):
    """The file (or one tensor of it) cannot be used; the message names the file and tensor."""


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v):
    return (isinstance(v, (int, float)) and not isinstance(v, bool))


def _prod(xs):
    p = 1
    for x in xs:
        p *= x
    return p


def _round_up(x, m):
    return (x + m - 1) // m * m


def sort_key(name):
    """§7: component unet, vae, cfr, other; then name (compared as Unicode code points)."""
    comp = name.split(".", 1)[0] if "." in name else ""
    return (COMPONENT_ORDER.get(comp, 3), name)


def to_rows(w):
    """§4: logical [N, ...] -> [N, K] in rows_k32 column order (no padding).
    Conv2d [N, C, KH, KW]: W[n, c, y, x] -> column (y*KW + x)*C + c. Linear [N, C]: column c."""
    if w.ndim == 2:
        return w
    if w.ndim == 4:
        n = w.shape[0]
        return np.ascontiguousarray(w.transpose(0, 2, 3, 1)).reshape(n, -1)
    raise ValueError(f"rows_k32 is defined for rank 2 and 4 only, got shape {list(w.shape)}")


def from_rows(m, shape):
    """Inverse of to_rows: [N, K] (already without padding columns) -> logical shape."""
    if len(shape) == 2:
        return np.ascontiguousarray(m.reshape(shape))
    n, c, kh, kw = shape
    return np.ascontiguousarray(m.reshape(n, kh, kw, c).transpose(0, 3, 1, 2))


def shuffle_bytes(raw, e):
    """§5 byte shuffle: output byte j*n + i = input byte i*e + j."""
    a = np.frombuffer(raw, dtype=np.uint8)
    return a.reshape(-1, e).T.tobytes()


def unshuffle_bytes(data, e):
    a = np.frombuffer(data, dtype=np.uint8)
    return a.reshape(e, -1).T.tobytes()


def _no_dup_object(pairs):
    obj = {}
    for k, v in pairs:
        if k in obj:
            raise ValueError(f"duplicate key {k!r} in a JSON object")
        obj[k] = v
    return obj


def _reject_constant(c):
    raise ValueError(f"{c} is not valid JSON (RFC 8259)")


def _json_has_insignificant_whitespace(text):
    in_str = esc = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in " \t\n\r":
            return True
    return False


def _key_order_problem(obj, expected, where):
    if not isinstance(obj, dict):
        return None
    known = [k for k in obj if k in expected]
    want = [k for k in expected if k in obj]
    if known != want:
        return f"{where}: keys in order {known}, spec order is {want}"
    return None


class TensorEntry:
    """One §3.1 entry. `unsupported` is None or the reason (a value this reader does not know, §6)."""

    def __init__(self, d, index):
        self.json = d
        self.index = index
        self.name = d["name"]
        self.shape = d["shape"]
        self.dtype = d["dtype"]
        self.scheme = d["scheme"]
        self.layout = d["layout"]
        self.block = d["block"]
        self.k = d["k"]
        self.k_padded = d["k_padded"]
        self.offset = d["offset"]
        self.bytes = d["bytes"]
        self.raw_bytes = d["raw_bytes"]
        self.compression = d["compression"]
        self.sha256 = d["sha256"]
        self.scales = d["scales"]
        self.sqnr_db = d["sqnr_db"]
        # 1.1 (§4.1): the activation precision of an int8_channel layer; None means fp32.
        self.activations = d.get("activations")
        self.unsupported = None

    @property
    def rows(self):
        return self.shape[0]

    def stored_shape(self):
        if self.layout == "rows_k32":
            return [self.shape[0], self.k_padded]
        return list(self.shape)

    def summary(self):
        s = f"{self.name} {self.shape} {self.dtype}/{self.scheme}/{self.layout}"
        if self.scheme == "int8_block":
            s += f"/block{self.block}"
        if self.compression != "none":
            s += f" {self.compression}"
        s += f" {self.bytes} B"
        if self.unsupported:
            s += f" UNSUPPORTED ({self.unsupported})"
        return s


class DlrtFile:
    def __init__(self, path):
        self.path = str(path)
        self.warnings = []
        self._verified = set()
        self._fd = None
        try:
            self._fd = os.open(self.path, os.O_RDONLY)
        except OSError as e:
            raise DlrtError(f"{self.path}: cannot open: {e.strerror}") from None
        try:
            self._size = os.fstat(self._fd).st_size
            self._read_header()
            self._read_metadata()
            self._read_entries()
            self._check_layout()
            self._check_policy()
        except Exception:
            self.close()
            raise

    # ---- plumbing -------------------------------------------------------------------------
    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def _err(self, msg, tensor=None):
        where = f"{self.path}: tensor {tensor!r}: " if tensor is not None else f"{self.path}: "
        return DlrtError(where + msg)

    def _warn(self, msg):
        self.warnings.append(msg)

    def _pread(self, offset, n):
        out = bytearray()
        while len(out) < n:
            chunk = os.pread(self._fd, min(n - len(out), 1 << 30), offset + len(out))
            if not chunk:
                raise self._err(f"unexpected end of file reading [{offset}, {offset + n})")
            out += chunk
        return bytes(out)

    def _sha256_region(self, offset, n):
        h = hashlib.sha256()
        pos = 0
        while pos < n:
            chunk = self._pread(offset + pos, min(_CHUNK, n - pos))
            h.update(chunk)
            pos += len(chunk)
        return h.hexdigest()

    # ---- §2 header ------------------------------------------------------------------------
    def _read_header(self):
        head = os.pread(self._fd, HEADER_BYTES, 0)
        if len(head) < 8 or head[:8] != MAGIC:
            raise self._err(f"bad magic {head[:8].hex(' ')} (expected {MAGIC.hex(' ')}): not a .dlrt file"
                            + (" (or truncated)" if len(head) < 8 else ""))
        if len(head) < 10:
            raise self._err(f"truncated: {self._size} bytes, shorter than the 128-byte header")
        major, = struct.unpack_from("<H", head, 8)
        if major != KNOWN_MAJOR:
            raise self._err(f"major version {major} is not supported (this reader knows {KNOWN_MAJOR})")
        if len(head) < HEADER_BYTES:
            raise self._err(f"truncated: {self._size} bytes, shorter than the 128-byte header")
        (minor, header_bytes, file_bytes, md_off, md_bytes, pl_off, pl_bytes,
         flags) = struct.unpack_from("<HIQQQQQQ", head, 10)
        self.major, self.minor = major, minor
        if header_bytes != HEADER_BYTES:
            raise self._err(f"header_bytes is {header_bytes}, expected 128")
        if file_bytes != self._size:
            kind = "truncated" if self._size < file_bytes else "extended"
            raise self._err(f"file_bytes says {file_bytes} but the file is {self._size} bytes ({kind})")
        # ranges
        if md_off != HEADER_BYTES:
            raise self._err(f"metadata_offset is {md_off}, expected 128")
        if md_off + md_bytes > file_bytes:
            raise self._err(f"metadata [{md_off}, {md_off + md_bytes}) extends past the end of the file ({file_bytes})")
        if pl_off % 64:
            raise self._err(f"payload_offset {pl_off} is not a multiple of 64")
        if pl_off < md_off + md_bytes:
            raise self._err(f"payload_offset {pl_off} overlaps the metadata [{md_off}, {md_off + md_bytes})")
        if pl_off > file_bytes:
            raise self._err(f"payload_offset {pl_off} is past the end of the file ({file_bytes})")
        if pl_bytes != file_bytes - pl_off:
            raise self._err(f"payload_bytes is {pl_bytes}, expected file_bytes - payload_offset = {file_bytes - pl_off}")
        if flags & ~KNOWN_FLAGS:
            raise self._err(f"unknown flag bits 0x{flags & ~KNOWN_FLAGS:x} (flags 0x{flags:x})")
        self._metadata_bytes = self._pread(md_off, md_bytes)
        digest = hashlib.sha256(head[:96] + self._metadata_bytes).digest()
        if digest != head[96:128]:
            raise self._err(f"header_sha256 mismatch (stored {head[96:128].hex()}, computed {digest.hex()}): "
                            "header or metadata damaged")
        if any(head[64:96]):
            self._warn("reserved header bytes [64, 96) are not zero")
        self.header = {
            "major_version": major, "minor_version": minor, "header_bytes": header_bytes,
            "file_bytes": file_bytes, "metadata_offset": md_off, "metadata_bytes": md_bytes,
            "payload_offset": pl_off, "payload_bytes": pl_bytes, "flags": flags,
            "header_sha256": head[96:128].hex(),
        }
        self.file_bytes, self.payload_offset = file_bytes, pl_off

    # ---- §3 metadata ----------------------------------------------------------------------
    def _read_metadata(self):
        raw = self._metadata_bytes
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise self._err(f"metadata is not UTF-8: {e}") from None
        if text.startswith("\ufeff"):
            raise self._err("metadata starts with a byte order mark (not RFC 8259 JSON text for interchange)")
        try:
            md = json.loads(text, object_pairs_hook=_no_dup_object, parse_constant=_reject_constant)
        except ValueError as e:
            raise self._err(f"metadata is not valid JSON: {e}") from None
        if not isinstance(md, dict):
            raise self._err("metadata is not a JSON object")
        if md.get("format") != "dlrt":
            raise self._err(f"metadata format is {md.get('format')!r}, expected 'dlrt'")
        if not isinstance(md.get("tensors"), list):
            raise self._err("metadata has no 'tensors' list")
        if not md["tensors"]:
            raise self._err("metadata lists no tensors")
        for key in TOP_KEYS:
            if key not in md:
                raise self._err(f"metadata lacks the key {key!r}")
        if not isinstance(md["configs"], dict) or not isinstance(md["configs"].get("unet"), dict):
            raise self._err("metadata configs must be an object with a 'unet' object")
        if not isinstance(md["provenance"], dict):
            raise self._err("metadata provenance must be an object")
        q = md["quantization"]
        if not isinstance(q, dict):
            raise self._err("metadata quantization must be an object")
        for key, allowed, required in (("weights", Q_WEIGHTS, True), ("int8_granularity", Q_GRANULARITY, True),
                                       ("activations", Q_ACTIVATIONS, False)):
            if key not in q and not required:
                continue
            if q.get(key) not in allowed:
                raise self._err(f"quantization {key} is {q.get(key)!r}, not one of {', '.join(allowed)}")
        if not isinstance(q.get("keep"), list) or not all(isinstance(g, str) for g in q["keep"]):
            raise self._err(f"quantization keep is {q.get('keep')!r}, expected a list of globs")
        if not isinstance(q.get("policy"), str):
            raise self._err(f"quantization policy is {q.get('policy')!r}, expected a string")
        if _json_has_insignificant_whitespace(text):
            self._warn("metadata JSON has insignificant whitespace (§7)")
        for obj, keys, where in ((md, TOP_KEYS, "metadata"), (md.get("quantization"), QUANT_KEYS, "quantization"),
                                 (md.get("provenance"), PROV_KEYS, "provenance")):
            p = _key_order_problem(obj, keys, where)
            if p:
                self._warn(p)
        dpe = md.get("default_prompt_embeds")
        if dpe is not None and not isinstance(dpe, str):
            raise self._err(f"default_prompt_embeds is {dpe!r}, expected a tensor name or null")
        self.metadata = md

    # ---- §3.1 entries ---------------------------------------------------------------------
    def _read_entries(self):
        self.entries = []
        self._by_name = {}
        order_problem = False
        for i, d in enumerate(self.metadata["tensors"]):
            if not isinstance(d, dict):
                raise self._err(f"tensors[{i}] is not an object")
            name = d.get("name")
            if not isinstance(name, str) or not name:
                raise self._err(f"tensors[{i}] has no name")
            if name in self._by_name:
                raise self._err("listed twice", name)
            missing = [k for k in ENTRY_KEYS if k not in d]
            if missing:
                raise self._err(f"entry lacks {missing}", name)
            if not order_problem:
                p = _key_order_problem(d, ENTRY_KEYS, f"tensor {name!r}")
                if p is None and isinstance(d.get("scales"), dict):
                    p = _key_order_problem(d["scales"], SCALES_KEYS, f"tensor {name!r} scales")
                if p:
                    self._warn(p + " (further key-order problems not reported)")
                    order_problem = True
            e = TensorEntry(d, i)
            self._validate_entry(e)
            self.entries.append(e)
            self._by_name[name] = e
        dpe = self.metadata.get("default_prompt_embeds")
        if dpe is not None and dpe not in self._by_name:
            raise self._err(f"default_prompt_embeds names {dpe!r}, which is not a tensor of the file")
        if dpe is not None and not self._by_name[dpe].unsupported:
            e = self._by_name[dpe]
            if not (e.dtype == "F32" and e.scheme == "none" and len(e.shape) == 3 and e.shape[0] == 1
                    and e.shape[1] >= 1 and e.shape[2] >= 1):
                raise self._err(f"default prompt embeddings {e.dtype} {e.shape}, expected F32 [1, S >= 1, C]", dpe)
        configs = self.metadata["configs"]
        for comp in ("vae", "cfr"):
            if any(e.name.startswith(comp + ".") for e in self.entries) and not isinstance(configs.get(comp), dict):
                raise self._err(f"metadata configs has no {comp!r} object, and the file holds {comp} tensors")
        # Tensors sorted by (component, name) (§7); payload order is checked by _check_layout.
        names = [e.name for e in self.entries]
        if names != sorted(names, key=sort_key):
            bad = next(i for i in range(1, len(names)) if sort_key(names[i]) < sort_key(names[i - 1]))
            self._warn(f"tensors are not sorted by (component, name) (§7): {names[bad]!r} follows {names[bad - 1]!r}")

    def _validate_entry(self, e):
        n = e.name

        def bad(msg):
            return self._err(msg, n)

        if not isinstance(e.shape, list) or not all(_is_int(x) and x >= 0 for x in e.shape):
            raise bad(f"shape {e.json['shape']!r} is not a list of non-negative integers")
        for key in ("block", "k", "k_padded", "offset", "bytes", "raw_bytes"):
            v = e.json[key]
            if not _is_int(v) or v < 0:
                raise bad(f"{key} is {v!r}, expected a non-negative integer")
        for key in ("dtype", "scheme", "layout", "compression"):
            if not isinstance(e.json[key], str):
                raise bad(f"{key} is {e.json[key]!r}, expected a string")
        if not isinstance(e.sha256, str) or not _HEX64.match(e.sha256):
            raise bad(f"sha256 {e.sha256!r} is not 64 lowercase hex characters")
        if e.sqnr_db is not None and not _is_number(e.sqnr_db):
            raise bad(f"sqnr_db is {e.sqnr_db!r}, expected a number or null")
        if e.scales is not None and not isinstance(e.scales, dict):
            raise bad(f"scales is {e.scales!r}, expected an object or null")
        if e.activations is not None:
            if e.activations not in ("int8", "int16"):
                self._unknown(e, f"unknown activations {e.activations!r}")
            elif e.json["scheme"] not in ("int8_channel", "int8_block") or e.json["layout"] != "rows_k32":
                raise bad(f"activations {e.activations!r} set on a tensor that is not an int8 rows_k32 matrix")
            elif e.json["scheme"] == "int8_block" and e.activations != "int8":
                # §4.3 (1.2): block scales run int8 activations only.
                self._unknown(e, f"activations {e.activations!r} on an int8_block tensor")
        self._check_region(e.offset, e.bytes, n, "data")
        if isinstance(e.scales, dict):
            s = e.scales
            for key in SCALES_KEYS:
                if key not in s:
                    raise bad(f"scales lacks {key!r}")
            for key in ("offset", "bytes"):
                if not _is_int(s[key]) or s[key] < 0:
                    raise bad(f"scales {key} is {s[key]!r}, expected a non-negative integer")
            if not isinstance(s["sha256"], str) or not _HEX64.match(s["sha256"]):
                raise bad(f"scales sha256 {s['sha256']!r} is not 64 lowercase hex characters")
            if not isinstance(s["shape"], list) or not all(_is_int(x) and x >= 0 for x in s["shape"]):
                raise bad(f"scales shape {s['shape']!r} is not a list of non-negative integers")
            self._check_region(s["offset"], s["bytes"], n, "scales")
        if e.compression == "none" and e.bytes != e.raw_bytes:
            raise bad(f"compression none but bytes {e.bytes} != raw_bytes {e.raw_bytes}")

        # §6: an unknown value makes only this tensor unreadable, in a newer minor version.
        for key, known in (("dtype", DTYPES), ("scheme", SCHEMES), ("layout", LAYOUTS),
                           ("compression", COMPRESSIONS)):
            if e.json[key] not in known:
                self._unknown(e, f"unknown {key} {e.json[key]!r}")
                return
        if e.scales is not None and e.scales.get("dtype") != "F32":
            self._unknown(e, f"unknown scales dtype {e.scales.get('dtype')!r}")
            return
        if e.unsupported:
            return
        if e.compression != "none" and e.bytes == 0:
            raise bad(f"compression {e.compression} with an empty region (a zstd frame is never empty)")
        if e.compression == "zstd_shuffle" and e.dtype not in ("F32", "F16"):
            raise bad(f"zstd_shuffle is for F32 and F16, not {e.dtype}")

        # Known values: everything must agree.
        esize = DTYPES[e.dtype].itemsize
        if e.scheme == "none":
            if e.layout != "torch":
                raise bad(f"scheme none with layout {e.layout}: rows_k32 is for int8 weights (§4)")
            if e.block != 0:
                raise bad(f"scheme none but block {e.block} (expected 0)")
            if e.scales is not None:
                raise bad("scheme none but scales present")
        else:
            if e.dtype != "I8":
                raise bad(f"scheme {e.scheme} needs dtype I8, got {e.dtype}")
            if e.layout != "rows_k32":
                raise bad(f"scheme {e.scheme} with layout {e.layout}: int8 weights are defined in rows_k32 only (§4)")
            if e.scales is None:
                raise bad(f"scheme {e.scheme} without scales")
            if e.scheme == "int8_channel" and e.block != 0:
                raise bad(f"int8_channel but block {e.block} (expected 0)")
            if e.scheme == "int8_block" and e.block not in BLOCKS:
                raise bad(f"int8_block with block {e.block} (expected 32 or 64)")
        if e.layout == "rows_k32":
            if len(e.shape) not in (2, 4):
                raise bad(f"layout rows_k32 with rank-{len(e.shape)} shape {e.shape}: defined for Linear [N, C] "
                          "and Conv2d [N, C, KH, KW] only")
            k = _prod(e.shape[1:])
            if e.k != k:
                raise bad(f"k is {e.k}, expected product of shape[1:] = {k}")
            align = 32 if e.scheme != "int8_block" else (32 * e.block // math.gcd(32, e.block))
            kp = _round_up(k, align)
            if e.k_padded != kp:
                raise bad(f"k_padded is {e.k_padded}, expected K = {k} rounded up to a multiple of {align} = {kp}")
            count = e.shape[0] * kp
        else:
            if e.k != 0 or e.k_padded != 0:
                raise bad(f"layout torch with k {e.k}, k_padded {e.k_padded} (expected 0)")
            count = _prod(e.shape)
        if e.raw_bytes != count * esize:
            what = (f"{e.shape[0]} x {e.k_padded}" if e.layout == "rows_k32" else f"{e.shape}")
            raise bad(f"raw_bytes is {e.raw_bytes}, expected {what} elements x {esize} B = {count * esize}")
        if e.scheme != "none":
            nrows = e.shape[0]
            want = [nrows] if e.scheme == "int8_channel" else [nrows, e.k_padded // e.block]
            if e.scales["shape"] != want:
                raise bad(f"scales shape {e.scales['shape']}, expected {want}")
            if e.scales["bytes"] != 4 * _prod(want):
                raise bad(f"scales bytes {e.scales['bytes']}, expected {4 * _prod(want)} (F32 x {want})")

    def _check_region(self, off, n, tensor, what):
        if off % 64:
            raise self._err(f"{what} offset {off} is not a multiple of 64", tensor)
        if off < self.payload_offset or off + n > self.file_bytes:
            raise self._err(f"{what} region [{off}, {off + n}) is outside the payload "
                            f"[{self.payload_offset}, {self.file_bytes})", tensor)

    def _regions(self):
        out = []
        for e in self.entries:
            out.append((e.offset, e.bytes, e.name, "data"))
            if isinstance(e.scales, dict):
                out.append((e.scales["offset"], e.scales["bytes"], e.name, "scales"))
        return out

    def _unknown(self, e, why):
        """§6: a value this reader does not know. Tolerated (the tensor is unsupported) only in a
        file of a newer minor version; in one this reader knows, it is damage."""
        if self.minor <= KNOWN_MINOR:
            raise self._err(f"{why} in a {self.major}.{self.minor} file (damaged or forged metadata)", e.name)
        e.unsupported = why

    def _zero_span(self, start, end, what):
        pos = start
        while pos < end:
            chunk = self._pread(pos, min(_CHUNK, end - pos))
            if any(chunk):
                first = pos + next(i for i, c in enumerate(chunk) if c)
                raise self._err(f"{what} [{start}, {end}) is not all zero (byte {first})")
            pos += len(chunk)

    def _check_layout(self):
        """§1: regions in list order, each at the next multiple of 64 after the previous one (the
        first at payload_offset), the file ending at the last one's end rounded up to 64; every
        byte in between (and after the metadata) zero."""
        md_end = self.header["metadata_offset"] + self.header["metadata_bytes"]
        self._zero_span(md_end, self.payload_offset, "padding after the metadata")
        nxt = end = self.payload_offset
        for off, n, name, what in self._regions():
            if off != nxt:
                how = "overlaps the previous region or is out of list order" if off < nxt else \
                    "leaves a gap after the previous region"
                raise self._err(f"{what} region at {off} {how}: regions follow one another in list order, "
                                f"so it must start at {nxt}", name)
            self._zero_span(end, off, f"padding before the {what} of {name!r}")
            end = off + n
            nxt = _round_up(end, 64)
        if self.file_bytes != nxt:
            raise self._err(f"the file has {self.file_bytes} bytes but its last region ends at {end}, "
                            f"so it must end at {nxt}")
        self._zero_span(end, nxt, "padding after the last region")

    def _check_policy(self):
        """§3: the tensors are stored as the quantization block says."""
        q = self.metadata["quantization"]
        weights, gran = q["weights"], q["int8_granularity"]
        acts = q.get("activations", "fp32")
        for e in self.entries:
            if e.unsupported:
                continue
            int8 = e.scheme in ("int8_channel", "int8_block")
            if (weights in ("fp32", "fp16") and int8) or (e.dtype == "F16" and weights in ("fp32", "int8")):
                raise self._err(f"{e.dtype} {e.scheme} in a file whose weights are {weights}", e.name)
            if e.scheme == "int8_channel" and gran != "channel":
                raise self._err(f"int8_channel in a file of granularity {gran}", e.name)
            if e.scheme == "int8_block" and gran != f"block{e.block}":
                raise self._err(f"int8_block of block {e.block} in a file of granularity {gran}", e.name)
            if e.activations is not None and acts == "fp32":
                raise self._err("per-tensor activations in a file whose activations are fp32", e.name)

    # ---- tensors --------------------------------------------------------------------------
    def entry(self, name):
        e = self._by_name.get(name)
        if e is None:
            raise self._err("no such tensor", name)
        return e

    def names(self):
        return [e.name for e in self.entries]

    def _read_checked(self, off, n, want, name, what):
        data = self._pread(off, n)
        got = hashlib.sha256(data).hexdigest()
        if got != want:
            raise self._err(f"{what} sha256 mismatch (stored {want}, computed {got})", name)
        return data

    def verify(self, name):
        """SHA-256 of the data region and of the scales region against the entry."""
        e = self.entry(name)
        got = self._sha256_region(e.offset, e.bytes)
        if got != e.sha256:
            raise self._err(f"data sha256 mismatch (stored {e.sha256}, computed {got})", name)
        if isinstance(e.scales, dict):
            got = self._sha256_region(e.scales["offset"], e.scales["bytes"])
            if got != e.scales["sha256"]:
                raise self._err(f"scales sha256 mismatch (stored {e.scales['sha256']}, computed {got})", name)
        self._verified.add(name)
        return True

    def verify_all(self):
        for e in self.entries:
            self.verify(e.name)
        return True

    def _require_supported(self, e):
        if e.unsupported:
            raise self._err(f"unsupported by this reader: {e.unsupported}", e.name)

    def raw(self, name):
        """The stored elements (verified, decompressed, unshuffled): torch layout in `shape`,
        rows_k32 as [N, k_padded]."""
        e = self.entry(name)
        self._require_supported(e)
        if name in self._verified:
            data = self._pread(e.offset, e.bytes)
        else:
            data = self._read_checked(e.offset, e.bytes, e.sha256, name, "data")
        dt = DTYPES[e.dtype]
        if e.compression in ("zstd", "zstd_shuffle"):
            data = self._decompress(data, e)
            if e.compression == "zstd_shuffle" and dt.itemsize > 1:
                data = unshuffle_bytes(data, dt.itemsize)
        if len(data) != e.raw_bytes:
            raise self._err(f"region holds {len(data)} bytes, raw_bytes says {e.raw_bytes}", name)
        if name not in self._verified and not isinstance(e.scales, dict):
            self._verified.add(name)
        return np.frombuffer(data, dtype=dt).reshape(e.stored_shape())

    def _decompress(self, data, e):
        try:
            import zstandard
        except ImportError:
            raise self._err("compressed tensor but the 'zstandard' package is not installed "
                            "(pip install zstandard)", e.name) from None
        try:
            params = zstandard.get_frame_parameters(data)
            if params.content_size not in (zstandard.CONTENTSIZE_UNKNOWN, e.raw_bytes):
                raise self._err(f"zstd frame says content size {params.content_size}, raw_bytes is {e.raw_bytes}",
                                e.name)
            dobj = zstandard.ZstdDecompressor().decompressobj()
            out = dobj.decompress(data)
            if not dobj.eof:
                raise self._err("zstd frame is incomplete", e.name)
            if dobj.unused_data:
                raise self._err(f"{len(dobj.unused_data)} bytes follow the zstd frame (one frame expected)", e.name)
        except zstandard.ZstdError as err:
            raise self._err(f"zstd decompression failed: {err}", e.name) from None
        return out

    def scales(self, name):
        """The F32 scales as stored ([N] or [N, k_padded/block]), or None for scheme none."""
        e = self.entry(name)
        self._require_supported(e)
        if not isinstance(e.scales, dict):
            return None
        s = e.scales
        data = self._read_checked(s["offset"], s["bytes"], s["sha256"], name, "scales")
        return np.frombuffer(data, dtype="<f4").reshape(s["shape"])

    def dequantized(self, name):
        """float32 in the logical (PyTorch) shape: ŵ = q·s for int8, the stored value otherwise."""
        e = self.entry(name)
        q = self.raw(name)
        if e.scheme == "none":
            m = q.astype(np.float32)
        else:
            s = self.scales(name)
            self._verified.add(name)
            if e.scheme == "int8_channel":
                m = q.astype(np.float32) * s[:, None]
            else:
                nb = e.k_padded // e.block
                m = (q.astype(np.float32).reshape(e.rows, nb, e.block) * s[:, :, None]).reshape(e.rows, e.k_padded)
        if e.layout == "rows_k32":
            return from_rows(m[:, :e.k], e.shape)
        return m.reshape(e.shape)

    def summary(self):
        counts = {}
        for e in self.entries:
            key = f"{e.dtype}/{e.scheme}" + (f"{e.block}" if e.scheme == "int8_block" else "")
            counts[key] = counts.get(key, 0) + 1
        q = self.metadata.get("quantization") or {}
        return {
            "file": self.path,
            "version": f"{self.major}.{self.minor}",
            "file_bytes": self.file_bytes,
            "metadata_bytes": self.header["metadata_bytes"],
            "payload_offset": self.payload_offset,
            "payload_bytes": self.header["payload_bytes"],
            "tensors": len(self.entries),
            "stored_bytes": sum(e.bytes + (e.scales["bytes"] if isinstance(e.scales, dict) else 0)
                                for e in self.entries),
            "raw_bytes": sum(e.raw_bytes for e in self.entries),
            "kinds": counts,
            "quantization": {k: q.get(k) for k in ("weights", "int8_granularity", "keep") if k in q},
            "default_prompt_embeds": self.metadata.get("default_prompt_embeds"),
            "unsupported": {e.name: e.unsupported for e in self.entries if e.unsupported},
            "warnings": list(self.warnings),
        }


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description="Read and check a .dlrt file (Formats/dlrt.md).")
    ap.add_argument("file")
    ap.add_argument("--verify-all", action="store_true", help="check every tensor's SHA-256 (and its scales')")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--list", action="store_true", help="list every tensor")
    a = ap.parse_args(argv)
    try:
        f = DlrtFile(a.file)
    except DlrtError as e:
        if a.json:
            print(json.dumps({"file": a.file, "valid": False, "error": str(e)}))
        else:
            print(f"invalid: {e}", file=sys.stderr)
        return 2
    status, error = 0, None
    if a.verify_all:
        try:
            f.verify_all()
        except DlrtError as e:
            status, error = 2, str(e)
    s = f.summary()
    s["valid"] = status == 0
    if a.verify_all:
        s["verified"] = status == 0
    if error:
        s["error"] = error
    if a.list:
        s["entries"] = [e.json for e in f.entries]
    if a.json:
        print(json.dumps(s))
    else:
        print(f"{s['file']}: dlrt {s['version']}, {s['file_bytes']} bytes "
              f"(metadata {s['metadata_bytes']}, payload {s['payload_bytes']} at {s['payload_offset']})")
        print(f"  {s['tensors']} tensors, {s['stored_bytes']} bytes stored, {s['raw_bytes']} raw; "
              + ", ".join(f"{k} x{v}" for k, v in sorted(s["kinds"].items())))
        if s["quantization"]:
            print(f"  quantization: {json.dumps(s['quantization'])}")
        print(f"  default_prompt_embeds: {s['default_prompt_embeds']}")
        for name, why in s["unsupported"].items():
            print(f"  unsupported: {name}: {why}")
        for w in s["warnings"]:
            print(f"  warning: {w}")
        if a.list:
            for e in f.entries:
                print(f"  {e.summary()}")
        if a.verify_all:
            print("  verify-all: " + ("ok" if status == 0 else f"FAILED: {error}"))
    f.close()
    return status


if __name__ == "__main__":
    sys.exit(main())
