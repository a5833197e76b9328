"""WAL frames per delivered message, by table: a count the machine's load cannot move.

Opens a store in a temporary directory, delivers warm-up messages, checkpoints the index (the WAL
restarts at its beginning), turns automatic checkpoints off, delivers N messages one at a time
(as one SMTP session does: each its own group commit) and waits for the file worker and the
search indexer. Then it reads the WAL: each frame is one page written, each commit frame ends a
transaction; `dbstat` names the table or index each page belongs to now (a page freed and used
again by another table is named after its last owner: the flusher's dropped `bodies` pages are
reused by the search index).

Run: .venv/bin/python bench/store_frames.py [--size 1024] [-n 200] [--delivery-id]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sqlite3
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from carteiro.store.api import Delivery
from carteiro.store.sqlite_maildir import SqliteMaildirStore

ACCOUNT = "bench@example.test"


def message(i: int, size: int) -> bytes:
    head = (
        f"From: a@example.org\r\nTo: {ACCOUNT}\r\nSubject: test {i}\r\n"
        f"Message-ID: <{i}.{time.time()}@example.org>\r\n\r\n"
    ).encode()
    line = b"abcdefghij klmnopqrst uvwxyz0123 456789ABCD EFGHIJKLMN OPQRSTUVWX YZ\r\n"
    return head + (line * (size // len(line) + 1))[: max(0, size - len(head))]


def frames(wal: Path) -> list[tuple[int, int]]:
    """(page number, database size after commit or 0) of each valid frame."""
    data = wal.read_bytes()
    page_size = struct.unpack(">I", data[8:12])[0]
    out = []
    off = 32
    while off + 24 + page_size <= len(data) and data[off + 8 : off + 16] == data[16:24]:
        out.append(struct.unpack(">II", data[off : off + 8]))
        off += 24 + page_size
    return out


async def run(size: int, n: int, with_ids: bool) -> None:
    s = SqliteMaildirStore(Path(tempfile.mkdtemp(dir="/tmp")) / "data")
    await s.create_account(ACCOUNT)
    for i in range(50):
        await s.deliver([Delivery(ACCOUNT)], message(i, size), f"warm{i}" if with_ids else None)
    await s.flush_files()
    s.wait_search_indexed()
    await s.write(lambda tx: tx.conn.execute("PRAGMA wal_autocheckpoint=0"))
    await asyncio.sleep(0.5)
    c = sqlite3.connect(s.index_path)
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()
    batches = s.writer.batches
    for i in range(n):
        await s.deliver([Delivery(ACCOUNT)], message(i, size), f"id{i}" if with_ids else None)
    await s.flush_files()
    s.wait_search_indexed()
    await s.write(lambda tx: None)
    got = frames(s.index_path.with_name(s.index_path.name + "-wal"))
    c = sqlite3.connect(s.index_path)
    names = dict((p, name) for name, p in c.execute("SELECT name, pageno FROM dbstat"))
    c.close()
    sizes: collections.Counter[int] = collections.Counter()
    run_len = 0
    for _page, commit in got:
        run_len += 1
        if commit:
            sizes[run_len] += 1
            run_len = 0
    print(
        f"{size} octets, {n} deliveries one at a time, delivery ids {with_ids}: "
        f"{len(got) / n:.2f} frames and {sum(sizes.values()) / n:.2f} commits per message "
        f"({s.writer.batches - batches} writer batches)"
    )
    print("  frames per transaction: count", dict(sorted(sizes.items())))
    by_table = collections.Counter(names.get(p, f"page {p}") for p, _ in got)
    for name, k in by_table.most_common():
        print(f"  {name:24s} {k / n:6.2f} per message")
    await s.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("--delivery-id", action="store_true")
    args = ap.parse_args()
    asyncio.run(run(args.size, args.n, args.delivery_id))


if __name__ == "__main__":
    main()
