"""STORE / UID STORE (RFC 9051 6.4.6), COPY / UID COPY (RFC 4315 COPYUID) and MOVE / UID MOVE
(RFC 6851). Our own flag changes update the view directly, so the change feed's echo of them is
never announced a second time.
"""

from __future__ import annotations

from carteiro.proto.imap import commands as c
from carteiro.proto.imap.sets import render_numbers
from carteiro.servers.imap import render
from carteiro.servers.imap.session import Result, Session, State, bad, command, no, ok, undecodable
from carteiro.store.api import FlagOp, MailboxNotFound


@command(c.Store, min_state=State.SELECTED)
async def store(s: Session, tag: str, req: c.Store) -> Result:
    view = s.view
    assert view is not None and s.store is not None
    if req.unchangedsince is not None:
        return bad("CONDSTORE is not supported")
    idx = s.indexes(req.set, req.uid)
    if isinstance(idx, Result):
        return idx
    if view.readonly:
        return no("Mailbox is read-only", "READ-ONLY")
    live = [i for i in idx if not view.is_expunged(view.uids[i])]
    if live:
        changed, _ = await s.store.set_flags(
            view.id, [view.uids[i] for i in live], FlagOp(req.op.value), req.flags
        )
        if view.apply_flags(changed):
            s.write_flags_responses(view)  # RFC 9051 7.3.5: the new keyword is a flag now
    if not req.silent:
        recent = view.recent if not s.rev2 else ()
        out = s.out
        for i in live:
            meta = view.metas[i]
            flags = render.flag_list(meta.flags, meta.uid in recent)
            if req.uid:
                # RFC 9051 6.4.9: UID STORE responses carry the UID
                out += b"* %d FETCH (UID %d FLAGS %s)\r\n" % (i + 1, meta.uid, flags)
            else:
                out += b"* %d FETCH (FLAGS %s)\r\n" % (i + 1, flags)
            if len(out) > 1 << 17:
                await s.maybe_flush()
                out = s.out
    return ok("Store completed.")


async def _copy_or_move(s: Session, req: c.Copy | c.Move, move: bool) -> Result:
    view = s.view
    assert view is not None and s.store is not None
    idx = s.indexes(req.set, req.uid)
    if isinstance(idx, Result):
        return idx
    if move and view.readonly:
        return no("Mailbox is read-only", "READ-ONLY")
    if refused := undecodable(req.mailbox):
        return refused  # not TRYCREATE: no CREATE could make it
    try:
        dst = await s.store.get_mailbox(req.mailbox)
    except MailboxNotFound:
        return no("Mailbox doesn't exist", "TRYCREATE")  # RFC 9051 6.4.7
    if not dst.selectable:
        return no("Mailbox isn't selectable", "TRYCREATE")
    word = "Move" if move else "Copy"
    uids = [view.uids[i] for i in idx if not view.is_expunged(view.uids[i])]
    if not uids:
        if len(idx) > len(uids):
            return no("Some of the requested messages no longer exist", "EXPUNGEISSUED")
        return ok(f"{word} completed.")  # RFC 4315 3: an empty UID set is not an error
    op = s.store.move if move else s.store.copy
    res = await op(view.id, uids, req.mailbox)
    code = None
    if res.pairs:
        src = render_numbers((a for a, _ in res.pairs), sort=False)
        dsts = render_numbers((b for _, b in res.pairs), sort=False)
        code = f"COPYUID {res.uidvalidity} {src} {dsts}"
    if move:
        # RFC 6851 4.3: COPYUID in an untagged OK before the EXPUNGEs
        if code is not None:
            s.untagged(f"OK [{code}] Moved UIDs.")
        for msn in view.expunge_now([a for a, _ in res.pairs]):
            s.out += b"* %d EXPUNGE\r\n" % msn
        return ok("Move completed.")
    return ok("Copy completed.", code)


@command(c.Copy, min_state=State.SELECTED)
async def copy(s: Session, tag: str, req: c.Copy) -> Result:
    return await _copy_or_move(s, req, move=False)


@command(c.Move, min_state=State.SELECTED)
async def move(s: Session, tag: str, req: c.Move) -> Result:
    return await _copy_or_move(s, req, move=True)
