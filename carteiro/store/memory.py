"""An in-memory MailStore for tests: same contract and conformance suite as the durable backend.

Every operation runs to completion without awaiting, so each is atomic on one event loop.
Nothing is persisted; the maildrop lock is exclusive within this process only.
"""

from __future__ import annotations

import os
import secrets
import time
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from carteiro.mime.sortkeys import SortFields
from carteiro.store import names
from carteiro.store.api import (
    DEFAULT_MAILBOXES,
    DELETED,
    QUOTA_WARN,
    SEEN,
    AccountNotFound,
    AppendResult,
    ChangeEvent,
    ChangeSubscription,
    CopyResult,
    Delivery,
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
    MessageAdded,
    MessageIds,
    MessageMeta,
    MessageNotFound,
    MessagesExpunged,
    MessageSource,
    OverQuota,
    Quota,
    QuotaLimits,
    StoreError,
    TermHits,
    UidFlags,
    zoned,
)
from carteiro.store.changes import ChangeHub
from carteiro.store.flags import apply_op, normalize_flags
from carteiro.store.folder_watch import NO_WATCH


@dataclass
class _Message:
    uid: int
    flags: frozenset[str]
    modseq: int
    internaldate: float
    data: bytes
    emailid: str = ""  # RFC 8474 (kept by COPY and MOVE)
    savedate: float | None = None  # RFC 8514
    tz: int = 0  # INTERNALDATE's zone, minutes east of UTC

    def meta(self) -> MessageMeta:
        return MessageMeta(
            self.uid, self.flags, self.modseq, self.internaldate, len(self.data), self.tz
        )


@dataclass
class _Mailbox:
    id: int
    name: str
    uidvalidity: int
    uidnext: int = 1
    highestmodseq: int = 1
    special_use: str | None = None
    selectable: bool = True
    messages: dict[int, _Message] = field(default_factory=dict)  # insertion order == UID order
    expunged: list[tuple[int, int]] = field(default_factory=list)  # (uid, modseq) for VANISHED
    expunge_horizon: int = 0  # the history is whole for changes after this MODSEQ
    recent_claimed: int = 0  # highest UID handed out as \Recent
    mailboxid: str = field(default_factory=lambda: "F" + secrets.token_hex(16))  # RFC 8474

    def bump(self) -> int:
        self.highestmodseq += 1
        return self.highestmodseq


@dataclass
class _Account:
    name: str
    mailboxes: dict[str, _Mailbox] = field(default_factory=dict)
    subscriptions: set[str] = field(default_factory=set)
    deleted: bool = False
    last_uidvalidity: int = 0
    # per-account quota limits (None: the store's default; 0: no limit), warned at 90 %
    storage_limit: int | None = None
    message_limit: int | None = None
    warned: bool = False

    def quota(self, defaults: QuotaLimits) -> Quota:
        storage = defaults.storage if self.storage_limit is None else (self.storage_limit or None)
        messages = defaults.messages if self.message_limit is None else (self.message_limit or None)
        msgs = [m for b in self.mailboxes.values() for m in b.messages.values()]
        return Quota(storage, messages, sum(len(m.data) for m in msgs), len(msgs))

    def check_quota(self, defaults: QuotaLimits, octets: int, n: int) -> None:
        q = self.quota(defaults)
        if q.storage_limit is not None and q.storage + octets > q.storage_limit:
            raise OverQuota(f"storage quota of {q.storage_limit} octets reached")
        if q.message_limit is not None and q.messages + n > q.message_limit:
            raise OverQuota(f"quota of {q.message_limit} messages reached")


def _read_source(source: MessageSource) -> bytes:
    if isinstance(source, bytes):
        return source
    with open(os.fspath(source), "rb") as f:
        return f.read()


class _Lock:
    def __init__(self, held: set[str], account: str) -> None:
        self._held = held
        self._account = account
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._held.discard(self._account)


class MemoryMailStore:
    """All accounts in memory (implements api.MailStore)."""

    def __init__(self, quota: QuotaLimits = QuotaLimits()) -> None:
        self.quota_defaults = quota
        self._accounts: dict[str, _Account] = {}
        self._delivered: dict[str, tuple[AppendResult, ...]] = {}  # delivery id -> results
        self._by_id: dict[int, tuple[_Account, _Mailbox]] = {}
        self._next_id = 1
        self.hub = ChangeHub()
        self._locks: set[str] = set()
        # A fault hook for tests: while set, every write raises it (e.g. StorageFull or
        # OSError(ENOSPC), as a full disk does) and changes nothing; reads go on working.
        self.fail_writes_with: BaseException | None = None

    def check_write(self) -> None:
        if self.fail_writes_with is not None:
            raise self.fail_writes_with

    # ---- MailStore ----

    async def create_account(self, account: str) -> None:
        names.validate_account(account)
        acct = self._accounts.get(account)
        if acct is not None:
            acct.deleted = False
            return
        acct = _Account(account)
        self._accounts[account] = acct
        for name, special in DEFAULT_MAILBOXES:
            self._new_mailbox(acct, name, special)
            acct.subscriptions.add(name)

    async def delete_account(self, account: str, purge: bool = False) -> None:
        acct = self._accounts.get(account)
        if acct is None:
            raise AccountNotFound(account)
        if purge:
            for mbox in acct.mailboxes.values():
                self._by_id.pop(mbox.id, None)
            del self._accounts[account]
        else:
            acct.deleted = True

    async def account(self, account: str) -> MemoryAccountStore:
        acct = self._accounts.get(account)
        if acct is None or acct.deleted:
            raise AccountNotFound(account)
        return MemoryAccountStore(self, account)

    async def deliver(
        self,
        deliveries: Sequence[Delivery],
        source: MessageSource,
        delivery_id: str | None = None,
        crlf: bool = False,  # (the bytes are kept as they are: nothing to convert)
    ) -> list[AppendResult]:
        if delivery_id is not None and delivery_id in self._delivered:
            return list(self._delivered[delivery_id])
        self.check_write()
        data = _read_source(source)
        targets: list[tuple[_Account, _Mailbox, frozenset[str], tuple[float, int]]] = []
        for d in deliveries:  # validate everything before changing anything: all or none
            acct = self._live(d.account)
            mbox = self._mailbox_by_name(acct, d.mailbox)
            flags = normalize_flags(d.flags)
            when = zoned(d.internaldate)
            targets.append((acct, mbox, flags, when))
        for acct in {id(t[0]): t[0] for t in targets}.values():
            n = sum(1 for t in targets if t[0] is acct)
            acct.check_quota(self.quota_defaults, len(data) * n, n)
        results = []
        emailid = "M" + secrets.token_hex(12)  # one message: one EMAILID in every mailbox
        for acct, mbox, flags, when in targets:
            results.append(self._add(acct, mbox, data, flags, when, emailid))
        if delivery_id is not None:
            self._delivered[delivery_id] = tuple(results)
        return results

    async def close(self) -> None:
        self.hub.close_all()

    # ---- internals shared with MemoryAccountStore ----

    def _live(self, account: str) -> _Account:
        acct = self._accounts.get(account)
        if acct is None or acct.deleted:
            raise AccountNotFound(account)
        return acct

    def _new_mailbox(self, acct: _Account, name: str, special: str | None) -> _Mailbox:
        uidvalidity = max(int(time.time()), acct.last_uidvalidity + 1)
        acct.last_uidvalidity = uidvalidity
        mbox = _Mailbox(self._next_id, name, uidvalidity, special_use=special)
        self._next_id += 1
        acct.mailboxes[name] = mbox
        self._by_id[mbox.id] = (acct, mbox)
        return mbox

    def _mailbox_by_name(self, acct: _Account, name: str) -> _Mailbox:
        mbox = acct.mailboxes.get(names.normalize_mailbox_name(name))
        if mbox is None or not mbox.selectable:
            raise MailboxNotFound(name)
        return mbox

    def _mailbox_by_id(self, account: str, mailbox_id: int) -> _Mailbox:
        found = self._by_id.get(mailbox_id)
        if found is None or found[0].name != account or found[0].deleted:
            raise MailboxNotFound(str(mailbox_id))
        return found[1]

    def _add(
        self,
        acct: _Account,
        mbox: _Mailbox,
        data: bytes,
        flags: frozenset[str],
        when: tuple[float, int],
        emailid: str = "",
    ) -> AppendResult:
        emailid = emailid or "M" + secrets.token_hex(12)
        uid = mbox.uidnext
        mbox.uidnext += 1
        modseq = mbox.bump()
        mbox.messages[uid] = _Message(
            uid, flags, modseq, when[0], data, emailid, time.time(), when[1]
        )
        self.hub.publish(acct.name, [MessageAdded(acct.name, mbox.id, uid, modseq)])
        return AppendResult(acct.name, mbox.id, mbox.uidvalidity, uid, modseq)

    def _info(self, acct: _Account, mbox: _Mailbox) -> MailboxInfo:
        return MailboxInfo(
            mbox.id,
            mbox.name,
            mbox.uidvalidity,
            mbox.uidnext,
            mbox.highestmodseq,
            mbox.special_use,
            mbox.name in acct.subscriptions,
            mbox.selectable,
            mbox.mailboxid,
        )


class MemoryAccountStore:
    """One account of a MemoryMailStore (implements api.AccountStore)."""

    def __init__(self, store: MemoryMailStore, account: str) -> None:
        self._store = store
        self._account = account

    @property
    def account(self) -> str:
        return self._account

    def _acct(self) -> _Account:
        return self._store._live(self._account)

    def _mbox(self, mailbox_id: int) -> _Mailbox:
        return self._store._mailbox_by_id(self._account, mailbox_id)

    def _publish(self, events: list[ChangeEvent]) -> None:
        self._store.hub.publish(self._account, events)

    async def list_mailboxes(self) -> list[MailboxInfo]:
        acct = self._acct()
        boxes = sorted(acct.mailboxes.values(), key=lambda m: (m.name != names.INBOX, m.name))
        return [self._store._info(acct, m) for m in boxes]

    async def get_mailbox(self, name: str) -> MailboxInfo:
        acct = self._acct()
        mbox = acct.mailboxes.get(names.normalize_mailbox_name(name))
        if mbox is None:
            raise MailboxNotFound(name)
        return self._store._info(acct, mbox)

    async def open_mailbox(self, name: str) -> tuple[MailboxInfo, list[MessageMeta]]:
        info = await self.get_mailbox(name)
        return info, (await self.list_messages(info.id) if info.selectable else [])

    async def create_mailbox(self, name: str, special_use: str | None = None) -> MailboxInfo:
        self._store.check_write()
        acct = self._acct()
        name = names.normalize_mailbox_name(name)
        existing = acct.mailboxes.get(name)
        if existing is not None and existing.selectable:
            raise MailboxExists(name)
        events: list[ChangeEvent] = []
        for parent in names.parents(name):
            if parent not in acct.mailboxes:
                p = self._store._new_mailbox(acct, parent, None)
                events.append(MailboxChanged(self._account, p.id, "created", parent))
        if existing is not None:  # a \Noselect placeholder becomes a real mailbox again
            existing.selectable = True
            existing.special_use = special_use
            mbox = existing
        else:
            mbox = self._store._new_mailbox(acct, name, special_use)
        events.append(MailboxChanged(self._account, mbox.id, "created", name))
        self._publish(events)
        return self._store._info(acct, mbox)

    async def delete_mailbox(self, name: str) -> None:
        self._store.check_write()
        acct = self._acct()
        name = names.normalize_mailbox_name(name)
        if name == names.INBOX:
            raise StoreError("INBOX cannot be deleted")
        mbox = acct.mailboxes.get(name)
        if mbox is None:
            raise MailboxNotFound(name)
        has_children = any(names.is_inferior(n, name) for n in acct.mailboxes)
        if has_children and not mbox.selectable:
            raise MailboxNotEmpty(f"{name} has inferior mailboxes and is already \\Noselect")
        events: list[ChangeEvent] = []
        if has_children:
            # RFC 3501 6.3.4: keep the name as \Noselect so inferiors stay reachable
            if mbox.messages:
                modseq = mbox.bump()
                uids = tuple(mbox.messages)
                mbox.expunged.extend((u, modseq) for u in uids)
                mbox.messages.clear()
                events.append(MessagesExpunged(self._account, mbox.id, uids, modseq))
            mbox.selectable = False
            mbox.special_use = None
        else:
            del acct.mailboxes[name]
            self._store._by_id.pop(mbox.id, None)
            events.append(MailboxChanged(self._account, mbox.id, "deleted", name))
            events += self._prune_placeholders(acct, name)
        if has_children:
            events.append(MailboxChanged(self._account, mbox.id, "deleted", name))
        self._publish(events)

    def _prune_placeholders(self, acct: _Account, name: str) -> list[ChangeEvent]:
        events: list[ChangeEvent] = []
        for parent in reversed(names.parents(name)):
            p = acct.mailboxes.get(parent)
            if (
                p is None
                or p.selectable
                or any(names.is_inferior(n, parent) for n in acct.mailboxes)
            ):
                break
            del acct.mailboxes[parent]
            self._store._by_id.pop(p.id, None)
            events.append(MailboxChanged(self._account, p.id, "deleted", parent))
        return events

    async def rename_mailbox(self, old: str, new: str) -> None:
        self._store.check_write()
        acct = self._acct()
        old = names.normalize_mailbox_name(old)
        new = names.normalize_mailbox_name(new)
        src = acct.mailboxes.get(old)
        if src is None:
            raise MailboxNotFound(old)
        if new in acct.mailboxes:
            raise MailboxExists(new)
        if names.is_inferior(new, old):
            raise StoreError(f"cannot rename {old} to its own inferior {new}")
        events: list[ChangeEvent] = []
        for parent in names.parents(new):
            if parent not in acct.mailboxes:
                p = self._store._new_mailbox(acct, parent, None)
                events.append(MailboxChanged(self._account, p.id, "created", parent))
        if old == names.INBOX:
            # RFC 3501 6.3.5: INBOX's messages move to a new mailbox; INBOX stays, empty
            dst = self._store._new_mailbox(acct, new, None)
            events.append(MailboxChanged(self._account, dst.id, "created", new))
            uids = tuple(src.messages)
            for uid in uids:
                msg = src.messages[uid]
                nuid = dst.uidnext
                dst.uidnext += 1
                dst.messages[nuid] = _Message(
                    nuid,
                    msg.flags,
                    dst.highestmodseq + 1,
                    msg.internaldate,
                    msg.data,
                    msg.emailid,
                    time.time(),  # saved into the new mailbox now, as a MOVE
                    msg.tz,
                )
            if uids:
                dst.bump()
                modseq = src.bump()
                src.expunged.extend((u, modseq) for u in uids)
                src.messages.clear()
                events.append(MessagesExpunged(self._account, src.id, uids, modseq))
            self._publish(events)
            return
        moving = [n for n in acct.mailboxes if n == old or names.is_inferior(n, old)]
        for name in sorted(moving):
            mbox = acct.mailboxes.pop(name)
            mbox.name = new + name[len(old) :]
            acct.mailboxes[mbox.name] = mbox
            events.append(MailboxChanged(self._account, mbox.id, "renamed", mbox.name, name))
        events += self._prune_placeholders(acct, old)
        self._publish(events)

    async def set_subscribed(self, name: str, subscribed: bool) -> None:
        self._store.check_write()
        acct = self._acct()
        name = names.normalize_mailbox_name(name)
        if subscribed:
            acct.subscriptions.add(name)
        else:
            acct.subscriptions.discard(name)
        mbox = acct.mailboxes.get(name)
        self._publish([MailboxChanged(self._account, mbox.id if mbox else 0, "subscribed", name)])

    async def subscriptions(self) -> list[str]:
        return sorted(self._acct().subscriptions)

    async def counts(self, mailbox_id: int) -> MailboxCounts:
        mbox = self._mbox(mailbox_id)
        msgs = mbox.messages.values()
        return MailboxCounts(
            len(mbox.messages),
            sum(1 for m in msgs if SEEN not in m.flags),
            sum(1 for m in msgs if DELETED in m.flags),
            sum(len(m.data) for m in msgs),
            sum(len(m.data) for m in msgs if DELETED in m.flags),
        )

    async def append(
        self,
        mailbox: str,
        source: MessageSource,
        flags: Iterable[str] = (),
        internaldate: InternalDate | None = None,
    ) -> AppendResult:
        self._store.check_write()
        acct = self._acct()
        data = _read_source(source)
        mbox = self._store._mailbox_by_name(acct, mailbox)
        when = zoned(internaldate)
        acct.check_quota(self._store.quota_defaults, len(data), 1)
        return self._store._add(acct, mbox, data, normalize_flags(flags), when)

    async def append_many(
        self,
        mailbox: str,
        messages: Sequence[tuple[bytes, Iterable[str], InternalDate | None]],
    ) -> list[AppendResult]:
        self._store.check_write()
        acct = self._acct()
        mbox = self._store._mailbox_by_name(acct, mailbox)
        acct.check_quota(
            self._store.quota_defaults, sum(len(d) for d, _f, _w in messages), len(messages)
        )
        now = time.time()
        return [
            self._store._add(acct, mbox, bytes(d), normalize_flags(f), zoned(w, now))
            for d, f, w in messages
        ]

    async def replace(
        self,
        mailbox_id: int,
        uid: int,
        mailbox: str,
        message: tuple[bytes, Iterable[str], InternalDate | None],
    ) -> AppendResult:
        self._store.check_write()
        acct = self._acct()
        src = self._mbox(mailbox_id)
        mbox = self._store._mailbox_by_name(acct, mailbox)
        if uid not in src.messages:
            raise MessageNotFound(f"UID {uid} of {src.name}")
        data, flags, when = message
        acct.check_quota(self._store.quota_defaults, len(data) - len(src.messages[uid].data), 0)
        result = self._store._add(acct, mbox, bytes(data), normalize_flags(flags), zoned(when))
        self._remove(src, [uid])
        return result

    async def list_messages(self, mailbox_id: int) -> list[MessageMeta]:
        return [m.meta() for m in self._mbox(mailbox_id).messages.values()]

    async def list_uids_flags(self, mailbox_id: int) -> UidFlags:
        messages = self._mbox(mailbox_id).messages.values()
        return UidFlags(
            array("I", [m.uid for m in messages]),
            [m.flags for m in messages],
            array("Q", [m.modseq for m in messages]),
        )

    async def changed_since(self, mailbox_id: int, modseq: int) -> list[MessageMeta]:
        return [m.meta() for m in self._mbox(mailbox_id).messages.values() if m.modseq > modseq]

    async def refresh(self, mailbox_id: int) -> None:
        self._mbox(mailbox_id)  # nothing outside this process changes the memory store

    async def watch(self, mailbox_id: int) -> FolderWatch:
        self._mbox(mailbox_id)
        return NO_WATCH  # (and nothing to watch: every change is this process's own)

    async def changes_since(self, mailbox_id: int, modseq: int) -> MailboxDelta:
        mbox = self._mbox(mailbox_id)
        return MailboxDelta(
            mbox.highestmodseq,
            [m.meta() for m in mbox.messages.values() if m.modseq > modseq],
            sorted({u for u, ms in mbox.expunged if ms > modseq}),
            modseq >= mbox.expunge_horizon,
        )

    def prune_expunge_history(self, mailbox_id: int, keep: int = 0) -> None:
        """Keep only the newest `keep` expunge records, as the SQLite store's housekeeping
        bounds its history (docs/store.md): deltas from before the horizon are incomplete."""
        mbox = self._mbox(mailbox_id)
        if len(mbox.expunged) <= keep:
            return
        dropped = mbox.expunged[: len(mbox.expunged) - keep]
        mbox.expunged = mbox.expunged[len(dropped) :]
        mbox.expunge_horizon = max(mbox.expunge_horizon, max(ms for _, ms in dropped))

    async def recent_claimed(self, mailbox_id: int) -> int:
        return self._mbox(mailbox_id).recent_claimed

    async def claim_recent(self, mailbox_id: int, up_to: int) -> int:
        mbox = self._mbox(mailbox_id)
        before = mbox.recent_claimed
        mbox.recent_claimed = max(before, up_to)
        return before

    async def read_message(self, mailbox_id: int, uid: int) -> bytes:
        try:
            mbox = self._mbox(mailbox_id)
        except MailboxNotFound:
            raise KeyError(uid) from None
        return mbox.messages[uid].data

    async def read_head(self, mailbox_id: int, uid: int, octets: int) -> tuple[bytes, bool]:
        try:
            data = self._mbox(mailbox_id).messages[uid].data
        except MailboxNotFound:
            raise KeyError(uid) from None
        return data[:octets], len(data) <= octets

    async def read_messages(self, mailbox_id: int, uids: Sequence[int]) -> list[bytes | KeyError]:
        try:
            messages = self._mbox(mailbox_id).messages
        except MailboxNotFound:
            return [KeyError(uid) for uid in uids]
        return [m.data if (m := messages.get(uid)) is not None else KeyError(uid) for uid in uids]

    async def read_wire(
        self, mailbox_id: int, uids: Sequence[int]
    ) -> list[tuple[bytes, bool] | KeyError]:
        # the bytes as given: nothing is known of their line ends
        return [
            g if isinstance(g, KeyError) else (g, False)
            for g in await self.read_messages(mailbox_id, uids)
        ]

    async def message_ids(
        self, mailbox_id: int, uids: Sequence[int] | None = None
    ) -> dict[int, MessageIds]:
        messages = self._mbox(mailbox_id).messages
        picked = messages.values() if uids is None else [messages[u] for u in uids if u in messages]
        return {m.uid: MessageIds(m.emailid, m.savedate) for m in picked}

    async def set_flags(
        self,
        mailbox_id: int,
        uids: Sequence[int],
        op: FlagOp,
        flags: Iterable[str],
        unchangedsince: int | None = None,
    ) -> tuple[list[MessageMeta], list[int]]:
        self._store.check_write()
        mbox = self._mbox(mailbox_id)
        wanted = normalize_flags(flags)
        changes: list[tuple[_Message, frozenset[str]]] = []
        failed: list[int] = []
        for uid in sorted(set(uids)):
            msg = mbox.messages.get(uid)
            if msg is None:
                continue
            if unchangedsince is not None and msg.modseq > unchangedsince:
                failed.append(uid)  # RFC 7162 3.1.3
                continue
            new = apply_op(msg.flags, op, wanted)
            if new != msg.flags:
                changes.append((msg, new))
        if not changes:
            return [], failed
        modseq = mbox.bump()
        for msg, new in changes:
            msg.flags = new
            msg.modseq = modseq
        self._publish(
            [FlagsChanged(self._account, mbox.id, m.uid, m.flags, modseq) for m, _ in changes]
        )
        return [m.meta() for m, _ in changes], failed

    def _remove(self, mbox: _Mailbox, uids: list[int]) -> list[int]:
        if not uids:
            return []
        modseq = mbox.bump()
        for uid in uids:
            del mbox.messages[uid]
            mbox.expunged.append((uid, modseq))
        self._publish([MessagesExpunged(self._account, mbox.id, tuple(uids), modseq)])
        return uids

    async def expunge(self, mailbox_id: int, uids: Sequence[int] | None = None) -> list[int]:
        self._store.check_write()
        mbox = self._mbox(mailbox_id)
        allowed = None if uids is None else set(uids)
        doomed = [
            u
            for u, m in mbox.messages.items()
            if DELETED in m.flags and (allowed is None or u in allowed)
        ]
        return self._remove(mbox, doomed)

    async def delete_messages(self, mailbox_id: int, uids: Sequence[int]) -> list[int]:
        self._store.check_write()
        mbox = self._mbox(mailbox_id)
        return self._remove(mbox, sorted(set(uids) & mbox.messages.keys()))

    def _copy(
        self, src: _Mailbox, uids: Sequence[int], dst_name: str
    ) -> tuple[_Mailbox, CopyResult]:
        acct = self._acct()
        dst = self._store._mailbox_by_name(acct, dst_name)
        present = [u for u in sorted(set(uids)) if u in src.messages]
        pairs: list[tuple[int, int]] = []
        if present:
            modseq = dst.bump()
            saved = time.time()  # RFC 8514: a copy is saved now
            events: list[ChangeEvent] = []
            for uid in present:
                msg = src.messages[uid]
                nuid = dst.uidnext
                dst.uidnext += 1
                dst.messages[nuid] = _Message(
                    nuid, msg.flags, modseq, msg.internaldate, msg.data, msg.emailid, saved, msg.tz
                )
                pairs.append((uid, nuid))
                events.append(MessageAdded(self._account, dst.id, nuid, modseq))
            self._publish(events)
        return dst, CopyResult(dst.uidvalidity, tuple(pairs))

    async def copy(self, src_mailbox_id: int, uids: Sequence[int], dst: str) -> CopyResult:
        self._store.check_write()
        src = self._mbox(src_mailbox_id)
        picked = [src.messages[u] for u in set(uids) if u in src.messages]
        self._acct().check_quota(
            self._store.quota_defaults, sum(len(m.data) for m in picked), len(picked)
        )
        return self._copy(src, uids, dst)[1]

    async def quota(self) -> Quota:
        return self._acct().quota(self._store.quota_defaults)

    async def set_quota(self, storage: int | None, messages: int | None) -> None:
        acct = self._acct()
        acct.storage_limit, acct.message_limit = storage, messages

    async def quota_warning(self) -> Quota | None:
        acct = self._acct()
        q = acct.quota(self._store.quota_defaults)
        if q.storage_limit is None and q.message_limit is None:
            return None
        above = q.above(QUOTA_WARN)
        was, acct.warned = acct.warned, above
        return q if above and not was else None

    async def move(self, src_mailbox_id: int, uids: Sequence[int], dst: str) -> CopyResult:
        self._store.check_write()
        src = self._mbox(src_mailbox_id)
        _, result = self._copy(src, uids, dst)
        self._remove(src, [s for s, _ in result.pairs])
        return result

    def subscribe(self) -> ChangeSubscription:
        return self._store.hub.subscribe(self._account)

    def try_lock_maildrop(self) -> MaildropLock | None:
        if self._account in self._store._locks:
            return None
        self._store._locks.add(self._account)
        return _Lock(self._store._locks, self._account)

    async def search_index(
        self, mailbox_id: int, terms: Sequence[IndexTerm]
    ) -> list[TermHits | None]:
        return [None] * len(terms)  # no index: the caller reads the messages

    async def sort_index(
        self, mailbox_id: int, above: int = 0
    ) -> tuple[int, dict[int, SortFields]]:
        return 0, {}
