"""The spool on a full disk (issue 10 point 8): an enqueue that finds no room raises StorageFull
(whether SQLite said SQLITE_FULL or a file write said ENOSPC), so SMTP answers 452 4.3.1; nothing
is left behind (no row, no partial file) and the spool works again once there is room."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from queue_fakes import MESSAGE, FakeClock, env

from carteiro.queue.spool import FileSpool
from carteiro.store.api import StorageFull


async def open_spool(root: Path, **kw: object) -> FileSpool:
    s = FileSpool(root, clock=FakeClock(), **kw)  # type: ignore[arg-type]
    await s.open()
    return s


async def test_index_full_is_storage_full(tmp_path: Path) -> None:
    s = await open_spool(tmp_path)
    # SQLite answers SQLITE_FULL once the database may not grow: what a full disk does to it
    pages = s._db.execute("PRAGMA page_count").fetchone()[0]
    s._db.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(StorageFull) as info:
        await s.enqueue(env("bob@b.test"), MESSAGE * 1000)  # ~100 KB inline: needs new pages
    assert not info.value.quota
    assert s.messages == {}
    s._db.execute("PRAGMA max_page_count = 1073741823")
    qid = await s.enqueue(env("bob@b.test"), MESSAGE)
    await s.close()
    s2 = await open_spool(tmp_path)
    assert list(s2.messages) == [qid]
    await s2.close()


async def test_file_write_without_room_is_storage_full_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = await open_spool(tmp_path, inline_max=10)
    real_write = os.write

    def half_then_full(fd: int, data: bytes) -> int:  # the disk fills up mid-file
        if len(data) > 40:
            return real_write(fd, bytes(data[:40]))
        raise OSError(errno.EDQUOT, "Disk quota exceeded")

    monkeypatch.setattr("carteiro.queue.spool.os.write", half_then_full)
    with pytest.raises(StorageFull) as info:
        await s.enqueue(env("bob@b.test"), MESSAGE)
    assert info.value.quota
    monkeypatch.undo()
    assert os.listdir(tmp_path / "msg") == [] and s.messages == {}
    await s.enqueue(env("bob@b.test"), MESSAGE)
    await s.close()
