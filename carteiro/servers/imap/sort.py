"""SORT / UID SORT and THREAD / UID THREAD (RFC 5256), with SORT=DISPLAY (RFC 5957).

The messages are those SEARCH finds (search_eval); what they are sorted or threaded by comes from
the store's index (mime.sortkeys.SortFields at delivery), and only messages it does not hold yet
are read and parsed here, so both answers are the same with or without the index.
"""

from __future__ import annotations

from array import array
from collections import OrderedDict
from collections.abc import Sequence

from carteiro.mail.imap_view import MailboxView
from carteiro.mail.sorting import META_KEYS, Criterion, Item, sort_items
from carteiro.mail.threading import Node, ordered_subject, references
from carteiro.proto.imap import commands as c
from carteiro.proto.imap.search import SearchAll
from carteiro.servers.imap import contexts, esearch
from carteiro.servers.imap.search import _uses_modseq, save
from carteiro.servers.imap.search_eval import search as evaluate
from carteiro.servers.imap.session import Result, Session, State, bad, command, ok
from carteiro.servers.imap.sortfields import SortCache, cpu, items, sorted_uids

__all__ = ["ResultCache", "items", "render", "sort", "thread"]


class ResultCache:
    """SORT/THREAD answers for a whole mailbox (search key ALL), by the messages it holds:
    webmail asks the same sorted or threaded view again and again (each page, each refresh).
    Flags do not change these answers; the set of UIDs does, and a view's is known by its
    size and last UID (UIDs only ascend: between two states with the same last UID there were
    only expunges, which change the size). `kept`: the fields and orders the next computation
    starts from (sortfields.SortCache)."""

    def __init__(self, entries: int = 8) -> None:
        self.entries = entries
        self._d: OrderedDict[tuple[object, ...], object] = OrderedDict()
        self.kept = SortCache()

    def key(self, view: MailboxView, req: c.Sort | c.Thread) -> tuple[object, ...] | None:
        """The rendered answer's key; an ESORT (RETURN) answer keeps the sorted messages
        instead, under its own key, since its options choose what of them is shown."""
        if not isinstance(req.key, SearchAll):
            return None  # other searches may depend on the session ($, RECENT) or the time
        what = req.criteria if isinstance(req, c.Sort) else req.algorithm
        esort = isinstance(req, c.Sort) and req.return_opts is not None
        uid = req.uid and not esort  # the sorted messages serve both
        return (
            view.account,
            view.id,
            view.info.uidvalidity,
            view.max_uid,
            len(view),
            what,
            uid,
            esort,
        )

    def get(self, key: tuple[object, ...] | None) -> object | None:
        if key is None or key not in self._d:
            return None
        self._d.move_to_end(key)
        return self._d[key]

    def put(self, key: tuple[object, ...] | None, answer: object) -> None:
        if key is None:
            return
        self._d[key] = answer
        while len(self._d) > self.entries:
            self._d.popitem(last=False)


@command(c.Sort, min_state=State.SELECTED)
async def sort(s: Session, tag: str, req: c.Sort) -> Result:
    view = s.view
    assert view is not None
    if "UTF8=ACCEPT" in s.enabled and req.charset.upper() not in ("UTF-8", "US-ASCII"):
        return bad("Only UTF-8 after ENABLE UTF8=ACCEPT")  # RFC 6855 3
    opts = req.return_opts
    if opts is not None and "UPDATE" in opts and contexts.is_live(s, tag):
        return bad("Duplicate search update tag")  # RFC 5267 4.3: the tag names the context
    modseq = _uses_modseq(req.key)
    if modseq:
        s.enable_condstore()  # RFC 7162 3.1: a CONDSTORE enabling command
    criteria = [Criterion(k.key, k.reverse) for k in req.criteria]
    key = s.server.sorts.key(view, req)
    if opts is not None:
        return await _esort(s, tag, req, opts, criteria, key, modseq)
    cached = s.server.sorts.get(key)
    if isinstance(cached, bytes):
        answer = cached
    else:
        idx = await evaluate(view, req.key, s.server.cache, s.saved)
        uids = await sorted_uids(view, idx, criteria, s.server.cache, s.server.sorts.kept)
        # RFC 7162 3.1.5: with a MODSEQ criterion, the highest MODSEQ of the messages found
        tail = b" (MODSEQ %d)" % max(view.metas[i].modseq for i in idx) if modseq and idx else b""

        def compute() -> bytes:
            numbers = uids if req.uid else _msns(view, uids)
            return b"* SORT" + b"".join(b" %d" % n for n in numbers) + tail + b"\r\n"

        answer = await cpu(compute, len(uids))
        s.server.sorts.put(key, answer)
    s.out += answer
    return ok("Sort completed.")


def _needs_fields(criteria: list[Criterion]) -> bool:
    return any(c.key not in META_KEYS for c in criteria)


def _msns(view: MailboxView, uids: Sequence[int]) -> list[int]:
    """The message sequence numbers of these UIDs of the view, in their order."""
    if len(uids) <= 64:
        return [view.index_of(u) + 1 for u in uids]  # type: ignore[operator]
    seq = dict(zip(view.uids, range(1, len(view) + 1), strict=True))
    return [seq[u] for u in uids]


async def _esort(
    s: Session,
    tag: str,
    req: c.Sort,
    opts: frozenset[str],
    criteria: list[Criterion],
    key: tuple[object, ...] | None,
    modseq: bool,
) -> Result:
    """SORT RETURN (...): the sorted result as an ESEARCH response (RFC 5267 3), maybe kept
    up to date (CONTEXT=SORT, RFC 5267 4.3)."""
    view = s.view
    assert view is not None
    # The cache keeps the order as two arrays (UIDs, sequence numbers), not the Items: those
    # hold every message's sort fields (~70 MB for 100,000 messages)
    cached = s.server.sorts.get(key)
    update = "UPDATE" in opts
    result: list[Item] | None = None
    if isinstance(cached, tuple) and not update:
        uids, seqs = cached
    else:
        idx = await evaluate(view, req.key, s.server.cache, s.saved)
        if update:  # a live context keeps the Items' keys (contexts.Context)
            found = await items(
                view, idx, s.server.cache, _needs_fields(criteria), s.server.sorts.kept
            )
            result = await cpu(lambda: sort_items(found, criteria), len(found))
            uids = array("I", [it.uid for it in result])
            seqs = array("I", [it.seq for it in result])
        else:
            order = await sorted_uids(view, idx, criteria, s.server.cache, s.server.sorts.kept)
            uids = array("I", order)
            seqs = array("I", await cpu(lambda: _msns(view, order), len(order)))
        s.server.sorts.put(key, (uids, seqs))
    if update:
        assert result is not None
        contexts.start(s, tag, req.key, req.uid, uids, result, criteria)
    if "SAVE" in opts:
        save(s, opts, list(uids))
        if opts == {"SAVE"}:
            return ok("Sort completed.")
    top = None
    if modseq and seqs and opts & {"MIN", "MAX", "ALL", "COUNT", "PARTIAL"}:
        metas = view.metas
        shown = esearch.shown_positions(opts, req.partial, len(seqs))
        top = max((metas[seqs[p] - 1].modseq for p in shown), default=None)
    s.out += esearch.result(tag, req.uid, opts, req.partial, uids if req.uid else seqs, top)
    return ok("Sort completed.")


@command(c.Thread, min_state=State.SELECTED)
async def thread(s: Session, tag: str, req: c.Thread) -> Result:
    view = s.view
    assert view is not None
    if "UTF8=ACCEPT" in s.enabled and req.charset.upper() not in ("UTF-8", "US-ASCII"):
        return bad("Only UTF-8 after ENABLE UTF8=ACCEPT")  # RFC 6855 3
    if _uses_modseq(req.key):
        s.enable_condstore()  # RFC 7162 3.1
    key = s.server.sorts.key(view, req)
    cached = s.server.sorts.get(key)
    if isinstance(cached, bytes):
        answer = cached
    else:
        idx = await evaluate(view, req.key, s.server.cache, s.saved)
        found = await items(view, idx, s.server.cache, kept=s.server.sorts.kept)
        algo = ordered_subject if req.algorithm == "ORDEREDSUBJECT" else references

        def compute() -> bytes:
            out = bytearray(b"* THREAD ")
            for r in algo(found):
                it = r.item
                if it is not None and not r.children:  # most threads: one message
                    out += b"(%d)" % (it.uid if req.uid else it.seq)
                else:
                    out += b"(" + render(r, req.uid).encode() + b")"
            return bytes(out).rstrip(b" ") + b"\r\n"

        answer = await cpu(compute, len(found))
        s.server.sorts.put(key, answer)
    s.out += answer
    return ok("Thread completed.")


def render(node: Node, uid: bool) -> str:
    """A thread's members inside its parentheses (RFC 5256 5 thread-list): a chain of only
    children as numbers, two or more children as nested lists; a dummy has no number. No
    recursion: a hostile mailbox can make a thread as deep as it has messages."""
    out: list[str] = []
    stack: list[Node | str] = [node]
    while stack:
        x = stack.pop()
        if isinstance(x, str):
            out.append(x)
            continue
        numbers: list[str] = []
        cur = x
        while True:
            if cur.item is not None:
                numbers.append(str(cur.item.uid if uid else cur.item.seq))
            if len(cur.children) != 1:
                break
            cur = cur.children[0]
        out.append(" ".join(numbers))
        if cur.children:
            if numbers:
                out.append(" ")
            for k in reversed(cur.children):
                stack += [")", k, "("]
    return "".join(out)
