"""A full disk or a disk quota (issue 10 point 8): every command that writes gets a tagged NO with
a code and a reason (RFC 5530 3: [LIMIT] for a full disk, [OVERQUOTA] for a quota; [SERVERBUG] is
for bugs), the server logs one WARNING line naming the account and the errno (no traceback), and
the session goes on. A FETCH sets \\Seen only on the messages whose body it returned (RFC 3501
6.4.5). The memory store's `fail_writes_with` hook stands for the disk: StorageFull is what a
backend raises when SQLite or a write finds no room, OSError(ENOSPC) what a file write raises."""

# ruff: noqa: F811  (pytest fixtures imported from imap_harness)

from __future__ import annotations

import errno
import logging

import pytest
from imap_harness import (  # noqa: F401  (fixtures)
    USER,
    directory,
    server,
    start_server,
    tls_files,
)

from carteiro.store.api import StorageFull
from carteiro.store.memory import MemoryAccountStore

MSG = b"From: a@example.test\r\nSubject: s\r\n\r\nbody\r\n"
DISK_FULL = "NO [LIMIT] Insufficient storage on the server; try again later"
QUOTA = "NO [OVERQUOTA] Disk quota exceeded"
FAULT_HOOK = pytest.mark.memory_only(reason="the memory store's fault hook stands for the disk")


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "carteiro.imap" and r.levelno >= logging.WARNING]


def _one_warning(caplog: pytest.LogCaptureFixture, code: str) -> None:
    [rec] = _warnings(caplog)
    assert rec.levelno == logging.WARNING and rec.exc_info is None, rec
    assert USER in rec.getMessage() and code in rec.getMessage(), rec.getMessage()
    caplog.clear()


async def _raw(c, tagged: str) -> str:  # type: ignore[no-untyped-def]
    await c.send(tagged.encode() + b"\r\n")
    return (await c.raw_response(tagged.split()[0])).decode()


async def _ok(c, command: str) -> list[str]:  # type: ignore[no-untyped-def]
    lines = await c.cmd(command)
    assert lines[-1].split()[1] == "OK", lines
    return lines


@FAULT_HOOK
@pytest.mark.parametrize(
    ("fault", "reply", "code"),
    [
        (StorageFull(), DISK_FULL, "ENOSPC"),
        (StorageFull("", errno.EDQUOT), QUOTA, "EDQUOT"),
        (OSError(errno.ENOSPC, "No space left on device"), DISK_FULL, "ENOSPC"),
    ],
)
async def test_small_append_on_a_full_disk(server, caplog, fault, reply, code):
    c = await server.connect(login=True)
    server.store.fail_writes_with = fault
    with caplog.at_level(logging.WARNING):
        lines = await c.cmd(f"APPEND INBOX {{{len(MSG)}+}}\r\n{MSG.decode()}")
    assert lines[-1] == f"t2 {reply}", lines
    _one_warning(caplog, code)
    server.store.fail_writes_with = None
    await _ok(c, "NOOP")  # the session goes on
    lines = await _ok(c, "STATUS INBOX (MESSAGES)")
    assert lines[0] == "* STATUS INBOX (MESSAGES 0)", lines


@FAULT_HOOK
async def test_large_literal_append_on_a_full_disk_keeps_the_connection(server, caplog):
    """A big message is written to a file while the literal is stored: ENOSPC there used to be
    taken for a dead connection (closed, no tagged reply, nothing logged)."""
    c = await server.connect(login=True)
    big = MSG + b"x" * 998 + b"\r\n"
    big = big * 600  # ~600 KB
    server.store.fail_writes_with = OSError(errno.ENOSPC, "No space left on device")
    with caplog.at_level(logging.WARNING):
        await c.send(b"t9 APPEND INBOX {%d}\r\n" % len(big))
        assert (await c.line()).startswith("+")
        await c.send(big + b"\r\n")
        raw = await c.raw_response("t9")
    assert raw.decode().splitlines()[-1] == f"t9 {DISK_FULL}", raw[-300:]
    _one_warning(caplog, "ENOSPC")
    server.store.fail_writes_with = None
    lines = await _ok(c, f"APPEND INBOX {{{len(MSG)}+}}\r\n{MSG.decode()}")
    assert " OK [APPENDUID " in lines[-1], lines


@FAULT_HOOK
async def test_create_store_copy_move_on_a_full_disk(server, caplog):
    await server.deliver(MSG)
    await server.deliver(MSG)
    c = await server.connect(login=True)
    await _ok(c, "SELECT INBOX")
    server.store.fail_writes_with = StorageFull()
    with caplog.at_level(logging.WARNING):
        for command in (
            "CREATE Projects",
            "STORE 1 +FLAGS (\\Flagged)",
            "COPY 1:2 Trash",
            "UID MOVE 1 Archive",
            "RENAME Junk Spam",
            "EXPUNGE",
        ):
            caplog.clear()
            lines = await c.cmd(command)
            assert lines[-1].split(" ", 1)[1] == DISK_FULL, (command, lines)
            assert not [x for x in lines if "FETCH" in x or "EXPUNGE" in x], lines
            _one_warning(caplog, "ENOSPC")
    server.store.fail_writes_with = None
    lines = await _ok(c, "FETCH 1:* (FLAGS)")
    assert lines[:2] == ["* 1 FETCH (FLAGS (\\Recent))", "* 2 FETCH (FLAGS (\\Recent))"], lines
    lines = await _ok(c, "STATUS Trash (MESSAGES)")
    assert lines[0] == "* STATUS Trash (MESSAGES 0)", lines
    await _ok(c, "CREATE Projects")  # the session still works once there is room


@FAULT_HOOK
async def test_seen_is_set_only_where_the_body_was_returned(server, monkeypatch, caplog):
    """RFC 3501 6.4.5: BODY[] sets \\Seen as a consequence of returning the body. A message
    whose file is gone (the index still lists it) keeps its flags, the others are returned, and
    the tagged NO says some could not be fetched (as Dovecot does)."""
    uids = [await server.deliver(MSG) for _ in range(3)]
    original = MemoryAccountStore.read_message

    async def file_missing(self, mailbox_id, uid):  # type: ignore[no-untyped-def]
        if uid == uids[1]:
            raise KeyError(uid)  # what a backend raises when the file is not found
        return await original(self, mailbox_id, uid)

    monkeypatch.setattr(MemoryAccountStore, "read_message", file_missing)
    c = await server.connect(login=True)
    await _ok(c, "SELECT INBOX")
    with caplog.at_level(logging.WARNING):
        raw = await _raw(c, "t3 FETCH 1:3 BODY[]")
    assert "* 1 FETCH (" in raw and "* 3 FETCH (" in raw and "* 2 FETCH" not in raw, raw
    assert raw.splitlines()[-1].startswith("t3 NO [SERVERBUG] Some messages could not be"), raw
    assert any(f"uid {uids[1]}" in r.getMessage() for r in _warnings(caplog)), caplog.text
    monkeypatch.undo()
    lines = await _ok(c, "FETCH 1:3 (FLAGS)")
    assert lines[:3] == [
        "* 1 FETCH (FLAGS (\\Seen \\Recent))",
        "* 2 FETCH (FLAGS (\\Recent))",
        "* 3 FETCH (FLAGS (\\Seen \\Recent))",
    ], lines


async def test_expunged_meanwhile_is_still_expungeissued(server):
    """A message another session expunged (gone from the index too) is not a server fault."""
    uids = [await server.deliver(MSG) for _ in range(2)]
    c = await server.connect(login=True)
    await _ok(c, "SELECT INBOX")
    acct = await server.account()
    inbox = await acct.get_mailbox("INBOX")
    await acct.delete_messages(inbox.id, [uids[0]])
    raw = await _raw(c, "t3 FETCH 1:2 BODY[]")
    assert "* 2 FETCH (" in raw, raw
    assert raw.splitlines()[-1].startswith("t3 NO [EXPUNGEISSUED]"), raw


@FAULT_HOOK
async def test_fetch_on_a_full_disk_still_returns_the_body(server, caplog):
    """Reading mail must not need room on the disk: when \\Seen cannot be stored the body is
    still returned (without \\Seen in its FLAGS), and the failure is logged once."""
    await server.deliver(MSG)
    await server.deliver(MSG)
    c = await server.connect(login=True)
    await _ok(c, "SELECT INBOX")
    server.store.fail_writes_with = StorageFull()
    with caplog.at_level(logging.WARNING):
        raw = await _raw(c, "t3 FETCH 1:2 (FLAGS BODY[])")
    assert raw.count("body\r\n") == 2 and "\\Seen" not in raw, raw
    assert raw.splitlines()[-1].startswith("t3 OK"), raw
    _one_warning(caplog, "ENOSPC")
