"""Store benchmark: durable appends/s (1 and 20 writers), flag changes/s, and opening a
100,000-message mailbox, against the baseline of a plain write+fsync+rename+dir-fsync loop.

Run: .venv/bin/python bench/store.py [--messages 100000] [--dir PATH]
The data dir should be on the disk under test (default: a temp dir under the current directory).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from carteiro.store import maildir
from carteiro.store.api import SEEN, FlagOp
from carteiro.store.sqlite_maildir import SqliteMaildirStore, connect_index

ACCOUNT = "bench@example.org"
MESSAGE = (
    b"From: a@example.org\r\nTo: bench@example.org\r\nSubject: bench\r\n\r\n"
    + b"x" * 3900
    + b"\r\n"
)


def baseline(root: Path, n: int) -> float:
    """One writer: write, fsync, rename into cur/, fsync cur/ -- per message."""
    tmp, cur = root / "tmp", root / "cur"
    tmp.mkdir(parents=True)
    cur.mkdir()
    start = time.perf_counter()
    for i in range(n):
        path = tmp / f"m{i}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, MESSAGE)
        os.fsync(fd)
        os.close(fd)
        os.rename(path, cur / f"m{i}")
        maildir.fsync_dir(cur)
    return n / (time.perf_counter() - start)


async def appends(store: SqliteMaildirStore, writers: int, total: int) -> float:
    acct = await store.account(ACCOUNT)
    per = total // writers

    async def writer() -> None:
        for _ in range(per):
            await acct.append("INBOX", MESSAGE)

    start = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(writers)))
    return per * writers / (time.perf_counter() - start)


async def flag_changes(store: SqliteMaildirStore, writers: int, total: int) -> float:
    acct = await store.account(ACCOUNT)
    inbox = await acct.get_mailbox("INBOX")
    uids = [m.uid for m in await acct.list_messages(inbox.id)]
    per = total // writers

    async def writer(k: int) -> None:
        for i in range(per):
            uid = uids[(k * per + i) % len(uids)]
            op = FlagOp.ADD if i % 2 == 0 else FlagOp.REMOVE
            await acct.set_flags(inbox.id, [uid], op, [SEEN])

    start = time.perf_counter()
    await asyncio.gather(*(writer(k) for k in range(writers)))
    return per * writers / (time.perf_counter() - start)


def bulk_fill(store: SqliteMaildirStore, mailbox_id: int, n: int) -> None:
    """Setup fast path: index rows inserted directly in one transaction, every row hard-linked to
    one message file (a real append per message would only measure the append path again)."""
    conn = connect_index(store.index_path)
    row = conn.execute(
        "SELECT a.dir, b.dir FROM mailboxes b JOIN accounts a ON a.id = b.account_id WHERE b.id = ?",
        (mailbox_id,),
    ).fetchone()
    cur = store.folder(row[0], row[1]) / "cur"
    src = cur.parent / "tmp" / "bulk-source"
    src.write_bytes(MESSAGE)
    unique = f"{int(time.time())}.bulk{secrets.token_hex(4)}"
    rows = []
    for uid in range(1, n + 1):
        base = maildir.make_base(f"{unique}_{uid}", len(MESSAGE), uid)
        flags = 1 if uid % 3 else 0  # two thirds \Seen
        info = "S" if flags else ""
        if uid % 60_000 == 1:  # ext4 allows 65,000 links per inode
            src.unlink(missing_ok=True)
            src.write_bytes(MESSAGE)
        os.link(src, cur / maildir.file_name(base, info))
        rows.append(
            (
                mailbox_id,
                uid,
                uid + 1,
                flags,
                "" if uid % 10 else "$Label",
                1.7e9 + uid,
                len(MESSAGE),
                base,
                info,
            )
        )
    src.unlink()
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT INTO messages VALUES (?,?,?,?,?,?,?,?,?)", rows)
    conn.execute(
        "UPDATE mailboxes SET uidnext = ?, highestmodseq = ? WHERE id = ?",
        (n + 1, n + 1, mailbox_id),
    )
    conn.execute("COMMIT")
    conn.close()


async def open_and_list(data: Path, name: str) -> tuple[float, int]:
    """A fresh store (cold caches, new connections): account -> mailbox -> all UIDs and flags."""
    store = SqliteMaildirStore(data)
    try:
        start = time.perf_counter()
        acct = await store.account(ACCOUNT)
        info = await acct.get_mailbox(name)
        metas = await acct.list_messages(info.id)
        elapsed = time.perf_counter() - start
        assert metas[-1].uid == len(metas)
        return elapsed * 1000, len(metas)
    finally:
        await store.close()


async def warm_list(data: Path, name: str) -> tuple[float, float]:
    """The same process opening the mailbox again: unchanged, then after a few changes."""
    store = SqliteMaildirStore(data)
    try:
        acct = await store.account(ACCOUNT)
        info = await acct.get_mailbox(name)
        await acct.list_messages(info.id)
        start = time.perf_counter()
        info = await acct.get_mailbox(name)
        await acct.list_messages(info.id)
        unchanged = (time.perf_counter() - start) * 1000
        for _ in range(10):
            await acct.append(name, MESSAGE)
        await acct.set_flags(info.id, [5], FlagOp.ADD, ["\\Flagged"])
        start = time.perf_counter()
        info = await acct.get_mailbox(name)
        metas = await acct.list_messages(info.id)
        changed = (time.perf_counter() - start) * 1000
        assert len(metas) == info.uidnext - 1
        return unchanged, changed
    finally:
        await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--appends", type=int, default=3000)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-store-", dir=args.dir or Path.cwd()))
    try:
        base = baseline(root / "baseline", 400)
        store = SqliteMaildirStore(root / "data")
        await store.create_account(ACCOUNT)
        one = await appends(store, 1, 400)
        twenty = await appends(store, 20, args.appends)
        batches_before = store.batches
        flags1 = await flag_changes(store, 1, 400)
        flags20 = await flag_changes(store, 20, 2000)
        flag_batches = store.batches - batches_before
        acct = await store.account(ACCOUNT)
        big = await acct.create_mailbox("Big")
        await store.close()
        t = time.perf_counter()
        bulk_fill(_paths(root / "data"), big.id, args.messages)  # type: ignore[arg-type]
        fill = time.perf_counter() - t
        runs = [await open_and_list(root / "data", "Big") for _ in range(5)]
        warm_ms, warm_after_change_ms = await warm_list(root / "data", "Big")
        times = sorted(ms for ms, _ in runs)
        print(f"store benchmark, {os.cpu_count()} cores, data dir {root}")
        print(f"baseline  write+fsync+rename+dir-fsync, 1 writer : {base:8.0f} msg/s")
        print(
            f"append    durable, 1 writer                      : {one:8.0f} msg/s  ({one / base:.2f}x baseline)"
        )
        print(
            f"append    durable, 20 concurrent writers         : {twenty:8.0f} msg/s  ({twenty / base:.2f}x baseline)"
        )
        print(
            f"set_flags 1 message per call, 1 writer           : {flags1:8.0f} /s     ({flags1 / base:.2f}x baseline)"
        )
        print(
            f"set_flags 1 message per call, 20 writers         : {flags20:8.0f} /s     ({flags20 / base:.2f}x baseline; {flag_batches} commits)"
        )
        print(
            f"open + list {runs[0][1]} messages (fresh store)   : min {times[0]:.0f} ms, median {statistics.median(times):.0f} ms, max {times[-1]:.0f} ms"
        )
        print(
            f"open + list again, same process (listing cache): {warm_ms:.0f} ms; after 10 appends + 1 flag change: {warm_after_change_ms:.0f} ms"
        )
        print(f"  (setup: {args.messages} rows bulk-inserted + hard links in {fill:.1f} s)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


class _paths:
    """Just the paths bulk_fill needs, without opening a store."""

    def __init__(self, data: Path) -> None:
        self.index_path = data / "index.sqlite"
        self.mail_root = data / "mail"

    def folder(self, acct_dir: str, mbox_dir: str) -> Path:
        home = self.mail_root / acct_dir / "Maildir"
        return home / mbox_dir if mbox_dir else home


if __name__ == "__main__":
    asyncio.run(main())
