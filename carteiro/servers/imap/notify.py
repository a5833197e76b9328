"""NOTIFY (RFC 5465): the session tells the client what happens in its mailboxes while it waits.

A NOTIFY SET session holds its own subscription to the account's change feed (events from this
process and, through the store's cross-process feed, from others such as `carteiro deliver`).
Between commands, and in IDLE, the session waits on the client and that feed together:
- other mailboxes: message events become one STATUS per mailbox and batch (RFC 5465 5.1-5.3),
  MailboxName and SubscriptionChange become LIST (RFC 5465 5.4, 5.5), METADATA changes (this
  process's, from mail.metadata_db) become an unsolicited METADATA with the entry names;
- the selected mailbox under SELECTED: its updates (EXISTS, FETCH, EXPUNGE/VANISHED) are pushed at
  once; under SELECTED-DELAYED, or with no SELECTED group, they wait for a command, as without
  NOTIFY (expunges never move message numbers under a client that did not ask for it);
- MessageNew fetch attributes: the FETCH follows each EXISTS (bodies as .PEEK: never \\Seen).
Nothing is pushed while a command is being read or run. A client that does not read, so that the
output waiting in the socket passes OVERFLOW, gets NOTIFICATIONOVERFLOW and NOTIFY is off.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from bisect import bisect_right

from carteiro.proto.imap import commands as c
from carteiro.proto.imap import fetch as pf
from carteiro.proto.imap import notify as pn
from carteiro.proto.imap.sets import SequenceSet
from carteiro.servers.imap import fetch as fetch_cmd
from carteiro.servers.imap import render
from carteiro.servers.imap.mailbox import status_response
from carteiro.servers.imap.session import Result, Session, State, bad, command, ok
from carteiro.store.api import (
    SEPARATOR,
    ChangeEvent,
    ChangeSubscription,
    FlagsChanged,
    MailboxChanged,
    MailboxInfo,
    MailboxNotFound,
    MessageAdded,
    MessagesExpunged,
    Resync,
    StoreError,
)

log = logging.getLogger("carteiro.imap")

OVERFLOW = 1 << 20  # octets waiting in the socket before NOTIFICATIONOVERFLOW
INBOX = "INBOX"
_SEEN_SETTING = (pf.RFC822, pf.RFC822_TEXT)

_KIND = {MessageAdded: pn.MESSAGE_NEW, MessagesExpunged: pn.MESSAGE_EXPUNGE}
# STATUS items per event, in the order they are written (RFC 5465 5.1-5.3, as mox and Dovecot)
_STATUS_ORDER = ("MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ")


class Notifier:
    """One session's NOTIFY SET: its event groups, its feed subscription, what it knows of the
    account's mailboxes (names by id, subscriptions) to match events and word LIST responses."""

    def __init__(self, s: Session, req: pn.Notify, sub: ChangeSubscription) -> None:
        self.groups = req.groups
        self.sub = sub
        self.account = s.account
        self.names: dict[int, MailboxInfo] = {}
        self.subscribed: set[str] = set()
        self.meta: list[tuple[int, tuple[str, ...]]] = []  # METADATA changes to announce
        self.events: list[ChangeEvent] = []  # from the feed, not yet announced
        self._wake: asyncio.Future[None] | None = None  # a waiter for `events` or `meta`
        self._watch: asyncio.Task[None] | None = None
        self.closed = False
        sel = next((g for g in req.groups if g.selected), None)
        self.selected = sel
        self.push_selected = sel is not None and sel.spec == pn.SELECTED and bool(sel.events)
        new = (
            next((e for e in (sel.events or ()) if e.name == pn.MESSAGE_NEW), None) if sel else None
        )
        self.fetch: tuple[pf.FetchAttr, ...] = new.fetch if new else ()
        self.flag_change = sel is not None and pn.FLAG_CHANGE in sel.names()
        self._metadata = s.server.metadata
        self._metadata.listen(s.account, self._on_metadata)

    def start(self) -> None:
        """The one long-lived task that moves feed events into `events` (so a read costs one
        read task and a future, not a task per source; measured in bench/notify.py)."""
        self._watch = asyncio.get_running_loop().create_task(self._watcher())

    async def _watcher(self) -> None:
        sub = self.sub
        while (ev := await sub.next()) is not None:
            self.events.append(ev)
            self.events.extend(sub.pending())
            self._signal()

    def _signal(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.sub.close()  # ends the watcher
            if self._watch is not None:
                self._watch.cancel()
            self._metadata.unlisten(self.account, self._on_metadata)
            self._signal()

    def _on_metadata(self, account: str, mailbox_id: int, names: tuple[str, ...]) -> None:
        self.meta.append((mailbox_id, names))
        self._signal()

    @property
    def pending(self) -> bool:
        return bool(self.events or self.meta)

    def arm(self) -> asyncio.Future[None]:
        """A future done once there is something to announce (at once if there is already)."""
        fut = self._wake
        if fut is None or fut.done():
            fut = self._wake = asyncio.get_running_loop().create_future()
        if self.pending or self.closed:
            fut.set_result(None)
        return fut

    async def announce_pending(self, s: Session) -> None:
        events, self.events = self.events, []
        await self.announce(s, events)

    async def load(self, s: Session) -> None:
        assert s.store is not None
        self.names = {b.id: b for b in await s.store.list_mailboxes()}
        self.subscribed = set(await s.store.subscriptions())

    # ---- matching (RFC 5465 6: the first group whose mailboxes match decides) -----------------

    def match(self, s: Session, mailbox_id: int | None, name: str, kind: str) -> bool:
        selected_id = s.view.id if s.view is not None else None
        message_event = kind in pn.MESSAGE_EVENTS
        for g in self.groups:
            if g.selected:
                if mailbox_id is None or mailbox_id != selected_id or not message_event:
                    continue
                return kind in g.names()
            if message_event and mailbox_id is not None and mailbox_id == selected_id:
                continue  # the selected mailbox's messages are the SELECTED group's business
            if not self._covers(g, name):
                continue
            if g.events is None:
                return False  # NONE: nothing from these mailboxes, whatever later groups say
            if kind in g.names():
                return True
        return False

    def _covers(self, g: pn.EventGroup, name: str) -> bool:
        if g.spec == pn.PERSONAL:
            return True  # one personal namespace: every mailbox of the account
        if not name:
            return False  # server-level events belong to PERSONAL only
        if g.spec == pn.INBOXES:
            # the mailboxes delivery files into: INBOX and its inferiors (plus-addresses)
            return name == INBOX or name.startswith(INBOX + SEPARATOR)
        if g.spec == pn.SUBSCRIBED:
            return name in self.subscribed
        if g.spec == pn.SUBTREE:
            return any(name == m or name.startswith(m + SEPARATOR) for m in g.mailboxes)
        if g.spec == pn.MAILBOXES:
            return name in g.mailboxes
        return False

    def wants_status(self, s: Session, info: MailboxInfo) -> bool:
        return any(
            self.match(s, info.id, info.name, k) for k in (pn.MESSAGE_NEW, pn.MESSAGE_EXPUNGE)
        )

    def wants_modseq(self, s: Session, info: MailboxInfo) -> bool:
        """HIGHESTMODSEQ in the mailbox's STATUS: the client enabled CONDSTORE, or it watches
        the mailbox's flag changes, and a resync after them starts from that value (as Dovecot;
        imaptest's notify expects it)."""
        return s.condstore or self.match(s, info.id, info.name, pn.FLAG_CHANGE)

    # ---- waiting between commands ----------------------------------------------------------

    async def recv(self, s: Session) -> bytes:
        """The client's next bytes (as Session.recv), announcing events while waiting for them."""
        read_task = asyncio.get_running_loop().create_task(s.recv())
        read_task.add_done_callback(lambda _: self._signal())
        try:
            while True:
                if self.pending:
                    await self.announce_pending(s)
                    await s.flush(drain=False)
                    if s.state is State.LOGOUT:
                        return b""  # the selected mailbox was deleted: BYE was said
                if read_task.done():
                    return read_task.result()
                if self.closed or s.notify is not self:
                    return await read_task  # overflow turned NOTIFY off
                await self.arm()
        finally:
            if not read_task.done():
                read_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await read_task

    # ---- turning events into responses -----------------------------------------------------

    async def announce(self, s: Session, events: list[ChangeEvent]) -> None:
        """Write what `events` (and METADATA changes) mean for this client; the selected
        mailbox's updates too when SELECTED asks for them at once."""
        meta, self.meta = self.meta, []
        if not events and not meta:
            return
        selected_id = s.view.id if s.view is not None else None
        mine: list[ChangeEvent] = []  # the selected mailbox's
        status: dict[int, set[str]] = {}
        reloaded = False
        for ev in events:
            if isinstance(ev, MessageAdded | MessagesExpunged | FlagsChanged):
                if ev.mailbox_id == selected_id:
                    mine.append(ev)
                    continue
                info = self.names.get(ev.mailbox_id)
                if info is None and not reloaded:
                    # a mailbox we have not heard of (its creation's event was lost in a
                    # collapsed backlog): read the list once for this batch
                    reloaded = True
                    await self.load(s)
                    info = self.names.get(ev.mailbox_id)
                kind = _KIND.get(type(ev), pn.FLAG_CHANGE)
                if info is not None and self.match(s, info.id, info.name, kind):
                    status.setdefault(info.id, set()).add(kind)
            elif isinstance(ev, MailboxChanged):
                if ev.mailbox_id == selected_id and ev.kind != "subscribed":
                    mine.append(ev)  # deleted or renamed under the session: the view says so
                await self._mailbox_event(s, ev)
            elif isinstance(ev, Resync):
                mine.append(ev)
                await self._resync(s, status)
        for mid, kinds in status.items():
            await self._status(s, mid, kinds)
        for mid, names in meta:
            self._metadata_event(s, mid, names)
        if self.push_selected and s.view is not None and self._wanted(mine):
            # RFC 5465 6: SELECTED, so at once, expunges included. The view hears the events
            # from its own subscription too, maybe later (another thread publishes to each in
            # turn): they are idempotent, so it is fed these now.
            s.view.feed(mine)
            await s.sync(True)
        if s.conn.writer.transport.get_write_buffer_size() + len(s.out) > OVERFLOW:
            # RFC 5465 5.8: the client does not keep up; it must resynchronise by itself
            s.untagged("OK [NOTIFICATIONOVERFLOW] Too many notifications; NOTIFY is off")
            stop(s)

    def _wanted(self, mine: list[ChangeEvent]) -> bool:
        """Does the SELECTED group ask for any of these events? Flag changes alone wait for a
        command unless FlagChange was asked for (they ride along with the others)."""
        if not mine:
            return False
        if self.flag_change:
            return True
        return any(not isinstance(ev, FlagsChanged) for ev in mine)

    async def _status(self, s: Session, mailbox_id: int, kinds: set[str]) -> None:
        info = self.names.get(mailbox_id)
        if info is None or not info.selectable:
            return
        assert s.store is not None
        try:
            info = await s.store.get_mailbox(info.name)
        except MailboxNotFound:
            return
        items: set[str] = {"UNSEEN"}
        if kinds & {pn.MESSAGE_NEW, pn.MESSAGE_EXPUNGE}:
            items |= {"MESSAGES", "UIDNEXT"}
        if pn.FLAG_CHANGE in kinds:
            items.add("UIDVALIDITY")
        if self.wants_modseq(s, info):
            items.add("HIGHESTMODSEQ")
        s.write(await status_response(s, info, [i for i in _STATUS_ORDER if i in items]))

    async def _mailbox_event(self, s: Session, ev: MailboxChanged) -> None:
        assert s.store is not None
        if ev.kind == "subscribed":
            self.subscribed = set(await s.store.subscriptions())
            if self.match(s, ev.mailbox_id or None, ev.name, pn.SUBSCRIPTION_CHANGE):
                self._list(s, ev.name)
            return
        if ev.kind == "deleted":
            self.names.pop(ev.mailbox_id, None)
            try:  # deleted with inferiors: the name stays, \Noselect
                info = await s.store.get_mailbox(ev.name)
                self.names[info.id] = info
            except MailboxNotFound:
                pass
        else:
            try:
                info = await s.store.get_mailbox(ev.name)
            except MailboxNotFound:  # gone again since: its own event follows
                return
            self.names[info.id] = info
        old_name = ev.old_name if ev.kind == "renamed" else ""
        if self.match(s, ev.mailbox_id, ev.name, pn.MAILBOX_NAME) or (
            old_name and self.match(s, ev.mailbox_id, old_name, pn.MAILBOX_NAME)
        ):
            self._list(s, ev.name, old_name)

    def _list(self, s: Session, name: str, old_name: str = "") -> None:
        """RFC 5465 5.4/5.5: a LIST response for the mailbox as it is now (RFC 5258 \\NonExistent
        when it is gone; OLDNAME after a rename)."""
        info = next((b for b in self.names.values() if b.name == name), None)
        attrs = []
        if info is None:
            attrs.append("\\NonExistent")
        elif not info.selectable:
            attrs.append("\\Noselect")
        if name in self.subscribed:
            attrs.append("\\Subscribed")
        line = b"* LIST (" + " ".join(attrs).encode() + b') "/" ' + s.mbox(name)
        if old_name:
            line += b' ("OLDNAME" (' + s.mbox(old_name) + b"))"
        s.write(line + b"\r\n")

    def _metadata_event(self, s: Session, mailbox_id: int, names: tuple[str, ...]) -> None:
        from carteiro.mail.metadata_db import SERVER

        if mailbox_id == SERVER:
            if not any(pn.SERVER_METADATA_CHANGE in g.names() for g in self.groups):
                return
            box = b'""'
        else:
            info = self.names.get(mailbox_id)
            if info is None or not self.match(s, None, info.name, pn.MAILBOX_METADATA_CHANGE):
                return
            box = s.mbox(info.name)
        # RFC 5464 4.4.2 unsolicited form: the mailbox and the entry names, no values
        entries = b" ".join(render.astring(n) for n in names)
        s.write(b"* METADATA " + box + b" " + entries + b"\r\n")

    async def _resync(self, s: Session, status: dict[int, set[str]]) -> None:
        """The feed lost track (a slow consumer's backlog, a restart of the cross-process feed):
        compare the account with what we knew, say what changed, and the STATUS of every
        mailbox the client watches (it cannot be told which ones changed)."""
        assert s.store is not None
        before = self.names
        await self.load(s)
        for mid, info in self.names.items():
            was = before.get(mid)
            if was is None:
                self._maybe_list(s, info.name, pn.MAILBOX_NAME)
            elif was.name != info.name and (
                self.match(s, mid, info.name, pn.MAILBOX_NAME)
                or self.match(s, mid, was.name, pn.MAILBOX_NAME)
            ):
                self._list(s, info.name, was.name)
            unselected = s.view is None or s.view.id != mid
            if info.selectable and unselected and self.wants_status(s, info):
                status.setdefault(mid, set()).add(pn.MESSAGE_NEW)
        for mid, was in before.items():
            if mid not in self.names:
                self._maybe_list(s, was.name, pn.MAILBOX_NAME)

    def _maybe_list(self, s: Session, name: str, kind: str) -> None:
        if self.match(s, None, name, kind):
            self._list(s, name)

    # ---- the selected mailbox's MessageNew fetch attributes ----------------------------------

    async def fetch_new(self, s: Session, above: int) -> None:
        """RFC 5465 5.2: after EXISTS, the FETCH of the new messages (UIDs above `above`) with
        the MessageNew fetch attributes of the SELECTED/SELECTED-DELAYED group."""
        view = s.view
        if not self.fetch or view is None:
            return
        new = view.uids[bisect_right(view.uids, above) :]
        if not new:
            return
        req = c.Fetch(SequenceSet([(new[0], new[-1])]), self.fetch, uid=True)
        try:
            await fetch_cmd.fetch(s, "", req)
        except (StoreError, OSError) as e:
            if isinstance(e, ConnectionError):
                raise
            # the EXISTS was said; the client can FETCH them itself
            log.warning("imap %s: NOTIFY MessageNew FETCH failed: %s", s.account, e)


def _peek(attrs: tuple[pf.FetchAttr, ...]) -> tuple[pf.FetchAttr, ...] | None:
    """The attributes with every body section as .PEEK (a notification never sets \\Seen); None
    when one can only set it (RFC822, RFC822.TEXT)."""
    if any(a.kind in _SEEN_SETTING for a in attrs):
        return None
    return tuple(dataclasses.replace(a, peek=True) if a.sets_seen else a for a in attrs)


def stop(s: Session) -> None:
    if s.notify is not None:
        s.notify.close()
        s.notify = None


@command(pn.Notify)
async def notify(s: Session, tag: str, req: pn.Notify) -> Result:
    assert s.store is not None
    if not req.groups:
        stop(s)  # NOTIFY NONE (RFC 5465 3.1): only what IMAP4rev1 itself sends
        return ok("NOTIFY completed.")
    groups = []
    for g in req.groups:
        events = []
        for e in g.events or ():
            if e.fetch:
                attrs = _peek(e.fetch)
                if attrs is None:
                    return bad("RFC822 and RFC822.TEXT would set \\Seen: use BODY.PEEK[]")
                e = dataclasses.replace(e, fetch=attrs)
            events.append(e)
        groups.append(
            dataclasses.replace(g, events=tuple(events) if g.events is not None else None)
        )
    req = dataclasses.replace(req, groups=tuple(groups))
    stop(s)
    sub = s.store.subscribe()  # before reading the account: no change falls between
    n = Notifier(s, req, sub)
    try:
        await n.load(s)
    except BaseException:
        n.close()
        raise
    s.notify = n
    n.start()
    if req.status:
        # RFC 5465 3.1 STATUS: the current state of every watched mailbox but the selected one
        for info in sorted(n.names.values(), key=lambda b: (b.name != INBOX, b.name)):
            if not info.selectable or (s.view is not None and s.view.id == info.id):
                continue
            if n.wants_status(s, info):
                items = ["MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN"]
                if n.wants_modseq(s, info):
                    items.append("HIGHESTMODSEQ")
                s.write(await status_response(s, info, items))
    return ok("NOTIFY completed.")
