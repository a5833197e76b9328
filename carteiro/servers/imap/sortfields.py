"""What SORT, THREAD and live SORT contexts order messages by: the fields of the store's index
(mime.sortkeys.SortFields, kept at delivery), else those of the parsed message, so the answer is
the same with or without the index.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from typing import TypeVar

from carteiro.mail.imap_view import MailboxView
from carteiro.mail.message_cache import MessageCache
from carteiro.mail.sorting import Item
from carteiro.mime.parse import Message
from carteiro.mime.sortkeys import SortFields, sort_fields

T = TypeVar("T")
READ_MAX = 64  # messages read and parsed rather than asking the index for the whole mailbox


async def items(
    view: MailboxView, idx: list[int], cache: MessageCache, fields: bool = True
) -> list[Item]:
    """The Items of these view indexes: fields from the index, else from the message (a few
    messages, as a live SORT context's update has, are read: the index is per mailbox).
    `fields` False: a sort by ARRIVAL and SIZE only, which the view knows: no fields at all."""
    known: dict[int, SortFields] = {}
    metas = view.metas
    if not fields:
        return [Item(i + 1, metas[i].uid, metas[i].size, metas[i].internaldate, _GONE) for i in idx]
    if len(idx) > READ_MAX:
        _upto, known = await view.store.sort_index(view.id)
    for i in idx:
        uid = metas[i].uid
        if uid in known:
            continue
        try:
            msg = await cache.load(view.store, view.id, view.info.uidvalidity, uid)
        except KeyError:
            # expunged meanwhile (the session is not told yet): sorts as a message with
            # no header, which is what it now is to the store
            known[uid] = _GONE
        else:
            known[uid] = await cache.derive(msg, _fields, msg)

    def build() -> list[Item]:
        return [
            Item(i + 1, m.uid, m.size, m.internaldate, known[m.uid])
            for i, m in ((i, metas[i]) for i in idx)
        ]

    return await cpu(build, len(idx))


INLINE_MAX = 2000  # messages sorted or threaded on the event loop; more go to a thread


async def cpu(fn: Callable[[], T], n: int) -> T:
    """Run a sort or thread computation over `n` messages: inline when small; else in a
    thread, so that other sessions are served meanwhile (100,000 messages take a second or
    more), with the cyclic GC paused: its passes over the many new objects cost as much as the
    work (bench/RESULTS.md)."""
    if n <= INLINE_MAX:
        return fn()

    def run() -> T:
        was = gc.isenabled()
        gc.disable()
        try:
            return fn()
        finally:
            if was:
                gc.enable()

    return await asyncio.to_thread(run)


_GONE = SortFields("", False, "", "", "", "", "", None, "", ())


def _fields(msg: Message) -> SortFields:
    cached = msg.cache.get("sortfields")
    if cached is None:
        cached = msg.cache["sortfields"] = sort_fields(msg)
    assert isinstance(cached, SortFields)
    return cached
