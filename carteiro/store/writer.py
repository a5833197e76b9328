"""The store's writer: one thread per process that runs every write in group commits.

It takes what is queued (up to `max_batch` writes, after a large batch waiting GATHER_WAIT for as
many), runs it in one BEGIN IMMEDIATE transaction (each general job in a savepoint, consecutive
appends together through the store's append run), fsyncs what the batch staged in one round,
COMMITs, and settles the callers' futures with one wake-up per event loop. It knows no Maildir
layout: the store supplies the append run and what follows a COMMIT. See docs/store.md.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from carteiro.store import maildir
from carteiro.store.api import AppendResult, ChangeEvent, StoreError
from carteiro.store.changes import event_to_json
from carteiro.store.flusher import Pending
from carteiro.store.index import no_room
from carteiro.store.locks import FolderLock

log = logging.getLogger(__name__)
T = TypeVar("T")

SYNC_PER_THREAD = 3  # items per thread in an fsync round (fewer threads woken, same merging)
GATHER_MIN = 4  # batch size from which the writer waits a moment for the next batch to fill
GATHER_WAIT = 0.002  # seconds

# (loop, future, result, error) of one write, handed back once its batch is over
Done = tuple[
    asyncio.AbstractEventLoop | None, asyncio.Future[Any] | None, Any, BaseException | None
]


@dataclass
class Tx:
    """What one job did inside the writer's transaction."""

    conn: sqlite3.Connection
    folders: FolderLock | None = None  # the writer's folder lock (see hold_folders)
    dirs: set[Path] = field(default_factory=set)  # to fsync before COMMIT
    files: set[Path] = field(default_factory=set)  # staged message files, fsynced with the dirs
    undo: list[Callable[[], None]] = field(default_factory=list)  # if this job rolls back
    after: list[Callable[[], None]] = field(default_factory=list)  # after COMMIT
    events: list[tuple[str, ChangeEvent]] = field(default_factory=list)

    def event(self, account: str, event: ChangeEvent) -> None:
        self.events.append((account, event))

    def hold_folders(self) -> None:
        """Take the folder lock until the batch is over (after COMMIT and its file work): any job
        that moves, creates or removes a folder, or removes message files by name, holds it, so
        file work elsewhere (the flusher, other processes) that takes it sees the committed
        index and the disk agree."""
        if self.folders is not None:
            self.folders.acquire()

    def rollback(self) -> None:
        for fn in reversed(self.undo):
            try:
                fn()
            except OSError:
                log.exception("undoing a file operation failed")


@dataclass(slots=True)
class Job:
    """A general write: `fn` runs inside the batch's transaction, in its own savepoint."""

    fn: Callable[[Tx], Any]
    loop: asyncio.AbstractEventLoop | None  # where `future` lives (None: nobody waits)
    future: asyncio.Future[Any] | None
    # False: losing this write in a power cut costs nothing (a \Recent claim, dropping journal
    # rows whose work is done, a listing snapshot): a batch of only such writes commits without
    # waiting for the device (synchronous=NORMAL); the next durable commit makes it durable too.
    durable: bool = True


@dataclass(slots=True)
class Append:
    """One deliver_many() call: a staged message linked into every target, all or none.

    Appends skip the general job machinery: the writer runs consecutive appends together with
    one lookup per mailbox, one UPDATE per mailbox and one executemany per table.
    """

    # account, normalized name, flags, INTERNALDATE, its zone (minutes east of UTC)
    targets: list[tuple[str, str, frozenset[str], float, int]]
    staged: str  # DATA/tmp/<unique>
    unique: str
    fd: int  # the staged file, still open for the fsync round (-1: fsync it by path)
    size: int
    loop: asyncio.AbstractEventLoop | None
    future: asyncio.Future[list[AppendResult]] | None
    linked: bool = False
    data: bytes | None = None  # a small message's bytes: into `bodies`, its file written later
    reserved: bool = False  # holds a place in the flusher's backlog (until committed or failed)
    disk_size: int | None = None  # the staged file holds the LF form, of this size (make_base)
    delivery_id: str | None = None  # a retry of a committed delivery appends nothing
    # account -> (its id, the stored quota limits: quota.Stored) the caller checked against; the
    # writer fails the append (quota.LimitsChanged) if they are not the ones in force at COMMIT
    quota: dict[str, tuple[int, tuple[int | None, int | None]]] | None = None
    crlf: bool = False  # every CR of `data` starts a CRLF, every LF ends one (maildir.to_disk)


Write = Job | Append


@dataclass(slots=True)
class Batch:
    """What one group commit has to do before and after COMMIT."""

    sync: list[int | str] = field(default_factory=list)  # staged files (fds or paths) to fsync
    dirs: set[str] = field(default_factory=set)  # directories linked into, fsynced with them
    undo: list[Callable[[], None]] = field(default_factory=list)  # if the whole batch fails
    after: list[Callable[[], None]] = field(default_factory=list)  # after COMMIT
    events: list[tuple[str, ChangeEvent]] = field(default_factory=list)
    added: dict[int, int] = field(default_factory=dict)  # mailbox id -> messages appended
    # appends whose bytes went into `bodies`: their files are written after COMMIT
    inline: list[Pending] = field(default_factory=list)
    done: list[Done] = field(default_factory=list)


def _settle(items: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    """Resolve a batch's futures on their event loop (one loop wake-up per batch, not per job)."""
    for future, result, error in items:
        if future.done():  # the caller was cancelled; the write happened (or failed) anyway
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


class GroupCommitWriter:
    """The writer thread of one store, and its queue.

    The store supplies, as callbacks run on this thread: `append_run(conn, appends, batch)` (a
    run of consecutive appends into the batch's transaction), `housekeeping(conn)` (every 1000
    batches, inside one), `abandon(writes)` (writes that committed nothing: undo their staging),
    `committed(writes, batch)` (just after COMMIT), `announce(batch)` (after the post-commit file
    work, with the folder lock released) and `idle(conn)` (when nothing is queued and
    `idle_work_pending` says there is something to do).
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        token: str,
        folders: FolderLock,
        max_batch: int,
        sync_threads: int,
        hook: Callable[[str], None],
        append_run: Callable[[sqlite3.Connection, list[Append], Batch], None],
        housekeeping: Callable[[sqlite3.Connection], None],
        abandon: Callable[[list[Write]], None],
        committed: Callable[[list[Write], Batch], None],
        announce: Callable[[Batch], None],
        idle: Callable[[sqlite3.Connection], None],
    ) -> None:
        self.conn = conn  # the write connection: used by this thread only, once started
        self.folders = folders
        self._token = token
        self._max_batch = max_batch
        self._sync_threads = sync_threads
        self._sync_pool = concurrent.futures.ThreadPoolExecutor(sync_threads, "carteiro-store-sync")
        self._hook = hook
        self._append_run = append_run
        self._housekeeping = housekeeping
        self._abandon = abandon
        self._committed = committed
        self._announce = announce
        self._idle = idle
        self._queue: queue.SimpleQueue[Write | None] = queue.SimpleQueue()
        self._closing = False
        self._closing_lock = threading.Lock()  # background() against stop(): nothing after None
        self.idle_work_pending = True
        self.batches = 0  # committed write transactions (group commit makes this < writes)
        self.sync_rounds = 0  # rounds of fsyncs waited for (each round's fsyncs run in parallel)
        self.fsync_calls = 0  # fsync system calls, counting one per COMMIT for the WAL
        self._thread = threading.Thread(target=self._loop, name="carteiro-store-writer")
        self._thread.daemon = True

    # ---- called from other threads ----

    def start(self) -> None:
        self._thread.start()

    async def run(self, fn: Callable[[Tx], T], durable: bool = True) -> T:
        """Run `fn` in the next batch's transaction and return its result (durable before it
        returns, unless `durable` is False: see Job.durable)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self.enqueue(Job(fn, loop, future, durable))
        return await future

    def enqueue(self, item: Write) -> None:
        """Hand a write to the writer thread; if the writer stopped meanwhile, fail it at once
        (a write queued behind close() would otherwise wait forever)."""
        self._queue.put(item)
        if self._closing and not self._thread.is_alive():
            self.fail_queued()

    def background(self, fn: Callable[[Tx], Any]) -> bool:
        """Queue a write nobody waits for (a failure is logged). False, and nothing queued, once
        stop() was called: a job behind the stop would never run (close() used to fail it with a
        logged "store is closed"). The caller then does without it (work that the next open's
        recovery redoes) or does it itself (the file worker drops its bodies on its own thread).
        """
        with self._closing_lock:
            if self._closing:
                return False
            self._queue.put(Job(fn, None, None, durable=False))
        return True

    def stop(self) -> None:
        """Ask the thread to stop once what is queued before this call is done."""
        with self._closing_lock:
            self._closing = True
            self._queue.put(None)

    def join(self) -> None:
        self._thread.join()

    def close(self) -> None:
        """After the thread and every user of sync_round stopped."""
        self._sync_pool.shutdown(wait=True)

    def fail_queued(self) -> None:
        """After the writer stopped: fail whatever is still queued (and undo its staging)."""
        left: list[Write] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                left.append(item)
        if not left:
            return
        self._abandon(left)
        self.complete([(i.loop, i.future, None, StoreError("store is closed")) for i in left])

    def sync_round(self, items: list[int | str], waited: bool = True) -> None:
        """fsync every item (open fds and paths) at once: a few threads with a few items each
        (parallel fsyncs share the device's cache flushes), the calling thread taking one share.
        `waited`: a round some caller waits for (counted in sync_rounds and fsync_calls)."""
        n = len(items)
        if not n:
            return
        if waited:
            self.sync_rounds += 1
            self.fsync_calls += n
        if n <= 2:
            # one append (its file and directory): on this thread, not worth a thread hand-off
            # (measured: two sequential fsyncs took no longer than two parallel ones here)
            maildir.fsync_all(items)
            return
        k = min(self._sync_threads + 1, max(2, -(-n // SYNC_PER_THREAD)))
        chunks = [items[i::k] for i in range(k)]
        futures = [self._sync_pool.submit(maildir.fsync_all, c) for c in chunks[1:]]
        error: BaseException | None = None
        try:
            maildir.fsync_all(chunks[0])
        except OSError as exc:
            error = exc
        for f in futures:  # all of them, even after an error: the fds are closed next
            try:
                f.result()
            except OSError as exc:
                error = error or exc
        if error is not None:
            raise error

    def complete(self, done: list[Done]) -> None:
        """Hand results back: one call_soon_threadsafe per event loop."""
        by_loop: dict[
            asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, BaseException | None]]
        ] = {}
        for loop, future, result, error in done:
            if loop is None or future is None:
                if error is not None:
                    log.error("background store write failed", exc_info=error)
                continue
            by_loop.setdefault(loop, []).append((future, result, error))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, items)
            except RuntimeError:  # the caller's loop is closed: nobody is waiting any more
                pass

    # ---- the writer thread ----

    def _loop(self) -> None:
        stop = False
        last = 0
        while not stop:
            try:
                job = self._queue.get(timeout=0.2 if self.idle_work_pending else None)
            except queue.Empty:
                self._idle(self.conn)
                continue
            if job is None:
                break
            batch = [job]
            stop = self._gather(batch, last)
            try:
                self._run_batch(batch)
            except BaseException:  # never leave a caller waiting
                log.exception("store writer batch failed")
            last = len(batch)
            if self.idle_work_pending and self.batches % 64 == 0:
                self._idle(self.conn)  # under sustained load the idle path may never run
        self.conn.close()

    def _gather(self, batch: list[Write], last: int) -> bool:
        """Fill `batch` from the queue; True when the store is closing.

        When the previous batch was large, writers are busy: the callers it just answered are
        about to queue their next writes, so wait a moment (at most GATHER_WAIT) until as many are
        queued as it had. Without the wait, N busy writers settle into two alternating batches of
        N/2; with it, one batch of N shares each fsync round (measured: 20 writers, batches of ~10
        -> ~18, the same or better throughput, 40% fewer fsync rounds).
        """
        get = self._queue.get_nowait
        limit = self._max_batch
        deadline = 0.0
        while len(batch) < limit:
            try:
                more = get()
            except queue.Empty:
                if last < GATHER_MIN or len(batch) >= last:
                    return False
                now = time.monotonic()
                if not deadline:
                    deadline = now + GATHER_WAIT
                elif now >= deadline:
                    return False
                try:
                    more = self._queue.get(timeout=deadline - now)
                except queue.Empty:
                    return False
            if more is None:
                return True
            batch.append(more)
        return False

    def _run_batch(self, batch: list[Write]) -> None:
        """One transaction and one fsync round for every write in `batch` (group commit)."""
        conn = self.conn
        b = Batch()
        lazy = all(type(item) is Job and not item.durable for item in batch)  # type: ignore[union-attr]
        if lazy:
            conn.execute("PRAGMA synchronous=NORMAL")  # (not allowed inside a transaction)
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                run: list[Append] = []
                alone = len(batch) == 1  # its own transaction is its savepoint
                for item in batch:
                    if type(item) is Append:
                        run.append(item)
                        continue
                    if run:
                        self._append_run(conn, run, b)
                        run = []
                    self._run_job(item, b, alone)  # type: ignore[arg-type]
                if run:
                    self._append_run(conn, run, b)
                if self.batches % 1000 == 999:
                    self._housekeeping(conn)
                self._hook("linked")
                # One fsync round: message files and the directories they were linked into, in
                # parallel, before COMMIT (whose WAL fsync is the second and last round).
                self.sync_round(b.sync + sorted(b.dirs))
                self._hook("dirs_synced")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            finally:
                if lazy:
                    conn.execute("PRAGMA synchronous=FULL")
        except BaseException as exc:
            for fn in reversed(b.undo):
                try:
                    fn()
                except OSError:
                    log.exception("undoing a file operation failed")
            self.folders.release()
            self._abandon(batch)  # committed nothing: no file to write
            err = no_room(exc)
            self.complete([(item.loop, item.future, None, err) for item in batch])
            if not isinstance(exc, Exception):
                raise
            return
        self.batches += 1
        if not lazy:
            self.sync_rounds += 1  # the WAL fsync of COMMIT (synchronous=FULL)
            self.fsync_calls += 1
        # Committed: whatever goes wrong from here, every caller hears its result (a caller left
        # waiting would time out and send again: a duplicate).
        try:
            self._hook("committed")
            self._committed(batch, b)
            for fn in b.after:
                try:
                    fn()
                except OSError:
                    log.exception("post-commit file operation failed")
            self.folders.release()
            self._announce(b)
        except Exception:
            log.exception("store: a step after COMMIT failed (the writes are committed)")
        finally:
            self.folders.release()
            self.complete(b.done)

    def _run_job(self, job: Job, b: Batch, alone: bool = False) -> None:
        """Run one job in a savepoint, so that its failure undoes it alone; a job `alone` in its
        batch needs none (two statements fewer per STORE or EXPUNGE of one client): on failure
        the transaction is rolled back and a new one begun for the rest of the batch."""
        conn = self.conn
        tx = Tx(conn, self.folders)
        if not alone:
            conn.execute("SAVEPOINT job")
        try:
            result = job.fn(tx)
            if tx.events:
                conn.executemany(
                    "INSERT INTO changes (origin, account, event) VALUES (?, ?, ?)",
                    [(self._token, a, event_to_json(e)) for a, e in tx.events],
                )
            if not alone:
                conn.execute("RELEASE job")
        except Exception as exc:
            if alone:
                if conn.in_transaction:  # (SQLite may have rolled it back itself: SQLITE_FULL)
                    conn.execute("ROLLBACK")
                conn.execute("BEGIN IMMEDIATE")
            else:
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
            tx.rollback()
            b.done.append((job.loop, job.future, None, no_room(exc)))
            return
        b.undo.append(tx.rollback)
        b.dirs.update(str(d) for d in tx.dirs)
        b.sync.extend(str(f) for f in tx.files)
        b.after.extend(tx.after)
        b.events.extend(tx.events)
        b.done.append((job.loop, job.future, result, None))
