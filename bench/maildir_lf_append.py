"""Appending a message given as a file: written in its LF form (read, converted, written) vs
hard-linked as it is (the same message with one bare LF, which has no LF form). 20 concurrent
appends per round, best of 3 rounds, 200 KB and 2 MB messages of 76-octet lines.

    .venv/bin/python bench/maildir_lf_append.py
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from carteiro.store.sqlite_maildir import SqliteMaildirStore


async def main():
    root = Path(tempfile.mkdtemp())
    store = SqliteMaildirStore(root / "data", search_indexer=False)
    await store.create_account("b@example.org")
    acct = await store.account("b@example.org")
    for size in (200_000, 2_000_000):
        body = b"Subject: x\r\n\r\n" + (b"x" * 76 + b"\r\n") * (size // 78)
        best = {}
        for rnd in range(3):
            for label, data in (("linked (no LF form)", body + b"\n"), ("LF form written", body)):
                srcs = []
                for i in range(20):
                    p = root / f"s{rnd}{label[0]}{i}"
                    p.write_bytes(data)
                    srcs.append(p)
                t = time.perf_counter()
                await asyncio.gather(*(acct.append("INBOX", p) for p in srcs))
                took = (time.perf_counter() - t) / 20
                best[label] = min(best.get(label, took), took)
        for k, v in best.items():
            print(size, k, f"{v * 1e3:.2f} ms per append")
    await store.close()


if __name__ == "__main__":
    asyncio.run(main())
