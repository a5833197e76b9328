"""The common message type of the mailbox formats: what a reader yields, what a writer takes, what a
run reports, and the checks every format applies to a message it reads.

Knows no format's layout (each format has its module) and never touches the store (transfer.py does).
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from carteiro.formats.header import from_line_date, header_date, message_problem
from carteiro.store import names

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


Item = SourceMessage | Skipped


class Reader(Protocol):
    @property
    def count(self) -> int:
        """How many items iteration yields (for progress)."""
        ...

    def __iter__(self) -> Iterator[Item]: ...


class Writer(Protocol):
    def add(self, data: bytes, flags: frozenset[str], internaldate: float) -> set[str]:
        """Appends one LF message; returns the flags the format could not carry. Raises
        Unrepresentable when the message would corrupt the file."""
        ...

    def close(self) -> None: ...


def too_big(size: int, max_size: int | None) -> str | None:
    if max_size and size > max_size:
        return f"larger than the size limit ({size} > {max_size} octets)"
    return None


def read_message_file(pos: str, path: Path, max_size: int | None) -> tuple[bytes, float] | Skipped:
    """One message of a one-file-per-message format (Maildir, MH): its bytes and mtime, or why
    it is skipped (too big, unreadable)."""
    try:
        st = path.stat()
        reason = too_big(st.st_size, max_size)
        if reason:
            return Skipped(pos, reason)
        return path.read_bytes(), st.st_mtime
    except OSError as e:
        return Skipped(pos, f"cannot read: {e.strerror or e}")


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
