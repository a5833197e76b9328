"""MH (nmh): numbered files in a directory, flags and labels as sequences in .mh_sequences,
INTERNALDATE as the file's mtime.

MH has no tmp/: like nmh, files are written in place under new numbers, and the sequences are merged
under Python's MH lock once the files are durable.
"""

from __future__ import annotations

import mailbox
import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from carteiro.formats.durable import SyncBatch, create_file
from carteiro.formats.message import (
    Item,
    MailboxFormatError,
    Skipped,
    finish_message,
    read_message_file,
)
from carteiro.store.api import ANSWERED, FLAGGED, SEEN

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
            entries = list(it)
        self.files = sorted(
            (e.name for e in entries if re.fullmatch(r"[0-9]+", e.name) and not e.is_dir()),
            key=int,
        )
        if not self.files and not (path / ".mh_sequences").exists():
            # Not an empty MH folder but something else (a Maildir, a directory of mbox files):
            # "0 imported" would hide the mistake.
            others = [e.name for e in entries if not e.name.startswith(".") and e.is_file()]
            if others or ((path / "cur").is_dir() and (path / "new").is_dir()):
                n = len(others)
                what = "a Maildir" if not n else f"{n} other file{'s' if n != 1 else ''}"
                raise MailboxFormatError(
                    f"{path} is not an MH folder: no numbered message files and no "
                    f".mh_sequences, but {what} (give the right --format)"
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
            got = read_message_file(pos, self.path / name, self.max_size)
            if isinstance(got, Skipped):
                yield got
                continue
            data, mtime = got
            flags = mh_flags(self.sequences.get(int(name), ()))
            yield finish_message(pos, data, flags, mtime)


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
        self.batch = SyncBatch()

    def add(self, data: bytes, flags: frozenset[str], internaldate: float) -> set[str]:
        while True:
            key = self.next
            self.next += 1
            try:
                create_file(self.path / str(key), data, internaldate)
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
