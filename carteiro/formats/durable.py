"""Files written for export, made durable together: each is fsynced (in parallel, so the filesystem
folds them into few journal commits) before what depends on it happens, then its directory.

Used by the directory formats (Maildir, MH); never fsyncs one file at a time.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_file(path: Path, data: bytes, mtime: float | None) -> None:
    """O_EXCL create and write (no fsync: see SyncBatch); FileExistsError if the name is taken."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


class SyncBatch:
    """Files written but not yet fsynced, each with what to do once it is durable (a Maildir link
    from tmp/ into cur/). fsync()s run in parallel, which the filesystem folds into few journal
    commits: one file at a time costs a commit each and made export fsync-bound."""

    SIZE = 64

    def __init__(self) -> None:
        self.pending: list[tuple[Path, Callable[[], None] | None]] = []
        self.dirs: set[Path] = set()
        self._pool: ThreadPoolExecutor | None = None

    def add(self, path: Path, then: Callable[[], None] | None, directory: Path) -> None:
        self.pending.append((path, then))
        self.dirs.add(directory)
        if len(self.pending) >= self.SIZE:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="fsync")
            list(self._pool.map(fsync_path, [p for p, _ in self.pending]))
            for _, then in self.pending:
                if then is not None:
                    then()
            self.pending.clear()
        for d in self.dirs:
            fsync_path(d)
        self.dirs.clear()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._pool is not None:
                self._pool.shutdown()
