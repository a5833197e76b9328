"""mbox spool files: mboxrd quoting, separators, locking (dot-lock + fcntl), rollback."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

import pytest

from carteiro.mail import mbox_spool
from carteiro.mail.mbox_spool import MboxLockTimeout, MboxSpool, from_line, mboxrd_blocks


def write(tmp: Path, data: bytes) -> Path:
    p = tmp / "msg"
    p.write_bytes(data)
    return p


def test_mboxrd_quoting_and_separators(tmp_path: Path) -> None:
    spool = MboxSpool(tmp_path / "mbox")
    src = write(tmp_path, b"Subject: x\r\n\r\nFrom here\r\n>From there\r\nnot From\r\n")
    spool.append(["a@example.test"], src, "s@example.org", when=0)
    spool.append(["a@example.test"], src, "", when=0)
    data = spool.path_for("a@example.test").read_bytes()
    one = b"Subject: x\n\n>From here\n>>From there\nnot From\n\n"
    assert data == (
        b"From s@example.org Thu Jan  1 00:00:00 1970\n" + one
        + b"From MAILER-DAEMON Thu Jan  1 00:00:00 1970\n" + one
    )  # fmt: skip


def test_quoting_across_block_boundaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mbox_spool, "BLOCK", 7)
    src = write(tmp_path, b"a\r\nFrom b\r\nxxxxxxxxxxxxxFrom c\r\nFrom d")
    assert b"".join(mboxrd_blocks(src)) == b"a\n>From b\nxxxxxxxxxxxxxFrom c\n>From d"


def test_mends_a_file_without_final_blank_line(tmp_path: Path) -> None:
    spool = MboxSpool(tmp_path)
    spool.path_for("a@example.test").write_bytes(b"From x Thu Jan  1 00:00:00 1970\nSubject: y")
    spool.append(["a@example.test"], write(tmp_path, b"S: z\r\n\r\nb\r\n"), "q@r.test", when=0)
    data = spool.path_for("a@example.test").read_bytes()
    assert b"Subject: y\n\nFrom q@r.test " in data
    assert data.endswith(b"b\n\n")


def test_rollback_truncates_every_file(tmp_path: Path) -> None:
    spool = MboxSpool(tmp_path)
    src = write(tmp_path, b"S: 1\r\n\r\n")
    spool.append(["a@x.test", "b@x.test"], src, "s@x.test")
    before = {a: spool.path_for(a).read_bytes() for a in ("a@x.test", "b@x.test")}
    held = spool.acquire(["b@x.test", "a@x.test"])
    try:
        spool.write_all(held, src, "s@x.test", time.time())
        spool.rollback(held)
    finally:
        spool.release(held)
    assert {a: spool.path_for(a).read_bytes() for a in before} == before
    assert not list(tmp_path.glob("*.lock"))


def test_dotlock_held_elsewhere_times_out(tmp_path: Path) -> None:
    spool = MboxSpool(tmp_path, lock_timeout=0.2)
    (tmp_path / "a@x.test.lock").write_text("1\n")
    with pytest.raises(MboxLockTimeout):
        spool.append(["a@x.test"], write(tmp_path, b"x\r\n"), "s@x.test")


def test_stale_dotlock_is_broken(tmp_path: Path) -> None:
    spool = MboxSpool(tmp_path, lock_timeout=0.2)
    lock = tmp_path / "a@x.test.lock"
    lock.write_text("1\n")
    old = time.time() - 3600
    os.utime(lock, (old, old))
    spool.append(["a@x.test"], write(tmp_path, b"x\r\n"), "s@x.test")
    assert spool.path_for("a@x.test").exists() and not lock.exists()


def test_fcntl_lock_held_by_another_process_times_out(tmp_path: Path) -> None:
    spool = MboxSpool(tmp_path, lock_timeout=0.3)
    path = spool.path_for("a@x.test")
    path.write_bytes(b"")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        fd = os.open(path, os.O_RDWR)
        fcntl.lockf(fd, fcntl.LOCK_EX)
        os.write(w, b"1")
        time.sleep(3)
        os._exit(0)
    try:
        os.read(r, 1)
        with pytest.raises(MboxLockTimeout):
            spool.append(["a@x.test"], write(tmp_path, b"x\r\n"), "s@x.test")
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    assert not (tmp_path / "a@x.test.lock").exists()


def test_from_line_is_one_safe_line() -> None:
    assert from_line("a b\n@x", 0) == b"From a_b_@x Thu Jan  1 00:00:00 1970\n"
