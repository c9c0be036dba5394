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
