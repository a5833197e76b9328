"""FETCH / UID FETCH (RFC 9051 6.4.5, 6.4.9; RFC 3501 6.4.5; RFC 3516 BINARY).

Items answered from the view's metadata (UID, FLAGS, INTERNALDATE, RFC822.SIZE) need no message
read; a bulk fast path renders ``FETCH 1:* (UID FLAGS)`` for 100,000 messages in one pass.
Other items read the message once per FETCH, parsed through the shared cache. A non-PEEK body
item sets \\Seen on the messages it could read and the response reports the new FLAGS.
"""

from __future__ import annotations

import logging
from collections.abc import Set as AbstractSet
from typing import cast

from carteiro.mime import bodystructure
from carteiro.mime.parse import Message
from carteiro.mime.preview import preview
from carteiro.mime.sections import UnknownCte
from carteiro.proto.imap import commands as c
from carteiro.proto.imap import fetch as pf
from carteiro.servers.imap import fetch_octets as mf
from carteiro.servers.imap import render, resync
from carteiro.servers.imap.session import Result, Session, State, bad, command, no, ok
from carteiro.servers.storage_errors import log_storage_full, storage_full
from carteiro.store.api import SEEN, FlagOp, MessageMeta, StorageFull

log = logging.getLogger("carteiro.imap")

# RFC 8474 EMAILID/THREADID and RFC 8514 SAVEDATE, from store.message_ids()
_OBJECT_IDS = frozenset({pf.EMAILID, pf.THREADID, pf.SAVEDATE})
_FLAGS = pf.FetchAttr(pf.FLAGS)
_MODSEQ = pf.FetchAttr(pf.MODSEQ)
# Messages read before \Seen is set on them in one store call: few calls for a big FETCH,
# bounded memory for big messages.
SEEN_BATCH = 64
SEEN_BATCH_OCTETS = 4 << 20


@command(c.Fetch, min_state=State.SELECTED)
async def fetch(s: Session, tag: str, req: c.Fetch) -> Result:
    view = s.view
    assert view is not None and s.store is not None
    attrs = req.items
    if req.vanished and not s.qresync:
        return bad("VANISHED needs ENABLE QRESYNC first")  # RFC 7162 3.2.6
    wants_modseq = any(a.kind == pf.MODSEQ for a in attrs)
    if req.changedsince is not None or wants_modseq:
        s.enable_condstore()  # RFC 7162 3.1: a CONDSTORE enabling command
        if not wants_modseq:
            attrs = (*attrs, _MODSEQ)  # RFC 7162 3.1.4.1: CHANGEDSINCE implies MODSEQ
    if req.uid and not any(a.kind == pf.UID for a in attrs):
        # RFC 9051 6.4.9: UID FETCH responses always carry the UID
        attrs = (pf.FetchAttr(pf.UID), *attrs)
    idx = s.indexes(req.set, req.uid)
    if isinstance(idx, Result):
        return idx
    if req.changedsince is not None:
        since = req.changedsince
        if req.vanished:
            # RFC 7162 3.2.6: the UIDs of the set expunged since, before the FETCH responses
            top = max(view.info.uidnext - 1, view.max_uid)
            assert s.store is not None
            within = resync.runs(s.saved) if req.set.saved else req.set.resolve(top)
            vanished, _ = await resync.vanished_since(s.store, view, since, within)
            if vanished:
                s.out += b"* VANISHED (EARLIER) " + resync.render(vanished) + b"\r\n"
        metas = view.metas
        idx = [i for i in idx if metas[i].modseq > since]
    if not idx:
        return ok("Fetch completed.")
    extra: dict[int, bytes] | None = None
    if any(a.kind in _OBJECT_IDS for a in attrs):
        extra = await _object_items(s, idx, tuple(a.kind for a in attrs if a.kind in _OBJECT_IDS))
        attrs = tuple(a for a in attrs if a.kind not in _OBJECT_IDS)
    if not mf.needs_message(attrs):
        _fetch_meta(s, idx, attrs, extra)
        await s.maybe_flush()
        return ok("Fetch completed.")

    # RFC 9051 6.4.5: BODY[...] (not PEEK), BINARY[...], RFC822 and RFC822.TEXT set \Seen, as a
    # consequence of returning the body: so messages are read first, a batch at a time, and
    # \Seen is set on those whose bytes were read, before their responses are written.
    sets_seen = not view.readonly and any(a.sets_seen for a in attrs)
    has_flags = any(a.kind == pf.FLAGS for a in attrs)
    has_modseq = any(a.kind == pf.MODSEQ for a in attrs)
    condstore = s.condstore
    parse = mf.needs_parse(attrs)
    cache = s.server.cache
    store = s.store
    gone: list[int] = []  # UIDs the store no longer has (or cannot find the file of)
    unreadable = 0
    unknown_cte: str | None = None
    recent = view.recent if not s.rev2 else frozenset()
    utf8 = s.utf8
    rev2 = s.rev2  # RFC 9051 7.5.2: message/global gets the message/rfc822 layout
    batch: list[tuple[int, Message | bytes]] = []
    batch_octets = 0

    async def write_batch() -> None:
        nonlocal sets_seen, unknown_cte, batch_octets
        newly_seen: set[int] = set()
        if sets_seen:
            unseen = [
                view.uids[i]
                for i, _ in batch
                if SEEN not in view.metas[i].flags and not view.is_expunged(view.uids[i])
            ]
            if unseen:
                try:
                    changed, _ = await store.set_flags(view.id, unseen, FlagOp.ADD, [SEEN])
                except (StorageFull, OSError) as e:
                    full = storage_full(e)
                    if full is None:
                        raise
                    # Reading mail needs no room: the bodies go out without \Seen (nor a
                    # FLAGS item claiming it), and no further attempt in this FETCH.
                    log_storage_full(log, f"imap {s.account}", "FETCH setting \\Seen", full)
                    sets_seen = False
                else:
                    view.apply_flags(changed)
                    newly_seen = {m.uid for m in changed}
        for i, msg in batch:
            meta = view.metas[i]
            if isinstance(msg, Message):
                # ENVELOPE, BODYSTRUCTURE or SEARCH-like scans of a hostile message can take
                # seconds: those run in a worker thread (mime.cost decides).
                items, cte = await cache.derive(msg, _items, attrs, meta, msg, recent, utf8, rev2)
            else:
                items, cte = _items(attrs, meta, msg, recent, utf8, rev2)
            if cte is not None:
                unknown_cte = cte
            if meta.uid in newly_seen:
                if not has_flags:
                    items.append(_item(_FLAGS, meta, msg, recent, utf8))  # type: ignore[arg-type]
                if condstore and not has_modseq:
                    # RFC 7162 3.1: a FETCH that set \Seen reports the new MODSEQ
                    items.append(_meta_item(pf.MODSEQ, meta, recent))
            if extra is not None and meta.uid in extra:
                items.append(extra[meta.uid])
            if not items:
                continue  # RFC 9051 7.5.2 msg-att has at least one item: no empty "FETCH ()"
            s.out += b"* %d FETCH (" % (i + 1) + b" ".join(items) + b")\r\n"
            await s.maybe_flush()
        batch.clear()
        batch_octets = 0

    for i in idx:
        meta = view.metas[i]
        try:
            if parse:
                msg: Message | bytes = await cache.load(
                    store, view.id, view.info.uidvalidity, meta.uid
                )
            else:
                # BODY[] / RFC822: the stored octets, from the parsed message when it is cached
                # (the same bytes: Message.raw, or .data when parsing changed nothing)
                hit = cache.get((store.account, view.id, view.info.uidvalidity, meta.uid))
                if hit is not None:
                    raw = hit.raw if hit.raw is not None else hit.data
                else:
                    raw = await store.read_message(view.id, meta.uid)
                msg = mf.whole(raw)
        except KeyError:
            gone.append(meta.uid)
            continue
        except OSError as e:
            if isinstance(e, ConnectionError):
                raise
            unreadable += 1
            log.warning(
                "imap %s: cannot read mailbox %d uid %d: %s", s.account, view.id, meta.uid, e
            )
            continue
        batch.append((i, msg))
        batch_octets += meta.size
        # Without \Seen to set, each message is written as soon as it is read.
        if not sets_seen or len(batch) >= SEEN_BATCH or batch_octets >= SEEN_BATCH_OCTETS:
            await write_batch()
    if batch:
        await write_batch()
    if gone:
        unreadable += await _still_listed(s, gone)
    if unreadable:
        # As Dovecot: what could be read was returned; the rest is the server's fault (an
        # indexed message whose file is missing or unreadable), not the client's.
        return no("Some messages could not be FETCHed; see the server log", "SERVERBUG")
    if unknown_cte is not None:
        return no(f"Unknown Content-Transfer-Encoding {unknown_cte}", "UNKNOWN-CTE")
    if gone:
        return no("Some of the requested messages no longer exist", "EXPUNGEISSUED")
    return ok("Fetch completed.")


async def _still_listed(s: Session, uids: list[int]) -> int:
    """How many of `uids`, which could not be read, the store still lists: not expunged by
    another session but missing their bytes (logged). Asked only after such a failure."""
    view = s.view
    assert view is not None and s.store is not None
    listed = set((await s.store.list_uids_flags(view.id)).uids)
    missing = [u for u in uids if u in listed]
    for uid in missing:
        log.warning(
            "imap %s: mailbox %d uid %d is indexed but its message cannot be found",
            s.account,
            view.id,
            uid,
        )
    return len(missing)


async def _object_items(s: Session, idx: list[int], kinds: tuple[str, ...]) -> dict[int, bytes]:
    """RFC 8474 EMAILID / THREADID and RFC 8514 SAVEDATE items by UID, from one store read.
    THREADID is NIL: threads are not computed at delivery (docs/imap.md), which RFC 8474 5.2
    allows; SAVEDATE is NIL for a message stored before save dates were recorded (RFC 8514)."""
    view = s.view
    assert view is not None and s.store is not None
    uids = [view.uids[i] for i in idx]
    need = pf.EMAILID in kinds or pf.SAVEDATE in kinds
    ids = await s.store.message_ids(view.id, uids) if need else {}
    out: dict[int, bytes] = {}
    for uid in uids:
        parts = []
        for kind in kinds:
            if kind == pf.THREADID:
                parts.append(b"THREADID NIL")
            elif uid not in ids:
                continue  # expunged meanwhile
            elif kind == pf.EMAILID:
                parts.append(b"EMAILID (" + ids[uid].emailid.encode("ascii") + b")")
            else:
                saved = ids[uid].savedate
                parts.append(
                    b"SAVEDATE " + (b"NIL" if saved is None else render.internaldate(saved))
                )
        if parts:
            out[uid] = b" ".join(parts)
    return out


def _fetch_meta(
    s: Session,
    idx: list[int],
    attrs: tuple[pf.FetchAttr, ...],
    extra: dict[int, bytes] | None = None,
) -> None:
    """Metadata-only FETCH: one pass, no awaits. Each message's items are rendered once and kept
    in the view (`MailboxView.rendered_for`) until its flags or MODSEQ change, so a client that
    asks `FETCH 1:* (UID FLAGS)` again and again costs a join, not a rendering per line.
    `extra`: items rendered beforehand, by UID (EMAILID, THREADID); those are not kept."""
    view = s.view
    assert view is not None
    metas = view.metas
    rev2 = s.rev2
    recent = view.recent if not rev2 else frozenset()
    kinds = tuple(a.kind for a in attrs)
    if extra is not None:
        lines: list[bytes] = []
        for i in idx:
            meta = metas[i]
            items = [_meta_item(k, meta, recent) for k in kinds]
            if meta.uid in extra:
                items.append(extra[meta.uid])
            if items:
                lines.append(b"* %d FETCH (" % (i + 1) + b" ".join(items) + b")\r\n")
        s.out += b"".join(lines)
        return
    # the slot holds "items)\r\n": the message number, which an expunge shifts, is not in it
    cache = view.rendered_for((kinds, rev2))
    flag_list = render.flag_list
    if kinds == (pf.UID, pf.FLAGS):
        for i in idx:
            if cache[i] is None:
                meta = metas[i]
                uid = meta.uid
                cache[i] = b"UID %d FLAGS %s)\r\n" % (uid, flag_list(meta.flags, uid in recent))
    else:
        for i in idx:
            if cache[i] is None:
                meta = metas[i]
                cache[i] = b" ".join([_meta_item(k, meta, recent) for k in kinds]) + b")\r\n"
    filled = cast(list[bytes], cache)  # every slot of idx is set now
    first, last = idx[0], idx[-1]
    if last >= _PREFIXES_MAX:
        s.out += b"".join([b"* %d FETCH (%s" % (i + 1, filled[i]) for i in idx])
        return
    prefixes = _prefixes(last + 1)
    # prefix, items, prefix, items...: filled by slice assignment and joined as a list (3x
    # faster than joining an iterator that interleaves them)
    parts: list[bytes] = [b""] * (2 * len(idx))
    if last - first + 1 == len(idx):  # a range (1:*): slices, no per-line Python at all
        parts[0::2] = prefixes[first : last + 1]
        parts[1::2] = filled[first : last + 1]
    else:
        parts[0::2] = [prefixes[i] for i in idx]
        parts[1::2] = [filled[i] for i in idx]
    s.out += b"".join(parts)


# "* n FETCH (" for the first message numbers, shared by every session: a metadata FETCH joins
# these with the view's kept renderings. Bounded: beyond it, lines are formatted one by one.
_PREFIXES: list[bytes] = []
_PREFIXES_MAX = 20_000


def _prefixes(n: int) -> list[bytes]:
    have = len(_PREFIXES)
    if have < n:
        _PREFIXES.extend(b"* %d FETCH (" % k for k in range(have + 1, n + 1))
    return _PREFIXES


def _meta_item(kind: str, meta: MessageMeta, recent: AbstractSet[int]) -> bytes:
    if kind == pf.UID:
        return b"UID %d" % meta.uid
    if kind == pf.FLAGS:
        return b"FLAGS " + render.flag_list(meta.flags, meta.uid in recent)
    if kind == pf.INTERNALDATE:
        return b"INTERNALDATE " + render.internaldate(meta.internaldate, meta.internaldate_tz)
    if kind == pf.MODSEQ:
        return b"MODSEQ (%d)" % meta.modseq  # RFC 7162 3.1.4
    return b"RFC822.SIZE %d" % meta.size


def _items(
    attrs: tuple[pf.FetchAttr, ...],
    meta: MessageMeta,
    msg: Message | bytes,
    recent: AbstractSet[int],
    utf8: bool,
    rev2: bool = False,
) -> tuple[list[bytes], str | None]:
    """The rendered items of one message, and the last Content-Transfer-Encoding that BINARY
    could not undo (None if none)."""
    items: list[bytes] = []
    unknown_cte: str | None = None
    for a in attrs:
        item = _item(a, meta, msg, recent, utf8, rev2)
        if isinstance(item, UnknownCte):
            unknown_cte = item.encoding
            continue
        items.append(item)
    return items, unknown_cte


def _item(
    a: pf.FetchAttr,
    meta: MessageMeta,
    msg: Message | bytes,
    recent: AbstractSet[int],
    utf8: bool,
    rev2: bool = False,
) -> bytes | UnknownCte:
    kind = a.kind
    if kind in mf.META_KINDS:
        if kind == pf.RFC822_SIZE:
            # the stored size (Message.raw: stored with bare LFs), as the metadata path says
            size = len(msg) if isinstance(msg, bytes) else len(msg.raw or msg.data)
            return b"RFC822.SIZE %d" % size
        return _meta_item(kind, meta, recent)
    if isinstance(msg, Message) and (stored := mf.as_stored(msg, a)) is not None:
        if kind == pf.BINARY:
            exact = mf.partial(stored, a.partial)  # RFC 3516 4.2: exactly, literal8 for NULs
            return (
                a.response_name().encode() + b" " + render.literal(exact, binary=b"\x00" in exact)
            )
        if kind == pf.BINARY_SIZE:
            return a.response_name().encode() + b" %d" % len(stored)
        msg = mf.whole(stored)
    if isinstance(msg, bytes):  # only whole-message items reach here
        if kind == pf.RFC822:
            return b"RFC822 " + render.literal(msg)
        return a.response_name().encode() + b" " + render.literal(mf.partial(msg, a.partial))
    if kind == pf.BODY_SECTION:
        return a.response_name().encode() + b" " + render.literal(mf.body_section(msg, a))
    if kind == pf.ENVELOPE:
        return b"ENVELOPE " + _cached(msg, "envelope", utf8)
    if kind == pf.PREVIEW:
        # RFC 8970 4: UTF-8 text; quoted when it can be, else a literal (never modified)
        return b"PREVIEW " + render.string(preview(msg), utf8)
    if kind == pf.BODYSTRUCTURE:
        return b"BODYSTRUCTURE " + _cached(msg, "bodystructure", utf8, rev2)
    if kind == pf.BODY:
        return b"BODY " + _cached(msg, "body", utf8, rev2)
    if kind == pf.RFC822:
        return b"RFC822 " + render.literal(mf.whole(msg.data))
    if kind == pf.RFC822_HEADER:
        return b"RFC822.HEADER " + render.literal(mf.header(msg))
    if kind == pf.RFC822_TEXT:
        return b"RFC822.TEXT " + render.literal(mf.text(msg))
    if kind == pf.BINARY:
        data = mf.binary_section(msg, a)
        if isinstance(data, UnknownCte):
            return data
        name = a.response_name().encode()
        if data is None:
            data = b""  # no such part: empty, as BODY[n] answers it (and Dovecot BINARY[n])
        # RFC 3516 4.2: literal8 when the content has NUL octets
        return name + b" " + render.literal(data, binary=b"\x00" in data)
    if kind == pf.BINARY_SIZE:
        bsize = mf.binary_size(msg, a)
        if isinstance(bsize, UnknownCte):
            return bsize
        return a.response_name().encode() + b" %d" % (bsize or 0)
    raise AssertionError(f"unhandled fetch item {kind}")  # pragma: no cover


def _cached(msg: Message, what: str, utf8: bool, rev2: bool = False) -> bytes:
    """ENVELOPE / BODYSTRUCTURE / BODY rendered once per parsed message."""
    key = f"imap:{what}:{int(utf8)}:{int(rev2)}"
    out = msg.cache.get(key)
    if out is None:
        if what == "envelope":
            value = bodystructure.envelope(msg)
        else:
            value = bodystructure.body_structure(msg, what == "bodystructure", rev2)
        out = msg.cache[key] = render.structure(value, utf8)
    data: bytes = out
    return data
