"""Store benchmark for one writer: 1 KB appends awaited one by one, committed with their bytes
(the default for small messages: one WAL fsync, the file written and fsynced after, in rounds)
against the usual road (file, directory and WAL fsynced before COMMIT), alternating in one run.
Prints appends/s and this process's CPU per append (all threads, the flusher's work included).
Not a test.

Run: .venv/bin/python bench/store_small.py [--appends 1500] [--pairs 2] [--dir PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from carteiro.store import flusher
from carteiro.store.sqlite_maildir import SqliteMaildirStore

MESSAGE = b"Subject: bench\r\n\r\n" + b"y" * 1000 + b"\r\n"


async def run(data: Path, appends: int, inline: bool) -> tuple[float, float, float]:
    flusher.BACKLOG_MAX = 128 if inline else 0  # 0: no room, every append takes the usual road
    store = SqliteMaildirStore(data)
    try:
        await store.create_account("bench@example.test")
        acct = await store.account("bench@example.test")
        for _ in range(100):  # warm up: WAL at full size, listing cached
            await acct.append("INBOX", MESSAGE)
        await store.flush_files()
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        for _ in range(appends):
            await acct.append("INBOX", MESSAGE)
        await store.flush_files()  # the deferred file work counts too
        elapsed = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        await store.close()
    user = (r1.ru_utime - r0.ru_utime) / appends * 1e6
    system = (r1.ru_stime - r0.ru_stime) / appends * 1e6
    return appends / elapsed, user, system


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--appends", type=int, default=1500)
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--dir", help="where to put the data dirs (default: a temp dir under .)")
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}; {args.appends} x 1 KB appends, 1 writer")
    with tempfile.TemporaryDirectory(prefix="bench-store-", dir=args.dir or Path.cwd()) as tmp:
        for i in range(args.pairs):
            for inline in (True, False):
                data = Path(tmp) / f"{i}-{inline}"
                rate, user, system = asyncio.run(run(data, args.appends, inline))
                road = "with their bytes" if inline else "usual road     "
                print(
                    f"{road}  {rate:7.0f} appends/s   user {user:5.0f} us"
                    f"   system {system:5.0f} us per append"
                )


if __name__ == "__main__":
    main()
