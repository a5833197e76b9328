"""SELECT, EXAMINE, CLOSE, UNSELECT (RFC 3691), CHECK, EXPUNGE and UID EXPUNGE (RFC 4315).

SELECT reads the message list once into a compact per-session view (mail.imap_view); every
later command works on that view and the change feed, never on a fresh listing.
"""

from __future__ import annotations

from carteiro.mail.imap_view import MailboxView
from carteiro.proto.imap import commands as c
from carteiro.servers.imap import render, resync
from carteiro.servers.imap.session import (
    Result,
    Session,
    State,
    bad,
    command,
    no,
    ok,
    undecodable,
)


@command(c.Select)
async def select(s: Session, tag: str, req: c.Select) -> Result:
    store = s.store
    assert store is not None
    if req.qresync is not None and not s.qresync:
        # RFC 7162 3.2.5: BAD, which changes nothing (the selected mailbox stays selected)
        return bad("QRESYNC parameter needs ENABLE QRESYNC first")
    if s.view is not None:
        s.deselect()
        # RFC 9051 6.3.2 / RFC 7162 3.2.11: the previous mailbox is closed first.
        s.untagged("OK [CLOSED] Previous mailbox closed.")
    if refused := undecodable(req.mailbox):
        return refused  # RFC 3501 6.3.1: a failed SELECT leaves no mailbox selected
    sub = store.subscribe()  # before the snapshot: no change can fall between the two
    try:
        info, metas = await store.open_mailbox(req.mailbox)  # one snapshot
        if not info.selectable:
            sub.close()
            return no("Mailbox isn't selectable", "NONEXISTENT")
        view = await MailboxView.start(
            store, info, metas, req.readonly, s.server.appended, s.server.claims
        )
    except BaseException:
        sub.close()
        raise
    if req.condstore:
        s.enabled = s.enabled | {"CONDSTORE"}  # RFC 7162 3.1.8; SELECT says HIGHESTMODSEQ below
    s.view, s.sub = view, sub
    s.state = State.SELECTED
    s.saved = []
    s.write_flags_responses(view)
    n = len(view)
    out = s.out
    out += b"* %d EXISTS\r\n" % n
    if not s.rev2:
        out += b"* %d RECENT\r\n" % len(view.recent)
        unseen = view.first_unseen()
        if unseen is not None:
            out += b"* OK [UNSEEN %d] First unseen.\r\n" % unseen
    out += b"* OK [UIDVALIDITY %d] UIDs valid\r\n" % info.uidvalidity
    out += b"* OK [UIDNEXT %d] Predicted next UID\r\n" % max(info.uidnext, view.max_uid + 1)
    if s.condstore:
        # RFC 7162 3.1.2.1 (sent, as Dovecot and mox do, once the client uses CONDSTORE; the
        # store keeps MODSEQs for every mailbox, so never NOMODSEQ)
        out += b"* OK [HIGHESTMODSEQ %d] Highest\r\n" % view.modseq
    if s.rev2:
        # RFC 9051 6.3.2: the mailbox's name as the server knows it
        out += b'* LIST () "/" ' + s.mbox(info.name) + b"\r\n"
    if req.qresync is not None and req.qresync.uidvalidity == info.uidvalidity:
        # RFC 7162 3.2.5.1: with another UIDVALIDITY the client's cache is void: nothing to add
        await _resync(s, view, req.qresync)
    s.out += b"* OK [MAILBOXID (%s)] Ok\r\n" % info.mailboxid.encode("ascii")  # RFC 8474 4.2
    if req.readonly:
        return ok("Examine completed.", "READ-ONLY")
    return ok("Select completed.", "READ-WRITE")


async def _resync(s: Session, view: MailboxView, qr: c.QResync) -> None:
    """RFC 7162 3.2.5.1: what changed since the client's MODSEQ, as UID FETCH <known-uids>
    (FLAGS) (CHANGEDSINCE modseq VANISHED) would say it: VANISHED (EARLIER) first, then the
    flags of every message (of those UIDs) whose MODSEQ is greater, from the SELECT's snapshot."""
    store = s.store
    assert store is not None
    top = max(view.info.uidnext - 1, view.max_uid)
    known = qr.known_uids.resolve(top) if qr.known_uids is not None else ((1, top),)
    floor = resync.matched_floor(view, qr.known_sequence)
    gone, changed = await resync.vanished_since(store, view, qr.modseq, known, floor)
    out = s.out
    if gone:
        out += b"* VANISHED (EARLIER) " + resync.render(gone) + b"\r\n"
    recent = view.recent if not s.rev2 else ()
    flag_list = render.flag_list
    metas = view.metas
    for i in changed:
        m = metas[i]
        out += b"* %d FETCH (UID %d FLAGS %s MODSEQ (%d))\r\n" % (
            i + 1,
            m.uid,
            flag_list(m.flags, m.uid in recent),
            m.modseq,
        )
    await s.maybe_flush()


@command(c.Close, min_state=State.SELECTED)
async def close(s: Session, tag: str, req: c.Close) -> Result:
    view = s.view
    assert view is not None and s.store is not None
    s.deselect()
    if not view.readonly:
        # RFC 9051 6.4.1: expunge silently, no EXPUNGE responses
        await s.store.expunge(view.id)
    return ok("Close completed.")


@command(c.Unselect, min_state=State.SELECTED)
async def unselect(s: Session, tag: str, req: c.Unselect) -> Result:
    s.deselect()
    return ok("Unselect completed.")


@command(c.Check, min_state=State.SELECTED)
async def check(s: Session, tag: str, req: c.Check) -> Result:
    await s.refresh_selected()  # the store is always durable; pending updates follow
    return ok("Check completed.")


@command(c.Expunge, c.UidExpunge, min_state=State.SELECTED)
async def expunge(s: Session, tag: str, req: c.Expunge | c.UidExpunge) -> Result:
    view = s.view
    assert view is not None and s.store is not None
    if view.readonly:
        return no("Mailbox is read-only", "READ-ONLY")
    if isinstance(req, c.UidExpunge):
        idx = s.indexes(req.set, uid=True)
        if isinstance(idx, Result):
            return idx
        if not idx:
            return ok("Expunge completed.")
        gone = await s.store.expunge(view.id, [view.uids[i] for i in idx])
    else:
        gone = await s.store.expunge(view.id)
    s.announce_expunged(*view.expunge_now(gone))
    if s.condstore:
        # RFC 7162 HIGHESTMODSEQ response code (as Dovecot sends it): the tagged OK says the
        # HIGHESTMODSEQ the expunges brought, which no FETCH reports; the view is caught up
        # first, so it is one whose changes the client has all been told of (never one above
        # an unannounced change)
        await s.sync(True)
        return ok("Expunge completed.", f"HIGHESTMODSEQ {view.modseq}")
    return ok("Expunge completed.")
