"""store/folder_watch.py: inotify watches on Maildir folders for IDLE. One watch per folder
whatever the number of holders, one refresh per burst of events plus one once it settles, the
watch gone with its last holder or its directory, NO_WATCH where inotify is missing."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from carteiro.store import folder_watch
from carteiro.store.folder_watch import NO_WATCH, FolderWatcher


def folder(tmp_path: Path, name: str = "INBOX") -> Path:
    f = tmp_path / name
    for sub in ("tmp", "new", "cur"):
        (f / sub).mkdir(parents=True)
    return f


def deliver(f: Path, n: int) -> None:
    for i in range(n):
        (f / "tmp" / f"m{i}").write_bytes(b"Subject: x\n\nbody\n")
        os.rename(f / "tmp" / f"m{i}", f / "new" / f"{i}.M1P1.test")


async def until(what, timeout: float = 3.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not what():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(folder_watch, "SETTLE", 0.4)


async def test_a_burst_is_one_refresh_then_one_more_once_settled(tmp_path: Path, quick) -> None:  # type: ignore[no-untyped-def]
    f = folder(tmp_path)
    calls: list[float] = []
    loop = asyncio.get_running_loop()

    async def refresh() -> None:
        calls.append(loop.time())

    w = FolderWatcher(loop)
    try:
        a = w.watch("inbox", str(f), refresh)
        b = w.watch("inbox", str(f), refresh)  # a second session on the same folder
        assert a.active and b.active and len(w.by_wd) == 2  # new/ and cur/, once
        start = loop.time()
        deliver(f, 50)
        await until(lambda: len(calls) >= 1)
        await asyncio.sleep(0.2)
        assert len(calls) == 1, "one refresh for the burst, not one per file"
        await until(lambda: len(calls) >= 2)
        assert calls[1] - start >= 0.35  # the second look waits for the folder to settle
        await asyncio.sleep(0.6)
        assert len(calls) == 2
        # a flag renamed in cur/ (mutt), a file deleted: both wake it
        os.rename(f / "new" / "0.M1P1.test", f / "cur" / "0.M1P1.test:2,S")
        await until(lambda: len(calls) >= 3)
        a.close()
        a.close()  # idempotent
        assert len(w.by_wd) == 2, "still held by b"
        b.close()
        assert not w.by_wd and not w.folders
        before = len(calls)
        deliver(f, 1)
        await asyncio.sleep(0.6)
        assert len(calls) == before, "no refresh once released"
    finally:
        w.close()


async def test_a_failing_refresh_and_a_removed_folder(tmp_path: Path, quick) -> None:  # type: ignore[no-untyped-def]
    f, other = folder(tmp_path), folder(tmp_path, "Other")
    loop = asyncio.get_running_loop()
    calls = {"f": 0, "other": 0}

    async def broken() -> None:
        calls["f"] += 1
        raise FileNotFoundError("the folder went")

    async def fine() -> None:
        calls["other"] += 1

    w = FolderWatcher(loop)
    try:
        wf = w.watch("f", str(f), broken)
        wo = w.watch("other", str(other), fine)
        shutil.rmtree(f)  # the kernel drops its watches (IN_IGNORED)
        await until(lambda: calls["f"] >= 1)
        await until(lambda: all(k != "f" for k in w.by_wd.values()))
        deliver(other, 1)  # the watcher goes on for the other folder
        await until(lambda: calls["other"] >= 1)
        wf.close()  # releasing a watch whose directory is gone is harmless
        wo.close()
        assert not w.folders
        # a folder that does not exist cannot be watched: the caller polls
        assert not w.watch("gone", str(tmp_path / "nowhere"), fine).active
        assert not w.by_wd
    finally:
        w.close()


async def test_without_inotify_the_watch_is_inactive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(folder_watch, "_lib", lambda: None)

    async def refresh() -> None:
        raise AssertionError("not called")

    w = FolderWatcher(asyncio.get_running_loop())
    watch = w.watch("x", str(folder(tmp_path)), refresh)
    assert watch is NO_WATCH and not watch.active
    watch.close()
    w.close()
