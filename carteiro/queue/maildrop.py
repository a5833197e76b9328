"""The maildrop: where `carteiro-sendmail` leaves a message for the queue, as Postfix's postdrop.

DATA/queue/maildrop/ is mode 1733 (anyone may add a file, nobody but the owner may list or remove
others' files). A drop is one file: a magic line, one JSON line (the envelope the submitter asked
for) and the message. It is written under a dot-name, fsynced and renamed, so a file without a dot
is complete. The server's pickup (pickup.py) turns drops into queued messages; it trusts the
file's owner (st_uid), never a uid written inside. Nothing here opens a socket.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

MAILDROP = "maildrop"  # under DATA/queue
PICKUP_SOCKET = "pickup.sock"  # under DATA/queue: anyone may connect, to say "look now"
MAGIC = b"CARTEIRO-MAILDROP 1\n"
MAILDROP_MODE = 0o1733
DROP_MODE = 0o644  # the server (another uid) must read it; the name is unguessable and unlisted
MAX_ENVELOPE_LINE = 1 << 20
BLOCK = 1 << 20


class MaildropError(Exception):
    """A drop file is malformed (it is set aside, never delivered half-understood)."""


class TooBig(MaildropError):
    """A well-formed drop over the size limit: `drop` says who sent it (to report to)."""

    def __init__(self, message: str, drop: Drop) -> None:
        super().__init__(message)
        self.drop = drop


@dataclass
class DropEnvelope:
    """What the submitter asked for. `sender` None: the server uses the submitter's login name."""

    recipients: list[str]
    sender: str | None = None
    fullname: str | None = None
    notify: list[str] = field(default_factory=list)  # RFC 3461 NOTIFY (sendmail -N)
    ret: str | None = None  # RFC 3461 RET (sendmail -R)
    envid: str | None = None  # RFC 3461 ENVID (sendmail -V)
    defer: bool = False  # -odq: queue only; the next queue run (flush) sends it

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__, ensure_ascii=False).encode("utf-8") + b"\n"

    @classmethod
    def from_json(cls, line: bytes) -> DropEnvelope:
        try:
            data: Any = json.loads(line)
        except ValueError as e:
            raise MaildropError(f"envelope is not JSON: {e}") from None
        if not isinstance(data, dict):
            raise MaildropError("envelope is not an object")

        def text(key: str) -> str | None:
            v = data.get(key)
            if v is None:
                return None
            if not isinstance(v, str) or "\r" in v or "\n" in v or "\0" in v:
                raise MaildropError(f"envelope: {key} must be a one-line string")
            return v

        rcpts = data.get("recipients")
        if not isinstance(rcpts, list) or not rcpts:
            raise MaildropError("envelope: no recipients")
        if not all(isinstance(r, str) and r and r.isprintable() for r in rcpts):
            raise MaildropError("envelope: a recipient is not a printable string")
        notify = data.get("notify") or []
        if not isinstance(notify, list) or not all(isinstance(n, str) for n in notify):
            raise MaildropError("envelope: notify must be a list of strings")
        return cls(
            recipients=list(rcpts),
            sender=text("sender"),
            fullname=text("fullname"),
            notify=list(notify),
            ret=text("ret"),
            envid=text("envid"),
            defer=bool(data.get("defer", False)),
        )


def maildrop_dir(queue_root: Path) -> Path:
    return Path(queue_root) / MAILDROP


def ensure_maildrop(queue_root: Path) -> Path:
    """Create the maildrop (mode 1733: the umask must not narrow it) if it is missing."""
    d = maildrop_dir(queue_root)
    if not d.is_dir():
        d.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileExistsError):
            os.mkdir(d, 0o700)
            os.chmod(d, MAILDROP_MODE)
    return d


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_drop(directory: Path, envelope: DropEnvelope, message: BinaryIO | bytes) -> str:
    """Durably add a drop to `directory`; returns its name. The message is copied as given
    (the caller already made its line endings CRLF)."""
    name = f"{int(time.time() * 1000):013d}-{secrets.token_hex(10)}"
    tmp = directory / f".{name}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(MAGIC)
            out.write(envelope.to_json())
            if isinstance(message, bytes):
                out.write(message)
            else:
                while block := message.read(BLOCK):
                    out.write(block)
            out.flush()
            os.fchmod(out.fileno(), DROP_MODE)
            os.fsync(out.fileno())
        os.rename(tmp, directory / name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    try:
        _fsync_dir(directory)  # the rename is what makes the drop exist
    except PermissionError:
        # another user may not open the 1733 maildrop for reading (so cannot fsync it): the
        # file itself is on disk, and the server, woken now, commits it to the queue at once
        pass
    return name


@dataclass
class Drop:
    name: str
    uid: int
    size: int  # of the message (without our two header lines)
    mtime: float
    envelope: DropEnvelope
    offset: int  # where the message starts in the file


def open_drop(path: Path, max_size: int) -> tuple[Drop, BinaryIO]:
    """Open a complete drop safely: no symlink, a regular file with one link (a hard link to
    someone else's file is refused), not over `max_size`. Returns the drop and the open file,
    positioned at the message. Raises MaildropError or OSError."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    f = os.fdopen(fd, "rb")
    try:
        st = os.fstat(fd)
        import stat

        if not stat.S_ISREG(st.st_mode):
            raise MaildropError("not a regular file")
        if st.st_nlink != 1:
            raise MaildropError("has other links")
        magic = f.read(len(MAGIC))
        if magic != MAGIC:
            raise MaildropError("not a maildrop file")
        line = f.readline(MAX_ENVELOPE_LINE)
        if not line.endswith(b"\n"):
            raise MaildropError("envelope line too long or cut")
        env = DropEnvelope.from_json(line)
        offset = len(MAGIC) + len(line)
        size = st.st_size - offset
        drop = Drop(path.name, st.st_uid, size, st.st_mtime, env, offset)
        if size > max_size:
            raise TooBig(f"{size} octets, over the limit of {max_size}", drop)
        return drop, f
    except BaseException:
        f.close()
        raise


def list_drops(directory: Path) -> Iterator[Path]:
    """Complete drops, oldest first (their names start with the time)."""
    try:
        names = sorted(n for n in os.listdir(directory) if not n.startswith("."))
    except FileNotFoundError:
        return
    for n in names:
        yield directory / n


def stale_temps(directory: Path, older_than: float = 86400.0) -> Iterator[Path]:
    """Dot-files a crashed sendmail left (never renamed: never acknowledged)."""
    cutoff = time.time() - older_than
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(directory):
            if entry.name.startswith(".") and entry.name != ".bad":
                with contextlib.suppress(OSError):
                    if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                        yield Path(entry.path)
