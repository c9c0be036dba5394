#!/usr/bin/env python3
"""Checks a .dlrt file against the fp32 merged diffusers folder it was made from, with numpy,
safetensors and the independent reader dlrt_reader.py (Formats/dlrt.md) only.

    python3 Tools/dlrt/check_dlrt.py FILE.dlrt MERGED_FOLDER [--prompt-embeds FILE] [--allow-warnings]

MERGED_FOLDER holds unet/diffusion_pytorch_model.safetensors, vae/diffusion_pytorch_model.safetensors,
cfr/model.safetensors (+ config.json each, and dloral.json); tensors are `unet.<name>`, `vae.<name>`,
`cfr.<name>`. For every tensor: its digests (data and scales); the storage the §4 policy asks for
(from the file's own `quantization` block); then
  none/F32      bit-identical to the source;
  none/F16      bit-identical to numpy's source.astype(float16);
  int8_*        scales = §4's rule recomputed with numpy (max|w| / float32(127) per row or block
                of the padded rows_k32 order, 1 where all zero), exactly; q = clip(round(w / s), ±127)
                recomputed from the stored scales, exactly; |ŵ − w| ≤ s/2 + 2^-23·(|w| + |ŵ|)
                (half a step plus the float32 rounding of w/s and q·s that §4 prescribes;
                --strict-half-step for s/2·(1 + 1e-6), which §4's own rule can exceed);
  sqnr_db       null when ŵ = w exactly, else 10·log10(Σw²/Σ(w−ŵ)²) within 0.01 dB.
Also: the name sets are equal (prompt_embeds aside, checked only with --prompt-embeds), the
configs in the metadata equal the folder's config.json files, provenance.merge equals dloral.json,
and the reader's conformance warnings (§7 name order, key order, whitespace) count as
failures unless --allow-warnings.
Prints one line per failure (at most 30), then `N passed, M failed`; exit 1 on any failure.
"""
import argparse
import fnmatch
import json
import math
import os
import sys

import numpy as np
from safetensors import safe_open

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dlrt_reader import DlrtError, DlrtFile, from_rows, to_rows  # noqa: E402

COMPONENTS = [("unet", "unet/diffusion_pytorch_model.safetensors", "unet/config.json"),
              ("vae", "vae/diffusion_pytorch_model.safetensors", "vae/config.json"),
              ("cfr", "cfr/model.safetensors", "cfr/config.json")]
DEFAULT_KEEP = ["*norm*", "*time_embedding*"]
MAX_LINES = 30
SQNR_TOL_DB = 0.01
STRICT_HALF_STEP = False


class Source:
    """Lazily opened source tensors, keyed by canonical name."""

    def __init__(self, folder, prompt_embeds=None):
        self.handles = {}
        self.where = {}
        for comp, rel, _ in COMPONENTS:
            path = os.path.join(folder, rel)
            h = safe_open(path, framework="numpy")
            self.handles[comp] = h
            for k in h.keys():
                self.where[f"{comp}.{k}"] = (comp, k)
        if prompt_embeds:
            h = safe_open(prompt_embeds, framework="numpy")
            keys = list(h.keys())
            if len(keys) != 1:
                raise SystemExit(f"{prompt_embeds}: expected one tensor, found {keys}")
            self.handles["prompt"] = h
            self.where["prompt_embeds"] = ("prompt", keys[0])

    def names(self):
        return set(self.where)

    def get(self, name):
        comp, k = self.where[name]
        return self.handles[comp].get_tensor(k)


def expected_storage(name, w, quant):
    """(dtype, scheme, block) the §4 policy asks for, from the file's quantization block."""
    if w.dtype.kind != "f":
        return ({"int8": "I8"}.get(str(w.dtype), str(w.dtype).upper()), "none", 0)
    if name == "prompt_embeds":  # an input, not a weight: always F32 (§4)
        return ("F32", "none", 0)
    weights = quant.get("weights")
    keep = list(quant.get("keep") or []) + DEFAULT_KEEP
    kept = w.ndim < 2 or any(fnmatch.fnmatchcase(name, g) for g in keep)
    if weights == "int8":
        if w.ndim in (2, 4) and name.endswith(".weight") and not kept:
            gran = quant.get("int8_granularity")
            if gran == "channel":
                return ("I8", "int8_channel", 0)
            if gran in ("block32", "block64"):
                return ("I8", "int8_block", int(gran[5:]))
            return ("I8", f"int8 with unknown granularity {gran!r}", -1)
        return ("F32", "none", 0)
    if weights == "fp16":
        return ("F32", "none", 0) if kept else ("F16", "none", 0)
    return ("F32", "none", 0)


def bits_equal(a, b):
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    u = {2: np.uint16, 4: np.uint32, 1: np.uint8, 8: np.uint64}[a.dtype.itemsize]
    return np.array_equal(np.ascontiguousarray(a).view(u), np.ascontiguousarray(b).view(u))


def first_diff(a, b):
    diff = np.flatnonzero(a.reshape(-1) != b.reshape(-1))
    if diff.size == 0:
        return "values equal but bit patterns differ (e.g. -0 vs 0, or NaN payloads)"
    i = int(diff[0])
    return f"{diff.size} elements differ, first at flat index {i}: {a.reshape(-1)[i]!r} vs {b.reshape(-1)[i]!r}"


def expected_scales(p, block):
    """§4 rule on the padded rows matrix p [N, Kp] (float32)."""
    n, kp = p.shape
    step = kp if block == 0 else block
    mx = np.abs(p).reshape(n, kp // step, step).max(axis=2) if p.size else np.zeros((n, kp // step), np.float32)
    s = (mx / np.float32(127)).astype(np.float32)
    s[mx == 0] = np.float32(1)
    return s[:, 0].copy() if block == 0 else s


def check_tensor(f, e, w, quant, fail):
    """Returns True when every check of this tensor passes."""
    name = e.name
    ok = True

    def bad(msg):
        nonlocal ok
        ok = False
        fail(f"{name}: {msg}")

    if list(w.shape) != list(e.shape):
        bad(f"shape {e.shape} but the source is {list(w.shape)}")
        return False
    try:
        f.verify(name)
    except DlrtError as err:
        bad(f"digest: {err}")
        return False
    if e.unsupported:
        bad(f"unsupported by the reader: {e.unsupported}")
        return False
    want = expected_storage(name, w, quant)
    got = (e.dtype, e.scheme, e.block)
    if got != want:
        bad(f"stored as {e.dtype}/{e.scheme}/block {e.block}, the policy (weights={quant.get('weights')}, "
            f"granularity={quant.get('int8_granularity')}, keep={quant.get('keep')}) asks for "
            f"{want[0]}/{want[1]}/block {want[2]}")
    try:
        d = f.dequantized(name)
    except DlrtError as err:
        bad(f"read: {err}")
        return False
    if list(d.shape) != list(w.shape):
        bad(f"dequantized shape {list(d.shape)} != source {list(w.shape)}")
        return False
    src32 = w.astype(np.float32) if w.dtype.kind == "f" else w
    if e.scheme == "none":
        if e.dtype == "F32":
            if not bits_equal(d, src32.astype(np.float32)):
                bad(f"F32 not identical to the source: {first_diff(d, src32.astype(np.float32))}")
        elif e.dtype == "F16":
            raw = f.raw(name)
            exp = src32.astype(np.float16)
            if e.layout == "rows_k32":
                raw = from_rows(np.ascontiguousarray(raw[:, :e.k]), e.shape)
            if not bits_equal(np.ascontiguousarray(raw).reshape(exp.shape), exp):
                bad(f"F16 not identical to numpy's astype(float16): {first_diff(np.ascontiguousarray(raw).reshape(exp.shape), exp)}")
        else:
            raw = f.raw(name)
            if not np.array_equal(raw.reshape(w.shape), w):
                bad(f"{e.dtype} not identical to the source")
    elif e.scheme in ("int8_channel", "int8_block"):
        q = f.raw(name)
        s = f.scales(name)
        m = to_rows(src32)
        p = np.zeros((e.rows, e.k_padded), np.float32)
        p[:, :e.k] = m
        block = e.block if e.scheme == "int8_block" else 0
        s_exp = expected_scales(p, block)
        if not bits_equal(s, s_exp):
            diff = np.flatnonzero(s.reshape(-1) != s_exp.reshape(-1))
            i = int(diff[0]) if diff.size else 0
            bad(f"scales do not follow §4 ({diff.size} of {s.size} differ; first at {i}: "
                f"{s.reshape(-1)[i]!r} vs max|w|/127 = {s_exp.reshape(-1)[i]!r})")
        step = e.k_padded if block == 0 else block
        sb = np.repeat(s.reshape(e.rows, -1), step, axis=1)  # stored scales, per element
        with np.errstate(divide="ignore", invalid="ignore"):
            q_exp = np.clip(np.round(p / sb), -127, 127).astype(np.int8)
        if not np.array_equal(q, q_exp):
            diff = np.argwhere(q != q_exp)
            r, c = (int(x) for x in diff[0])
            bad(f"int8 values differ from clip(round(w / s)) with the stored scales at {len(diff)} places; "
                f"first row {r} column {c}: {int(q[r, c])} vs {int(q_exp[r, c])} (w {p[r, c]!r}, s {sb[r, c]!r})")
        if e.k_padded > e.k and q[:, e.k:].any():
            bad("padding columns K..Kp-1 are not zero")
        dr = to_rows(d).astype(np.float64)
        m64 = m.astype(np.float64)
        if STRICT_HALF_STEP:
            bound = sb[:, :e.k] / 2 * (1 + 1e-6)
        else:
            # s/2 plus the float32 rounding §4 itself prescribes: of w / s (up to 2^-24·|w/s|·s)
            # and of q·s (up to 2^-24·|ŵ|), with a factor 2 of margin.
            bound = sb[:, :e.k].astype(np.float64) / 2 + 2.0 ** -23 * (np.abs(m64) + np.abs(dr))
        err = np.abs(dr - m64)
        over = err > bound
        if over.any():
            r, c = (int(x) for x in np.argwhere(over)[0])
            bad(f"dequantized value off by more than half a step at {int(over.sum())} places; first row {r} "
                f"column {c}: |ŵ - w| = {err[r, c]!r} > s/2 = {bound[r, c]!r}")
    # sqnr_db
    if w.dtype.kind == "f":
        w64 = src32.astype(np.float64)
        den = float(((d.astype(np.float64) - w64) ** 2).sum())
        num = float((w64 ** 2).sum())
        if den == 0:
            if e.sqnr_db is not None:
                bad(f"sqnr_db is {e.sqnr_db} but the stored tensor is exact (spec: null)")
        else:
            want_db = 10 * math.log10(num / den) if num > 0 else -math.inf
            if e.sqnr_db is None:
                bad(f"sqnr_db is null but the tensor is not exact (SQNR {want_db:.4f} dB)")
            elif not abs(e.sqnr_db - want_db) <= SQNR_TOL_DB:
                bad(f"sqnr_db {e.sqnr_db} vs recomputed {want_db:.6f} dB")
    return ok


def compare_json(a, b, where, fail, limit=5):
    if a == b:
        return
    if isinstance(a, dict) and isinstance(b, dict):
        keys = [k for k in sorted(set(a) | set(b)) if a.get(k, KeyError) != b.get(k, KeyError)]
        for k in keys[:limit]:
            fail(f"{where}.{k}: file has {json.dumps(a.get(k, '<missing>'))[:120]}, "
                 f"source has {json.dumps(b.get(k, '<missing>'))[:120]}")
        if len(keys) > limit:
            fail(f"{where}: {len(keys) - limit} more keys differ")
    else:
        fail(f"{where}: file has {json.dumps(a)[:120]}, source has {json.dumps(b)[:120]}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dlrt")
    ap.add_argument("merged")
    ap.add_argument("--prompt-embeds", help="the safetensors file given to quantize --prompt-embeds")
    ap.add_argument("--allow-warnings", action="store_true", help="do not count the reader's conformance warnings")
    ap.add_argument("--strict-half-step", action="store_true",
                    help="require |ŵ - w| <= s/2·(1 + 1e-6) literally (fails where float32 w/s rounds onto .5)")
    a = ap.parse_args(argv)
    global STRICT_HALF_STEP
    STRICT_HALF_STEP = a.strict_half_step

    failures = []

    def fail(msg):
        failures.append(msg)
        if len(failures) <= MAX_LINES:
            print(msg, flush=True)

    def finish(passed):
        if len(failures) > MAX_LINES:
            print(f"... {len(failures) - MAX_LINES} more failures not shown")
        print(f"{passed} passed, {len(failures)} failed")
        return 1 if failures else 0

    try:
        f = DlrtFile(a.dlrt)
    except DlrtError as err:
        fail(f"file: {err}")
        return finish(0)
    if not a.allow_warnings:
        for w in f.warnings:
            fail(f"conformance: {w}")
    src = Source(a.merged, a.prompt_embeds)
    md = f.metadata

    # metadata: configs, provenance, quantization
    configs = md.get("configs") or {}
    for comp, _, rel in COMPONENTS:
        path = os.path.join(a.merged, rel)
        with open(path) as fh:
            cfg = json.load(fh)
        got = configs.get(comp)
        if not isinstance(got, dict):
            fail(f"metadata: configs.{comp} missing")
            continue
        compare_json(got, cfg, f"metadata: configs.{comp}", fail)
    dj = os.path.join(a.merged, "dloral.json")
    prov = md.get("provenance") or {}
    if os.path.exists(dj):
        with open(dj) as fh:
            merge = json.load(fh)
        compare_json(prov.get("merge"), merge, "metadata: provenance.merge", fail)
    for k, v in (("tool", "dloral-convert"), ("command", "quantize")):
        if prov.get(k) != v:
            fail(f"metadata: provenance.{k} is {prov.get(k)!r}, expected {v!r}")
    quant = md.get("quantization") or {}
    if quant.get("weights") not in ("int8", "fp16", "fp32"):
        fail(f"metadata: quantization.weights is {quant.get('weights')!r}")
    if quant.get("int8_granularity") not in ("channel", "block32", "block64"):
        fail(f"metadata: quantization.int8_granularity is {quant.get('int8_granularity')!r}")
    if not isinstance(quant.get("keep"), list):
        fail(f"metadata: quantization.keep is {quant.get('keep')!r}, expected a list of globs")
    dpe = md.get("default_prompt_embeds")
    has_pe = "prompt_embeds" in {e.name for e in f.entries}
    if (dpe is not None) != has_pe:
        fail(f"metadata: default_prompt_embeds is {dpe!r} but the file {'has' if has_pe else 'has no'} "
             "tensor prompt_embeds")

    # names
    file_names = {e.name for e in f.entries}
    src_names = src.names()
    skip = set()
    if has_pe and not a.prompt_embeds:
        skip.add("prompt_embeds")
    only_file = sorted(file_names - src_names - skip)
    only_src = sorted(src_names - file_names)
    if only_file:
        fail(f"names: {len(only_file)} tensors not in the source, e.g. {only_file[:5]}")
    if only_src:
        fail(f"names: {len(only_src)} source tensors missing from the file, e.g. {only_src[:5]}")

    passed = 0
    for e in f.entries:
        if e.name in skip or e.name not in src_names:
            continue
        w = src.get(e.name)
        try:
            if check_tensor(f, e, w, quant, fail):
                passed += 1
        except DlrtError as err:
            fail(f"{e.name}: {err}")
    f.close()
    return finish(passed)


if __name__ == "__main__":
    sys.exit(main())
