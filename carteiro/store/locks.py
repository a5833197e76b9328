"""The store's file locks: flock(2) on files under DATA/run and in each account's home.

The folder lock orders folder moves against file work (the writer holds it from a move to its
COMMIT, the file worker while it places or removes a file); a writer's liveness lock tells
recovery which writers died; the maildrop lock is POP3's. Never held across an await.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class FileLock:
    """An flock(2) held by this open file description (so also exclusive within one process)."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the description drops the lock


class FolderLock:
    """An flock on DATA/run/folders.lock through a descriptor of its own (so two threads of one
    process, each with its own FolderLock, exclude each other too). Re-entrant for its holder."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.held = False

    def acquire(self) -> FolderLock:
        if not self.held:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            self.held = True
        return self

    def release(self) -> None:
        if self.held:
            self.held = False
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        self.release()
        os.close(self._fd)


def try_flock(path: Path, create: bool = True) -> int | None:
    """An exclusive non-blocking flock on `path`; the fd, or None when someone holds it."""
    flags = os.O_RDWR | (os.O_CREAT if create else 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd
