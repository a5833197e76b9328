"""A full disk (a tiny tmpfs holding the data dir): every refused write is StorageFull, nothing
acknowledged is lost, and the store works again once there is room (issue 10 point 8)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from carteiro.store.api import StorageFull
from carteiro.store.maintenance import check
from carteiro.store.sqlite_maildir import SqliteMaildirStore

from .workers import ACCOUNT, make_message


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / f"fs-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"cannot mount a tmpfs here: {e}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


async def test_full_disk_is_storage_full_and_loses_nothing(tiny_fs: Path) -> None:
    data = tiny_fs / "data"
    s = SqliteMaildirStore(data)
    assert (data / "run" / "space-reserve").exists()
    kept: list[tuple[int, int, bytes]] = []
    try:
        await s.create_account(ACCOUNT)
        acct = await s.account(ACCOUNT)
        refused = 0
        for i in range(400):
            body = make_message(str(i), 300 if i % 3 else 120_000)
            try:
                r = await acct.append("INBOX", body)
            except StorageFull:
                refused += 1
                if refused > 5:
                    break
                continue
            kept.append((r.mailbox_id, r.uid, body))
        assert refused > 0, "the filesystem never filled up"
        # appends never take the reserve: it is there for the deletions below
        assert (data / "run" / "space-reserve").exists()
        # room again: the ballast goes, and everything acknowledged is there, byte for byte
        ballast = [p for p in (data / "mail").rglob("cur/*") if p.stat().st_size > 100_000]
        for mailbox_id, uid, body in kept:
            assert await acct.read_message(mailbox_id, uid) == body
        with contextlib.suppress(StorageFull):
            await s.flush_files()
        gone = {int(p.name.split("U=")[1].split(":")[0]) for p in ballast[: len(ballast) // 2]}
        info = await acct.get_mailbox("INBOX")
        await acct.delete_messages(info.id, sorted(gone))
        await s.flush_files()
        r = await acct.append("INBOX", make_message("after", 300))
        kept = [k for k in kept if k[1] not in gone]
        kept.append((r.mailbox_id, r.uid, make_message("after", 300)))
        for mailbox_id, uid, body in kept[:-1]:
            assert await acct.read_message(mailbox_id, uid) == body
    finally:
        with contextlib.suppress(Exception):
            await s.close()
    report = check(data)
    assert not report.missing_files, report
    assert os.path.exists(data / "index.sqlite")
