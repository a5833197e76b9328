"""The in-process change feed: ordering, bounded backlog, wake-ups from other threads."""

from __future__ import annotations

import asyncio
import threading

from carteiro.store.api import MessageAdded, Resync
from carteiro.store.changes import ChangeHub, event_from_json, event_to_json

A = "alice@example.org"


def added(uid: int) -> MessageAdded:
    return MessageAdded(A, 1, uid, uid + 1)


async def test_overflow_collapses_to_resync() -> None:
    hub = ChangeHub(backlog=5)
    sub = hub.subscribe(A)
    hub.publish(A, [added(i) for i in range(1, 8)])
    events = sub.pending()
    assert events[0] == Resync(A)
    assert len(events) <= 5
    hub.publish(A, [added(99)])
    assert await sub.next(timeout=1) == added(99)


async def test_push_from_another_thread_wakes_the_waiter() -> None:
    hub = ChangeHub()
    sub = hub.subscribe(A)
    waiter = asyncio.create_task(sub.next(timeout=5))
    await asyncio.sleep(0)
    threading.Thread(target=hub.publish, args=(A, [added(1)])).start()
    assert await waiter == added(1)


async def test_timeout_and_close() -> None:
    hub = ChangeHub()
    sub = hub.subscribe(A)
    assert await sub.next(timeout=0.01) is None
    waiter = asyncio.create_task(sub.next())
    await asyncio.sleep(0)
    sub.close()
    assert await asyncio.wait_for(waiter, 1) is None
    hub.publish(A, [added(1)])
    assert sub.pending() == []
    assert not hub.has_subscribers()


def test_events_survive_the_changes_log() -> None:
    from carteiro.store.api import FlagsChanged, MailboxChanged, MessagesExpunged

    for event in [
        added(3),
        MessagesExpunged(A, 2, (4, 5), 9),
        FlagsChanged(A, 2, 7, frozenset({"\\Seen", "$x"}), 10),
        MailboxChanged(A, 3, "renamed", "New", "Old"),
        Resync(A, None),
    ]:
        assert event_from_json(A, event_to_json(event)) == event
