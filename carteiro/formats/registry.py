"""Which module reads and writes each format, how a format is recognised, and how a tree of folders
maps to mailbox names (--all).

The one place that knows every format; the formats know nothing of each other (MMDF excepted: it
carries mbox's metadata).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from carteiro.formats import babyl, mbox, mmdf
from carteiro.formats.babyl import BabylReader, BabylWriter
from carteiro.formats.maildir import MaildirReader, MaildirWriter
from carteiro.formats.mbox import MboxReader, MboxWriter
from carteiro.formats.message import INBOX, Format, MailboxFormatError, Reader, Writer
from carteiro.formats.mh import MHReader, MHWriter
from carteiro.formats.mmdf import MMDFReader, MMDFWriter
from carteiro.formats.single_file import SingleFileReader, signature_ok
from carteiro.store import names
from carteiro.store.api import SEPARATOR

_SINGLE_FILE_READERS: dict[Format, type[SingleFileReader]] = {
    Format.MBOX: MboxReader,
    Format.MMDF: MMDFReader,
    Format.BABYL: BabylReader,
}


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
    return _SINGLE_FILE_READERS[fmt](path, max_size, label)


def open_writer(
    fmt: Format, path: Path, keywords: Iterable[str] = (), subfolder: bool = False
) -> Writer:
    """`keywords`: those the messages to come carry (Babyl lists them in its file header)."""
    if fmt is Format.MAILDIR:
        return MaildirWriter(path, subfolder)
    if fmt is Format.MH:
        return MHWriter(path)
    if fmt is Format.BABYL:
        return BabylWriter(path, keywords)
    if fmt is Format.MMDF:
        return MMDFWriter(path)
    return MboxWriter(path)


_SIGNATURES = {
    Format.MBOX: mbox.SIGNATURE,
    Format.MMDF: mmdf.SIGNATURE,
    Format.BABYL: babyl.SIGNATURE,
}


def file_signature_ok(fmt: Format, path: Path) -> bool:
    """A single-file format's file (or an empty one)."""
    return signature_ok(path, _SIGNATURES[fmt])


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
