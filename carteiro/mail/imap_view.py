"""One IMAP session's view of its selected mailbox: MSN <-> UID, flags, \\Recent, pending changes.

Woken by the account's change events, it catches up when the session calls `sync()` by asking the
store what changed since the MODSEQ it last saw (one snapshot, in commit order): events are only
wake-ups, so one that comes late or out of order (another process's) costs nothing but a moment.
It announces an expunge only when the caller says the current command allows it (RFC 3501 7.4.1,
RFC 9051 7.5.1), so message sequence numbers never drift between client and server.
Never renders protocol bytes; never touches storage except through the AccountStore.
"""

from __future__ import annotations

import asyncio
import logging
from array import array
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from carteiro.store.api import (
    SEEN,
    SYSTEM_FLAGS,
    AccountStore,
    ChangeEvent,
    FlagsChanged,
    MailboxChanged,
    MailboxInfo,
    MailboxNotFound,
    MessageAdded,
    MessageMeta,
    MessagesExpunged,
    Resync,
)

log = logging.getLogger("carteiro.imap")

# Event-loop turns a view waits for an APPEND under way to log the message an event announces
# (AppendLog) before it asks the store instead.
CHAIN_WAITS = 3


@dataclass(slots=True)
class Updates:
    """What a sync found that the client must be told, in the order it must be told."""

    expunged: list[int] = field(default_factory=list)  # MSNs, one EXPUNGE each, in this order
    vanished: list[int] = field(default_factory=list)  # the same messages' UIDs, ascending
    exists: int | None = None
    recent: int | None = None
    flags: list[tuple[int, MessageMeta]] = field(default_factory=list)  # (MSN, meta)
    new_keywords: bool = False  # the mailbox's FLAGS list grew
    mailbox_gone: bool = False

    def __bool__(self) -> bool:
        return bool(
            self.expunged
            or self.exists is not None
            or self.flags
            or self.new_keywords
            or self.mailbox_gone
        )


class AppendLog:
    """What APPEND knew of the messages it added (UID, MODSEQ, flags, INTERNALDATE, size), by
    account, mailbox id and UID. The change feed's MessageAdded carries only the UID and MODSEQ:
    a view told of a message appended through this process (by any of its sessions) applies the
    event from here rather than asking the store. Bounded; the oldest entries go first."""

    __slots__ = ("_metas", "_size", "_writing")

    def __init__(self, size: int = 4096) -> None:
        self._metas: OrderedDict[tuple[str, int, int], MessageMeta] = OrderedDict()
        self._size = size
        self._writing: dict[str, int] = {}  # account -> APPENDs under way

    def begin(self, account: str) -> None:
        """An APPEND to `account` starts: its event may reach the views before `add` runs (the
        store wakes them at COMMIT, before the APPEND's own task resumes)."""
        self._writing[account] = self._writing.get(account, 0) + 1

    def end(self, account: str) -> None:
        """That APPEND is over (its messages added, or it failed)."""
        left = self._writing.get(account, 0) - 1
        if left > 0:
            self._writing[account] = left
        else:
            self._writing.pop(account, None)

    def writing(self, account: str) -> bool:
        return account in self._writing

    def add(self, account: str, mailbox_id: int, meta: MessageMeta) -> None:
        if len(self._metas) >= self._size:
            self._metas.popitem(last=False)
        self._metas[(account, mailbox_id, meta.uid)] = meta

    def get(self, account: str, mailbox_id: int, uid: int) -> MessageMeta | None:
        return self._metas.get((account, mailbox_id, uid))


class RecentClaims:
    """The highest UID a read-write session of this process has claimed as \\Recent, per mailbox
    (and UIDVALIDITY). The store's claims are at least that (a process's claims take effect in
    it at once), so a claim up to a UID at or below it would take nothing: answered here, with
    no store read (in a mailbox shared by many sessions, only the first to meet a new message
    asks the store)."""

    __slots__ = ("_top",)

    def __init__(self) -> None:
        self._top: dict[tuple[str, int, int], int] = {}

    def get(self, key: tuple[str, int, int]) -> int:
        return self._top.get(key, 0)

    def note(self, key: tuple[str, int, int], uid: int) -> None:
        if uid > self._top.get(key, 0):
            if len(self._top) >= 10_000:
                self._top.clear()  # only saves reads: forgetting costs one each
            self._top[key] = uid


class MailboxView:
    """The selected mailbox as this session knows it. MSN n is `uids[n - 1]`."""

    __slots__ = (
        "_behind",
        "_events",
        "_expunged",
        "account",
        "appended",
        "changed",
        "claims",
        "deleted",
        "info",
        "keywords",
        "metas",
        "modseq",
        "readonly",
        "recent",
        "rendered",
        "rendered_key",
        "store",
        "uids",
        "unseen",
    )

    def __init__(
        self,
        store: AccountStore,
        info: MailboxInfo,
        metas: list[MessageMeta],
        readonly: bool,
        recent_before: int,
        appended: AppendLog | None = None,
        claims: RecentClaims | None = None,
    ) -> None:
        """`recent_before`: the highest UID claimed as \\Recent before this session (see
        `start`); the messages above it are \\Recent in this session. `appended`: the log the
        server's APPENDs write (see AppendLog); without one, only this view's own. `claims`: the
        server's RecentClaims, if any."""
        self.store = store
        self.account = store.account
        self.info = info
        self.readonly = readonly
        self.metas = metas
        self.uids = array("I", [m.uid for m in metas])
        # One slot per message for the server's rendering of its metadata (FETCH 1:* (UID FLAGS)
        # asked again and again): opaque here, cleared whenever the message's meta is replaced,
        # and all at once when the renderer asks with another key (see `rendered_for`).
        self.rendered: list[bytes | None] = [None] * len(metas)
        self.rendered_key: object = None
        # messages without \\Seen, kept as metas change (STATUS UNSEEN of the selected mailbox)
        self.unseen = sum(1 for m in metas if SEEN not in m.flags)
        self._events: list[ChangeEvent] = []
        self._behind = False  # the store was seen past the view: catch up at the next sync
        self._expunged: set[int] = set()  # expunged in the store, not yet announced
        self.appended = appended if appended is not None else AppendLog(1000)
        self.claims = claims
        last = self.uids[-1] if self.uids else 0
        # what the view has caught up to: the store's changes after it are what sync() applies
        # (an `info` read before `metas` only makes sync() look again at what it already has)
        self.modseq = info.highestmodseq
        self.keywords: set[str] = set()
        for flags in {m.flags for m in metas}:
            self.keywords.update(f for f in flags if not f.startswith("\\"))
        self.recent: set[int] = set()
        self.deleted = False
        # UIDs whose flags changed or that arrived, for whoever set this to a set (the
        # session's live SEARCH/SORT contexts, RFC 5267 4.3); None: nobody asks, nothing kept
        self.changed: set[int] | None = None
        if recent_before < last:
            self.recent = set(self.uids[bisect_left(self.uids, recent_before + 1) :])

    @classmethod
    async def start(
        cls,
        store: AccountStore,
        info: MailboxInfo,
        metas: list[MessageMeta],
        readonly: bool,
        appended: AppendLog | None = None,
        claims: RecentClaims | None = None,
    ) -> MailboxView:
        """The view SELECT/EXAMINE opens on a snapshot. \\Recent (RFC 3501 2.3.2) comes from the
        store's claims, shared by every session and process and kept across restarts: SELECT
        claims what it sees, so those messages are \\Recent here and to no later session;
        EXAMINE (RFC 3501 6.3.2: MUST NOT cause messages to lose \\Recent) only looks, so it
        sees the unclaimed ones as \\Recent and leaves them to the next SELECT."""
        up_to = metas[-1].uid if metas else 0
        key = (store.account, info.id, info.uidvalidity)
        before = await _recent_before(store, info.id, up_to, readonly, claims, key)
        return cls(store, info, metas, readonly, before, appended, claims)

    @classmethod
    async def open(cls, store: AccountStore, name: str, readonly: bool) -> MailboxView:
        """SELECT/EXAMINE. Raises MailboxNotFound. The info is read before the message list so
        the view can tell stale MessageAdded events from new ones."""
        info = await store.get_mailbox(name)
        metas = await store.list_messages(info.id)
        return await cls.start(store, info, metas, readonly)

    # ---- lookups ----------------------------------------------------------------------------

    @property
    def id(self) -> int:
        return self.info.id

    def __len__(self) -> int:
        return len(self.uids)

    def index_of(self, uid: int) -> int | None:
        """0-based position of `uid`, or None."""
        i = bisect_left(self.uids, uid)
        if i < len(self.uids) and self.uids[i] == uid:
            return i
        return None

    def msn_of(self, uid: int) -> int | None:
        i = self.index_of(uid)
        return None if i is None else i + 1

    def is_expunged(self, uid: int) -> bool:
        """Gone from the store, still numbered here until announced."""
        return uid in self._expunged

    @property
    def max_uid(self) -> int:
        return self.uids[-1] if self.uids else 0

    def first_unseen(self) -> int | None:
        for i, m in enumerate(self.metas):
            if SEEN not in m.flags:
                return i + 1
        return None

    def counts_at(self, modseq: int) -> tuple[int, int] | None:
        """(messages, unseen) as the store has them at HIGHESTMODSEQ `modseq`: known here when
        the view has caught up to exactly that MODSEQ and has no event left to apply (expunges
        not yet announced are left out). Else None: ask the store."""
        if self.deleted or self._events or self.modseq != modseq:
            return None
        n, unseen = len(self.uids), self.unseen
        for uid in self._expunged:
            i = self.index_of(uid)
            if i is not None:
                n -= 1
                unseen -= SEEN not in self.metas[i].flags
        return n, unseen

    def rendered_for(self, key: object) -> list[bytes | None]:
        """The per-message rendering slots for a renderer identified by `key` (what it renders
        and how); another key empties them. Entries are valid while the message's meta (flags,
        MODSEQ) is the one they were rendered from: every change here sets the slot to None.
        \\Recent never changes while a message is in the view, so it may be rendered too."""
        if key != self.rendered_key:
            self.rendered_key = key
            self.rendered = [None] * len(self.metas)
        return self.rendered

    def _set_meta(self, i: int, meta: MessageMeta) -> None:
        """Every change of a message's meta goes through here (and _append, _remove)."""
        self.unseen += (SEEN not in meta.flags) - (SEEN not in self.metas[i].flags)
        self.metas[i] = meta
        self.rendered[i] = None

    def flag_list(self) -> list[str]:
        """The FLAGS response: system flags and every keyword in use (RFC 3501 7.2.6)."""
        return [*sorted(SYSTEM_FLAGS), *sorted(self.keywords)]

    def indexes_for_msns(self, ranges: Iterable[tuple[int, int]]) -> list[int]:
        """0-based indexes for inclusive MSN ranges (already resolved against `*`), ascending,
        without duplicates; numbers beyond the mailbox are dropped."""
        n = len(self.uids)
        spans: list[range] = []
        ordered = True  # ascending and disjoint (SequenceSet.resolve's): no set, no sort
        top = 0
        for lo, hi in ranges:
            if lo > hi:
                lo, hi = hi, lo
            lo = max(lo, 1)
            hi = min(hi, n)
            if lo <= hi:
                ordered = ordered and lo > top
                top = max(top, hi)
                spans.append(range(lo - 1, hi))
        if len(spans) == 1:
            return list(spans[0])
        if ordered:
            return [i for span in spans for i in span]
        return sorted({i for span in spans for i in span})

    def indexes_for_uids(self, ranges: Iterable[tuple[int, int]]) -> list[int]:
        """0-based indexes of the messages whose UID lies in the inclusive ranges."""
        out: set[int] = set()
        uids = self.uids
        for lo, hi in ranges:
            if lo > hi:
                lo, hi = hi, lo
            start = bisect_left(uids, lo)
            stop = bisect_left(uids, hi + 1)
            out.update(range(start, stop))
        return sorted(out)

    # ---- changes made by this session -------------------------------------------------------

    def apply_flags(self, metas: Iterable[MessageMeta]) -> bool:
        """Our own STORE's results (not announced as unsolicited). True when a new keyword
        appeared, so the caller sends the longer FLAGS list first."""
        grew = False
        for m in metas:
            i = self.index_of(m.uid)
            if i is not None and m.modseq >= self.metas[i].modseq:
                old = self.metas[i]
                self._set_meta(i, _reflagged(old, m.uid, m.flags, m.modseq))
                grew = self._note_keywords(m.flags) or grew
                if self.changed is not None:
                    self.changed.add(m.uid)
        return grew

    def note_appended(self, meta: MessageMeta) -> None:
        """An APPEND into this mailbox: its MessageAdded event needs no store lookup."""
        self.appended.add(self.account, self.info.id, meta)

    def expunge_now(self, uids: Iterable[int]) -> tuple[list[int], list[int]]:
        """Our own EXPUNGE/MOVE: remove these now; returns the MSNs to announce, in order
        (ascending, each already adjusted for the ones before it, as in RFC 3501 6.4.3), and
        their UIDs, ascending (what VANISHED says instead, RFC 7162 3.2.10)."""
        gone = {u for u in uids if self.index_of(u) is not None}
        self._expunged -= gone
        return self._remove(gone), sorted(gone)

    # ---- change feed ------------------------------------------------------------------------

    def feed(self, events: Iterable[ChangeEvent]) -> None:
        """Queue events; nothing changes until sync()."""
        self._events.extend(events)

    def behind(self) -> None:
        """This session saw the store past the view (a conditional STORE found messages changed
        since, RFC 7162 3.1.3) before the change feed's wake-up came: the next sync() asks the
        store what changed, so the client is not told of older MODSEQs than the ones it was
        just refused for."""
        self._behind = True

    @property
    def has_pending(self) -> bool:
        return bool(self._events or self._expunged or self._behind)

    async def sync(self, allow_expunge: bool, rev2: bool = False) -> Updates:
        """Catch up with the store if an event says something happened, and say what to announce
        now. Expunges wait for a command that allows them; flag changes and new messages are
        announced at once."""
        events, self._events = self._events, []
        behind, self._behind = self._behind, False
        upd = Updates()
        dirty: dict[int, None] = {}
        resync = False
        mine: list[MessageAdded | MessagesExpunged | FlagsChanged] = []
        for ev in events:
            if isinstance(ev, Resync):
                if ev.mailbox_id is None or ev.mailbox_id == self.info.id:
                    resync = True
                continue
            if ev.mailbox_id != self.info.id:
                continue
            if isinstance(ev, MailboxChanged):
                if ev.kind == "deleted":
                    # The selected mailbox is gone: every message in it is expunged.
                    self.deleted = True
                    self._expunged.update(self.uids)
                    upd.mailbox_gone = True
                continue
            mine.append(ev)
        new_metas: list[MessageMeta] = []
        if self.deleted:
            pass
        elif resync:
            new_metas = await self._catch_up(0, dirty, upd)
        elif mine or behind:
            # behind: the events may not say all there is yet; the store does
            applied = self._apply_chain(mine, dirty, upd) if not behind else None
            for _ in range(CHAIN_WAITS):
                # an APPEND of this process committed, its task not yet resumed to log it: it
                # runs within a turn or two of the event loop, cheaper than asking the store
                if applied is not False or not self.appended.writing(self.account):
                    break
                await asyncio.sleep(0)
                applied = self._apply_chain(mine, dirty, upd)
            if applied is None or applied is False:
                applied = await self._catch_up(self.modseq, dirty, upd)
            new_metas = applied
        if allow_expunge and self._expunged:
            gone, self._expunged = self._expunged, set()
            upd.expunged = self._remove(gone)
            upd.vanished = sorted(gone)
        if new_metas:
            new_metas.sort(key=lambda m: m.uid)
            # one claim per sync, however many messages arrived (RFC 3501 2.3.2: the first
            # session told of a message sees it \Recent, a read-write one takes it)
            try:
                key = (self.account, self.info.id, self.info.uidvalidity)
                before = await _recent_before(
                    self.store, self.info.id, new_metas[-1].uid, self.readonly, self.claims, key
                )
            except MailboxNotFound:  # deleted under us: its deletion event says so
                log.debug("claiming recent in mailbox %d failed", self.info.id, exc_info=True)
                before = new_metas[-1].uid
            self._append(new_metas, before, upd)
        if self.changed is not None:
            self.changed.update(dirty)
            self.changed.update(m.uid for m in new_metas)
        for uid in dirty:
            i = self.index_of(uid)
            if i is not None:
                upd.flags.append((i + 1, self.metas[i]))
        upd.flags.sort(key=lambda t: t[0])
        return upd

    def _apply_chain(
        self,
        events: list[MessageAdded | MessagesExpunged | FlagsChanged],
        dirty: dict[int, None],
        upd: Updates,
    ) -> list[MessageMeta] | Literal[False] | None:
        """Apply events directly when they are the whole story: their MODSEQs follow the view's
        without a gap and every added message is known (an APPEND through this process, see
        AppendLog). Returns the new messages; else nothing is changed and the caller asks the
        store: False when only an added message is unknown (yet), None otherwise."""
        mods = sorted({ev.modseq for ev in events})
        if mods[0] != self.modseq + 1 or mods[-1] - self.modseq != len(mods):
            return None
        known: dict[int, MessageMeta] = {}
        last = self.max_uid
        for ev in events:
            if isinstance(ev, MessageAdded):
                meta = self.appended.get(self.account, self.info.id, ev.uid)
                if meta is None:
                    return False  # (nothing was changed yet: the checks come first)
                if meta.modseq != ev.modseq or ev.uid <= last:
                    return None
                known[ev.uid] = meta
        pending: dict[int, MessageMeta] = {}
        for ev in sorted(events, key=lambda e: e.modseq):
            if isinstance(ev, MessageAdded):
                pending[ev.uid] = known[ev.uid]
            elif isinstance(ev, MessagesExpunged):
                for u in ev.uids:
                    if pending.pop(u, None) is None and self.index_of(u) is not None:
                        self._expunged.add(u)
            else:
                p = pending.get(ev.uid)
                if p is not None:
                    pending[ev.uid] = _reflagged(p, ev.uid, ev.flags, ev.modseq)
                    continue
                i = self.index_of(ev.uid)
                if i is not None and ev.modseq > self.metas[i].modseq:
                    old = self.metas[i]
                    if old.flags != ev.flags:
                        dirty[ev.uid] = None
                    self._set_meta(i, _reflagged(old, ev.uid, ev.flags, ev.modseq))
                    if self._note_keywords(ev.flags):
                        upd.new_keywords = True
        self.modseq = mods[-1]
        return sorted(pending.values(), key=lambda m: m.uid)

    async def _catch_up(
        self, since: int, dirty: dict[int, None], upd: Updates
    ) -> list[MessageMeta]:
        """Apply what the store says changed after MODSEQ `since` (0: compare everything).
        Returns the new messages, to append in UID order."""
        try:
            delta = await self.store.changes_since(self.info.id, since)
            if not delta.complete:  # the expunge history was pruned past `since`
                since = 0
                delta = await self.store.changes_since(self.info.id, 0)
        except Exception:  # the mailbox vanished under us: its deletion event says so
            log.debug("catching up mailbox %d failed", self.info.id, exc_info=True)
            return []
        if since == 0:
            present = {m.uid for m in delta.changed}
            self._expunged.update(u for u in self.uids if u not in present)
        else:
            for uid in delta.expunged:
                if self.index_of(uid) is not None:
                    self._expunged.add(uid)
        last = self.max_uid
        new: list[MessageMeta] = []
        for m in delta.changed:
            i = self.index_of(m.uid)
            if i is not None:
                old = self.metas[i]
                if m.modseq > old.modseq:
                    if m.flags != old.flags:
                        dirty[m.uid] = None
                    self._set_meta(i, m)
                    if self._note_keywords(m.flags):
                        upd.new_keywords = True
            elif m.uid > last:
                new.append(m)
            else:
                # below our highest UID yet unknown: cannot happen while UIDs commit in order
                log.warning("mailbox %d: UID %d appeared below %d", self.info.id, m.uid, last)
        self.modseq = max(self.modseq, delta.highestmodseq)
        return new

    def _append(self, new: Sequence[MessageMeta], recent_before: int, upd: Updates) -> None:
        """Add `new` (ascending UIDs); those above `recent_before` are \\Recent here."""
        for m in new:
            self.metas.append(m)
            self.rendered.append(None)
            self.unseen += SEEN not in m.flags
            self.uids.append(m.uid)
            if self._note_keywords(m.flags):
                upd.new_keywords = True
        self.recent.update(m.uid for m in new if m.uid > recent_before)
        upd.exists = len(self.uids)
        upd.recent = len(self.recent)

    def _remove(self, gone: set[int]) -> list[int]:
        """Drop these UIDs; the MSNs to announce (see expunge_now). New lists rather than edits
        in place, cut by slices around the removed positions (one expunge in a big mailbox is a
        few memory copies, not a Python loop over every message)."""
        if not gone:
            return []
        pos = sorted(i for i in map(self.index_of, gone) if i is not None)
        self.recent -= gone
        if not pos:
            return []
        uids, metas, rendered = self.uids, self.metas, self.rendered
        keep_uids = array("I")
        keep_metas: list[MessageMeta] = []
        keep_rendered: list[bytes | None] = []
        start = 0
        for p in pos:
            self.unseen -= SEEN not in metas[p].flags
            if p > start:
                keep_uids += uids[start:p]
                keep_metas += metas[start:p]
                keep_rendered += rendered[start:p]
            start = p + 1
        keep_uids += uids[start:]
        keep_metas += metas[start:]
        keep_rendered += rendered[start:]
        self.uids = keep_uids
        self.metas = keep_metas
        self.rendered = keep_rendered
        return [p + 1 - j for j, p in enumerate(pos)]

    def _note_keywords(self, flags: frozenset[str]) -> bool:
        grew = False
        for f in flags:
            if not f.startswith("\\") and f not in self.keywords:
                self.keywords.add(f)
                grew = True
        return grew


async def _recent_before(
    store: AccountStore,
    mailbox_id: int,
    up_to: int,
    readonly: bool,
    claims: RecentClaims | None = None,
    key: tuple[str, int, int] = ("", 0, 0),
) -> int:
    """The highest UID claimed as \\Recent before this session; a read-write session claims every
    UID up to `up_to` at the same time (atomically, so each message is recent to one session).
    When this process already claimed `up_to` (claims), the answer (at least `up_to`: nothing
    is recent to the caller) needs no store read."""
    if up_to == 0:
        return 0  # no message to be recent: nothing to ask
    if readonly:
        return await store.recent_claimed(mailbox_id)
    if claims is not None:
        top = claims.get(key)
        if top >= up_to:
            return top
    before = await store.claim_recent(mailbox_id, up_to)
    if claims is not None:
        claims.note(key, up_to)
    return before


def _reflagged(old: MessageMeta, uid: int, flags: frozenset[str], modseq: int) -> MessageMeta:
    """`old` with new flags and MODSEQ (its INTERNALDATE, zone and size stay)."""
    return MessageMeta(uid, flags, modseq, old.internaldate, old.size, old.internaldate_tz)
