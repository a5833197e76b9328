"""Child-process bodies for the store's crash and concurrency tests (run via multiprocessing spawn)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from carteiro.store.api import SEEN, FlagOp

if TYPE_CHECKING:
    import pytest

ACCOUNT = "alice@example.org"


def make_message(tag: str, size: int = 2000) -> bytes:
    """A message whose last header line is the SHA-256 of everything before it."""
    body = (os.urandom(size // 2).hex() + "\r\n").encode()
    head = f"From: test@example.org\r\nSubject: {tag}\r\n\r\n".encode() + body
    return head + b"X-Digest: " + hashlib.sha256(head).hexdigest().encode() + b"\r\n"


def hold_flusher(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Make the file worker wait before each run of files until the event is set (20 s at most,
    so a failing test never hangs the store's close); it waits before taking the folder lock, so
    folders may move meanwhile (the window of issue 10 point 1)."""
    from carteiro.store import flusher

    gate = threading.Event()
    real = flusher.FileFlusher._write_run

    def slow(self: flusher.FileFlusher, run: list[flusher.Pending]) -> None:
        gate.wait(20)
        real(self, run)

    monkeypatch.setattr(flusher.FileFlusher, "_write_run", slow)
    return gate


def is_whole(data: bytes) -> bool:
    head, sep, digest = data.rpartition(b"X-Digest: ")
    return bool(sep) and hashlib.sha256(head).hexdigest().encode() + b"\r\n" == digest


def append_forever(data_dir: str, writers: int) -> None:
    """Append from `writers` concurrent tasks until killed."""
    from carteiro.store.sqlite_maildir import SqliteMaildirStore

    async def main() -> None:
        store = SqliteMaildirStore(Path(data_dir))
        acct = await store.account(ACCOUNT)
        inbox = await acct.get_mailbox("INBOX")

        async def loop(n: int) -> None:
            i = 0
            while True:
                i += 1
                r = await acct.append("INBOX", make_message(f"{n}-{i}", random.randint(100, 20000)))
                if i % 5 == 0:
                    await acct.set_flags(inbox.id, [r.uid], FlagOp.ADD, [SEEN, "$Label1"])
                if i % 7 == 0:
                    await acct.set_flags(inbox.id, [r.uid - 1], FlagOp.ADD, ["\\Deleted"])
                    await acct.expunge(inbox.id, [r.uid - 1])

        await asyncio.gather(*(loop(n) for n in range(writers)))

    asyncio.run(main())


def crash_at(data_dir: str, point: str, size: int = 2000) -> None:
    """Append one message, dying abruptly (like kill -9) when the writer reaches `point`."""
    from carteiro.store.sqlite_maildir import SqliteMaildirStore

    def hook(where: str) -> None:
        if where == point:
            os._exit(86)

    async def main() -> None:
        store = SqliteMaildirStore(
            Path(data_dir), fault_hook=hook, search_indexer=False
        )  # its COMMITs would hit the hook
        acct = await store.account(ACCOUNT)
        await acct.append("INBOX", make_message(point, size))
        await acct.copy((await acct.get_mailbox("INBOX")).id, [1], "Archive")
        await store.close()

    asyncio.run(main())


def deliver_one(data_dir: str, tag: str) -> None:
    from carteiro.store.api import Delivery
    from carteiro.store.sqlite_maildir import SqliteMaildirStore

    async def main() -> None:
        store = SqliteMaildirStore(Path(data_dir))
        await store.deliver([Delivery(ACCOUNT)], make_message(tag))
        await store.close()

    asyncio.run(main())


def mixed_work(data_dir: str, n: int, seed: int) -> None:
    """Append n messages from 4 tasks and flag random ones, then exit cleanly."""
    from carteiro.store.sqlite_maildir import SqliteMaildirStore

    rng = random.Random(seed)

    async def main() -> None:
        store = SqliteMaildirStore(Path(data_dir))
        acct = await store.account(ACCOUNT)
        inbox = await acct.get_mailbox("INBOX")

        async def task(k: int) -> None:
            for i in range(n // 4):
                r = await acct.append("INBOX", make_message(f"{seed}-{k}-{i}", 500))
                await acct.set_flags(inbox.id, [rng.randint(1, r.uid)], FlagOp.ADD, [f"kw{k}"])

        await asyncio.gather(*(task(k) for k in range(4)))
        await store.close()

    asyncio.run(main())


def index_then_crash(data_dir: str, point: str) -> None:
    """Append messages, then die abruptly (like kill -9) when the search indexer reaches `point`
    ("parsed": rows built, not written; "search_rows": inside the writer's transaction;
    "indexed": just after its COMMIT)."""
    from carteiro.store.sqlite_maildir import SqliteMaildirStore

    def hook(where: str) -> None:
        if where == point:
            os._exit(86)

    async def main() -> None:
        store = SqliteMaildirStore(Path(data_dir), search_indexer=False)
        acct = await store.account(ACCOUNT)
        for i in range(5):
            await acct.append("INBOX", make_message(f"indexed {i}"))
        await store.close()
        store = SqliteMaildirStore(Path(data_dir), fault_hook=hook)  # indexes the 5 at once
        store.wait_search_indexed(30)
        await store.close()

    asyncio.run(main())


def open_then_crash(data_dir: str, point: str) -> None:
    """Open the store and die abruptly (like kill -9) when it reaches `point`."""
    from carteiro.store.sqlite_maildir import SqliteMaildirStore

    def hook(where: str) -> None:
        if where == point:
            os._exit(86)

    async def main() -> None:
        store = SqliteMaildirStore(Path(data_dir), fault_hook=hook)
        await store.close()

    asyncio.run(main())


def open_and_die(data: str, point: str | None) -> None:
    """Child: open the store with a fault hook that ends the process (exit 9) at `point` of the
    migration the open runs; with None, or a point never reached, exit 0 after the open."""
    from carteiro.store.sqlite_maildir import SqliteMaildirStore

    def hook(p: str) -> None:
        if p == point:
            os._exit(9)

    SqliteMaildirStore(data, fault_hook=hook, search_indexer=False)
    os._exit(0)


def die_opening(data: Path, point: str) -> None:
    """Open the store on `data` in a fresh process that is killed at `point` of its migration
    (open_and_die), and check that it was."""
    import multiprocessing

    proc = multiprocessing.get_context("spawn").Process(
        target=open_and_die, args=(str(data), point)
    )
    proc.start()
    proc.join(60)
    assert proc.exitcode == 9, proc.exitcode
