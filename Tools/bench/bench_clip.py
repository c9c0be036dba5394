"""Real clips side by side: `dloral-run` on one or more .dlrt files against the reference maker
(upstream's algorithm in PyTorch, Tools/reference/make_reference.py), on the same frames.

Each round runs every job once, in turn (the reference maker first), so a drift of the machine's
speed reaches all of them alike. Per job: the time per restored frame (models loaded, frame 0
encoded: the tool's own figure: dloral-run's "s per frame", the reference maker's log between
"models loaded" and its last frame), the whole process's wall time and its peak RSS, with the
peak RSS above the .dlrt's size for ours. Medians over the rounds.

    python3 Tools/bench/bench_clip.py --python /path/to/venv/bin/python --sd SD21_FOLDER \
        --dloral model.pkl --clip FRAMES --prompt-embeds prompt.safetensors \
        --dlrt fp32=fp32.dlrt --dlrt W8A8=w8a8.dlrt --dlrt W8A16=w8a16.dlrt --level avx2 --rounds 1

`--level avx2` caps both sides at AVX2 (DLORAL_KERNELS=avx2, ATEN_CPU_CAPABILITY=avx2); `--level
best` leaves both to pick the host's best. Only the first `--frames` frames of the clip are used.
"""
import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import run  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def reference_per_frame(log):
    loaded = re.search(r"\[\s*([0-9.]+)s\] models loaded", log)
    frames = re.findall(r"\[\s*([0-9.]+)s\] frame (\d+) ", log)
    if not loaded or not frames:
        sys.exit(f"the reference maker's log has no frame times:\n{log[-2000:]}")
    # Frame 0 is encoded with frame 1, so the first restored frame carries both encodings, as ours.
    return (float(frames[-1][0]) - float(loaded.group(1))) / len(frames)


def ours_per_frame(err):
    found = re.search(r"\(([0-9.]+) s per frame\)", err)
    if not found:
        sys.exit(f"dloral-run printed no time per frame:\n{err[-2000:]}")
    return float(found.group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--python", default=sys.executable, help="a Python with torch, diffusers, peft, Pillow 13")
    ap.add_argument("--sd", required=True)
    ap.add_argument("--dloral", required=True)
    ap.add_argument("--clip", required=True, help="a folder of frames")
    ap.add_argument("--frames", type=int, default=2, help="frames used (default 2: one restored frame)")
    ap.add_argument("--prompt-embeds", required=True)
    ap.add_argument("--dlrt", action="append", default=[], metavar="NAME=FILE", required=True)
    ap.add_argument("--bin", default=os.path.join(ROOT, ".build", "release"))
    ap.add_argument("--level", choices=["avx2", "best"], default="avx2")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    env = dict(os.environ)
    if args.level == "avx2":
        env.update(DLORAL_KERNELS="avx2", ATEN_CPU_CAPABILITY="avx2")
    else:
        env.pop("DLORAL_KERNELS", None)
        env.pop("ATEN_CPU_CAPABILITY", None)
    os.environ.clear()
    os.environ.update(env)

    work = tempfile.mkdtemp(prefix="dloral-bench-clip-")
    clip = os.path.join(work, "clip")
    os.makedirs(clip)
    names = sorted(n for n in os.listdir(args.clip) if not n.startswith(".") and n.lower().endswith((".png", ".jpg", ".jpeg")))
    if len(names) < args.frames:
        sys.exit(f"{args.clip} has {len(names)} frames, fewer than --frames {args.frames}")
    for name in names[: args.frames]:
        shutil.copy(os.path.join(args.clip, name), clip)

    jobs = {}

    def reference():
        out = os.path.join(work, "ref.safetensors")
        wall, rss, err = run([args.python, os.path.join(ROOT, "Tools", "reference", "make_reference.py"), "--sd", args.sd,
                              "--dloral", args.dloral, "--input", clip, "--prompt-embeds", args.prompt_embeds,
                              "--threads", str(args.threads), "--out", out])
        os.remove(out)
        return wall, rss, reference_per_frame(err), None

    jobs["reference maker (PyTorch fp32)"] = reference
    for spec in args.dlrt:
        name, _, path = spec.partition("=")

        def ours(path=path, name=name):
            out = os.path.join(work, f"out-{name}")
            shutil.rmtree(out, ignore_errors=True)
            wall, rss, err = run([os.path.join(args.bin, "dloral-run"), path, "--input", clip, "--output", out,
                                  "--prompt-embeds", args.prompt_embeds])
            return wall, rss, ours_per_frame(err), os.path.getsize(path) / 2**20

        jobs[f"dloral-run {name}"] = ours

    results = {name: [] for name in jobs}
    for r in range(args.rounds):
        for name, job in jobs.items():
            results[name].append(job())
            wall, rss, frame, size = results[name][-1]
            print(f"round {r + 1}: {name}: {frame:.1f} s per frame, {wall:.1f} s wall, peak RSS {rss:.0f} MiB", flush=True)
    shutil.rmtree(work, ignore_errors=True)

    baseline = statistics.median(v[2] for v in results["reference maker (PyTorch fp32)"])
    print(f"\nlevel {args.level}, {args.threads} threads, {args.frames} frames, medians of {args.rounds} round(s)\n")
    print("| | s per frame | vs the reference maker | wall s | peak RSS | peak RSS − .dlrt |")
    print("|---|---|---|---|---|---|")
    for name, v in results.items():
        frame = statistics.median(x[2] for x in v)
        wall = statistics.median(x[0] for x in v)
        rss = statistics.median(x[1] for x in v)
        size = v[0][3]
        above = f"{(rss - size) / 1024:.2f} GiB" if size is not None else "—"
        print(f"| {name} | {frame:.1f} | {baseline / frame:.2f}× | {wall:.1f} | {rss / 1024:.2f} GiB | {above} |")


if __name__ == "__main__":
    main()
