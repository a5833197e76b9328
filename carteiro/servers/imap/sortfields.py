"""What SORT, THREAD and live SORT contexts order messages by: the fields of the store's index
(mime.sortkeys.SortFields, kept at delivery), else those of the parsed message, so the answer is
the same with or without the index.
"""

from __future__ import annotations

from carteiro.mail.imap_view import MailboxView
from carteiro.mail.message_cache import MessageCache
from carteiro.mail.sorting import Item
from carteiro.mime.parse import Message
from carteiro.mime.sortkeys import SortFields, sort_fields

READ_MAX = 64  # messages read and parsed rather than asking the index for the whole mailbox


async def items(view: MailboxView, idx: list[int], cache: MessageCache) -> list[Item]:
    """The Items of these view indexes: fields from the index, else from the message (a few
    messages, as a live SORT context's update has, are read: the index is per mailbox)."""
    known: dict[int, SortFields] = {}
    if len(idx) > READ_MAX:
        _upto, known = await view.store.sort_index(view.id)
    out = []
    metas = view.metas
    for i in idx:
        m = metas[i]
        fields = known.get(m.uid)
        if fields is None:
            try:
                msg = await cache.load(view.store, view.id, view.info.uidvalidity, m.uid)
            except KeyError:
                # expunged meanwhile (the session is not told yet): sorts as a message with
                # no header, which is what it now is to the store
                fields = _GONE
            else:
                fields = await cache.derive(msg, _fields, msg)
        out.append(Item(i + 1, m.uid, m.size, m.internaldate, fields))
    return out


_GONE = SortFields("", False, "", "", "", "", "", None, "", ())


def _fields(msg: Message) -> SortFields:
    cached = msg.cache.get("sortfields")
    if cached is None:
        cached = msg.cache["sortfields"] = sort_fields(msg)
    assert isinstance(cached, SortFields)
    return cached
