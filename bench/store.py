"""Store benchmark: durable appends (1 and 20 writers) with their CPU and fsync cost, flag changes,
and opening a 100,000-message mailbox, against the baseline of a plain write+fsync+rename+dir-fsync
loop measured in the same run (the machine is shared: ratios and CPU per operation mean more than
rates).

Run: .venv/bin/python bench/store.py [--messages 100000] [--appends 3000] [--dir PATH]
The data dir should be on the disk under test (default: a temp dir under the current directory).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import statistics
import subprocess
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


class Cost:
    """Wall time and this process's CPU time (all threads, user + system) of a block."""

    def __enter__(self) -> Cost:
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0


def create_probe(root: Path, n: int = 300) -> float:
    """CPU seconds to create one empty file here: the filesystem's share of every append.

    On a filesystem without a journal, ext4 skips recently deleted inodes when it allocates one,
    scanning past each: after many deletions nearby (other people's test runs, this benchmark's
    last cleanup) a create can cost ~1 ms of CPU instead of ~30 us. It moves baseline and store
    alike; the figure says how much of this run's costs it explains.
    """
    probe = root / "probe"
    probe.mkdir()
    cpu0 = time.process_time()
    for i in range(n):
        os.close(os.open(probe / f"p{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    cpu = (time.process_time() - cpu0) / n
    return cpu


def baseline(root: Path, n: int) -> tuple[float, float]:
    """One writer: write, fsync, rename into cur/, fsync cur/ -- per message. (msg/s, CPU s/msg)"""
    tmp, cur = root / "tmp", root / "cur"
    tmp.mkdir(parents=True)
    cur.mkdir()
    with Cost() as c:
        for i in range(n):
            path = tmp / f"m{i}"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, MESSAGE)
            os.fsync(fd)
            os.close(fd)
            os.rename(path, cur / f"m{i}")
            maildir.fsync_dir(cur)
    return n / c.wall, c.cpu / n


class Appends:
    def __init__(self, writers: int, n: int, wall: float, cpu: float, st: dict[str, int]) -> None:
        self.writers, self.n, self.rate, self.cpu = writers, n, n / wall, cpu / n
        self.batches = st["batches"]
        self.rounds = st["sync_rounds"]
        self.fsyncs = st["fsync_calls"]


def _stats(store: SqliteMaildirStore) -> dict[str, int]:
    # (stores before the counters existed: two rounds and one fsync per file + dir + WAL per batch)
    return {
        "batches": store.batches,
        "sync_rounds": getattr(store, "sync_rounds", 2 * store.batches),
        "fsync_calls": getattr(store, "fsync_calls", 0),
    }


async def appends(store: SqliteMaildirStore, writers: int, total: int) -> Appends:
    acct = await store.account(ACCOUNT)
    per = total // writers

    async def writer() -> None:
        for _ in range(per):
            await acct.append("INBOX", MESSAGE)

    before = _stats(store)
    with Cost() as c:
        await asyncio.gather(*(writer() for _ in range(writers)))
    after = _stats(store)
    result = Appends(
        writers, per * writers, c.wall, c.cpu, {k: after[k] - before[k] for k in after}
    )
    if not hasattr(store, "fsync_calls"):
        result.fsyncs = -1  # not counted by this version of the store
    return result


async def flag_changes(store: SqliteMaildirStore, writers: int, total: int) -> tuple[float, int]:
    acct = await store.account(ACCOUNT)
    inbox = await acct.get_mailbox("INBOX")
    uids = [m.uid for m in await acct.list_messages(inbox.id)]
    per = total // writers

    async def writer(k: int) -> None:
        for i in range(per):
            uid = uids[(k * per + i) % len(uids)]
            op = FlagOp.ADD if i % 2 == 0 else FlagOp.REMOVE
            await acct.set_flags(inbox.id, [uid], op, [SEEN])

    batches = store.batches
    start = time.perf_counter()
    await asyncio.gather(*(writer(k) for k in range(writers)))
    return per * writers / (time.perf_counter() - start), store.batches - batches


def bulk_fill(data: Path, mailbox_id: int, n: int) -> None:
    """Setup fast path: index rows inserted directly in one transaction, every row hard-linked to
    one message file (a real append per message would only measure the append path again)."""
    paths = _Paths(data)
    conn = connect_index(paths.index_path)
    row = conn.execute(
        "SELECT a.dir, b.dir FROM mailboxes b JOIN accounts a ON a.id = b.account_id WHERE b.id = ?",
        (mailbox_id,),
    ).fetchone()
    cur = paths.folder(row[0], row[1]) / "cur"
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
                "" if uid % 10 else "$Label",  # one message in ten has a keyword
                1.7e9 + uid,
                len(MESSAGE),
                base,
                info,
            )
        )
    src.unlink()
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(
        "INSERT INTO messages (mailbox_id, uid, modseq, flags, keywords, internaldate, size,"
        " base, info) VALUES (?,?,?,?,?,?,?,?,?)",
        rows,
    )
    conn.execute(
        "UPDATE mailboxes SET uidnext = ?, highestmodseq = ? WHERE id = ?",
        (n + 1, n + 1, mailbox_id),
    )
    conn.execute("COMMIT")
    conn.close()


def cold_open(data: Path, name: str, mode: str) -> dict[str, float]:
    """Open the mailbox in a fresh process: store -> account -> mailbox -> UIDs and flags
    (`uids`: list_uids_flags, `metas`: list_messages)."""
    out = subprocess.run(
        [sys.executable, __file__, "--cold-child", str(data), name, mode],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, float] = json.loads(out.splitlines()[-1])
    return result


async def _cold_child(data: Path, name: str, mode: str) -> None:
    with Cost() as opening:
        store = SqliteMaildirStore(data)
    try:
        with Cost() as c:
            acct = await store.account(ACCOUNT)
            info = await acct.get_mailbox(name)
            if mode == "uids" and hasattr(acct, "list_uids_flags"):
                n = len((await acct.list_uids_flags(info.id)).uids)
            else:
                n = len(await acct.list_messages(info.id))
        snapshot = getattr(store.listings, "snapshots_read", 0)
    finally:
        await store.close()
    print(
        json.dumps(
            {
                "ms": c.wall * 1000,
                "cpu_ms": c.cpu * 1000,
                "open_ms": opening.wall * 1000,
                "n": n,
                "snapshot": snapshot,
            }
        )
    )


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


def _ms(runs: list[dict[str, float]], key: str = "ms") -> str:
    values = sorted(r[key] for r in runs)
    return f"min {values[0]:.0f}, median {statistics.median(values):.0f}, max {values[-1]:.0f} ms"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--appends", type=int, default=3000)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--cold-child", nargs=3, metavar=("DATA", "MAILBOX", "MODE"))
    args = parser.parse_args()
    if args.cold_child:
        data, name, mode = args.cold_child
        await _cold_child(Path(data), name, mode)
        return
    root = Path(tempfile.mkdtemp(prefix="bench-store-", dir=args.dir or Path.cwd()))
    load0 = os.getloadavg()
    try:
        create_cpu = create_probe(root)
        base_rate, base_cpu = baseline(root / "baseline", 400)
        data = root / "data"
        store = SqliteMaildirStore(data)
        await store.create_account(ACCOUNT)
        one = await appends(store, 1, 400)
        twenty = await appends(store, 20, args.appends)
        flags1, _ = await flag_changes(store, 1, 400)
        flags20, flag_batches = await flag_changes(store, 20, 2000)
        acct = await store.account(ACCOUNT)
        big = await acct.create_mailbox("Big")
        await store.close()
        t = time.perf_counter()
        bulk_fill(data, big.id, args.messages)
        fill = time.perf_counter() - t
        first = cold_open(data, "Big", "uids")  # no snapshot yet: reads every row
        cold_uids = [cold_open(data, "Big", "uids") for _ in range(5)]
        cold_metas = [cold_open(data, "Big", "metas") for _ in range(3)]
        warm_ms, warm_after_change_ms = await warm_list(data, "Big")
        load1 = os.getloadavg()

        print(f"store benchmark, {os.cpu_count()} cores, data dir {root}")
        print(
            f"load average {load0[0]:.1f} at start, {load1[0]:.1f} at end;"
            f" creating an empty file here costs {create_cpu * 1e6:.0f} us CPU (see create_probe)"
        )
        print(
            f"baseline  write+fsync+rename+dir-fsync, 1 writer : {base_rate:7.0f} msg/s,"
            f" {base_cpu * 1e6:5.0f} us CPU/msg, 2 fsyncs and 2 fsync rounds per msg"
        )
        for a in (one, twenty):
            per_round = f"{a.rounds / a.n:.3f} fsync rounds/append"
            calls = f"{a.fsyncs / a.n:.2f} fsyncs/append" if a.fsyncs >= 0 else "fsyncs n/a"
            print(
                f"append    durable, {a.writers:2d} writer{'s' if a.writers > 1 else ' '}"
                f"                   : {a.rate:7.0f} msg/s ({a.rate / base_rate:.2f}x baseline),"
                f" {a.cpu * 1e6:5.0f} us CPU/append ({a.cpu / base_cpu:.2f}x),"
                f" {per_round}, {calls}, {a.n / a.batches:.1f} appends/commit"
            )
        print(
            f"set_flags 1 message per call, 1 writer           : {flags1:7.0f} /s"
            f"    ({flags1 / base_rate:.2f}x baseline)"
        )
        print(
            f"set_flags 1 message per call, 20 writers         : {flags20:7.0f} /s"
            f"    ({flags20 / base_rate:.2f}x baseline; {flag_batches} commits)"
        )
        n = int(first["n"])
        print(
            f"open + UIDs/flags of {n} msgs, fresh process, first ever (reads every row):"
            f" {first['ms']:.0f} ms, {first['cpu_ms']:.0f} ms CPU"
        )
        print(
            f"open + list_uids_flags, fresh process (snapshot: {cold_uids[-1]['snapshot']:.0f})  "
            f"   : {_ms(cold_uids)}; CPU {_ms(cold_uids, 'cpu_ms')}"
        )
        print(
            f"open + list_messages (MessageMeta), fresh process: {_ms(cold_metas)};"
            f" CPU {_ms(cold_metas, 'cpu_ms')}"
        )
        print(f"  (store constructor in the fresh process: {_ms(cold_uids, 'open_ms')})")
        print(
            f"open + list_messages again, same process (cache): {warm_ms:.0f} ms;"
            f" after 10 appends + 1 flag change: {warm_after_change_ms:.0f} ms"
        )
        print(f"  (setup: {args.messages} rows bulk-inserted + hard links in {fill:.1f} s)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


class _Paths:
    """Just the paths bulk_fill needs, without opening a store."""

    def __init__(self, data: Path) -> None:
        self.index_path = data / "index.sqlite"
        self.mail_root = data / "mail"

    def folder(self, acct_dir: str, mbox_dir: str) -> Path:
        home = self.mail_root / acct_dir / "Maildir"
        return home / mbox_dir if mbox_dir else home


if __name__ == "__main__":
    asyncio.run(main())
