"""`carteiro store check` and `store reindex` right after a kill -9, before any server started
again: what the crash left half-done is finished first (as any start of the store does), so check
does not count it as damage and reindex does not adopt it.

Found by a kill -9 torture run: a MOVE of 1,753 messages killed after its files were linked into
the target folder and before its COMMIT made `store check` report 1,753 "files not in the index"
and recommend `store reindex`, which then gave every one of those messages a second copy.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from pathlib import Path

import pytest

from carteiro.testing.server import run_cli

ACCOUNT = "alice@example.test"
N = 12
FORK = multiprocessing.get_context("fork")

pytestmark = pytest.mark.slow


def message(i: int) -> bytes:
    return (
        f"From: a@example.org\r\nSubject: m{i}\r\nMessage-ID: <m{i}@x>\r\n\r\nbody {i}\r\n".encode()
    )


def _fill_then_die(data_dir: str, what: str) -> None:
    """Child: N messages in INBOX (files written), then a MOVE of all of them to Archive or a
    RENAME of Archive, killed (os._exit, no clean-up) right before its COMMIT."""
    from carteiro.store.sqlite_maildir import SqliteMaildirStore

    armed = False

    def hook(where: str) -> None:
        if armed and where == "dirs_synced":  # files linked and fsynced, COMMIT not reached
            os._exit(86)

    async def main() -> None:
        nonlocal armed
        store = SqliteMaildirStore(Path(data_dir), fault_hook=hook, search_indexer=False)
        await store.create_account(ACCOUNT)
        acct = await store.account(ACCOUNT)
        for i in range(N):
            await acct.append("INBOX", message(i))
        await store.flush_files()
        armed = True
        if what == "move":
            await acct.move((await acct.get_mailbox("INBOX")).id, list(range(1, N + 1)), "Archive")
        else:
            await acct.rename_mailbox("INBOX", "Old")  # INBOX's messages move to a new mailbox
        os._exit(87)

    asyncio.run(main())


def crashed(tmp_path: Path, what: str) -> Path:
    data = tmp_path / "data"
    run_cli(data, "init", "--domain", "example.test")
    proc = FORK.Process(target=_fill_then_die, args=(str(data), what))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 86
    return data


def counts(data: Path) -> dict[str, int]:
    from carteiro.store.sqlite_maildir import SqliteMaildirStore

    async def main() -> dict[str, int]:
        store = SqliteMaildirStore(data)
        try:
            acct = await store.account(ACCOUNT)
            out = {}
            for mb in await acct.list_mailboxes():
                n = len(await acct.list_messages(mb.id))
                if n:
                    out[mb.name] = n
            return out
        finally:
            await store.close()

    return asyncio.run(main())


@pytest.mark.parametrize("what", ["move", "rename-inbox"])
def test_check_after_a_crash_finishes_the_crash_work_first(tmp_path: Path, what: str) -> None:
    data = crashed(tmp_path, what)
    r = run_cli(data, "store", "check", check=False)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert r.stdout.strip().endswith("store check: the files and the index agree"), r.stdout
    assert counts(data) == {"INBOX": N}


@pytest.mark.parametrize("what", ["move", "rename-inbox"])
def test_reindex_after_a_crash_adopts_no_uncommitted_file(tmp_path: Path, what: str) -> None:
    data = crashed(tmp_path, what)
    r = run_cli(data, "store", "reindex", check=False)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert counts(data) == {"INBOX": N}  # the MOVE/RENAME never heard OK: not half done, not twice
    assert run_cli(data, "store", "check").returncode == 0
