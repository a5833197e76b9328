"""The file worker's flush round, three ways, on the disk under test: an fsync of each of 64 new
1 KB files and their directory in turn, the same spread over 17 threads (the round before
syncfs), and one syncfs(2). Prints CPU per file (this process; the kernel's writeback threads
and jbd2 separately, as they work for syncfs) and disk write requests per file (/proc/diskstats).
Not a test; the machine's other writers add to the disk figures.

Run: .venv/bin/python bench/sync_round.py [--rounds 20] [--dir PATH] [--device vda]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from carteiro.store import maildir

DATA = b"x" * 1024


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def kernel_threads_cpu() -> float:
    """CPU seconds of the kworker and jbd2 threads (they do writeback and journal commits)."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            comm = Path(f"/proc/{pid}/comm").read_text()
            if comm.startswith(("kworker", "jbd2")):
                total += int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
        except OSError:
            continue
    return total / 1e9


def disk_writes(device: str) -> int:
    for line in Path("/proc/diskstats").read_text().splitlines():
        f = line.split()
        if f[2] == device:
            return int(f[7])
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--device", default="vda")
    args = ap.parse_args()
    pool = concurrent.futures.ThreadPoolExecutor(16)

    def fsync_each(fds: list[int], dfd: int) -> None:
        for fd in fds if dfd < 0 else [*fds, dfd]:
            os.fsync(fd)

    def fsync_pool(fds: list[int], dfd: int) -> None:
        items = [*fds, dfd]
        chunks = [items[i::17] for i in range(17)]
        futures = [pool.submit(fsync_each, c, -1) for c in chunks[1:]]
        fsync_each(chunks[0], -1)
        for f in futures:
            f.result()

    def syncfs(fds: list[int], dfd: int) -> None:
        if not maildir.syncfs_all([dfd]):
            raise SystemExit("syncfs is not used here (not Linux 5.8 or later)")

    ways: list[tuple[str, Callable[[list[int], int], None]]] = [
        ("fsync each", fsync_each),
        ("fsync, 17 threads", fsync_pool),
        ("syncfs", syncfs),
    ]
    with tempfile.TemporaryDirectory(prefix="bench-sync-", dir=args.dir or Path.cwd()) as tmp:
        cur = Path(tmp) / "cur"
        cur.mkdir()
        for _ in range(2):
            for name, fn in ways:
                k0, c0, d0, spent = kernel_threads_cpu(), cpu(), disk_writes(args.device), 0.0
                for r in range(args.rounds):
                    fds = []
                    for i in range(64):
                        path = f"{cur}/{name[:5]}-{time.monotonic_ns()}-{r}-{i}"
                        fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                        os.write(fd, DATA)
                        os.rename(path + ".tmp", path)
                        fds.append(fd)
                    dfd = os.open(cur, os.O_RDONLY)
                    c1 = cpu()
                    fn(fds, dfd)
                    spent += cpu() - c1
                    for fd in [*fds, dfd]:
                        os.close(fd)
                n = 64 * args.rounds
                print(
                    f"{name:18} sync {spent / n * 1e6:5.1f} us/file (all {(cpu() - c0) / n * 1e6:5.1f})"
                    f"  kernel threads {(kernel_threads_cpu() - k0) / n * 1e6:5.1f} us/file"
                    f"  disk writes {(disk_writes(args.device) - d0) / n:4.2f}/file"
                )


if __name__ == "__main__":
    main()
