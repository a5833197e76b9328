"""Classic mbox spool files (/var/mail style) for accounts that choose `delivery = mbox`.

One file per account, mboxrd format (RFC 4155 and the mboxrd convention): a `From ` separator line,
the message with LF line endings, every line matching `^>*From ` quoted with one more `>`, and a
blank line after it. Writers hold both a dot-lock (`FILE.lock`, for mail readers that only know
dot-locking) and an fcntl lock (for those that only know fcntl), taken in that order as procmail
and Dovecot do. An append that fails is truncated away: the file never keeps half a message.
Blocking code: call it from a worker thread, never from the event loop.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

_FROM_LINE = re.compile(rb"^(>*From )", re.MULTILINE)
BLOCK = 1 << 20
STALE_DOTLOCK = 300.0  # seconds: an older FILE.lock was left by a crashed writer


class MboxLockTimeout(OSError):
    """Another writer held the mailbox for too long: a temporary failure."""


def mbox_name(account: str) -> str:
    """The spool file name of an account: its address, made safe as one path component."""
    safe = account.replace("/", "_").replace("\0", "_")
    if safe in ("", ".", "..") or safe.startswith("."):
        safe = "_" + safe
    return safe


def from_line(mail_from: str, when: float) -> bytes:
    """`From sender Www Mmm dd hh:mm:ss yyyy` (asctime in UTC), MAILER-DAEMON for <>."""
    sender = mail_from or "MAILER-DAEMON"
    sender = "".join(c if c.isprintable() and not c.isspace() else "_" for c in sender)
    return f"From {sender} {time.asctime(time.gmtime(when))}\n".encode()


Source = bytes | str | os.PathLike[str]


def mboxrd_blocks(source: Source) -> Iterator[bytes]:
    """The message (bytes, or the file at `source`) as mboxrd body blocks: LF endings,
    `>*From ` lines quoted.

    Reads BLOCK octets at a time, always cutting after a newline so every block starts a line.
    """
    if isinstance(source, bytes):
        yield _quote(source)
        return
    carry = b""
    with open(source, "rb") as f:
        while True:
            block = f.read(BLOCK)
            data = carry + block
            if not block:
                if data:
                    yield _quote(data)
                return
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                carry = data
                continue
            carry = data[cut:]
            yield _quote(data[:cut])


def _quote(data: bytes) -> bytes:
    data = data.replace(b"\r\n", b"\n")
    if b"From " in data:
        data = _FROM_LINE.sub(rb">\1", data)
    return data


class Held:
    """One locked spool file and its size before this delivery (for rollback)."""

    def __init__(self, account: str, path: Path, fd: int, dotlock: Path, size: int) -> None:
        self.account, self.path, self.fd, self.dotlock, self.size = account, path, fd, dotlock, size


class MboxSpool:
    def __init__(self, directory: Path, lock_timeout: float = 30.0) -> None:
        self.directory = Path(directory)
        self.lock_timeout = lock_timeout

    def path_for(self, account: str) -> Path:
        return self.directory / mbox_name(account)

    def append(
        self,
        accounts: Sequence[str],
        source: Source,
        mail_from: str,
        when: float | None = None,
    ) -> None:
        """Append the message to every account's spool file, or to none (raises)."""
        when = time.time() if when is None else when
        with self.locked(accounts) as held:
            try:
                for h in held:
                    self._write(h, source, mail_from, when)
            except BaseException:
                self.rollback(held)
                raise

    @contextlib.contextmanager
    def locked(self, accounts: Sequence[str]) -> Iterator[list[Held]]:
        held = self.acquire(accounts)
        try:
            yield held
        finally:
            self.release(held)

    def acquire(self, accounts: Sequence[str]) -> list[Held]:
        """Lock every account's file, in a fixed order so two writers cannot deadlock."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        held: list[Held] = []
        try:
            for account in sorted(set(accounts)):
                held.append(self._lock(account))
        except BaseException:
            self.release(held)
            raise
        return held

    def release(self, held: Sequence[Held]) -> None:
        for h in reversed(held):
            self._unlock(h)

    def rollback(self, held: Sequence[Held]) -> None:
        """Cut every file back to its size before this delivery."""
        for h in held:
            try:
                os.ftruncate(h.fd, h.size)
                os.fsync(h.fd)
            except OSError:
                pass  # the caller reports the original failure

    def write_all(self, held: Sequence[Held], source: Source, mail_from: str, when: float) -> None:
        for h in held:
            self._write(h, source, mail_from, when)

    # ---- internals --------------------------------------------------------------------------

    def _write(self, h: Held, source: Source, mail_from: str, when: float) -> None:
        fd = h.fd
        prefix = b""
        if h.size:
            # A message must be preceded by an empty line (RFC 4155 2); mend a file whose
            # last writer did not end that way.
            os.lseek(fd, max(0, h.size - 2), os.SEEK_SET)
            tail = os.read(fd, 2)
            if not tail.endswith(b"\n"):
                prefix = b"\n\n"
            elif tail != b"\n\n":
                prefix = b"\n"
        os.lseek(fd, 0, os.SEEK_END)
        _write_all(fd, prefix + from_line(mail_from, when))
        last = b"\n"
        for block in mboxrd_blocks(source):
            _write_all(fd, block)
            last = block[-1:] or last
        _write_all(fd, b"\n" if last == b"\n" else b"\n\n")
        os.fsync(fd)

    def _lock(self, account: str) -> Held:
        path = self.path_for(account)
        deadline = time.monotonic() + self.lock_timeout
        dotlock = path.with_name(path.name + ".lock")
        self._dotlock(dotlock, deadline)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except BaseException:
            _unlink(dotlock)
            raise
        try:
            while True:
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as e:
                    if e.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if time.monotonic() > deadline:
                        raise MboxLockTimeout(f"{path}: locked by another process") from None
                    time.sleep(0.05)
            size = os.fstat(fd).st_size
        except BaseException:
            os.close(fd)
            _unlink(dotlock)
            raise
        return Held(account, path, fd, dotlock, size)

    def _dotlock(self, dotlock: Path, deadline: float) -> None:
        while True:
            try:
                fd = os.open(dotlock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                try:
                    age = time.time() - dotlock.stat().st_mtime
                except FileNotFoundError:
                    continue
                if age > STALE_DOTLOCK:
                    _unlink(dotlock)  # left by a writer that died
                    continue
                if time.monotonic() > deadline:
                    raise MboxLockTimeout(f"{dotlock}: held by another process") from None
                time.sleep(0.05)
                continue
            os.write(fd, f"{os.getpid()}\n".encode())
            os.close(fd)
            return

    def _unlock(self, h: Held) -> None:
        try:
            fcntl.lockf(h.fd, fcntl.LOCK_UN)
        finally:
            os.close(h.fd)
            _unlink(h.dotlock)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
