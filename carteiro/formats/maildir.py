"""Maildir (cr.yp.to/proto/maildir.html): one file per message in new/ or cur/, flags in the ":2,"
info of its name, keywords through Dovecot's dovecot-keywords file, INTERNALDATE as the file's mtime.

Written as the spec asks: in tmp/, fsynced, then linked into cur/, so a crash never leaves a partial
message in the folder.
"""

from __future__ import annotations

import os
import re
import socket
import string
import time
from collections.abc import Iterator
from pathlib import Path

from carteiro.formats.durable import SyncBatch, create_file
from carteiro.formats.message import (
    FORWARDED,
    Item,
    MailboxFormatError,
    Skipped,
    finish_message,
    read_message_file,
)
from carteiro.store.api import ANSWERED, DELETED, DRAFT, FLAGGED, SEEN

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
            got = read_message_file(pos, self.path / sub / name, self.max_size)
            if isinstance(got, Skipped):
                yield got
                continue
            data, mtime = got
            _, sep, info = name.partition(":")
            flags = (
                maildir_flags(info[2:], self.keywords) if sep and info.startswith("2,") else set()
            )
            yield finish_message(pos, data, flags, mtime)


class MaildirWriter:
    """New files in cur/ with ":2," info, mtime = INTERNALDATE. Each is written in tmp/ and linked
    into cur/ once fsynced, as the Maildir spec wants, so a crash never leaves a partial message.
    Names are unique per process and sort in export order."""

    def __init__(self, path: Path, subfolder: bool = False) -> None:
        if path.exists() and not path.is_dir():
            raise MailboxFormatError(f"{path} exists and is not a directory")
        if path.is_dir() and any(path.iterdir()) and not (path / "cur").is_dir():
            raise MailboxFormatError(f"{path} exists and is not a Maildir: not writing into it")
        # mail is private: the folder itself 0700 too (mkdir's parents=True would give it the
        # umask's 0755); directories above it are the user's and keep their modes
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        for sub in ("tmp", "new", "cur"):
            (path / sub).mkdir(exist_ok=True, mode=0o700)
        if subfolder:
            (path / "maildirfolder").touch(mode=0o600)
        self.path = path
        self.letters = read_dovecot_keywords(path)
        self.keyword_letters = {k: v for v, k in self.letters.items()}
        self.keywords_changed = False
        now = time.time()
        host = socket.gethostname().replace("/", "\\057").replace(":", "\\072") or "localhost"
        self.prefix = f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}"
        self.host = host
        self.seq = 0
        self.batch = SyncBatch()

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
                create_file(tmp, data, internaldate)
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
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, self.path / DOVECOT_KEYWORDS)
