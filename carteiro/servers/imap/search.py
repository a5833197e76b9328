"""SEARCH / UID SEARCH (RFC 9051 6.4.4), ESEARCH return options (RFC 4731), SEARCHRES "$"
(RFC 5182) and CONTEXT=SEARCH (RFC 5267: PARTIAL, UPDATE). Under IMAP4rev2 every answer is an
ESEARCH response (RFC 9051 7.3.4).
"""

from __future__ import annotations

from carteiro.proto.imap import commands as c
from carteiro.proto.imap import search as ps
from carteiro.servers.imap import contexts, esearch
from carteiro.servers.imap.search_eval import search as evaluate
from carteiro.servers.imap.session import Result, Session, State, bad, command, ok


@command(c.Search, min_state=State.SELECTED)
async def search(s: Session, tag: str, req: c.Search) -> Result:
    view = s.view
    assert view is not None
    if req.charset is not None and "UTF8=ACCEPT" in s.enabled:
        return bad("CHARSET is not allowed after ENABLE UTF8=ACCEPT")  # RFC 6855 3
    opts = req.return_opts
    update = opts is not None and "UPDATE" in opts
    if update and contexts.is_live(s, tag):
        return bad("Duplicate search update tag")  # RFC 5267 4.3: the tag names the context
    modseq = _uses_modseq(req.key)
    if modseq:
        s.enable_condstore()  # RFC 7162 3.1: a CONDSTORE enabling command
    if opts is None and s.rev2:
        opts = frozenset({"ALL"})
    try:
        idx = await evaluate(view, req.key, s.server.cache, s.saved)
    except Exception:
        if opts is not None and "SAVE" in opts:
            s.saved = []  # RFC 5182 2.1: a failed SEARCH ... SAVE empties "$"
        raise
    uids = [view.uids[i] for i in idx]
    numbers = uids if req.uid else [i + 1 for i in idx]
    metas = view.metas
    if opts is None:
        s.out += b"* SEARCH" + b"".join(b" %d" % n for n in numbers)
        if modseq and idx:
            # RFC 7162 3.1.5: the highest MODSEQ of the messages found
            s.out += b" (MODSEQ %d)" % max(metas[i].modseq for i in idx)
        s.out += b"\r\n"
        return ok("Search completed.")
    if update:
        contexts.start(s, tag, req.key, req.uid, uids)
    if "SAVE" in opts:
        save(s, opts, uids)
        if opts == {"SAVE"}:
            return ok("Search completed.")  # RFC 5182 2.1: no ESEARCH for SAVE alone
    top = None
    if modseq and idx and opts & {"MIN", "MAX", "ALL", "COUNT", "PARTIAL"}:
        # RFC 7162 3.1.5 / RFC 4731 3.2: the highest MODSEQ of the messages the answer returns
        shown = esearch.shown_positions(opts, req.partial, len(idx))
        top = max((metas[idx[p]].modseq for p in shown), default=None)
    s.out += esearch.result(tag, req.uid, opts, req.partial, numbers, top)
    return ok("Search completed.")


def save(s: Session, opts: frozenset[str], uids: list[int]) -> None:
    """RFC 5182 2.4: SAVE keeps the UIDs found, with only MIN and/or MAX only those (the
    first and the last of `uids`, which are in the result's order)."""
    if opts & {"ALL", "COUNT", "PARTIAL"} or not opts & {"MIN", "MAX"}:
        s.saved = list(uids)
        return
    saved = []
    if uids and "MIN" in opts:
        saved.append(uids[0])
    if uids and "MAX" in opts and uids[-1] not in saved:
        saved.append(uids[-1])
    s.saved = saved


def _uses_modseq(key: ps.SearchKey) -> bool:
    if isinstance(key, ps.SearchModSeq):
        return True
    if isinstance(key, ps.SearchAnd):
        return any(_uses_modseq(k) for k in key.keys)
    if isinstance(key, ps.SearchOr):
        return _uses_modseq(key.left) or _uses_modseq(key.right)
    if isinstance(key, ps.SearchNot):
        return _uses_modseq(key.key)
    return False
