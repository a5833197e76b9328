"""Import and export between an account's mailboxes and the formats of Python's `mailbox` module.

mbox, MMDF and Babyl are single files; Maildir and MH are directories. Message bytes are carried
unchanged except for line endings (LF in these Unix formats, CRLF in the store) and each format's own
metadata (From_ line, Status headers, Babyl labels); flags go where the format has a place for them.
A malformed input message is reported with its position and skipped, never dropped silently.
Never modifies a source; never rewrites an existing destination, only appends to it.
"""

from __future__ import annotations

import asyncio
import calendar
import enum
import mailbox
import os
import re
import socket
import string
import time
from collections import Counter, defaultdict, deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.utils import mktime_tz, parseaddr, parsedate_tz
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from carteiro.store import names
from carteiro.store.api import (
    ANSWERED,
    DELETED,
    DRAFT,
    FLAGGED,
    SEEN,
    SEPARATOR,
    AccountStore,
    InvalidName,
    MailboxExists,
    MailboxNotFound,
    MessageMeta,
    OverQuota,
    StoreError,
)
from carteiro.store.flags import normalize_flags

INBOX = names.INBOX
# RFC 5788 registry / RFC 9051 2.3.2: the keyword clients set on a forwarded message; Maildir's "P"
# (passed) and Babyl's "forwarded" attribute mean the same.
FORWARDED = "$Forwarded"


class Format(enum.Enum):
    MBOX = "mbox"
    MAILDIR = "maildir"
    MH = "mh"
    BABYL = "babyl"
    MMDF = "mmdf"

    @property
    def single_file(self) -> bool:
        return self in (Format.MBOX, Format.MMDF, Format.BABYL)


class MailboxFormatError(Exception):
    """A source or destination that cannot be used at all (not a Maildir, not an mbox file, ...)."""


class Unrepresentable(Exception):
    """A message the destination format cannot hold without corrupting the file."""


@dataclass(frozen=True, slots=True)
class SourceMessage:
    position: str  # "message 17 at byte offset 12345", "message 3 (cur/1700000000.M1P2.host:2,S)"
    data: bytes  # RFC 5322 bytes as found, the format's own metadata removed
    flags: frozenset[str]  # IMAP flags and keywords, not yet validated
    internaldate: float | None


@dataclass(frozen=True, slots=True)
class Skipped:
    position: str
    reason: str

    def __str__(self) -> str:
        return f"{self.position}: {self.reason}"


@dataclass
class Summary:
    """What an import or export did; `done` counts messages imported or exported."""

    done: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    lost_flags: Counter[str] = field(default_factory=Counter)  # flag -> messages it was left off
    folders: list[tuple[str, int]] = field(default_factory=list)  # (mailbox, messages done)
    stopped: str | None = None  # why the run ended early, if it did


Progress = Callable[[int, int], None]  # (items done, items in all)
Report = Callable[[Skipped], None]


# ---- line endings ------------------------------------------------------------------------------
# The store keeps CRLF (RFC 5322 2.1, what IMAP serves); these formats come from Unix and hold LF.
# Import turns every LF or CRLF into CRLF; export turns CRLF into LF. A lone CR is left alone both
# ways, so a message with bare CRs comes back as it went out.


def to_crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def to_lf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n")


# ---- header section ----------------------------------------------------------------------------

_BLANK_LINE = re.compile(rb"\n\r?\n")
# RFC 5322 2.2: a field name is printable US-ASCII except ":"; obsolete syntax allows WSP before it
_FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+[ \t]*:")


def header_length(data: bytes) -> int:
    """Octets of the header section with its last line ending: the blank line, if any, starts here."""
    if data.startswith((b"\n", b"\r\n")):
        return 0
    m = _BLANK_LINE.search(data)
    return m.start() + 1 if m else len(data)


def _lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    pos, n = 0, len(data)
    while pos < n:
        end = data.find(b"\n", pos)
        end = n if end < 0 else end + 1
        yield pos, data[pos:end]
        pos = end


def _field_spans(header: bytes) -> list[tuple[str, int, int]]:
    """(lowercased field name, start, end) per field, continuation lines included; the spans cover
    the whole header section, so joining them gives it back."""
    spans: list[tuple[str, int, int]] = []
    for pos, line in _lines(header):
        if spans and line[:1] in (b" ", b"\t"):
            name, start, _ = spans[-1]
            spans[-1] = (name, start, pos + len(line))
            continue
        name = (
            line.partition(b":")[0].strip().decode("ascii", "replace").lower()
            if b":" in line
            else ""
        )
        spans.append((name, pos, pos + len(line)))
    return spans


def _unfold(value: bytes) -> bytes:
    return re.sub(rb"\r?\n(?=[ \t])", b"", value).strip()


def field_value(data: bytes, name: str) -> bytes | None:
    """The unfolded value of the first `name` field (lowercase) of the header section."""
    header = data[: header_length(data)]
    for fname, start, end in _field_spans(header):
        if fname == name:
            return _unfold(header[start:end].partition(b":")[2])
    return None


def remove_fields(data: bytes, drop: frozenset[str]) -> tuple[bytes, dict[str, bytes]]:
    """The message without the header fields named in `drop` (lowercase), and the unfolded values
    removed (the first of each name). Only the top-level header section is touched."""
    hlen = header_length(data)
    header = data[:hlen]
    kept: list[bytes] = []
    found: dict[str, bytes] = {}
    for name, start, end in _field_spans(header):
        if name in drop:
            found.setdefault(name, _unfold(header[start:end].partition(b":")[2]))
        else:
            kept.append(header[start:end])
    if not found:
        return data, found
    return b"".join(kept) + data[hlen:], found


def insert_fields(data: bytes, lines: Sequence[bytes]) -> bytes:
    """Adds complete field lines at the end of the header section (where MDAs put Status)."""
    hlen = header_length(data)
    head = data[:hlen]
    if head and not head.endswith(b"\n"):
        head += b"\n"
    return head + b"".join(lines) + data[hlen:]


def message_problem(data: bytes) -> str | None:
    """Why `data` is not an RFC 5322 message we should store, or None if it is one."""
    if not data.strip():
        return "empty message"
    if not _FIELD_NAME.match(data):
        first = data.split(b"\n", 1)[0][:24]
        return f"not an RFC 5322 message: the first line is not a header field ({first!r})"
    if b"\x00" in data[: header_length(data)]:
        return "NUL octet in the header section (RFC 5322 2.2)"
    return None


# ---- dates -------------------------------------------------------------------------------------

_MONTHS = {m.encode(): i for i, m in enumerate(calendar.month_abbr) if m}
_ASCTIME = re.compile(
    rb"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun),?\s+(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\s+"
    rb"(\d{1,2})\s+(\d{1,2}):(\d\d)(?::(\d\d))?\s+(?:([A-Za-z]{1,5}|[+-]\d{4})\s+)?(\d{4})"
    rb"(?:\s+([+-]\d{4}))?"
)


def from_line_date(line: bytes) -> float | None:
    """The date of an mbox From_ line ("From sender Sat Jan  3 01:05:34 1996"), or None.

    asctime() carries no zone: it is read as UTC, which is what Python's mailbox and most MDAs
    write (some old systems wrote local time). A numeric zone, where an MDA added one, is applied.
    """
    m = _ASCTIME.search(line, 5)
    if m is None:
        return None
    mon, day, hour, minute = _MONTHS[m[1]], int(m[2]), int(m[3]), int(m[4])
    sec = int(m[5] or 0)
    if not (1 <= day <= 31 and hour < 24 and minute < 60 and sec <= 60):
        return None
    ts = calendar.timegm((int(m[7]), mon, day, hour, minute, sec, 0, 0, 0))
    zone = m[8] or (m[6] if m[6] and m[6][:1] in b"+-" else None)
    if zone:
        offset = int(zone[1:3]) * 3600 + int(zone[3:5]) * 60
        ts -= offset if zone[:1] == b"+" else -offset
    return float(ts)


def header_date(data: bytes) -> float | None:
    """An INTERNALDATE from the message itself: the topmost Received field's date (when the last hop
    got it, closest to RFC 3501 2.3.3), else the Date field. None when neither parses."""
    for name in ("received", "date"):
        value = field_value(data, name)
        if value is None:
            continue
        text = value.decode("ascii", "replace")
        if name == "received":
            if ";" not in text:
                continue
            text = text.rpartition(";")[2]
        parsed = parsedate_tz(text.strip())
        if parsed is None:
            continue
        try:
            ts = float(mktime_tz(parsed))
        except (OverflowError, ValueError):
            continue
        if 0 <= ts < 253402300800:  # 1970 .. 9999
            return ts
    return None


# ---- flags, format by format -------------------------------------------------------------------

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


# Maildir (cr.yp.to/proto/maildir.html): ":2," then ASCII-sorted letters. Keywords take the letters
# a-z through a `dovecot-keywords` file ("0 $Junk" is "a"), as Dovecot does.
_MAILDIR_LETTERS = {
    DRAFT: "D",
    FLAGGED: "F",
    FORWARDED: "P",
    ANSWERED: "R",
    SEEN: "S",
    DELETED: "T",
}
_MAILDIR_FLAGS = {v: k for k, v in _MAILDIR_LETTERS.items()}
DOVECOT_KEYWORDS = "dovecot-keywords"


def maildir_flags(info: str, letter_keywords: dict[str, str]) -> set[str]:
    flags = {_MAILDIR_FLAGS[c] for c in info if c in _MAILDIR_FLAGS}
    flags.update(letter_keywords[c] for c in info if c in letter_keywords)
    return flags


def maildir_info(flags: frozenset[str], keyword_letters: dict[str, str]) -> tuple[str, set[str]]:
    """The info letters for `flags`, and the flags that have no letter."""
    letters: list[str] = []
    lost: set[str] = set()
    for f in flags:
        letter = _MAILDIR_LETTERS.get(f) or keyword_letters.get(f)
        if letter is None:
            lost.add(f)
        else:
            letters.append(letter)
    return "".join(sorted(letters)), lost


def read_dovecot_keywords(folder: Path) -> dict[str, str]:
    """letter -> keyword from a Maildir's dovecot-keywords file (absent: none)."""
    out: dict[str, str] = {}
    try:
        text = (folder / DOVECOT_KEYWORDS).read_text("utf-8", "replace")
    except OSError:
        return out
    for line in text.splitlines():
        num, _, keyword = line.strip().partition(" ")
        if num.isdigit() and int(num) < 26 and keyword:
            out[string.ascii_lowercase[int(num)]] = keyword.strip()
    return out


# MH: nmh's "unseen" sequence (absence means \Seen), "flagged" and "replied", the three that Python's
# MHMessage knows. Other sequences are the user's own labels: they become keywords and back.
MH_UNSEEN, MH_FLAGGED, MH_REPLIED = "unseen", "flagged", "replied"
_MH_RESERVED = frozenset({MH_UNSEEN, MH_FLAGGED, MH_REPLIED, "cur"})
_MH_SEQUENCE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*\Z")


def mh_flags(sequences: Iterable[str]) -> set[str]:
    seqs = set(sequences)
    flags = set() if MH_UNSEEN in seqs else {SEEN}
    if MH_FLAGGED in seqs:
        flags.add(FLAGGED)
    if MH_REPLIED in seqs:
        flags.add(ANSWERED)
    flags.update(s for s in seqs if s not in _MH_RESERVED)
    return flags


def mh_sequences(flags: frozenset[str]) -> tuple[list[str], set[str]]:
    """The sequences a message with `flags` belongs to, and the flags MH has no place for."""
    seqs = [] if SEEN in flags else [MH_UNSEEN]
    lost: set[str] = set()
    for f in flags:
        if f == SEEN:
            continue
        if f == FLAGGED:
            seqs.append(MH_FLAGGED)
        elif f == ANSWERED:
            seqs.append(MH_REPLIED)
        elif not f.startswith("\\") and _MH_SEQUENCE_NAME.match(f) and f not in _MH_RESERVED:
            seqs.append(f)
        else:
            lost.add(f)
    return seqs, lost


# Babyl (Emacs Rmail): attribute labels unseen/deleted/answered/forwarded (filed, edited, resent have
# no IMAP meaning); other labels are the user's, i.e. keywords. \Flagged and \Draft have no place,
# as in Python's BabylMessage.
BABYL_ATTRIBUTES = frozenset(
    {"unseen", "deleted", "filed", "answered", "forwarded", "edited", "resent"}
)
_BABYL_FLAGS = {"deleted": DELETED, "answered": ANSWERED, "forwarded": FORWARDED}
_BABYL_LABELS = {v: k for k, v in _BABYL_FLAGS.items()}


def babyl_flags(labels: Iterable[str]) -> set[str]:
    labs = set(labels)
    flags = set() if "unseen" in labs else {SEEN}
    for label in labs:
        if label in _BABYL_FLAGS:
            flags.add(_BABYL_FLAGS[label])
        elif label not in BABYL_ATTRIBUTES:
            flags.add(label)
    return flags


def babyl_labels(flags: frozenset[str]) -> tuple[list[str], list[str], set[str]]:
    """(attribute labels, user labels, flags Babyl has no place for)."""
    attrs = [] if SEEN in flags else ["unseen"]
    users: list[str] = []
    lost: set[str] = set()
    for f in sorted(flags):
        if f == SEEN:
            continue
        if f in _BABYL_LABELS:
            attrs.append(_BABYL_LABELS[f])
        elif f.startswith("\\") or "," in f or f in BABYL_ATTRIBUTES:
            lost.add(f)
        else:
            users.append(f)
    return attrs, users, lost


def parse_babyl_label_line(line: bytes) -> list[str]:
    """ "1, unseen, answered,, work, later," -> ["unseen", "answered", "work", "later"]."""
    rest = line.rstrip(b"\r\n")[1:]
    return [x.strip().decode("utf-8", "replace") for x in rest.split(b",") if x.strip()]


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


# ---- reading -----------------------------------------------------------------------------------

Item = SourceMessage | Skipped


class Reader(Protocol):
    @property
    def count(self) -> int:
        """How many items iteration yields (for progress)."""
        ...

    def __iter__(self) -> Iterator[Item]: ...


def _too_big(size: int, max_size: int | None) -> str | None:
    if max_size and size > max_size:
        return f"larger than the size limit ({size} > {max_size} octets)"
    return None


_GAP_OK = {
    Format.MBOX: re.compile(rb"\s*\Z"),
    Format.MMDF: re.compile(rb"(?:\x01\x01\x01\x01|\s)*\Z"),
    Format.BABYL: re.compile(rb"(?:BABYL OPTIONS:[^\x1f]*\x1f)?[\s\x1f\x0c]*\Z"),
}
_EOOH = re.compile(rb"^\*\*\* EOOH \*\*\*\n", re.M)
_MAILBOX_CLASSES: dict[Format, Callable[..., Any]] = {
    Format.MBOX: mailbox.mbox,
    Format.MMDF: mailbox.MMDF,
    Format.BABYL: mailbox.Babyl,
}


def babyl_record(raw: bytes) -> tuple[bytes, list[str]]:
    """A Babyl message record (label line, original headers, EOOH, visible headers, body) -> the
    message and its labels. An unreformatted record ("0,,") has its only header copy after the
    EOOH line; Python's Babyl.get_bytes() loses it, we keep it."""
    label_line, _, rest = raw.partition(b"\n")
    labels = parse_babyl_label_line(label_line)
    m = _EOOH.search(rest)
    if m is None:
        return rest, labels
    original, after = rest[: m.start()], rest[m.end() :]
    vis = header_length(after)
    if after.startswith(b"\n", vis):
        vis += 1
    elif after.startswith(b"\r\n", vis):
        vis += 2
    visible, body = after[:vis], after[vis:]
    if original.strip():
        headers = original
    else:
        headers = visible if visible.strip() else b""
    return headers + body, labels


class SingleFileReader:
    """mbox, MMDF or Babyl through Python's `mailbox` scanner.

    The module decides where messages start and end; its table of contents (`_toc`, the same since
    Python 2.5) gives the byte offsets we report. Bytes outside every message, which the module
    ignores silently, are reported as skipped.
    """

    def __init__(self, fmt: Format, path: Path, max_size: int | None, label: str = "") -> None:
        self.fmt, self.path, self.max_size, self.label = fmt, path, max_size, label
        if path.is_dir():
            raise MailboxFormatError(f"{path} is a directory, not a {fmt.value} file")
        if not path.exists():
            raise MailboxFormatError(f"{path} does not exist")
        box = _MAILBOX_CLASSES[fmt](str(path), create=False)
        try:
            box.keys()  # the scan
            toc: dict[int, tuple[int, int]] = getattr(box, "_toc")  # noqa: B009 - private, documented above
            spans = [toc[k] for k in sorted(toc)]
        finally:
            box.close()
        self.size = path.stat().st_size
        with path.open("rb") as f:
            if fmt is Format.MBOX:
                spans = self._join_false_splits(f, spans)
                spans = self._join_by_content_length(f, spans, self.size)
            self.items = self._with_gaps(f, spans)

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
            if out and from_line_date(first) is None and not _FIELD_NAME.match(second):
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

    def _with_gaps(self, f: BinaryIO, spans: list[tuple[int, int]]) -> list[tuple[str, int, int]]:
        items: list[tuple[str, int, int]] = []
        pos = 0
        ok = _GAP_OK[self.fmt]
        for start, stop in [*spans, (self.size, self.size)]:
            if start > pos:
                f.seek(pos)
                if not ok.match(f.read(start - pos)):
                    items.append(("gap", pos, start))
            if stop > start or start < self.size:
                items.append(("msg", start, stop))
            pos = max(pos, stop)
        return items

    @property
    def count(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Item]:
        prefix = f"{self.label}: " if self.label else ""
        n = 0
        with self.path.open("rb") as f:
            for kind, start, stop in self.items:
                if kind == "gap":
                    yield Skipped(
                        f"{prefix}{stop - start} octets at byte offset {start}",
                        f"not part of any message (not {self.fmt.value} format)",
                    )
                    continue
                n += 1
                pos = f"{prefix}message {n} at byte offset {start}"
                reason = _too_big(stop - start, self.max_size)
                if reason:
                    yield Skipped(pos, reason)
                    continue
                f.seek(start)
                yield self._message(pos, f.read(stop - start))

    def _message(self, pos: str, raw: bytes) -> Item:
        date: float | None = None
        if self.fmt is Format.BABYL:
            data, labels = babyl_record(raw)
            flags = babyl_flags(labels)
        else:
            if raw.startswith(b"From "):  # MMDF written by Python has one; MMDF proper does not
                line, _, raw = raw.partition(b"\n")
                date = from_line_date(line)
            data, meta = remove_fields(unquote_from(raw), MBOX_META_FIELDS)
            flags = mbox_flags(meta)
        return finish_message(pos, data, flags, date)


def finish_message(pos: str, data: bytes, flags: set[str], date: float | None) -> Item:
    """The checks every format shares: a leading From_ line (with a date: an envelope line some
    tools leave in Maildir or MH files, or a stray one in mbox) is metadata, not the message; then
    the message must look like RFC 5322; INTERNALDATE falls back to the message's own dates."""
    if data.startswith(b"From "):
        line, _, rest = data.partition(b"\n")
        line_date = from_line_date(line)
        if line_date is not None:
            data = rest
            date = line_date if date is None else date
    problem = message_problem(data)
    if problem:
        return Skipped(pos, problem)
    if date is None:
        date = header_date(data)
    return SourceMessage(pos, data, frozenset(flags), date)


def _natural_key(name: str) -> list[tuple[int, int | str]]:
    return [(0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", name) if p]


class MaildirReader:
    """Files in new/ and cur/ (tmp/ holds deliveries in progress; dot files are skipped, as the
    Maildir spec asks). Flags from the ":2," info, INTERNALDATE from the file's mtime."""

    def __init__(self, path: Path, max_size: int | None, label: str = "") -> None:
        self.path, self.max_size, self.label = path, max_size, label
        for sub in ("new", "cur"):
            if not (path / sub).is_dir():
                raise MailboxFormatError(f"{path} is not a Maildir (no {sub}/ directory)")
        entries: list[tuple[str, str]] = []
        for sub in ("new", "cur"):
            with os.scandir(path / sub) as it:
                for e in it:
                    if not e.name.startswith(".") and not e.is_dir():
                        entries.append((sub, e.name))
        entries.sort(key=lambda e: (_natural_key(e[1].partition(":")[0]), e[0]))
        self.entries = entries
        self.keywords = read_dovecot_keywords(path)

    @property
    def count(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[Item]:
        prefix = f"{self.label}: " if self.label else ""
        for n, (sub, name) in enumerate(self.entries, 1):
            pos = f"{prefix}message {n} ({sub}/{name})"
            p = self.path / sub / name
            try:
                st = p.stat()
                reason = _too_big(st.st_size, self.max_size)
                if reason:
                    yield Skipped(pos, reason)
                    continue
                data = p.read_bytes()
            except OSError as e:
                yield Skipped(pos, f"cannot read: {e.strerror or e}")
                continue
            _, sep, info = name.partition(":")
            flags = (
                maildir_flags(info[2:], self.keywords) if sep and info.startswith("2,") else set()
            )
            yield finish_message(pos, data, flags, st.st_mtime)


class MHReader:
    """Numbered files of an MH folder in numeric order; flags from .mh_sequences (read with
    Python's MH). INTERNALDATE from the file's mtime, as for Maildir (export sets it)."""

    def __init__(
        self,
        path: Path,
        max_size: int | None,
        label: str = "",
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.path, self.max_size, self.label = path, max_size, label
        if not path.is_dir():
            raise MailboxFormatError(f"{path} is not an MH folder (not a directory)")
        with os.scandir(path) as it:
            self.files = sorted(
                (e.name for e in it if re.fullmatch(r"[0-9]+", e.name) and not e.is_dir()),
                key=int,
            )
        self.sequences: dict[int, list[str]] = defaultdict(list)
        try:
            seqs = mailbox.MH(str(path), create=False).get_sequences()
        except FileNotFoundError:
            seqs = {}  # no .mh_sequences: nothing unseen, flagged or replied
        except (OSError, UnicodeDecodeError, mailbox.Error) as e:
            seqs = {}
            if warn:
                warn(f"{path}/.mh_sequences unreadable ({e}): its flags are not imported")
        for name, keys in seqs.items():
            for key in keys:
                self.sequences[key].append(name)

    @property
    def count(self) -> int:
        return len(self.files)

    def __iter__(self) -> Iterator[Item]:
        prefix = f"{self.label}: " if self.label else ""
        for n, name in enumerate(self.files, 1):
            pos = f"{prefix}message {n} (file {name})"
            p = self.path / name
            try:
                st = p.stat()
                reason = _too_big(st.st_size, self.max_size)
                if reason:
                    yield Skipped(pos, reason)
                    continue
                data = p.read_bytes()
            except OSError as e:
                yield Skipped(pos, f"cannot read: {e.strerror or e}")
                continue
            flags = mh_flags(self.sequences.get(int(name), ()))
            yield finish_message(pos, data, flags, st.st_mtime)


def open_reader(
    fmt: Format,
    path: Path,
    max_size: int | None = None,
    label: str = "",
    warn: Callable[[str], None] | None = None,
) -> Reader:
    if fmt is Format.MAILDIR:
        return MaildirReader(path, max_size, label)
    if fmt is Format.MH:
        return MHReader(path, max_size, label, warn)
    return SingleFileReader(fmt, path, max_size, label)


_SIGNATURES = {
    Format.MBOX: b"From ",
    Format.MMDF: b"\x01\x01\x01\x01",
    Format.BABYL: b"BABYL OPTIONS:",
}


def _file_signature_ok(fmt: Format, path: Path) -> bool:
    with path.open("rb") as f:
        head = f.read(4096).lstrip()
    return not head or head.startswith(_SIGNATURES[fmt])


def detect_format(path: Path) -> Format | None:
    """The format of an existing mailbox, from its layout or first bytes; None if unclear."""
    if path.is_dir():
        if (path / "cur").is_dir() and (path / "new").is_dir():
            return Format.MAILDIR
        if (path / ".mh_sequences").exists():
            return Format.MH
        with os.scandir(path) as it:
            if any(re.fullmatch(r"[0-9]+", e.name) and e.is_file() for e in it):
                return Format.MH
        return None
    try:
        with path.open("rb") as f:
            head = f.read(4096).lstrip()
    except OSError:
        return None
    for fmt, sig in _SIGNATURES.items():
        if head.startswith(sig):
            return fmt
    return None


# ---- folder trees (--all) ----------------------------------------------------------------------
# Maildir: Maildir++ folders ".A.B" named in modified UTF-7 with "." escaped, as Dovecot lays them
# out (carteiro.store.names); MH: sub-directories; single-file formats: a directory holding one file
# per mailbox, a mailbox's inferiors in "NAME.sbd/" as Thunderbird does.


def source_folders(fmt: Format, root: Path) -> list[tuple[str, Path]]:
    """(mailbox name relative to the import's root folder, "" for the root itself; path)."""
    if not root.is_dir():
        raise MailboxFormatError(f"{root} is not a directory")
    out: list[tuple[str, Path]] = []
    if fmt is Format.MAILDIR:
        out.append(("", root))
        with os.scandir(root) as it:
            subs = sorted(e.name for e in it if e.name.startswith(".") and e.is_dir())
        for d in subs:
            if d in (".", "..") or not (root / d / "cur").is_dir():
                continue
            name = names.name_from_folder_dir(d) or d[1:].replace(".", SEPARATOR)
            out.append((name, root / d))
        return out
    if fmt is Format.MH:
        for dirpath, dirnames, _files in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            rel = Path(dirpath).relative_to(root)
            out.append((SEPARATOR.join(rel.parts), Path(dirpath)))
        return out
    for dirpath, dirnames, files in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fname in sorted(files):
            if fname.startswith(".") or fname.endswith((".msf", ".lock")):
                continue
            rel = Path(dirpath, fname).relative_to(root)
            parts = [p.removesuffix(".sbd") for p in rel.parts]
            out.append((SEPARATOR.join(parts), Path(dirpath, fname)))
    return out


def dest_folder_path(fmt: Format, root: Path, mailbox_name: str) -> Path:
    if fmt is Format.MAILDIR:
        return root / names.folder_dir(mailbox_name) if mailbox_name != INBOX else root
    if fmt is Format.MH:
        return root.joinpath(*mailbox_name.split(SEPARATOR)) if mailbox_name != INBOX else root
    parts = mailbox_name.split(SEPARATOR)
    return root.joinpath(*(p + ".sbd" for p in parts[:-1]), parts[-1])


def target_mailbox(root: str, rel: str) -> str:
    """The store mailbox for source folder `rel` of an import into `root`."""
    if rel in ("", INBOX):
        return names.normalize_mailbox_name(root)
    if names.normalize_mailbox_name(root) == INBOX:
        return names.normalize_mailbox_name(rel)
    return names.normalize_mailbox_name(f"{root}{SEPARATOR}{rel}")


# ---- writing -----------------------------------------------------------------------------------


class Writer(Protocol):
    def add(self, data: bytes, flags: frozenset[str], internaldate: float) -> set[str]:
        """Appends one LF message; returns the flags the format could not carry. Raises
        Unrepresentable when the message would corrupt the file."""
        ...

    def close(self) -> None: ...


_MMDF_DELIMITER_LINE = re.compile(rb"^\x01\x01\x01\x01$", re.M)
_BABYL_DELIMITER_LINE = re.compile(rb"^\x1f\x0c?$", re.M)


def _check_existing_single_file(fmt: Format, path: Path) -> bytes:
    """Refuses to append to a file of another kind; returns the bytes to write first so that the
    next message starts on a fresh line (b"" for a new or well-ended file)."""
    if path.is_dir():
        raise MailboxFormatError(
            f"{path} is a directory; {fmt.value} is a single file (use --all for a folder tree)"
        )
    if not path.exists() or path.stat().st_size == 0:
        return b""
    if not _file_signature_ok(fmt, path):
        raise MailboxFormatError(
            f"{path} exists and is not a {fmt.value} file: not appending to it"
        )
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - 4096))
        tail = f.read()
    if fmt is Format.MBOX:
        return b"" if tail.endswith(b"\n\n") else b"\n" if tail.endswith(b"\n") else b"\n\n"
    if fmt is Format.MMDF:
        if tail.rstrip().endswith(b"\x01\x01\x01\x01"):
            return b"" if tail.endswith(b"\n") else b"\n"
        raise MailboxFormatError(f"{path} does not end with an MMDF delimiter (truncated?)")
    if tail.rstrip(b"\n").endswith(b"\x1f"):
        return b"" if tail.endswith(b"\x1f") else b"\x1f"
    raise MailboxFormatError(f"{path} does not end with a Babyl separator (truncated?)")


class MboxWriter:
    """mbox or MMDF through Python's writer (which locks the file: fcntl and a dot-lock)."""

    def __init__(self, fmt: Format, path: Path) -> None:
        self.fmt = fmt
        fix = _check_existing_single_file(fmt, path)
        if fix:
            with path.open("ab") as f:
                f.write(fix)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.box: mailbox.mbox | mailbox.MMDF = (
            mailbox.MMDF(str(path)) if fmt is Format.MMDF else mailbox.mbox(str(path))
        )
        try:
            self.box.lock()
        except mailbox.ExternalClashError:
            self.box.close()
            raise MailboxFormatError(f"{path} is locked by another program") from None

    def add(self, data: bytes, flags: frozenset[str], internaldate: float) -> set[str]:
        if self.fmt is Format.MMDF and _MMDF_DELIMITER_LINE.search(data):
            raise Unrepresentable("a line of the message is the MMDF delimiter (^A^A^A^A)")
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


class BabylWriter:
    """Babyl records as Python's Babyl writes them (which cannot write labels for raw bytes)."""

    def __init__(self, path: Path, labels: Iterable[str] = ()) -> None:
        prefix = _check_existing_single_file(Format.BABYL, path)
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.exists() or path.stat().st_size == 0
        self.f = path.open("ab")
        if new:
            user = sorted(set(babyl_labels(frozenset(labels) | {SEEN})[1]))
            self.f.write(
                b"BABYL OPTIONS: -*- rmail -*-\nVersion: 5\nLabels:"
                + ",".join(user).encode()
                + b"\nNote:   This is the header of an rmail file.\n\x1f"
            )
        self.f.write(prefix)

    def add(self, data: bytes, flags: frozenset[str], internaldate: float) -> set[str]:
        if _BABYL_DELIMITER_LINE.search(data):
            raise Unrepresentable("a line of the message is a Babyl separator (^_)")
        hlen = header_length(data)
        if _EOOH.search(data[:hlen] + b"\n"):
            raise Unrepresentable("the header section has a line '*** EOOH ***'")
        attrs, users, lost = babyl_labels(flags)
        line = "1" + "".join(", " + a for a in attrs) + ",," + "".join(" " + u + "," for u in users)
        # Python's layout: original headers (with their blank line), EOOH, the visible copy, body.
        # A message with no header/body separator goes in as a body with no headers.
        if hlen and data.startswith(b"\n", hlen):
            original = visible = data[: hlen + 1]
            body = data[hlen + 1 :]
        else:
            original, visible, body = b"", b"\n", data
        self.f.write(
            b"\x0c\n"
            + line.encode()
            + b"\n"
            + original
            + b"*** EOOH ***\n"
            + visible
            + body
            + b"\n\x1f"
        )
        return lost

    def close(self) -> None:
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create_file(path: Path, data: bytes, mtime: float | None) -> None:
    """O_EXCL create and write (no fsync: see _SyncBatch); FileExistsError if the name is taken."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


class _SyncBatch:
    """Files written but not yet fsynced, each with what to do once it is durable (a Maildir link
    from tmp/ into cur/). fsync()s run in parallel, which the filesystem folds into few journal
    commits: one file at a time costs a commit each and made export fsync-bound."""

    SIZE = 64

    def __init__(self) -> None:
        self.pending: list[tuple[Path, Callable[[], None] | None]] = []
        self.dirs: set[Path] = set()
        self._pool: ThreadPoolExecutor | None = None

    def add(self, path: Path, then: Callable[[], None] | None, directory: Path) -> None:
        self.pending.append((path, then))
        self.dirs.add(directory)
        if len(self.pending) >= self.SIZE:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="fsync")
            list(self._pool.map(_fsync_path, [p for p, _ in self.pending]))
            for _, then in self.pending:
                if then is not None:
                    then()
            self.pending.clear()
        for d in self.dirs:
            _fsync_path(d)
        self.dirs.clear()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._pool is not None:
                self._pool.shutdown()


class MaildirWriter:
    """New files in cur/ with ":2," info, mtime = INTERNALDATE. Each is written in tmp/ and linked
    into cur/ once fsynced, as the Maildir spec wants, so a crash never leaves a partial message.
    Names are unique per process and sort in export order."""

    def __init__(self, path: Path, subfolder: bool = False) -> None:
        if path.exists() and not path.is_dir():
            raise MailboxFormatError(f"{path} exists and is not a directory")
        if path.is_dir() and any(path.iterdir()) and not (path / "cur").is_dir():
            raise MailboxFormatError(f"{path} exists and is not a Maildir: not writing into it")
        for sub in ("tmp", "new", "cur"):
            (path / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        if subfolder:
            (path / "maildirfolder").touch()
        self.path = path
        self.letters = read_dovecot_keywords(path)
        self.keyword_letters = {k: v for v, k in self.letters.items()}
        self.keywords_changed = False
        now = time.time()
        host = socket.gethostname().replace("/", "\\057").replace(":", "\\072") or "localhost"
        self.prefix = f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}"
        self.host = host
        self.seq = 0
        self.batch = _SyncBatch()

    def _letter_for(self, keyword: str) -> str | None:
        letter = self.keyword_letters.get(keyword)
        if letter is None:
            free = [c for c in string.ascii_lowercase if c not in self.letters]
            if not free:
                return None
            letter = free[0]
            self.letters[letter] = keyword
            self.keyword_letters[keyword] = letter
            self.keywords_changed = True
        return letter

    def add(self, data: bytes, flags: frozenset[str], internaldate: float) -> set[str]:
        for f in flags:
            if not f.startswith("\\") and f not in _MAILDIR_LETTERS:
                self._letter_for(f)
        info, lost = maildir_info(flags, self.keyword_letters)
        while True:
            self.seq += 1
            uniq = f"{self.prefix}Q{self.seq}.{self.host}"
            tmp = self.path / "tmp" / uniq
            try:
                _create_file(tmp, data, internaldate)
            except FileExistsError:
                continue
            break
        final = self.path / "cur" / f"{uniq}:2,{info}"

        def link() -> None:
            try:
                os.link(tmp, final)
            finally:
                os.unlink(tmp)

        self.batch.add(tmp, link, self.path / "cur")
        return lost

    def close(self) -> None:
        self.batch.close()
        if self.keywords_changed:
            text = "".join(
                f"{string.ascii_lowercase.index(c)} {k}\n" for c, k in sorted(self.letters.items())
            )
            tmp = self.path / f".{DOVECOT_KEYWORDS}.tmp{os.getpid()}"
            tmp.write_text(text, "utf-8")
            os.replace(tmp, self.path / DOVECOT_KEYWORDS)


class MHWriter:
    """Numbered files after the highest existing number (MH has no tmp/: like Python's MH and nmh,
    files are written in place); sequences merged into .mh_sequences with Python's MH, under its
    lock, once the files are durable."""

    def __init__(self, path: Path) -> None:
        if path.exists() and not path.is_dir():
            raise MailboxFormatError(f"{path} exists and is not a directory")
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        seqfile = path / ".mh_sequences"
        if not seqfile.exists():
            seqfile.touch(mode=0o600)
        self.path = path
        self.box = mailbox.MH(str(path), create=False)
        try:
            self.box.get_sequences()
        except (mailbox.Error, UnicodeDecodeError) as e:
            raise MailboxFormatError(f"{seqfile}: {e}: not exporting into this folder") from None
        with os.scandir(path) as it:
            numbers = [int(e.name) for e in it if re.fullmatch(r"[0-9]+", e.name)]
        self.next = max(numbers, default=0) + 1
        self.added: dict[str, list[int]] = defaultdict(list)
        self.batch = _SyncBatch()

    def add(self, data: bytes, flags: frozenset[str], internaldate: float) -> set[str]:
        while True:
            key = self.next
            self.next += 1
            try:
                _create_file(self.path / str(key), data, internaldate)
            except FileExistsError:
                continue
            break
        self.batch.add(self.path / str(key), None, self.path)
        seqs, lost = mh_sequences(flags)
        for s in seqs:
            self.added[s].append(key)
        return lost

    def close(self) -> None:
        self.batch.close()
        if not self.added:
            return
        self.box.lock()
        try:
            seqs = self.box.get_sequences()
            for name, keys in self.added.items():
                seqs[name] = sorted(set(seqs.get(name, [])) | set(keys))
            self.box.set_sequences(seqs)
        finally:
            self.box.unlock()


def open_writer(
    fmt: Format, path: Path, keywords: Iterable[str] = (), subfolder: bool = False
) -> Writer:
    if fmt is Format.MAILDIR:
        return MaildirWriter(path, subfolder)
    if fmt is Format.MH:
        return MHWriter(path)
    if fmt is Format.BABYL:
        return BabylWriter(path, keywords)
    return MboxWriter(fmt, path)


# ---- import and export -------------------------------------------------------------------------


def _valid_flags(flags: frozenset[str], dropped: Counter[str]) -> frozenset[str]:
    out: set[str] = set()
    for f in flags:
        try:
            out |= normalize_flags([f])
        except StoreError:
            dropped[f] += 1
    return frozenset(out)


async def _ensure_mailbox(account: AccountStore, name: str) -> None:
    try:
        info = await account.get_mailbox(name)
        if info.selectable:
            return
    except MailboxNotFound:
        pass
    try:
        await account.create_mailbox(name)
    except MailboxExists:
        pass


async def import_mailbox(
    account: AccountStore,
    fmt: Format,
    source: Path,
    folder: str = INBOX,
    *,
    all_folders: bool = False,
    max_size: int | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
    report: Report | None = None,
) -> Summary:
    """Appends every message of `source` to `folder` (created if missing), in file order.

    With `all_folders`, `source` is a folder tree (see source_folders): its root goes to `folder`,
    sub-folders to mailboxes of the same name (under `folder` unless that is INBOX). Raises
    MailboxFormatError when `source` cannot be read at all; anything per message is in the Summary.
    """
    summary = Summary()
    dropped: Counter[str] = Counter()

    def skip(s: Skipped) -> None:
        summary.skipped.append(s)
        if report:
            report(s)

    names.normalize_mailbox_name(folder)  # raises InvalidName before anything happens
    plan: list[tuple[str, Reader]] = []
    trees = source_folders(fmt, source) if all_folders else [("", source)]
    for rel, path in trees:
        label = ""
        if all_folders:  # positions name the folder: "Sent.sbd/2023: message 4 at byte offset 9"
            label = str(path.relative_to(source)) if path != source else source.name
        try:
            target = target_mailbox(folder, rel)
        except InvalidName as e:
            skip(Skipped(label or str(path), f"no mailbox name for this folder: {e}"))
            continue
        if all_folders and fmt.single_file and not _file_signature_ok(fmt, path):
            skip(Skipped(label, f"not a {fmt.value} file"))
            continue
        plan.append((target, open_reader(fmt, path, max_size, label, summary.warnings.append)))

    total = sum(r.count for _, r in plan)
    done = 0
    for target, reader in plan:
        if not dry_run:
            await _ensure_mailbox(account, target)
        n = 0
        for item in reader:
            done += 1
            if isinstance(item, Skipped):
                skip(item)
            else:
                flags = _valid_flags(item.flags, dropped)
                try:
                    if not dry_run:
                        await account.append(target, to_crlf(item.data), flags, item.internaldate)
                except OverQuota as e:
                    skip(Skipped(item.position, f"refused by the store: {e or 'over quota'}"))
                    summary.stopped = f"over quota in {target}"
                    break
                except StoreError as e:
                    skip(Skipped(item.position, f"refused by the store: {e}"))
                else:
                    n += 1
                    summary.done += 1
            if progress:
                progress(done, total)
        summary.folders.append((target, n))
        if summary.stopped:
            break
    for kw, count in sorted(dropped.items()):
        summary.warnings.append(
            f"keyword {kw!r} is not a valid IMAP keyword: left off {count} message(s)"
        )
    return summary


async def _read_ahead(
    account: AccountStore,
    mailbox_id: int,
    metas: Sequence[MessageMeta],
    window: int = 8,
    max_bytes: int = 16 * 1024 * 1024,
) -> AsyncIterator[tuple[MessageMeta, bytes | None]]:
    """(meta, bytes or None if expunged meanwhile), in order, reading a few messages ahead so the
    store's reads overlap our (blocking) writes."""
    pending: deque[tuple[MessageMeta, asyncio.Future[bytes]]] = deque()
    upcoming = iter(metas)
    in_flight = 0
    try:
        while True:
            while len(pending) < window and (not pending or in_flight < max_bytes):
                meta = next(upcoming, None)
                if meta is None:
                    break
                pending.append(
                    (meta, asyncio.ensure_future(account.read_message(mailbox_id, meta.uid)))
                )
                in_flight += meta.size
            if not pending:
                return
            meta, fut = pending.popleft()
            in_flight -= meta.size
            try:
                data: bytes | None = await fut
            except KeyError:
                data = None
            yield meta, data
    finally:
        for _, fut in pending:
            fut.cancel()


async def export_mailbox(
    account: AccountStore,
    fmt: Format,
    dest: Path,
    folder: str = INBOX,
    *,
    all_folders: bool = False,
    progress: Progress | None = None,
    report: Report | None = None,
) -> Summary:
    """Appends the messages of `folder` (or, with `all_folders`, of every mailbox, laid out as
    dest_folder_path says) to `dest`, in UID order. Flags the format cannot carry are counted in
    Summary.lost_flags; a message the format cannot hold is skipped and reported."""
    summary = Summary()

    def skip(s: Skipped) -> None:
        summary.skipped.append(s)
        if report:
            report(s)

    if all_folders:
        # INBOX first: for Maildir and MH it is the root that the other folders live in
        boxes = sorted(
            (b for b in await account.list_mailboxes() if b.selectable),
            key=lambda b: (b.name != INBOX, b.name),
        )
    else:
        boxes = [await account.get_mailbox(folder)]
    plan = [(b, await account.list_messages(b.id)) for b in boxes]
    total = sum(len(metas) for _, metas in plan)
    done = 0
    for box, metas in plan:
        path = dest_folder_path(fmt, dest, box.name) if all_folders else dest
        keywords = {f for m in metas for f in m.flags if not f.startswith("\\")}
        writer = open_writer(fmt, path, keywords, subfolder=all_folders and box.name != INBOX)
        n = 0
        try:
            async for meta, data in _read_ahead(account, box.id, metas):
                done += 1
                pos = f"{box.name} UID {meta.uid}"
                try:
                    if data is None:
                        raise KeyError(meta.uid)
                    lost = writer.add(to_lf(data), meta.flags, meta.internaldate)
                except KeyError:
                    skip(Skipped(pos, "expunged during the export"))
                except Unrepresentable as e:
                    skip(Skipped(pos, f"cannot be stored in {fmt.value}: {e}"))
                else:
                    summary.lost_flags.update(lost)
                    summary.done += 1
                    n += 1
                if progress:
                    progress(done, total)
        finally:
            writer.close()
        summary.folders.append((box.name, n))
    return summary
