"""One account of the default store (api.AccountStore): what each mailbox operation does, as
reads and writer jobs over the store's index helpers.

It owns no connection, thread or path of its own: everything goes through the store's public
methods (AccountBackend below, implemented by sqlite_maildir.SqliteMaildirStore), so it never
touches the writer, the file worker or the layout on disk directly.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

from carteiro.mime.sortkeys import SortFields
from carteiro.store import maildir, names, quota, search_index
from carteiro.store.api import (
    DELETED,
    QUOTA_WARN,
    AppendResult,
    ChangeSubscription,
    CopyResult,
    FlagOp,
    FlagsChanged,
    FolderWatch,
    IndexTerm,
    InternalDate,
    MailboxChanged,
    MailboxCounts,
    MailboxDelta,
    MailboxExists,
    MailboxInfo,
    MailboxNotEmpty,
    MailboxNotFound,
    MaildropLock,
    MessageIds,
    MessageMeta,
    MessageSource,
    Quota,
    QuotaLimits,
    StoreError,
    TermHits,
    UidFlags,
    zoned,
)
from carteiro.store.changes import ChangeHub
from carteiro.store.feed import CrossProcessFeed
from carteiro.store.flags import FlagCodec, apply_op, normalize_flags
from carteiro.store.folder_watch import FolderWatcher
from carteiro.store.index import (
    MAILBOX_COLS,
    AccountRow,
    MailboxRow,
    emailid_of_base,
    json_ints,
    mailbox_from_row,
    mailboxid,
)
from carteiro.store.listing import SELECT_ROWS, Listing, ListingCache, metas_from_rows
from carteiro.store.locks import FileLock, try_flock
from carteiro.store.writer import Tx

T = TypeVar("T")


class _Due:
    """A read's answer when the folder changed behind the store: scan first, then read again."""


_DUE = _Due()

DELETED_BIT = 8


class AccountBackend(Protocol):
    """What the account facade uses of its store (sqlite_maildir.SqliteMaildirStore). A protocol,
    so that this module does not import the module that builds it."""

    quota_defaults: QuotaLimits
    quota_seen: dict[str, tuple[int, tuple[int | None, int | None]]]
    codec: FlagCodec
    listings: ListingCache
    hub: ChangeHub
    feed: CrossProcessFeed
    mail_root: Path

    async def read(self, fn: Callable[..., T], *args: Any) -> T: ...

    async def read_quick(self, fn: Callable[..., T], *args: Any) -> T: ...

    async def write(self, fn: Callable[[Tx], T], durable: bool = True) -> T: ...

    async def run_io(self, fn: Callable[..., T], *args: Any) -> T: ...

    recent_claims: dict[int, int]
    fresh_appends: dict[int, tuple[int, int, float]]
    deleted_hints: set[int]

    def claim_recent_later(self, mailbox_id: int, up_to: int) -> None: ...

    def forget_limits(self, account: str) -> None: ...

    async def deliver_many(
        self,
        targets: list[tuple[str, str, frozenset[str], float, int]],
        source: MessageSource,
        delivery_id: str | None = None,
    ) -> list[AppendResult]: ...

    async def append_many(
        self,
        account_id: int,
        account: str,
        mailbox: str,
        messages: Sequence[tuple[bytes, frozenset[str], float, int]],
        replace: tuple[int, int] | None = None,
    ) -> list[AppendResult]: ...

    def listing(
        self, conn: sqlite3.Connection, mb: MailboxRow, force_publish: bool = False
    ) -> Listing: ...

    def folder(self, acct_dir: str, mbox_dir: str) -> Path: ...

    def cur_dir(self, acct_dir: str, mbox_dir: str) -> str: ...

    def mbox_named(
        self, conn: sqlite3.Connection, account_id: int, name: str
    ) -> MailboxRow | None: ...

    def mbox_by_id(
        self, conn: sqlite3.Connection, account_id: int, mailbox_id: int
    ) -> MailboxRow: ...

    def mailbox_info(self, conn: sqlite3.Connection, mb: MailboxRow) -> MailboxInfo: ...

    def account_by_id(self, tx: Tx, account_id: int) -> AccountRow: ...

    def selectable_mailbox(self, tx: Tx, account_id: int, name: str) -> MailboxRow: ...

    def new_mailbox(
        self, tx: Tx, acct: AccountRow, name: str, special_use: str | None
    ) -> MailboxRow: ...

    def drop_folder(self, tx: Tx, acct: AccountRow, mb: MailboxRow) -> None: ...

    def move_folders(
        self, tx: Tx, acct: AccountRow, moving: list[MailboxRow], old_n: str, new_n: str
    ) -> None: ...

    def remove_messages(
        self, tx: Tx, acct: AccountRow, mb: MailboxRow, rows: list[tuple[int, str, str]]
    ) -> list[int]: ...

    def copy_rows(
        self,
        tx: Tx,
        acct: AccountRow,
        src: MailboxRow,
        dst: MailboxRow,
        uids: Sequence[int] | None,
        move: bool,
    ) -> CopyResult: ...

    def alloc(self, tx: Tx, acct: AccountRow, mb: MailboxRow, count: int) -> tuple[int, int]: ...

    def letters(self, tx: Tx, acct: AccountRow, flags: Iterable[str]) -> dict[str, str]: ...

    def note_dirty_files(self) -> None: ...

    def external_due(self, conn: sqlite3.Connection, mb: MailboxRow, acct_dir: str) -> bool: ...

    async def sync_folder(self, account_id: int, mailbox_id: int, force: bool = False) -> None: ...

    def folder_watcher(self) -> FolderWatcher: ...


# STOREs of up to this many messages first check on the event loop whether they change anything.
_QUICK_FLAG_CHECK = 64
# Seconds after an APPEND through this process during which a \Recent claim of its new UIDs
# skips the index read (see claim_recent): the appending session's own claim comes within a
# millisecond or two; a longer window only widens the cross-process race claims already have.
FRESH_CLAIM = 0.25


class SqliteAccountStore:
    """One account of a SqliteMaildirStore (implements api.AccountStore)."""

    def __init__(self, store: AccountBackend, account: str, account_id: int) -> None:
        self._s = store
        self._account = account
        self._id = account_id
        domain_dir, local_dir = names.account_path_parts(account)
        self._dir = f"{domain_dir}/{local_dir}"  # under DATA/mail, as create_account made it

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
                mailbox_from_row(r)
                for r in conn.execute(
                    f"SELECT {MAILBOX_COLS} FROM mailboxes WHERE account_id = ?", (self._id,)
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
                    mailboxid(m.guid),
                )
                for m in boxes
            ]

        # An account's mailboxes are a few indexed rows: on this thread (see read_quick).
        return await self._s.read_quick(read)

    async def get_mailbox(self, name: str) -> MailboxInfo:
        norm = names.normalize_mailbox_name(name)

        def read(conn: sqlite3.Connection, check: bool) -> MailboxInfo | int:
            mb = self._s.mbox_named(conn, self._id, norm)
            if mb is None:
                raise MailboxNotFound(name)
            if check and self._s.external_due(conn, mb, self._dir):
                return mb.id
            return self._s.mailbox_info(conn, mb)

        got = await self._s.read_quick(read, True)
        if isinstance(got, int):  # changed behind the store: adopt that first
            await self._s.sync_folder(self._id, got)
            got = await self._s.read_quick(read, False)
        assert not isinstance(got, int)
        return got

    async def open_mailbox(self, name: str) -> tuple[MailboxInfo, list[MessageMeta]]:
        norm = names.normalize_mailbox_name(name)
        s = self._s

        def read(
            conn: sqlite3.Connection, check: bool
        ) -> tuple[MailboxInfo, list[MessageMeta] | None] | int:
            mb = s.mbox_named(conn, self._id, norm)
            if mb is None:
                raise MailboxNotFound(name)
            if check and s.external_due(conn, mb, self._dir):
                return mb.id
            info = s.mailbox_info(conn, mb)
            if not mb.selectable:
                return info, []
            if not s.listings.is_small(mb.id):
                return info, None  # a big listing is built in the read pool, not on the loop
            return info, s.listing(conn, mb).metas_list(s.codec)

        got = await s.read_quick(read, True)
        if isinstance(got, int):  # changed behind the store: adopt that first
            await s.sync_folder(self._id, got)
            got = await s.read_quick(read, False)
        assert not isinstance(got, int)
        info, metas = got
        if metas is None:
            metas = await self.list_messages(info.id)
        return info, metas

    async def create_mailbox(self, name: str, special_use: str | None = None) -> MailboxInfo:
        norm = names.normalize_mailbox_name(name)
        s = self._s

        def job(tx: Tx) -> MailboxInfo:
            acct = s.account_by_id(tx, self._id)
            existing = s.mbox_named(tx.conn, self._id, norm)
            if existing is not None and existing.selectable:
                raise MailboxExists(norm)
            for parent in names.parents(norm):
                if s.mbox_named(tx.conn, self._id, parent) is None:
                    s.new_mailbox(tx, acct, parent, None)
            if existing is not None:  # a \Noselect placeholder becomes a real mailbox again
                tx.conn.execute(
                    "UPDATE mailboxes SET selectable = 1, special_use = ? WHERE id = ?",
                    (special_use, existing.id),
                )
                existing.selectable, existing.special_use = True, special_use
                tx.event(self._account, MailboxChanged(self._account, existing.id, "created", norm))
                return s.mailbox_info(tx.conn, existing)
            return s.mailbox_info(tx.conn, s.new_mailbox(tx, acct, norm, special_use))

        return await s.write(job)

    def _children(self, conn: sqlite3.Connection, name: str) -> list[MailboxRow]:
        prefix = name + "/"
        return [
            mailbox_from_row(r)
            for r in conn.execute(
                f"SELECT {MAILBOX_COLS} FROM mailboxes WHERE account_id = ? AND substr(name, 1, ?) = ?",
                (self._id, len(prefix), prefix),
            )
        ]

    def _prune(self, tx: Tx, acct: AccountRow, name: str) -> None:
        """Remove \\Noselect ancestors left without inferiors."""
        for parent in reversed(names.parents(name)):
            mb = self._s.mbox_named(tx.conn, self._id, parent)
            if mb is None or mb.selectable or self._children(tx.conn, parent):
                return
            self._s.drop_folder(tx, acct, mb)
            tx.event(self._account, MailboxChanged(self._account, mb.id, "deleted", parent))

    async def delete_mailbox(self, name: str) -> None:
        norm = names.normalize_mailbox_name(name)
        if norm == names.INBOX:
            raise StoreError("INBOX cannot be deleted")
        s = self._s

        def job(tx: Tx) -> None:
            acct = s.account_by_id(tx, self._id)
            mb = s.mbox_named(tx.conn, self._id, norm)
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
                s.remove_messages(tx, acct, mb, rows)
                tx.conn.execute(
                    "UPDATE mailboxes SET selectable = 0, special_use = NULL WHERE id = ?", (mb.id,)
                )
                tx.event(self._account, MailboxChanged(self._account, mb.id, "deleted", norm))
                return
            s.drop_folder(tx, acct, mb)
            tx.event(self._account, MailboxChanged(self._account, mb.id, "deleted", norm))
            self._prune(tx, acct, norm)

        await s.write(job)

    async def rename_mailbox(self, old: str, new: str) -> None:
        old_n = names.normalize_mailbox_name(old)
        new_n = names.normalize_mailbox_name(new)
        s = self._s

        def job(tx: Tx) -> None:
            acct = s.account_by_id(tx, self._id)
            src = s.mbox_named(tx.conn, self._id, old_n)
            if src is None:
                raise MailboxNotFound(old)
            if s.mbox_named(tx.conn, self._id, new_n) is not None:
                raise MailboxExists(new_n)
            if names.is_inferior(new_n, old_n):
                raise StoreError(f"cannot rename {old_n} to its own inferior {new_n}")
            for parent in names.parents(new_n):
                if s.mbox_named(tx.conn, self._id, parent) is None:
                    s.new_mailbox(tx, acct, parent, None)
            if old_n == names.INBOX:
                # RFC 3501 6.3.5: INBOX's messages move to a new mailbox; INBOX stays, empty,
                # and its inferiors are unaffected
                dst = s.new_mailbox(tx, acct, new_n, None)
                s.copy_rows(tx, acct, src, dst, None, move=True)
                return
            moving = sorted([src, *self._children(tx.conn, old_n)], key=lambda m: m.name)
            s.move_folders(tx, acct, moving, old_n, new_n)
            self._prune(tx, acct, old_n)

        await s.write(job)

    async def set_subscribed(self, name: str, subscribed: bool) -> None:
        norm = names.normalize_mailbox_name(name)
        s = self._s

        def job(tx: Tx) -> None:
            if subscribed:
                tx.conn.execute(
                    "INSERT OR IGNORE INTO subscriptions (account_id, name) VALUES (?, ?)",
                    (self._id, norm),
                )
            else:
                tx.conn.execute(
                    "DELETE FROM subscriptions WHERE account_id = ? AND name = ?", (self._id, norm)
                )
            mb = s.mbox_named(tx.conn, self._id, norm)
            tx.event(
                self._account, MailboxChanged(self._account, mb.id if mb else 0, "subscribed", norm)
            )

        await s.write(job)

    async def subscriptions(self) -> list[str]:
        def read(conn: sqlite3.Connection) -> list[str]:
            return [
                r[0]
                for r in conn.execute(
                    "SELECT name FROM subscriptions WHERE account_id = ? ORDER BY name", (self._id,)
                )
            ]

        return await self._s.read_quick(read)

    # ---- messages ----

    async def counts(self, mailbox_id: int) -> MailboxCounts:
        def read(conn: sqlite3.Connection, mb: MailboxRow | None = None) -> MailboxCounts:
            if mb is None:
                self._s.mbox_by_id(conn, self._id, mailbox_id)
            n, unseen, deleted, size, deleted_size = conn.execute(
                "SELECT count(*), coalesce(sum((flags & 1) = 0), 0), coalesce(sum((flags & 8) != 0), 0),"
                " coalesce(sum(size), 0), coalesce(sum(size * ((flags & 8) != 0)), 0)"
                " FROM messages WHERE mailbox_id = ?",
                (mailbox_id,),
            ).fetchone()
            return MailboxCounts(n, unseen, deleted, size, deleted_size)

        if self._s.listings.is_small(mailbox_id):  # a short scan: cheaper than two thread hops
            return await self._read_fresh(mailbox_id, read)
        await self.refresh(mailbox_id)
        return await self._s.read(read)

    async def append(
        self,
        mailbox: str,
        source: MessageSource,
        flags: Iterable[str] = (),
        internaldate: InternalDate | None = None,
    ) -> AppendResult:
        when, tz = zoned(internaldate)
        [result] = await self._s.deliver_many(
            [(self._account, mailbox, normalize_flags(flags), when, tz)], source
        )
        self._note_fresh([result])
        return result

    def _note_fresh(self, results: Sequence[AppendResult]) -> None:
        """Remember the UIDs just appended through this process, as one unbroken run per mailbox
        (a UID that does not follow the run starts a new one): see claim_recent."""
        fresh = self._s.fresh_appends
        now = time.monotonic()
        for r in results:
            run = fresh.get(r.mailbox_id)
            if run is not None and r.uid == run[1] + 1:
                fresh[r.mailbox_id] = (run[0], r.uid, now)
            else:
                if len(fresh) >= 10_000:
                    fresh.clear()
                fresh[r.mailbox_id] = (r.uid, r.uid, now)

    async def append_many(
        self,
        mailbox: str,
        messages: Sequence[tuple[bytes, Iterable[str], InternalDate | None]],
    ) -> list[AppendResult]:
        now = time.time()
        results = await self._s.append_many(
            self._id,
            self._account,
            mailbox,
            [(d, normalize_flags(f), *zoned(w, now)) for d, f, w in messages],
        )
        self._note_fresh(results)
        return results

    async def replace(
        self,
        mailbox_id: int,
        uid: int,
        mailbox: str,
        message: tuple[bytes, Iterable[str], InternalDate | None],
    ) -> AppendResult:
        data, flags, when = message
        [result] = await self._s.append_many(
            self._id,
            self._account,
            mailbox,
            [(data, normalize_flags(flags), *zoned(when))],
            replace=(mailbox_id, uid),
        )
        return result

    async def list_messages(self, mailbox_id: int) -> list[MessageMeta]:
        if self._s.listings.is_small(mailbox_id):
            return await self._s.read_quick(self._list, mailbox_id)
        return await self._s.read(self._list, mailbox_id)

    async def list_uids_flags(self, mailbox_id: int) -> UidFlags:
        if self._s.listings.is_small(mailbox_id):
            return await self._s.read_quick(self._uid_flags, mailbox_id)
        return await self._s.read(self._uid_flags, mailbox_id)

    async def changed_since(self, mailbox_id: int, modseq: int) -> list[MessageMeta]:
        return await self._s.read(self._changed, mailbox_id, modseq)

    async def recent_claimed(self, mailbox_id: int) -> int:
        stored = await self._s.read_quick(self._recent, mailbox_id)
        return max(stored, self._s.recent_claims.get(mailbox_id, 0))

    def _recent(self, conn: sqlite3.Connection, mailbox_id: int) -> int:
        self._s.mbox_by_id(conn, self._id, mailbox_id)
        row = conn.execute("SELECT uid FROM recent WHERE mailbox_id = ?", (mailbox_id,)).fetchone()
        return 0 if row is None else int(row[0])

    async def claim_recent(self, mailbox_id: int, up_to: int) -> int:
        s = self._s
        mine = s.recent_claims.get(mailbox_id, 0)
        run = s.fresh_appends.get(mailbox_id)
        if (
            run is not None
            and run[0] <= mine + 1 <= up_to <= run[1]
            and time.monotonic() - run[2] < FRESH_CLAIM
        ):
            # Every UID above this process's claims up to `up_to` was appended through this
            # process a moment ago: no other process can have claimed it but in that same
            # moment (which claims race in anyway, see below), so the index is not read (one
            # read per APPEND into a selected mailbox).
            s.claim_recent_later(mailbox_id, up_to)
            return mine
        before = await self.recent_claimed(mailbox_id)
        if up_to > before:
            # This process's claims take effect at once (the next session here sees them); the
            # index learns them in the background, claims to one mailbox coalesced into one write
            # that need not reach the device (a lost claim only makes messages recent once more,
            # which RFC 3501 2.3.2 allows when the server cannot tell). Two processes claiming
            # the same messages in the same instant may both call them recent.
            self._s.claim_recent_later(mailbox_id, up_to)
        return before

    async def _read_fresh(self, mailbox_id: int, fn: Callable[..., T], *args: Any) -> T:
        """`fn(conn, *args, mb)` on this thread (read_quick), in the same read as the look for
        changes made in the Maildir behind the store: one read transaction when nothing changed
        (the usual case; STATUS and the view's catch-up made two), the scan and a second read when
        it did. `mb` is the mailbox's row, read once for both (the lookup raises MailboxNotFound)."""
        s = self._s

        def read(conn: sqlite3.Connection, check: bool) -> T | _Due:
            mb = s.mbox_by_id(conn, self._id, mailbox_id)
            if check and s.external_due(conn, mb, self._dir):
                return _DUE
            return fn(conn, *args, mb)

        got = await s.read_quick(read, True)
        if isinstance(got, _Due):
            await s.sync_folder(self._id, mailbox_id)
            got = await s.read_quick(read, False)
        assert not isinstance(got, _Due)
        return got

    async def refresh(self, mailbox_id: int) -> None:
        s = self._s

        def read(conn: sqlite3.Connection) -> bool:
            return s.external_due(conn, s.mbox_by_id(conn, self._id, mailbox_id), self._dir)

        if await s.read_quick(read):
            await s.sync_folder(self._id, mailbox_id)

    async def watch(self, mailbox_id: int) -> FolderWatch:
        s = self._s

        def read(conn: sqlite3.Connection) -> str:
            return s.cur_dir(self._dir, s.mbox_by_id(conn, self._id, mailbox_id).dir)

        folder = (await s.read_quick(read))[: -len("/cur")]
        return s.folder_watcher().watch(
            (self._id, mailbox_id), folder, partial(self.refresh, mailbox_id)
        )

    async def changes_since(self, mailbox_id: int, modseq: int) -> MailboxDelta:
        # the view's catch-up sees the Maildir's changes too
        if modseq > 0:  # a few indexed rows: on this thread (see _read_quick)
            return await self._read_fresh(mailbox_id, self._delta, mailbox_id, modseq)
        await self.refresh(mailbox_id)
        return await self._s.read(self._delta, mailbox_id, modseq)

    def _delta(
        self, conn: sqlite3.Connection, mailbox_id: int, modseq: int, mb: MailboxRow | None = None
    ) -> MailboxDelta:
        if mb is None:
            mb = self._s.mbox_by_id(conn, self._id, mailbox_id)
        if modseq >= mb.highestmodseq:
            return MailboxDelta(mb.highestmodseq, [], [])
        horizon = conn.execute(
            "SELECT modseq FROM expunge_horizon WHERE mailbox_id = ?", (mailbox_id,)
        ).fetchone()
        rows = conn.execute(
            SELECT_ROWS + " WHERE mailbox_id = ? AND modseq > ? ORDER BY uid", (mailbox_id, modseq)
        ).fetchall()
        gone = conn.execute(
            "SELECT uid FROM expunged WHERE mailbox_id = ? AND modseq > ? ORDER BY uid",
            (mailbox_id, modseq),
        ).fetchall()
        return MailboxDelta(
            mb.highestmodseq,
            metas_from_rows(rows, self._s.codec),
            [r[0] for r in gone],
            horizon is None or modseq >= horizon[0],
        )

    def _list(self, conn: sqlite3.Connection, mailbox_id: int) -> list[MessageMeta]:
        s = self._s
        return s.listing(conn, s.mbox_by_id(conn, self._id, mailbox_id)).metas_list(s.codec)

    def _uid_flags(self, conn: sqlite3.Connection, mailbox_id: int) -> UidFlags:
        s = self._s
        return s.listing(conn, s.mbox_by_id(conn, self._id, mailbox_id)).uid_flags(s.codec)

    def _changed(self, conn: sqlite3.Connection, mailbox_id: int, modseq: int) -> list[MessageMeta]:
        self._s.mbox_by_id(conn, self._id, mailbox_id)
        rows = conn.execute(
            SELECT_ROWS + " WHERE mailbox_id = ? AND modseq > ? ORDER BY uid", (mailbox_id, modseq)
        ).fetchall()
        return metas_from_rows(rows, self._s.codec)

    def _read_one(
        self, conn: sqlite3.Connection, mailbox_id: int, uid: int
    ) -> tuple[str, str, str, str, str, bytes | None]:
        """Where a message is: (cur/ of its folder, account dir, mailbox dir, base, info, its
        bytes while they are in the index only). KeyError when it is gone."""
        row = conn.execute(_READ_ONE, (mailbox_id, uid, self._id)).fetchone()
        if row is None:
            raise KeyError(uid)
        return self._s.cur_dir(row[3], row[2]), row[3], row[2], row[0], row[1], row[4]

    async def read_message(self, mailbox_id: int, uid: int) -> bytes:
        s = self._s

        def load(folder: Path, base: str, info: str) -> bytes | None:
            try:
                with open(folder / "cur" / maildir.file_name(base, info), "rb") as f:
                    return f.read()
            except FileNotFoundError:
                path = maildir.locate(folder, base, info)
                if path is None:
                    return None
                try:
                    with open(path, "rb") as f:
                        return f.read()
                except FileNotFoundError:
                    return None

        for attempt in range(5):
            if attempt == 2:
                # twice no file where the index says, and no folder move explains it (that would
                # have settled by now): deleted behind the store. A scan expunges its row (the
                # client hears EXPUNGE) instead of answering NO for it forever.
                await s.sync_folder(self._id, mailbox_id, force=True)
            # One indexed row: on this thread (see read_quick).
            cur, adir, mdir, base, info, body = await s.read_quick(self._read_one, mailbox_id, uid)
            if body is not None:  # committed with its bytes, its file maybe not written yet
                return bytes(body)
            # A file already in the page cache is read right here (two thread hops cost more
            # than the read); one that would wait for the disk goes to the I/O threads. The path
            # is a str joined once per folder (cur_dir): pathlib joins were a visible part of a
            # POP3 RETR's CPU.
            data = maildir.read_cached(f"{cur}/{base}:2,{info}", maildir.name_size(base))
            if data is None:
                data = await s.run_io(load, s.folder(adir, mdir), base, info)
            if data is not None:
                return maildir.wire_bytes(data, base)  # an LF file: CRLF on the wire
            # expunged meanwhile (the row is gone: KeyError above), or its folder was renamed
            # between the lookup and the read: look again
        raise KeyError(uid)

    async def read_head(self, mailbox_id: int, uid: int, octets: int) -> tuple[bytes, bool]:
        s = self._s

        def load(path: str) -> tuple[bytes, bool] | None:
            try:
                with open(path, "rb") as f:
                    # the LF form is never longer than the message: `octets` of it are enough
                    data = f.read(octets + 1)
            except FileNotFoundError:
                return None
            return data[:octets], len(data) <= octets

        cur, _adir, _mdir, base, info, body = await s.read_quick(self._read_one, mailbox_id, uid)
        name = f"{base}:2,{info}"
        if body is not None:  # committed with its bytes (a small message)
            return bytes(body), True
        got = await s.run_io(load, f"{cur}/{name}")
        if got is None:  # moved or renamed behind the index: read_message finds it, or says so
            return await self.read_message(mailbox_id, uid), True
        data, whole = got
        return maildir.wire_bytes(data, name), whole

    async def read_messages(self, mailbox_id: int, uids: Sequence[int]) -> list[bytes | KeyError]:
        return [
            g if isinstance(g, KeyError) else g[0] for g in await self.read_wire(mailbox_id, uids)
        ]

    async def read_wire(
        self, mailbox_id: int, uids: Sequence[int]
    ) -> list[tuple[bytes, bool] | KeyError]:
        """One read transaction for the rows of the whole run (POP3 read-ahead; usable by an IMAP
        FETCH of many bodies), then each file read from the page cache on this thread. A message
        whose file is not in the cache, or not where the index says, takes read_message's road
        (I/O threads, relocation, rescan), those concurrently."""
        if not uids:
            return []
        s = self._s

        def read(conn: sqlite3.Connection) -> dict[int, tuple[str, str, str, bytes | None]]:
            return {
                uid: (s.cur_dir(adir, mdir), base, info, body)
                for uid, base, info, mdir, adir, body in conn.execute(
                    _READ_RUN, (mailbox_id, self._id, json_ints(uids))
                )
            }

        rows = await s.read_quick(read)
        out: list[tuple[bytes, bool] | KeyError] = []
        slow: list[int] = []  # positions read the long way
        read_cached = maildir.read_cached
        for uid in uids:
            row = rows.get(uid)
            if row is None:
                out.append(KeyError(uid))
                continue
            cur, base, info, body = row
            if body is not None:
                out.append((bytes(body), False))
                continue
            data = read_cached(f"{cur}/{base}:2,{info}", maildir.name_size(base))
            if data is None:
                slow.append(len(out))
                out.append(KeyError(uid))  # replaced below
            elif maildir.is_lf_form(base):  # CRLF on the wire, made from LFs: no bare LF
                out.append((maildir.to_wire(data), True))
            else:
                out.append((data, False))
        if slow:
            got = await asyncio.gather(*(self._read_or_gone(mailbox_id, uids[i]) for i in slow))
            for i, one in zip(slow, got, strict=True):
                out[i] = one if isinstance(one, KeyError) else (one, False)
        return out

    async def _read_or_gone(self, mailbox_id: int, uid: int) -> bytes | KeyError:
        try:
            return await self.read_message(mailbox_id, uid)
        except KeyError as e:
            return e

    async def message_ids(
        self, mailbox_id: int, uids: Sequence[int] | None = None
    ) -> dict[int, MessageIds]:
        def read(conn: sqlite3.Connection) -> dict[int, MessageIds]:
            self._s.mbox_by_id(conn, self._id, mailbox_id)  # MailboxNotFound
            sql = "SELECT uid, emailid, savedate, base FROM messages WHERE mailbox_id = ?"
            params: tuple[Any, ...] = (mailbox_id,)
            if uids is not None:
                sql += " AND uid IN (SELECT value FROM json_each(?))"
                params += (json_ints(uids),)
            return {
                uid: MessageIds(emailid or emailid_of_base(base), savedate)
                for uid, emailid, savedate, base in conn.execute(sql, params)
            }

        return await self._s.read(read)

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
        codec = s.codec

        def plan(
            conn: sqlite3.Connection,
        ) -> tuple[Any, list[tuple[int, Any, int, int, int]], list[int]]:
            mb = s.mbox_by_id(conn, self._id, mailbox_id)
            rows = conn.execute(
                "SELECT uid, flags, keywords, modseq, internaldate, size, internaldate_tz"
                " FROM messages"
                " WHERE mailbox_id = ? AND uid IN (SELECT value FROM json_each(?)) ORDER BY uid",
                (mailbox_id, json_ints(uids)),
            ).fetchall()
            changes = []
            failed = []
            for uid, mask, kws, mseq, when, size, tz in rows:
                if unchangedsince is not None and mseq > unchangedsince:
                    failed.append(uid)  # RFC 7162 3.1.3
                    continue
                current = codec.decode(mask, kws)
                new = apply_op(current, op, wanted)
                if new != current:
                    changes.append((uid, new, when, size, tz))
            return mb, changes, failed

        if len(uids) <= _QUICK_FLAG_CHECK and not self._known_to_change(
            mailbox_id, uids, op, wanted
        ):
            # A STORE that changes nothing (the flags are already so, as clients often ask)
            # needs no write: a read on this thread confirms it, and the STORE is ordered there.
            _mb, changes, failed = await s.read_quick(plan)
            if not changes:
                return [], failed

        def job(tx: Tx) -> tuple[list[MessageMeta], list[int]]:
            mb, changes, failed = plan(tx.conn)
            if not changes:
                return [], failed
            acct = s.account_by_id(tx, self._id)
            modseq = s.alloc(tx, acct, mb, 0)[1]
            s.letters(tx, acct, wanted)
            updates = []
            metas = []
            for uid, new, when, size, tz in changes:
                mask, kws = codec.encode(new)
                updates.append((mask, kws, modseq, mailbox_id, uid))
                metas.append(MessageMeta(uid, codec.decode(mask, kws), modseq, when, size, tz))
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
            s.note_dirty_files()
            return metas, failed

        metas, failed = await s.write(job)
        s.listings.note_flags(mailbox_id, ((m.uid, m.flags) for m in metas))
        if any(DELETED in m.flags for m in metas):
            # the next EXPUNGE has something to remove: it skips its read (see expunge)
            if len(s.deleted_hints) >= 10_000:
                s.deleted_hints.clear()
            s.deleted_hints.add(mailbox_id)
        return metas, failed

    async def _remove(
        self, mailbox_id: int, uids: Sequence[int] | None, only_deleted: bool
    ) -> list[int]:
        s = self._s

        def job(tx: Tx) -> list[int]:
            mb = s.mbox_by_id(tx.conn, self._id, mailbox_id)
            sql = "SELECT uid, base, info FROM messages WHERE mailbox_id = ?"
            params: tuple[Any, ...] = (mailbox_id,)
            if only_deleted:
                sql += f" AND (flags & {DELETED_BIT}) != 0"
                if uids is None:
                    sql = sql.replace("messages", "messages INDEXED BY messages_deleted", 1)
            if uids is not None:
                sql += " AND uid IN (SELECT value FROM json_each(?))"
                params += (json_ints(uids),)
            rows = tx.conn.execute(sql + " ORDER BY uid", params).fetchall()
            if not rows:
                return []
            return s.remove_messages(tx, s.account_by_id(tx, self._id), mb, rows)

        return await s.write(job)

    async def expunge(self, mailbox_id: int, uids: Sequence[int] | None = None) -> list[int]:
        # Most EXPUNGEs find nothing to remove: a read on this thread says so without a round
        # through the writer. A \Deleted flag committed after this read is simply ordered after
        # this EXPUNGE.
        # When this process just set \Deleted there (deleted_hints), the read would find it:
        # skipped. The hint is spent here; a stale one costs the write the read would have saved.
        if uids is None:
            hints = self._s.deleted_hints
            if mailbox_id in hints:
                hints.discard(mailbox_id)
            elif self._s.listings.is_small(mailbox_id) and not await self._s.read_quick(
                self._any_deleted, mailbox_id
            ):
                return []
        return await self._remove(mailbox_id, uids, only_deleted=True)

    def _known_to_change(
        self, mailbox_id: int, uids: Sequence[int], op: FlagOp, wanted: frozenset[str]
    ) -> bool:
        """Whether the cached listing (a hint, maybe stale) says this STORE changes a flag: then
        the read that could let it skip the writer would be wasted (~20% of a STORE's cost)."""
        known = self._s.listings.last_known_flags(mailbox_id, uids, self._s.codec)
        return known is not None and any(apply_op(f, op, wanted) != f for f in known)

    def _any_deleted(self, conn: sqlite3.Connection, mailbox_id: int) -> bool:
        self._s.mbox_by_id(conn, self._id, mailbox_id)
        row = conn.execute(
            f"SELECT EXISTS (SELECT 1 FROM messages INDEXED BY messages_deleted"
            f" WHERE mailbox_id = ? AND (flags & {DELETED_BIT}) != 0)",
            (mailbox_id,),
        ).fetchone()
        return bool(row[0])

    async def delete_messages(self, mailbox_id: int, uids: Sequence[int]) -> list[int]:
        return await self._remove(mailbox_id, uids, only_deleted=False)

    async def _copy(
        self, src_mailbox_id: int, uids: Sequence[int], dst: str, move: bool
    ) -> CopyResult:
        norm = names.normalize_mailbox_name(dst)
        s = self._s

        def job(tx: Tx) -> CopyResult:
            src = s.mbox_by_id(tx.conn, self._id, src_mailbox_id)
            target = s.selectable_mailbox(tx, self._id, norm)
            if target.id == src.id:
                target = src  # one row object, so UID/MODSEQ allocation stays consistent
            acct = s.account_by_id(tx, self._id)
            return s.copy_rows(tx, acct, src, target, uids, move)

        return await s.write(job)

    async def copy(self, src_mailbox_id: int, uids: Sequence[int], dst: str) -> CopyResult:
        defaults = self._s.quota_defaults

        def check(conn: sqlite3.Connection) -> None:
            lim = quota.limits(conn, self._id, defaults)
            if lim.storage is None and lim.messages is None:
                return
            n, size = conn.execute(
                "SELECT count(*), coalesce(sum(size), 0) FROM messages WHERE mailbox_id = ?"
                " AND uid IN (SELECT value FROM json_each(?))",
                (src_mailbox_id, json_ints(uids)),
            ).fetchone()
            quota.check(conn, self._id, defaults, size, n)

        await self._s.read(check)  # (MOVE stays within the account's quota root: no check)
        return await self._copy(src_mailbox_id, uids, dst, move=False)

    # ---- quota (RFC 9208; quota.py) ----

    async def quota(self) -> Quota:
        return await self._s.read(quota.quota, self._id, self._s.quota_defaults)

    async def set_quota(self, storage: int | None, messages: int | None) -> None:
        await self._s.write(lambda tx: quota.set_limits(tx.conn, self._id, storage, messages))
        self._s.forget_limits(self._account)

    async def quota_warning(self) -> Quota | None:
        defaults = self._s.quota_defaults

        def limited(conn: sqlite3.Connection) -> bool:
            lim = quota.limits(conn, self._id, defaults)
            return lim.storage is not None or lim.messages is not None

        # The limits as the writer last committed them (a delivery's append run reads them with
        # the account row, just before this is called after it): no read at all for most; else a
        # key lookup on this thread. A warning is advice: a moment-old answer is good enough.
        seen = self._s.quota_seen.get(self._account)
        if seen is not None and seen[0] == self._id:
            lim = quota.effective(seen[1], defaults)
            if lim.storage is None and lim.messages is None:
                return None
        elif not await self._s.read_quick(limited):
            return None

        def read(conn: sqlite3.Connection) -> tuple[Quota, bool]:
            return quota.quota(conn, self._id, defaults), quota.warned(conn, self._id)

        q, warned = await self._s.read(read)
        if q.above(QUOTA_WARN) == warned:
            return None  # nothing changed: no write
        above = q.above(QUOTA_WARN)
        changed = await self._s.write(
            lambda tx: quota.note_warning(tx.conn, self._id, above), durable=False
        )
        return q if changed else None

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
        return None if fd is None else FileLock(fd)

    async def search_index(
        self, mailbox_id: int, terms: Sequence[IndexTerm]
    ) -> list[TermHits | None]:
        def read(conn: sqlite3.Connection) -> list[TermHits | None]:
            owned = conn.execute(
                "SELECT 1 FROM mailboxes WHERE id = ? AND account_id = ?", (mailbox_id, self._id)
            ).fetchone()
            if owned is None:
                return [None] * len(terms)
            return search_index.answer(conn, mailbox_id, terms)

        return await self._s.read(read)

    async def sort_index(
        self, mailbox_id: int, above: int = 0
    ) -> tuple[int, dict[int, SortFields]]:
        def read(conn: sqlite3.Connection) -> tuple[int, dict[int, SortFields]]:
            owned = conn.execute(
                "SELECT 1 FROM mailboxes WHERE id = ? AND account_id = ?", (mailbox_id, self._id)
            ).fetchone()
            return (0, {}) if owned is None else search_index.sort_rows(conn, mailbox_id, above)

        return await self._s.read(read)


# read_message's row: the file's name and folder, and the bytes of a message committed with them
# whose file is not written yet
_READ_ONE = (
    "SELECT m.base, m.info, b.dir, a.dir, (SELECT data FROM bodies WHERE id ="
    " (SELECT body_id FROM unsynced u WHERE u.mailbox_id = m.mailbox_id"
    " AND u.uid = m.uid)) FROM messages m"
    " JOIN mailboxes b ON b.id = m.mailbox_id JOIN accounts a ON a.id = b.account_id"
    " WHERE m.mailbox_id = ? AND m.uid = ? AND b.account_id = ?"
)
# the same for a run of UIDs (read_messages)
_READ_RUN = (
    "SELECT m.uid, m.base, m.info, b.dir, a.dir, (SELECT data FROM bodies WHERE id ="
    " (SELECT body_id FROM unsynced u WHERE u.mailbox_id = m.mailbox_id"
    " AND u.uid = m.uid)) FROM messages m"
    " JOIN mailboxes b ON b.id = m.mailbox_id JOIN accounts a ON a.id = b.account_id"
    " WHERE m.mailbox_id = ? AND b.account_id = ? AND m.uid IN (SELECT value FROM json_each(?))"
)
