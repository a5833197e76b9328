"""Changes other programs make to a Maildir folder, as they happen (Linux inotify).

An IMAP session in IDLE holds a watch on its mailbox's folder. When another program (mutt on
the Maildir, procmail or another delivery agent) renames, creates or removes a file in `new/` or
`cur/`, the store looks at the folder at once (`AccountStore.refresh`: two stat calls, and a
scan when they moved), and what it adopts reaches every session through the change feed, as
its own changes do. Without a watch (another platform, inotify's limits reached) IDLE looks every
few seconds instead (servers/imap/idle.py), as it always did.

The store's own writes wake the watch too: each costs one refresh (two stat calls) per folder
per burst, never per session, and the scan itself is put off while the store is the writer
(maildir_sync.decide). A change made in the same instant as one of the store's own is found by
a second look once the folder has settled (SETTLE after the last event), so it is not left to
the next poll. As in Dovecot, which adds inotify watches for IDLE only.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import logging
import os
import struct
from collections.abc import Awaitable, Callable, Hashable

log = logging.getLogger("carteiro.store")

IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
# a file arriving (delivery: rename into new/), moving (new/ to cur/, a flag change), going
MASK = IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_ONLYDIR
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len octets of name

DEBOUNCE = 0.05  # seconds: one refresh for a burst of events
SETTLE = 2.2  # seconds after the last event: the second look (maildir_sync's SETTLE_NS is 2 s)

Refresh = Callable[[], Awaitable[None]]


class _Libc:
    """inotify through libc (ctypes): Python's standard library has no binding."""

    def __init__(self) -> None:
        name = ctypes.util.find_library("c")
        lib = ctypes.CDLL(name or "libc.so.6", use_errno=True)
        self.init1 = lib.inotify_init1
        self.init1.argtypes = [ctypes.c_int]
        self.init1.restype = ctypes.c_int
        self.add = lib.inotify_add_watch
        self.add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self.add.restype = ctypes.c_int
        self.rm = lib.inotify_rm_watch
        self.rm.argtypes = [ctypes.c_int, ctypes.c_int]
        self.rm.restype = ctypes.c_int


_libc: _Libc | None = None
_unavailable = False


def _lib() -> _Libc | None:
    global _libc, _unavailable
    if _libc is None and not _unavailable:
        try:
            _libc = _Libc()
        except (OSError, AttributeError):
            _unavailable = True  # not Linux, or no libc inotify
    return _libc


class Watch:
    """What a session holds; `close()` gives it back (idempotent)."""

    def __init__(self, watcher: FolderWatcher | None = None, key: Hashable = None) -> None:
        self._watcher = watcher
        self._key = key

    @property
    def active(self) -> bool:
        """True when the folder's changes arrive by themselves (an inotify watch is held)."""
        return self._watcher is not None

    def close(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.release(self._key)


NO_WATCH = Watch()


class _Folder:
    __slots__ = ("again", "refresh", "running", "settle", "soon", "users", "wds")

    def __init__(self, refresh: Refresh) -> None:
        self.refresh = refresh
        self.users = 0
        self.wds: list[int] = []
        self.soon: asyncio.TimerHandle | None = None
        self.settle: asyncio.TimerHandle | None = None
        self.running = False
        self.again = False


class FolderWatcher:
    """One inotify instance on one event loop, shared by the sessions of every account: one
    watch per folder whatever the number of sessions holding it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.fd = -1
        self.folders: dict[Hashable, _Folder] = {}
        self.by_wd: dict[int, Hashable] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        lib = _lib()
        if lib is not None:
            fd = lib.init1(IN_NONBLOCK | IN_CLOEXEC)
            if fd >= 0:
                self.fd = fd
                loop.add_reader(fd, self._readable)
            else:
                log.info("inotify: %s; IDLE polls the Maildir", os.strerror(ctypes.get_errno()))

    def watch(self, key: Hashable, folder: str, refresh: Refresh) -> Watch:
        """A watch on `folder`'s new/ and cur/, which runs `refresh` when they change; NO_WATCH
        when inotify cannot watch it (the caller then polls)."""
        lib = _lib()
        if self.fd < 0 or lib is None:
            return NO_WATCH
        f = self.folders.get(key)
        if f is None:
            f = _Folder(refresh)
            for sub in ("new", "cur"):
                wd = lib.add(self.fd, os.fsencode(os.path.join(folder, sub)), MASK)
                if wd < 0:
                    err = ctypes.get_errno()
                    if err != errno.ENOENT:
                        log.info("inotify: cannot watch %s/%s: %s", folder, sub, os.strerror(err))
                    for w in f.wds:
                        self._forget(w)
                    return NO_WATCH
                f.wds.append(wd)
                self.by_wd[wd] = key
            self.folders[key] = f
        f.users += 1
        return Watch(self, key)

    def release(self, key: Hashable) -> None:
        f = self.folders.get(key)
        if f is None:
            return
        f.users -= 1
        if f.users > 0:
            return
        del self.folders[key]
        for t in (f.soon, f.settle):
            if t is not None:
                t.cancel()
        for wd in f.wds:
            self._forget(wd)

    def _forget(self, wd: int) -> None:
        if self.by_wd.pop(wd, None) is not None:
            lib = _lib()
            if lib is not None and self.fd >= 0:
                lib.rm(self.fd, wd)  # EINVAL when the kernel dropped it already (IN_IGNORED)

    def close(self) -> None:
        for f in self.folders.values():
            for t in (f.soon, f.settle):
                if t is not None:
                    t.cancel()
        self.folders.clear()
        self.by_wd.clear()
        if self.fd >= 0:
            self.loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = -1

    # ---- events ----

    def _readable(self) -> None:
        touched: set[Hashable] = set()
        overflow = False
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            except OSError as e:
                log.warning("inotify: read failed: %s", e)
                break
            if not data:
                break
            at = 0
            while at + _EVENT.size <= len(data):
                wd, mask, _cookie, size = _EVENT.unpack_from(data, at)
                at += _EVENT.size + size
                if mask & IN_Q_OVERFLOW:
                    overflow = True  # events were lost: every folder looks again
                    continue
                key = self.by_wd.get(wd)
                if key is None:
                    continue
                if mask & IN_IGNORED:
                    self.by_wd.pop(wd, None)  # the directory went (a folder deleted or moved)
                touched.add(key)
        if overflow:
            touched.update(self.folders)
        for key in touched:
            f = self.folders.get(key)
            if f is None:
                continue
            if f.soon is None:
                f.soon = self.loop.call_later(DEBOUNCE, self._fire, key, False)
            if f.settle is not None:
                f.settle.cancel()
            f.settle = self.loop.call_later(SETTLE, self._fire, key, True)

    def _fire(self, key: Hashable, settled: bool) -> None:
        f = self.folders.get(key)
        if f is None:
            return
        if settled:
            f.settle = None
        else:
            f.soon = None
        if f.running:
            f.again = True  # a refresh is under way: one more after it
            return
        task = self.loop.create_task(self._run(key, f))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, key: Hashable, f: _Folder) -> None:
        f.running = True
        try:
            while True:
                f.again = False
                try:
                    await f.refresh()
                except Exception as e:  # a folder deleted meanwhile, a store closing ...
                    log.debug("inotify: refresh of %r failed: %r", key, e)
                if not f.again or self.folders.get(key) is not f:
                    return
        finally:
            f.running = False
