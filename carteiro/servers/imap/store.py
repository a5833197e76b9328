"""STORE / UID STORE (RFC 9051 6.4.6), COPY / UID COPY (RFC 4315 COPYUID) and MOVE / UID MOVE
(RFC 6851). Our own flag changes update the view directly, so the change feed's echo of them is
never announced a second time.
"""

from __future__ import annotations

from carteiro.proto.imap import commands as c
from carteiro.proto.imap.sets import render_numbers
from carteiro.servers.imap import render
from carteiro.servers.imap.session import Result, Session, State, command, no, ok, undecodable
from carteiro.store.api import FlagOp, MailboxNotFound


@command(c.Store, min_state=State.SELECTED)
async def store(s: Session, tag: str, req: c.Store) -> Result:
    view = s.view
    assert view is not None and s.store is not None
    conditional = req.unchangedsince is not None
    if conditional:
        s.enable_condstore()  # RFC 7162 3.1: a CONDSTORE enabling command
    idx = s.indexes(req.set, req.uid)
    if isinstance(idx, Result):
        return idx
    if view.readonly:
        return no("Mailbox is read-only", "READ-ONLY")
    live = [i for i in idx if not view.is_expunged(view.uids[i])]
    changed_uids: set[int] = set()
    failed: list[int] = []
    if live:
        # RFC 7162 3.1.3: the store checks each message's MODSEQ against UNCHANGEDSINCE and
        # changes it in the same transaction, so no other session's change falls between
        changed, failed = await s.store.set_flags(
            view.id,
            [view.uids[i] for i in live],
            FlagOp(req.op.value),
            req.flags,
            req.unchangedsince,
        )
        changed_uids = {m.uid for m in changed}
        if failed:
            view.behind()  # the refused ones changed after the view's MODSEQ: sync() learns how
        if view.apply_flags(changed):
            s.write_flags_responses(view)  # RFC 9051 7.3.5: the new keyword is a flag now
    condstore = s.condstore
    refused = set(failed)
    out = s.out
    if not req.silent or condstore:
        recent = view.recent if not s.rev2 else ()
        with_uid = req.uid or s.qresync  # RFC 7162 3.2.4 (QRESYNC): UID in every FETCH
        for i in live:
            meta = view.metas[i]
            if meta.uid in refused:
                continue  # RFC 7162 3.1.3: not changed; named in MODIFIED instead
            if req.silent and meta.uid not in changed_uids:
                continue
            out += b"* %d FETCH (" % (i + 1)
            if with_uid:
                # RFC 9051 6.4.9: UID STORE responses carry the UID
                out += b"UID %d " % meta.uid
            if not req.silent:
                out += b"FLAGS " + render.flag_list(meta.flags, meta.uid in recent)
                if condstore:
                    out += b" "
            if condstore:
                # RFC 7162 3.1.3: even .SILENT reports the new MODSEQ of what changed
                out += b"MODSEQ (%d)" % meta.modseq
            out += b")\r\n"
            if len(out) > 1 << 17:
                await s.maybe_flush()
                out = s.out
    if failed:
        numbers = failed if req.uid else [i + 1 for i in live if view.uids[i] in refused]
        return ok("Conditional STORE failed", f"MODIFIED {render_numbers(numbers)}")
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
        # RFC 7162 3.2.10: VANISHED instead once QRESYNC is enabled
        s.announce_expunged(*view.expunge_now([a for a, _ in res.pairs]))
        return ok("Move completed.")
    return ok("Copy completed.", code)


@command(c.Copy, min_state=State.SELECTED)
async def copy(s: Session, tag: str, req: c.Copy) -> Result:
    return await _copy_or_move(s, req, move=False)


@command(c.Move, min_state=State.SELECTED)
async def move(s: Session, tag: str, req: c.Move) -> Result:
    return await _copy_or_move(s, req, move=True)
