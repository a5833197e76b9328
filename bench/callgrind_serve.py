"""`carteiro serve` of a given checkout under `valgrind --tool=callgrind`, for the *_instructions.py
benchmarks: instruction counts are what a shared, noisy machine does not move."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
from pathlib import Path


def start(
    tree: Path, data: Path, out: Path, log: Path, threads: bool = True
) -> subprocess.Popen[bytes]:
    """Start the server of checkout `tree` on data dir `data`, its counts written to `out` (one
    file per thread with `threads`); older files of that name are removed first. The caller
    waits for its ports and stops it (SIGTERM) for callgrind to write the counts."""
    for old in glob.glob(f"{out}*"):
        os.unlink(old)
    cmd = ["valgrind", "--tool=callgrind"]
    if threads:
        cmd.append("--separate-threads=yes")
    cmd += [f"--callgrind-out-file={out}", sys.executable, "-m", "carteiro", "serve"]
    cmd += ["--data", str(data)]
    return subprocess.Popen(
        cmd,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(tree)},
        cwd=str(tree),  # `-m carteiro` imports the package of the current directory
        start_new_session=True,
    )
