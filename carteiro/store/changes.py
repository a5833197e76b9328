"""The in-process change feed: a hub that fans committed change events out to subscriptions.

Backends publish after commit (from any thread); each subscription buffers a bounded number of
events and replaces its backlog by one Resync when a slow consumer falls behind. Cross-process
wake-up lives with the backend that needs it (sqlite_maildir); this module never does I/O.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable

from carteiro.store.api import (
    ChangeEvent,
    FlagsChanged,
    MailboxChanged,
    MessageAdded,
    MessagesExpunged,
    Resync,
)

DEFAULT_BACKLOG = 10_000


class Subscription:
    """One consumer's view of one account's events (implements api.ChangeSubscription).

    Thread-safe: publishers may push from a writer or listener thread; the consumer awaits on its
    own event loop.
    """

    def __init__(self, hub: ChangeHub, account: str, backlog: int = DEFAULT_BACKLOG) -> None:
        self._hub = hub
        self.account = account
        self._backlog = backlog
        self._lock = threading.Lock()
        self._events: deque[ChangeEvent] = deque()
        self._waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None
        self._closed = False

    def push(self, events: Iterable[ChangeEvent]) -> None:
        """Queue events (any thread); overflow collapses the backlog into one Resync."""
        with self._lock:
            if self._closed:
                return
            for event in events:
                if len(self._events) >= self._backlog:
                    self._events.clear()
                    self._events.append(Resync(self.account))
                self._events.append(event)
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            _wake(*waiter)

    async def next(self, timeout: float | None = None) -> ChangeEvent | None:
        """The next event, or None after `timeout` seconds with none (or once closed)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            with self._lock:
                if self._events:
                    return self._events.popleft()
                if self._closed:
                    return None
                future: asyncio.Future[None] = loop.create_future()
                self._waiter = (loop, future)
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                self._drop_waiter(future)
                return None
            try:
                await asyncio.wait_for(future, remaining)
            except TimeoutError:
                self._drop_waiter(future)
                with self._lock:
                    return self._events.popleft() if self._events else None
            finally:
                self._drop_waiter(future)

    def _drop_waiter(self, future: asyncio.Future[None]) -> None:
        with self._lock:
            if self._waiter is not None and self._waiter[1] is future:
                self._waiter = None

    def pending(self) -> list[ChangeEvent]:
        """Events already received, without waiting."""
        with self._lock:
            events = list(self._events)
            self._events.clear()
        return events

    def __aiter__(self) -> AsyncIterator[ChangeEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[ChangeEvent]:
        while True:
            event = await self.next()
            if event is None:
                return
            yield event

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            waiter, self._waiter = self._waiter, None
        self._hub.unregister(self)
        if waiter is not None:
            _wake(*waiter)

    @property
    def closed(self) -> bool:
        return self._closed


def _wake(loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
    def settle() -> None:
        if not future.done():
            future.set_result(None)

    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        settle()
        return
    try:
        loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the consumer's loop is closed: nobody is waiting any more
        pass


class ChangeHub:
    """Subscriptions per account; publish() is thread-safe and never blocks on consumers."""

    def __init__(self, backlog: int = DEFAULT_BACKLOG) -> None:
        self._lock = threading.Lock()
        self._subs: dict[str, set[Subscription]] = {}
        self._backlog = backlog
        self.last_publish = time.monotonic()

    def subscribe(self, account: str) -> Subscription:
        sub = Subscription(self, account, self._backlog)
        with self._lock:
            self._subs.setdefault(account, set()).add(sub)
        return sub

    def unregister(self, sub: Subscription) -> None:
        with self._lock:
            subs = self._subs.get(sub.account)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[sub.account]

    def has_subscribers(self) -> bool:
        with self._lock:
            return bool(self._subs)

    def accounts(self) -> list[str]:
        with self._lock:
            return list(self._subs)

    def publish(self, account: str, events: Iterable[ChangeEvent]) -> None:
        events = list(events)
        if not events:
            return
        with self._lock:
            subs = list(self._subs.get(account, ()))
        for sub in subs:
            sub.push(events)

    def resync_all(self) -> None:
        """Tell every subscriber it may have missed events."""
        for account in self.accounts():
            self.publish(account, [Resync(account)])

    def close_all(self) -> None:
        with self._lock:
            subs = [s for group in self._subs.values() for s in group]
        for sub in subs:
            sub.close()


# ---- events as rows of a changes log (cross-process feeds) ---------------------------------


def event_to_json(event: ChangeEvent) -> str:
    """A compact JSON form of an event (without its account, stored alongside)."""
    if isinstance(event, MessageAdded):
        obj: dict[str, object] = {
            "t": "a",
            "m": event.mailbox_id,
            "u": event.uid,
            "s": event.modseq,
        }
    elif isinstance(event, MessagesExpunged):
        obj = {"t": "x", "m": event.mailbox_id, "u": list(event.uids), "s": event.modseq}
    elif isinstance(event, FlagsChanged):
        obj = {
            "t": "f",
            "m": event.mailbox_id,
            "u": event.uid,
            "f": sorted(event.flags),
            "s": event.modseq,
        }
    elif isinstance(event, MailboxChanged):
        obj = {
            "t": "b",
            "m": event.mailbox_id,
            "k": event.kind,
            "n": event.name,
            "o": event.old_name,
        }
    else:
        obj = {"t": "r", "m": event.mailbox_id}
    return json.dumps(obj, separators=(",", ":"))


def event_from_json(account: str, text: str) -> ChangeEvent:
    obj = json.loads(text)
    kind = obj["t"]
    if kind == "a":
        return MessageAdded(account, obj["m"], obj["u"], obj["s"])
    if kind == "x":
        return MessagesExpunged(account, obj["m"], tuple(obj["u"]), obj["s"])
    if kind == "f":
        return FlagsChanged(account, obj["m"], obj["u"], frozenset(obj["f"]), obj["s"])
    if kind == "b":
        return MailboxChanged(account, obj["m"], obj["k"], obj["n"], obj["o"])
    return Resync(account, obj.get("m"))
