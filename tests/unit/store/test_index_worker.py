"""store/index_worker.py: `carteiro serve`'s search indexer in a process of its own. It indexes
what is delivered and purges what is expunged (test_search_index runs the store's own test in
both modes), never outlives the server (kill -9 included), is started again when it dies, and a
worker killed in the middle of its work leaves the index consistent: rows and marks commit
together, so the next worker only repeats what was lost."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from carteiro.store import index_worker
from carteiro.store.maintenance import check
from carteiro.store.sqlite_maildir import SqliteMaildirStore
from carteiro.testing.procstat import alive
from carteiro.testing.server import index_count

from .workers import ACCOUNT, make_message


def until(what, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


SERVER = """
import asyncio, sys, time
from pathlib import Path
from carteiro.store.sqlite_maildir import SqliteMaildirStore
async def main():
    store = SqliteMaildirStore(Path(sys.argv[1]), search_indexer="process")
    store.start_search_indexer()
    print(store.search_indexer.proc.pid, flush=True)
    await asyncio.sleep(3600)
asyncio.run(main())
"""


def test_the_worker_dies_with_the_server(tmp_path: Path) -> None:
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(tmp_path / "data")], stdout=subprocess.PIPE
    )
    try:
        assert server.stdout is not None
        worker = int(server.stdout.readline())
        assert alive(worker)
        server.send_signal(signal.SIGKILL)
        server.wait()
        until(lambda: not alive(worker))
    finally:
        server.kill()
        server.wait()


async def test_a_worker_killed_while_indexing_leaves_a_consistent_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(index_worker, "RESPAWN_AFTER", 0.0)
    data = tmp_path / "data"
    store = SqliteMaildirStore(data, search_indexer="process")
    try:
        await store.create_account(ACCOUNT)
        acct = await store.account(ACCOUNT)
        handle = store.search_indexer
        assert isinstance(handle, index_worker.IndexerProcess)
        kills = 0
        for round_ in range(6):
            for i in range(150):
                await acct.append("INBOX", make_message(f"round {round_} message {i}"))
            handle.note_garbage()
            await asyncio.sleep(0.05 * round_)  # somewhere in its work, or before or after it
            assert handle.proc is not None
            os.kill(handle.proc.pid, signal.SIGKILL)
            handle.proc.wait()
            kills += 1
            report = check(data)
            assert report.ok, report  # rows and marks went together, or neither
            handle.wake()  # a dead worker is started again at the next wake
            until(lambda: handle.proc is not None and handle.proc.poll() is None)
        assert await asyncio.get_running_loop().run_in_executor(None, handle.wait_idle, 60)
        assert index_count(data, "SELECT count(*) FROM search_fields") == 900
        assert index_count(data, "SELECT count(*) FROM messages") == 900
        assert check(data).ok
        assert kills == 6
    finally:
        await store.close()


@pytest.mark.parametrize("how", ["no interpreter", "dies at once"])
async def test_without_a_worker_the_thread_indexes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """`carteiro serve` started as root runs as its configured user, who may not be able to run
    the interpreter or read the code again: the indexer thread does the work then."""
    if how == "no interpreter":
        monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    else:
        monkeypatch.setattr(index_worker, "WORKER_MODULE", "carteiro.no_such_module")
    data = tmp_path / "data"
    store = SqliteMaildirStore(data, search_indexer="process")
    try:
        handle = store.search_indexer
        assert isinstance(handle, index_worker.IndexerProcess)
        store.start_search_indexer()
        if how == "dies at once":
            assert handle.proc is not None
            handle.proc.wait()
        await store.create_account(ACCOUNT)
        acct = await store.account(ACCOUNT)
        for i in range(5):
            await acct.append("INBOX", make_message(f"message {i}"))
        handle.wake()
        assert handle.inner is not None and handle.proc is None
        assert await asyncio.get_running_loop().run_in_executor(None, handle.wait_idle, 30)
        assert index_count(data, "SELECT count(*) FROM search_fields") == 5
    finally:
        await store.close()


async def test_words_to_a_dead_worker_are_harmless_until_it_is_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqliteMaildirStore(tmp_path / "data", search_indexer="process")
    try:
        await store.create_account(ACCOUNT)
        acct = await store.account(ACCOUNT)
        store.start_search_indexer()
        handle = store.search_indexer
        assert isinstance(handle, index_worker.IndexerProcess) and handle.proc is not None
        first = handle.proc
        first.kill()
        first.wait()
        await acct.append("INBOX", make_message("while it is gone"))  # the writer wakes it
        handle.note_garbage()
        handle.wake()
        assert handle.proc is first, "not restarted within RESPAWN_AFTER of its start"
        monkeypatch.setattr(index_worker, "RESPAWN_AFTER", 0.0)
        handle.wake()
        assert handle.proc is not first and handle.proc is not None
        assert await asyncio.get_running_loop().run_in_executor(None, handle.wait_idle, 30)
        assert index_count(tmp_path / "data", "SELECT count(*) FROM search_fields") == 1
    finally:
        await store.close()
