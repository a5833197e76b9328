"""Malformed input is reported with its position and skipped, never dropped silently; destinations
that would be corrupted are refused."""

from __future__ import annotations

import os
import sysconfig
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

from carteiro.formats.message import Format, MailboxFormatError
from carteiro.formats.registry import detect_format
from carteiro.formats.transfer import export_mailbox, import_mailbox
from carteiro.store.api import SEEN, AccountStore, AppendResult, MessageSource, OverQuota
from carteiro.store.memory import MemoryMailStore

ACCOUNT = "alice@example.test"
GOOD = b"From: a@example.test\nSubject: good %d\n\nbody\n"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01"


def good(n: int) -> bytes:
    return GOOD.replace(b"%d", str(n).encode())


@pytest.fixture
async def account() -> AsyncIterator[AccountStore]:
    store = MemoryMailStore()
    await store.create_account(ACCOUNT)
    try:
        yield await store.account(ACCOUNT)
    finally:
        await store.close()


async def subjects(account: AccountStore, folder: str) -> list[bytes]:
    box = await account.get_mailbox(folder)
    out = []
    for meta in await account.list_messages(box.id):
        data = await account.read_message(box.id, meta.uid)
        out.append(data.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0])
    return out


# ---- mbox ---------------------------------------------------------------------------------------


async def test_mbox_garbage_bad_message_and_size_limit(
    account: AccountStore, tmp_path: Path
) -> None:
    garbage = b"this is not an mbox file\nreally not\n"
    m1 = b"From a@b Sat Jan  3 01:05:34 1996\n" + good(1) + b"\n"
    m2 = b"From a@b Sat Jan  3 01:05:35 1996\n" + PNG + b"\n\n"
    m3 = b"From a@b Sat Jan  3 01:05:36 1996\n" + good(3).replace(b"body", b"x" * 5000) + b"\n"
    m4 = b"From a@b Sat Jan  3 01:05:37 1996\n" + good(4)
    p = tmp_path / "mbox"
    p.write_bytes(garbage + m1 + m2 + m3 + m4)
    reported = []
    s = await import_mailbox(account, Format.MBOX, p, "In", max_size=1000, report=reported.append)
    assert s.done == 2
    assert [str(x) for x in s.skipped] == [
        f"{len(garbage)} octets at byte offset 0: not part of any message (not mbox format)",
        f"message 2 at byte offset {len(garbage + m1)}: not an RFC 5322 message: "
        r"the first line is not a header field (b'\x89PNG\r')",
        f"message 3 at byte offset {len(garbage + m1 + m2)}: larger than the size limit "
        f"({len(m3) - 1} > 1000 octets)",
    ]
    assert reported == s.skipped
    assert await subjects(account, "In") == [b"good 1", b"good 4"]


async def test_not_an_mbox_at_all(account: AccountStore, tmp_path: Path) -> None:
    p = tmp_path / "notes.txt"
    p.write_bytes(b"just some notes\n")
    s = await import_mailbox(account, Format.MBOX, p, "In")
    assert s.done == 0
    assert [str(x) for x in s.skipped] == [
        "16 octets at byte offset 0: not part of any message (not mbox format)"
    ]


async def test_empty_mbox_is_fine(account: AccountStore, tmp_path: Path) -> None:
    p = tmp_path / "empty"
    p.write_bytes(b"")
    s = await import_mailbox(account, Format.MBOX, p, "In")
    assert s.done == 0 and s.skipped == []


async def test_missing_source(account: AccountStore, tmp_path: Path) -> None:
    with pytest.raises(MailboxFormatError, match="does not exist"):
        await import_mailbox(account, Format.MBOX, tmp_path / "nope", "In")
    with pytest.raises(MailboxFormatError, match="not a Maildir"):
        await import_mailbox(account, Format.MAILDIR, tmp_path, "In")


async def test_invalid_keyword_is_dropped_with_a_warning(
    account: AccountStore, tmp_path: Path
) -> None:
    p = tmp_path / "mbox"
    p.write_bytes(
        b"From a@b Sat Jan  3 01:05:34 1996\nStatus: RO\nX-Keywords: ok bad(kw\n" + good(1)
    )
    s = await import_mailbox(account, Format.MBOX, p, "In")
    assert s.done == 1
    assert s.warnings == ["keyword 'bad(kw' is not a valid IMAP keyword: left off 1 message(s)"]
    box = await account.get_mailbox("In")
    [meta] = await account.list_messages(box.id)
    assert meta.flags == {SEEN, "ok"}


# ---- MMDF and Babyl -----------------------------------------------------------------------------


async def test_mmdf_garbage_and_messages_without_from_line(
    account: AccountStore, tmp_path: Path
) -> None:
    d = b"\x01\x01\x01\x01\n"
    p = tmp_path / "mmdf"
    head = d + good(1) + d + b"stray text between messages\n"
    p.write_bytes(head + d + b"From x Sat Jan  3 01:05:34 1996\n" + good(2) + d)
    s = await import_mailbox(account, Format.MMDF, p, "In")
    assert s.done == 2
    assert len(s.skipped) == 1
    # Python's MMDF reader ends a message before the newline that precedes a delimiter
    assert s.skipped[0].position.endswith(f"at byte offset {len(d + good(1)) - 1}")
    assert await subjects(account, "In") == [b"good 1", b"good 2"]


async def test_babyl_unreformatted_record_keeps_its_headers(
    account: AccountStore, tmp_path: Path
) -> None:
    p = tmp_path / "RMAIL"
    p.write_bytes(
        b"BABYL OPTIONS: -*- rmail -*-\nVersion: 5\nLabels:\n\x1f\x0c\n"
        b"0, unseen,,\n*** EOOH ***\nFrom: a@b\nSubject: good 1\n\nbody\n\x1f\x0c\n"
        b"1,, work,\nFrom: a@b\nSubject: good 2\n\n*** EOOH ***\nSubject: good 2\n\nbody\n\x1f"
    )
    s = await import_mailbox(account, Format.BABYL, p, "In")
    assert s.done == 2 and s.skipped == []
    assert await subjects(account, "In") == [b"good 1", b"good 2"]
    box = await account.get_mailbox("In")
    assert [m.flags for m in await account.list_messages(box.id)] == [frozenset(), {SEEN, "work"}]


async def test_mbox_given_as_babyl(account: AccountStore, tmp_path: Path) -> None:
    p = tmp_path / "mbox"
    p.write_bytes(b"From a@b Sat Jan  3 01:05:34 1996\n" + good(1))
    s = await import_mailbox(account, Format.BABYL, p, "In")
    assert s.done == 0
    assert [x.reason for x in s.skipped] == ["not part of any message (not babyl format)"]


# ---- Maildir and MH ------------------------------------------------------------------------------


def make_maildir(root: Path, files: Iterable[tuple[str, bytes]]) -> None:
    for sub in ("tmp", "new", "cur"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for name, data in files:
        (root / name).write_bytes(data)


async def test_maildir_unreadable_and_non_messages(account: AccountStore, tmp_path: Path) -> None:
    md = tmp_path / "Maildir"
    make_maildir(
        md,
        [
            ("cur/1000.A.host:2,S", good(1)),
            ("cur/1001.B.host:2,", PNG),
            ("new/1002.C.host", good(3)),
            ("cur/1003.D.host:2,S", good(4)),
            ("tmp/1004.E.host", good(5)),  # still being delivered: not a message yet
            ("cur/.hidden", good(6)),  # dot files are not messages (Maildir spec)
        ],
    )
    os.symlink(md / "gone", md / "cur" / "1002.Z.host:2,S")  # a file that cannot be read
    (md / "cur" / "subdir").mkdir()
    s = await import_mailbox(account, Format.MAILDIR, md, "In", max_size=1_000_000)
    assert s.done == 3
    assert [str(x) for x in s.skipped] == [
        "message 2 (cur/1001.B.host:2,): not an RFC 5322 message: the first line is not a "
        r"header field (b'\x89PNG\r')",
        "message 4 (cur/1002.Z.host:2,S): cannot read: No such file or directory",
    ]
    assert await subjects(account, "In") == [b"good 1", b"good 3", b"good 4"]


async def test_stdlib_non_message_is_refused(account: AccountStore, tmp_path: Path) -> None:
    src = Path(sysconfig.get_paths()["stdlib"]) / "test" / "test_email" / "data" / "msg_19.txt"
    if not src.exists():
        pytest.skip("no stdlib test e-mails")
    make_maildir(tmp_path / "md", [("cur/1.x:2,S", src.read_bytes())])
    s = await import_mailbox(account, Format.MAILDIR, tmp_path / "md", "In")
    assert s.done == 0 and len(s.skipped) == 1
    assert "first line is not a header field" in s.skipped[0].reason


async def test_mh_garbage_and_bad_sequences(account: AccountStore, tmp_path: Path) -> None:
    mh = tmp_path / "inbox"
    mh.mkdir()
    (mh / "1").write_bytes(good(1))
    (mh / "2").write_bytes(b"")
    (mh / "10").write_bytes(good(10))
    (mh / "2023").mkdir()  # a sub-folder with a numeric name is no message
    (mh / "notes").write_bytes(b"not numbered: not a message")
    (mh / ".mh_sequences").write_text("unseen: 1 oops:\n")
    s = await import_mailbox(account, Format.MH, mh, "In")
    assert s.done == 2
    assert [str(x) for x in s.skipped] == ["message 2 (file 2): empty message"]
    assert len(s.warnings) == 1 and ".mh_sequences unreadable" in s.warnings[0]
    assert await subjects(account, "In") == [b"good 1", b"good 10"]


async def test_over_quota_stops_the_run(tmp_path: Path) -> None:
    store = MemoryMailStore()
    await store.create_account(ACCOUNT)
    real = await store.account(ACCOUNT)

    class Limited:
        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

        async def append(
            self,
            mailbox: str,
            source: MessageSource,
            flags: Iterable[str] = (),
            internaldate: float | None = None,
        ) -> AppendResult:
            if len(await real.list_messages((await real.get_mailbox(mailbox)).id)) >= 2:
                raise OverQuota("quota exceeded")
            return await real.append(mailbox, source, flags, internaldate)

    p = tmp_path / "mbox"
    p.write_bytes(
        b"".join(b"From a@b Sat Jan  3 01:05:34 1996\n" + good(i) + b"\n" for i in range(5))
    )
    s = await import_mailbox(Limited(), Format.MBOX, p, "INBOX")  # type: ignore[arg-type]
    assert s.done == 2
    assert s.stopped == "over quota in INBOX"
    assert [str(x) for x in s.skipped] == [
        f"message 3 at byte offset {2 * (34 + len(good(0)) + 1)}: refused by the store: quota exceeded"
    ]


# ---- export ---------------------------------------------------------------------------------------


async def test_export_skips_what_the_format_cannot_hold(
    account: AccountStore, tmp_path: Path
) -> None:
    await account.append("INBOX", good(1).replace(b"\n", b"\r\n"))
    await account.append(
        "INBOX", good(2).replace(b"body", b"\x01\x01\x01\x01\nafter").replace(b"\n", b"\r\n")
    )
    await account.append(
        "INBOX", good(3).replace(b"body", b"\x1f\x0c\nafter").replace(b"\n", b"\r\n")
    )
    mmdf = await export_mailbox(account, Format.MMDF, tmp_path / "mmdf")
    assert mmdf.done == 2
    assert [str(x) for x in mmdf.skipped] == [
        "INBOX UID 2: cannot be stored in mmdf: a line of the message is the MMDF delimiter (^A^A^A^A)"
    ]
    babyl = await export_mailbox(account, Format.BABYL, tmp_path / "babyl")
    assert [str(x) for x in babyl.skipped] == [
        "INBOX UID 3: cannot be stored in babyl: a line of the message is a Babyl separator (^_)"
    ]
    for fmt in (Format.MMDF, Format.BABYL):
        back = await import_mailbox(account, fmt, tmp_path / fmt.value, fmt.value)
        assert back.done == 2 and back.skipped == []


@pytest.mark.parametrize("fmt", [Format.MBOX, Format.MMDF, Format.BABYL], ids=lambda f: f.value)
async def test_export_refuses_to_append_to_a_foreign_file(
    account: AccountStore, tmp_path: Path, fmt: Format
) -> None:
    await account.append("INBOX", good(1).replace(b"\n", b"\r\n"))
    p = tmp_path / "precious.txt"
    p.write_bytes(b"my thesis\n")
    with pytest.raises(MailboxFormatError, match="not appending"):
        await export_mailbox(account, fmt, p)
    assert p.read_bytes() == b"my thesis\n"


async def test_export_refuses_a_directory_that_is_not_a_maildir(
    account: AccountStore, tmp_path: Path
) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "file").write_text("x")
    with pytest.raises(MailboxFormatError, match="not a Maildir"):
        await export_mailbox(account, Format.MAILDIR, tmp_path / "d")


async def test_export_mbox_after_a_file_without_final_newline(
    account: AccountStore, tmp_path: Path
) -> None:
    await account.append("INBOX", good(2).replace(b"\n", b"\r\n"))
    p = tmp_path / "mbox"
    p.write_bytes(b"From a@b Sat Jan  3 01:05:34 1996\n" + good(1).rstrip(b"\n"))
    await export_mailbox(account, Format.MBOX, p)
    s = await import_mailbox(account, Format.MBOX, p, "In")
    assert s.done == 2 and s.skipped == []
    assert await subjects(account, "In") == [b"good 1", b"good 2"]


def test_detect_format(tmp_path: Path) -> None:
    (tmp_path / "m").write_bytes(b"\nFrom a Sat Jan  3 01:05:34 1996\n")
    (tmp_path / "f").write_bytes(b"\x01\x01\x01\x01\n")
    (tmp_path / "b").write_bytes(b"BABYL OPTIONS:\n")
    (tmp_path / "x").write_bytes(b"hello")
    make_maildir(tmp_path / "md", [])
    (tmp_path / "mh").mkdir()
    (tmp_path / "mh" / "1").write_bytes(good(1))
    (tmp_path / "empty").mkdir()
    assert detect_format(tmp_path / "m") is Format.MBOX
    assert detect_format(tmp_path / "f") is Format.MMDF
    assert detect_format(tmp_path / "b") is Format.BABYL
    assert detect_format(tmp_path / "x") is None
    assert detect_format(tmp_path / "md") is Format.MAILDIR
    assert detect_format(tmp_path / "mh") is Format.MH
    assert detect_format(tmp_path / "empty") is None
