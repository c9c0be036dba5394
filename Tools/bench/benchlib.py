"""Shared by the benchmark scripts: run a command and report its wall time and peak RSS."""
import os
import subprocess
import sys
import time


def run(cmd, shell=False):
    """Runs `cmd`; returns (wall seconds, the child's peak RSS in MiB, its stderr). Exits on failure."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, shell=shell)
    err = proc.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        sys.exit(f"failed ({status}): {cmd}\n{err[-2000:]}")
    return wall, usage.ru_maxrss / 1024.0, err


def alternate(jobs, runs, before=lambda: None):
    """Runs every job of `jobs` (name -> callable returning `run`'s tuple) once untimed to warm
    the page cache, then `runs` rounds in which each job runs once, in turn, with `before()`
    ahead of each. Returns ({name: [(wall, rss), ...]}, {name: (median wall, median rss)})."""
    import statistics
    for job in jobs.values():
        before()
        job()
    results = {name: [] for name in jobs}
    for _ in range(runs):
        for name, job in jobs.items():
            before()
            results[name].append(job()[:2])
    medians = {name: (statistics.median(w for w, _ in v), statistics.median(m for _, m in v)) for name, v in results.items()}
    return results, medians
