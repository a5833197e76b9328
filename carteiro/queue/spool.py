"""The durable outbound spool: envelopes, per-recipient state and small messages in SQLite
(DATA/queue/queue.sqlite, WAL, synchronous=FULL); messages over INLINE_MAX in DATA/queue/msg/ID.

enqueue() returns only once everything is on disk; concurrent callers share one SQLite commit (and
one directory fsync for big messages): group commit, so a small message costs a share of one fsync.
Recipient state changes go through the same committer, so a recorded delivery is durable before
the worker moves on. Never sends anything: the worker (worker.py) does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import random
import shutil
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from carteiro.queue import spool_db
from carteiro.queue.api import Envelope
from carteiro.queue.model import QueuedMessage, RecipientState
from carteiro.queue.rewrite import AddressMap
from carteiro.store.api import DELIVERY_ID_KEEP, MessageSource, StorageFull

log = logging.getLogger("carteiro.queue")

Signer = Callable[[bytes], bytes]
"""Returns header fields to prepend (a DKIM-Signature), or b"" when it has no key for the message."""

Op = Callable[[sqlite3.Connection], None]

_ID_ALPHABET = "0123456789BCDFGHJKLMNPQRSTVWXYZ"  # no vowels: ids never spell words
_ID_RANDOM = random.Random(os.urandom(16))

DEDUPE_KEEP = DELIVERY_ID_KEEP  # seconds a dedupe key is remembered (as the store's delivery ids)
INLINE_MAX = 128 * 1024  # messages up to this size are stored in the index, not as files
REWRITE_HEAD = 256 * 1024  # [canonical] rewrites header sections up to this size
CACHE_BUDGET = 64 * 1024 * 1024  # bytes of message content kept in memory for the worker
LAZY_DELAY = 1.0  # seconds a deferral record waits for a durable commit to ride on


def _base31(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, d = divmod(n, len(_ID_ALPHABET))
        out.append(_ID_ALPHABET[d])
    return "".join(reversed(out))


def new_queue_id(now: float | None = None) -> str:
    """Time-ordered and unique: 9 chars of milliseconds, 5 random (like Postfix's long ids)."""
    ms = int((time.time() if now is None else now) * 1000)
    return _base31(ms, 9) + _base31(_ID_RANDOM.getrandbits(32), 5)


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message the worker creates (a DSN), committed together with a state change."""

    envelope: Envelope
    data: bytes
    origin: str = "dsn"


def no_room(e: BaseException) -> StorageFull | None:
    """SQLite's SQLITE_FULL ("database or disk is full") and an OSError with ENOSPC or EDQUOT,
    as the StorageFull the servers answer with their "insufficient storage" codes."""
    if isinstance(e, sqlite3.OperationalError) and e.sqlite_errorcode == sqlite3.SQLITE_FULL:
        return StorageFull(f"queue index: {e}")
    return StorageFull.from_error(e)


def _as_storage_full(e: Exception) -> Exception:
    return no_room(e) or e


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _settle(
    fut: asyncio.Future[list[Exception | None]],
    result: list[Exception | None] | None,
    error: BaseException | None,
) -> None:
    if fut.done():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        assert result is not None
        fut.set_result(result)


class _Committer:
    """Runs batches of SQLite ops in one transaction on the spool's DB thread (group commit).

    Two kinds of change: `submit` (durable before it returns: an enqueue, a delivery, a bounce)
    and `submit_later` (a deferral: the attempt count, the next try and the last error). A
    deferral is not a promise to anyone: lost in a crash, the recipient is simply tried again at
    the restart. So it gets no commit (no fsync) of its own: it rides on the next durable commit,
    or is committed LAZY_DELAY seconds later when none comes. Order is kept: a later change of
    the same message always commits after (or with) it.
    """

    def __init__(self, spool: FileSpool) -> None:
        self._spool = spool
        self._pending: list[tuple[list[Op], bool, asyncio.Future[None] | None]] = []
        self._durable = 0  # how many of _pending wait for their commit
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._force = False
        self.batches = 0
        self.ops = 0

    async def submit(self, ops: list[Op], dirsync: bool = False) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((ops, dirsync, fut))
        self._durable += 1
        self._start()
        await fut

    def submit_later(self, ops: list[Op]) -> None:
        """Commit `ops` with the next durable change, or within LAZY_DELAY seconds."""
        self._pending.append((ops, False, None))
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(LAZY_DELAY, self._timeout)

    async def flush(self) -> None:
        """Commit everything pending now (the spool is closing; tests)."""
        while self._pending or (self._task is not None and not self._task.done()):
            if self._task is not None and not self._task.done():
                await asyncio.shield(self._task)
                continue
            self._force = True
            self._start()

    def _timeout(self) -> None:
        self._timer = None
        if self._pending:
            self._force = True
            self._start()

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending and (self._durable or self._force):
            self._force = False
            batch, self._pending = self._pending, []
            self._durable = 0
            try:
                errors = await self._run_commit(loop, batch)
            except BaseException as e:  # the commit itself failed: nobody's change is durable
                failure = _as_storage_full(e) if isinstance(e, Exception) else RuntimeError(str(e))
                for _, _, fut in batch:
                    if fut is None:
                        log.warning("queue: a deferral record was lost: %s", failure)
                    elif not fut.done():
                        fut.set_exception(failure)
                if not isinstance(e, Exception):
                    raise
                continue
            self.batches += 1
            self.ops += len(batch)
            for (_, _, fut), err in zip(batch, errors, strict=True):
                if fut is None:
                    if err is not None and no_room(err) is not None:
                        log.warning("queue: a deferral record was not kept: %s", err)
                elif fut.done():
                    continue
                elif err is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(_as_storage_full(err))
        if self._pending and self._timer is None:
            self._timer = loop.call_later(LAZY_DELAY, self._timeout)

    def _run_commit(
        self,
        loop: asyncio.AbstractEventLoop,
        batch: list[tuple[list[Op], bool, asyncio.Future[None] | None]],
    ) -> asyncio.Future[list[Exception | None]]:
        """_commit on the DB thread; its result comes back with one call_soon_threadsafe
        (run_in_executor chains a second future to the first: ~10 us more per commit)."""
        done: asyncio.Future[list[Exception | None]] = loop.create_future()

        def work() -> None:
            try:
                errors = self._commit(batch)
            except BaseException as e:
                loop.call_soon_threadsafe(_settle, done, None, e)
            else:
                loop.call_soon_threadsafe(_settle, done, errors, None)

        self._spool._executor.submit(work)
        return done

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _commit(
        self, batch: list[tuple[list[Op], bool, asyncio.Future[None] | None]]
    ) -> list[Exception | None]:
        db = self._spool._db
        if any(dirsync for _, dirsync, _ in batch):
            # One directory fsync makes every new file name in this batch durable.
            _fsync_dir(self._spool.msg_dir)
        errors: list[Exception | None] = []
        db.execute("BEGIN IMMEDIATE")
        try:
            for i, (ops, _, _) in enumerate(batch):
                db.execute(f"SAVEPOINT s{i}")
                try:
                    for op in ops:
                        op(db)
                except Exception as e:
                    if not db.in_transaction:
                        # SQLite rolled the whole transaction back itself (it may on
                        # SQLITE_FULL or an I/O error): nobody's change in the batch is kept
                        raise
                    if no_room(e) is None:  # no room: the caller hears it and logs it
                        log.exception("queue: a state change failed and was rolled back")
                    db.execute(f"ROLLBACK TO s{i}")
                    errors.append(e)
                else:
                    errors.append(None)
                db.execute(f"RELEASE s{i}")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return errors


class FileSpool:
    """Implements the `Spool` Protocol (carteiro/queue/api.py) and the worker's durable records."""

    def __init__(
        self,
        root: Path,
        *,
        signer: Signer | None = None,
        clock: Callable[[], float] = time.time,
        inline_max: int = INLINE_MAX,
        rewriter: AddressMap | None = None,
    ) -> None:
        self.root = Path(root)
        # [canonical]: our users' outbound addresses rewritten before signing (rewrite.py)
        self.rewriter = rewriter if rewriter else None
        self.msg_dir = self.root / "msg"
        self.db_path = self.root / "queue.sqlite"
        self.signer = signer
        self.clock = clock
        self.inline_max = inline_max
        self.messages: dict[str, QueuedMessage] = {}
        self.on_new: Callable[[QueuedMessage], None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="queue-db")
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="queue-read")
        self._committer = _Committer(self)
        self._db: sqlite3.Connection
        self._rdb: sqlite3.Connection | None = None
        self._opened = False
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._cache_size = 0

    # ---- lifecycle --------------------------------------------------------------------------

    async def open(self) -> list[QueuedMessage]:
        """Create or recover the spool; returns the queued messages (also in `self.messages`)."""
        loop = asyncio.get_running_loop()
        msgs = await loop.run_in_executor(self._executor, self._open_sync)
        self.messages = {m.id: m for m in msgs}
        self._opened = True
        return msgs

    def _open_sync(self) -> list[QueuedMessage]:
        self.msg_dir.mkdir(parents=True, exist_ok=True)
        self._db = spool_db.connect(self.db_path)
        msgs = spool_db.load_all(self._db)
        on_disk = {m.id for m in msgs if not m.inline}
        # Crash recovery: a file without a row was never acknowledged; a row without its file
        # cannot be delivered (someone removed it by hand).
        for entry in os.scandir(self.msg_dir):
            if entry.name not in on_disk:
                log.info("queue: removing unacknowledged file %s", entry.name)
                os.unlink(entry.path)
        incoming = (
            self.root / "incoming"
        )  # our own scratch copies (pickup, rewrite) left by a crash
        if incoming.is_dir():
            for entry in os.scandir(incoming):
                if entry.name.startswith(("pickup-", "rewrite-")):
                    os.unlink(entry.path)
        tmp = self.root / "tmp"  # scratch files that local deliveries of older versions left
        if tmp.is_dir():
            for entry in os.scandir(tmp):
                os.unlink(entry.path)
        kept = []
        for m in msgs:
            if m.inline or (self.msg_dir / m.id).exists():
                kept.append(m)
            else:
                log.error("queue: %s has no message file; dropping it", m.id)
                spool_db.delete(self._db, m.id)
        return kept

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        if self._opened:
            await self._committer.flush()
            self._committer.close()
            await loop.run_in_executor(self._executor, self._db.close)
            self._opened = False
        if self._rdb is not None:
            await loop.run_in_executor(self._reader, self._rdb.close)
            self._rdb = None
        self._executor.shutdown(wait=True)
        self._reader.shutdown(wait=True)
        self._cache.clear()
        self._cache_size = 0

    # ---- the in-memory copy of small messages -----------------------------------------------

    def _cache_put(self, msg_id: str, data: bytes) -> None:
        if len(data) > self.inline_max:
            return
        self._cache[msg_id] = data
        self._cache_size += len(data)
        while self._cache_size > CACHE_BUDGET and self._cache:
            _, old = self._cache.popitem(last=False)
            self._cache_size -= len(old)

    def _cache_drop(self, msg_id: str) -> None:
        data = self._cache.pop(msg_id, None)
        if data is not None:
            self._cache_size -= len(data)

    # ---- enqueue ----------------------------------------------------------------------------

    def path(self, msg_id: str) -> Path:
        return self.msg_dir / msg_id

    def _write_file(self, dst: Path, data: bytes) -> None:
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
        finally:
            os.close(fd)

    def _prepare(
        self, msg_id: str, source: MessageSource, sign: bool
    ) -> tuple[int, bytes, bytes | None]:
        """Put big messages at msg/ID (fsynced); read small ones. Returns (size, prefix,
        content when it goes inline). Runs in a thread when it does I/O or signs."""
        data: bytes | None = None
        if isinstance(source, bytes | bytearray | memoryview):
            data = bytes(source)
            size = len(data)
            if size > self.inline_max:
                self._write_file(self.path(msg_id), data)
        else:
            src = Path(os.fspath(source))
            size = os.stat(src).st_size
            if size <= self.inline_max:
                data = src.read_bytes()
                size = len(data)
            else:
                dst = self.path(msg_id)
                try:
                    os.link(src, dst)  # the file is never modified, by us or by the store
                except OSError:
                    shutil.copyfile(src, dst)
                fd = os.open(dst, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        prefix = b""
        if sign and self.signer is not None:
            content = data if data is not None else self.path(msg_id).read_bytes()
            try:
                prefix = self.signer(content)
            except Exception:
                log.exception("queue: DKIM signing of %s failed; sending it unsigned", msg_id)
        return size, prefix, data if size <= self.inline_max else None

    async def _prepare_async(
        self, msg_id: str, source: MessageSource, sign: bool
    ) -> tuple[int, bytes, bytes | None]:
        small_bytes = (
            isinstance(source, bytes | bytearray | memoryview) and len(source) <= self.inline_max
        )
        # A signer may tell cheaply whether it would sign at all (`signs`: the author's domain
        # has a key, a header read): a small message it would not sign skips the signing thread.
        signs: Callable[[bytes], bool] | None = getattr(self.signer, "signs", None)
        if small_bytes and sign and signs is not None:
            assert isinstance(source, bytes | bytearray | memoryview)
            sign = signs(bytes(source))
        if small_bytes and not (sign and self.signer is not None):
            return self._prepare(msg_id, source, sign)  # no I/O, no CPU to speak of
        try:
            return await asyncio.to_thread(self._prepare, msg_id, source, sign)
        except OSError as e:
            self._unlink_quietly(msg_id)  # what was written before the disk filled up
            full = no_room(e)
            if full is None:
                raise
            raise full from e

    def _new_message(
        self, msg_id: str, envelope: Envelope, size: int, prefix: bytes, origin: str, inline: bool
    ) -> QueuedMessage:
        now = self.clock()
        rcpts = [
            RecipientState(
                idx=i,
                address=r.address,
                notify=tuple(r.notify),
                orcpt=r.orcpt,
                next_try=now,
                headers=r.headers if envelope.verp else b"",
            )
            for i, r in enumerate(envelope.recipients)
        ]
        return QueuedMessage(
            id=msg_id,
            mail_from=envelope.mail_from,
            recipients=rcpts,
            size=size,
            arrival=now,
            ret=envelope.ret,
            envid=envelope.envid,
            body=envelope.body,
            smtputf8=envelope.smtputf8,
            requiretls=envelope.requiretls,
            auth_user=envelope.auth_user,
            prefix=prefix,
            origin=origin,
            inline=inline,
            verp=envelope.verp,
        )

    @staticmethod
    def _should_sign(envelope: Envelope, origin: str) -> bool:
        # Sign only what our own users or trusted networks sent, and our own reports: never a
        # stranger's message that merely claims one of our domains in From:.
        return envelope.auth_user is not None or envelope.trusted or origin == "dsn"

    async def enqueue(
        self, envelope: Envelope, source: MessageSource, dedupe_key: str | None = None
    ) -> str:
        return await self.enqueue_as(envelope, source, origin="", dedupe_key=dedupe_key)

    async def enqueue_as(
        self,
        envelope: Envelope,
        source: MessageSource,
        origin: str = "",
        dedupe_key: str | None = None,
    ) -> str:
        if not envelope.recipients:
            raise ValueError("an envelope needs at least one recipient")
        if not self._opened:
            raise RuntimeError("the spool is not open")
        rewritten: Path | None = None
        if self.rewriter is not None and envelope.trusted and origin != "dsn":
            envelope, source, rewritten = await asyncio.to_thread(
                self._rewrite, self.rewriter, envelope, source
            )
        try:
            return await self._enqueue(envelope, source, origin, dedupe_key)
        finally:
            if rewritten is not None:
                rewritten.unlink(missing_ok=True)

    def _rewrite(
        self, rw: AddressMap, envelope: Envelope, source: MessageSource
    ) -> tuple[Envelope, MessageSource, Path | None]:
        """The envelope and the message with [canonical] applied. A file source gets a
        rewritten copy under root/incoming (returned third, for the caller to remove)."""
        env = dataclasses.replace(
            envelope,
            mail_from=rw.map(envelope.mail_from),
            recipients=tuple(
                dataclasses.replace(r, address=rw.map(r.address)) for r in envelope.recipients
            ),
        )
        if isinstance(source, bytes | bytearray | memoryview):
            return env, rw.message(bytes(source)), None
        src = Path(os.fspath(source))
        with open(src, "rb") as f:
            head = f.read(REWRITE_HEAD)
            new_head = rw.message(head) if b"\r\n\r\n" in head else head
            if new_head == head:
                return env, source, None
            incoming = self.root / "incoming"
            incoming.mkdir(parents=True, exist_ok=True, mode=0o700)
            dst = incoming / f"rewrite-{os.urandom(10).hex()}"
            with open(dst, "wb") as out:
                out.write(new_head)
                shutil.copyfileobj(f, out, 1 << 20)
        return env, dst, dst

    async def _enqueue(
        self,
        envelope: Envelope,
        source: MessageSource,
        origin: str,
        dedupe_key: str | None,
    ) -> str:
        msg_id = new_queue_id()
        sign = self._should_sign(envelope, origin)
        size, prefix, data = await self._prepare_async(msg_id, source, sign)
        msg = self._new_message(msg_id, envelope, size, prefix, origin, data is not None)
        queued_before: list[str] = []

        def insert(db: sqlite3.Connection) -> None:
            if dedupe_key is None:
                spool_db.insert(db, msg, data)
                return
            before = spool_db.insert_once(db, msg, data, dedupe_key, DEDUPE_KEEP)
            if before is not None:
                queued_before.append(before)

        try:
            await self._committer.submit([insert], dirsync=data is None)
        except BaseException:
            self._unlink_quietly(msg_id)
            raise
        if queued_before:  # a retry of a message already queued: nothing more to send
            self._unlink_quietly(msg_id)
            log.info("queue: %s again (a retry): not queued twice", queued_before[0])
            return queued_before[0]
        self.messages[msg_id] = msg
        if data is not None:
            self._cache_put(msg_id, data)
        log.info(
            "queue: %s from=<%s> size=%d nrcpt=%d%s",
            msg_id,
            envelope.mail_from,
            size,
            len(envelope.recipients),
            f" origin={origin}" if origin else "",
        )
        if self.on_new is not None:
            self.on_new(msg)
        return msg_id

    def _unlink_quietly(self, msg_id: str) -> None:
        try:
            os.unlink(self.path(msg_id))
        except FileNotFoundError:
            pass

    # ---- the worker's records ---------------------------------------------------------------

    async def record(
        self,
        msg: QueuedMessage,
        recipients: Sequence[RecipientState],
        new: Sequence[NewMessage] = (),
        *,
        deferral: bool = False,
    ) -> list[QueuedMessage]:
        """Durably store new states of some of `msg`'s recipients, plus new messages (DSNs), in
        one transaction; then apply them in memory. Returns the new messages.

        `deferral`: the states only say "not yet, try again later" (nothing delivered, bounced
        or created): they are applied now and committed with the next durable change (see
        _Committer), as Postfix's qmgr does not wait for its defer log either."""
        if deferral:
            if new or any(r.state != "pending" for r in recipients):
                raise ValueError("a deferral record has only pending recipients, no new mail")
            if not msg.deleted and recipients:
                # the DB thread reads its own copies: the worker may change the states in
                # memory (a retry) before they are committed
                saved = [r.copy() for r in recipients]
                states = [r.copy() for r in recipients]
                msg_id = msg.id
                self._committer.submit_later(
                    [lambda db: spool_db.save_recipients(db, msg_id, saved)]
                )
                by_idx = {r.idx: r for r in states}
                msg.recipients = [by_idx.get(r.idx, r) for r in msg.recipients]
            return []
        created: list[tuple[QueuedMessage, bytes | None]] = []
        for nm in new:
            msg_id = new_queue_id()
            sign = self._should_sign(nm.envelope, nm.origin)
            size, prefix, data = await self._prepare_async(msg_id, nm.data, sign)
            m = self._new_message(msg_id, nm.envelope, size, prefix, nm.origin, data is not None)
            created.append((m, data))
        states = [r.copy() for r in recipients]
        ops: list[Op] = []
        if not msg.deleted and states:
            ops.append(lambda db: spool_db.save_recipients(db, msg.id, states))
        for m, data in created:
            ops.append(lambda db, m=m, data=data: spool_db.insert(db, m, data))  # type: ignore[misc]
        try:
            await self._committer.submit(ops, dirsync=any(d is None for _, d in created))
        except BaseException:
            for m, _ in created:
                self._unlink_quietly(m.id)
            raise
        by_idx = {r.idx: r for r in states}
        msg.recipients = [by_idx.get(r.idx, r) for r in msg.recipients]
        for m, data in created:
            self.messages[m.id] = m
            if data is not None:
                self._cache_put(m.id, data)
            log.info("queue: %s from=<> nrcpt=%d origin=%s", m.id, len(m.recipients), m.origin)
            if self.on_new is not None:
                self.on_new(m)
        return [m for m, _ in created]

    async def remove(self, msg: QueuedMessage) -> None:
        """Forget a finished (or deleted) message: the row first, then its file.

        Removing the rows is also how a final delivery is recorded (nothing left to send).
        """
        await self._committer.submit([lambda db: spool_db.delete(db, msg.id)])
        self.messages.pop(msg.id, None)
        self._cache_drop(msg.id)
        if not msg.inline:
            await asyncio.to_thread(self._unlink_quietly, msg.id)

    async def set_held(self, msg: QueuedMessage, held: bool) -> None:
        await self._committer.submit([lambda db: spool_db.set_held(db, msg.id, held)])
        msg.held = held

    async def save(self, msgs: Iterable[QueuedMessage]) -> None:
        """Store the current recipient states of whole messages (flush / retry)."""
        snap = [(m.id, [r.copy() for r in m.recipients]) for m in msgs]
        await self._committer.submit(
            [lambda db, i=i, rs=rs: spool_db.save_recipients(db, i, rs) for i, rs in snap]  # type: ignore[misc]
        )

    async def sync(self) -> None:
        """Commit the deferral records held back (record(deferral=True)) now."""
        await self._committer.flush()

    def _read_body(self, msg_id: str) -> bytes:
        if self._rdb is None:
            self._rdb = spool_db.connect(self.db_path)
        data = spool_db.load_body(self._rdb, msg_id)
        if data is None:
            raise FileNotFoundError(f"queue: no content for {msg_id}")
        return data

    async def content(self, msg: QueuedMessage) -> bytes:
        """The stored bytes (without our prefix)."""
        data = self._cache.get(msg.id)
        if data is not None:
            return data
        loop = asyncio.get_running_loop()
        if msg.inline:
            data = await loop.run_in_executor(self._reader, self._read_body, msg.id)
            self._cache_put(msg.id, data)
            return data
        return await asyncio.to_thread(self.path(msg.id).read_bytes)

    async def read(self, msg: QueuedMessage) -> bytes:
        """What goes on the wire: our prefix (DKIM-Signature) and the stored bytes."""
        return msg.prefix + await self.content(msg)

    @property
    def commit_stats(self) -> tuple[int, int]:
        """(transactions, changes): how well group commit is batching."""
        return self._committer.batches, self._committer.ops
