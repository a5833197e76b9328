"""Parsed messages shared by every IMAP session, bounded in memory (least recently used first).

Messages never change once stored, so an entry is valid as long as its (account, mailbox,
UIDVALIDITY, UID) key; repeated FETCHes of ENVELOPE, BODYSTRUCTURE or sections parse once.
Messages that are costly to parse (big, or many lines) are parsed in a worker thread, and
values costly to derive from them (mime.cost) are computed there too, so one hostile message
does not stall the other sessions. At most DERIVE_THREADS such jobs run at once: the event loop
keeps its share of the GIL however many sessions fetch such messages.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from carteiro.mime.cost import costly, derive_seconds
from carteiro.mime.parse import Message, parse
from carteiro.store.api import AccountStore

Key = tuple[str, int, int, int]  # account, mailbox id, uidvalidity, uid
P = ParamSpec("P")
T = TypeVar("T")

# Parsing costs ~4 us per header line or "--" line and little per other octet: below both
# bounds it takes a few ms at most, above either it goes to a thread.
PARSE_IN_THREAD = 1 << 20  # octets
PARSE_IN_THREAD_LINES = 1024
DERIVE_THREADS = 2
_PART_COST = 400  # rough bytes per parsed part (Part object, fields, offsets)


def _cost(msg: Message) -> int:
    # (a message stored with bare LFs also keeps those octets: Message.raw)
    raw = len(msg.raw) if msg.raw is not None else 0
    return len(msg.data) + raw + 256 + _PART_COST * msg.parts_count


class MessageCache:
    def __init__(self, limit: int) -> None:
        self.limit = max(0, limit)
        self.size = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[Key, tuple[Message, int]] = OrderedDict()
        self._threads: asyncio.Semaphore | None = None

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
        if len(raw) >= PARSE_IN_THREAD or raw.count(b"\n") > PARSE_IN_THREAD_LINES:
            msg = await self.in_thread(_parse_and_estimate, raw)
        else:
            msg = parse(raw)
        self.put(key, msg)
        return msg

    async def in_thread(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """fn(*args) in a worker thread, at most DERIVE_THREADS at a time server-wide."""
        if self._threads is None:
            self._threads = asyncio.Semaphore(DERIVE_THREADS)
        async with self._threads:
            return await asyncio.to_thread(fn, *args, **kwargs)

    async def derive(
        self, msg: Message, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """fn(*args): values derived from `msg` (ENVELOPE, BODYSTRUCTURE, SEARCH text), in a
        worker thread when the message makes that costly, else right here."""
        if costly(msg):
            return await self.in_thread(fn, *args, **kwargs)
        return fn(*args, **kwargs)


def _parse_and_estimate(raw: bytes) -> Message:
    msg = parse(raw)
    derive_seconds(msg)  # cached on the message: the event loop will not walk its fields
    return msg
