"""Issue 10 point 7: an index that is missing or empty beside existing mail is rebuilt from the
files (never taken for a new store), and a corrupt one gives one sentence naming the repair."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from carteiro.store.index import IndexCorrupt
from carteiro.store.maintenance import check
from carteiro.store.sqlite_maildir import SqliteMaildirStore

from .workers import ACCOUNT, make_message


async def _fill(data: Path) -> list[bytes]:
    s = SqliteMaildirStore(data)
    await s.create_account(ACCOUNT)
    acct = await s.account(ACCOUNT)
    await acct.create_mailbox("Work")
    bodies = [make_message(str(i), 300 if i % 2 else 90_000) for i in range(4)]
    for i, b in enumerate(bodies):
        await acct.append("INBOX" if i < 2 else "Work", b)
    await s.flush_files()
    await s.close()
    return bodies


@pytest.mark.parametrize("how", ["truncated", "deleted"])
async def test_lost_index_is_rebuilt_from_the_files(tmp_path: Path, how: str) -> None:
    data = tmp_path / "data"
    bodies = await _fill(data)
    index = data / "index.sqlite"
    for suffix in ("-wal", "-shm"):
        Path(f"{index}{suffix}").unlink(missing_ok=True)
    if how == "truncated":
        index.write_bytes(b"")
    else:
        index.unlink()
    with pytest.raises(Exception, match="missing or empty"):
        check(data)
    s = SqliteMaildirStore(data)
    try:
        await s.create_account(ACCOUNT)  # what a first login does: must not evict the mail
        acct = await s.account(ACCOUNT)
        got = []
        for name in ("INBOX", "Work"):
            info, metas = await acct.open_mailbox(name)
            got += [await acct.read_message(info.id, m.uid) for m in metas]
        assert got == bodies
        assert not (data / "lost+found").exists()
    finally:
        await s.close()
    assert check(data).ok


async def test_corrupt_index_is_one_sentence(tmp_path: Path) -> None:
    data = tmp_path / "data"
    subprocess.run(
        [sys.executable, "-m", "carteiro.cli", "init", "--data", str(data), "--domain", "x.test"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    await _fill(data)
    index = data / "index.sqlite"
    for suffix in ("-wal", "-shm"):
        Path(f"{index}{suffix}").unlink(missing_ok=True)
    index.write_bytes(b"this is not a database at all" * 200)
    with pytest.raises(IndexCorrupt, match="store reindex"):
        SqliteMaildirStore(data)
    with pytest.raises(IndexCorrupt, match="store reindex"):
        check(data)
    out = subprocess.run(
        [sys.executable, "-m", "carteiro.cli", "store", "check", "--data", str(data)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 65, out
    assert "Traceback" not in out.stderr
    assert "store reindex" in out.stderr and len(out.stderr.strip().splitlines()) == 1
