"""What the single-file formats (mbox, MMDF, Babyl) share: Python's `mailbox` scanner to find where
messages start and end, the bytes between messages reported rather than ignored, and the checks made
before appending to an existing file.

Never modifies a file it reads; never appends to a file of another kind.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

from carteiro.formats.message import Format, Item, MailboxFormatError, Skipped, too_big

Span = tuple[int, int]  # (start, stop) byte offsets of one message in the file


class SingleFileReader:
    """A single-file mailbox read through Python's `mailbox` scanner.

    The module decides where messages start and end; its table of contents (`_toc`, the same since
    Python 2.5) gives the byte offsets we report. Bytes outside every message, which the module
    ignores silently, are reported as skipped. A format's subclass names its scanner, the bytes
    that may sit between messages, and how a record becomes a message.
    """

    fmt: ClassVar[Format]
    scanner: ClassVar[Callable[..., Any]]  # mailbox.mbox, mailbox.MMDF, mailbox.Babyl
    gap_ok: ClassVar[re.Pattern[bytes]]  # what may separate messages without being reported

    def __init__(self, path: Path, max_size: int | None, label: str = "") -> None:
        self.path, self.max_size, self.label = path, max_size, label
        fmt = self.fmt
        if path.is_dir():
            raise MailboxFormatError(f"{path} is a directory, not a {fmt.value} file")
        if not path.exists():
            raise MailboxFormatError(f"{path} does not exist")
        box = type(self).scanner(str(path), create=False)
        try:
            box.keys()  # the scan
            toc: dict[int, tuple[int, int]] = getattr(box, "_toc")  # noqa: B009 - private, documented above
            spans = [toc[k] for k in sorted(toc)]
        finally:
            box.close()
        self.size = path.stat().st_size
        with path.open("rb") as f:
            spans = self._correct_spans(f, spans)
            self.items = self._with_gaps(f, spans)

    def _correct_spans(self, f: BinaryIO, spans: list[Span]) -> list[Span]:
        """Where the format knows better than Python's scanner (mbox variants), join its spans."""
        return spans

    def _message(self, pos: str, raw: bytes) -> Item:
        """One record of the file, as Python's scanner delimited it -> a message or a skip."""
        raise NotImplementedError

    def _with_gaps(self, f: BinaryIO, spans: list[Span]) -> list[tuple[str, int, int]]:
        items: list[tuple[str, int, int]] = []
        pos = 0
        ok = self.gap_ok
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
                reason = too_big(stop - start, self.max_size)
                if reason:
                    yield Skipped(pos, reason)
                    continue
                f.seek(start)
                yield self._message(pos, f.read(stop - start))


def create_private(path: Path) -> None:
    """Create `path` (and its parent) readable by its owner only, unless it exists: mail is
    private, and Python's `mailbox` would create it 0666 less the umask (0644 usually)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def signature_ok(path: Path, signature: bytes) -> bool:
    """The file is empty or starts (after white space) with the format's signature."""
    with path.open("rb") as f:
        head = f.read(4096).lstrip()
    return not head or head.startswith(signature)


# How an existing file must end before a message is appended: (path, last 4 KiB) -> the bytes to
# write first, or MailboxFormatError when the file looks truncated.
Ending = Callable[[Path, bytes], bytes]


def append_prefix(fmt: Format, path: Path, signature: bytes, ending: Ending) -> bytes:
    """Refuses to append to a file of another kind; returns the bytes to write first so that the
    next message starts on a fresh line (b"" for a new or well-ended file)."""
    if path.is_dir():
        raise MailboxFormatError(
            f"{path} is a directory; {fmt.value} is a single file (use --all for a folder tree)"
        )
    if not path.exists() or path.stat().st_size == 0:
        return b""
    if not signature_ok(path, signature):
        raise MailboxFormatError(
            f"{path} exists and is not a {fmt.value} file: not appending to it"
        )
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - 4096))
        tail = f.read()
    return ending(path, tail)
