"""SEARCH / UID SEARCH (RFC 9051 6.4.4), ESEARCH return options (RFC 4731) and SEARCHRES "$"
(RFC 5182). Under IMAP4rev2 every answer is an ESEARCH response (RFC 9051 7.3.4).
"""

from __future__ import annotations

from carteiro.proto.imap import commands as c
from carteiro.proto.imap import search as ps
from carteiro.proto.imap.sets import render_numbers
from carteiro.servers.imap.search_eval import search as evaluate
from carteiro.servers.imap.session import Result, Session, State, bad, command, ok


@command(c.Search, min_state=State.SELECTED)
async def search(s: Session, tag: str, req: c.Search) -> Result:
    view = s.view
    assert view is not None
    if req.charset is not None and "UTF8=ACCEPT" in s.enabled:
        return bad("CHARSET is not allowed after ENABLE UTF8=ACCEPT")  # RFC 6855 3
    opts = req.return_opts
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
    if "SAVE" in opts:
        # RFC 5182 2.4: with only MIN and/or MAX, only those are saved
        if opts & {"ALL", "COUNT"} or not opts & {"MIN", "MAX"}:
            s.saved = uids
        else:
            saved = []
            if uids and "MIN" in opts:
                saved.append(uids[0])
            if uids and "MAX" in opts and uids[-1] not in saved:
                saved.append(uids[-1])
            s.saved = saved
        if opts == {"SAVE"}:
            return ok("Search completed.")  # RFC 5182 2.1: no ESEARCH for SAVE alone
    parts = [b'* ESEARCH (TAG "' + tag.encode() + b'")']
    if req.uid:
        parts.append(b"UID")
    if numbers and "MIN" in opts:
        parts.append(b"MIN %d" % numbers[0])
    if numbers and "MAX" in opts:
        parts.append(b"MAX %d" % numbers[-1])
    if numbers and "ALL" in opts:
        parts.append(b"ALL " + render_numbers(numbers, sort=False).encode())
    if "COUNT" in opts:
        parts.append(b"COUNT %d" % len(numbers))
    if modseq and idx and opts & {"MIN", "MAX", "ALL", "COUNT"}:
        # RFC 7162 3.1.5 / RFC 4731 3.2: the highest MODSEQ of the messages the answer returns
        # (with only MIN and/or MAX, of those)
        if opts & {"ALL", "COUNT"}:
            shown = idx
        else:
            shown = [idx[0]] if "MIN" in opts else []
            if "MAX" in opts:
                shown.append(idx[-1])
        parts.append(b"MODSEQ %d" % max(metas[i].modseq for i in shown))
    s.out += b" ".join(parts) + b"\r\n"
    return ok("Search completed.")


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
