"""A full disk or a disk quota (issue 10 point 8): "452 4.3.1 Insufficient system storage" (RFC 5321
4.2.2 / 4.5.3.1, RFC 3463 4.3.1) wherever the data cannot be kept: the temp file at DATA, the body
(DATA and BDAT), the store, the outbound queue's spool; and at MAIL when the declared SIZE does not
fit (RFC 1870 6.1). Never 451, nothing delivered, one WARNING line, and the session goes on."""

from __future__ import annotations

import errno
import logging
import shutil
from collections import namedtuple

import pytest
from smtp_harness import ALICE, Env, MakeEnv

from carteiro.servers.smtp import message
from carteiro.store.api import StorageFull

FULL = "452 4.3.1 Insufficient system storage"
ENOSPC = OSError(errno.ENOSPC, "No space left on device")
MAIL_DATA = """
C: MAIL FROM:<a@example.org>
S: 250 *
C: RCPT TO:<{rcpt}>
S: 250 *
C: DATA
S: 354 *
C: Subject: s
C:
C: body
C: .
"""


def _one_warning(caplog: pytest.LogCaptureFixture) -> None:
    records = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(records) == 1, [r.getMessage() for r in records]
    [rec] = records
    assert rec.levelno == logging.WARNING and rec.exc_info is None, rec.getMessage()
    assert "ENOSPC" in rec.getMessage() or "EDQUOT" in rec.getMessage(), rec.getMessage()


async def _ehlo(env: Env):  # type: ignore[no-untyped-def]
    c = await env.connect()
    assert (await c.reply())[0].startswith("220 ")
    assert (await c.cmd("EHLO client.example.org"))[-1] == "250 HELP"
    return c


async def _still_works(env: Env, c) -> None:  # type: ignore[no-untyped-def]
    """The same connection delivers the next message once there is room."""
    env.store.fail_writes_with = None  # type: ignore[attr-defined]
    env.spool.fail = None
    await c.play(MAIL_DATA.format(rcpt=ALICE) + "S: 250 2.0.0 *\n")
    assert len(await env.inbox(ALICE)) == 1


@pytest.mark.parametrize("fault", [StorageFull(), StorageFull("", errno.EDQUOT), ENOSPC])
async def test_store_full_at_end_of_data(env: Env, caplog, fault) -> None:  # type: ignore[no-untyped-def]
    env.store.fail_writes_with = fault  # type: ignore[attr-defined]
    with caplog.at_level(logging.WARNING):
        c = await _ehlo(env)
        await c.play(MAIL_DATA.format(rcpt=ALICE) + f"S: {FULL}\n")
    _one_warning(caplog)
    assert await env.inbox(ALICE) == []
    await _still_works(env, c)


async def test_temp_file_cannot_be_created_at_data(make_env: MakeEnv, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    env = await make_env("[smtp]\nmemory_buffer_max = 0\n")

    def no_room(tmp_dir):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(message, "_mkstemp", no_room)
    with caplog.at_level(logging.WARNING):
        c = await _ehlo(env)
        await c.play(f"""
            C: MAIL FROM:<a@example.org>
            S: 250 *
            C: RCPT TO:<{ALICE}>
            S: 250 *
            C: DATA
            S: {FULL}
            C: RSET
            S: 250 *
            """)
    _one_warning(caplog)
    monkeypatch.undo()
    await _still_works(env, c)


async def test_body_write_fails_data_and_bdat(make_env: MakeEnv, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    env = await make_env("[smtp]\nmemory_buffer_max = 0\n")

    def no_room(self, data):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(message.MessageWriter, "_out", no_room)
    with caplog.at_level(logging.WARNING):
        c = await _ehlo(env)
        await c.play(MAIL_DATA.format(rcpt=ALICE) + f"S: {FULL}\n")
        _one_warning(caplog)
        caplog.clear()
        # RFC 3030 2: a failed chunk fails the rest of the transaction with the same reply
        await c.play(
            f"""
            C: MAIL FROM:<a@example.org>
            S: 250 *
            C: RCPT TO:<{ALICE}>
            S: 250 *
            B: BDAT 12\\r\\nSubject: s\\r\\n
            S: {FULL}
            B: BDAT 8 LAST\\r\\n\\r\\nbody\\r\\n
            S: {FULL}
            """
        )
        _one_warning(caplog)
    assert await env.inbox(ALICE) == []
    monkeypatch.undo()
    await _still_works(env, c)


@pytest.mark.parametrize("fault", [StorageFull(), ENOSPC])
@pytest.mark.parametrize("rcpt", ["friend@remote.test", "team@example.test"])
async def test_spool_full_for_remote_recipients(make_env: MakeEnv, caplog, fault, rcpt) -> None:  # type: ignore[no-untyped-def]
    """Remote only (the spool alone), and an alias with a local and a remote member (the local
    copy is undone too: all or nothing)."""
    env = await make_env('[smtp]\nrelay_networks = ["127.0.0.0/8"]\n')
    env.spool.fail = fault
    with caplog.at_level(logging.WARNING):
        c = await _ehlo(env)
        await c.play(MAIL_DATA.format(rcpt=rcpt) + f"S: {FULL}\n")
    _one_warning(caplog)
    assert await env.inbox(ALICE) == [] and env.spool.queued == []
    await _still_works(env, c)


async def test_mail_size_that_does_not_fit_is_452(env: Env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """RFC 1870 6.1: a SIZE the server cannot hold now is a temporary 452, said at MAIL."""
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 5000, 5000))
    c = await _ehlo(env)
    await c.play(f"""
        C: MAIL FROM:<a@example.org> SIZE=100000
        S: {FULL}
        C: MAIL FROM:<a@example.org> SIZE=1000
        S: 250 *
        C: RCPT TO:<{ALICE}>
        S: 250 *
        """)
