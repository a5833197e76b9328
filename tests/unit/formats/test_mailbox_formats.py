"""Round trips through every mailbox format: store -> export -> import -> store, byte for byte.

The corpus is Python's own test e-mails (test/test_email/data, when the interpreter ships them) and
generated messages: MIME with attachments, 8-bit bodies, RFC 2047 and raw UTF-8 headers, body lines
that look like mbox separators, messages without a final newline.
"""

from __future__ import annotations

import email.policy
import mailbox
import sysconfig
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from carteiro.formats.header import from_line_date, remove_fields
from carteiro.formats.mbox import MBOX_META_FIELDS
from carteiro.formats.message import FORWARDED, Format, Skipped, to_crlf
from carteiro.formats.transfer import export_mailbox, import_mailbox
from carteiro.store.api import (
    ANSWERED,
    DELETED,
    DRAFT,
    FLAGGED,
    SEEN,
    AccountStore,
    InvalidName,
    MailboxInfo,
)
from carteiro.store.memory import MemoryMailStore

ACCOUNT = "alice@example.test"
ALL_FORMATS = list(Format)

# What each format can carry (the rest is reported in Summary.lost_flags).
CARRIED: dict[Format, frozenset[str]] = {
    Format.MBOX: frozenset({SEEN, ANSWERED, FLAGGED, DELETED, DRAFT, FORWARDED, "$Junk", "work"}),
    Format.MMDF: frozenset({SEEN, ANSWERED, FLAGGED, DELETED, DRAFT, FORWARDED, "$Junk", "work"}),
    Format.MAILDIR: frozenset(
        {SEEN, ANSWERED, FLAGGED, DELETED, DRAFT, FORWARDED, "$Junk", "work"}
    ),
    Format.MH: frozenset({SEEN, ANSWERED, FLAGGED, "work"}),
    Format.BABYL: frozenset({SEEN, ANSWERED, DELETED, FORWARDED, "$Junk", "work"}),
}
# Formats that keep INTERNALDATE (From_ line date, file mtime); Babyl falls back to Received/Date.
KEEPS_DATE = {Format.MBOX, Format.MMDF, Format.MAILDIR, Format.MH}

FLAG_SETS = [
    frozenset(),
    frozenset({SEEN}),
    frozenset({SEEN, ANSWERED}),
    frozenset({FLAGGED, "$Junk"}),
    frozenset({SEEN, DELETED, DRAFT}),
    frozenset({FORWARDED, "work", SEEN}),
]


def stdlib_email_dir() -> Path | None:
    d = Path(sysconfig.get_paths()["stdlib"]) / "test" / "test_email" / "data"
    return d if d.is_dir() else None


# Python's corpus holds a few deliberate non-messages; the importer must refuse them, not store them.
STDLIB_NOT_MESSAGES = {"msg_19.txt"}  # a digest's body fragment: no header section


def stdlib_messages() -> list[tuple[str, bytes]]:
    d = stdlib_email_dir()
    if d is None:
        return []
    out = []
    for p in sorted(d.glob("msg_*.txt")):
        if p.name in STDLIB_NOT_MESSAGES:
            continue
        data = p.read_bytes()
        if data.startswith(b"From "):  # an mbox envelope line, not part of the message
            data = data.split(b"\n", 1)[1]
        out.append((p.name, data))
    return out


def generated_messages() -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    m = EmailMessage(policy=email.policy.SMTP)
    m["From"] = "José Ñúñez <jose@example.test>"
    m["To"] = "Zoë <zoe@example.test>"
    m["Subject"] = "Ünïcödé subject — with an em dash and 日本語"
    m["Date"] = "Tue, 14 Nov 2023 10:00:00 +0100"
    m.set_content("Olá, mundo!\nFrom the desk of José\n>From quoted\n\u00e9t\u00e9\n")
    m.add_attachment(
        bytes(range(256)) * 8, maintype="application", subtype="octet-stream", filename="blob.bin"
    )
    m.add_attachment("naïve café\n", subtype="plain", filename="naïve.txt")
    out.append(("mime-rfc2047", m.as_bytes()))
    out.append(
        (
            "raw-utf8-headers-8bit-body",
            "From: Jürgen <j@example.test>\nTo: bob@example.test\nSubject: Grüße aus Köln\n"
            "Date: Wed, 15 Nov 2023 08:30:00 +0000\nMIME-Version: 1.0\n"
            "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
            "Schöne Grüße\nFrom here on, trouble for mboxo\n>>From twice quoted\n".encode(),
        )
    )
    out.append(
        (
            "latin1-8bit",
            b"From: x@example.test\nSubject: =?iso-8859-1?q?caf=E9?=\n"
            b"Content-Type: text/plain; charset=iso-8859-1\n\ncaf\xe9 cr\xe8me\n",
        )
    )
    out.append(("no-final-newline", b"From: y@example.test\nSubject: no newline\n\nlast line"))
    out.append(("headers-only", b"From: z@example.test\nSubject: no body\n"))
    out.append(
        (
            "folded-and-status",
            b"From: w@example.test\nSubject: a long\n\tfolded subject\nReceived: from a by b;\n"
            b" Thu, 16 Nov 2023 12:00:00 +0000\n\nbody\n\n\nwith blank lines\n\n",
        )
    )
    out.append(
        ("crlf-body-blank-end", b"From: v@example.test\r\nSubject: crlf\r\n\r\nline\r\n\r\n")
    )
    # RFC 5322 3.5: header fields are optional; IMAP APPEND takes such a message (issue 11 6).
    out.append(("empty-header", b"\r\nA body without a header.\r\nFrom me\r\n"))
    out.append(("empty-header-lf", b"\nbody only\n"))
    return out


CORPUS = stdlib_messages() + generated_messages()


def normalized(data: bytes) -> bytes:
    """What the store holds after an import: CRLF everywhere."""
    return to_crlf(data)


@pytest.fixture
async def account() -> AsyncIterator[AccountStore]:
    store = MemoryMailStore()
    await store.create_account(ACCOUNT)
    try:
        yield await store.account(ACCOUNT)
    finally:
        await store.close()


async def fill(
    account: AccountStore, folder: str = "INBOX"
) -> list[tuple[str, bytes, frozenset[str], float]]:
    rows = []
    for i, (name, data) in enumerate(CORPUS):
        flags = FLAG_SETS[i % len(FLAG_SETS)]
        when = 1_000_000_000.0 + i * 86_400
        await account.append(folder, normalized(data), flags, when)
        rows.append((name, normalized(data), flags, when))
    return rows


async def contents(account: AccountStore, folder: str) -> list[tuple[bytes, frozenset[str], float]]:
    box = await account.get_mailbox(folder)
    out = []
    for meta in await account.list_messages(box.id):
        out.append((await account.read_message(box.id, meta.uid), meta.flags, meta.internaldate))
    return out


def test_corpus_has_stdlib_messages_when_present() -> None:
    if stdlib_email_dir() is None:
        pytest.skip("this Python ships without test/test_email/data")
    assert len(stdlib_messages()) > 40


@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=lambda f: f.value)
async def test_round_trip(account: AccountStore, tmp_path: Path, fmt: Format) -> None:
    rows = await fill(account)
    dest = tmp_path / ("out" if fmt.single_file else "outdir")
    out = await export_mailbox(account, fmt, dest)
    assert out.skipped == []
    assert out.done == len(rows)
    back = await import_mailbox(account, fmt, dest, "Back")
    assert back.skipped == [] and back.warnings == []
    assert back.done == len(rows)
    got = await contents(account, "Back")
    assert len(got) == len(rows)
    for (name, data, flags, when), (gdata, gflags, gwhen) in zip(rows, got, strict=True):
        expected = data
        if fmt in (Format.MBOX, Format.MMDF):  # Status & co. describe the copy in the file
            expected = remove_fields(data, MBOX_META_FIELDS)[0]
        if fmt is Format.MBOX and not expected.endswith(b"\r\n"):
            expected += b"\r\n"  # Python's mbox writer ends every message with a newline
        assert gdata == expected, name
        assert gflags == flags & CARRIED[fmt], name
        if fmt in KEEPS_DATE:
            assert gwhen == pytest.approx(when, abs=1), name
    lost = {f for _, _, flags, _ in rows for f in flags} - CARRIED[fmt]
    assert set(out.lost_flags) == lost


@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=lambda f: f.value)
async def test_export_appends_to_existing_mailbox(
    account: AccountStore, tmp_path: Path, fmt: Format
) -> None:
    await fill(account)
    dest = tmp_path / "dest"
    first = await export_mailbox(account, fmt, dest)
    second = await export_mailbox(account, fmt, dest)
    back = await import_mailbox(account, fmt, dest, "Twice")
    assert back.skipped == []
    assert back.done == first.done + second.done == 2 * len(CORPUS)
    got = await contents(account, "Twice")
    assert [g[0] for g in got[: len(CORPUS)]] == [g[0] for g in got[len(CORPUS) :]]


@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=lambda f: f.value)
async def test_all_folders_round_trip(account: AccountStore, tmp_path: Path, fmt: Format) -> None:
    await account.create_mailbox("Archive/2023")
    await account.create_mailbox("Ünïcode.dots")
    msgs = [m for _, m in generated_messages()]
    for folder, data in zip(
        ["INBOX", "Sent", "Archive/2023", "Ünïcode.dots", "Archive"], msgs, strict=False
    ):
        await account.append(folder, normalized(data), [SEEN])
    dest = tmp_path / "tree"
    out = await export_mailbox(account, fmt, dest, all_folders=True)
    assert out.skipped == []
    assert out.done == 5
    store2 = MemoryMailStore()
    await store2.create_account(ACCOUNT)
    other = await store2.account(ACCOUNT)
    back = await import_mailbox(other, fmt, dest, all_folders=True)
    assert back.skipped == [], back.skipped
    assert back.done == 5
    before = {b.name: await contents(account, b.name) for b in await account.list_mailboxes()}
    after = {b.name: await contents(other, b.name) for b in await other.list_mailboxes()}
    for name, msgs_before in before.items():
        assert [m[0].rstrip(b"\r\n") for m in after[name]] == [
            m[0].rstrip(b"\r\n") for m in msgs_before
        ], name


async def test_import_all_into_a_folder(account: AccountStore, tmp_path: Path) -> None:
    await account.append("Sent", normalized(generated_messages()[0][1]))
    await account.append("INBOX", normalized(generated_messages()[1][1]))
    await export_mailbox(account, Format.MAILDIR, tmp_path / "md", all_folders=True)
    back = await import_mailbox(account, Format.MAILDIR, tmp_path / "md", "Old", all_folders=True)
    assert back.done == 2
    folders = dict(back.folders)
    assert folders["Old"] == 1 and folders["Old/Sent"] == 1
    assert folders["Old/Trash"] == 0  # empty mailboxes are exported and created too


# ---- interoperability with Python's own mailbox classes ----------------------------------------


async def test_python_reads_our_flags(account: AccountStore, tmp_path: Path) -> None:
    data = normalized(generated_messages()[3][1])
    await account.append("INBOX", data, [SEEN, ANSWERED, FLAGGED])
    await account.append("INBOX", data, [DELETED, FORWARDED])
    for fmt in ALL_FORMATS:
        await export_mailbox(account, fmt, tmp_path / fmt.value)
    mb = mailbox.mbox(str(tmp_path / "mbox"))
    assert [set(m.get_flags()) for m in mb] == [set("ROAF"), set("OD")]
    mm = mailbox.MMDF(str(tmp_path / "mmdf"))
    assert [set(m.get_flags()) for m in mm] == [set("ROAF"), set("OD")]
    md = mailbox.Maildir(str(tmp_path / "maildir"), create=False)
    got = sorted((m.get_subdir(), m.get_flags()) for m in md)
    assert got == [("cur", "FRS"), ("cur", "PT")]
    mh = mailbox.MH(str(tmp_path / "mh"), create=False)
    assert [set(mh.get_message(k).get_sequences()) for k in sorted(mh.keys())] == [
        {"replied", "flagged"},
        {"unseen"},
    ]
    bb = mailbox.Babyl(str(tmp_path / "babyl"))
    # Python reads labels back as bytes
    assert [
        {lab.decode() for lab in bb.get_message(k).get_labels()} for k in sorted(bb.keys())
    ] == [
        {"answered"},
        {"unseen", "deleted", "forwarded"},
    ]
    # and Python's readers see the message itself
    for box in (mb, mm, bb):
        assert [msg["Subject"] for msg in box] == ["no newline", "no newline"]


async def test_we_read_pythons_flags(account: AccountStore, tmp_path: Path) -> None:
    raw = b"From: p@example.test\nSubject: by python\nDate: Mon, 06 Nov 2023 09:00:00 +0000\n\nhi\n"
    mb = mailbox.mbox(str(tmp_path / "mbox"))
    msg = mailbox.mboxMessage(raw)
    msg.set_flags("RA")
    msg.set_from("p@example.test", (2023, 11, 7, 10, 0, 0, 0, 1, 0))
    mb.add(msg)
    mb.close()
    md = mailbox.Maildir(str(tmp_path / "maildir"))
    mmsg = mailbox.MaildirMessage(raw)
    mmsg.set_subdir("cur")
    mmsg.set_flags("FS")
    mmsg.set_date(1_600_000_000)
    md.add(mmsg)
    mh = mailbox.MH(str(tmp_path / "mh"))
    hmsg = mailbox.MHMessage(raw)
    hmsg.add_sequence("flagged")
    hmsg.add_sequence("unseen")
    mh.add(hmsg)
    bb = mailbox.Babyl(str(tmp_path / "babyl"))
    bmsg = mailbox.BabylMessage(raw)
    bmsg.set_labels(["answered", "work"])
    bb.add(bmsg)
    bb.close()
    mm = mailbox.MMDF(str(tmp_path / "mmdf"))
    fmsg = mailbox.MMDFMessage(raw)
    fmsg.set_flags("RF")
    mm.add(fmsg)
    mm.close()
    expect = {
        Format.MBOX: {SEEN, ANSWERED},
        Format.MAILDIR: {SEEN, FLAGGED},
        Format.MH: {FLAGGED},
        Format.BABYL: {SEEN, ANSWERED, "work"},
        Format.MMDF: {SEEN, FLAGGED},
    }
    for fmt, flags in expect.items():
        s = await import_mailbox(account, fmt, tmp_path / fmt.value, fmt.value)
        assert s.done == 1 and s.skipped == [], fmt
        [(data, got, when)] = await contents(account, fmt.value)
        assert got == flags, fmt
        assert b"Subject: by python\r\n" in data
        assert b"Status:" not in data
    [(_, _, when)] = await contents(account, "mbox")
    assert when == 1_699_351_200.0  # the From_ line's date, 2023-11-07 10:00 UTC
    [(_, _, when)] = await contents(account, "maildir")
    assert when == 1_600_000_000.0
    [(_, _, when)] = await contents(account, "babyl")
    assert when == 1_699_261_200.0  # the Date field


# ---- details -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"From MAILER-DAEMON Sat Jan  3 01:05:34 1996", 820631134.0),
        (b"From a@b Sat Jan 3 01:05 1996", 820631100.0),
        (b"From a@b Sat Jan  3 01:05:34 1996 +0100", 820627534.0),
        (b"From 1234@xxx Sat Jan 03 01:05:34 +0000 1996", 820631134.0),
        (b"From - Sat Jan  3 01:05:34 PST 1996", 820631134.0),
        (b"From the desk of the editor", None),
        (b"From a@b Sat Jan 33 01:05:34 1996", None),
    ],
)
def test_from_line_date(line: bytes, expected: float | None) -> None:
    assert from_line_date(line) == expected


async def test_mboxo_file_with_unquoted_from_in_body(account: AccountStore, tmp_path: Path) -> None:
    """A body line "From the ..." left unquoted by an mboxo writer does not split the message."""
    p = tmp_path / "mbox"
    p.write_bytes(
        b"From a@b Sat Jan  3 01:05:34 1996\nFrom: a@b\nSubject: one\n\nhello\n\n"
        b"From the desk of A\nmore body\n\n"
        b"From c@d Sun Jan  4 01:05:34 1996\nFrom: c@d\nSubject: two\n\nbye\n"
    )
    s = await import_mailbox(account, Format.MBOX, p, "X")
    assert s.done == 2 and s.skipped == []
    got = await contents(account, "X")
    assert got[0][0].endswith(b"hello\r\n\r\nFrom the desk of A\r\nmore body\r\n")


async def test_status_headers_replaced_not_duplicated(
    account: AccountStore, tmp_path: Path
) -> None:
    data = b"From: a@b\r\nStatus: RO\r\nX-Status: F\r\nSubject: s\r\n\r\nbody\r\n"
    await account.append("INBOX", data, [ANSWERED])
    await export_mailbox(account, Format.MBOX, tmp_path / "m")
    text = (tmp_path / "m").read_bytes()
    assert text.count(b"Status:") == 2  # one Status, one X-Status
    assert b"X-Status: A\n" in text and b"Status: O\n" in text
    s = await import_mailbox(account, Format.MBOX, tmp_path / "m", "Y")
    [(got, flags, _)] = await contents(account, "Y")
    assert flags == {ANSWERED}
    assert got == b"From: a@b\r\nSubject: s\r\n\r\nbody\r\n"
    assert s.done == 1


async def test_thunderbird_mbox_flags(account: AccountStore, tmp_path: Path) -> None:
    p = tmp_path / "Inbox"
    p.write_bytes(
        b"From - Mon Nov  6 09:00:00 2023\nX-Mozilla-Status: 1005\nX-Mozilla-Status2: 00000000\n"
        b"X-Mozilla-Keys: $label1 todo\nFrom: t@b\nSubject: tb\n\nbody\n"
    )
    s = await import_mailbox(account, Format.MBOX, p, "TB")
    [(data, flags, _)] = await contents(account, "TB")
    assert s.done == 1
    assert flags == {SEEN, FLAGGED, FORWARDED, "$label1", "todo"}
    assert b"X-Mozilla" not in data


async def test_dry_run_changes_nothing(account: AccountStore, tmp_path: Path) -> None:
    await fill(account)
    await export_mailbox(account, Format.MBOX, tmp_path / "m")
    s = await import_mailbox(account, Format.MBOX, tmp_path / "m", "New", dry_run=True)
    assert s.done == len(CORPUS)
    assert "New" not in {b.name for b in await account.list_mailboxes()}


async def test_progress_reports_every_item(account: AccountStore, tmp_path: Path) -> None:
    await fill(account)
    seen: list[tuple[int, int]] = []
    await export_mailbox(
        account, Format.MAILDIR, tmp_path / "md", progress=lambda d, t: seen.append((d, t))
    )
    assert seen == [(i, len(CORPUS)) for i in range(1, len(CORPUS) + 1)]
    seen.clear()
    reported: list[Skipped] = []
    await import_mailbox(
        account,
        Format.MAILDIR,
        tmp_path / "md",
        "P",
        progress=lambda d, t: seen.append((d, t)),
        report=reported.append,
    )
    assert seen[-1] == (len(CORPUS), len(CORPUS)) and reported == []


async def test_export_all_writes_the_root_first_whatever_the_listing_order(
    account: AccountStore, tmp_path: Path
) -> None:
    await account.append("Archive", normalized(generated_messages()[2][1]))
    await account.append("INBOX", normalized(generated_messages()[3][1]))

    class Reversed:
        def __getattr__(self, name: str) -> object:
            return getattr(account, name)

        async def list_mailboxes(self) -> list[MailboxInfo]:
            return list(reversed(await account.list_mailboxes()))

    for fmt in (Format.MAILDIR, Format.MH):
        out = await export_mailbox(Reversed(), fmt, tmp_path / fmt.value, all_folders=True)  # type: ignore[arg-type]
        assert out.done == 2 and out.skipped == []


async def test_import_all_from_a_directory_of_mbox_files(
    account: AccountStore, tmp_path: Path
) -> None:
    tree = tmp_path / "Mail"
    (tree / "Lists.sbd").mkdir(parents=True)
    msg = b"From a@b Sat Jan  3 01:05:34 1996\nFrom: a@b\nSubject: s\n\nbody\n"
    (tree / "Lists").write_bytes(msg)
    bad = b"From a@b Sat Jan  3 01:05:35 1996\n\x89PNG\r\n\n"
    (tree / "Lists.sbd" / "python").write_bytes(msg + b"\n" + bad + msg)
    (tree / "Lists.msf").write_bytes(b'// <!-- <mdb:mork:z v="1.4"/> -->')  # Thunderbird index
    (tree / "notes.txt").write_bytes(b"shopping list\n")  # a file that is no mailbox: skipped whole
    s = await import_mailbox(account, Format.MBOX, tree, all_folders=True)
    assert s.done == 3
    assert [str(x) for x in s.skipped] == [
        "notes.txt: not a mbox file",
        f"Lists.sbd/python: message 2 at byte offset {len(msg) + 1}: not an RFC 5322 message: "
        r"the first line is not a header field (b'\x89PNG\r')",
    ]
    assert dict(s.folders) == {"Lists": 1, "Lists/python": 2}


async def test_invalid_folder_is_an_error(account: AccountStore, tmp_path: Path) -> None:
    (tmp_path / "m").write_bytes(b"")
    with pytest.raises(InvalidName):
        await import_mailbox(account, Format.MBOX, tmp_path / "m", "a//b")


async def test_babyl_labels_header_lists_user_labels(account: AccountStore, tmp_path: Path) -> None:
    data = normalized(generated_messages()[3][1])
    await account.append("INBOX", data, [SEEN, "work", FORWARDED, "a,b"])
    out = await export_mailbox(account, Format.BABYL, tmp_path / "RMAIL")
    assert out.lost_flags == {"a,b": 1}
    head = (tmp_path / "RMAIL").read_bytes().split(b"\x1f", 1)[0]
    assert b"\nLabels:work\n" in head


async def test_solaris_content_length_keeps_an_unquoted_from_line(
    account: AccountStore, tmp_path: Path
) -> None:
    """Solaris mail and mutt write Content-Length and leave body "From " lines unquoted; a length
    that ends exactly at the next From_ line (or the end of the file) is trusted, as mutt does."""
    body = b"hi\nFrom x@y Sat Jan  3 01:05:34 1996\nFrom: z@z\nxx\n"
    p = tmp_path / "mbox"
    p.write_bytes(
        b"From a@b Sat Jan  3 01:05:34 1996\nFrom: a@b\nSubject: one\n"
        + f"Content-Length: {len(body)}\n\n".encode()
        + body
        + b"\nFrom c@d Sun Jan  4 01:05:34 1996\nFrom: c@d\nSubject: two\n"
        + f"Content-Length: {len(body)}\n\n".encode()
        + body
    )
    s = await import_mailbox(account, Format.MBOX, p, "Sol")
    assert s.done == 2 and s.skipped == []
    got = await contents(account, "Sol")
    assert got[0][0].endswith(b"\r\n\r\n" + to_crlf(body))
    assert got[1][0].startswith(b"From: c@d\r\n") and got[1][0].endswith(to_crlf(body))


async def test_wrong_content_length_is_not_trusted(account: AccountStore, tmp_path: Path) -> None:
    p = tmp_path / "mbox"
    p.write_bytes(
        b"From a@b Sat Jan  3 01:05:34 1996\nFrom: a@b\nContent-Length: 3\n\nhello\n\n"
        b"From c@d Sun Jan  4 01:05:34 1996\nFrom: c@d\nContent-Length: 900\n\nbye\n\n"
        b"From e@f Sun Jan  4 01:05:34 1996\nFrom: e@f\n\nlast\n"
    )
    s = await import_mailbox(account, Format.MBOX, p, "W")
    assert s.done == 3 and s.skipped == []
    got = [c[0] for c in await contents(account, "W")]
    assert got[1] == b"From: c@d\r\nContent-Length: 900\r\n\r\nbye\r\n"


def test_maildir_export_is_private_whatever_the_umask(tmp_path: Path) -> None:
    """Issue 12 Found 7: mail is 0600/0700 always (the folder's own directory, its marker and
    keywords files included), not what the umask would give."""
    import os

    from carteiro.formats.maildir import MaildirWriter

    old = os.umask(0o022)
    try:
        w = MaildirWriter(tmp_path / "out" / ".Sub", subfolder=True)
        w.add(b"Subject: x\r\n\r\nbody\r\n", frozenset({"$Work", "\\Seen"}), 1.0e9)
        w.close()
    finally:
        os.umask(old)
    top = tmp_path / "out" / ".Sub"
    assert top.stat().st_mode & 0o777 == 0o700
    assert (top / "dovecot-keywords").read_text() == "0 $Work\n"
    for root, _dirs, files in os.walk(top):
        assert os.stat(root).st_mode & 0o777 == 0o700, root
        for name in files:
            assert os.stat(os.path.join(root, name)).st_mode & 0o777 == 0o600, name
