"""The default store: message files in per-account Maildirs, one SQLite (WAL) index for the data dir.

Writes go through one writer thread per process that groups concurrent requests into one
transaction and one fsync round (group commit); files are fsynced and linked into place, their
directories fsynced, and only then the index commits, so the index never names a missing file.
Reads use per-thread connections. See docs/store.md for the layout and the crash-safety argument.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import fcntl
import logging
import os
import queue
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from carteiro.store import maildir, names
from carteiro.store.api import (
    DEFAULT_MAILBOXES,
    AccountNotFound,
    AppendResult,
    ChangeEvent,
    ChangeSubscription,
    CopyResult,
    Delivery,
    FlagOp,
    FlagsChanged,
    MailboxChanged,
    MailboxCounts,
    MailboxExists,
    MailboxInfo,
    MailboxNotEmpty,
    MailboxNotFound,
    MaildropLock,
    MessageAdded,
    MessageMeta,
    MessagesExpunged,
    MessageSource,
    StoreError,
)
from carteiro.store.changes import ChangeHub, event_to_json
from carteiro.store.feed import CrossProcessFeed
from carteiro.store.flags import FlagCodec, apply_op, maildir_info, normalize_flags

log = logging.getLogger(__name__)
T = TypeVar("T")

INDEX_NAME = "index.sqlite"
SCHEMA_VERSION = 1
# UIDs/MODSEQs are leased in blocks recorded in each folder's metadata file, so a reindex from the
# files alone can restart above anything ever handed out (RFC 3501 2.3.1.1, RFC 7162 3.1.1).
UID_LEASE = 10_000
MODSEQ_LEASE = 1_000_000
CHANGES_KEEP = 200_000  # changes log rows kept for cross-process feeds
FILENAME_SYNC_CHUNK = 500
INLINE_STAGE_MAX = 256 * 1024
DELETED_BIT = 8
SEEN_BIT = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    dir TEXT NOT NULL,                         -- "<domain>/<local>" under DATA/mail
    deleted INTEGER NOT NULL DEFAULT 0,
    last_uidvalidity INTEGER NOT NULL DEFAULT 0,
    keywords TEXT NOT NULL DEFAULT ''          -- space-separated; position n -> Maildir letter a+n
);
CREATE TABLE IF NOT EXISTS mailboxes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,      -- never reused: event consumers key on it
    account_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    dir TEXT NOT NULL,                         -- Maildir++ folder ("" for INBOX)
    guid TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL,
    uidnext INTEGER NOT NULL,
    highestmodseq INTEGER NOT NULL,
    special_use TEXT,
    selectable INTEGER NOT NULL DEFAULT 1,
    uid_lease INTEGER NOT NULL,
    modseq_lease INTEGER NOT NULL,
    UNIQUE (account_id, name)
);
CREATE TABLE IF NOT EXISTS subscriptions (
    account_id INTEGER NOT NULL, name TEXT NOT NULL, PRIMARY KEY (account_id, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    mailbox_id INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    flags INTEGER NOT NULL,                    -- system flags bitmask (flags.BITS)
    keywords TEXT NOT NULL,                    -- sorted, space-separated
    internaldate REAL NOT NULL,
    size INTEGER NOT NULL,
    base TEXT NOT NULL,                        -- file name before ":2,"
    info TEXT NOT NULL,                        -- info letters of the file name on disk
    PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS messages_modseq ON messages (mailbox_id, modseq);
CREATE TABLE IF NOT EXISTS expunged (          -- for QRESYNC VANISHED (RFC 7162 3.2.10)
    mailbox_id INTEGER NOT NULL, uid INTEGER NOT NULL, modseq INTEGER NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT, origin TEXT NOT NULL, account TEXT NOT NULL,
    event TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS pending_unlink (path TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dirty_files (
    mailbox_id INTEGER NOT NULL, uid INTEGER NOT NULL, PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS writers (token TEXT PRIMARY KEY, pid INTEGER NOT NULL, started REAL NOT NULL);
"""


def connect_index(path: Path, readonly: bool = False) -> sqlite3.Connection:
    """A connection to the index with the pragmas every user needs (WAL, busy timeout)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=60)
    conn.execute("PRAGMA busy_timeout=60000")
    # WAL commits are durable only with synchronous=FULL (NORMAL defers the fsync to checkpoints)
    conn.execute("PRAGMA synchronous=FULL")
    if readonly:
        conn.execute("PRAGMA query_only=1")
    return conn


def init_index(path: Path) -> None:
    conn = connect_index(path)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(
            "BEGIN IMMEDIATE;"
            + SCHEMA
            + f"INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', '{SCHEMA_VERSION}');"
            + "COMMIT;"
        )
    finally:
        conn.close()


@dataclass(slots=True)
class _Acct:
    id: int
    name: str
    dir: str
    deleted: bool
    last_uidvalidity: int
    keywords: list[str]


@dataclass(slots=True)
class _Mbox:
    id: int
    account_id: int
    name: str
    dir: str
    guid: str
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    special_use: str | None
    selectable: bool
    uid_lease: int
    modseq_lease: int


_MBOX_COLS = (
    "id, account_id, name, dir, guid, uidvalidity, uidnext, highestmodseq, special_use, "
    "selectable, uid_lease, modseq_lease"
)
_ACCT_COLS = "id, name, dir, deleted, last_uidvalidity, keywords"


def _mbox(row: Sequence[Any]) -> _Mbox:
    return _Mbox(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        row[6],
        row[7],
        row[8],
        bool(row[9]),
        row[10],
        row[11],
    )


def _acct(row: Sequence[Any]) -> _Acct:
    return _Acct(row[0], row[1], row[2], bool(row[3]), row[4], row[5].split() if row[5] else [])


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


@dataclass
class _Tx:
    """What one job did inside the writer's transaction."""

    conn: sqlite3.Connection
    dirs: set[Path] = field(default_factory=set)  # to fsync before COMMIT
    files: set[Path] = field(default_factory=set)  # staged message files, fsynced with the dirs
    undo: list[Callable[[], None]] = field(default_factory=list)  # if this job rolls back
    after: list[Callable[[], None]] = field(default_factory=list)  # after COMMIT
    events: list[tuple[str, ChangeEvent]] = field(default_factory=list)

    def event(self, account: str, event: ChangeEvent) -> None:
        self.events.append((account, event))

    def rollback(self) -> None:
        for fn in reversed(self.undo):
            try:
                fn()
            except OSError:
                log.exception("undoing a file operation failed")


@dataclass
class _Job:
    fn: Callable[[_Tx], Any]
    future: concurrent.futures.Future[Any]


class _FileLock:
    """An flock(2) held by this open file description (so also exclusive within one process)."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the description drops the lock


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
        sync_threads: int = 32,
        read_threads: int = 4,
        poll_interval: float = 0.25,
        fault_hook: FaultHook | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.mail_root = self.data_dir / "mail"
        self.tmp_dir = self.data_dir / "tmp"
        self.run_dir = self.data_dir / "run"
        self.lost_dir = self.data_dir / "lost+found"
        self.index_path = self.data_dir / INDEX_NAME
        for d in (self.mail_root, self.tmp_dir, self.run_dir):
            d.mkdir(parents=True, exist_ok=True)
        init_index(self.index_path)
        self.token = secrets.token_hex(6)
        self._unique = maildir.UniqueNames(self.token)
        self._codec = FlagCodec()
        self._hook = fault_hook or (lambda _point: None)
        self._max_batch = max_batch
        self.hub = ChangeHub()
        self.listings = ListingCache()
        self._local = threading.local()
        self._read_conns: list[sqlite3.Connection] = []
        self._read_conns_lock = threading.Lock()
        self._io_pool = concurrent.futures.ThreadPoolExecutor(io_threads, "carteiro-store-io")
        self._sync_pool = concurrent.futures.ThreadPoolExecutor(sync_threads, "carteiro-store-sync")
        self._read_pool = concurrent.futures.ThreadPoolExecutor(read_threads, "carteiro-store-read")
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._done_unlinks: list[str] = []
        self._dirty_pending = True
        self._closed = False
        self.batches = 0  # committed write transactions (group commit makes this < writes)
        # announce ourselves as a writer: if we die, the next process to start cleans up after us
        self._writer_lock_fd = try_flock(self.run_dir / f"writer-{self.token}.lock")
        self._wconn = connect_index(self.index_path)
        self._wconn.execute(
            "INSERT INTO writers (token, pid, started) VALUES (?, ?, ?)",
            (self.token, os.getpid(), time.time()),
        )
        from carteiro.store.maintenance import recover

        recover(self, self._wconn)
        self.feed = CrossProcessFeed(
            self.run_dir, self.token, self.hub, self._new_read_conn, poll_interval
        )
        self._writer = threading.Thread(target=self._writer_loop, name="carteiro-store-writer")
        self._writer.daemon = True
        self._writer.start()

    # ---- paths ----

    def maildir_of(self, acct_dir: str) -> Path:
        return self.mail_root / acct_dir / "Maildir"

    def folder(self, acct_dir: str, mbox_dir: str) -> Path:
        base = self.maildir_of(acct_dir)
        return base / mbox_dir if mbox_dir else base

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

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._read_pool, self._run_read, fn, args)

    def _run_read(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        conn = self._read_conn()
        conn.execute("BEGIN")  # one snapshot for all the queries of this read
        try:
            return fn(conn, *args)
        finally:
            conn.execute("COMMIT")

    # ---- the writer: group commit ----

    async def _write(self, fn: Callable[[_Tx], T]) -> T:
        if self._closed:
            raise StoreError("store is closed")
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._queue.put(_Job(fn, future))
        return await asyncio.wrap_future(future)

    def _writer_loop(self) -> None:
        stop = False
        while not stop:
            try:
                job = self._queue.get(timeout=0.2 if self._dirty_pending else None)
            except queue.Empty:
                self._sync_filenames()
                continue
            if job is None:
                break
            batch = [job]
            while len(batch) < self._max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            try:
                self._run_batch(batch)
            except BaseException as exc:  # never leave a caller waiting
                log.exception("store writer batch failed")
                for j in batch:
                    if not j.future.done():
                        j.future.set_exception(exc)
            if self._dirty_pending and self.batches % 64 == 0:
                self._sync_filenames()  # under sustained load the idle path may never run
        self._wconn.close()

    def _run_batch(self, batch: list[_Job]) -> None:
        conn = self._wconn
        done: list[tuple[_Job, _Tx | None, Any, BaseException | None]] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for job in batch:
                tx = _Tx(conn)
                conn.execute("SAVEPOINT job")
                try:
                    result = job.fn(tx)
                    if tx.events:
                        conn.executemany(
                            "INSERT INTO changes (origin, account, event) VALUES (?, ?, ?)",
                            [(self.token, a, event_to_json(e)) for a, e in tx.events],
                        )
                    conn.execute("RELEASE job")
                    done.append((job, tx, result, None))
                except Exception as exc:
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    tx.rollback()
                    done.append((job, None, None, exc))
            if self.batches % 1000 == 999:
                conn.execute(
                    "DELETE FROM changes WHERE id <= (SELECT max(id) FROM changes) - ?",
                    (CHANGES_KEEP,),
                )
            if self._done_unlinks:
                conn.executemany(
                    "DELETE FROM pending_unlink WHERE path = ?", [(p,) for p in self._done_unlinks]
                )
                self._done_unlinks.clear()
            paths: set[Path] = set()
            for _, tx_ok, _, _ in done:
                if tx_ok is not None:
                    paths |= tx_ok.dirs | tx_ok.files
            self._hook("linked")
            # One fsync round: message files and the directories they were linked into, all in
            # parallel (the filesystem merges them into one journal commit), before COMMIT.
            if len(paths) == 1:
                maildir.fsync_dir(paths.pop())
            elif paths:
                list(self._sync_pool.map(maildir.fsync_dir, paths))
            self._hook("dirs_synced")
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for _job, tx_ok, _, _ in done:
                if tx_ok is not None:
                    tx_ok.rollback()
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        self.batches += 1
        self._hook("committed")
        by_account: dict[str, list[ChangeEvent]] = {}
        for _job, tx_ok, _result, _exc in done:
            if tx_ok is None:
                continue
            for fn in tx_ok.after:
                try:
                    fn()
                except OSError:
                    log.exception("post-commit file operation failed")
            for account, event in tx_ok.events:
                by_account.setdefault(account, []).append(event)
        for account, events in by_account.items():
            self.hub.publish(account, events)
        if by_account:
            self.feed.wake_others()
        for job, _tx, result, error in done:
            if error is not None:
                job.future.set_exception(error)
            else:
                job.future.set_result(result)

    def _sync_filenames(self) -> None:
        """Bring file-name flags in line with the index, a chunk at a time, while idle.

        File-name flags are hints for Maildir readers and for reindex; the index is the truth, so
        renames need no fsync and may lag a flag change by a fraction of a second.
        """
        conn = self._wconn
        try:
            conn.execute("BEGIN IMMEDIATE")
            rows = conn.execute(
                "SELECT d.mailbox_id, d.uid, m.flags, m.keywords, m.base, m.info, b.dir, a.dir,"
                " a.keywords FROM dirty_files d"
                " LEFT JOIN messages m ON m.mailbox_id = d.mailbox_id AND m.uid = d.uid"
                " LEFT JOIN mailboxes b ON b.id = d.mailbox_id"
                " LEFT JOIN accounts a ON a.id = b.account_id LIMIT ?",
                (FILENAME_SYNC_CHUNK,),
            ).fetchall()
            updates = []
            for mbid, uid, mask, kws, base, info, mdir, adir, akw in rows:
                if base is None or mdir is None or adir is None:
                    continue
                letters = {kw: maildir.KEYWORD_LETTERS[i] for i, kw in enumerate(akw.split()[:26])}
                want = maildir_info(self._codec.decode(mask, kws), letters)
                if want == info:
                    continue
                folder = self.folder(adir, mdir)
                src = maildir.locate(folder, base, info)
                if src is None:
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
                [(r[0], r[1]) for r in rows],
            )
            conn.execute("COMMIT")
            self._dirty_pending = len(rows) == FILENAME_SYNC_CHUNK
        except sqlite3.Error:
            log.exception("file-name flag sync failed")
            if conn.in_transaction:
                conn.execute("ROLLBACK")

    # ---- rows inside a write transaction ----

    def _acct_row(self, tx: _Tx, account: str) -> _Acct:
        row = tx.conn.execute(
            f"SELECT {_ACCT_COLS} FROM accounts WHERE name = ?", (account,)
        ).fetchone()
        if row is None or row[3]:
            raise AccountNotFound(account)
        return _acct(row)

    def _acct_by_id(self, tx: _Tx, account_id: int) -> _Acct:
        row = tx.conn.execute(
            f"SELECT {_ACCT_COLS} FROM accounts WHERE id = ?", (account_id,)
        ).fetchone()
        if row is None or row[3]:
            raise AccountNotFound(str(account_id))
        return _acct(row)

    @staticmethod
    def _mbox_named(conn: sqlite3.Connection, account_id: int, name: str) -> _Mbox | None:
        row = conn.execute(
            f"SELECT {_MBOX_COLS} FROM mailboxes WHERE account_id = ? AND name = ?",
            (account_id, name),
        ).fetchone()
        return None if row is None else _mbox(row)

    def _selectable(self, tx: _Tx, account_id: int, name: str) -> _Mbox:
        mb = self._mbox_named(tx.conn, account_id, names.normalize_mailbox_name(name))
        if mb is None or not mb.selectable:
            raise MailboxNotFound(name)
        return mb

    @staticmethod
    def _mbox_by_id(conn: sqlite3.Connection, account_id: int, mailbox_id: int) -> _Mbox:
        row = conn.execute(
            f"SELECT {_MBOX_COLS} FROM mailboxes WHERE id = ? AND account_id = ?",
            (mailbox_id, account_id),
        ).fetchone()
        if row is None:
            raise MailboxNotFound(str(mailbox_id))
        return _mbox(row)

    def _meta(self, acct: _Acct, mb: _Mbox, folder: Path | None = None) -> None:
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

    def _alloc(self, tx: _Tx, acct: _Acct, mb: _Mbox, count: int) -> tuple[int, int]:
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

    def _letters(self, tx: _Tx, acct: _Acct, flags: Iterable[str]) -> dict[str, str]:
        """keyword -> Maildir letter; assigns letters to new keywords (26 at most)."""
        new = [f for f in sorted(set(flags)) if not f.startswith("\\") and f not in acct.keywords]
        if new and len(acct.keywords) < len(maildir.KEYWORD_LETTERS):
            acct.keywords.extend(new[: len(maildir.KEYWORD_LETTERS) - len(acct.keywords)])
            tx.conn.execute(
                "UPDATE accounts SET keywords = ? WHERE id = ?", (" ".join(acct.keywords), acct.id)
            )
            maildir.write_keywords(self.maildir_of(acct.dir), acct.keywords)
        return {kw: maildir.KEYWORD_LETTERS[i] for i, kw in enumerate(acct.keywords[:26])}

    def _new_uidvalidity(self, tx: _Tx, acct: _Acct) -> int:
        value = max(int(time.time()), acct.last_uidvalidity + 1) & 0xFFFFFFFF or 1
        acct.last_uidvalidity = value
        tx.conn.execute("UPDATE accounts SET last_uidvalidity = ? WHERE id = ?", (value, acct.id))
        return value

    def _evict(self, path: Path) -> None:
        """Move an unindexed directory that is in the way to DATA/lost+found (never delete it)."""
        self.lost_dir.mkdir(exist_ok=True)
        dest = self.lost_dir / f"{int(time.time())}-{secrets.token_hex(4)}-{path.name}"
        log.warning("moving unindexed %s to %s", path, dest)
        os.rename(path, dest)

    def _new_mailbox(self, tx: _Tx, acct: _Acct, name: str, special_use: str | None) -> _Mbox:
        mbdir = names.folder_dir(name)
        path = self.folder(acct.dir, mbdir)
        if mbdir and path.exists():
            self._evict(path)
        mb = _Mbox(
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
        maildir.make_folder(path, is_root=not mbdir)
        self._meta(acct, mb)
        tx.dirs.add(path)
        tx.dirs.add(path.parent)
        tx.event(acct.name, MailboxChanged(acct.name, mb.id, "created", name))
        return mb

    def _remove_messages(
        self, tx: _Tx, acct: _Acct, mb: _Mbox, rows: list[tuple[int, str, str]]
    ) -> list[int]:
        """Delete (uid, base, info) rows of `mb`; files go after COMMIT (via pending_unlink)."""
        if not rows:
            return []
        modseq = self._alloc(tx, acct, mb, 0)[1]
        uids = [r[0] for r in rows]
        conn = tx.conn
        conn.executemany(
            "DELETE FROM messages WHERE mailbox_id = ? AND uid = ?", [(mb.id, u) for u in uids]
        )
        conn.executemany(
            "INSERT OR REPLACE INTO expunged (mailbox_id, uid, modseq) VALUES (?, ?, ?)",
            [(mb.id, u, modseq) for u in uids],
        )
        rel = f"{acct.dir}/Maildir/{mb.dir + '/' if mb.dir else ''}cur/"
        paths = [rel + maildir.file_name(base, info) for _, base, info in rows]
        conn.executemany(
            "INSERT OR IGNORE INTO pending_unlink (path) VALUES (?)", [(p,) for p in paths]
        )
        tx.after.append(lambda: self._unlink_pending(paths))
        tx.event(acct.name, MessagesExpunged(acct.name, mb.id, tuple(uids), modseq))
        return uids

    def unlink_pending_path(self, rel: str) -> None:
        """Remove one pending_unlink entry's file or tree (following a renamed Maildir file)."""
        path = self.mail_root / rel if not rel.startswith("/") else Path(rel)
        if rel.startswith("/") or path.is_dir():
            maildir.remove_tree(path)
            return
        try:
            os.unlink(path)
        except FileNotFoundError:
            parsed = maildir.parse_name(path.name)
            found = maildir.locate(path.parent.parent, parsed.base, parsed.info)
            if found is not None:
                _unlink(found)

    def _unlink_pending(self, paths: list[str]) -> None:
        for rel in paths:
            self.unlink_pending_path(rel)
        self._done_unlinks.extend(paths)

    def _drop_folder(self, tx: _Tx, acct: _Acct, mb: _Mbox) -> None:
        """Remove a mailbox row with its messages; its folder goes after COMMIT."""
        conn = tx.conn
        for table in ("messages", "expunged", "dirty_files"):
            conn.execute(f"DELETE FROM {table} WHERE mailbox_id = ?", (mb.id,))
        conn.execute("DELETE FROM mailboxes WHERE id = ?", (mb.id,))
        if mb.dir:
            path = self.folder(acct.dir, mb.dir)
            tomb = self.tmp_dir / f"deleted-{mb.guid}"
            if path.exists():
                os.rename(path, tomb)
                tx.undo.append(lambda: os.rename(tomb, path))
            conn.execute("INSERT OR IGNORE INTO pending_unlink (path) VALUES (?)", (str(tomb),))
            tx.after.append(lambda: self._unlink_pending([str(tomb)]))

    def _copy_rows(
        self, tx: _Tx, acct: _Acct, src: _Mbox, dst: _Mbox, uids: Sequence[int] | None, move: bool
    ) -> CopyResult:
        conn = tx.conn
        sql = (
            "SELECT uid, flags, keywords, internaldate, size, base, info FROM messages"
            " WHERE mailbox_id = ?"
        )
        params: tuple[Any, ...] = (src.id,)
        if uids is not None:
            sql += " AND uid IN (SELECT value FROM json_each(?))"
            params += (_json_ints(uids),)
        rows = conn.execute(sql + " ORDER BY uid", params).fetchall()
        if not rows:
            return CopyResult(dst.uidvalidity, ())
        first, modseq = self._alloc(tx, acct, dst, len(rows))
        letters = self._letters(tx, acct, [])
        src_folder = self.folder(acct.dir, src.dir)
        dst_folder = self.folder(acct.dir, dst.dir)
        inserts = []
        pairs = []
        for i, (uid, mask, kws, when, size, base, info) in enumerate(rows):
            nuid = first + i
            path = maildir.locate(src_folder, base, info)
            if path is None:
                raise StoreError(f"message file of UID {uid} in {src.name} is missing")
            nbase = maildir.make_base(self._unique.next(), size, nuid)
            ninfo = maildir_info(self._codec.decode(mask, kws), letters)
            target = dst_folder / "cur" / maildir.file_name(nbase, ninfo)
            os.link(path, target)
            tx.undo.append(lambda t=target: _unlink(t))  # type: ignore[misc]
            inserts.append((dst.id, nuid, modseq, mask, kws, when, size, nbase, ninfo))
            pairs.append((uid, nuid))
            tx.event(acct.name, MessageAdded(acct.name, dst.id, nuid, modseq))
        tx.dirs.add(dst_folder / "cur")
        conn.executemany("INSERT INTO messages VALUES (?,?,?,?,?,?,?,?,?)", inserts)
        if move:
            self._remove_messages(tx, acct, src, [(r[0], r[5], r[6]) for r in rows])
        return CopyResult(dst.uidvalidity, tuple(pairs))

    def _info(self, conn: sqlite3.Connection, mb: _Mbox) -> MailboxInfo:
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
        )

    # ---- staging message bytes ----

    def _stage(self, source: MessageSource, mtime: float) -> tuple[Path, int]:
        path = self.tmp_dir / self._unique.next()
        if isinstance(source, bytes | bytearray | memoryview):
            size = maildir.stage_bytes(str(path), bytes(source), mtime, sync=False)
        else:
            size = maildir.stage_path(str(path), os.fspath(source), mtime, sync=False)
        self._hook("staged")
        return path, size

    async def _staged(self, source: MessageSource, mtime: float) -> tuple[Path, int]:
        if isinstance(source, bytes) and len(source) <= INLINE_STAGE_MAX:
            # a small write without fsync only touches the page cache: cheaper than a thread hop
            return self._stage(source, mtime)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._io_pool, self._stage, source, mtime)

    def _deliver_job(
        self, targets: list[tuple[str, str, frozenset[str], float]], staged: Path, size: int
    ) -> Callable[[_Tx], list[AppendResult]]:
        def job(tx: _Tx) -> list[AppendResult]:
            results = []
            for account, name, flags, when in targets:
                acct = self._acct_row(tx, account)
                mb = self._selectable(tx, acct.id, name)
                uid, modseq = self._alloc(tx, acct, mb, 1)
                mask, kws = self._codec.encode(flags)
                info = maildir_info(flags, self._letters(tx, acct, flags))
                base = maildir.make_base(self._unique.next(), size, uid)
                cur = self.folder(acct.dir, mb.dir) / "cur"
                target = cur / maildir.file_name(base, info)
                os.link(staged, target)
                tx.undo.append(lambda t=target: _unlink(t))  # type: ignore[misc]
                tx.dirs.add(cur)
                tx.files.add(staged)
                tx.conn.execute(
                    "INSERT INTO messages VALUES (?,?,?,?,?,?,?,?,?)",
                    (mb.id, uid, modseq, mask, kws, when, size, base, info),
                )
                tx.event(account, MessageAdded(account, mb.id, uid, modseq))
                results.append(AppendResult(account, mb.id, mb.uidvalidity, uid, modseq))
            tx.after.append(lambda: _unlink(staged))
            return results

        return job

    async def deliver_many(
        self, targets: list[tuple[str, str, frozenset[str], float]], source: MessageSource
    ) -> list[AppendResult]:
        for _account, name, _flags, _when in targets:
            names.normalize_mailbox_name(name)
        staged, size = await self._staged(source, targets[0][3] if targets else time.time())
        try:
            return await self._write(self._deliver_job(targets, staged, size))
        except BaseException:
            _unlink(staged)
            raise

    # ---- MailStore ----

    async def create_account(self, account: str) -> None:
        names.validate_account(account)
        domain_dir, local_dir = names.account_path_parts(account)

        def job(tx: _Tx) -> None:
            row = tx.conn.execute("SELECT id FROM accounts WHERE name = ?", (account,)).fetchone()
            if row is not None:
                tx.conn.execute("UPDATE accounts SET deleted = 0 WHERE id = ?", (row[0],))
                return
            rel = f"{domain_dir}/{local_dir}"
            home = self.mail_root / rel
            if home.exists():
                self._evict(home)
            cur = tx.conn.execute("INSERT INTO accounts (name, dir) VALUES (?, ?)", (account, rel))
            acct = _Acct(int(cur.lastrowid or 0), account, rel, False, 0, [])
            tx.undo.append(lambda: maildir.remove_tree(home))
            maildir.make_folder(self.maildir_of(rel), is_root=True)
            tx.dirs.update({home, home.parent, self.mail_root})
            for name, special in DEFAULT_MAILBOXES:
                self._new_mailbox(tx, acct, name, special)
                tx.conn.execute(
                    "INSERT OR IGNORE INTO subscriptions (account_id, name) VALUES (?, ?)",
                    (acct.id, name),
                )

        await self._write(job)

    async def delete_account(self, account: str, purge: bool = False) -> None:
        def job(tx: _Tx) -> None:
            row = tx.conn.execute(
                f"SELECT {_ACCT_COLS} FROM accounts WHERE name = ?", (account,)
            ).fetchone()
            if row is None:
                raise AccountNotFound(account)
            acct = _acct(row)
            if not purge:
                tx.conn.execute("UPDATE accounts SET deleted = 1 WHERE id = ?", (acct.id,))
                return
            ids = [
                r[0]
                for r in tx.conn.execute(
                    "SELECT id FROM mailboxes WHERE account_id = ?", (acct.id,)
                )
            ]
            for table in ("messages", "expunged", "dirty_files"):
                tx.conn.executemany(
                    f"DELETE FROM {table} WHERE mailbox_id = ?", [(i,) for i in ids]
                )
            tx.conn.execute("DELETE FROM mailboxes WHERE account_id = ?", (acct.id,))
            tx.conn.execute("DELETE FROM subscriptions WHERE account_id = ?", (acct.id,))
            tx.conn.execute("DELETE FROM accounts WHERE id = ?", (acct.id,))
            home = self.mail_root / acct.dir
            tomb = self.tmp_dir / f"deleted-account-{self._unique.next()}"
            if home.exists():
                os.rename(home, tomb)
                tx.undo.append(lambda: os.rename(tomb, home))
            tx.conn.execute("INSERT OR IGNORE INTO pending_unlink (path) VALUES (?)", (str(tomb),))
            tx.after.append(lambda: self._unlink_pending([str(tomb)]))

        await self._write(job)

    async def account(self, account: str) -> SqliteAccountStore:
        def read(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT id, deleted FROM accounts WHERE name = ?", (account,)
            ).fetchone()
            if row is None or row[1]:
                raise AccountNotFound(account)
            return int(row[0])

        return SqliteAccountStore(self, account, await self._read(read))

    async def deliver(
        self, deliveries: Sequence[Delivery], source: MessageSource
    ) -> list[AppendResult]:
        now = time.time()
        targets = [
            (
                d.account,
                d.mailbox,
                normalize_flags(d.flags),
                now if d.internaldate is None else d.internaldate,
            )
            for d in deliveries
        ]
        return await self.deliver_many(targets, source)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        await asyncio.get_running_loop().run_in_executor(None, self._writer.join)
        self.hub.close_all()
        self.feed.close()
        self._io_pool.shutdown(wait=True)
        self._sync_pool.shutdown(wait=True)
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


def _json_ints(values: Iterable[int]) -> str:
    return "[" + ",".join(str(int(v)) for v in values) + "]"


class SqliteAccountStore:
    """One account of a SqliteMaildirStore (implements api.AccountStore)."""

    def __init__(self, store: SqliteMaildirStore, account: str, account_id: int) -> None:
        self._s = store
        self._account = account
        self._id = account_id

    @property
    def account(self) -> str:
        return self._account

    # ---- mailboxes ----

    async def list_mailboxes(self) -> list[MailboxInfo]:
        def read(conn: sqlite3.Connection) -> list[MailboxInfo]:
            subs = {
                r[0]
                for r in conn.execute(
                    "SELECT name FROM subscriptions WHERE account_id = ?", (self._id,)
                )
            }
            boxes = [
                _mbox(r)
                for r in conn.execute(
                    f"SELECT {_MBOX_COLS} FROM mailboxes WHERE account_id = ?", (self._id,)
                )
            ]
            boxes.sort(key=lambda m: (m.name != names.INBOX, m.name))
            return [
                MailboxInfo(
                    m.id,
                    m.name,
                    m.uidvalidity,
                    m.uidnext,
                    m.highestmodseq,
                    m.special_use,
                    m.name in subs,
                    m.selectable,
                )
                for m in boxes
            ]

        return await self._s._read(read)

    async def get_mailbox(self, name: str) -> MailboxInfo:
        norm = names.normalize_mailbox_name(name)

        def read(conn: sqlite3.Connection) -> MailboxInfo:
            mb = self._s._mbox_named(conn, self._id, norm)
            if mb is None:
                raise MailboxNotFound(name)
            return self._s._info(conn, mb)

        return await self._s._read(read)

    async def create_mailbox(self, name: str, special_use: str | None = None) -> MailboxInfo:
        norm = names.normalize_mailbox_name(name)
        s = self._s

        def job(tx: _Tx) -> MailboxInfo:
            acct = s._acct_by_id(tx, self._id)
            existing = s._mbox_named(tx.conn, self._id, norm)
            if existing is not None and existing.selectable:
                raise MailboxExists(norm)
            for parent in names.parents(norm):
                if s._mbox_named(tx.conn, self._id, parent) is None:
                    s._new_mailbox(tx, acct, parent, None)
            if existing is not None:  # a \Noselect placeholder becomes a real mailbox again
                tx.conn.execute(
                    "UPDATE mailboxes SET selectable = 1, special_use = ? WHERE id = ?",
                    (special_use, existing.id),
                )
                existing.selectable, existing.special_use = True, special_use
                tx.event(self._account, MailboxChanged(self._account, existing.id, "created", norm))
                return s._info(tx.conn, existing)
            return s._info(tx.conn, s._new_mailbox(tx, acct, norm, special_use))

        return await s._write(job)

    def _children(self, conn: sqlite3.Connection, name: str) -> list[_Mbox]:
        prefix = name + "/"
        return [
            _mbox(r)
            for r in conn.execute(
                f"SELECT {_MBOX_COLS} FROM mailboxes WHERE account_id = ? AND substr(name, 1, ?) = ?",
                (self._id, len(prefix), prefix),
            )
        ]

    def _prune(self, tx: _Tx, acct: _Acct, name: str) -> None:
        """Remove \\Noselect ancestors left without inferiors."""
        for parent in reversed(names.parents(name)):
            mb = self._s._mbox_named(tx.conn, self._id, parent)
            if mb is None or mb.selectable or self._children(tx.conn, parent):
                return
            self._s._drop_folder(tx, acct, mb)
            tx.event(self._account, MailboxChanged(self._account, mb.id, "deleted", parent))

    async def delete_mailbox(self, name: str) -> None:
        norm = names.normalize_mailbox_name(name)
        if norm == names.INBOX:
            raise StoreError("INBOX cannot be deleted")
        s = self._s

        def job(tx: _Tx) -> None:
            acct = s._acct_by_id(tx, self._id)
            mb = s._mbox_named(tx.conn, self._id, norm)
            if mb is None:
                raise MailboxNotFound(name)
            if self._children(tx.conn, norm):
                if not mb.selectable:
                    raise MailboxNotEmpty(
                        f"{norm} has inferior mailboxes and is already \\Noselect"
                    )
                # RFC 3501 6.3.4: keep the name as \Noselect so the inferiors stay reachable
                rows = tx.conn.execute(
                    "SELECT uid, base, info FROM messages WHERE mailbox_id = ? ORDER BY uid",
                    (mb.id,),
                ).fetchall()
                s._remove_messages(tx, acct, mb, rows)
                tx.conn.execute(
                    "UPDATE mailboxes SET selectable = 0, special_use = NULL WHERE id = ?", (mb.id,)
                )
                tx.event(self._account, MailboxChanged(self._account, mb.id, "deleted", norm))
                return
            s._drop_folder(tx, acct, mb)
            tx.event(self._account, MailboxChanged(self._account, mb.id, "deleted", norm))
            self._prune(tx, acct, norm)

        await s._write(job)

    async def rename_mailbox(self, old: str, new: str) -> None:
        old_n = names.normalize_mailbox_name(old)
        new_n = names.normalize_mailbox_name(new)
        s = self._s

        def job(tx: _Tx) -> None:
            acct = s._acct_by_id(tx, self._id)
            src = s._mbox_named(tx.conn, self._id, old_n)
            if src is None:
                raise MailboxNotFound(old)
            if s._mbox_named(tx.conn, self._id, new_n) is not None:
                raise MailboxExists(new_n)
            if names.is_inferior(new_n, old_n):
                raise StoreError(f"cannot rename {old_n} to its own inferior {new_n}")
            for parent in names.parents(new_n):
                if s._mbox_named(tx.conn, self._id, parent) is None:
                    s._new_mailbox(tx, acct, parent, None)
            if old_n == names.INBOX:
                # RFC 3501 6.3.5: INBOX's messages move to a new mailbox; INBOX stays, empty,
                # and its inferiors are unaffected
                dst = s._new_mailbox(tx, acct, new_n, None)
                s._copy_rows(tx, acct, src, dst, None, move=True)
                return
            home = s.maildir_of(acct.dir)
            for mb in sorted([src, *self._children(tx.conn, old_n)], key=lambda m: m.name):
                renamed = new_n + mb.name[len(old_n) :]
                newdir = names.folder_dir(renamed)
                oldpath, newpath = home / mb.dir, home / newdir
                if newpath.exists():
                    s._evict(newpath)
                old_name = mb.name
                mb.name, mb.dir = renamed, newdir
                s._meta(acct, mb, oldpath)  # the folder carries its new name before it moves
                os.rename(oldpath, newpath)
                tx.undo.append(lambda o=oldpath, n=newpath: os.rename(n, o))  # type: ignore[misc]
                tx.conn.execute(
                    "UPDATE mailboxes SET name = ?, dir = ? WHERE id = ?", (renamed, newdir, mb.id)
                )
                tx.event(
                    self._account,
                    MailboxChanged(self._account, mb.id, "renamed", renamed, old_name),
                )
            tx.dirs.add(home)
            self._prune(tx, acct, old_n)

        await s._write(job)

    async def set_subscribed(self, name: str, subscribed: bool) -> None:
        norm = names.normalize_mailbox_name(name)
        s = self._s

        def job(tx: _Tx) -> None:
            if subscribed:
                tx.conn.execute(
                    "INSERT OR IGNORE INTO subscriptions (account_id, name) VALUES (?, ?)",
                    (self._id, norm),
                )
            else:
                tx.conn.execute(
                    "DELETE FROM subscriptions WHERE account_id = ? AND name = ?", (self._id, norm)
                )
            mb = s._mbox_named(tx.conn, self._id, norm)
            tx.event(
                self._account, MailboxChanged(self._account, mb.id if mb else 0, "subscribed", norm)
            )

        await s._write(job)

    async def subscriptions(self) -> list[str]:
        def read(conn: sqlite3.Connection) -> list[str]:
            return [
                r[0]
                for r in conn.execute(
                    "SELECT name FROM subscriptions WHERE account_id = ? ORDER BY name", (self._id,)
                )
            ]

        return await self._s._read(read)

    # ---- messages ----

    async def counts(self, mailbox_id: int) -> MailboxCounts:
        def read(conn: sqlite3.Connection) -> MailboxCounts:
            self._s._mbox_by_id(conn, self._id, mailbox_id)
            n, unseen, deleted, size = conn.execute(
                "SELECT count(*), coalesce(sum((flags & 1) = 0), 0), coalesce(sum((flags & 8) != 0), 0),"
                " coalesce(sum(size), 0) FROM messages WHERE mailbox_id = ?",
                (mailbox_id,),
            ).fetchone()
            return MailboxCounts(n, unseen, deleted, size)

        return await self._s._read(read)

    async def append(
        self,
        mailbox: str,
        source: MessageSource,
        flags: Iterable[str] = (),
        internaldate: float | None = None,
    ) -> AppendResult:
        when = time.time() if internaldate is None else internaldate
        [result] = await self._s.deliver_many(
            [(self._account, mailbox, normalize_flags(flags), when)], source
        )
        return result

    async def list_messages(self, mailbox_id: int) -> list[MessageMeta]:
        return await self._s._read(self._list, mailbox_id, None)

    async def changed_since(self, mailbox_id: int, modseq: int) -> list[MessageMeta]:
        return await self._s._read(self._list, mailbox_id, modseq)

    def _list(
        self, conn: sqlite3.Connection, mailbox_id: int, modseq: int | None
    ) -> list[MessageMeta]:
        mb = self._s._mbox_by_id(conn, self._id, mailbox_id)
        if modseq is None:
            return self._s.listings.get(
                conn, mb.id, mb.uidvalidity, mb.highestmodseq, self._s._codec
            )
        rows = conn.execute(
            "SELECT uid, flags, keywords, modseq, internaldate, size FROM messages"
            " WHERE mailbox_id = ? AND modseq > ? ORDER BY uid",
            (mailbox_id, modseq),
        ).fetchall()
        return _metas(rows, self._s._codec)

    async def read_message(self, mailbox_id: int, uid: int) -> bytes:
        s = self._s

        def read(conn: sqlite3.Connection) -> tuple[Path, str, str]:
            row = conn.execute(
                "SELECT m.base, m.info, b.dir, a.dir FROM messages m"
                " JOIN mailboxes b ON b.id = m.mailbox_id JOIN accounts a ON a.id = b.account_id"
                " WHERE m.mailbox_id = ? AND m.uid = ? AND b.account_id = ?",
                (mailbox_id, uid, self._id),
            ).fetchone()
            if row is None:
                raise KeyError(uid)
            return s.folder(row[3], row[2]), row[0], row[1]

        folder, base, info = await s._read(read)

        def load() -> bytes:
            try:
                with open(folder / "cur" / maildir.file_name(base, info), "rb") as f:
                    return f.read()
            except FileNotFoundError:
                path = maildir.locate(folder, base, info)
                if path is None:
                    raise KeyError(uid) from None  # expunged meanwhile
                with open(path, "rb") as f:
                    return f.read()

        return await asyncio.get_running_loop().run_in_executor(s._io_pool, load)

    async def set_flags(
        self,
        mailbox_id: int,
        uids: Sequence[int],
        op: FlagOp,
        flags: Iterable[str],
        unchangedsince: int | None = None,
    ) -> tuple[list[MessageMeta], list[int]]:
        wanted = normalize_flags(flags)
        s = self._s
        codec = s._codec

        def job(tx: _Tx) -> tuple[list[MessageMeta], list[int]]:
            mb = s._mbox_by_id(tx.conn, self._id, mailbox_id)
            rows = tx.conn.execute(
                "SELECT uid, flags, keywords, modseq, internaldate, size FROM messages"
                " WHERE mailbox_id = ? AND uid IN (SELECT value FROM json_each(?)) ORDER BY uid",
                (mailbox_id, _json_ints(uids)),
            ).fetchall()
            changes = []
            failed = []
            for uid, mask, kws, mseq, when, size in rows:
                if unchangedsince is not None and mseq > unchangedsince:
                    failed.append(uid)  # RFC 7162 3.1.3
                    continue
                current = codec.decode(mask, kws)
                new = apply_op(current, op, wanted)
                if new != current:
                    changes.append((uid, new, when, size))
            if not changes:
                return [], failed
            acct = s._acct_by_id(tx, self._id)
            modseq = s._alloc(tx, acct, mb, 0)[1]
            s._letters(tx, acct, wanted)
            updates = []
            metas = []
            for uid, new, when, size in changes:
                mask, kws = codec.encode(new)
                updates.append((mask, kws, modseq, mailbox_id, uid))
                metas.append(MessageMeta(uid, codec.decode(mask, kws), modseq, when, size))
                tx.event(
                    self._account,
                    FlagsChanged(self._account, mailbox_id, uid, metas[-1].flags, modseq),
                )
            tx.conn.executemany(
                "UPDATE messages SET flags = ?, keywords = ?, modseq = ? WHERE mailbox_id = ? AND uid = ?",
                updates,
            )
            tx.conn.executemany(
                "INSERT OR IGNORE INTO dirty_files (mailbox_id, uid) VALUES (?, ?)",
                [(mailbox_id, c[0]) for c in changes],
            )
            s._dirty_pending = True
            return metas, failed

        return await s._write(job)

    async def _remove(
        self, mailbox_id: int, uids: Sequence[int] | None, only_deleted: bool
    ) -> list[int]:
        s = self._s

        def job(tx: _Tx) -> list[int]:
            mb = s._mbox_by_id(tx.conn, self._id, mailbox_id)
            sql = "SELECT uid, base, info FROM messages WHERE mailbox_id = ?"
            params: tuple[Any, ...] = (mailbox_id,)
            if only_deleted:
                sql += f" AND (flags & {DELETED_BIT}) != 0"
            if uids is not None:
                sql += " AND uid IN (SELECT value FROM json_each(?))"
                params += (_json_ints(uids),)
            rows = tx.conn.execute(sql + " ORDER BY uid", params).fetchall()
            if not rows:
                return []
            return s._remove_messages(tx, s._acct_by_id(tx, self._id), mb, rows)

        return await s._write(job)

    async def expunge(self, mailbox_id: int, uids: Sequence[int] | None = None) -> list[int]:
        return await self._remove(mailbox_id, uids, only_deleted=True)

    async def delete_messages(self, mailbox_id: int, uids: Sequence[int]) -> list[int]:
        return await self._remove(mailbox_id, uids, only_deleted=False)

    async def _copy(
        self, src_mailbox_id: int, uids: Sequence[int], dst: str, move: bool
    ) -> CopyResult:
        norm = names.normalize_mailbox_name(dst)
        s = self._s

        def job(tx: _Tx) -> CopyResult:
            src = s._mbox_by_id(tx.conn, self._id, src_mailbox_id)
            target = s._selectable(tx, self._id, norm)
            if target.id == src.id:
                target = src  # one row object, so UID/MODSEQ allocation stays consistent
            acct = s._acct_by_id(tx, self._id)
            return s._copy_rows(tx, acct, src, target, uids, move)

        return await s._write(job)

    async def copy(self, src_mailbox_id: int, uids: Sequence[int], dst: str) -> CopyResult:
        return await self._copy(src_mailbox_id, uids, dst, move=False)

    async def move(self, src_mailbox_id: int, uids: Sequence[int], dst: str) -> CopyResult:
        return await self._copy(src_mailbox_id, uids, dst, move=True)

    # ---- feed, lock ----

    def subscribe(self) -> ChangeSubscription:
        sub = self._s.hub.subscribe(self._account)
        self._s.feed.ensure_listening()
        return sub

    def try_lock_maildrop(self) -> MaildropLock | None:
        domain_dir, local_dir = names.account_path_parts(self._account)
        home = self._s.mail_root / domain_dir / local_dir
        home.mkdir(parents=True, exist_ok=True)
        fd = try_flock(home / "maildrop.lock")
        return None if fd is None else _FileLock(fd)


_SELECT_META = "SELECT uid, flags, keywords, modseq, internaldate, size FROM messages"


@dataclass
class _Listing:
    uidvalidity: int
    highestmodseq: int
    metas: list[MessageMeta]


class ListingCache:
    """Per-mailbox message lists kept between SELECTs, refreshed incrementally by MODSEQ.

    Every change to a mailbox raises its HIGHESTMODSEQ (appends, flag changes, expunges, from any
    process), so a cached list is current when HIGHESTMODSEQ is unchanged, and otherwise needs only
    the rows with a greater MODSEQ and the UIDs expunged since (the expunged table). A message
    count check catches anything else (a reindex) and falls back to a full load.
    """

    def __init__(self, max_messages: int = 1_000_000) -> None:
        self._lock = threading.Lock()
        self._entries: dict[int, _Listing] = {}  # insertion order = LRU order
        self._max = max_messages
        self.hits = self.refreshes = self.loads = 0

    def get(
        self,
        conn: sqlite3.Connection,
        mailbox_id: int,
        uidvalidity: int,
        hms: int,
        codec: FlagCodec,
    ) -> list[MessageMeta]:
        with self._lock:
            entry = self._entries.pop(mailbox_id, None)
        if entry is not None and entry.uidvalidity == uidvalidity and entry.highestmodseq == hms:
            self.hits += 1
            metas = entry.metas
        elif entry is not None and entry.uidvalidity == uidvalidity and entry.highestmodseq < hms:
            metas = self._refresh(conn, mailbox_id, entry, codec)
        else:
            self.loads += 1
            rows = conn.execute(_SELECT_META + " WHERE mailbox_id = ? ORDER BY uid", (mailbox_id,))
            metas = _metas(rows.fetchall(), codec)
        with self._lock:
            self._entries[mailbox_id] = _Listing(uidvalidity, hms, metas)
            total = sum(len(e.metas) for e in self._entries.values())
            while total > self._max and len(self._entries) > 1:
                oldest = next(iter(self._entries))
                total -= len(self._entries.pop(oldest).metas)
        return list(metas)  # callers own their copy

    def _refresh(
        self, conn: sqlite3.Connection, mailbox_id: int, entry: _Listing, codec: FlagCodec
    ) -> list[MessageMeta]:
        changed = _metas(
            conn.execute(
                _SELECT_META + " WHERE mailbox_id = ? AND modseq > ? ORDER BY uid",
                (mailbox_id, entry.highestmodseq),
            ).fetchall(),
            codec,
        )
        gone = {
            r[0]
            for r in conn.execute(
                "SELECT uid FROM expunged WHERE mailbox_id = ? AND modseq > ?",
                (mailbox_id, entry.highestmodseq),
            )
        }
        by_uid = {m.uid: m for m in changed}
        last = entry.metas[-1].uid if entry.metas else 0
        out = [by_uid.pop(m.uid, m) for m in entry.metas if m.uid not in gone]
        out.extend(m for m in changed if m.uid > last and m.uid in by_uid)
        (count,) = conn.execute(
            "SELECT count(*) FROM messages WHERE mailbox_id = ?", (mailbox_id,)
        ).fetchone()
        if count != len(out) or by_uid.keys() - {m.uid for m in changed if m.uid > last}:
            self.loads += 1
            rows = conn.execute(_SELECT_META + " WHERE mailbox_id = ? ORDER BY uid", (mailbox_id,))
            return _metas(rows.fetchall(), codec)
        self.refreshes += 1
        return out


def _metas(rows: list[Any], codec: FlagCodec) -> list[MessageMeta]:
    """MessageMeta objects for (uid, flags, keywords, modseq, internaldate, size) rows, fast.

    The frozen dataclass __init__ costs ~5 object.__setattr__ calls per object; setting the slots
    through their descriptors directly is the same thing without the per-call lookups.
    """
    new = object.__new__
    cls = MessageMeta
    slots = vars(cls)
    set_uid = slots["uid"].__set__
    set_flags = slots["flags"].__set__
    set_modseq = slots["modseq"].__set__
    set_date = slots["internaldate"].__set__
    set_size = slots["size"].__set__
    decode = codec.decode
    out: list[MessageMeta] = []
    append = out.append
    for uid, mask, kws, modseq, when, size in rows:
        m = new(cls)
        set_uid(m, uid)
        set_flags(m, decode(mask, kws))
        set_modseq(m, modseq)
        set_date(m, when)
        set_size(m, size)
        append(m)
    return out
