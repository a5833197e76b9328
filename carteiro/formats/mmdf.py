"""MMDF: each message between two lines of four ^A, metadata (flags) as in mbox.

A message holding the delimiter line itself cannot be written without corrupting the file: refused.
"""

from __future__ import annotations

import mailbox
import re
from pathlib import Path
from typing import ClassVar

from carteiro.formats.mbox import MboxWriter, mbox_message
from carteiro.formats.message import Format, Item, MailboxFormatError, Unrepresentable
from carteiro.formats.single_file import SingleFileReader

SIGNATURE = b"\x01\x01\x01\x01"
_DELIMITER_LINE = re.compile(rb"^\x01\x01\x01\x01$", re.M)


class MMDFReader(SingleFileReader):
    fmt = Format.MMDF
    scanner = mailbox.MMDF
    gap_ok = re.compile(rb"(?:\x01\x01\x01\x01|\s)*\Z")

    def _message(self, pos: str, raw: bytes) -> Item:
        return mbox_message(pos, raw)


def _mmdf_ending(path: Path, tail: bytes) -> bytes:
    if tail.rstrip().endswith(SIGNATURE):
        return b"" if tail.endswith(b"\n") else b"\n"
    raise MailboxFormatError(f"{path} does not end with an MMDF delimiter (truncated?)")


class MMDFWriter(MboxWriter):
    fmt: ClassVar[Format] = Format.MMDF
    signature: ClassVar[bytes] = SIGNATURE

    def _ending(self, path: Path, tail: bytes) -> bytes:
        return _mmdf_ending(path, tail)

    def _open(self, path: Path) -> mailbox.mbox | mailbox.MMDF:
        return mailbox.MMDF(str(path))

    def _check(self, data: bytes) -> None:
        if _DELIMITER_LINE.search(data):
            raise Unrepresentable("a line of the message is the MMDF delimiter (^A^A^A^A)")
