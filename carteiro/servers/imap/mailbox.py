"""Mailbox commands: CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST (RFC 5258 LIST-EXTENDED,
RFC 5819 LIST-STATUS, RFC 6154 SPECIAL-USE, RFC 3348 CHILDREN), LSUB, STATUS (RFC 8438 SIZE,
RFC 7889 APPENDLIMIT) and APPEND (RFC 4315 APPENDUID, RFC 3516 literal8).
"""

from __future__ import annotations

import datetime as dt
import time
from bisect import bisect_right
from collections.abc import Iterable

from carteiro.mime.parse import to_crlf
from carteiro.proto.imap import commands as c
from carteiro.proto.imap import patterns
from carteiro.proto.imap.sets import render_numbers
from carteiro.servers.imap import metadata
from carteiro.servers.imap.catenate import catenate
from carteiro.servers.imap.session import Result, Session, State, bad, command, no, ok, undecodable
from carteiro.store.api import (
    SEPARATOR,
    AccountStore,
    MailboxInfo,
    MailboxNotFound,
    MessageMeta,
    MessageNotFound,
    ZonedDate,
    local_zone,
)

INBOX = "INBOX"
SPECIAL_USES = frozenset(
    {"\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash"}
)


def _store(s: Session) -> AccountStore:
    assert s.store is not None
    return s.store


# ---- CREATE / DELETE / RENAME / SUBSCRIBE --------------------------------------------------------


@command(c.Create)
async def create(s: Session, tag: str, req: c.Create) -> Result:
    if refused := undecodable(req.mailbox, code="CANNOT"):
        return refused
    # RFC 9051 6.3.4: a trailing separator declares intent to create inferiors; drop it.
    name = req.mailbox.rstrip(SEPARATOR) or req.mailbox
    special = None
    if req.special_use:
        if len(req.special_use) > 1 or req.special_use[0] not in SPECIAL_USES:
            return no("Unsupported special-use attribute", "USEATTR")  # RFC 6154 5
        special = req.special_use[0]
    if name.upper() == INBOX:
        return no("INBOX already exists", "ALREADYEXISTS")
    info = await _store(s).create_mailbox(name, special)
    # RFC 8474 4.1: the new mailbox's MAILBOXID in the tagged OK
    return ok("Create completed.", f"MAILBOXID ({info.mailboxid})")


@command(c.Delete)
async def delete(s: Session, tag: str, req: c.Delete) -> Result:
    if refused := undecodable(req.mailbox):
        return refused
    if req.mailbox == INBOX:
        return no("INBOX cannot be deleted", "CANNOT")
    store = _store(s)
    info = await store.get_mailbox(req.mailbox)
    await store.delete_mailbox(req.mailbox)
    await metadata.mailbox_deleted(s, info.id)  # RFC 5464: its METADATA entries go with it
    if s.view is not None and s.view.id == info.id:
        s.deselect()
    return ok("Delete completed.")


@command(c.Rename)
async def rename(s: Session, tag: str, req: c.Rename) -> Result:
    if refused := undecodable(req.old) or undecodable(req.new, code="CANNOT"):
        return refused
    if req.new == INBOX:
        return no("Cannot rename to INBOX", "ALREADYEXISTS")
    await _store(s).rename_mailbox(req.old, req.new)
    return ok("Rename completed.")


@command(c.Subscribe)
async def subscribe(s: Session, tag: str, req: c.Subscribe) -> Result:
    if refused := undecodable(req.mailbox, code="CANNOT"):
        return refused
    await _store(s).set_subscribed(req.mailbox, True)
    return ok("Subscribe completed.")


@command(c.Unsubscribe)
async def unsubscribe(s: Session, tag: str, req: c.Unsubscribe) -> Result:
    if refused := undecodable(req.mailbox):
        return refused
    await _store(s).set_subscribed(req.mailbox, False)
    return ok("Unsubscribe completed.")


# ---- LIST / LSUB ---------------------------------------------------------------------------------


def _join(reference: str, pattern: str) -> str:
    """RFC 9051 6.3.9: the reference and the pattern together name the mailboxes to list."""
    if not reference or pattern.startswith(SEPARATOR):
        return pattern
    if reference.endswith(SEPARATOR):
        return reference + pattern
    return reference + SEPARATOR + pattern


def compile_pattern(pattern: str) -> patterns.MailboxPattern:
    """``*`` matches anything, ``%`` anything but the separator; INBOX case-insensitively. The
    matcher never backtracks (a regex did, exponentially in the number of wildcards)."""
    return patterns.compile_pattern(pattern, SEPARATOR)


def _parents(name: str) -> Iterable[str]:
    parts = name.split(SEPARATOR)
    for i in range(1, len(parts)):
        yield SEPARATOR.join(parts[:i])


@command(c.List)
async def list_(s: Session, tag: str, req: c.List) -> Result:
    if "HIGHESTMODSEQ" in req.status_items:
        s.enable_condstore()  # RFC 7162 3.1: a CONDSTORE enabling command
    store = _store(s)
    patterns = [p for p in req.patterns if p != ""]
    if not patterns:
        # RFC 9051 6.3.9: an empty pattern asks for the hierarchy delimiter and root name.
        s.untagged('LIST (\\Noselect) "/" ""')
        return ok("List completed.")
    # RFC 3501 5.1.3: a pattern (or reference) that is not valid modified UTF-7 can match no
    # mailbox: it lists nothing (OK), it is no syntax error
    matchers = [
        compile_pattern(_join(req.reference, p))
        for p in patterns
        if not isinstance(p, c.UndecodableName) and not isinstance(req.reference, c.UndecodableName)
    ]
    boxes = await store.list_mailboxes()
    by_name = {b.name: b for b in boxes}
    has_children: set[str] = set()
    for b in boxes:
        has_children.update(_parents(b.name))
    sel, ret = req.select_opts, req.return_opts
    want_subscribed = "SUBSCRIBED" in sel or "SUBSCRIBED" in ret
    subscribed: set[str] = set(await store.subscriptions()) if want_subscribed else set()

    def matches(name: str) -> bool:
        return any(m.fullmatch(name) for m in matchers)

    # (name, attributes, extended data)
    rows: list[tuple[str, list[str], bytes]] = []
    if "SUBSCRIBED" in sel:
        candidates = sorted(subscribed, key=lambda n: (n != INBOX, n))
        listed = set()
        for name in candidates:
            if matches(name):
                listed.add(name)
                rows.append((name, _attrs(name, by_name, has_children, subscribed, req), b""))
        if "RECURSIVEMATCH" in sel:
            # RFC 5258 3.3 (2B), 3.5: CHILDINFO says a mailbox has a subscribed descendant that
            # the pattern does not match (so it is not listed itself); one the pattern matches
            # is listed on its own line, and CHILDINFO for it would be redundant (SHOULD NOT;
            # example 9 with "*2": foo2 and eps2 carry it, baz2 and qux2 are not listed).
            above_unlisted: set[str] = set()
            for name in candidates:
                if not matches(name):
                    above_unlisted.update(_parents(name))
            childinfo = b' ("CHILDINFO" ("SUBSCRIBED"))'
            rows = [
                (name, attrs, childinfo if name in above_unlisted else ext)
                for name, attrs, ext in rows
            ]
            # a parent that is not subscribed itself is listed only for such a descendant
            for parent in sorted(above_unlisted - listed):
                if matches(parent):
                    attrs = _attrs(parent, by_name, has_children, subscribed, req)
                    rows.append((parent, attrs, childinfo))
            rows.sort(key=lambda r: (r[0] != INBOX, r[0]))
        # Without RECURSIVEMATCH only subscribed names that match are listed: CHILDINFO MUST
        # NOT be sent (RFC 5258 3.5), and unlike LSUB no \Noselect parent stands in for it
        # (example 8 A: LIST (SUBSCRIBED) "" "%" returns nothing when only Foo/Baz is).
    else:
        for b in boxes:
            if not matches(b.name):
                continue
            if "SPECIAL-USE" in sel and not b.special_use:
                continue
            rows.append((b.name, _attrs(b.name, by_name, has_children, subscribed, req), b""))
    status_items = req.status_items if "STATUS" in ret else ()
    for name, attrs, ext in rows:
        s.write(b"* LIST (" + " ".join(attrs).encode() + b') "/" ' + s.mbox(name) + ext + b"\r\n")
        info = by_name.get(name)
        if status_items and info is not None and info.selectable:
            # RFC 5819 2: a STATUS response right after the mailbox's LIST response
            s.write(await status_response(s, info, status_items))
        await s.maybe_flush()
    return ok("List completed.")


def _attrs(
    name: str,
    by_name: dict[str, MailboxInfo],
    has_children: set[str],
    subscribed: set[str],
    req: c.List,
) -> list[str]:
    info = by_name.get(name)
    attrs: list[str] = []
    if info is None:
        attrs.append("\\NonExistent")  # RFC 5258 3.4 (implies \Noselect)
    elif not info.selectable:
        attrs.append("\\Noselect")
    attrs.append("\\HasChildren" if name in has_children else "\\HasNoChildren")
    if name in subscribed:
        attrs.append("\\Subscribed")
    if info is not None and info.special_use:
        attrs.append(info.special_use)
    return attrs


@command(c.Lsub)
async def lsub(s: Session, tag: str, req: c.Lsub) -> Result:
    store = _store(s)
    if req.pattern == "":
        s.untagged('LSUB (\\Noselect) "/" ""')
        return ok("Lsub completed.")
    if undecodable(req.reference, req.pattern):
        return ok("Lsub completed.")  # matches nothing (see list_)
    m = compile_pattern(_join(req.reference, req.pattern))
    subscribed = sorted(await store.subscriptions(), key=lambda n: (n != INBOX, n))
    boxes = {b.name: b for b in await store.list_mailboxes()}
    shown: set[str] = set()
    for name in subscribed:
        if m.fullmatch(name):
            shown.add(name)
            info = boxes.get(name)
            attrs = "" if info is not None and info.selectable else "\\Noselect"
            s.write(b"* LSUB (" + attrs.encode() + b') "/" ' + s.mbox(name) + b"\r\n")
        elif "%" in req.pattern:
            # RFC 3501 6.3.9: with %, a parent of a subscribed name is listed as \Noselect
            for parent in _parents(name):
                if parent not in shown and parent not in subscribed and m.fullmatch(parent):
                    shown.add(parent)
                    s.write(b'* LSUB (\\Noselect) "/" ' + s.mbox(parent) + b"\r\n")
    return ok("Lsub completed.")


# ---- STATUS --------------------------------------------------------------------------------------


async def status_response(s: Session, info: MailboxInfo, items: Iterable[str]) -> bytes:
    store = _store(s)
    counts = None
    view = s.view
    # The selected mailbox, when the view is exactly at the store's HIGHESTMODSEQ (read with
    # `info`): MESSAGES and UNSEEN from the view, the same numbers without a scan of the index
    in_view = (
        view.counts_at(info.highestmodseq) if view is not None and view.id == info.id else None
    )
    parts: list[bytes] = []
    for item in items:
        if in_view is not None and item in ("MESSAGES", "UNSEEN"):
            n = in_view[0] if item == "MESSAGES" else in_view[1]
        elif item in ("MESSAGES", "UNSEEN", "DELETED", "SIZE", "DELETED-STORAGE"):
            if counts is None:
                counts = await store.counts(info.id)
            n = {
                "MESSAGES": counts.messages,
                "UNSEEN": counts.unseen,
                "DELETED": counts.deleted,
                "SIZE": counts.size,
                "DELETED-STORAGE": counts.deleted_size,  # RFC 9208 4.2.1: octets
            }[item]
        elif item == "UIDNEXT":
            n = info.uidnext
        elif item == "UIDVALIDITY":
            n = info.uidvalidity
        elif item == "RECENT":
            n = await _recent_count(s, info)
        elif item == "HIGHESTMODSEQ":
            n = info.highestmodseq
        elif item == "APPENDLIMIT":
            n = s.server.appendlimit
        elif item == "MAILBOXID":  # RFC 8474 4.3
            parts.append(b"MAILBOXID (" + info.mailboxid.encode("ascii") + b")")
            continue
        else:  # pragma: no cover - the parser admits only the items above
            continue
        parts.append(b"%s %d" % (item.encode(), n))
    return b"* STATUS " + s.mbox(info.name) + b" (" + b" ".join(parts) + b")\r\n"


async def _recent_count(s: Session, info: MailboxInfo) -> int:
    view = s.view
    if view is not None and view.id == info.id and not view.readonly:
        # RFC 3501 6.3.10: \Recent as this session sees it (it claimed those messages)
        return len(view.recent)
    # RFC 3501 2.3.2: the messages no session has claimed yet (STATUS claims nothing)
    store = _store(s)
    claimed = await store.recent_claimed(info.id)
    if claimed >= info.uidnext - 1:
        return 0
    uids = (await store.list_uids_flags(info.id)).uids
    return len(uids) - bisect_right(uids, claimed)


@command(c.Status)
async def status(s: Session, tag: str, req: c.Status) -> Result:
    if "HIGHESTMODSEQ" in req.items:
        s.enable_condstore()  # RFC 7162 3.1.6: a CONDSTORE enabling command
    if refused := undecodable(req.mailbox):
        return refused
    if s.view is not None and ("MESSAGES" in req.items or "UNSEEN" in req.items):
        # the selected mailbox's pending changes first (announced now rather than after the
        # STATUS line), so its view can answer them (status_response)
        await s.sync(True)
    info = await _store(s).get_mailbox(req.mailbox)
    if not info.selectable:
        return no("Mailbox isn't selectable", "NONEXISTENT")
    s.write(await status_response(s, info, req.items))
    return ok("Status completed.")


# ---- APPEND --------------------------------------------------------------------------------------


@command(c.Append)
async def append(s: Session, tag: str, req: c.Append) -> Result:
    if refused := undecodable(req.mailbox):
        return refused  # not TRYCREATE: no CREATE could make it
    store = _store(s)
    if any(m.catenate is not None for m in req.messages):
        # A missing destination is told as such before any part is resolved: NO [TRYCREATE]
        # says CREATE would help, where a [BADURL] of some part would hide it (RFC 9051
        # 6.3.12, RFC 4469 5; Dovecot checks in this order, imaptest's catenate expects it)
        try:
            target = await store.get_mailbox(req.mailbox)
        except MailboxNotFound:
            return no("Mailbox doesn't exist", "TRYCREATE")
        if not target.selectable:
            return no("Mailbox isn't selectable", "TRYCREATE")
    bodies: list[bytes] = []
    for m in req.messages:
        data = await _message_bytes(s, m)
        if isinstance(data, Result):
            return data
        bodies.append(data)
    now = time.time()
    dates = [_internal_date(m.internal_date, now) for m in req.messages]
    appended = s.server.appended
    appended.begin(store.account)
    try:
        if len(bodies) == 1:
            results = [await store.append(req.mailbox, bodies[0], req.messages[0].flags, dates[0])]
        else:
            # RFC 3502: every message or none, in one transaction of the store
            results = await store.append_many(
                req.mailbox,
                [(d, m.flags, w) for d, m, w in zip(bodies, req.messages, dates, strict=True)],
            )
        for r, m, data, when in zip(results, req.messages, bodies, dates, strict=True):
            # the views of this process's sessions learn the new message without the store
            meta = MessageMeta(r.uid, frozenset(m.flags), r.modseq, when.ts, len(data), when.tz)
            appended.add(store.account, r.mailbox_id, meta)
    except MailboxNotFound:
        return no("Mailbox doesn't exist", "TRYCREATE")  # RFC 9051 6.3.12
    finally:
        appended.end(store.account)
    uids = [r.uid for r in results]
    return ok(
        "Append completed.",
        f"APPENDUID {results[0].uidvalidity} {render_numbers(uids, sort=False)}",
    )


def _internal_date(given: dt.datetime | None, now: float) -> ZonedDate:
    """An APPEND's INTERNALDATE with its zone, kept as given (RFC 3501 2.3.3: FETCH shows it
    back so); without a date-time, now in the server's local zone (what Dovecot does)."""
    if given is None:
        return ZonedDate(now, local_zone(now))
    offset = given.utcoffset()
    return ZonedDate(given.timestamp(), 0 if offset is None else int(offset.total_seconds()) // 60)


async def _message_bytes(s: Session, m: c.AppendMessage) -> bytes | Result:
    """An APPEND or REPLACE message as it is stored, or the refusal: built from CATENATE parts,
    CRLF line ends for a 7/8-bit literal, never empty, at most APPENDLIMIT."""
    if m.catenate is not None:
        built = await catenate(s, m.catenate)
        if isinstance(built, Result):
            return built
        data = built
    else:
        # IMAP serves and sizes messages with CRLF line endings (RFC 9051 2.3.4); a binary
        # literal is stored exactly as sent, bare LFs and all (RFC 3516 4.4)
        data = m.data if m.binary else to_crlf(m.data)
    if not data:
        return no("Can't save a zero byte message")
    if len(data) > s.server.appendlimit:
        return no("Message too big", "TOOBIG")
    return data


# ---- REPLACE (RFC 8508) ---------------------------------------------------------------------------


@command(c.Replace, min_state=State.SELECTED)
async def replace(s: Session, tag: str, req: c.Replace) -> Result:
    view = s.view
    assert view is not None
    if refused := undecodable(req.mailbox):
        return refused
    if req.uid:
        i = view.index_of(req.number)
        if i is None:
            return no("No such message to replace", "NONEXISTENT")
    else:
        if req.number > len(view):
            return bad("Invalid message sequence number")
        i = req.number - 1
    uid = view.uids[i]
    if view.readonly:
        return no("Mailbox is read-only", "READ-ONLY")  # RFC 8508 3.3: nothing appended
    data = await _message_bytes(s, req.message)
    if isinstance(data, Result):
        return data
    m = req.message
    when = _internal_date(m.internal_date, time.time())
    try:
        # one store transaction: the new message and the expunge of the old, or neither
        r = await _store(s).replace(view.id, uid, req.mailbox, (data, m.flags, when))
    except MailboxNotFound:
        return no("Mailbox doesn't exist", "TRYCREATE")
    except MessageNotFound:
        return no("The message to replace no longer exists", "EXPUNGEISSUED")
    # RFC 8508 3.3: APPENDUID in an untagged OK, then the EXPUNGE (or VANISHED) of the old one
    s.untagged(f"OK [APPENDUID {r.uidvalidity} {r.uid}] Replacement Message ready")
    meta = MessageMeta(r.uid, frozenset(m.flags), r.modseq, when.ts, len(data), when.tz)
    s.server.appended.add(view.account, r.mailbox_id, meta)
    s.announce_expunged(*view.expunge_now([uid]))
    return ok("Replace completed.")
