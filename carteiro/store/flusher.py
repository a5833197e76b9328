"""The file worker: the file work that follows a COMMIT, applied on one thread in commit order.

Two kinds of journal rows name that work, both written in the transaction they belong to and both
path-free: `unsynced` (+ `bodies`), a message file to write, and `pending_unlink`, a message file
or a deleted folder's tombstone to remove. Recovery replays what a crash left of either.

Message files of small messages, written and fsynced after their COMMIT, many at once.

A message up to INLINE_BODY_MAX is committed with its bytes in the index (table `bodies`, one row
per delivery, and a row in `unsynced` per message it became): COMMIT's single WAL fsync makes it
durable, and the caller hears OK without waiting for any file. This thread then, once FLUSH_COUNT
bodies are queued or the oldest is FLUSH_AGE seconds old, writes their files (a temp file renamed
into its target's `cur/`, linked first into any other target's, so a Maildir reader never sees
half a file), makes them durable in one round (syncfs, or an fsync of each file and directory),
after which a job on the writer drops the rows. Until then readers get the bytes from the
index. After a crash, recovery (maintenance.restore_bodies) rewrites what did not survive.

A pending file names its message, never a path: where it goes is worked out from the index at the
moment it is placed, under the folder lock (DATA/run/folders.lock) that every transaction moving
a folder holds from the move to its COMMIT, so a RENAME (of the mailbox or a parent) between the
COMMIT and the write cannot send the file to a place that no longer exists, or to a new mailbox
created at the old place. A message expunged or moved away meanwhile gets no file. A file that
cannot be placed keeps its bytes in the index (readers and recovery use them): never dropped.
Docs: docs/store.md.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from carteiro.store import maildir

log = logging.getLogger(__name__)

INLINE_BODY_MAX = 64 * 1024  # bytes: messages up to this size are committed with their bytes
FLUSH_COUNT = 64  # queued bodies (or unlinks) that start a round at once
FLUSH_AGE = 0.5  # seconds: the longest a committed body waits for its file and its round
# Backlog of committed bodies whose file is not written yet, beyond which new messages take the
# usual road (file fsynced before COMMIT): the thread writes ~1,000 files/s here, writers can
# commit 3,000/s, and without a bound the backlog (memory, index size) would grow under load.
BACKLOG_MAX = 128
BACKLOG_BYTES_MAX = 8 * 1024 * 1024
PLACE_ATTEMPTS = 8  # tries (backing off from 50 ms) to place a file whose folder is missing


class FolderLock(Protocol):
    def release(self) -> None: ...


@dataclass(slots=True)
class Pending:
    """A committed body whose files are to be written: one file, linked to every target."""

    body_id: int
    data: bytes
    mtime: float  # INTERNALDATE, the file's mtime
    targets: list[tuple[int, int, str]]  # mailbox id, uid, file name (the folder: from the index)
    reserved: bool = True  # counted in the backlog by reserve() (appends; not copies)


class _Flush:
    def __init__(self, done: threading.Event) -> None:
        self.done = done


class _Unlink:
    """pending_unlink entries to carry out (a file or a tombstone each)."""

    def __init__(self, entries: list[str]) -> None:
        self.entries = entries


class FileFlusher:
    """The thread that writes and fsyncs the files of bodies committed through the index."""

    def __init__(
        self,
        tmp_prefix: str,
        unique: Callable[[], str],
        read_conn: Callable[[], sqlite3.Connection],
        sync_round: Callable[[list[int | str]], None],
        drop: Callable[[list[tuple[int, int, int]], list[int], list[str]], None],
        drop_now: Callable[[list[tuple[int, int, int]], list[int], list[str]], None],
        locate: Callable[[sqlite3.Connection, int, int | None], str | None],
        exists: Callable[[sqlite3.Connection, int, int], bool],
        folder_lock: Callable[[], FolderLock],
        unlink: Callable[[str, sqlite3.Connection, dict[int, Path | None]], None],
    ) -> None:
        self._tmp_prefix = tmp_prefix
        self._unique = unique
        self._read_conn = read_conn
        self._sync_round = sync_round
        self._drop = drop  # queue a writer job that drops these (pairs, bodies, unlinked)
        self._drop_now = drop_now  # the same, on this thread (when the writer has stopped)
        self._locate = locate  # (conn, mailbox id, uid or None) -> its cur/ now (None: gone)
        self._exists = exists  # (conn, mailbox id, uid) -> is that message in the index now
        self._folder_lock = folder_lock
        self._unlink = unlink  # carry out one pending_unlink entry (store.unlink_pending_path)
        self._retry: list[tuple[float, Pending, int]] = []  # (when, item, attempts): not placed
        self._cv = threading.Condition(threading.Lock())
        self._items: list[Pending | _Flush | _Unlink | None] = []  # queued, in commit order
        self._first = 0.0  # when the oldest queued item came
        self._urgent = False  # a flush or stop is queued
        self._fds: list[int] = []  # written files not fsynced yet
        self._dirs: dict[str, int] = {}  # their directories, open (a descriptor follows renames)
        self._pairs: list[tuple[int, int, int]] = []  # (mailbox id, uid, body id) written
        self._bodies: list[int] = []
        self._unlinked: list[str] = []  # pending_unlink entries done, their rows to drop
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._backlog = 0
        self._backlog_bytes = 0
        self.rounds = 0  # flush rounds done
        self.written = 0  # files written
        self._thread = threading.Thread(target=self._loop, name="carteiro-store-flush")
        self._thread.daemon = True
        self._thread.start()

    # ---- called from other threads ----

    def reserve(self, size: int) -> bool:
        """Room for one more body of `size` octets in the backlog? (Then it is counted until its
        file is written, or until release() if its append fails.)"""
        with self._lock:
            if self._backlog >= BACKLOG_MAX or self._backlog_bytes + size > BACKLOG_BYTES_MAX:
                return False
            self._backlog += 1
            self._backlog_bytes += size
            return True

    def release(self, size: int) -> None:
        with self._lock:
            self._backlog -= 1
            self._backlog_bytes -= size

    def add(self, items: list[Pending]) -> None:
        self._put(items, urgent=False)

    def unlink(self, entries: list[str]) -> None:
        """Remove these committed pending_unlink entries' files (after what is queued before)."""
        self._put([_Unlink(entries)], urgent=False)

    def flush(self) -> threading.Event:
        """Ask for a flush round of everything handed over so far; the event is set after it
        (its writer job queued)."""
        done = threading.Event()
        self._put([_Flush(done)], urgent=True)
        return done

    def stop(self) -> None:
        """Write and fsync what is left, drop its rows (the writer has stopped), end the thread."""
        self._put([None], urgent=True)
        self._thread.join()

    def _put(self, items: Sequence[Pending | _Flush | _Unlink | None], urgent: bool) -> None:
        """Queue work in commit order. The thread is woken only when it has to act: for the
        first item (it then sleeps until that item is FLUSH_AGE old), at FLUSH_COUNT items, and
        for a flush or stop; not once per commit (one client delivering one message at a time
        used to wake it, and have it wake others, for every message)."""
        with self._cv:
            first = not self._items
            if first:
                self._first = time.monotonic()
            self._items.extend(items)
            if urgent:
                self._urgent = True
            if urgent or first or len(self._items) >= FLUSH_COUNT:
                self._cv.notify()

    # ---- the thread ----

    def _take(self) -> list[Pending | _Flush | _Unlink | None]:
        """Wait until there is work due, and take all that is queued."""
        with self._cv:
            while True:
                now = time.monotonic()
                timeout: float | None = None
                if self._items:
                    if self._urgent or len(self._items) >= FLUSH_COUNT:
                        break
                    timeout = self._first + FLUSH_AGE - now
                    if timeout <= 0:
                        break
                if self._retry:
                    wait = self._retry[0][0] - now
                    if wait <= 0:
                        break
                    timeout = wait if timeout is None else min(timeout, wait)
                self._cv.wait(timeout)
            items, self._items, self._urgent = self._items, [], False
            return items

    def _loop(self) -> None:
        stop = False
        while not stop:
            items = self._take()
            flushes: list[_Flush] = []
            run: list[Pending] = []
            for item in items:  # in commit order: a file before an unlink committed after it
                if isinstance(item, Pending):
                    run.append(item)
                    continue
                if run:
                    self._write_run(run)
                    run = []
                if isinstance(item, _Unlink):
                    self._remove(item.entries)
                elif isinstance(item, _Flush):
                    flushes.append(item)
                else:
                    stop = True
            if run:
                self._write_run(run)
            if self._retry:
                self._retry_due()
            # every wake-up ends with a round: the files written are fsynced and their rows go
            self._round(self._drop_now if stop else self._drop, force=True)
            for f in flushes:
                f.done.set()
        if self._conn is not None:
            self._conn.close()

    def _write_run(self, run: list[Pending]) -> None:
        if self._conn is None:
            self._conn = self._read_conn()
        # While the lock is held no folder moves, appears or goes (every transaction that does
        # that holds it too), so each mailbox's folder is looked up once for the whole run.
        folders: dict[int, str | None] = {}
        lock = self._folder_lock()
        try:
            for item in run:
                self._write_one(item, 0, folders)
        finally:
            lock.release()

    def _write_one(
        self, item: Pending, attempts: int, folders: dict[int, str | None] | None = None
    ) -> None:
        try:
            missed = self._write(item, folders)
        except Exception:
            log.exception("writing a message file failed; its bytes stay in the index")
            missed = []
        if missed and attempts < PLACE_ATTEMPTS:
            # a folder that is not where the index says: a crashed writer's half-done move that
            # the next recovery puts back. Its bytes stay in the index meanwhile; try again later.
            again = Pending(item.body_id, item.data, item.mtime, missed, reserved=False)
            self._retry.append((time.monotonic() + 0.05 * 2**attempts, again, attempts + 1))
            self._retry.sort(key=lambda r: r[0])
        elif missed:
            log.error(
                "message file(s) %s could not be placed; their bytes stay in the index",
                [(m, u) for m, u, _n in missed],
            )
        if item.reserved:
            item.reserved = False
            self.release(len(item.data))

    def _retry_due(self) -> None:
        now = time.monotonic()
        while self._retry and self._retry[0][0] <= now:
            _when, item, attempts = self._retry.pop(0)
            self._write_one(item, attempts)

    def _write(
        self, item: Pending, folders: dict[int, str | None] | None
    ) -> list[tuple[int, int, str]]:
        """Write the file once, link it into each target's folder as the index has it now.
        Returns the targets that could not be placed (their rows keep the bytes).

        Each message is looked up under the folder lock, always: one expunged since its COMMIT
        gets no file. Its unlink may already have run and found nothing, and not only in a
        retry: another process (`carteiro deliver`, a second server) commits a message whose file
        its own worker writes, and this process may expunge it before that file is placed; with
        no row checked, the file would land after its unlink as an orphan that `store reindex`
        would bring back. With `folders` (the caller holds the folder lock for a run of files)
        the mailbox part of the lookup is shared: one query per message, on its primary key."""
        tmp = self._tmp_prefix + self._unique()
        # every target's name says the same form (an append's targets, or copies of one body)
        data = maildir.disk_bytes(item.data, item.targets[0][2].partition(":2,")[0])
        fd = maildir.stage_bytes_open(tmp, data, item.mtime)
        self._fds.append(fd)  # closed by the next round whatever happens below
        if self._conn is None:
            self._conn = self._read_conn()
        conn = self._conn
        placed: list[tuple[int, int]] = []
        missed: list[tuple[int, int, str]] = []
        last = len(item.targets) - 1
        renamed = False
        lock = self._folder_lock() if folders is None else None
        try:
            for i, (mailbox_id, uid, name) in enumerate(item.targets):
                # under the folder lock the committed index says where every folder is
                if folders is None:
                    cur = self._locate(conn, mailbox_id, uid)
                else:
                    if mailbox_id in folders:
                        cur = folders[mailbox_id]
                    else:
                        cur = folders[mailbox_id] = self._locate(conn, mailbox_id, None)
                    if cur is not None and not self._exists(conn, mailbox_id, uid):
                        cur = None
                if cur is None:  # its mailbox or the message is gone: no file
                    placed.append((mailbox_id, uid))
                    continue
                try:
                    if i == last:  # the temp name is not needed any more
                        os.rename(tmp, f"{cur}/{name}")  # (over a copy recovery wrote: the same)
                        renamed = True
                    else:
                        os.link(tmp, f"{cur}/{name}")
                except FileExistsError:  # recovery (another process) got there first
                    pass
                except FileNotFoundError:
                    missed.append((mailbox_id, uid, name))
                    continue
                placed.append((mailbox_id, uid))
                if cur not in self._dirs:
                    self._dirs[cur] = os.open(cur, os.O_RDONLY)
        finally:
            if lock is not None:
                lock.release()
            if not renamed:
                os.unlink(tmp)
        self.written += 1
        # a body goes once no `unsynced` row needs it: the missed targets' rows keep it
        self._pairs.extend((m, u, item.body_id) for m, u in placed)
        self._bodies.append(item.body_id)
        return missed

    def _remove(self, entries: list[str]) -> None:
        """Unlink under the folder lock, each folder looked up now; the rows go with the next
        round (an unlink needs no fsync: if it is lost, recovery does it again)."""
        if self._conn is None:
            self._conn = self._read_conn()
        lock = self._folder_lock()
        folders: dict[int, Path | None] = {}  # valid while the lock is held
        try:
            for entry in entries:
                try:
                    self._unlink(entry, self._conn, folders)
                except OSError:
                    log.exception("removing %s failed; the next start tries again", entry)
                    continue
                self._unlinked.append(entry)
        finally:
            lock.release()
        # the rows go with this wake-up's round: one writer job for many expunges

    def _round(
        self,
        drop: Callable[[list[tuple[int, int, int]], list[int], list[str]], None],
        force: bool = False,
    ) -> None:
        if not self._fds and not (force and self._unlinked):
            return
        unlinked, self._unlinked = self._unlinked, []
        fds, self._fds = self._fds, []
        dirs, self._dirs = self._dirs, {}
        pairs, self._pairs = self._pairs, []
        bodies, self._bodies = self._bodies, []
        items: list[int | str] = [*fds, *dirs.values()]
        ok = True
        try:
            # one syncfs per filesystem where it can be trusted (maildir.syncfs_all), else an
            # fsync of every file and directory
            if items and not maildir.syncfs_all(list(dirs.values())):
                self._sync_round(items)
        except OSError:
            log.exception("fsync of message files failed; the next start rewrites them")
            ok = False
        finally:
            for fd in items:
                os.close(fd)  # type: ignore[arg-type]
        if items:
            self.rounds += 1
        if ok:
            drop(pairs, bodies, unlinked)
        elif unlinked:
            drop([], [], unlinked)
