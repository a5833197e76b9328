"""Babyl (Emacs Rmail): an options header, then records of a label line, the original header, an
EOOH line, the visible header and the body; labels carry the flags.

Python's Babyl loses the header of an unreformatted record and cannot write labels for raw bytes:
records are read and written here, Python's module only finds where they start.
"""

from __future__ import annotations

import mailbox
import os
import re
from collections.abc import Iterable
from pathlib import Path

from carteiro.formats.header import header_length
from carteiro.formats.message import (
    FORWARDED,
    Format,
    Item,
    MailboxFormatError,
    Unrepresentable,
    finish_message,
)
from carteiro.formats.single_file import SingleFileReader, append_prefix, create_private
from carteiro.store.api import ANSWERED, DELETED, SEEN

SIGNATURE = b"BABYL OPTIONS:"
_EOOH = re.compile(rb"^\*\*\* EOOH \*\*\*\n", re.M)
_DELIMITER_LINE = re.compile(rb"^\x1f\x0c?$", re.M)

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


class BabylReader(SingleFileReader):
    fmt = Format.BABYL
    scanner = mailbox.Babyl
    gap_ok = re.compile(rb"(?:BABYL OPTIONS:[^\x1f]*\x1f)?[\s\x1f\x0c]*\Z")

    def _message(self, pos: str, raw: bytes) -> Item:
        data, labels = babyl_record(raw)
        return finish_message(pos, data, babyl_flags(labels), None)


def _babyl_ending(path: Path, tail: bytes) -> bytes:
    if tail.rstrip(b"\n").endswith(b"\x1f"):
        return b"" if tail.endswith(b"\x1f") else b"\x1f"
    raise MailboxFormatError(f"{path} does not end with a Babyl separator (truncated?)")


class BabylWriter:
    """Babyl records as Python's Babyl writes them (which cannot write labels for raw bytes)."""

    def __init__(self, path: Path, labels: Iterable[str] = ()) -> None:
        prefix = append_prefix(Format.BABYL, path, SIGNATURE, _babyl_ending)
        new = not path.exists() or path.stat().st_size == 0
        create_private(path)
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
        if _DELIMITER_LINE.search(data):
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
