"""A deferral costs no commit of its own, and a dead destination is not tried for every new
message (Postfix's defer log rides on its queue file's fsync; its qmgr keeps unreachable
destinations in a short-term status cache). Issue 10: the queued path's CPU per message."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from queue_fakes import (
    MESSAGE,
    FakeClock,
    FakeTransport,
    accept_all,
    env,
    make_queue,
    refuse_connect,
    reply_all,
    until,
)

from carteiro.queue import spool as spool_mod


def _attempts_on_disk(root: Path, msg_id: str) -> int:
    db = sqlite3.connect(root / "queue.sqlite")
    try:
        row = db.execute(
            "SELECT attempts FROM recipients WHERE msg_id = ? AND idx = 0", (msg_id,)
        ).fetchone()
        return int(row[0])
    finally:
        db.close()


async def test_a_deferral_rides_on_the_next_durable_commit(tmp_path: Path) -> None:
    transport = FakeTransport(handler=reply_all(451, "4.3.0", "greylisted"))
    q = await make_queue(tmp_path, transport=transport)
    a = await q.spool.enqueue(env("bob@b.test"), MESSAGE)
    await until(lambda: len(transport.calls) == 1 and not q.spool.messages[a].active)
    assert q.spool.messages[a].recipients[0].attempts == 1  # in memory at once
    assert q.spool.commit_stats[0] == 1  # the enqueue only: no commit (no fsync) for it
    assert _attempts_on_disk(tmp_path, a) == 0
    b = await q.spool.enqueue(env("carol@c.test"), MESSAGE)
    assert q.spool.commit_stats[0] == 2  # b's enqueue carried a's deferral
    assert _attempts_on_disk(tmp_path, a) == 1
    await until(lambda: len(transport.calls) == 2 and not q.spool.messages[b].active)
    await q.stop()  # closing commits what waits
    assert _attempts_on_disk(tmp_path, b) == 1


async def test_a_deferral_alone_is_committed_within_a_moment(
    tmp_path: Path, monkeypatch: object
) -> None:
    import pytest

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.setattr(spool_mod, "LAZY_DELAY", 0.05)
    transport = FakeTransport(handler=reply_all(451, "4.3.0", "later"))
    q = await make_queue(tmp_path, transport=transport)
    a = await q.spool.enqueue(env("bob@b.test"), MESSAGE)
    await until(lambda: len(transport.calls) == 1 and not q.spool.messages[a].active)
    await until(lambda: _attempts_on_disk(tmp_path, a) == 1, timeout=2.0)
    # the commit is on disk before its count: the count comes back to the loop a moment later
    await until(lambda: q.spool.commit_stats[0] >= 2, timeout=2.0)
    assert q.spool.commit_stats[0] == 2
    await q.stop()


async def test_a_deferral_lost_in_a_crash_is_tried_again_at_the_restart(tmp_path: Path) -> None:
    clock = FakeClock()
    transport = FakeTransport(handler=reply_all(451, "4.3.0", "later"))
    q = await make_queue(tmp_path, transport=transport, clock=clock)
    a = await q.spool.enqueue(env("bob@b.test"), MESSAGE)
    await until(lambda: len(transport.calls) == 1 and not q.spool.messages[a].active)
    # "kill -9": the worker and the spool vanish without closing; the deferral was never committed
    q.worker._stopping = True
    assert q.worker._main is not None
    q.worker._main.cancel()
    q.spool._committer.close()  # the pending commit timer dies with the process
    await asyncio.sleep(0.01)

    t2 = FakeTransport()
    q2 = await make_queue(tmp_path, transport=t2, clock=clock)
    await until(lambda: a not in q2.spool.messages)
    assert t2.recipients_sent() == ["bob@b.test"]  # tried again at once, delivered once
    await q2.stop()


async def test_a_dead_destination_defers_new_mail_without_connecting(tmp_path: Path) -> None:
    transport = FakeTransport(handler=refuse_connect)
    q = await make_queue(tmp_path, transport=transport)
    a = await q.spool.enqueue(env("bob@b.test"), MESSAGE)
    await until(lambda: len(transport.calls) == 1 and not q.spool.messages[a].active)
    b = await q.spool.enqueue(env("carol@b.test"), MESSAGE)
    await until(lambda: not q.spool.messages[b].active and q.spool.messages[b].pending[0].attempts)
    assert len(transport.calls) == 1  # b was not tried: b.test is dead for now
    rb = q.spool.messages[b].recipients[0]
    assert (rb.state, rb.attempts, rb.last_code) == ("pending", 1, 451)
    assert "refused" in rb.last_text
    assert 54 <= rb.next_try - q.clock() <= 66  # its own backoff, as any deferral
    # another destination is not affected
    c = await q.spool.enqueue(env("dan@c.test"), MESSAGE)
    await until(lambda: len(transport.calls) == 2 and not q.spool.messages[c].active)

    # once the first delay of the schedule has passed, the next message tries again
    transport.handler = accept_all
    q.clock.advance(67)
    d = await q.spool.enqueue(env("erin@b.test"), MESSAGE)
    q.worker.wake()  # a and b are due too (the fake clock jumped)
    await until(lambda: not q.spool.messages)
    assert sorted(transport.recipients_sent()[2:]) == [
        "bob@b.test",
        "carol@b.test",
        "dan@c.test",
        "erin@b.test",
    ]
    assert d not in q.spool.messages
    await q.stop()


async def test_a_flush_gives_a_dead_destination_a_new_chance(tmp_path: Path) -> None:
    transport = FakeTransport(handler=refuse_connect)
    q = await make_queue(tmp_path, transport=transport)
    a = await q.spool.enqueue(env("bob@b.test"), MESSAGE)
    await until(lambda: len(transport.calls) == 1 and not q.spool.messages[a].active)
    transport.handler = accept_all
    assert await q.worker.retry(None) == 1  # as Postfix's `postqueue -f`
    await until(lambda: a not in q.spool.messages)
    b = await q.spool.enqueue(env("carol@b.test"), MESSAGE)  # alive again: tried at once
    await until(lambda: b not in q.spool.messages)
    assert transport.recipients_sent() == ["bob@b.test", "bob@b.test", "carol@b.test"]
    await q.stop()
