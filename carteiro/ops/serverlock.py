"""One `carteiro serve` per data dir: an flock on DATA/carteiro.pid (holding the pid), taken
before anything else opens, and DATA/carteiro.state (JSON: pid, listeners, start time) that
`carteiro status` reads while the lock is held.

The lock dies with the process (flock), so a stale pid file never blocks a restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PID_FILE = "carteiro.pid"
STATE_FILE = "carteiro.state"


class ServerRunning(Exception):
    """Another process serves this data dir."""

    def __init__(self, data_dir: Path, pid: int | None) -> None:
        who = f"pid {pid}" if pid else "another process"
        super().__init__(
            f"another carteiro server ({who}) is already serving {data_dir}; "
            "stop it first, or give another --data"
        )
        self.pid = pid


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


@dataclass
class ServerLock:
    data_dir: Path
    _fd: int | None = None

    @property
    def path(self) -> Path:
        return self.data_dir / PID_FILE

    def acquire(self) -> None:
        """Take the lock at once or raise ServerRunning naming the holder's pid."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ServerRunning(self.data_dir, _read_pid(self.path)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / STATE_FILE).unlink()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None

    def write_state(self, state: dict[str, Any]) -> None:
        """Replace DATA/carteiro.state atomically (0600)."""
        path = self.data_dir / STATE_FILE
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"pid": os.getpid(), **state}, f, indent=1)
        os.replace(tmp, path)


def running_server(data_dir: Path) -> int | None:
    """The pid of the server holding `data_dir`, or None when none runs (the lock is free)."""
    path = data_dir / PID_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_pid(path) or -1
    finally:
        os.close(fd)
    return None


def read_state(data_dir: Path) -> dict[str, Any] | None:
    try:
        value = json.loads((data_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None
