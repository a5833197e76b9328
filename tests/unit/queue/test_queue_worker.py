"""The queue manager with a fake transport, resolver and clock: delivery, retries, bounces."""

from __future__ import annotations

import asyncio
import email
import email.policy
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

from carteiro.queue.api import Envelope, QueuedRecipient
from carteiro.queue.retry import RetryPolicy
from carteiro.queue.transport import Hop, Reply, SendResult, Transaction


def _dsn_parts(data: bytes) -> tuple[email.message.Message, list[email.message.Message]]:
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    parts = msg.get_payload()
    assert isinstance(parts, list)
    return msg, parts


async def test_delivers_once_and_forgets_the_message(tmp_path: Path) -> None:
    q = await make_queue(tmp_path)
    qid = await q.spool.enqueue(env("bob@b.test"), MESSAGE)
    await until(lambda: qid not in q.spool.messages)
    assert len(q.transport.calls) == 1
    hop, txn = q.transport.calls[0]
    assert (hop.host, hop.address, hop.port) == ("mx.b.test", "127.0.0.3", 25)
    assert txn.mail_from == "alice@a.test"
    assert txn.message == MESSAGE
    assert not (tmp_path / "msg" / qid).exists()
    await q.stop()


async def test_recipients_of_one_domain_share_one_transaction(tmp_path: Path) -> None:
    q = await make_queue(tmp_path)
    qid = await q.spool.enqueue(env("bob@b.test", "carol@b.test", "dan@c.test"), MESSAGE)
    await until(lambda: qid not in q.spool.messages)
    by_host = {h.host: [r.address for r in t.recipients] for h, t in q.transport.calls}
    assert by_host == {"mx.b.test": ["bob@b.test", "carol@b.test"], "mx.c.test": ["dan@c.test"]}
    await q.stop()


async def test_local_domain_never_leaves_the_machine(tmp_path: Path) -> None:
    q = await make_queue(tmp_path)
    qid = await q.spool.enqueue(env("bob@a.test"), MESSAGE)
    await until(lambda: qid not in q.spool.messages)
    assert q.transport.calls == []
    assert [(f, r) for f, r, _ in q.local.delivered] == [("alice@a.test", "bob@a.test")]
    await q.stop()


async def test_temporary_failure_is_retried_with_backoff(tmp_path: Path) -> None:
    transport = FakeTransport(handler=reply_all(451, "4.3.0", "try later"))
    q = await make_queue(tmp_path, transport=transport)
    qid = await q.spool.enqueue(env("bob@b.test"), MESSAGE)
    await until(lambda: len(transport.calls) == 1 and not q.spool.messages[qid].active)
    r = q.spool.messages[qid].recipients[0]
    assert (r.state, r.attempts, r.last_code) == ("pending", 1, 451)
    # schedule (60, 300) with +-10% jitter
    assert 54 <= r.next_try - q.clock() <= 66
    q.clock.advance(30)
    q.worker.wake()
    await asyncio.sleep(0.05)
    assert len(transport.calls) == 1  # not yet due
    transport.handler = accept_all
    q.clock.advance(40)
    q.worker.wake()
    await until(lambda: qid not in q.spool.messages)
    assert len(transport.calls) == 2
    assert q.local.delivered == []  # no DSN: NOTIFY default has no SUCCESS
    await q.stop()


async def test_permanent_failure_bounces_to_the_sender_at_once(tmp_path: Path) -> None:
    transport = FakeTransport(handler=reply_all(550, "5.1.1", "<bob@b.test>: no such user"))
    q = await make_queue(tmp_path, transport=transport)
    e = Envelope(
        "alice@a.test",
        (QueuedRecipient("bob@b.test", ("FAILURE",), "rfc822;bob@b.test"),),
        ret="HDRS",
        envid="ENV+2D1",
    )
    qid = await q.spool.enqueue(e, MESSAGE)
    await until(lambda: not q.spool.messages and len(q.local.delivered) == 1)
    assert len(transport.calls) == 1
    mail_from, rcpt, data = q.local.delivered[0]
    assert (mail_from, rcpt) == ("", "alice@a.test")
    msg, parts = _dsn_parts(data)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert msg["Auto-Submitted"] == "auto-replied"
    types = [p.get_content_type() for p in parts]
    assert types == [
        "text/plain",
        "message/delivery-status",
        "text/rfc822-headers",
    ]
    status = parts[1].get_payload()
    assert isinstance(status, list)
    per_msg, per_rcpt = status[0], status[1]
    assert per_msg["Reporting-MTA"] == "dns; mx.a.test"
    assert per_msg["Original-Envelope-Id"] == "ENV-1"
    assert per_rcpt["Final-Recipient"] == "rfc822; bob@b.test"
    assert per_rcpt["Original-Recipient"] == "rfc822;bob@b.test"
    assert per_rcpt["Action"] == "failed"
    assert per_rcpt["Status"] == "5.1.1"
    assert per_rcpt["Remote-MTA"] == "dns; mx.b.test"
    assert per_rcpt["Diagnostic-Code"] == "smtp; 550 5.1.1 <bob@b.test>: no such user"
    assert qid not in q.spool.messages
    await q.stop()


async def test_null_sender_never_gets_a_dsn(tmp_path: Path) -> None:
    transport = FakeTransport(handler=reply_all(550, "5.1.1"))
    q = await make_queue(tmp_path, transport=transport)
    qid = await q.spool.enqueue(env("bob@b.test", sender=""), MESSAGE)
    await until(lambda: qid not in q.spool.messages)
    await q.worker.wait_idle(2)
    assert q.local.delivered == []
    assert q.spool.messages == {}
    await q.stop()


async def test_notify_never_suppresses_the_bounce(tmp_path: Path) -> None:
    transport = FakeTransport(handler=reply_all(550, "5.1.1"))
    q = await make_queue(tmp_path, transport=transport)
    e = Envelope("alice@a.test", (QueuedRecipient("bob@b.test", ("NEVER",)),))
    qid = await q.spool.enqueue(e, MESSAGE)
    await until(lambda: qid not in q.spool.messages)
    await q.worker.wait_idle(2)
    assert q.local.delivered == [] and q.spool.messages == {}
    await q.stop()


async def test_a_bounce_that_bounces_is_dropped(tmp_path: Path) -> None:
    # The sender is remote and refuses the DSN too: no DSN about a DSN (no loops).
    transport = FakeTransport(handler=reply_all(550, "5.1.1"))
    q = await make_queue(tmp_path, transport=transport)
    await q.spool.enqueue(env("bob@b.test", sender="carol@c.test"), MESSAGE)
    await until(lambda: len(transport.calls) == 2 and not q.spool.messages)
    assert transport.calls[1][1].mail_from == ""
    assert [r.address for r in transport.calls[1][1].recipients] == ["carol@c.test"]
    await q.worker.wait_idle(2)
    assert len(transport.calls) == 2
    await q.stop()


async def test_gives_up_after_max_age_with_a_failed_dsn(tmp_path: Path) -> None:
    transport = FakeTransport(handler=refuse_connect)
    policy = RetryPolicy(schedule=(600.0,), max_age=1800.0, delay_warning=0)
    q = await make_queue(tmp_path, transport=transport, policy=policy)
    qid = await q.spool.enqueue(env("bob@b.test"), MESSAGE)

    def settled(n: int) -> bool:
        m = q.spool.messages.get(qid)
        return len(transport.calls) == n and (m is None or not m.active)

    for n in range(1, 5):
        await until(lambda n=n: settled(n))  # type: ignore[misc]
        q.clock.advance(700)
        q.worker.wake()
    await until(lambda: len(q.local.delivered) == 1)
    # attempts at 0, 700, 1400; the next is due at max age (1800), tried at 2100: expired
    assert len(transport.calls) == 4
    _, parts = _dsn_parts(q.local.delivered[0][2])
    status = parts[1].get_payload()
    assert isinstance(status, list)
    assert status[1]["Action"] == "failed"
    assert status[1]["Status"] == "4.4.1"
    assert status[1]["Diagnostic-Code"].startswith("X-Carteiro; 451 4.4.1 connect to")
    await q.stop()


async def test_delay_warning_is_sent_once(tmp_path: Path) -> None:
    transport = FakeTransport(handler=reply_all(451, "4.3.0", "later"))
    policy = RetryPolicy(schedule=(600.0,), max_age=86400.0, delay_warning=1000.0)
    q = await make_queue(tmp_path, transport=transport, policy=policy)
    qid = await q.spool.enqueue(env("bob@b.test"), MESSAGE)
    for _ in range(5):
        await until(lambda: not q.spool.messages[qid].active)
        q.clock.advance(660)
        q.worker.wake()
        await asyncio.sleep(0.02)
    await until(lambda: not q.spool.messages[qid].active)
    assert len(q.local.delivered) == 1
    msg, parts = _dsn_parts(q.local.delivered[0][2])
    assert msg["Subject"].startswith("Delayed Mail")
    status = parts[1].get_payload()
    assert isinstance(status, list)
    assert status[1]["Action"] == "delayed"
    assert "Will-Retry-Until" in status[1]
    assert parts[2].get_content_type() == "text/rfc822-headers"
    assert q.spool.messages[qid].recipients[0].delay_notified
    await q.stop()


async def test_success_notification_when_the_next_hop_has_no_dsn(tmp_path: Path) -> None:
    q = await make_queue(tmp_path)  # FakeTransport results say remote_dsn=False
    e = Envelope("alice@a.test", (QueuedRecipient("bob@b.test", ("SUCCESS", "FAILURE")),))
    await q.spool.enqueue(e, MESSAGE)
    await until(lambda: len(q.local.delivered) == 1 and not q.spool.messages)
    _, parts = _dsn_parts(q.local.delivered[0][2])
    status = parts[1].get_payload()
    assert isinstance(status, list)
    assert status[1]["Action"] == "relayed"
    await q.stop()


async def test_next_mx_is_tried_when_the_first_is_down(tmp_path: Path) -> None:
    def handler(hop: Hop, txn: Transaction) -> SendResult:
        if hop.host == "mx1.b.test":
            return refuse_connect(hop, txn)
        return accept_all(hop, txn)

    transport = FakeTransport(handler=handler)
    q = await make_queue(tmp_path, transport=transport)
    q.resolver.mx_for("b.test", (10, "mx1.b.test"), (20, "mx2.b.test"))
    q.resolver.host("mx1.b.test", "127.0.0.5")
    q.resolver.host("mx2.b.test", "127.0.0.6")
    qid = await q.spool.enqueue(env("bob@b.test"), MESSAGE)
    await until(lambda: qid not in q.spool.messages)
    assert [h.host for h, _ in transport.calls] == ["mx1.b.test", "mx2.b.test"]
    await q.stop()


async def test_too_many_recipients_go_in_another_transaction_at_once(tmp_path: Path) -> None:
    def handler(hop: Hop, txn: Transaction) -> SendResult:
        # RFC 5321 4.5.3.1.10: the server takes 2 per transaction and says 452 to the rest.
        return SendResult(
            recipients=tuple(
                Reply(250, "2.0.0", "ok") if i < 2 else Reply(452, "4.5.3", "too many recipients")
                for i in range(len(txn.recipients))
            )
        )

    transport = FakeTransport(handler=handler)
    q = await make_queue(tmp_path, transport=transport)
    rcpts = [f"u{i}@b.test" for i in range(5)]
    qid = await q.spool.enqueue(env(*rcpts), MESSAGE)
    await until(lambda: qid not in q.spool.messages)
    assert [len(t.recipients) for _, t in transport.calls] == [5, 3, 1]
    assert sorted(transport.recipients_sent()) == sorted(rcpts + rcpts[2:] + rcpts[4:])
    await q.stop()


async def test_concurrency_is_capped_per_destination_and_overall(tmp_path: Path) -> None:
    gate = asyncio.Event()
    transport = FakeTransport(gate=gate)
    q = await make_queue(tmp_path, transport=transport, max_concurrency=5, max_per_destination=3)
    for i in range(10):
        await q.spool.enqueue(env(f"u{i}@b.test"), MESSAGE)
        await q.spool.enqueue(env(f"u{i}@c.test"), MESSAGE)
    await until(lambda: transport.active == 5)
    await asyncio.sleep(0.05)
    assert transport.active == 5
    assert max(transport.max_by_host.values()) <= 3
    gate.set()
    await until(lambda: not q.spool.messages)
    assert transport.max_active == 5
    assert max(transport.max_by_host.values()) == 3
    assert len(transport.calls) == 20
    await q.stop()


async def test_dead_destination_defers_waiting_jobs_at_once(tmp_path: Path) -> None:
    transport = FakeTransport(handler=refuse_connect, delay=0.01)
    q = await make_queue(tmp_path, transport=transport, max_per_destination=1)
    ids = [await q.spool.enqueue(env(f"u{i}@b.test"), MESSAGE) for i in range(5)]
    await until(lambda: all(q.spool.messages[i].recipients[0].attempts == 1 for i in ids))
    assert len(transport.calls) < 5  # the waiting ones did not each try
    await q.stop()


async def test_null_mx_bounces_without_connecting(tmp_path: Path) -> None:
    q = await make_queue(tmp_path)
    q.resolver.mx_for("nomail.test", (0, "."))
    await q.spool.enqueue(env("bob@nomail.test"), MESSAGE)
    await until(lambda: len(q.local.delivered) == 1)
    assert q.transport.calls == []
    _, parts = _dsn_parts(q.local.delivered[0][2])
    status = parts[1].get_payload()
    assert isinstance(status, list)
    assert status[1]["Status"] == "5.1.10"
    await q.stop()


async def test_restart_delivers_what_was_queued_and_nothing_twice(tmp_path: Path) -> None:
    gate = asyncio.Event()
    transport = FakeTransport(gate=gate)
    clock = FakeClock()
    q = await make_queue(tmp_path, transport=transport, clock=clock)
    done = await q.spool.enqueue(env("bob@b.test"), MESSAGE)
    gate.set()
    await until(lambda: done not in q.spool.messages)
    gate.clear()
    stuck = [await q.spool.enqueue(env(f"u{i}@b.test"), MESSAGE) for i in range(3)]
    await until(lambda: transport.active == 3)
    # "crash": the worker dies with deliveries in flight (no outcome recorded)
    q.worker._stopping = True
    for t in list(q.worker._tasks):
        t.cancel()
    assert q.worker._main is not None
    q.worker._main.cancel()
    await asyncio.sleep(0.01)
    await q.spool.close()
    gate.set()

    t2 = FakeTransport()
    q2 = await make_queue(tmp_path, transport=t2, clock=clock)
    await until(lambda: not q2.spool.messages)
    assert sorted(t2.recipients_sent()) == ["u0@b.test", "u1@b.test", "u2@b.test"]
    assert set(stuck).isdisjoint(q2.spool.messages)
    await q2.stop()


async def test_operator_hold_release_delete_retry(tmp_path: Path) -> None:
    transport = FakeTransport(handler=reply_all(451, "4.3.0", "later"))
    q = await make_queue(tmp_path, transport=transport)
    a = await q.spool.enqueue(env("bob@b.test"), MESSAGE)
    b = await q.spool.enqueue(env("carol@b.test"), MESSAGE)
    await until(
        lambda: len(transport.calls) == 2 and not any(m.active for m in q.spool.messages.values())
    )
    await q.worker.hold(a)
    transport.handler = accept_all
    assert await q.worker.retry(None) == 1  # only b: a is held
    await until(lambda: b not in q.spool.messages)
    assert a in q.spool.messages and len(transport.calls) == 3
    await q.worker.release(a)
    await until(lambda: a not in q.spool.messages)
    c = await q.spool.enqueue(env("dan@b.test", sender=""), MESSAGE)
    transport.handler = reply_all(451, "4.3.0")
    await until(lambda: c in q.spool.messages and q.spool.messages[c].recipients[0].attempts == 1)
    await until(lambda: not q.spool.messages[c].active)
    await q.worker.delete(c)
    assert c not in q.spool.messages and not (tmp_path / "msg" / c).exists()
    await q.stop()


async def test_every_attempt_reaches_the_metrics_by_outcome(tmp_path: Path) -> None:
    """Issue 12 Add 2: delivered, bounced and deferred recipients counted per attempt."""
    from carteiro.app import App
    from carteiro.config import loads

    def mixed(hop: Hop, txn: Transaction) -> SendResult:
        codes = {"bob@b.test": (250, "2.0.0"), "carol@b.test": (550, "5.1.1")}
        return SendResult(
            recipients=tuple(
                Reply(*codes.get(r.address, (451, "4.3.0")), "x") for r in txn.recipients
            )
        )

    q = await make_queue(tmp_path, transport=FakeTransport(handler=mixed))
    app = App(loads(""))
    app._instrument(q, object())  # type: ignore[arg-type]
    try:
        qid = await q.spool.enqueue(env("bob@b.test", "carol@b.test", "dan@b.test"), MESSAGE)
        # the attempt is over, and the DSN for carol (queued to the sender, delivered locally)
        # has left the queue: counting it would make the gauges below 2
        await until(
            lambda: (
                q.worker.deferred == 1
                and not q.spool.messages[qid].active
                and list(q.spool.messages) == [qid]
            )
        )
        text = app.metrics.render().decode()
        for status, n in (("sent", 1), ("bounced", 1), ("deferred", 1)):
            assert f'carteiro_deliveries_total{{route="remote",status="{status}"}} {n}.0' in text
        assert 'carteiro_delivery_seconds_count{route="remote"} 1.0' in text
        queue_lines = [ln for ln in text.splitlines() if ln.startswith("carteiro_queue")]
        assert "carteiro_queue_messages 1.0" in queue_lines, queue_lines
        assert "carteiro_queue_recipients_pending 1.0" in queue_lines, queue_lines
    finally:
        await q.stop()  # a failed assertion must not leave the worker running
