"""Maildir files: unique names, durable staging, folder metadata, and file-name parsing.

A message file is `<unique>,S=<size>,U=<uid>:2,<info>` in a folder's cur/ (maildir(5) plus Dovecot's
S= extension); the unique part embeds the writing process's token so crash recovery can find exactly
the files an interrupted process linked but never committed. Never deletes anything it did not create.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

META_FILE = "carteiro-mailbox"  # per folder: guid, name, UIDVALIDITY and UID/MODSEQ leases (JSON)
KEYWORDS_FILE = "carteiro-keywords"  # per account: "<n> <keyword>" lines, n=0..25 -> letters a..z
FOLDER_MARKER = "maildirfolder"  # Maildir++: marks a folder directory
SUBDIRS = ("cur", "new", "tmp")
KEYWORD_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _hostname() -> str:
    # maildir(5): "/" and ":" in the host name are written as \057 and \072
    return socket.gethostname().replace("/", "\\057").replace(":", "\\072") or "localhost"


HOST = _hostname()


class UniqueNames:
    """maildir(5) unique names for one process (identified by `token`)."""

    def __init__(self, token: str) -> None:
        self.token = token
        self._counter = 0
        self._pid = os.getpid()

    def next(self) -> str:
        self._counter += 1
        now = time.time()
        sec = int(now)
        usec = int((now - sec) * 1_000_000)
        return f"{sec}.M{usec}P{self._pid}Q{self._counter}R{self.token}.{HOST}"


def token_of(filename: str) -> str | None:
    """The writer token inside a file name we made, or None."""
    head = filename.split(".", 2)
    if len(head) < 2:
        return None
    mid = head[1]
    r = mid.rfind("R")
    return mid[r + 1 :] if r >= 0 else None


def make_base(unique: str, size: int, uid: int, disk_size: int | None = None) -> str:
    """`size`: the message's size on the wire (RFC822.SIZE). With `disk_size`, the file holds the
    LF form of the message (see to_disk): S= is the file's size and W= the wire size, as Dovecot
    writes them; without, the file holds the exact bytes and S= is both."""
    if disk_size is None:
        return f"{unique},S={size},U={uid}"
    return f"{unique},S={disk_size},W={size},U={uid}"


def is_lf_form(base: str) -> bool:
    """Does the file of this base name hold the LF form (a W= field)? Older files never do."""
    return ",W=" in base


def to_disk(data: bytes, crlf: bool = False) -> bytes | None:
    """The LF form of a message for its file, as Maildir readers (mutt) expect, or None when the
    message must be kept exactly as given: it has a bare LF (a binary APPEND, RFC 3516, stored as
    sent), or no CRLF at all. Exact: to_wire(to_disk(m)) == m for every message it converts (the
    LFs of the LF form are exactly the CRLFs of the message; a bare CR stays a CR).

    `crlf`: the caller already knows that every CR of `data` starts a CRLF and every LF ends one
    (the SMTP server checked each chunk as it came: RFC 5321 2.3.8); the check below, 3-5x the
    cost of deleting the CRs (~40 us per 100 KB, on the event loop), is then not made again."""
    lf = data.replace(b"\r", b"")  # one-octet patterns: ~20x faster than replacing CRLF
    if len(lf) == len(data):
        return None  # no CR: no CRLF
    if crlf:
        return lf
    if to_wire(lf) == data:
        return lf  # the usual message: every CR ends a line, every LF follows a CR
    # a bare CR (kept: it is no line end) or a bare LF
    if b"\r\n" not in data:
        return None
    lf = data.replace(b"\r\n", b"\n")
    if len(data) - len(lf) != data.count(b"\n"):
        return None  # a bare LF: the LF form could not tell it from a line end
    return lf


def to_wire(data: bytes) -> bytes:
    """The message (CRLF line ends) from the LF form of its file."""
    return data.replace(b"\n", b"\r\n")


def wire_bytes(data: bytes, base: str) -> bytes:
    """What a file named `base` holds, as the message's bytes."""
    return to_wire(data) if is_lf_form(base) else data


def wire_size(path: str) -> tuple[int, int | None]:
    """(size on the wire, size of the file if it holds an LF form) of a file another program
    wrote: a file with LF line ends and no CR at all (procmail, mutt, Python's mailbox) is the LF
    form of the message whose lines end in CRLF; anything else is served as it is."""
    size = lines = 0
    has_cr = False
    # O_NOFOLLOW: a symbolic link dropped into the Maildir is no message (it could point anywhere)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        while chunk := f.read(1 << 20):
            size += len(chunk)
            lines += chunk.count(b"\n")
            has_cr = has_cr or b"\r" in chunk
    if has_cr or not lines:
        return size, None
    return size + lines, size


def disk_bytes(data: bytes, base: str) -> bytes:
    """What the file named `base` of the message `data` holds. A name in LF form says that the
    message has no bare LF (to_disk gave it): then when it has as many CRs as LFs, every CR is
    one of a CRLF and deleting them makes the LF form (a count instead of to_disk's way back
    and compare, for the file worker); else it has a bare CR, which the LF form keeps."""
    if is_lf_form(base):
        lf = data.replace(b"\r", b"")
        if len(data) - len(lf) == data.count(b"\n"):
            return lf
        kept = to_disk(data)
        assert kept is not None, "a message named in LF form that has no LF form"
        return kept
    return data


def file_name(base: str, info: str) -> str:
    return f"{base}:2,{info}"


@dataclass(frozen=True, slots=True)
class ParsedName:
    base: str
    info: str
    size: int | None  # S=: the file's size
    uid: int | None
    wire: int | None = None  # W=: the message's size when the file holds its LF form

    @property
    def message_size(self) -> int | None:
        return self.wire if self.wire is not None else self.size


def parse_name(filename: str) -> ParsedName:
    base, sep, info = filename.partition(":2,")
    if not sep:
        base, _, _ = filename.partition(":")
        info = ""
    size = uid = wire = None
    for field in base.split(",")[1:]:
        key, eq, value = field.partition("=")
        if eq and value.isdigit():
            if key == "S":
                size = int(value)
            elif key == "U":
                uid = int(value)
            elif key == "W":
                wire = int(value)
    return ParsedName(base, info, size, uid, wire)


def fsync_dir(path: str | Path) -> None:
    """fsync a directory or a file by path (O_RDONLY works for both on Linux)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _syncfs_call() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    """libc's syncfs(2), if this is Linux 5.8 or later: only from 5.8 does syncfs report a
    writeback error (errseq on the superblock); before, it returned 0 whatever happened, and a
    file whose data never reached the disk would be taken for durable."""
    if os.uname().sysname != "Linux":
        return None
    try:
        major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    except ValueError:
        return None
    if (major, minor) < (5, 8):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn  # type: ignore[no-any-return]


_SYNCFS = _syncfs_call()


def syncfs_all(fds: list[int]) -> bool:
    """Make everything written on the filesystems of these open descriptors durable: one
    syncfs(2) per filesystem (data of every file, and the journal, so names and renames too).
    False when syncfs is not to be used here (the caller fsyncs file by file instead).

    Why: the file worker's round used to fsync each of up to 64 files and their directories over
    16 threads. Each fsync is a write request and a cache flush of its own, and on a virtual
    machine each request is a trap to the host billed to the caller's CPU; one syncfs merges them
    (bench/sync_round.py: 64 1 KB files, ~20-30 us -> ~2-4 us of CPU per file, 2.5-3.2 -> 0.5-0.7
    disk writes per file). The price: it also writes out whatever else is dirty on that
    filesystem, which a mail data directory's filesystem has little of."""
    global _SYNCFS
    if _SYNCFS is None:
        return False
    seen: set[int] = set()
    for fd in fds:
        dev = os.fstat(fd).st_dev
        if dev in seen:
            continue
        if _SYNCFS(fd) != 0:
            err = ctypes.get_errno()
            if err == errno.ENOSYS and not seen:  # (a seccomp filter, say): file by file
                _SYNCFS = None
                return False
            raise OSError(err, os.strerror(err))
        seen.add(dev)
    return True


def stage_bytes(path: str, data: bytes, mtime: float, sync: bool = True) -> int:
    """Write `data` to a new file at `path` (fsynced unless `sync` is False: the caller then
    fsyncs it before depending on it); its mtime carries INTERNALDATE."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.utime(fd, (mtime, mtime))
        if sync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)
    return len(data)


def stage_bytes_open(path: str, data: bytes, mtime: float) -> int:
    """Like stage_bytes without fsync, but return the still-open descriptor: the caller fsyncs it
    (with others, in one round) and closes it, saving a re-open by path."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        written = os.write(fd, data)
        if written < len(data):
            view = memoryview(data)[written:]
            while view:
                view = view[os.write(fd, view) :]
        os.utime(fd, (mtime, mtime))
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    return fd


def fsync_all(items: list[int | str]) -> None:
    """fsync open descriptors (ints) and paths (files or directories, opened read-only)."""
    for item in items:
        if isinstance(item, int):
            os.fsync(item)
        else:
            fsync_dir(item)


LINK_FALLBACK_ERRNOS = (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP)  # copy instead


def stage_path(path: str, source: str, mtime: float, sync: bool = True) -> int:
    """Hard-link `source` to `path` (same filesystem) or copy it there; return the size.

    The source keeps its content; its mtime is left alone unless we made a copy.
    """
    try:
        os.link(source, path)
        linked = True
    except OSError as exc:
        if exc.errno not in LINK_FALLBACK_ERRNOS:
            raise
        linked = False
    if linked:
        fd = os.open(path, os.O_RDONLY)
        try:
            if sync:
                os.fsync(fd)
            return os.fstat(fd).st_size
        finally:
            os.close(fd)
    with open(source, "rb") as f:
        return stage_bytes(path, f.read(), mtime, sync)


def make_folder(path: Path, is_root: bool) -> None:
    for sub in SUBDIRS:
        (path / sub).mkdir(parents=True, exist_ok=True)
    if not is_root:
        (path / FOLDER_MARKER).touch()


def write_atomic(path: Path, text: str, durable: bool = True) -> None:
    """Replace `path` with `text` all at once; `durable`: the new content and its name survive a
    power cut once this returns (file fsynced, then its directory after the rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if durable:
        fsync_dir(path.parent)


def write_meta(folder: Path, meta: dict[str, object]) -> None:
    write_atomic(folder / META_FILE, json.dumps(meta, sort_keys=True))


def read_meta(folder: Path) -> dict[str, object] | None:
    try:
        data = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_keywords(maildir: Path, keywords: list[str]) -> None:
    text = "".join(f"{i} {kw}\n" for i, kw in enumerate(keywords[: len(KEYWORD_LETTERS)]))
    write_atomic(maildir / KEYWORDS_FILE, text)


def read_keywords(maildir: Path) -> dict[str, str]:
    """letter -> keyword, from the account's keywords file (missing file: none)."""
    out: dict[str, str] = {}
    try:
        lines = (maildir / KEYWORDS_FILE).read_text(encoding="utf-8").splitlines()
    except OSError:
        return out
    for line in lines:
        num, _, kw = line.partition(" ")
        if num.isdigit() and int(num) < len(KEYWORD_LETTERS) and kw:
            out[KEYWORD_LETTERS[int(num)]] = kw
    return out


# Files larger than this are always read in the I/O threads: copying them costs time itself.
READ_CACHED_MAX = 256 * 1024
_HAS_NOWAIT = hasattr(os, "RWF_NOWAIT")
_refuse_nowait: set[int] = set()  # devices whose file system refused RWF_NOWAIT (tmpfs, some FUSE)
# One read buffer per thread, reused by every read_cached: a new zero-filled bytearray per file
# was a memset of the whole file (a few % of a POP3 RETR's instructions), then freed.
_buffers = threading.local()


def read_cached(path: str | Path, size: int | None = None) -> bytes | None:
    """The whole file at `path` when reading it cannot wait for the disk: every byte is in the
    page cache (preadv2 with RWF_NOWAIT, Linux 4.14+) and the file is small. None when it would
    wait, is big, is missing, or the system cannot tell; the caller then reads it in a thread.
    Opening the file may still read its inode, which a message just listed has in cache.

    `size`: the file's size when the caller knows it (name_size: the S= of the name we gave
    it), saving an fstat (a system call and a stat object, ~0.8 us: a POP3 RETR made 7 calls).
    A file of another size then reads as None, and the caller's thread reads it whole; so does
    one on a file system that refuses RWF_NOWAIT, after trying (one failed system call: with a
    size there is no device number to look up first)."""
    if not _HAS_NOWAIT:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if size is None:
            st = os.fstat(fd)
            if st.st_dev in _refuse_nowait:
                return None
            size = st.st_size
        if size > READ_CACHED_MAX:
            return None
        view = getattr(_buffers, "view", None)
        if view is None:
            # one more octet than the largest file: a file longer than `size` reads long
            view = _buffers.view = memoryview(bytearray(READ_CACHED_MAX + 1))
        try:
            n = os.preadv(fd, (view[: size + 1],), 0, os.RWF_NOWAIT)
        except BlockingIOError:
            return None
        except OSError as e:
            if e.errno in (errno.EOPNOTSUPP, errno.EINVAL):
                _refuse_nowait.add(os.fstat(fd).st_dev)
            return None
        if n != size:
            return None
        return view[:n].tobytes()
    finally:
        os.close(fd)


def name_size(base: str) -> int | None:
    """The S= of a base name (the file's size, make_base), or None: a name without it (a file
    another program wrote) or with something else there."""
    i = base.find(",S=")
    if i < 0:
        return None
    i += 3
    j = base.find(",", i)
    digits = base[i:] if j < 0 else base[i:j]
    return int(digits) if digits.isdigit() else None


def locate(folder: Path, base: str, info: str) -> Path | None:
    """The file of a message: the indexed name first, else any name with the same base (a
    Maildir client such as mutt may have renamed it to change flags, or moved it new/ -> cur/)."""
    path = folder / "cur" / file_name(base, info)
    if path.exists():
        return path
    for sub in ("cur", "new"):
        try:
            entries = os.listdir(folder / sub)
        except FileNotFoundError:
            continue
        for name in entries:
            if name == base or name.startswith(base + ":"):
                return folder / sub / name
    return None


def remove_tree(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
