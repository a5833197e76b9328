"""The default store: message files in per-account Maildirs, one SQLite (WAL) index for the data dir.

Writes go through one writer thread per process that groups concurrent requests into one
transaction and one fsync round (group commit); files are fsynced and linked into place, their
directories fsynced, and only then the index commits, so the index never names a missing file.
Reads use per-thread connections. See docs/store.md for the layout and the crash-safety argument.

This module holds the store itself (paths, open and close, staging, the append run, the rows
helpers and the file work of mailbox operations); the writer thread is writer.py, the file
worker flusher.py, recovery maintenance.py, one account's operations sqlite_account.py.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import logging
import os
import secrets
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from carteiro.store import maildir, maildir_sync, names, quota, search_index
from carteiro.store.api import (
    DEFAULT_MAILBOXES,
    DELIVERY_ID_KEEP,
    AccountNotFound,
    AppendResult,
    ChangeEvent,
    CopyResult,
    Delivery,
    FlagsChanged,
    MailboxChanged,
    MailboxInfo,
    MailboxNotFound,
    MessageAdded,
    MessageNotFound,
    MessagesExpunged,
    MessageSource,
    QuotaLimits,
    StorageFull,
    StoreError,
    local_zone,
    zoned,
)
from carteiro.store.changes import ChangeHub
from carteiro.store.feed import CrossProcessFeed
from carteiro.store.flags import FlagCodec, flags_from_info, maildir_info, normalize_flags
from carteiro.store.flusher import INLINE_BODY_MAX, FileFlusher, Pending
from carteiro.store.folder_watch import FolderWatcher
from carteiro.store.index import (
    ACCOUNT_COLS,
    INDEX_NAME,
    MAILBOX_COLS,
    MODSEQ_LEASE,
    UID_LEASE,
    AccountRow,
    IndexCorrupt,
    MailboxRow,
    account_from_row,
    connect_index,
    drop_done,
    emailid_of,
    emailid_of_base,
    forget_deliveries,
    index_state,
    init_index,
    json_ints,
    mailbox_from_row,
    mailboxid,
    no_room,
    prune_expunged,
    record_delivery,
    results_from_json,
    results_to_json,
    seen_delivery,
)
from carteiro.store.index_worker import IndexerProcess
from carteiro.store.listing import Listing, ListingCache
from carteiro.store.locks import FolderLock, try_flock
from carteiro.store.maintenance import recover, reindex, unlink_pending
from carteiro.store.sqlite_account import SqliteAccountStore
from carteiro.store.writer import Append, Batch, GroupCommitWriter, Job, Tx, Write

log = logging.getLogger(__name__)
T = TypeVar("T")

CHANGES_KEEP = 200_000  # changes log rows kept for cross-process feeds
# Expunge history kept per mailbox (for the change feed and QRESYNC's VANISHED): past this many
# rows the oldest half goes and the mailbox's horizon moves up. A session or client that last
# synchronised before the horizon gets a full comparison instead of a delta.
EXPUNGED_KEEP = 50_000
FILENAME_SYNC_CHUNK = 500
SNAPSHOT_EVERY = 20_000  # appends to a mailbox between background refreshes of its snapshot
MAX_STAGED_FDS = 256  # staged files kept open for the fsync round; beyond, fsync by path
INLINE_STAGE_MAX = 256 * 1024
# A message given as a file up to this size is written in its LF form (docs/store.md, line ends);
# a larger one is hard-linked as it is (converting it would hold it whole in memory).
CONVERT_MAX = 32 << 20
UNLINK_INLINE_MAX = 64  # an expunge of up to this many written files unlinks them on the writer
# Disk kept back (DATA/run/space-reserve) for the writes that free space when the disk is full
# (expunge, delete): given up at the first such write that finds no room, taken again at the next
# start or once the disk has room again.
RESERVE_NAME = "space-reserve"
RESERVE_BYTES = 4 << 20  # (at most 1/16 of the filesystem)


_NO_LETTERS: dict[str, str] = {}


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _unlink_str(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _unlink_all(paths: list[str]) -> None:
    for path in paths:
        _unlink_str(path)


FaultHook = Callable[[str], None]


class SqliteMaildirStore:
    """Maildir files + SQLite index under `data_dir` (implements api.MailStore).

    Several processes may open the same data dir at once. `fault_hook`, for crash tests only, is
    called with the name of each step of a write ("staged", "linked", "dirs_synced", "committed").
    """

    def __init__(
        self,
        data_dir: Path | str,
        *,
        max_batch: int = 512,
        io_threads: int = 8,
        sync_threads: int = 16,
        read_threads: int = 4,
        poll_interval: float = 0.25,
        fault_hook: FaultHook | None = None,
        search_indexer: bool | str = True,  # "process": in a worker process (index_worker.py)
        quota: QuotaLimits = QuotaLimits(),
    ) -> None:
        self.quota_defaults = quota
        # account -> (id, stored quota limits) as last committed and seen (see _check_quota)
        self.quota_seen: dict[str, tuple[int, tuple[int | None, int | None]]] = {}
        self.data_dir = Path(data_dir).absolute()
        self.mail_root = self.data_dir / "mail"
        self._mail_root_str = str(self.mail_root)
        self.tmp_dir = self.data_dir / "tmp"
        self.run_dir = self.data_dir / "run"
        self.lost_dir = self.data_dir / "lost+found"
        self.index_path = self.data_dir / INDEX_NAME
        for d in (self.mail_root, self.tmp_dir, self.run_dir):
            d.mkdir(parents=True, exist_ok=True)
        if index_state(self.data_dir) == "lost":
            # mail without its index: rebuild from the files (UIDs, flags and UIDVALIDITY kept
            # where the files carry them), never start empty and evict the mail at first login
            log.error(
                "index %s is missing or empty beside existing mail: rebuilding it", self.index_path
            )
            reindex(self.data_dir)
        try:
            init_index(self.index_path, fault_hook)
        except sqlite3.DatabaseError as e:
            raise IndexCorrupt(self.index_path, str(e)) from None
        self.token = secrets.token_hex(6)
        self._unique = maildir.UniqueNames(self.token)
        self.codec = FlagCodec()
        self._hook = fault_hook or (lambda _point: None)
        self.hub = ChangeHub()
        self.listings = ListingCache()
        self.snapshots_written = 0
        self._unsnapshotted: dict[int, int] = {}  # mailbox id -> appends since its snapshot
        self._expunged_in: set[int] = set()  # mailboxes expunged in since the last housekeeping
        # \Recent claims of this process (mailbox id -> highest UID), and those not yet written
        self.recent_claims: dict[int, int] = {}
        self._recent_pending: dict[int, int] = {}
        self._recent_lock = threading.Lock()
        # UIDs this process's APPENDs just added, per mailbox: (lowest, highest, when) of one
        # unbroken run (see SqliteAccountStore.claim_recent)
        self.fresh_appends: dict[int, tuple[int, int, float]] = {}
        # mailboxes where this process last set \Deleted on a message (see expunge): a hint
        self.deleted_hints: set[int] = set()
        self._local = threading.local()
        self._read_conns: list[sqlite3.Connection] = []
        self._read_conns_lock = threading.Lock()
        self._io_pool = concurrent.futures.ThreadPoolExecutor(io_threads, "carteiro-store-io")
        self._read_pool = concurrent.futures.ThreadPoolExecutor(read_threads, "carteiro-store-read")
        self._tmp_prefix = f"{self.tmp_dir}/"
        self._cur_dirs: dict[tuple[str, str], str] = {}
        self._names: dict[str, str] = {}  # mailbox name -> normalized (a bounded cache)
        # mailbox id -> its folder's stamp as this process last saw it (maildir_sync.py)
        self._stamps: dict[int, maildir_sync.Stamp] = {}
        self._rescanned: set[tuple[int, int]] = set()  # see _sync_filenames
        self.folder_scans = 0  # scans of folders for changes made behind the store (tests, bench)
        self._staged_lock = threading.Lock()
        self._staged_fds = 0
        self._closed = False
        self._watcher: FolderWatcher | None = None  # made on first use (folder_watcher)
        # announce ourselves as a writer: if we die, the next process to start cleans up after us
        self._writer_lock_fd = try_flock(self.run_dir / f"writer-{self.token}.lock")
        self.folders_lock_path = self.run_dir / "folders.lock"
        self.writer_folders = FolderLock(self.folders_lock_path)  # the writer thread's
        self._ffolders = FolderLock(self.folders_lock_path)  # the flusher thread's
        conn = connect_index(self.index_path)
        search_index.ensure_format(conn, self._hook)
        conn.execute(
            "INSERT INTO writers (token, pid, started) VALUES (?, ?, ?)",
            (self.token, os.getpid(), time.time()),
        )
        self.writer = GroupCommitWriter(
            conn,
            token=self.token,
            folders=self.writer_folders,
            max_batch=max_batch,
            sync_threads=sync_threads,
            hook=self._hook,
            append_run=self._append_run,
            housekeeping=self._housekeeping,
            abandon=self._abandon,
            committed=self._committed,
            announce=self._announce,
            idle=self._sync_filenames,
        )
        recover(self, conn)
        self._keep_reserve()
        self.feed = CrossProcessFeed(
            self.run_dir, self.token, self.hub, self._new_read_conn, poll_interval
        )
        self.flusher = FileFlusher(
            self._tmp_prefix,
            self._unique.next,
            self._new_read_conn,
            lambda items: self.writer.sync_round(items, waited=False),
            self._drop_bodies_later,
            self._drop_bodies_now,
            self._locate_cur_dir,
            _message_exists,
            self._ffolders.acquire,
            self.unlink_pending_path,
        )
        self.writer.start()

        # the search index is filled after COMMIT, off the write path (search_index.py)
        def thread_indexer() -> search_index.Indexer:
            return search_index.Indexer(
                self._new_read_conn,
                search_index.file_reader(self.folder),
                self._submit_search_rows,
                hook=self._hook,
                may_write=(self.run_dir / RESERVE_NAME).exists,
            )

        self.search_indexer: search_index.Indexer | IndexerProcess | None = None
        if search_indexer == "process":  # `carteiro serve`: a worker process (index_worker.py)
            self.search_indexer = IndexerProcess(
                self.index_path, self.mail_root, self.run_dir / RESERVE_NAME, thread_indexer
            )
        elif search_indexer:
            self.search_indexer = thread_indexer()

    # ---- the writer's counters (tests and bench/store.py read them) ----

    @property
    def batches(self) -> int:
        """Committed write transactions (group commit makes this < writes)."""
        return self.writer.batches

    @property
    def sync_rounds(self) -> int:
        """Rounds of fsyncs waited for (each round's fsyncs run in parallel)."""
        return self.writer.sync_rounds

    @property
    def fsync_calls(self) -> int:
        """fsync system calls, counting one per COMMIT for the WAL."""
        return self.writer.fsync_calls

    # ---- paths ----

    def maildir_of(self, acct_dir: str) -> Path:
        return self.mail_root / acct_dir / "Maildir"

    def folder(self, acct_dir: str, mbox_dir: str) -> Path:
        base = self.maildir_of(acct_dir)
        return base / mbox_dir if mbox_dir else base

    def cur_dir(self, acct_dir: str, mbox_dir: str) -> str:
        """The `cur/` directory of a folder, as a str (no Path joins on the read path), cached."""
        key = (acct_dir, mbox_dir)
        path = self._cur_dirs.get(key)
        if path is None:
            if len(self._cur_dirs) > 10_000:
                self._cur_dirs.clear()
            path = self._cur_dirs[key] = str(self.folder(acct_dir, mbox_dir) / "cur")
        return path

    def _locate_cur_dir(
        self, conn: sqlite3.Connection, mailbox_id: int, uid: int | None
    ) -> str | None:
        """For the file worker: the cur/ directory of mailbox `mailbox_id` as the committed index
        has it now (None when the mailbox is gone; with a `uid`, also when that message is)."""
        if uid is None:
            row = conn.execute(_CUR_OF_MAILBOX, (mailbox_id,)).fetchone()
        else:
            row = conn.execute(_CUR_OF_MESSAGE, (mailbox_id, uid)).fetchone()
        return None if row is None else self.cur_dir(row[1], row[0])

    def _normalize(self, name: str) -> str:
        """names.normalize_mailbox_name, cached (appends name the same few mailboxes)."""
        norm = self._names.get(name)
        if norm is None:
            norm = names.normalize_mailbox_name(name)
            if len(self._names) > 4096:
                self._names.clear()
            self._names[name] = norm
        return norm

    # ---- connections ----

    def _new_read_conn(self) -> sqlite3.Connection:
        return connect_index(self.index_path, readonly=True)

    def _read_conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._new_read_conn()
            self._local.conn = conn
            with self._read_conns_lock:
                self._read_conns.append(conn)
        return conn

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._read_pool, self._run_read, fn, args)

    async def read_quick(self, fn: Callable[..., T], *args: Any) -> T:
        """A read known to be small (a few indexed rows), run on the caller's thread: in WAL a
        reader takes no lock, and a lookup costs less than the two thread hops of `read` (SELECT's
        two reads: ~25% of server CPU per command in bench/imap.py's logged-in loop). If SQLite reports the database busy (WAL
        recovery by another process) the read goes to the pool, which may wait for it."""
        if self._closed:
            raise StoreError("store is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "quick", None)
        if conn is None:
            conn = self._new_read_conn()
            conn.execute("PRAGMA busy_timeout=0")  # never sleep on the event loop
            self._local.quick = conn
            with self._read_conns_lock:
                self._read_conns.append(conn)
        try:
            conn.execute("BEGIN")
            try:
                return fn(conn, *args)
            finally:
                conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        return await self.read(fn, *args)

    async def run_io(self, fn: Callable[..., T], *args: Any) -> T:
        """Blocking file work (reading a message file) in the store's I/O threads."""
        return await asyncio.get_running_loop().run_in_executor(self._io_pool, fn, *args)

    def _run_read(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        conn = self._read_conn()
        conn.execute("BEGIN")  # one snapshot for all the queries of this read
        try:
            return fn(conn, *args)
        finally:
            conn.execute("COMMIT")

    # ---- listings (what SELECT reads; see listing.py) ----

    def listing(
        self, conn: sqlite3.Connection, mb: MailboxRow, force_publish: bool = False
    ) -> Listing:
        return self.listings.get(
            conn,
            mb.id,
            mb.uidvalidity,
            mb.highestmodseq,
            self.codec,
            self._publish_listing,
            force_publish,
        )

    def _publish_listing(self, mailbox_id: int, values: tuple[Any, ...]) -> None:
        """Store a listing snapshot (from a reader thread): a background job for the writer."""
        if self._closed:
            self.listings.published(mailbox_id)
            return

        def job(tx: Tx) -> None:
            try:
                uidvalidity, modseq = values[0], values[1]
                row = tx.conn.execute(
                    "SELECT uidvalidity, highestmodseq FROM mailboxes WHERE id = ?", (mailbox_id,)
                ).fetchone()
                if row is None or row[0] != uidvalidity or row[1] < modseq:
                    return  # the mailbox went away or was rebuilt meanwhile
                old = tx.conn.execute(
                    "SELECT uidvalidity, modseq FROM listings WHERE mailbox_id = ?", (mailbox_id,)
                ).fetchone()
                if old is not None and old[0] == uidvalidity and old[1] >= modseq:
                    return
                tx.conn.execute(
                    "INSERT OR REPLACE INTO listings VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (mailbox_id, *values),
                )
                self.snapshots_written += 1
            finally:
                self.listings.published(mailbox_id)

        if not self.writer.background(job):  # closing: the next open publishes it
            self.listings.published(mailbox_id)

    def _refresh_listing(self, conn: sqlite3.Connection, mailbox_id: int) -> None:
        row = conn.execute(f"SELECT {MAILBOX_COLS} FROM mailboxes WHERE id = ?", (mailbox_id,))
        found = row.fetchone()
        if found is not None:
            self.listing(conn, mailbox_from_row(found), force_publish=True)

    def _note_appends(self, added: dict[int, int]) -> None:
        """After every SNAPSHOT_EVERY appends to a mailbox, refresh its snapshot in the background,
        so that a mailbox filled by deliveries opens fast the first time too."""
        for mailbox_id, n in added.items():
            total = self._unsnapshotted.get(mailbox_id, 0) + n
            if total < SNAPSHOT_EVERY:
                self._unsnapshotted[mailbox_id] = total
                continue
            self._unsnapshotted.pop(mailbox_id, None)
            if not self._closed:
                self._read_pool.submit(self._run_read, self._refresh_listing, (mailbox_id,))

    # ---- the writer: group commit ----

    def claim_recent_later(self, mailbox_id: int, up_to: int) -> None:
        """Record a \\Recent claim now for this process and in the index soon (coalesced)."""
        self.recent_claims[mailbox_id] = max(self.recent_claims.get(mailbox_id, 0), up_to)
        if len(self.recent_claims) > 10_000:  # the index has them: the map only bridges a moment
            self.recent_claims = {mailbox_id: self.recent_claims[mailbox_id]}
        with self._recent_lock:
            queued = mailbox_id in self._recent_pending
            self._recent_pending[mailbox_id] = max(self._recent_pending.get(mailbox_id, 0), up_to)
        if queued or self._closed:
            return

        def job(tx: Tx) -> None:
            with self._recent_lock:
                target = self._recent_pending.pop(mailbox_id, 0)
            tx.conn.execute(
                "INSERT INTO recent (mailbox_id, uid) SELECT ?, ? WHERE EXISTS"
                " (SELECT 1 FROM mailboxes WHERE id = ?) ON CONFLICT (mailbox_id)"
                " DO UPDATE SET uid = max(uid, excluded.uid)",
                (mailbox_id, target, mailbox_id),
            )

        self.writer.background(job)

    async def write(self, fn: Callable[[Tx], T], durable: bool = True) -> T:
        """Run `fn` in the writer's next group commit (see writer.py) and return its result;
        `durable=False` for a write whose loss in a power cut costs nothing (writer.Job)."""
        if self._closed:
            raise StoreError("store is closed")
        try:
            return await self.writer.run(fn, durable)
        except StorageFull:
            # A full disk must not stop a user from deleting mail to make room: give up the
            # reserve (appends never get it) and try once more.
            if not self._release_reserve():
                raise
        return await self.writer.run(fn, durable)

    def _keep_reserve(self) -> None:
        """Hold RESERVE_BYTES of disk in DATA/run/space-reserve while there is plenty of room."""
        path = self.run_dir / RESERVE_NAME
        try:
            if path.exists():
                return
            st = os.statvfs(self.run_dir)
            size = min(RESERVE_BYTES, st.f_blocks * st.f_frsize // 16)  # small filesystems
            if st.f_bavail * st.f_frsize < 4 * size:
                return
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.posix_fallocate(fd, 0, size)
            finally:
                os.close(fd)
        except OSError:
            _unlink(path)

    def _release_reserve(self) -> bool:
        path = self.run_dir / RESERVE_NAME
        try:
            os.unlink(path)
        except FileNotFoundError:
            return False
        log.warning("disk full: released the space reserve so that deletions can go on")
        return True

    # ---- files committed through `bodies`: fsynced in rounds, off the callers' path ----

    async def flush_files(self) -> None:
        """Wait until every message file committed so far is written, fsynced and its body
        dropped (flush rounds otherwise run every FLUSH_COUNT files or FLUSH_AGE seconds)."""
        await self.write(lambda _tx: None)  # every earlier commit has handed its files over
        done = self.flusher.flush()
        await asyncio.get_running_loop().run_in_executor(None, done.wait)
        await self.write(lambda _tx: None)  # after the body-dropping job the round queued

    def _unreserve(self, ap: Append) -> None:
        if ap.reserved and ap.data is not None:
            ap.reserved = False
            self.flusher.release(len(ap.data))

    def _drop_bodies_later(
        self, pairs: list[tuple[int, int, int]], bodies: list[int], paths: list[str]
    ) -> None:
        """The file worker's round is durable: its rows go in the writer's next batch, or here and
        now (its own transaction) when the writer is stopping, which is when close() runs while
        a round ends: nothing then is left to the next open and no job fails behind the stop."""
        if not self.writer.background(lambda tx: drop_done(tx.conn, pairs, bodies, paths)):
            self._drop_bodies_now(pairs, bodies, paths)

    def _drop_bodies_now(
        self, pairs: list[tuple[int, int, int]], bodies: list[int], paths: list[str]
    ) -> None:
        conn = connect_index(self.index_path)
        try:
            conn.execute("BEGIN IMMEDIATE")
            drop_done(conn, pairs, bodies, paths)
            conn.execute("COMMIT")
        except sqlite3.Error:
            log.exception("could not drop the bodies of flushed message files")
        finally:
            conn.close()

    def _housekeeping(self, conn: sqlite3.Connection) -> None:
        """Every 1000 batches, inside one: bound the change log, the expunge history and the
        delivery ids, and take the space reserve again if there is room."""
        conn.execute(
            "DELETE FROM changes WHERE id <= (SELECT max(id) FROM changes) - ?",
            (CHANGES_KEEP,),
        )
        touched, self._expunged_in = self._expunged_in, set()
        prune_expunged(conn, EXPUNGED_KEEP, sorted(touched))
        self._keep_reserve()
        forget_deliveries(conn, time.time(), DELIVERY_ID_KEEP)

    def _abandon(self, writes: list[Write]) -> None:
        """Writes that committed nothing (their batch failed, or the store closed first): no
        file to write for them, their staged files go."""
        for item in writes:
            if type(item) is Append:
                item.linked = False
                self._unreserve(item)
        self._release_staged(writes)

    def _committed(self, writes: list[Write], b: Batch) -> None:
        """Just after COMMIT: the flusher takes the bodies committed with their bytes, staged
        descriptors close."""
        if b.inline:
            for item in writes:
                if type(item) is Append:
                    item.reserved = False  # the flusher releases it once the file is written
            self.flusher.add(b.inline)
        self._release_staged(writes)

    def _submit_search_rows(self, fn: Callable[[sqlite3.Connection], None]) -> threading.Event:
        done = threading.Event()

        def job(tx: Tx) -> None:
            try:
                fn(tx.conn)
            finally:
                tx.after.append(done.set)

        self.writer.background(job)
        return done

    def _search_garbage(self) -> None:
        if self.search_indexer is not None:
            self.search_indexer.note_garbage()

    def start_search_indexer(self) -> None:
        """Start the search index worker now rather than at the first delivery (`serve`, once
        its ports are bound); the indexer thread starts with the store."""
        if isinstance(self.search_indexer, IndexerProcess):
            self.search_indexer.start()

    def wait_search_indexed(self, timeout: float = 60.0) -> bool:
        """Until every message committed so far is in the search index (tests, benchmarks)."""
        return self.search_indexer is not None and self.search_indexer.wait_idle(timeout)

    def _announce(self, b: Batch) -> None:
        """After the batch's file work: wake this process's sessions and the other processes."""
        if b.events:
            by_account: dict[str, list[ChangeEvent]] = {}
            for account, event in b.events:
                by_account.setdefault(account, []).append(event)
            for account, events in by_account.items():
                self.hub.publish(account, events)
            self.feed.wake_others()
        if b.added:
            self._note_appends(b.added)
            if self.search_indexer is not None:
                self.search_indexer.wake()

    def _append_run(self, conn: sqlite3.Connection, run: list[Append], b: Batch) -> None:
        """Consecutive appends of a batch: resolve each mailbox once, allocate UIDs and MODSEQs in
        memory, move each staged file into cur/ under its final name, then write every row with one
        statement per table. A failing append (unknown mailbox, a link refused) fails alone."""
        accts: dict[str, AccountRow | None] = {}
        stored: dict[str, quota.Stored] = {}  # each account's quota limits as committed
        boxes: dict[tuple[int, str], MailboxRow | None] = {}
        touched: dict[int, MailboxRow] = {}
        rows: list[tuple[Any, ...]] = []
        changes: list[tuple[str, str, str]] = []
        unsynced: list[tuple[int, int, int]] = []
        token = self.token
        encode = self.codec.encode
        saved = time.time()  # RFC 8514 SAVEDATE
        for ap in run:
            if ap.delivery_id is not None:
                seen = seen_delivery(conn, ap.delivery_id, time.time(), DELIVERY_ID_KEEP)
                if seen is not None:  # delivered before: the same answer, nothing appended
                    self._unreserve(ap)
                    b.done.append((ap.loop, ap.future, results_from_json(seen), None))
                    continue
            try:
                resolved = []
                for account, name, flags, when, tz in ap.targets:
                    if account in accts:
                        acct = accts[account]
                    else:
                        row = conn.execute(_ACCOUNT_AND_LIMITS, (account,)).fetchone()
                        acct = accts[account] = (
                            None if row is None or row[3] else account_from_row(row)
                        )
                        if acct is not None:
                            stored[account] = (row[6], row[7])
                            self._note_limits(account, acct.id, stored[account])
                    if acct is None:
                        raise AccountNotFound(account)
                    in_force = (acct.id, stored[account])
                    if ap.quota is not None and ap.quota.get(account, in_force) != in_force:
                        raise quota.LimitsChanged(account)  # or another account of that name
                    key = (acct.id, name)
                    if key in boxes:
                        mb = boxes[key]
                    else:
                        mb = boxes[key] = self.mbox_named(conn, acct.id, name)
                    if mb is None or not mb.selectable:
                        raise MailboxNotFound(name)
                    resolved.append((acct, mb, flags, when, tz))
            except StoreError as exc:
                self._unreserve(ap)
                b.done.append((ap.loop, ap.future, None, exc))
                continue
            first_row, first_event = len(rows), len(b.events)
            made: list[str] = []
            dirs: list[str] = []
            names_: list[str] = []
            inline = ap.data is not None
            disk_size = ap.disk_size
            if inline:
                assert ap.data is not None
                lf = maildir.to_disk(ap.data, ap.crlf)  # the flusher writes this form
                disk_size = None if lf is None else len(lf)
            results: list[AppendResult] = []
            try:
                last = len(resolved) - 1
                for i, (acct, mb, flags, when, tz) in enumerate(resolved):
                    uid = mb.uidnext
                    mb.uidnext = uid + 1
                    modseq = mb.highestmodseq = mb.highestmodseq + 1
                    if mb.uidnext > mb.uid_lease or modseq >= mb.modseq_lease:
                        mb.uid_lease = max(mb.uid_lease, mb.uidnext + UID_LEASE)
                        mb.modseq_lease = max(mb.modseq_lease, modseq + MODSEQ_LEASE)
                        self._meta(acct, mb)  # durable before any UID beyond the old lease commits
                    touched[mb.id] = mb
                    if flags:
                        mask, kws = encode(flags)
                        letters = self._letters_in(conn, acct, flags) if kws else _NO_LETTERS
                        info = maildir_info(flags, letters)
                    else:
                        mask, kws, info = 0, "", ""
                    unique = ap.unique if i == 0 else self._unique.next()
                    if i == 0:  # one EMAILID for every copy a delivery makes (RFC 8474 5.1)
                        emailid = emailid_of(unique)
                    base = maildir.make_base(unique, ap.size, uid, disk_size)
                    cur = self.cur_dir(acct.dir, mb.dir)
                    if inline:  # its file is written after COMMIT (flusher.py)
                        names_.append(f"{base}:2,{info}")
                    else:
                        target = f"{cur}/{base}:2,{info}"
                        if i == last:
                            os.rename(ap.staged, target)  # the staged name is not needed any more
                        else:
                            os.link(ap.staged, target)
                        made.append(target)
                    dirs.append(cur)
                    rows.append(
                        (
                            mb.id,
                            uid,
                            modseq,
                            mask,
                            kws,
                            when,
                            ap.size,
                            base,
                            info,
                            emailid,
                            saved,
                            tz,
                        )
                    )
                    changes.append(
                        (token, acct.name, f'{{"t":"a","m":{mb.id},"u":{uid},"s":{modseq}}}')
                    )
                    b.events.append((acct.name, MessageAdded(acct.name, mb.id, uid, modseq)))
                    results.append(AppendResult(acct.name, mb.id, mb.uidvalidity, uid, modseq))
            except OSError as exc:  # the UIDs stay unused: UIDs only need to ascend
                self._unreserve(ap)
                for path in made:
                    _unlink_str(path)
                del rows[first_row:]
                del changes[first_row:]
                del b.events[first_event:]
                b.done.append((ap.loop, ap.future, None, no_room(exc)))
                continue
            ap.linked = True
            if ap.data is not None:
                # durable with COMMIT through its bytes; the file is written and fsynced after
                body = conn.execute(
                    "INSERT INTO bodies (token, data) VALUES (?, ?)", (token, ap.data)
                ).lastrowid
                assert body is not None
                new = rows[first_row:]
                unsynced.extend((r[0], r[1], body) for r in new)
                b.inline.append(
                    Pending(
                        body,
                        ap.data,
                        resolved[0][3],
                        [(r[0], r[1], n) for r, n in zip(new, names_, strict=True)],
                    )
                )
            else:
                b.undo.append(lambda made=made: _unlink_all(made))  # type: ignore[misc]
                b.sync.append(ap.fd if ap.fd >= 0 else made[-1])
                b.dirs.update(dirs)
            for dest in resolved:
                b.added[dest[1].id] = b.added.get(dest[1].id, 0) + 1
            if ap.delivery_id is not None:
                record_delivery(conn, ap.delivery_id, results_to_json(results), time.time())
            b.done.append((ap.loop, ap.future, results, None))
        if touched:
            conn.executemany(
                "UPDATE mailboxes SET uidnext = ?, highestmodseq = ?, uid_lease = ?,"
                " modseq_lease = ? WHERE id = ?",
                [
                    (mb.uidnext, mb.highestmodseq, mb.uid_lease, mb.modseq_lease, mb.id)
                    for mb in touched.values()
                ],
            )
        if rows:
            conn.executemany("INSERT INTO messages VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            conn.executemany(
                "INSERT INTO changes (origin, account, event) VALUES (?, ?, ?)", changes
            )
        if unsynced:
            conn.executemany("INSERT INTO unsynced VALUES (?, ?, ?)", unsynced)

    def note_dirty_files(self) -> None:
        """Rows were added to `dirty_files` (in the writer's transaction): the writer renames
        their files when idle."""
        self.writer.idle_work_pending = True

    def _release_staged(self, batch: list[Job | Append]) -> None:
        """Close the staged files' descriptors; remove the staged files of failed appends."""
        closed = 0
        for item in batch:
            if type(item) is not Append:
                continue
            if item.fd >= 0:
                os.close(item.fd)
                item.fd = -1
                closed += 1
            if not item.linked and item.staged:
                _unlink_str(item.staged)
        if closed:
            with self._staged_lock:
                self._staged_fds -= closed

    def _sync_filenames(self, conn: sqlite3.Connection) -> None:
        """Bring file-name flags in line with the index, a chunk at a time, while idle.

        File-name flags are hints for Maildir readers and for reindex; the index is the truth, so
        renames need no fsync and may lag a flag change by a fraction of a second. Nor does the
        COMMIT (synchronous=NORMAL): if a power cut loses it, the `dirty_files` rows come back and
        the renames are done again (a file already under its new name: the Maildir sync takes
        the name as it is, the flags being the same).
        """
        conn.execute("PRAGMA synchronous=NORMAL")  # (not allowed inside a transaction)
        try:
            self._sync_filenames_tx(conn)
        finally:
            conn.execute("PRAGMA synchronous=FULL")

    def _sync_filenames_tx(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
            rows = conn.execute(
                "SELECT d.mailbox_id, d.uid, m.flags, m.keywords, m.base, m.info, b.dir, a.dir,"
                " a.keywords, b.account_id FROM dirty_files d"
                " LEFT JOIN messages m ON m.mailbox_id = d.mailbox_id AND m.uid = d.uid"
                " LEFT JOIN mailboxes b ON b.id = d.mailbox_id"
                " LEFT JOIN accounts a ON a.id = b.account_id LIMIT ?",
                (FILENAME_SYNC_CHUNK,),
            ).fetchall()
            updates = []
            keep: set[tuple[int, int]] = set()
            rescan: set[tuple[int, int]] = set()
            for mbid, uid, mask, kws, base, info, mdir, adir, akw, acct_id in rows:
                if base is None or mdir is None or adir is None:
                    continue
                letters = {kw: maildir.KEYWORD_LETTERS[i] for i, kw in enumerate(akw.split()[:26])}
                want = maildir_info(self.codec.decode(mask, kws), letters)
                if want == info:
                    continue
                folder = self.folder(adir, mdir)
                src = maildir.locate(folder, base, info)
                if src is None:
                    if conn.execute(
                        "SELECT 1 FROM unsynced WHERE mailbox_id = ? AND uid = ?", (mbid, uid)
                    ).fetchone():
                        keep.add((mbid, uid))  # its file is about to be written: try again
                    continue
                if (src.name != maildir.file_name(base, info) or src.parent.name != "cur") and (
                    mbid,
                    uid,
                ) not in self._rescanned:
                    # renamed by a Maildir client (mutt set a flag) and not adopted yet: renaming
                    # it now would undo that change. Adopt it first (a scan merges the flags),
                    # then this row's turn comes again.
                    keep.add((mbid, uid))
                    rescan.add((acct_id, mbid))
                    if len(self._rescanned) > 10_000:
                        self._rescanned.clear()
                    self._rescanned.add((mbid, uid))  # once: a scan that cannot adopt it
                    # (its folder is not the mailbox's) must not make this loop forever
                    continue
                dst = folder / "cur" / maildir.file_name(base, want)
                try:
                    os.rename(src, dst)
                except FileNotFoundError:
                    continue
                updates.append((want, mbid, uid))
            conn.executemany(
                "UPDATE messages SET info = ? WHERE mailbox_id = ? AND uid = ?", updates
            )
            conn.executemany(
                "DELETE FROM dirty_files WHERE mailbox_id = ? AND uid = ?",
                [(r[0], r[1]) for r in rows if (r[0], r[1]) not in keep],
            )
            conn.execute("COMMIT")
            self.writer.idle_work_pending = len(rows) == FILENAME_SYNC_CHUNK or bool(keep)
            for acct_id, mbid in rescan:
                self.writer.background(functools.partial(self._rescan, acct_id, mbid))
        except sqlite3.Error:
            log.exception("file-name flag sync failed")
            if conn.in_transaction:
                conn.execute("ROLLBACK")

    # ---- changes made in the Maildir by other programs (maildir_sync.py) ----

    def external_due(self, conn: sqlite3.Connection, mb: MailboxRow, acct_dir: str) -> bool:
        """Has the folder of `mb` changed behind the store since its last scan? Two stat calls
        (and, the first time in this process, one indexed row). A change the store's own recent
        writes explain is put off (maildir_sync.decide): the folder is scanned once it is quiet."""
        if not mb.selectable:
            return False
        pair = maildir_sync.stat_pair(self.cur_dir(acct_dir, mb.dir)[:-4])
        if pair is None:
            return False  # not where the index says: recovery's business, not a scan's
        stamp = self._stamps.get(mb.id)
        if stamp is None:
            stamp = maildir_sync.load_stamp(conn, mb.id)
        now = time.time_ns()
        verdict = maildir_sync.decide(stamp, pair, now, mb.highestmodseq)
        if verdict == maildir_sync.DEFER:
            assert stamp is not None
            self._remember_stamp(mb.id, maildir_sync.deferred(stamp, pair, now, mb.highestmodseq))
        return verdict == maildir_sync.SCAN

    def _remember_stamp(self, mailbox_id: int, stamp: maildir_sync.Stamp) -> None:
        if len(self._stamps) > 10_000:
            self._stamps.clear()
        self._stamps[mailbox_id] = stamp

    async def sync_folder(self, account_id: int, mailbox_id: int, force: bool = False) -> None:
        """Scan the mailbox's folder and bring the index in line with it, in one transaction of
        the writer (`force`: even if its mtimes say nothing changed)."""
        await self.write(lambda tx: self.scan_folder(tx, account_id, mailbox_id, force))

    def _rescan(self, account_id: int, mailbox_id: int, tx: Tx) -> None:
        self.scan_folder(tx, account_id, mailbox_id, force=True)

    def scan_folder(self, tx: Tx, account_id: int, mailbox_id: int, force: bool) -> None:
        """Adopt what other programs did to a folder: files new to it become messages (moved to
        cur/ under the store's name form), a renamed info part changes flags (merged with the
        index's), a file gone expunges its message. One MODSEQ for all of it, events on the feed.
        Holds the write lock and the folder lock, so no write of the store is half-way."""
        conn = tx.conn
        try:
            mb = self.mbox_by_id(conn, account_id, mailbox_id)
            acct = self.account_by_id(tx, account_id)
        except (MailboxNotFound, AccountNotFound):
            return
        if not mb.selectable:
            return
        folder = self.folder(acct.dir, mb.dir)
        fs = str(folder)
        tx.hold_folders()
        pair = maildir_sync.stat_pair(fs)
        if pair is None:
            return
        stamp = maildir_sync.load_stamp(conn, mb.id)
        if not force and stamp is not None:
            verdict = maildir_sync.decide(stamp, pair, time.time_ns(), mb.highestmodseq)
            if verdict != maildir_sync.SCAN:  # another process (or an earlier job) just did it
                tx.after.append(lambda: self._remember_stamp(mb.id, stamp))
                return
        self.folder_scans += 1
        new_names, cur_names = maildir_sync.list_folder(fs)
        diff = maildir_sync.compare(conn, mb.id, new_names, cur_names)
        self._hook("scan_listed")
        if diff.gone:
            meta = maildir.read_meta(folder)
            if meta is None or meta.get("guid") != mb.guid:
                # not this mailbox's folder (a half-done move that recovery puts back): expunge
                # nothing on the word of a directory that is not the one the index means
                log.warning("folder %s does not carry mailbox %s's guid: not scanned", fs, mb.name)
                return
        letters = {maildir.KEYWORD_LETTERS[i]: kw for i, kw in enumerate(acct.keywords[:26])}
        kw_letters = {kw: ch for ch, kw in letters.items()}
        cur, new = fs + "/cur", fs + "/new"
        moved = False

        def rename(src: str, dst: str) -> None:
            os.rename(src, dst)
            tx.undo.append(lambda: os.rename(dst, src))

        for name, target in diff.from_new:  # a client moved one of ours back to new/
            rename(f"{new}/{name}", f"{cur}/{target}")
            moved = True
        flag_updates: list[tuple[int, frozenset[str], str]] = []  # uid, flags, file info
        info_only: list[tuple[str, int, int]] = []
        for uid, old_info, new_info, mask, kws in diff.renamed:
            current = self.codec.decode(mask, kws)
            merged = maildir_sync.merge_flags(current, old_info, new_info, letters)
            if merged != current:
                flag_updates.append((uid, merged, new_info))
            else:
                info_only.append((new_info, mb.id, uid))
        found: list[tuple[str, str, os.stat_result, int, int | None]] = []
        for sub, name in diff.adopt:
            try:
                st = os.lstat(f"{fs}/{sub}/{name}")
                if not stat.S_ISREG(st.st_mode):
                    continue  # a directory, a link...: no message
                size, disk = maildir.wire_size(f"{fs}/{sub}/{name}")
            except OSError:  # gone meanwhile, or a link put in its place (ELOOP)
                continue
            found.append((sub, name, st, size, disk))
        if diff.gone or flag_updates or found:
            first, modseq = self.alloc(tx, acct, mb, len(found))
        else:
            first, modseq = mb.uidnext, mb.highestmodseq
        if diff.gone:
            uids = [g[0] for g in diff.gone]
            self._expunged_in.add(mb.id)
            conn.executemany(
                "DELETE FROM messages WHERE mailbox_id = ? AND uid = ?", [(mb.id, u) for u in uids]
            )
            conn.executemany(
                "DELETE FROM dirty_files WHERE mailbox_id = ? AND uid = ?",
                [(mb.id, u) for u in uids],
            )
            conn.executemany(
                "INSERT OR REPLACE INTO expunged (mailbox_id, uid, modseq) VALUES (?, ?, ?)",
                [(mb.id, u, modseq) for u in uids],
            )
            search_index.forget(conn, mb.id, uids)
            tx.after.append(self._search_garbage)
            tx.event(acct.name, MessagesExpunged(acct.name, mb.id, tuple(uids), modseq))
        dirty = []
        for uid, flags, new_info in flag_updates:
            mask, kws = self.codec.encode(flags)
            conn.execute(
                "UPDATE messages SET flags = ?, keywords = ?, modseq = ?, info = ?"
                " WHERE mailbox_id = ? AND uid = ?",
                (mask, kws, modseq, new_info, mb.id, uid),
            )
            if maildir_info(flags, kw_letters) != new_info:
                dirty.append((mb.id, uid))  # the name catches up with the merged flags later
            tx.event(acct.name, FlagsChanged(acct.name, mb.id, uid, flags, modseq))
        conn.executemany("UPDATE messages SET info = ? WHERE mailbox_id = ? AND uid = ?", info_only)
        if dirty:
            conn.executemany(
                "INSERT OR IGNORE INTO dirty_files (mailbox_id, uid) VALUES (?, ?)", dirty
            )
            self.note_dirty_files()
        rows = []
        adopted_at = time.time()
        for i, (sub, name, st, size, disk) in enumerate(sorted(found, key=lambda f: f[1])):
            uid = first + i
            info = maildir.parse_name(name).info if sub == "cur" else ""
            flags = flags_from_info(info, letters)
            base = maildir_sync.adopted_base(name, size, uid, disk)
            if os.path.lexists(f"{cur}/{maildir.file_name(base, info)}"):  # a name used twice
                base = maildir_sync.adopted_base(f"{name}-{uid}", size, uid, disk)
            rename(f"{fs}/{sub}/{name}", f"{cur}/{maildir.file_name(base, info)}")
            moved = True
            self._hook("scan_adopted")
            mask, kws = self.codec.encode(flags)
            rows.append(
                (
                    mb.id,
                    uid,
                    modseq,
                    mask,
                    kws,
                    st.st_mtime,
                    size,
                    base,
                    info,
                    emailid_of_base(base),
                    adopted_at,  # RFC 8514: when it entered the mailbox as far as we know
                    local_zone(st.st_mtime),  # a file's mtime has no zone: the local one
                )
            )
            tx.event(acct.name, MessageAdded(acct.name, mb.id, uid, modseq))
        if rows:
            conn.executemany("INSERT INTO messages VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            if self.search_indexer is not None:
                tx.after.append(self.search_indexer.wake)
        if moved:  # durable before COMMIT: the rows name the files by their new names
            tx.dirs.update((Path(cur), Path(new)))
        if diff.gone or flag_updates or rows:
            log.info(
                "%s %s: adopted changes made in its Maildir: %d new, %d flag change(s), %d gone",
                acct.name,
                mb.name,
                len(rows),
                len(flag_updates),
                len(diff.gone),
            )
        after = maildir_sync.stamp_after_scan(fs, diff.conclusive, mb.highestmodseq)
        if after is not None:
            maildir_sync.save_stamp(conn, mb.id, after)
            tx.after.append(lambda: self._remember_stamp(mb.id, after))

    # ---- rows inside a write transaction ----

    def account_by_id(self, tx: Tx, account_id: int) -> AccountRow:
        row = tx.conn.execute(
            f"SELECT {ACCOUNT_COLS} FROM accounts WHERE id = ?", (account_id,)
        ).fetchone()
        if row is None or row[3]:
            raise AccountNotFound(str(account_id))
        return account_from_row(row)

    @staticmethod
    def mbox_named(conn: sqlite3.Connection, account_id: int, name: str) -> MailboxRow | None:
        row = conn.execute(
            f"SELECT {MAILBOX_COLS} FROM mailboxes WHERE account_id = ? AND name = ?",
            (account_id, name),
        ).fetchone()
        return None if row is None else mailbox_from_row(row)

    def selectable_mailbox(self, tx: Tx, account_id: int, name: str) -> MailboxRow:
        mb = self.mbox_named(tx.conn, account_id, names.normalize_mailbox_name(name))
        if mb is None or not mb.selectable:
            raise MailboxNotFound(name)
        return mb

    @staticmethod
    def mbox_by_id(conn: sqlite3.Connection, account_id: int, mailbox_id: int) -> MailboxRow:
        row = conn.execute(
            f"SELECT {MAILBOX_COLS} FROM mailboxes WHERE id = ? AND account_id = ?",
            (mailbox_id, account_id),
        ).fetchone()
        if row is None:
            raise MailboxNotFound(str(mailbox_id))
        return mailbox_from_row(row)

    def _meta(self, acct: AccountRow, mb: MailboxRow, folder: Path | None = None) -> None:
        maildir.write_meta(
            folder or self.folder(acct.dir, mb.dir),
            {
                "guid": mb.guid,
                "name": mb.name,
                "uidvalidity": mb.uidvalidity,
                "uid_lease": mb.uid_lease,
                "modseq_lease": mb.modseq_lease,
                "special_use": mb.special_use,
            },
        )

    def move_folders(
        self, tx: Tx, acct: AccountRow, moving: list[MailboxRow], old_n: str, new_n: str
    ) -> None:
        """RENAME's folder work: each mailbox of `moving` (`old_n` and its inferiors, parents
        first) gets the name with `old_n` replaced by `new_n`, and its folder moves with it."""
        home = self.maildir_of(acct.dir)
        tx.hold_folders()
        for mb in moving:
            renamed = new_n + mb.name[len(old_n) :]
            newdir = names.folder_dir(renamed)
            oldpath, newpath = home / mb.dir, home / newdir
            if newpath.exists():
                self._evict(tx, newpath, acct.id, newdir)
            before = dataclasses.replace(mb)
            old_name = mb.name
            mb.name, mb.dir = renamed, newdir
            self._meta(acct, mb, oldpath)  # the folder carries its new name before it moves
            os.rename(oldpath, newpath)
            tx.undo.append(  # back to its place, with its old name
                lambda o=oldpath, n=newpath, b=before: self._unmove(acct, b, n, o)  # type: ignore[misc]
            )
            tx.conn.execute(
                "UPDATE mailboxes SET name = ?, dir = ? WHERE id = ?", (renamed, newdir, mb.id)
            )
            tx.event(acct.name, MailboxChanged(acct.name, mb.id, "renamed", renamed, old_name))
        tx.dirs.add(home)

    def _unmove(self, acct: AccountRow, before: MailboxRow, moved: Path, back: Path) -> None:
        os.rename(moved, back)
        self._meta(acct, before, back)

    def alloc(self, tx: Tx, acct: AccountRow, mb: MailboxRow, count: int) -> tuple[int, int]:
        """First of `count` new UIDs and one new MODSEQ for `mb` (kept up to date)."""
        first = mb.uidnext
        mb.uidnext += count
        mb.highestmodseq += 1
        if mb.uidnext > mb.uid_lease or mb.highestmodseq >= mb.modseq_lease:
            mb.uid_lease = max(mb.uid_lease, mb.uidnext + UID_LEASE)
            mb.modseq_lease = max(mb.modseq_lease, mb.highestmodseq + MODSEQ_LEASE)
            self._meta(acct, mb)  # durable before any UID beyond the old lease is committed
        tx.conn.execute(
            "UPDATE mailboxes SET uidnext = ?, highestmodseq = ?, uid_lease = ?, modseq_lease = ?"
            " WHERE id = ?",
            (mb.uidnext, mb.highestmodseq, mb.uid_lease, mb.modseq_lease, mb.id),
        )
        return first, mb.highestmodseq

    def letters(self, tx: Tx, acct: AccountRow, flags: Iterable[str]) -> dict[str, str]:
        return self._letters_in(tx.conn, acct, flags)

    def _letters_in(
        self, conn: sqlite3.Connection, acct: AccountRow, flags: Iterable[str]
    ) -> dict[str, str]:
        """keyword -> Maildir letter; assigns letters to new keywords (26 at most)."""
        new = [f for f in sorted(set(flags)) if not f.startswith("\\") and f not in acct.keywords]
        if new and len(acct.keywords) < len(maildir.KEYWORD_LETTERS):
            acct.keywords.extend(new[: len(maildir.KEYWORD_LETTERS) - len(acct.keywords)])
            conn.execute(
                "UPDATE accounts SET keywords = ? WHERE id = ?", (" ".join(acct.keywords), acct.id)
            )
            maildir.write_keywords(self.maildir_of(acct.dir), acct.keywords)
        return {kw: maildir.KEYWORD_LETTERS[i] for i, kw in enumerate(acct.keywords[:26])}

    def _new_uidvalidity(self, tx: Tx, acct: AccountRow) -> int:
        value = max(int(time.time()), acct.last_uidvalidity + 1) & 0xFFFFFFFF or 1
        acct.last_uidvalidity = value
        tx.conn.execute("UPDATE accounts SET last_uidvalidity = ? WHERE id = ?", (value, acct.id))
        return value

    def _evict(
        self, tx: Tx, path: Path, account_id: int | None = None, mbdir: str | None = None
    ) -> None:
        """Move an unindexed directory that is in the way to DATA/lost+found (never delete it).
        A folder that a mailbox row still names is not unindexed: refuse rather than hide it."""
        if account_id is not None and mbdir is not None:
            used = tx.conn.execute(
                "SELECT name FROM mailboxes WHERE account_id = ? AND dir = ?", (account_id, mbdir)
            ).fetchone()
            if used is not None:
                raise StoreError(
                    f"folder {path.name} belongs to mailbox {used[0]!r}; run `carteiro store check`"
                )
        tx.hold_folders()
        self.lost_dir.mkdir(exist_ok=True)
        dest = self.lost_dir / f"{int(time.time())}-{secrets.token_hex(4)}-{path.name}"
        log.warning("moving unindexed %s to %s", path, dest)
        os.rename(path, dest)

    def new_mailbox(
        self, tx: Tx, acct: AccountRow, name: str, special_use: str | None
    ) -> MailboxRow:
        mbdir = names.folder_dir(name)
        path = self.folder(acct.dir, mbdir)
        tx.hold_folders()
        if mbdir and path.exists():
            self._evict(tx, path, acct.id, mbdir)
        mb = MailboxRow(
            0,
            acct.id,
            name,
            mbdir,
            secrets.token_hex(16),
            self._new_uidvalidity(tx, acct),
            1,
            1,
            special_use,
            True,
            1 + UID_LEASE,
            1 + MODSEQ_LEASE,
        )
        cur = tx.conn.execute(
            "INSERT INTO mailboxes (account_id, name, dir, guid, uidvalidity, uidnext, highestmodseq,"
            " special_use, selectable, uid_lease, modseq_lease) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                acct.id,
                name,
                mbdir,
                mb.guid,
                mb.uidvalidity,
                1,
                1,
                special_use,
                1,
                mb.uid_lease,
                mb.modseq_lease,
            ),
        )
        mb.id = int(cur.lastrowid or 0)
        if mbdir:
            tx.undo.append(lambda: maildir.remove_tree(path))
            # made whole in DATA/tmp (named with this writer's token, which recovery removes if we
            # die), then renamed into place: a crash never leaves a half-made folder that looks
            # like another program's to recovery (and then gets evicted to lost+found)
            staging = self.tmp_dir / f"folder-{self._unique.next()}"
            maildir.make_folder(staging, is_root=False)
            self._meta(acct, mb, staging)
            os.rename(staging, path)
        else:
            maildir.make_folder(path, is_root=True)
            self._meta(acct, mb)
        tx.dirs.add(path)
        tx.dirs.add(path.parent)
        tx.event(acct.name, MailboxChanged(acct.name, mb.id, "created", name))
        return mb

    def remove_messages(
        self, tx: Tx, acct: AccountRow, mb: MailboxRow, rows: list[tuple[int, str, str]]
    ) -> list[int]:
        """Delete (uid, base, info) rows of `mb`; files go after COMMIT (via pending_unlink)."""
        if not rows:
            return []
        modseq = self.alloc(tx, acct, mb, 0)[1]
        uids = [r[0] for r in rows]
        self._expunged_in.add(mb.id)  # its history is bounded at the next housekeeping
        conn = tx.conn
        conn.executemany(
            "DELETE FROM messages WHERE mailbox_id = ? AND uid = ?", [(mb.id, u) for u in uids]
        )
        conn.executemany(
            "INSERT OR REPLACE INTO expunged (mailbox_id, uid, modseq) VALUES (?, ?, ?)",
            [(mb.id, u, modseq) for u in uids],
        )
        search_index.forget(conn, mb.id, uids)
        tx.after.append(self._search_garbage)
        # path-free entries: the folder is looked up when the file goes (it may have moved by then)
        tx.hold_folders()
        paths = [f"@{mb.id}/{maildir.file_name(base, info)}" for _, base, info in rows]
        conn.executemany(
            "INSERT OR IGNORE INTO pending_unlink (path) VALUES (?)", [(p,) for p in paths]
        )
        if len(paths) <= UNLINK_INLINE_MAX and not self._has_unsynced(conn):
            # every file is written (no message of the store waits for the file worker, so none
            # of these can be written after its unlink): a few unlinks right after COMMIT, on
            # this thread under the folder lock it holds, cost less than waking the worker
            tx.after.append(lambda: self._unlink_now(paths))
        else:
            tx.after.append(lambda: self.flusher.unlink(paths))  # the file worker, after COMMIT
        tx.event(acct.name, MessagesExpunged(acct.name, mb.id, tuple(uids), modseq))
        return uids

    def _unlink_now(self, paths: list[str]) -> None:
        folders: dict[int, Path | None] = {}
        done = []
        for rel in paths:
            try:
                self.unlink_pending_path(rel, self.writer.conn, folders)
            except OSError:
                log.exception("removing %s failed; the next start tries again", rel)
                continue
            done.append(rel)
        if done:  # their journal rows go with the next batch (nothing waits for it)
            self.writer.background(lambda tx: drop_done(tx.conn, [], [], done))

    def unlink_pending_path(
        self,
        rel: str,
        conn: sqlite3.Connection | None = None,
        folders: dict[int, Path | None] | None = None,
    ) -> None:
        """Carry out one pending_unlink entry (maintenance.unlink_pending); the caller holds the
        folder lock (`folders`: mailbox folders already looked up during that hold)."""
        unlink_pending(self.mail_root, conn or self.writer.conn, rel, folders)

    def drop_folder(self, tx: Tx, acct: AccountRow, mb: MailboxRow) -> None:
        """Remove a mailbox row with its messages; its folder goes after COMMIT."""
        conn = tx.conn
        tx.hold_folders()
        for table in (
            "messages",
            "expunged",
            "expunge_horizon",
            "dirty_files",
            "listings",
            "maildir_sync",
            "recent",
        ):
            conn.execute(f"DELETE FROM {table} WHERE mailbox_id = ?", (mb.id,))
        search_index.forget_mailbox(conn, mb.id)
        tx.after.append(self._search_garbage)
        conn.execute("DELETE FROM mailboxes WHERE id = ?", (mb.id,))
        if mb.dir:
            path = self.folder(acct.dir, mb.dir)
            tomb = self.tmp_dir / f"deleted-{mb.guid}"
            if path.exists():
                os.rename(path, tomb)
                tx.undo.append(lambda: os.rename(tomb, path))
            conn.execute("INSERT OR IGNORE INTO pending_unlink (path) VALUES (?)", (str(tomb),))
            tx.after.append(lambda: self.flusher.unlink([str(tomb)]))

    def copy_rows(
        self,
        tx: Tx,
        acct: AccountRow,
        src: MailboxRow,
        dst: MailboxRow,
        uids: Sequence[int] | None,
        move: bool,
    ) -> CopyResult:
        conn = tx.conn
        sql = (
            "SELECT uid, flags, keywords, internaldate, size, base, info, emailid, internaldate_tz"
            " FROM messages WHERE mailbox_id = ?"
        )
        params: tuple[Any, ...] = (src.id,)
        if uids is not None:
            sql += " AND uid IN (SELECT value FROM json_each(?))"
            params += (json_ints(uids),)
        rows = conn.execute(sql + " ORDER BY uid", params).fetchall()
        if not rows:
            return CopyResult(dst.uidvalidity, ())
        first, modseq = self.alloc(tx, acct, dst, len(rows))
        letters = self.letters(tx, acct, [])
        src_folder = self.folder(acct.dir, src.dir)
        dst_folder = self.folder(acct.dir, dst.dir)
        # sources committed with their bytes whose file may not be fsynced, or not written yet
        pending: dict[int, int] = (
            dict(
                conn.execute(
                    "SELECT uid, body_id FROM unsynced WHERE mailbox_id = ?"
                    " AND uid IN (SELECT value FROM json_each(?))",
                    (src.id, json_ints(r[0] for r in rows)),
                ).fetchall()
            )
            if self._has_unsynced(conn)
            else {}
        )
        inserts = []
        pairs = []
        unwritten: dict[int, list[tuple[int, int, str]]] = {}  # body id -> copy targets
        dates: dict[int, float] = {}  # body id -> INTERNALDATE (the file's mtime)
        saved = time.time()  # RFC 8514: the copy's SAVEDATE is when it was copied
        for i, (uid, mask, kws, when, size, base, info, emailid, tz) in enumerate(rows):
            nuid = first + i
            path = maildir.locate(src_folder, base, info)
            # the copy holds what the source's file holds (one inode, or the same bytes)
            disk = maildir.parse_name(base).size if maildir.is_lf_form(base) else None
            nbase = maildir.make_base(self._unique.next(), size, nuid, disk)
            ninfo = maildir_info(self.codec.decode(mask, kws), letters)
            if path is None:
                if uid not in pending:
                    raise StoreError(f"message file of UID {uid} in {src.name} is missing")
                # not written yet: the copy gets a file of its own from the same bytes
                unwritten.setdefault(pending[uid], []).append(
                    (dst.id, nuid, maildir.file_name(nbase, ninfo))
                )
                dates[pending[uid]] = float(when)
            else:
                target = dst_folder / "cur" / maildir.file_name(nbase, ninfo)
                os.link(path, target)
                tx.undo.append(lambda t=target: _unlink(t))  # type: ignore[misc]
                if uid in pending:
                    tx.files.add(path)  # the copy shares its inode: make the data durable now
            # RFC 8474 5.1: the same EMAILID across COPY and MOVE (same content)
            emailid = emailid or emailid_of_base(base)
            inserts.append(
                (dst.id, nuid, modseq, mask, kws, when, size, nbase, ninfo, emailid, saved, tz)
            )
            pairs.append((uid, nuid))
            tx.event(acct.name, MessageAdded(acct.name, dst.id, nuid, modseq))
        tx.dirs.add(dst_folder / "cur")
        conn.executemany("INSERT INTO messages VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", inserts)
        search_index.copy_rows(conn, src.id, dst.id, pairs)
        if unwritten:
            conn.executemany(
                "INSERT OR REPLACE INTO unsynced VALUES (?, ?, ?)",
                [(m, u, body) for body, ts in unwritten.items() for m, u, _n in ts],
            )
            items = [
                Pending(
                    body,
                    bytes(
                        conn.execute("SELECT data FROM bodies WHERE id = ?", (body,)).fetchone()[0]
                    ),
                    dates[body],
                    targets,
                    reserved=False,
                )
                for body, targets in unwritten.items()
            ]
            tx.after.append(lambda: self.flusher.add(items))
        if move:
            self.remove_messages(tx, acct, src, [(r[0], r[5], r[6]) for r in rows])
        return CopyResult(dst.uidvalidity, tuple(pairs))

    @staticmethod
    def _has_unsynced(conn: sqlite3.Connection) -> bool:
        return conn.execute("SELECT 1 FROM unsynced LIMIT 1").fetchone() is not None

    def mailbox_info(self, conn: sqlite3.Connection, mb: MailboxRow) -> MailboxInfo:
        subscribed = conn.execute(
            "SELECT 1 FROM subscriptions WHERE account_id = ? AND name = ?",
            (mb.account_id, mb.name),
        ).fetchone()
        return MailboxInfo(
            mb.id,
            mb.name,
            mb.uidvalidity,
            mb.uidnext,
            mb.highestmodseq,
            mb.special_use,
            subscribed is not None,
            mb.selectable,
            mailboxid(mb.guid),
        )

    # ---- staging message bytes ----

    def _stage(
        self,
        path: str,
        source: MessageSource,
        mtime: float,
        crlf: bool = False,
        lf: bytes | None = None,
    ) -> tuple[int, int, int | None]:
        """Write (or hard-link) the message to `path` in DATA/tmp, without fsync: the writer
        fsyncs it in its batch's round. Returns (open fd or -1, size, size of the LF form when
        the file holds that: a message is written in its LF form when it has one, up to
        CONVERT_MAX when given as a file; else bytes are written and a file linked as they are).
        `crlf`: see maildir.to_disk; `lf`: the LF form of the bytes `source`, already made."""
        fd = -1
        disk_size = None
        if isinstance(source, bytes | bytearray | memoryview):
            data = bytes(source)
            if lf is None:
                lf = maildir.to_disk(data, crlf)
            if lf is not None:
                disk_size = len(lf)
            fd = maildir.stage_bytes_open(path, data if lf is None else lf, mtime)
            size = len(data)
            with self._staged_lock:
                if self._staged_fds < MAX_STAGED_FDS:
                    self._staged_fds += 1
                else:
                    os.close(fd)
                    fd = -1
        else:
            src = os.fspath(source)
            data = None
            if os.stat(src).st_size <= CONVERT_MAX:
                with open(src, "rb") as f:
                    data = f.read(CONVERT_MAX + 1)
            lf = None if data is None or len(data) > CONVERT_MAX else maildir.to_disk(data, crlf)
            if lf is not None:  # written in its LF form, as bytes are
                assert data is not None
                return self._stage(path, data, mtime, lf=lf)
            size = maildir.stage_path(path, src, mtime, sync=False)
        self._hook("staged")
        return fd, size, disk_size

    def _stage_read(
        self,
        path: str,
        source: str,
        data: bytes,
        targets: list[tuple[str, str, frozenset[str], float, int]],
        crlf: bool = False,
    ) -> tuple[int, int, int | None] | None:
        """A file source already read (from the page cache): staged in its LF form if it has
        one, else hard-linked as it is; None when it cannot be linked (copied in a thread)."""
        lf = maildir.to_disk(data, crlf)
        if lf is not None:  # (made once: _stage does not convert it again)
            return self._stage(path, data, targets[0][3], lf=lf)
        return self._stage_link(path, source)

    def _stage_link(self, path: str, source: str) -> tuple[int, int, int | None] | None:
        """Hard-link `source` to `path` and open it for the fsync round; None when it cannot be
        linked (another filesystem...): the caller copies it in a thread instead."""
        try:
            os.link(source, path)
        except OSError as exc:
            if exc.errno in maildir.LINK_FALLBACK_ERRNOS:
                return None
            raise
        try:
            fd = os.open(path, os.O_RDONLY)
        except BaseException:
            _unlink_str(path)
            raise
        try:
            size = os.fstat(fd).st_size
        except BaseException:
            os.close(fd)
            _unlink_str(path)
            raise
        with self._staged_lock:
            if self._staged_fds < MAX_STAGED_FDS:
                self._staged_fds += 1
            else:
                os.close(fd)
                fd = -1
        self._hook("staged")
        return fd, size, None

    async def deliver_many(
        self,
        targets: list[tuple[str, str, frozenset[str], float, int]],
        source: MessageSource,
        delivery_id: str | None = None,
        crlf: bool = False,
    ) -> list[AppendResult]:
        targets = [(a, self._normalize(n), f, w, z) for a, n, f, w, z in targets]
        if not targets:
            return []
        for _attempt in range(3):
            if self._closed:
                raise StoreError("store is closed")
            checked = await self._check_quota(targets, source)
            try:
                return await self._deliver_once(targets, source, delivery_id, checked, crlf)
            except quota.LimitsChanged:
                continue  # a quota was set meanwhile: check against the new limits
        raise StoreError("quota limits keep changing; try again")

    async def _deliver_once(
        self,
        targets: list[tuple[str, str, frozenset[str], float, int]],
        source: MessageSource,
        delivery_id: str | None,
        checked: dict[str, tuple[int, quota.Stored]],
        crlf: bool = False,
    ) -> list[AppendResult]:
        unique = self._unique.next()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[AppendResult]] = loop.create_future()
        small = _small_body(source)
        if small is not None and self.flusher.reserve(len(small)):
            # committed with its bytes: no file before COMMIT (the flusher writes it after)
            self.writer.enqueue(
                Append(
                    targets,
                    "",
                    unique,
                    -1,
                    len(small),
                    loop,
                    future,
                    data=small,
                    reserved=True,
                    delivery_id=delivery_id,
                    quota=checked,
                    crlf=crlf,
                )
            )
            return await future  # (a failed append's reservation is released by the writer)
        staged = self._tmp_prefix + unique
        try:
            staged_inline = None
            if isinstance(source, bytes) and len(source) <= INLINE_STAGE_MAX:
                # a small write without fsync only touches the page cache: cheaper than a thread hop
                staged_inline = self._stage(staged, source, targets[0][3], crlf)
            elif isinstance(source, str | os.PathLike):
                # a file in the page cache (an SMTP message just spooled) is converted to its
                # LF form right here, as bytes are; one with no LF form is hard-linked (a few
                # metadata calls); one that would wait for the disk goes to a thread
                cached = maildir.read_cached(Path(source))
                if cached is not None:
                    staged_inline = self._stage_read(
                        staged, os.fspath(source), cached, targets, crlf
                    )
            if staged_inline is not None:
                fd, size, disk_size = staged_inline
            else:
                staging = loop.run_in_executor(
                    self._io_pool, self._stage, staged, source, targets[0][3], crlf
                )
                try:
                    fd, size, disk_size = await asyncio.shield(staging)
                except asyncio.CancelledError:
                    # the caller gave up while the bytes were being written: once they are, close the
                    # descriptor, give back its place and remove the staged file
                    staging.add_done_callback(lambda f: self._drop_staging(f, staged))
                    raise
        except OSError as e:
            _unlink_str(staged)
            raise no_room(e) from e
        # from here the writer owns the staged file: it links it or removes it
        self.writer.enqueue(
            Append(
                targets,
                staged,
                unique,
                fd,
                size,
                loop,
                future,
                delivery_id=delivery_id,
                disk_size=disk_size,
                quota=checked,
            )
        )
        return await future

    async def _check_quota(
        self, targets: list[tuple[str, str, frozenset[str], float, int]], source: MessageSource
    ) -> dict[str, tuple[int, quota.Stored]]:
        """OverQuota if the message would take an account past a limit (quota.py). Returns the
        account id and stored limits it checked against, per account: the writer fails the append if they are
        no longer the ones in force (quota.LimitsChanged), so the memory below is only a hint.
        Limits come from that memory (kept by the writer's append runs, which read them with the
        account row anyway) or one read on this thread; usage is summed in the read pool, only
        for an account under a limit."""
        per_account: dict[str, int] = {}
        for t in targets:
            per_account[t[0]] = per_account.get(t[0], 0) + 1
        known = dict(self.quota_seen) if len(per_account) > 1 else self.quota_seen
        missing = [name for name in per_account if name not in known]
        if missing:

            def read(conn: sqlite3.Connection) -> dict[str, tuple[int, quota.Stored]]:
                found = {}
                for name in missing:
                    row = conn.execute(quota.ACCOUNT_LIMITS_BY_NAME, (name,)).fetchone()
                    if row is not None and not row[1]:  # else the append reports it
                        found[name] = (int(row[0]), (row[2], row[3]))
                        self._note_limits(name, *found[name])
                return found

            known = {**known, **await self.read_quick(read)}
        checked: dict[str, tuple[int, quota.Stored]] = {}
        todo = []
        for name, n in per_account.items():
            hit = known.get(name)
            if hit is None:
                continue
            account_id, stored = hit
            checked[name] = hit
            lim = quota.effective(stored, self.quota_defaults)
            if lim.storage is not None or lim.messages is not None:
                todo.append((account_id, n))
        if not todo:
            return checked
        if isinstance(source, bytes | bytearray | memoryview):
            size = len(source)
        else:
            size = os.stat(source).st_size

        def check(conn: sqlite3.Connection) -> None:
            for account_id, n in todo:
                quota.check(conn, account_id, self.quota_defaults, size * n, n)

        await self.read(check)
        return checked

    def _note_limits(self, account: str, account_id: int, stored: quota.Stored) -> None:
        """Remember an account's stored quota limits as last read (from any thread)."""
        if len(self.quota_seen) > 10_000:
            self.quota_seen = {}
        self.quota_seen[account] = (account_id, stored)

    def forget_limits(self, account: str) -> None:
        """After set_quota: the next check reads the account's limits again."""
        self.quota_seen.pop(account, None)

    def _drop_staging(self, done: asyncio.Future[tuple[int, int, int | None]], staged: str) -> None:
        if not done.cancelled() and done.exception() is None:
            fd = done.result()[0]
            if fd >= 0:
                os.close(fd)
                with self._staged_lock:
                    self._staged_fds -= 1
        _unlink_str(staged)

    # ---- MailStore ----

    async def create_account(self, account: str) -> None:
        names.validate_account(account)
        domain_dir, local_dir = names.account_path_parts(account)

        def job(tx: Tx) -> None:
            row = tx.conn.execute("SELECT id FROM accounts WHERE name = ?", (account,)).fetchone()
            if row is not None:
                tx.conn.execute("UPDATE accounts SET deleted = 0 WHERE id = ?", (row[0],))
                return
            rel = f"{domain_dir}/{local_dir}"
            home = self.mail_root / rel
            tx.hold_folders()
            if home.exists():
                self._evict(tx, home)
            cur = tx.conn.execute("INSERT INTO accounts (name, dir) VALUES (?, ?)", (account, rel))
            acct = AccountRow(int(cur.lastrowid or 0), account, rel, False, 0, [])
            tx.undo.append(lambda: maildir.remove_tree(home))
            maildir.make_folder(self.maildir_of(rel), is_root=True)
            tx.dirs.update({home, home.parent, self.mail_root})
            for name, special in DEFAULT_MAILBOXES:
                self.new_mailbox(tx, acct, name, special)
                tx.conn.execute(
                    "INSERT OR IGNORE INTO subscriptions (account_id, name) VALUES (?, ?)",
                    (acct.id, name),
                )

        await self.write(job)

    async def delete_account(self, account: str, purge: bool = False) -> None:
        def job(tx: Tx) -> None:
            row = tx.conn.execute(
                f"SELECT {ACCOUNT_COLS} FROM accounts WHERE name = ?", (account,)
            ).fetchone()
            if row is None:
                raise AccountNotFound(account)
            acct = account_from_row(row)
            if not purge:
                tx.conn.execute("UPDATE accounts SET deleted = 1 WHERE id = ?", (acct.id,))
                return
            ids = [
                r[0]
                for r in tx.conn.execute(
                    "SELECT id FROM mailboxes WHERE account_id = ?", (acct.id,)
                )
            ]
            for table in (
                "messages",
                "expunged",
                "expunge_horizon",
                "dirty_files",
                "listings",
                "maildir_sync",
                "recent",
            ):
                tx.conn.executemany(
                    f"DELETE FROM {table} WHERE mailbox_id = ?", [(i,) for i in ids]
                )
            tx.conn.execute("DELETE FROM mailboxes WHERE account_id = ?", (acct.id,))
            tx.conn.execute("DELETE FROM subscriptions WHERE account_id = ?", (acct.id,))
            tx.conn.execute("DELETE FROM accounts WHERE id = ?", (acct.id,))
            tx.hold_folders()
            home = self.mail_root / acct.dir
            tomb = self.tmp_dir / f"deleted-account-{self._unique.next()}"
            if home.exists():
                os.rename(home, tomb)
                tx.undo.append(lambda: os.rename(tomb, home))
            tx.conn.execute("INSERT OR IGNORE INTO pending_unlink (path) VALUES (?)", (str(tomb),))
            tx.after.append(lambda: self.flusher.unlink([str(tomb)]))

        await self.write(job)

    async def account(self, account: str) -> SqliteAccountStore:
        def read(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT id, deleted FROM accounts WHERE name = ?", (account,)
            ).fetchone()
            if row is None or row[1]:
                raise AccountNotFound(account)
            return int(row[0])

        # one indexed row: on this thread (see read_quick)
        return SqliteAccountStore(self, account, await self.read_quick(read))

    async def append_many(
        self,
        account_id: int,
        account: str,
        mailbox: str,
        messages: Sequence[tuple[bytes, frozenset[str], float, int]],
        replace: tuple[int, int] | None = None,
    ) -> list[AppendResult]:
        """Several messages into one mailbox, all or none (RFC 3502 MULTIAPPEND): each is staged
        in DATA/tmp (its LF form when it has one), then one writer job renames every file into
        cur/ and inserts every row in its savepoint, so the batch's one fsync round and COMMIT
        make all of them durable together; a failure (or a crash before COMMIT: the files carry
        this process's token, recovery removes them) leaves none. `replace` (mailbox id, UID):
        that message is expunged in the same job (RFC 8508 REPLACE), or nothing happens when it
        is gone (MessageNotFound)."""
        if self._closed:
            raise StoreError("store is closed")
        name = self._normalize(mailbox)
        total = sum(len(m[0]) for m in messages)

        def check(conn: sqlite3.Connection) -> None:
            octets, n = total, len(messages)
            if replace is not None:  # REPLACE frees what the old message takes
                row = conn.execute(
                    "SELECT size FROM messages WHERE mailbox_id = ? AND uid = ?", replace
                ).fetchone()
                if row is not None:
                    octets, n = octets - int(row[0]), n - 1
            quota.check(conn, account_id, self.quota_defaults, octets, n)

        await self.read(check)
        staged: list[tuple[str, str, int, int | None, frozenset[str], float, int]] = []

        def stage_all() -> None:
            for data, flags, when, tz in messages:
                unique = self._unique.next()
                path = self._tmp_prefix + unique
                lf = maildir.to_disk(data)
                os.close(maildir.stage_bytes_open(path, data if lf is None else lf, when))
                staged.append(
                    (path, unique, len(data), None if lf is None else len(lf), flags, when, tz)
                )
                self._hook("staged")

        def job(tx: Tx) -> list[AppendResult]:
            conn = tx.conn
            acct = self.account_by_id(tx, account_id)
            mb = self.selectable_mailbox(tx, account_id, name)
            old: tuple[MailboxRow, int, str, str] | None = None
            if replace is not None:
                src = mb if mb.id == replace[0] else self.mbox_by_id(conn, account_id, replace[0])
                found = conn.execute(
                    "SELECT base, info FROM messages WHERE mailbox_id = ? AND uid = ?",
                    (src.id, replace[1]),
                ).fetchone()
                if found is None:
                    raise MessageNotFound(f"UID {replace[1]} of {src.name}")
                old = (src, replace[1], found[0], found[1])
            first, modseq = self.alloc(tx, acct, mb, len(staged))
            cur = self.folder(acct.dir, mb.dir) / "cur"
            saved = time.time()
            rows = []
            results = []
            for i, (path, unique, size, disk, flags, when, tz) in enumerate(staged):
                uid = first + i
                if flags:
                    mask, kws = self.codec.encode(flags)
                    info = maildir_info(flags, self.letters(tx, acct, flags))
                else:
                    mask, kws, info = 0, "", ""
                base = maildir.make_base(unique, size, uid, disk)
                target = cur / maildir.file_name(base, info)
                os.rename(path, target)
                tx.undo.append(lambda t=target: _unlink(t))  # type: ignore[misc]
                tx.files.add(target)
                self._hook("multiappend_linked")
                rows.append(
                    (
                        mb.id,
                        uid,
                        modseq,
                        mask,
                        kws,
                        when,
                        size,
                        base,
                        info,
                        emailid_of(unique),
                        saved,
                        tz,
                    )
                )
                tx.event(acct.name, MessageAdded(acct.name, mb.id, uid, modseq))
                results.append(AppendResult(acct.name, mb.id, mb.uidvalidity, uid, modseq))
            tx.dirs.add(cur)
            conn.executemany("INSERT INTO messages VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            if old is not None:
                self.remove_messages(tx, acct, old[0], [(old[1], old[2], old[3])])
            if self.search_indexer is not None:
                tx.after.append(self.search_indexer.wake)
            return results

        def drop_staged() -> None:
            for path, *_ in staged:
                _unlink_str(path)  # renamed away when committed; else the staged copy goes

        try:
            staging = asyncio.get_running_loop().run_in_executor(self._io_pool, stage_all)
            try:
                await asyncio.shield(staging)
            except asyncio.CancelledError:
                # the caller gave up while files were being written: remove them all once done
                staging.add_done_callback(lambda _f: drop_staged())
                raise
            except OSError as e:
                raise no_room(e) from e
            return await self.writer.run(job, True)  # (appends never get the space reserve)
        finally:
            drop_staged()

    async def deliver(
        self,
        deliveries: Sequence[Delivery],
        source: MessageSource,
        delivery_id: str | None = None,
        crlf: bool = False,
    ) -> list[AppendResult]:
        now = time.time()
        targets = [
            (d.account, d.mailbox, normalize_flags(d.flags), *zoned(d.internaldate, now))
            for d in deliveries
        ]
        return await self.deliver_many(targets, source, delivery_id, crlf)

    def folder_watcher(self) -> FolderWatcher:
        """The inotify watcher of the running event loop (IDLE's watches: folder_watch.py)."""
        loop = asyncio.get_running_loop()
        w = self._watcher
        if w is None or w.loop is not loop:
            if w is not None:
                w.close()  # a store used from another loop since (tests): the old one goes
            w = self._watcher = FolderWatcher(loop)
        return w

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None
        if self.search_indexer is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.search_indexer.stop)
        self.writer.stop()
        await asyncio.get_running_loop().run_in_executor(None, self.writer.join)
        self.writer.fail_queued()
        await asyncio.get_running_loop().run_in_executor(None, self.flusher.stop)
        self.hub.close_all()
        self.feed.close()
        self._io_pool.shutdown(wait=True)
        self.writer.close()
        self._read_pool.shutdown(wait=True)
        with self._read_conns_lock:
            for conn in self._read_conns:
                conn.close()
            self._read_conns.clear()
        conn = connect_index(self.index_path)
        try:
            conn.execute("DELETE FROM writers WHERE token = ?", (self.token,))
        finally:
            conn.close()
        _unlink(self.run_dir / f"writer-{self.token}.lock")
        if self._writer_lock_fd is not None:
            os.close(self._writer_lock_fd)
            self._writer_lock_fd = None


def _small_body(source: MessageSource) -> bytes | None:
    """The bytes of a message small enough to commit with its bytes (INLINE_BODY_MAX), else None.
    A small file is read here: a read from the page cache costs less than staging a link."""
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source) if len(source) <= INLINE_BODY_MAX else None
    try:
        with open(source, "rb") as f:
            if os.fstat(f.fileno()).st_size > INLINE_BODY_MAX:
                return None
            data = f.read(INLINE_BODY_MAX + 1)
    except OSError:
        return None  # the staging path reports it
    return data if len(data) <= INLINE_BODY_MAX else None


# an account's row and its stored quota limits (quota.Stored): what the append run looks up
_ACCOUNT_AND_LIMITS = (
    f"SELECT {ACCOUNT_COLS}, q.storage, q.messages FROM accounts"
    " LEFT JOIN quotas q ON q.account_id = accounts.id WHERE name = ?"
)

_CUR_OF_MAILBOX = (
    "SELECT b.dir, a.dir FROM mailboxes b JOIN accounts a ON a.id = b.account_id WHERE b.id = ?"
)


def _message_exists(conn: sqlite3.Connection, mailbox_id: int, uid: int) -> bool:
    """For the file worker: is message `uid` of `mailbox_id` in the committed index now?"""
    row = conn.execute(
        "SELECT 1 FROM messages WHERE mailbox_id = ? AND uid = ?", (mailbox_id, uid)
    ).fetchone()
    return row is not None


_CUR_OF_MESSAGE = (
    "SELECT b.dir, a.dir FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id"
    " JOIN accounts a ON a.id = b.account_id WHERE m.mailbox_id = ? AND m.uid = ?"
)
