#!/usr/bin/env python3
"""Benchmark the fp32 DLoRAL step: ours (`dloral-verify`) against PyTorch on the same weights.

    python3 Tools/bench/bench_step.py --bin .build/release/dloral-verify \
        --dlrt /work/fullsize/sd21-fp32.dlrt --reference /work/fullsize/ref256.safetensors \
        --merged /work/fullsize/out --runs 3

Alternates, --runs times:
  * ours: `dloral-verify DLRT --reference REF --json` -- opens the .dlrt, runs the whole step
    (VAE encode of every frame, CFR, UNet at t=1, decode) on the reference's inputs and compares
    every stage with the reference;
  * PyTorch: `Tools/bench/step_pytorch.py --merged MERGED --reference REF --runs 1 --no-warmup
    --json` -- imports torch/diffusers, loads the merged fp32 folder, runs the same step once
    (2 threads, no_grad).
Both are whole processes: wall time and peak RSS come from os.wait4 (as benchlib.run). Each
process also reports its own time (ours: `seconds` of the JSON, open + step + compare; PyTorch:
load and step separately). Then, unless --no-warm, step_pytorch.py once more with a warm-up step
and --runs timed steps, for PyTorch's steady-state step time. The load average before each run is
printed so that interference from other jobs is visible.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def run_wait4(cmd):
    """(wall s, peak RSS MiB, stdout, stderr, exit code) of `cmd`, reaped with os.wait4 for the child's own
    rusage (as benchlib.run). Exits on failure other than a verify FAIL (exit 1)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out_chunks, err_chunks = [], []
    # Drain both pipes without reaping: a thread for stderr, the main thread for stdout.
    t = threading.Thread(target=lambda: err_chunks.append(proc.stderr.read()))
    t.start()
    out_chunks.append(proc.stdout.read())
    t.join()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    out, err = b"".join(out_chunks).decode(errors="replace"), b"".join(err_chunks).decode(errors="replace")
    if proc.returncode not in (0, 1):
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{err[-2000:]}")
    return wall, usage.ru_maxrss / 1024.0, out, err, proc.returncode


def loadavg():
    return os.getloadavg()[0]


def fmt_list(xs):
    return ", ".join("%.2f" % x for x in xs)


def med(xs):
    return statistics.median(xs)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="dloral-verify binary")
    ap.add_argument("--dlrt", required=True, action="append",
                    help="runtime file (repeat for several: fp32, int8 with --activations int8/int16/auto, ...)")
    ap.add_argument("--reference", required=True, help="reference safetensors (layout: docs/reference-files.md)")
    ap.add_argument("--merged", required=True, help="merged folder the .dlrt was made from")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="PyTorch threads (default 2)")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--no-warm", action="store_true", help="skip the warm PyTorch step timing")
    ap.add_argument("--no-pytorch", action="store_true", help="only ours (e.g. to compare our variants)")
    ap.add_argument("--json-out", help="also write all measurements to this JSON file")
    args = ap.parse_args()

    ours_cmds = {os.path.basename(d): [args.bin, d, "--reference", args.reference, "--json"] for d in args.dlrt}
    torch_cmd = [args.python, os.path.join(HERE, "step_pytorch.py"), "--merged", args.merged,
                 "--reference", args.reference, "--threads", str(args.threads), "--runs", "1", "--no-warmup",
                 "--json"]
    for name, cmd in ours_cmds.items():
        print(f"ours {name}: " + " ".join(cmd))
    if not args.no_pytorch:
        print("pytorch: " + " ".join(torch_cmd))

    ours = {name: [] for name in ours_cmds}
    verify = {}
    torch_runs = []
    for i in range(args.runs):
        for name, cmd in ours_cmds.items():
            la = loadavg()
            wall, rss, out, err, code = run_wait4(cmd)
            v = json.loads(out)
            verify[name] = v
            phases = {k: float(x) for k, x in v.get("phase_seconds", {}).items()}
            ours[name].append({"wall": wall, "rss": rss, "seconds": float(v["seconds"]), "passed": v["passed"],
                               "phases": phases, "load": la})
            print(f"[{i + 1}/{args.runs}] {name:24s} wall {wall:7.2f} s  rss {rss:7.0f} MiB  in-process "
                  f"{float(v['seconds']):7.2f} s  phases {json.dumps(phases)}  passed={v['passed']}  (loadavg {la:.2f})",
                  flush=True)
        if args.no_pytorch:
            continue
        la = loadavg()
        wall, rss, out, err, code = run_wait4(torch_cmd)
        p = json.loads(out.strip().splitlines()[-1])
        torch_runs.append({"wall": wall, "rss": rss, "import": p["import_s"], "load": p["load_s"],
                           "step": p["step_s"][0], "loadavg": la})
        print(f"[{i + 1}/{args.runs}] pytorch  wall {wall:7.2f} s  rss {rss:7.0f} MiB  import {p['import_s']:.2f} s"
              f"  load {p['load_s']:.2f} s  step {p['step_s'][0]:.2f} s  (loadavg {la:.2f})", flush=True)

    warm = None
    if not args.no_warm and not args.no_pytorch:
        cmd = [args.python, os.path.join(HERE, "step_pytorch.py"), "--merged", args.merged, "--reference",
               args.reference, "--threads", str(args.threads), "--runs", str(args.runs), "--json"]
        print("pytorch warm: " + " ".join(cmd))
        la = loadavg()
        wall, rss, out, err, code = run_wait4(cmd)
        warm = json.loads(out.strip().splitlines()[-1])
        warm["loadavg"] = la
        print(f"pytorch warm: warm-up {warm['warmup_s']:.2f} s, steps {warm['step_s']} -> median "
              f"{warm['step_median_s']:.2f} s, rss {rss:.0f} MiB (loadavg {la:.2f})", flush=True)

    # Frames in the reference: the steady state of a sequence encodes one new frame per step.
    frames_t = 2
    try:
        from safetensors import safe_open
        with safe_open(args.reference, "np") as f:
            frames_t = f.get_slice("input.frames").get_shape()[0]
    except Exception:
        pass

    print()
    print(f"| run | wall (median of {args.runs}) | in-process | encoder | CFR | UNet | decoder | "
          f"steady state per frame | peak RSS | frames PSNR | passed |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    steady = {}
    for name, runs in ours.items():
        ph = {k: med([r["phases"].get(k, 0.0) for r in runs]) for k in ("vae_encoder", "cfr", "unet", "vae_decoder")}
        # One new frame per step: its encoding, CFR, UNet and decoding (T−1 pairs ran here).
        pairs = max(frames_t - 1, 1)
        steady[name] = ph["vae_encoder"] / frames_t + (ph["cfr"] + ph["unet"] + ph["vae_decoder"]) / pairs
        v = verify[name]
        print(f"| {name} | {med([r['wall'] for r in runs]):.2f} s | {med([r['seconds'] for r in runs]):.2f} s | "
              f"{ph['vae_encoder']:.2f} s | {ph['cfr']:.2f} s | {ph['unet']:.2f} s | {ph['vae_decoder']:.2f} s | "
              f"{steady[name]:.2f} s | {med([r['rss'] for r in runs]):,.0f} MiB | "
              f"{float(v['stages'].get('frames', {}).get('psnr_db', float('nan'))):.2f} dB | {v['passed']} |")
    if torch_runs:
        tw, trss = med([r["wall"] for r in torch_runs]), med([r["rss"] for r in torch_runs])
        ts = med([r["step"] for r in torch_runs])
        step = warm["step_median_s"] if warm else ts
        print(f"| PyTorch, step_pytorch.py (import + load + 1 step) | {tw:.2f} s "
              f"({fmt_list(r['wall'] for r in torch_runs)}) | step {ts:.2f} s cold"
              + ("" if warm is None else f", {warm['step_median_s']:.2f} s warm") + f" | | | | | | {trss:,.0f} MiB | | |")
        print()
        for name in ours:
            print(f"{name}: PyTorch step ({frames_t} frames, all encoded) / ours steady state per frame = "
                  f"{step / steady[name]:.2f}x; PyTorch process wall / ours wall = "
                  f"{tw / med([r['wall'] for r in ours[name]]):.2f}x")
    names = list(ours)
    for name in names[1:]:
        print(f"{names[0]} / {name} steady state: {steady[names[0]] / steady[name]:.2f}x")
    print()
    for name, v in verify.items():
        print(f"verify {name}: passed={v['passed']} scheme={v['scheme']} activations={v.get('activations')} "
              f"thresholds={json.dumps(v['thresholds'])}")
        for stage, m in v["stages"].items():
            print(f"  {stage:12s} max_abs {float(m['max_abs']):.3g}  mean_abs {float(m['mean_abs']):.3g}  "
                  f"cosine {m['cosine']}  psnr {m['psnr_db']} dB  {'pass' if m['passed'] else 'FAIL'}")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"ours": ours, "pytorch": torch_runs, "pytorch_warm": warm, "verify": verify}, f, indent=1)


if __name__ == "__main__":
    main()
