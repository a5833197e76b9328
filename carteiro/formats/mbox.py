"""mbox and its variants: mboxo and mboxrd (">From " quoting), mboxcl (Content-Length, as Solaris
writes it), and the metadata fields mail readers keep in the header (Status, X-Status, X-Keywords,
Thunderbird's X-Mozilla-*). MMDF carries the same metadata and borrows it from here.

Reading never trusts a "From " line alone to start a message; writing always quotes mboxrd-style.
"""

from __future__ import annotations

import mailbox
import re
import time
from email.utils import parseaddr
from pathlib import Path
from typing import BinaryIO, ClassVar

from carteiro.formats.header import (
    FIELD_NAME,
    field_value,
    from_line_date,
    header_length,
    insert_fields,
    remove_fields,
)
from carteiro.formats.message import (
    FORWARDED,
    Format,
    Item,
    MailboxFormatError,
    finish_message,
)
from carteiro.formats.single_file import SingleFileReader, Span, append_prefix, create_private
from carteiro.store.api import ANSWERED, DELETED, DRAFT, FLAGGED, SEEN

SIGNATURE = b"From "

# mbox and MMDF: Status R (read) and O (old, no IMAP flag: \Recent is never stored); X-Status A F D T
# as mutt, UW-IMAP and Dovecot write them; keywords in Dovecot's X-Keywords. Thunderbird's
# X-Mozilla-Status bit field and X-Mozilla-Keys are read too. All of these are removed on import
# (and replaced on export), with the UIDs some servers leave behind: they describe the copy in the
# file, not the message.
MBOX_META_FIELDS = frozenset(
    {
        "status",
        "x-status",
        "x-keywords",
        "x-uid",
        "x-imap",
        "x-imapbase",
        "x-mozilla-status",
        "x-mozilla-status2",
        "x-mozilla-keys",
    }
)
_STATUS_LETTERS = {"R": SEEN, "A": ANSWERED, "F": FLAGGED, "D": DELETED, "T": DRAFT}
_MOZILLA_BITS = {0x1: SEEN, 0x2: ANSWERED, 0x4: FLAGGED, 0x8: DELETED, 0x1000: FORWARDED}


def mbox_flags(fields: dict[str, bytes]) -> set[str]:
    """Flags from the removed metadata fields of an mbox or MMDF message."""
    letters = (fields.get("status", b"") + fields.get("x-status", b"")).decode("ascii", "replace")
    flags = {_STATUS_LETTERS[c] for c in letters if c in _STATUS_LETTERS}
    moz = fields.get("x-mozilla-status")
    if moz is not None:
        try:
            bits = int(moz.decode("ascii", "replace").strip(), 16)
        except ValueError:
            bits = 0
        flags.update(flag for bit, flag in _MOZILLA_BITS.items() if bits & bit)
    for name in ("x-keywords", "x-mozilla-keys"):
        value = fields.get(name)
        if value:
            flags.update(value.decode("utf-8", "replace").replace(",", " ").split())
    return flags


def mbox_status_fields(flags: frozenset[str]) -> list[bytes]:
    out = [b"Status: RO\n" if SEEN in flags else b"Status: O\n"]
    x = "".join(
        c for c, f in (("A", ANSWERED), ("F", FLAGGED), ("T", DRAFT), ("D", DELETED)) if f in flags
    )
    if x:
        out.append(f"X-Status: {x}\n".encode())
    keywords = sorted(f for f in flags if not f.startswith("\\"))
    if keywords:
        out.append(("X-Keywords: " + " ".join(keywords) + "\n").encode())
    return out


# ---- From_ quoting -----------------------------------------------------------------------------
# mboxrd: on export every line matching ^>*From gets one more ">", on import one comes off, so a
# body line "From here" or ">From here" survives the trip. Python's mbox and MMDF writers would
# otherwise turn "From " into ">From " with no way back (mboxo); after our quoting they find nothing
# left to mangle. Reading an mboxo file, ">From " becomes "From ", which is what it almost always was.
_QUOTE = re.compile(rb"^(>*From )", re.M)
_UNQUOTE = re.compile(rb"^>(>*From )", re.M)


def quote_from(data: bytes) -> bytes:
    return _QUOTE.sub(rb">\1", data)


def unquote_from(data: bytes) -> bytes:
    return _UNQUOTE.sub(rb"\1", data)


def envelope_sender(data: bytes) -> str:
    """The address for an mbox From_ line: Return-Path, else From, else MAILER-DAEMON (the
    convention for an unknown or null sender). Always one ASCII token: Python's reader needs that."""
    for name in ("return-path", "from"):
        value = field_value(data, name)
        if value is None:
            continue
        addr = parseaddr(value.decode("ascii", "replace"))[1]
        if (
            addr
            and addr.isascii()
            and addr.isprintable()
            and " " not in addr
            and "\ufffd" not in addr
        ):
            return addr
        if name == "return-path":
            break
    return "MAILER-DAEMON"


def mbox_message(pos: str, raw: bytes) -> Item:
    """An mbox or MMDF record -> the message without its From_ line and metadata fields."""
    date: float | None = None
    if raw.startswith(b"From "):  # MMDF written by Python has one; MMDF proper does not
        line, _, raw = raw.partition(b"\n")
        date = from_line_date(line)
    data, meta = remove_fields(unquote_from(raw), MBOX_META_FIELDS)
    return finish_message(pos, data, mbox_flags(meta), date)


# ---- reading -----------------------------------------------------------------------------------


class MboxReader(SingleFileReader):
    fmt = Format.MBOX
    scanner = mailbox.mbox
    gap_ok = re.compile(rb"\s*\Z")

    def _correct_spans(self, f: BinaryIO, spans: list[Span]) -> list[Span]:
        spans = self._join_false_splits(f, spans)
        return self._join_by_content_length(f, spans, self.size)

    @staticmethod
    def _join_false_splits(f: BinaryIO, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Python splits at every line starting "From "; a body line "From the desk of..." left
        unquoted by an mboxo writer has no date and is not followed by a header field: it belongs
        to the message before (mutt and Dovecot also want a date in a From_ line)."""
        out: list[tuple[int, int]] = []
        for start, stop in spans:
            f.seek(start)
            first = f.readline(4096)
            second = f.readline(4096)
            if out and from_line_date(first) is None and not FIELD_NAME.match(second):
                out[-1] = (out[-1][0], stop)
            else:
                out.append((start, stop))
        return out

    @staticmethod
    def _join_by_content_length(
        f: BinaryIO, spans: list[tuple[int, int]], size: int
    ) -> list[tuple[int, int]]:
        """Solaris mail (mboxcl) leaves body "From " lines unquoted and counts the body in a
        Content-Length field. As mutt does, the length is trusted only when the body it gives ends
        exactly where a later message starts (a blank separator line allowed) or at the end of the
        file; a wrong length changes nothing."""
        out: list[tuple[int, int]] = []
        i = 0
        while i < len(spans):
            start, stop = spans[i]
            j = i + 1
            f.seek(start)
            raw = f.read(min(stop - start, 1 << 16))
            from_end = raw.find(b"\n") + 1
            head_len = header_length(raw[from_end:])
            value = field_value(raw[from_end : from_end + head_len], "content-length")
            if value is not None and value.strip().isdigit() and i + 1 < len(spans):
                body = start + from_end + head_len
                body += 2 if raw.startswith(b"\r\n", from_end + head_len) else 1
                end = body + int(value.strip())
                f.seek(end)
                after = f.read(1)
                targets = {end, end + 1} if after == b"\n" else {end}
                for k in range(i + 1, len(spans)):
                    if spans[k][0] in targets:
                        j = k
                        break
                    if spans[k][0] > end + 1:
                        break
                else:
                    if targets & {size} and spans[-1][0] < end:
                        j = len(spans)
            out.append((start, spans[j - 1][1]))
            i = j
        return out

    def _message(self, pos: str, raw: bytes) -> Item:
        return mbox_message(pos, raw)


# ---- writing -----------------------------------------------------------------------------------


def _mbox_ending(path: Path, tail: bytes) -> bytes:
    return b"" if tail.endswith(b"\n\n") else b"\n" if tail.endswith(b"\n") else b"\n\n"


class MboxWriter:
    """mbox through Python's writer (which locks the file: fcntl and a dot-lock). MMDFWriter is
    this with another scanner, signature and delimiter."""

    fmt: ClassVar[Format] = Format.MBOX
    signature: ClassVar[bytes] = SIGNATURE

    def __init__(self, path: Path) -> None:
        fix = append_prefix(self.fmt, path, self.signature, self._ending)
        if fix:
            with path.open("ab") as f:
                f.write(fix)
        create_private(path)
        self.box = self._open(path)
        try:
            self.box.lock()
        except mailbox.ExternalClashError:
            self.box.close()
            raise MailboxFormatError(f"{path} is locked by another program") from None

    def _ending(self, path: Path, tail: bytes) -> bytes:
        return _mbox_ending(path, tail)

    def _open(self, path: Path) -> mailbox.mbox | mailbox.MMDF:
        return mailbox.mbox(str(path))

    def _check(self, data: bytes) -> None:
        """Raises Unrepresentable for a message the file cannot hold (mbox can hold any)."""

    def add(self, data: bytes, flags: frozenset[str], internaldate: float) -> set[str]:
        self._check(data)
        data, _ = remove_fields(data, MBOX_META_FIELDS)
        data = quote_from(insert_fields(data, mbox_status_fields(flags)))
        from_line = f"From {envelope_sender(data)} {time.asctime(time.gmtime(internaldate))}\n"
        self.box.add(from_line.encode("ascii") + data)
        return set()

    def close(self) -> None:
        try:
            self.box.flush()
        finally:
            self.box.unlock()
            self.box.close()
