"""Parsed messages shared by every IMAP session, bounded in memory (least recently used first).

Messages never change once stored, so an entry is valid as long as its (account, mailbox,
UIDVALIDITY, UID) key; repeated FETCHes of ENVELOPE, BODYSTRUCTURE or sections parse once.
Big messages are parsed in a worker thread so other sessions keep running.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from carteiro.mime.parse import Message, parse
from carteiro.store.api import AccountStore

Key = tuple[str, int, int, int]  # account, mailbox id, uidvalidity, uid

PARSE_IN_THREAD = 1 << 20  # octets
_PART_COST = 400  # rough bytes per parsed part (Part object, fields, offsets)


def _cost(msg: Message) -> int:
    return len(msg.data) + 256 + _PART_COST * msg.parts_count


class MessageCache:
    def __init__(self, limit: int) -> None:
        self.limit = max(0, limit)
        self.size = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[Key, tuple[Message, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Key) -> Message | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, key: Key, msg: Message) -> None:
        cost = _cost(msg)
        if cost > self.limit // 4:
            return  # one huge message must not flush everything else
        old = self._entries.pop(key, None)
        if old is not None:
            self.size -= old[1]
        self._entries[key] = (msg, cost)
        self.size += cost
        while self.size > self.limit and self._entries:
            _, (_, c) = self._entries.popitem(last=False)
            self.size -= c

    async def load(
        self, store: AccountStore, mailbox_id: int, uidvalidity: int, uid: int
    ) -> Message:
        """The parsed message; raises KeyError if it is gone from the store."""
        key = (store.account, mailbox_id, uidvalidity, uid)
        msg = self.get(key)
        if msg is not None:
            self.hits += 1
            return msg
        self.misses += 1
        raw = await store.read_message(mailbox_id, uid)
        if len(raw) >= PARSE_IN_THREAD:
            msg = await asyncio.to_thread(parse, raw)
        else:
            msg = parse(raw)
        self.put(key, msg)
        return msg
